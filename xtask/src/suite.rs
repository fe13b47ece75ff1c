//! The behaviour suite as `cargo xtask e2e` and `soak` run it: nextest over package `suite`'s
//! `behaviours` binary (one trial per `{behaviour}::{controller}`), filtered to the chosen
//! controllers and behaviours, writing result files into a directory that is then collected into
//! a report.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use model::{Controller, EnvKind};
use xshell::{Shell, cmd};

use crate::tools;

/// Which trials run: `--controller` and `--filter`, shared by e2e and soak.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Controllers to test, repeatable (nginx, traefik, haproxy, envoy-gateway; default all).
    #[arg(long = "controller", value_name = "NAME")]
    pub controllers: Vec<Controller>,
    /// Only behaviours whose name matches this (a regular expression).
    #[arg(long)]
    pub filter: Option<String>,
    /// Also the slow tier: behaviours that wait minutes (a controller's default idle timeout,
    /// where it is at most 5 minutes).
    #[arg(long)]
    pub slow: bool,
}

impl Selection {
    /// The controllers asked for, in the registry's order when none are.
    pub fn controllers(&self) -> Vec<Controller> {
        if self.controllers.is_empty() {
            Controller::ALL.to_vec()
        } else {
            self.controllers.clone()
        }
    }

    /// The nextest filterset: the suite's trials for these controllers and behaviours.
    pub fn filterset(&self) -> String {
        let by_controller = self
            .controllers()
            .iter()
            .map(|c| format!("test(/::{c}$/)"))
            .collect::<Vec<_>>()
            .join(" | ");
        let mut filter = format!("binary(behaviours) & ({by_controller})");
        if let Some(pattern) = &self.filter {
            filter.push_str(&format!(" & test(/{}/)", behaviour_regex(pattern)));
        }
        filter
    }
}

/// A regex over trial names (`{behaviour}::{controller}`) that matches where `pattern` matches
/// the behaviour's name: its `^` and `$` anchor at the name's ends, not the trial's.
fn behaviour_regex(pattern: &str) -> String {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(rest) => ("^", rest),
        None => ("^[^:]*", pattern),
    };
    let unescaped_dollar = rest.ends_with('$') && !rest.ends_with("\\$");
    let (core, end) = if unescaped_dollar {
        (&rest[..rest.len() - 1], "::")
    } else {
        (rest, "[^:]*::")
    };
    format!("{start}(?:{core}){end}")
}

/// What the local environment needs before the suite: the pinned data planes, and the ws-echo
/// binary its pods run.
pub fn prepare_local(root: &Path) -> anyhow::Result<()> {
    tools::ensure(root).context("installing the pinned data planes")?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --package ws-echo --bins")
        .run()
        .context("building ws-echo")
}

/// The nextest profile: `ci` locally; `kind`, the only one with retries, against a cluster.
pub fn profile(env: EnvKind) -> &'static str {
    match env {
        EnvKind::Local => "e2e",
        EnvKind::Kind => "kind",
    }
}

/// One run of the suite: what nextest said, and the result files collected.
#[derive(Debug)]
pub struct Outcome {
    /// Fails when a trial failed (or nextest could not run).
    pub nextest: anyhow::Result<()>,
    pub report: anyhow::Result<report::Report>,
    pub wall_seconds: f64,
}

/// Runs the selected trials in `env` with their result files in `results` (emptied first), and
/// `env_vars` besides `TESTBED_ENV` and `TESTBED_RESULTS_DIR`.
pub fn run(
    root: &Path,
    env: EnvKind,
    selection: &Selection,
    results: &Path,
    env_vars: &[(String, String)],
) -> anyhow::Result<Outcome> {
    if results.exists() {
        std::fs::remove_dir_all(results).with_context(|| format!("clearing {}", results.display()))?;
    }
    std::fs::create_dir_all(results).with_context(|| format!("creating {}", results.display()))?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let cargo = crate::cargo();
    let _env = sh.push_env("TESTBED_ENV", env.name());
    let _results = sh.push_env("TESTBED_RESULTS_DIR", results);
    let _vars: Vec<_> = env_vars.iter().map(|(key, value)| sh.push_env(key, value)).collect();
    let (profile, filter) = (profile(env), selection.filterset());
    // Without it, the slow tier's trials answer "not run" at once (crates/suite/src/harness.rs).
    // (`TESTBED_SLOW`, suite::harness::SLOW_TIER_VAR.)
    let _tier = selection.slow.then(|| sh.push_env("TESTBED_SLOW", "1"));
    let started = Instant::now();
    let nextest = cmd!(
        sh,
        "{cargo} nextest run --package suite --profile {profile} -E {filter}"
    )
    .run()
    .context("running the behaviour suite with nextest");
    let wall_seconds = started.elapsed().as_secs_f64();
    let generated_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ran_any = std::fs::read_dir(results).is_ok_and(|mut d| d.next().is_some());
    let report = if ran_any {
        report::collect::collect(results, env.name(), generated_at).context("collecting the behaviour results")
    } else {
        Err(anyhow::anyhow!(
            "no behaviour ran: nothing matches the selection (nextest filterset {filter})"
        ))
    };
    Ok(Outcome {
        nextest,
        report,
        wall_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterset_selects_controllers_and_behaviours() {
        let selection = Selection {
            controllers: vec![Controller::Nginx, Controller::Haproxy],
            filter: Some("idle".into()),
            slow: false,
        };
        assert_eq!(
            selection.filterset(),
            "binary(behaviours) & (test(/::nginx$/) | test(/::haproxy$/)) & test(/^[^:]*(?:idle)[^:]*::/)"
        );
    }

    #[test]
    fn a_filter_is_anchored_at_the_behaviour_name_not_the_trial_name() {
        let re = |p: &str| regex::Regex::new(&behaviour_regex(p)).unwrap();
        let trial = "default_idle_timeout::nginx";
        assert!(re("^default_idle_timeout$").is_match(trial));
        assert!(re("idle").is_match(trial));
        assert!(re("^default").is_match(trial));
        assert!(re("timeout$").is_match(trial));
        assert!(!re("^idle").is_match(trial));
        assert!(
            !re("nginx").is_match(trial),
            "a filter never matches the controller part"
        );
        assert!(!re("^default_idle$").is_match(trial));
    }

    #[test]
    fn no_controller_means_every_one_and_no_filter_every_behaviour() {
        let selection = Selection {
            controllers: Vec::new(),
            filter: None,
            slow: false,
        };
        assert_eq!(
            selection.filterset(),
            "binary(behaviours) & (test(/::nginx$/) | test(/::traefik$/) | test(/::haproxy$/) | test(/::envoy-gateway$/))"
        );
    }
}

//! `cargo xtask e2e`: run the behaviour suite across controllers and write the report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::{report, tools};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Env {
    Local,
    Kind,
}

impl Env {
    fn name(self) -> &'static str {
        match self {
            Env::Local => "local",
            Env::Kind => "kind",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct E2e {
    /// Where to run: local data planes (default) or a kind cluster.
    #[arg(long, value_enum, default_value = "local")]
    env: Env,
    /// Controllers to test (repeatable; default all three).
    #[arg(long = "controller", value_parser = ["nginx", "traefik", "haproxy"])]
    controllers: Vec<String>,
    /// Only behaviours whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Kubernetes version of the kind cluster.
    #[arg(long)]
    k8s_version: Option<String>,
    /// Keep the kind cluster (and TESTBED_KEEP=1 for test resources).
    #[arg(long)]
    keep: bool,
}

impl E2e {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        if self.env != Env::Kind || self.keep {
            return self.run_suite(root);
        }
        // Whatever happens from here — Ctrl-C while the cluster is created, a failed install, a
        // failed suite — the cluster goes, unless --keep.
        delete_cluster_on_interrupt(root);
        let result = self.run_suite(root);
        while INTERRUPTED.load(Ordering::SeqCst) {
            // The signal thread is deleting the cluster and then exits the process; the step
            // the signal broke must not race it (or end the process first).
            std::thread::park();
        }
        let deleted = crate::kind::down(root).context("deleting the kind cluster");
        result.and(deleted)
    }

    fn run_suite(self, root: &Path) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        sh.change_dir(root);
        let cargo = crate::cargo();
        let controllers = if self.controllers.is_empty() {
            vec!["nginx".to_owned(), "traefik".to_owned(), "haproxy".to_owned()]
        } else {
            self.controllers.clone()
        };
        let cluster = match self.env {
            Env::Local => {
                tools::ensure(root).context("installing the pinned data planes")?;
                cmd!(sh, "{cargo} build --package ws-echo --bins")
                    .run()
                    .context("building ws-echo")?;
                None
            }
            Env::Kind => Some(crate::kind::ensure_up(
                root,
                &controllers,
                self.k8s_version.as_deref().unwrap_or(""),
            )?),
        };

        let results = root.join("target/testbed/results").join(self.env.name());
        if results.exists() {
            std::fs::remove_dir_all(&results).with_context(|| format!("clearing {}", results.display()))?;
        }
        let filter = filterset(&controllers, self.filter.as_deref());
        let profile = match self.env {
            Env::Local => "ci",
            Env::Kind => "kind",
        };
        let _env = sh.push_env("TESTBED_ENV", self.env.name());
        let _results = sh.push_env("TESTBED_RESULTS_DIR", &results);
        let _keep = self.keep.then(|| sh.push_env("TESTBED_KEEP", "1"));
        let _cluster_env: Vec<_> = cluster
            .iter()
            .flat_map(|c| c.env())
            .map(|(key, value)| sh.push_env(key, value))
            .collect();
        let started = Instant::now();
        let suite = cmd!(
            sh,
            "{cargo} nextest run --package suite --profile {profile} -E {filter}"
        )
        .run();
        let wall = started.elapsed().as_secs_f64();

        let generated_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut collected = ::report::collect::collect(&results, self.env.name(), generated_at)
            .context("collecting the behaviour results")?;
        collected.wall_seconds = Some(wall);
        let dir = report::report_dir(root);
        report::write_all(root, &dir, &collected)?;
        println!("\n{}", ::report::markdown::matrix(&collected));
        println!(
            "{} in {wall:.0} s; report: {}",
            collected.summary(),
            dir.join("report.html").display()
        );
        suite.context("some behaviours deviate from their expectation (see the matrix above)")?;
        // kind is the only profile with retries; a pass on retry still fails the run.
        let junit = root.join("target/nextest").join(profile).join("junit.xml");
        let flaky = std::fs::read_to_string(&junit)
            .map(|xml| flaky_tests(&xml))
            .unwrap_or_default();
        anyhow::ensure!(
            flaky.is_empty(),
            "flaky passes (failed, then passed on retry): {}",
            flaky.join(", ")
        );
        anyhow::ensure!(
            collected.count(::report::Outcome::Fail) == 0,
            "some behaviours deviate from their expectation"
        );
        Ok(())
    }
}

/// Set once a signal arrived during a kind run: the signal thread owns the rest of the process.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C (or SIGTERM) in the middle of a kind run deletes the cluster before
/// exiting, as the end of a completed run does; `--keep` skips this.
fn delete_cluster_on_interrupt(root: &Path) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let root = root.to_owned();
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("xtask: cannot watch for Ctrl-C ({err}); an interrupted run may leave the cluster");
            return;
        }
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("xtask: interrupted; deleting the kind cluster (use --keep to keep it)");
            if let Err(err) = crate::kind::down(&root) {
                eprintln!("xtask: deleting the cluster failed: {err:#}");
            }
            std::process::exit(128 + signal);
        }
    });
}

/// Test cases JUnit reports with a `<flakyFailure>` (nextest's record of a failed try before a pass).
fn flaky_tests(junit: &str) -> Vec<String> {
    junit
        .split("<testcase ")
        .skip(1)
        .filter(|case| {
            case.split("</testcase>")
                .next()
                .is_some_and(|body| body.contains("<flakyFailure"))
        })
        .filter_map(|case| case.split("name=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect()
}

/// The nextest filterset: the suite's tests for the chosen controllers and behaviours.
pub(crate) fn filterset(controllers: &[String], behaviour: Option<&str>) -> String {
    // rstest names the cases `<behaviour>::c_<n>_Controller__<Name>`.
    let by_controller = controllers
        .iter()
        .map(|c| {
            let mut name = c.clone();
            name[..1].make_ascii_uppercase();
            format!("test(/Controller__{name}$/)")
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let mut filter = format!("binary(behaviours) & ({by_controller})");
    if let Some(pattern) = behaviour {
        filter.push_str(&format!(" & test(/{pattern}/)"));
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaky_passes_are_found_in_junit() {
        let xml = r#"<testsuite><testcase name="a::c_1_Controller__Nginx" classname="suite"><flakyFailure message="x"/></testcase><testcase name="b::c_2_Controller__Traefik" classname="suite"></testcase></testsuite>"#;
        assert_eq!(flaky_tests(xml), vec!["a::c_1_Controller__Nginx".to_owned()]);
        assert!(flaky_tests("<testsuite></testsuite>").is_empty());
    }

    #[test]
    fn filterset_selects_controllers_and_behaviours() {
        let f = filterset(&["nginx".into(), "haproxy".into()], Some("idle"));
        assert_eq!(
            f,
            "binary(behaviours) & (test(/Controller__Nginx$/) | test(/Controller__Haproxy$/)) & test(/idle/)"
        );
    }
}

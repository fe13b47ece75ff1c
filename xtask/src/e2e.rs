//! `cargo xtask e2e`: run the behaviour suite across controllers and write the report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use model::EnvKind;

use crate::report;
use crate::suite::{self, Selection};

#[derive(Debug, clap::Args)]
pub struct E2e {
    /// Where to run: local data planes (default) or a kind cluster.
    #[arg(long, default_value = "local", value_name = "local|kind")]
    env: EnvKind,
    #[command(flatten)]
    selection: Selection,
    /// Kubernetes version of the kind cluster.
    #[arg(long)]
    k8s_version: Option<String>,
    /// Keep the kind cluster (and TESTBED_KEEP=1 for test resources).
    #[arg(long)]
    keep: bool,
}

impl E2e {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        if self.env != EnvKind::Kind || self.keep {
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
        let mut env_vars = Vec::new();
        match self.env {
            EnvKind::Local => suite::prepare_local(root)?,
            EnvKind::Kind => {
                let controllers = self.selection.controllers();
                let k8s_version = self.k8s_version.as_deref().unwrap_or("");
                env_vars = crate::kind::ensure_up(root, &controllers, k8s_version)?.env();
            }
        }
        if self.keep {
            env_vars.push(("TESTBED_KEEP".to_owned(), "1".to_owned()));
        }
        let results = root.join("target/testbed/results").join(self.env.name());
        let outcome = suite::run(root, self.env, &self.selection, &results, &env_vars)?;
        let mut collected = outcome.report?;
        let wall = outcome.wall_seconds;
        collected.wall_seconds = Some(wall);
        let dir = report::report_dir(root);
        report::write_all(root, &dir, &collected)?;
        println!("\n{}", ::report::markdown::matrix(&collected));
        println!(
            "{} in {wall:.0} s; report: {}",
            collected.summary(),
            dir.join("report.html").display()
        );
        outcome
            .nextest
            .context("some behaviours deviate from their expectation (see the matrix above)")?;
        // kind is the only profile with retries; a pass on retry still fails the run.
        let junit = root
            .join("target/nextest")
            .join(suite::profile(self.env))
            .join("junit.xml");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaky_passes_are_found_in_junit() {
        let xml = r#"<testsuite><testcase name="a::nginx" classname="suite"><flakyFailure message="x"/></testcase><testcase name="b::traefik" classname="suite"></testcase></testsuite>"#;
        assert_eq!(flaky_tests(xml), vec!["a::nginx".to_owned()]);
        assert!(flaky_tests("<testsuite></testsuite>").is_empty());
    }
}

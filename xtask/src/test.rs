//! `cargo xtask test`: install what the tests need, then run every test with nextest.
//!
//! Steps: pinned tools (proxies, linters, Python venv) and the ws-echo binary the
//! local environment spawns, actionlint over the workflows (`cargo xtask lint`),
//! the container image when a Docker engine answers, then
//! `cargo nextest run --workspace`, then a check that no process the run
//! started is still alive, then the Autobahn conformance run (when Python 2.7
//! is here; `TESTBED_REQUIRE_AUTOBAHN=1` makes its absence an error), then a
//! seconds-long run of every part of the bench (`bench smoke`), checked for its figures.
//! With `TESTBED_CHARTS_DIR=DIR`, `cargo xtask charts --charts-dir DIR` runs after nextest.

use std::path::Path;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::autobahn::Autobahn;
use crate::charts::Charts;
use crate::{bench, image, leaks, lint, suite};

#[derive(Debug, clap::Args)]
pub struct Test {
    /// nextest profile (`ci` writes JUnit to target/nextest/ci/junit.xml); default `ci` when $CI is set.
    #[arg(long)]
    profile: Option<String>,
    /// Skip building the container image even when Docker answers.
    #[arg(long)]
    no_image: bool,
    /// Skip the Autobahn TestSuite conformance run.
    #[arg(long)]
    no_autobahn: bool,
    /// Skip the bench smoke run (release build plus a few seconds of every bench part).
    #[arg(long)]
    no_bench: bool,
    /// Extra arguments for `cargo nextest run` (a filter, `--no-capture`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    nextest_args: Vec<String>,
}

impl Test {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        // The pinned tools, and the ws-echo binary the local environment spawns.
        suite::prepare_local(root).context("installing the pinned tools and building ws-echo")?;
        lint::workflows(root).context("linting the workflows")?;

        let require_docker = std::env::var("TESTBED_REQUIRE_DOCKER").as_deref() == Ok("1");
        if self.no_image {
            println!("xtask: skipping the container image (--no-image)");
        } else if image::docker_available() {
            let built = image::build(root, image::DEFAULT_TAG).context("building the ws-echo image")?;
            println!(
                "xtask: built {} ({:.1} MB)",
                image::DEFAULT_TAG,
                built.size_bytes as f64 / 1e6
            );
        } else if require_docker {
            bail!("TESTBED_REQUIRE_DOCKER=1 but no Docker engine answers");
        } else {
            println!("xtask: no Docker engine answers; the image contract test will report a skip");
        }

        let profile = self.profile.unwrap_or_else(|| {
            if std::env::var_os("CI").is_some() {
                "ci"
            } else {
                "default"
            }
            .into()
        });
        let args = self.nextest_args;
        let sh = Shell::new()?;
        sh.change_dir(root);
        let cargo = crate::cargo();
        let status = cmd!(sh, "{cargo} nextest run --workspace --profile {profile} {args...}").run();
        let leaked = leaks::processes_under(&root.join("target"));
        status.context("nextest reported failures")?;
        nothing_left(&leaked, "the test run")?;
        println!("xtask: no ws-echo, nginx, haproxy or traefik process left behind");

        // Our Helm values against the real pinned charts, unpacked in DIR (CI: `cargo xtask charts --pull`).
        if let Some(dir) = std::env::var_os("TESTBED_CHARTS_DIR") {
            Charts::in_dir(root.join(dir)).run(root).context("the charts check")?;
        }

        // Protocol conformance: the Autobahn TestSuite is Python 2 only.
        if self.no_autobahn {
            println!("xtask: skipping the Autobahn conformance run (--no-autobahn)");
        } else if Autobahn::python_available(root)? {
            Autobahn::conformance().run(root).context("Autobahn conformance")?;
        } else if std::env::var("TESTBED_REQUIRE_AUTOBAHN").as_deref() == Ok("1") {
            bail!("TESTBED_REQUIRE_AUTOBAHN=1 but no Python 2.7 for the Autobahn TestSuite (set AUTOBAHN_PYTHON)");
        } else {
            println!("xtask: SKIPPED Autobahn conformance: no Python 2.7 here (set AUTOBAHN_PYTHON)");
        }
        nothing_left(&leaks::processes_under(&root.join("target")), "the Autobahn run")?;

        if self.no_bench {
            println!("xtask: skipping the bench smoke run (--no-bench)");
        } else {
            bench::smoke(root).context("the bench smoke run")?;
            nothing_left(&leaks::processes_under(&root.join("target")), "the bench smoke run")?;
        }
        Ok(())
    }
}

/// Fails when `step` left a process running a binary under `target/`.
fn nothing_left(leaked: &[leaks::Leaked], step: &str) -> anyhow::Result<()> {
    if !leaked.is_empty() {
        bail!("{step} left processes behind:\n{}", leaks::describe(leaked));
    }
    Ok(())
}

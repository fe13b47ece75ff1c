//! `cargo xtask bench`: ws-echo against anchor echo servers, behind each data plane, and its capacity.
//!
//! The benchmark is the `bench` binary (crates/bench, `bench run`); this installs the data planes
//! and the Python venv, builds it and the binaries it measures in release, and passes the flags on.
//! It writes target/testbed/bench/{bench.json, bench.md, bench-latency.svg, bench.fragment.html}.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::tools;

#[derive(Debug, clap::Args)]
pub struct Bench {
    /// Use the release binaries already built.
    #[arg(long)]
    no_build: bool,
    /// The bench's own flags, passed on: --quick, --rounds N, --duration S, --warmup S,
    /// --idle-connections N, --capacity N, --capacity-per-process N, --sources N, --skip-proxies,
    /// --skip-capacity, --out DIR (`cargo xtask bench -- --help` explains them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "BENCH FLAGS")]
    args: Vec<String>,
}

impl Bench {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let (build, args) = self.split();
        let bench = prepare(root, build)?;
        let sh = Shell::new()?;
        cmd!(sh, "{bench} run {args...}").run().context("the benchmark")?;
        Ok(())
    }
}

impl Bench {
    /// Whether to build, and the flags for `bench run`: after the first bench flag clap passes
    /// everything on, `--no-build` included.
    fn split(self) -> (bool, Vec<String>) {
        let no_build = self.no_build || self.args.iter().any(|a| a == "--no-build");
        let args = self.args.into_iter().filter(|a| a != "--no-build").collect();
        (!no_build, args)
    }
}

/// A seconds-long run of every part, checked for its figures (`bench smoke`), which `cargo xtask
/// test` makes so the bench cannot rot.
pub fn smoke(root: &Path) -> anyhow::Result<()> {
    let bench = prepare(root, true)?;
    let out = root.join("target/testbed/bench-smoke");
    let sh = Shell::new()?;
    cmd!(sh, "{bench} smoke --out {out}")
        .run()
        .context("the bench smoke run")?;
    Ok(())
}

/// Installs what the bench measures and builds it; returns the release `bench` binary.
fn prepare(root: &Path, build: bool) -> anyhow::Result<std::path::PathBuf> {
    tools::ensure(root).context("installing the data planes and the Python venv")?;
    if build {
        let sh = Shell::new()?;
        sh.change_dir(root);
        let cargo = crate::cargo();
        cmd!(
            sh,
            "{cargo} build --release -p ws-echo -p testbed -p bench-anchors -p bench"
        )
        .run()
        .context("building the release binaries")?;
    }
    Ok(crate::target_dir(root).join("release/bench"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::flags::{Command, Xtask};

    #[track_caller]
    fn check(argv: &[&str], no_build: bool, passed_on: &[&str]) {
        let Command::Bench(bench) = Xtask::try_parse_from(argv).unwrap().command else {
            panic!("{argv:?} is not the bench command");
        };
        let (built, args) = bench.split();
        assert_eq!(!built, no_build, "{argv:?}");
        assert_eq!(args, passed_on, "{argv:?}");
    }

    #[test]
    fn bench_flags_are_passed_on_and_no_build_is_ours_wherever_it_stands() {
        check(&["xtask", "bench"], false, &[]);
        check(&["xtask", "bench", "--no-build", "--quick"], true, &["--quick"]);
        check(
            &["xtask", "bench", "--capacity", "20000", "--no-build", "--out", "d"],
            true,
            &["--capacity", "20000", "--out", "d"],
        );
    }
}

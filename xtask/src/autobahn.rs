//! `cargo xtask autobahn`: the Autobahn TestSuite fuzzingclient against ws-echo, compared with
//! `docs/autobahn/expected.json`.
//!
//! The suite is Python 2 only: it is installed at the `[autobahn]` pins of `pins.toml` into
//! `target/tools/autobahn-venv` (a virtualenv made from the pyenv Python 2.7). The run and the
//! comparison are the `bench` binary's (`bench autobahn`, crates/bench/src/autobahn.rs), which
//! starts ws-echo with the bench's launcher.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use model::pins::{AutobahnPins, Pins};
use xshell::{Shell, cmd};

#[derive(Debug, clap::Args)]
pub struct Autobahn {
    /// Case patterns to run, comma-separated (e.g. `1.*,2.*` for CI); default 1.* to 10.*.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Rewrite docs/autobahn/expected.json with this run's results instead of comparing.
    #[arg(long)]
    update: bool,
}

impl Autobahn {
    /// Cases 1–10 compared with the expected results: the conformance step of `cargo xtask test`.
    pub fn conformance() -> Self {
        Autobahn {
            cases: Vec::new(),
            update: false,
        }
    }

    /// Whether a Python 2 interpreter for the Autobahn TestSuite is here.
    pub fn python_available(root: &Path) -> anyhow::Result<bool> {
        let python = python2(&Pins::load(root)?.autobahn);
        Ok(std::process::Command::new(python)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success()))
    }

    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let wstest = ensure_venv(root).context("installing the Autobahn TestSuite")?;
        let sh = Shell::new()?;
        sh.change_dir(root);
        let cargo = crate::cargo();
        cmd!(
            sh,
            "{cargo} build --package ws-echo --bin ws-echo --package bench --bin bench"
        )
        .run()
        .context("building ws-echo and bench")?;
        let bench = crate::target_dir(root).join("debug/bench");
        let mut args = Vec::new();
        if !self.cases.is_empty() {
            args.push(format!("--cases={}", self.cases.join(",")));
        }
        if self.update {
            args.push("--update".to_owned());
        }
        cmd!(sh, "{bench} autobahn --wstest {wstest} {args...}")
            .run()
            .context("the Autobahn run")?;
        Ok(())
    }
}

/// The Python 2 interpreter the virtualenv is made from: `AUTOBAHN_PYTHON`, else pyenv's pinned
/// version, else `python2` on PATH.
fn python2(pins: &AutobahnPins) -> PathBuf {
    if let Some(python) = std::env::var_os("AUTOBAHN_PYTHON") {
        return python.into();
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let python = pyenv_root.join("versions").join(&pins.python).join("bin/python");
    if python.exists() {
        python
    } else {
        PathBuf::from("python2")
    }
}

/// Creates `target/tools/autobahn-venv` with the pinned packages unless it already has them; returns `wstest`.
fn ensure_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let pins = Pins::load(root)?.autobahn;
    let tools = root.join("target/tools");
    let venv = tools.join("autobahn-venv");
    let wstest = venv.join("bin/wstest");
    let stamp = venv.join(".pins");
    let packages = &pins.packages;
    let wanted = packages.join("\n");
    if wstest.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(wstest);
    }
    let sh = Shell::new()?;
    let python = python2(&pins);
    let bootstrap = tools.join("autobahn-bootstrap");
    let virtualenv = &pins.virtualenv;
    eprintln!("xtask: installing {} into {}", packages[0], venv.display());
    if !bootstrap.join("virtualenv").exists() {
        cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check --target {bootstrap} {virtualenv}"
        )
        .run()
        .with_context(|| format!("installing {virtualenv} for {}", python.display()))?;
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    let app_data = bootstrap.join("app-data");
    {
        let _path = sh.push_env("PYTHONPATH", &bootstrap);
        cmd!(
            sh,
            "{python} -m virtualenv --quiet --no-periodic-update --app-data {app_data} {venv}"
        )
        .run()
        .context("creating the virtualenv")?;
    }
    let pip = venv.join("bin/pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check --no-deps {packages...}"
    )
    .run()
    .context("installing the pinned autobahntestsuite")?;
    cmd!(sh, "{wstest} --help")
        .quiet()
        .ignore_stdout()
        .run()
        .context("checking that wstest starts")?;
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(wstest)
}

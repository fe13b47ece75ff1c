//! `cargo xtask lint`: actionlint over `.github/workflows/`, with shellcheck for `run:` blocks; any finding fails.
//!
//! Both linters are sha256-checked PyPI wheels pinned in `pins.toml`, under `target/tools/bin/`
//! (`cargo xtask tools`). actionlint gets shellcheck's path explicitly: given a shellcheck it cannot run, it
//! disables the shell checks without failing, so this module checks shellcheck itself first and
//! fails when actionlint reports the rule disabled. pyflakes is switched off explicitly (no
//! workflow here runs Python), so the result does not depend on what is on PATH.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::tools;

#[derive(Debug, clap::Args)]
pub struct Lint {}

impl Lint {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        tools::ensure_linters(root).context("installing actionlint and shellcheck")?;
        workflows(root)
    }
}

/// Lints the repository's workflows; what `cargo xtask test` runs before nextest.
pub fn workflows(root: &Path) -> anyhow::Result<()> {
    let dir = root.join(".github/workflows");
    let linters = Linters::installed(root)?;
    let findings = linters.findings(root, &dir)?;
    if !findings.is_empty() {
        bail!(
            "actionlint found {} problem(s) in {}:\n{}",
            findings.len(),
            dir.display(),
            findings.join("\n")
        );
    }
    println!("xtask: actionlint (with shellcheck) found nothing in {}", dir.display());
    Ok(())
}

/// The installed linters, by path.
struct Linters {
    actionlint: PathBuf,
    shellcheck: PathBuf,
}

impl Linters {
    /// The binaries `cargo xtask tools` links into `target/tools/bin/`; an error naming that command when absent.
    fn installed(root: &Path) -> anyhow::Result<Self> {
        let bin = root.join("target/tools/bin");
        let linters = Self {
            actionlint: bin.join("actionlint"),
            shellcheck: bin.join("shellcheck"),
        };
        for path in [&linters.actionlint, &linters.shellcheck] {
            ensure!(
                path.exists(),
                "{} is missing: run `cargo xtask tools` (it installs actionlint and shellcheck at their \
                 pins.toml versions into target/tools)",
                path.display()
            );
        }
        Ok(linters)
    }

    /// actionlint's findings for every `*.yml`/`*.yaml` in `dir`, one line each (empty: clean).
    ///
    /// Paths print relative to `root` when `dir` is inside it.
    fn findings(&self, root: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
        let sh = Shell::new()?;
        sh.change_dir(root);
        let (actionlint, shellcheck) = (&self.actionlint, &self.shellcheck);
        // A shellcheck that does not run would make actionlint skip the shell checks silently.
        cmd!(sh, "{shellcheck} --version")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("running {} --version", shellcheck.display()))?;
        let files = workflow_files(root, dir)?;
        let shellcheck_flag = format!("-shellcheck={}", shellcheck.display());
        let output = cmd!(
            sh,
            "{actionlint} -no-color -oneline -verbose -pyflakes= {shellcheck_flag} {files...}"
        )
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running {}", actionlint.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(line) = stderr.lines().find(|l| l.contains("Rule \"shellcheck\" was disabled")) {
            bail!("actionlint did not run shellcheck: {line}");
        }
        let findings: Vec<String> = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        // Exit status 1 means findings; anything else but 0 is a usage or fatal error.
        match output.status.code() {
            Some(0) if findings.is_empty() => Ok(findings),
            Some(1) if !findings.is_empty() => Ok(findings),
            _ => bail!(
                "{} exited with {} on {}:\n{stdout}{}",
                actionlint.display(),
                output.status,
                dir.display(),
                stderr
                    .lines()
                    .filter(|l| !l.starts_with("verbose:"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

/// The workflow files in `dir`, sorted, relative to `root` where possible; an error when there are none.
fn workflow_files(root: &Path, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p))
        .collect();
    files.sort();
    ensure!(
        !files.is_empty(),
        "no workflow files (*.yml, *.yaml) in {}",
        dir.display()
    );
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{Linters, workflows};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    /// The installed linters, or `None` (skip) when they are missing and
    /// `TESTBED_ALLOW_MISSING_TOOLS=1`, as the kind offline tests treat kubernetes-validate.
    fn linters() -> Option<Linters> {
        match Linters::installed(&root()) {
            Ok(linters) => Some(linters),
            Err(err) if std::env::var("TESTBED_ALLOW_MISSING_TOOLS").is_ok_and(|v| v == "1") => {
                eprintln!("skipping the workflow lint: {err} (TESTBED_ALLOW_MISSING_TOOLS=1)");
                None
            }
            Err(err) => panic!("{err:#}, or set TESTBED_ALLOW_MISSING_TOOLS=1 to skip"),
        }
    }

    /// A temp dir holding one workflow, removed on drop.
    struct Workflow(PathBuf);

    impl Workflow {
        fn new(name: &str, yaml: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("xtask-lint-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("workflow.yml"), yaml).unwrap();
            Self(dir)
        }
    }

    impl Drop for Workflow {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Lints `yaml` as a workflow; asserts there is one finding containing each of `expected` and no other.
    #[track_caller]
    fn check(name: &str, yaml: &str, expected: &[&str]) {
        let Some(linters) = linters() else { return };
        let workflow = Workflow::new(name, yaml);
        let findings = linters.findings(&root(), &workflow.0).unwrap();
        let text = findings.join("\n");
        assert_eq!(findings.len(), expected.len(), "findings:\n{text}");
        for needle in expected {
            assert!(
                findings.iter().any(|f| f.contains(needle)),
                "no finding contains {needle:?}:\n{text}"
            );
        }
    }

    #[test]
    fn a_node20_action_is_a_finding() {
        check(
            "node20",
            "name: t\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n",
            &[r#"runtime "node20" is deprecated"#],
        );
    }

    #[test]
    fn an_unquoted_variable_in_a_run_block_is_a_shellcheck_finding() {
        check(
            "sc2086",
            "name: t\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $HOME\n",
            &["SC2086"],
        );
    }

    #[test]
    fn a_clean_workflow_has_no_findings() {
        check(
            "clean",
            "name: t\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo \"$HOME\"\n",
            &[],
        );
    }

    #[test]
    fn a_shellcheck_that_does_not_run_is_an_error_not_a_skip() {
        let Some(mut linters) = linters() else { return };
        linters.shellcheck = root().join("target/tools/bin/no-such-shellcheck");
        let workflow = Workflow::new("no-shellcheck", "name: t\non: push\njobs: {}\n");
        let err = linters.findings(&root(), &workflow.0).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-shellcheck"), "{err:#}");
    }

    #[test]
    fn the_repository_workflows_pass() {
        if linters().is_none() {
            return;
        }
        workflows(&root()).unwrap();
    }
}

//! `cargo xtask fuzz`: runs each cargo-fuzz target in `fuzz/` for a few seconds and reports execs and crashes.
//!
//! cargo-fuzz needs a nightly toolchain; it is installed at its `pins.toml` version into
//! `target/tools/bin` when missing. The corpus grows under
//! `target/testbed/fuzz/corpus/<target>` (seeded from `fuzz/seeds/<target>`),
//! crash inputs land in `target/testbed/fuzz/artifacts/<target>/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// The targets in `fuzz/fuzz_targets/`.
const TARGETS: [&str; 2] = ["proxy_v1", "ingress_spec"];
const TOOLCHAIN: &str = "nightly";
/// How long past `--seconds` a target may take (start-up, corpus loading) before it is killed.
const RUN_SLACK: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct Fuzz {
    /// Seconds each target runs (CI uses 10).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Only this target (repeatable); default all.
    #[arg(long = "target", value_parser = TARGETS)]
    targets: Vec<String>,
    /// Sanitizer passed to cargo fuzz. `none` by default: the workspace forbids unsafe code,
    /// the targets look for panics, and uninstrumented builds run several times faster.
    #[arg(long, default_value = "none", value_parser = ["none", "address"])]
    sanitizer: String,
}

impl Fuzz {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let cargo_fuzz = ensure_cargo_fuzz(root)?;
        let targets: Vec<String> = if self.targets.is_empty() {
            TARGETS.iter().map(|t| t.to_string()).collect()
        } else {
            self.targets.clone()
        };
        let sh = Shell::new()?;
        sh.change_dir(root);
        let work = root.join("target/testbed/fuzz");
        let sanitizer = &self.sanitizer;
        let envs = fuzz_env(root);
        {
            let _env: Vec<_> = envs.iter().map(|(k, v)| sh.push_env(k, v)).collect();
            let _cargo = sh.push_env("CARGO", "cargo");
            cmd!(sh, "{cargo_fuzz} fuzz build --fuzz-dir fuzz --sanitizer {sanitizer}")
                .run()
                .context("building the fuzz targets (cargo fuzz needs the nightly toolchain)")?;
        }

        let mut outcomes = Vec::new();
        for target in &targets {
            let corpus = work.join("corpus").join(target);
            let artifacts = work.join("artifacts").join(target);
            fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
            fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
            let log = work.join(format!("{target}.log"));
            let mut command = Command::new(&cargo_fuzz);
            command
                .current_dir(root)
                .args(["fuzz", "run", "--fuzz-dir", "fuzz", "--sanitizer", sanitizer, target])
                .arg(&corpus)
                .arg(root.join("fuzz/seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={}", self.seconds))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-print_final_stats=1")
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .env("CARGO", "cargo");
            println!("xtask: fuzzing {target} for {} s", self.seconds);
            let started = Instant::now();
            let success = run_bounded(command, &log, Duration::from_secs(self.seconds) + RUN_SLACK)
                .with_context(|| format!("running fuzz target {target}"))?;
            let text = fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
            let mut outcome = parse_log(&text);
            outcome.target = target.clone();
            outcome.wall = started.elapsed();
            if !success && outcome.crash.is_none() {
                outcome.crash = Some(format!("libFuzzer exited unsuccessfully; see {}", log.display()));
            }
            println!("xtask: {}", outcome.line());
            outcomes.push(outcome);
        }

        let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
        if !crashed.is_empty() {
            let lines: Vec<String> = crashed.iter().map(|o| format!("  {}", o.line())).collect();
            bail!("fuzzing found crashes:\n{}", lines.join("\n"));
        }
        Ok(())
    }
}

/// What one target's run achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub target: String,
    /// Inputs executed (libFuzzer's `number_of_executed_units`, or its `Done N runs`).
    pub execs: Option<u64>,
    /// Coverage points reached at the end.
    pub coverage: Option<u64>,
    /// The crash: the input file libFuzzer wrote, or the reason.
    pub crash: Option<String>,
    pub wall: Duration,
}

impl Outcome {
    fn line(&self) -> String {
        let execs = self.execs.map_or("unknown".to_owned(), |e| e.to_string());
        let cov = self.coverage.map_or("unknown".to_owned(), |c| c.to_string());
        match &self.crash {
            None => format!(
                "{}: {execs} execs, cov {cov}, no crash ({:.0} s)",
                self.target,
                self.wall.as_secs_f64()
            ),
            Some(crash) => format!("{}: CRASH after {execs} execs: {crash}", self.target),
        }
    }
}

/// Reads execs, coverage and a crash out of libFuzzer's output.
pub fn parse_log(text: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.execs = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Done ") {
            if outcome.execs.is_none() {
                outcome.execs = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            outcome.crash = Some(path.trim().to_owned());
        }
        if line.starts_with('#')
            && let Some(cov) = line.split("cov: ").nth(1).and_then(|c| c.split_whitespace().next())
        {
            outcome.coverage = cov.parse().ok();
        }
    }
    if outcome.crash.is_none() {
        let reason = text.lines().find(|l| {
            l.contains("panicked at") || l.contains("==ERROR: libFuzzer") || l.contains("ERROR: AddressSanitizer")
        });
        outcome.crash = reason.map(|l| l.trim().to_owned());
    }
    outcome
}

/// Environment for cargo-fuzz: the nightly toolchain, and the build under the workspace's `target/`.
fn fuzz_env(root: &Path) -> Vec<(String, String)> {
    vec![
        ("RUSTUP_TOOLCHAIN".to_owned(), TOOLCHAIN.to_owned()),
        (
            "CARGO_TARGET_DIR".to_owned(),
            root.join("target/fuzz").display().to_string(),
        ),
    ]
}

/// `target/tools/bin/cargo-fuzz`, installed pinned when missing.
fn ensure_cargo_fuzz(root: &Path) -> anyhow::Result<PathBuf> {
    let tools = root.join("target/tools");
    let binary = tools.join("bin/cargo-fuzz");
    let version = &model::pins::Pins::load(root)?.cargo_fuzz.version;
    let sh = Shell::new()?;
    let installed = binary.exists()
        && cmd!(sh, "{binary} --version")
            .quiet()
            .read()
            .is_ok_and(|v| v.split_whitespace().nth(1) == Some(version.as_str()));
    if !installed {
        let cargo = crate::cargo();
        cmd!(
            sh,
            "{cargo} install --root {tools} cargo-fuzz --version {version} --locked"
        )
        .run()
        .context("installing cargo-fuzz")?;
    }
    let toolchains = cmd!(sh, "rustup toolchain list")
        .quiet()
        .read()
        .context("listing rustup toolchains")?;
    if !toolchains.lines().any(|l| l.starts_with(TOOLCHAIN)) {
        bail!("cargo fuzz needs the {TOOLCHAIN} toolchain: rustup toolchain install {TOOLCHAIN} --profile minimal");
    }
    Ok(binary)
}

/// Runs `command` with its output in `log`, killing it after `limit`; returns whether it succeeded.
fn run_bounded(mut command: Command, log: &Path, limit: Duration) -> anyhow::Result<bool> {
    let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting cargo fuzz")?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the fuzz run did not end within {limit:?} ({})", log.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(log: &str, execs: Option<u64>, coverage: Option<u64>, crash: Option<&str>) {
        let outcome = parse_log(log);
        assert_eq!(
            (outcome.execs, outcome.coverage, outcome.crash.as_deref()),
            (execs, coverage, crash)
        );
    }

    #[test]
    fn a_clean_run_reports_execs_and_coverage() {
        check(
            "INFO: Seed: 1\n#2\tINITED cov: 120 ft: 130 corp: 3/90b exec/s: 0 rss: 40Mb\n\
             #524288\tpulse  cov: 181 ft: 400 corp: 60/2Kb lim: 107 exec/s: 174762 rss: 60Mb\n\
             #1048576\tDONE   cov: 183 ft: 410 corp: 61/2Kb lim: 107 exec/s: 104857 rss: 61Mb\n\
             Done 1048576 runs in 11 second(s)\nstat::number_of_executed_units: 1048577\n",
            Some(1_048_577),
            Some(183),
            None,
        );
    }

    #[test]
    fn done_line_counts_when_stats_are_missing() {
        check("Done 42 runs in 1 second(s)\n", Some(42), None, None);
    }

    #[test]
    fn a_panic_is_a_crash_with_its_input_file() {
        check(
            "#100\tNEW    cov: 50 ft: 51 corp: 5/20b\nthread '<unnamed>' panicked at src/lib.rs:1:1:\noops\n\
             ==1== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='a/'; Test unit written to a/crash-da39a3ee\n",
            None,
            Some(50),
            Some("a/crash-da39a3ee"),
        );
    }

    #[test]
    fn a_panic_without_an_artifact_is_still_a_crash() {
        let outcome = parse_log("thread '<unnamed>' panicked at fuzz_targets/x.rs:3:5:\n");
        assert!(outcome.crash.is_some_and(|c| c.contains("panicked at")));
    }

    #[test]
    fn every_target_has_a_source_file_and_seeds() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for target in TARGETS {
            assert!(
                fuzz.join("fuzz_targets").join(format!("{target}.rs")).is_file(),
                "{target}.rs"
            );
            assert!(
                fuzz.join("seeds")
                    .join(target)
                    .read_dir()
                    .is_ok_and(|mut d| d.next().is_some()),
                "seeds of {target}"
            );
        }
    }
}

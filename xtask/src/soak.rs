//! `cargo xtask soak`: runs the local behaviour suite N times back to back and reports the flake rate per test.
//!
//! Each run writes its result files to `target/testbed/soak/run-K`; the
//! aggregation (per behaviour × controller: runs, passes, failures, not measured,
//! flake rate) goes to `target/testbed/soak/soak.json` and `soak.md`. Any
//! failure in any run fails the command.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use model::EnvKind;
use report::Outcome;
use serde::Serialize;

use crate::suite::{self, Selection};

#[derive(Debug, clap::Args)]
pub struct Soak {
    /// How many times to run the suite back to back.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    #[command(flatten)]
    selection: Selection,
}

impl Soak {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        suite::prepare_local(root)?;
        let soak_dir = root.join("target/testbed/soak");
        if soak_dir.exists() {
            fs::remove_dir_all(&soak_dir).with_context(|| format!("clearing {}", soak_dir.display()))?;
        }

        let started = Instant::now();
        let mut runs = Vec::new();
        for k in 1..=self.runs {
            println!("xtask: soak run {k}/{}", self.runs);
            let dir = soak_dir.join(format!("run-{k}"));
            let outcome = suite::run(root, EnvKind::Local, &self.selection, &dir, &[])?;
            let results = match outcome.report {
                Ok(report) => report
                    .results
                    .iter()
                    .map(|r| (r.behaviour.clone(), r.controller.clone(), r.outcome))
                    .collect(),
                Err(e) => {
                    eprintln!("xtask: run {k}: {e:#}");
                    Vec::new()
                }
            };
            runs.push(Run {
                run: k,
                nextest_passed: outcome.nextest.is_ok(),
                results,
            });
        }

        let summary = aggregate(&runs, started.elapsed().as_secs_f64());
        let json = soak_dir.join("soak.json");
        let md = soak_dir.join("soak.md");
        fs::write(&json, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        fs::write(&md, markdown(&summary)).with_context(|| format!("writing {}", md.display()))?;
        println!("\n{}", markdown(&summary));
        println!("xtask: wrote {} and {}", json.display(), md.display());
        anyhow::ensure!(
            summary.clean(),
            "the soak was not clean: {} of {} runs failed; see {}",
            summary.failed_runs,
            summary.runs,
            md.display()
        );
        Ok(())
    }
}

/// One run of the suite: what nextest said and what the result files say.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub run: u32,
    pub nextest_passed: bool,
    /// (behaviour, controller, outcome) per result file.
    pub results: Vec<(String, String, Outcome)>,
}

/// One behaviour × controller across all runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TestStats {
    pub behaviour: String,
    pub controller: String,
    /// Runs that produced a result for it.
    pub runs: u32,
    pub passes: u32,
    pub failures: u32,
    /// Runs where it was not measured: not supported by the controller, or not applicable here.
    pub not_measured: u32,
    /// Runs without a result for it although other runs had one.
    pub missing: u32,
    /// Failed or missing runs over the runs where it was measured.
    pub flake_rate: f64,
    /// Runs (1-based) in which it failed or was missing.
    pub failed_in: Vec<u32>,
}

/// `soak.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub runs: u32,
    /// Runs in which nextest failed, a result failed, or a result was missing.
    pub failed_runs: u32,
    pub wall_seconds: f64,
    pub tests: Vec<TestStats>,
}

impl Summary {
    pub fn clean(&self) -> bool {
        self.failed_runs == 0
    }
}

/// Counts per test across runs; tests in catalogue order of first appearance.
pub fn aggregate(runs: &[Run], wall_seconds: f64) -> Summary {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut stats: BTreeMap<(String, String), TestStats> = BTreeMap::new();
    for run in runs {
        for (behaviour, controller, _) in &run.results {
            let key = (behaviour.clone(), controller.clone());
            if let std::collections::btree_map::Entry::Vacant(entry) = stats.entry(key.clone()) {
                order.push(key);
                entry.insert(TestStats {
                    behaviour: behaviour.clone(),
                    controller: controller.clone(),
                    ..TestStats::default()
                });
            }
        }
    }
    let mut failed_runs = 0;
    for run in runs {
        let mut run_failed = !run.nextest_passed;
        for (key, s) in stats.iter_mut() {
            let outcome = run
                .results
                .iter()
                .find(|(b, c, _)| (b, c) == (&key.0, &key.1))
                .map(|(_, _, o)| *o);
            match outcome {
                Some(outcome) => {
                    s.runs += 1;
                    match outcome {
                        Outcome::Pass => s.passes += 1,
                        Outcome::NotSupported | Outcome::NotApplicable | Outcome::NotRun => s.not_measured += 1,
                        Outcome::Fail => {
                            s.failures += 1;
                            s.failed_in.push(run.run);
                            run_failed = true;
                        }
                    }
                }
                None => {
                    s.missing += 1;
                    s.failed_in.push(run.run);
                    run_failed = true;
                }
            }
        }
        if run.results.is_empty() {
            run_failed = true;
        }
        failed_runs += u32::from(run_failed);
    }
    let tests = order
        .into_iter()
        .map(|key| {
            let mut s = stats.remove(&key).expect("every ordered key has stats");
            let counted = s.passes + s.failures + s.missing;
            s.flake_rate = if counted == 0 {
                0.0
            } else {
                f64::from(s.failures + s.missing) / f64::from(counted)
            };
            s
        })
        .collect();
    Summary {
        runs: runs.len() as u32,
        failed_runs,
        wall_seconds,
        tests,
    }
}

/// `soak.md`: one row per test, the failing ones first.
pub fn markdown(summary: &Summary) -> String {
    let mut out = format!(
        "# Soak: {} runs of the local suite, {} failed ({:.0} s)\n\n\
         | behaviour | controller | runs | passes | failures | not measured | missing | flake rate | failed in runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
        summary.runs, summary.failed_runs, summary.wall_seconds
    );
    let mut tests: Vec<&TestStats> = summary.tests.iter().collect();
    tests.sort_by_key(|t| t.failed_in.is_empty());
    for t in tests {
        let failed_in = t.failed_in.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1}% | {} |\n",
            t.behaviour,
            t.controller,
            t.runs,
            t.passes,
            t.failures,
            t.not_measured,
            t.missing,
            t.flake_rate * 100.0,
            failed_in
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: u32, results: &[(&str, &str, Outcome)]) -> Run {
        Run {
            run: k,
            nextest_passed: results.iter().all(|(_, _, o)| *o != Outcome::Fail),
            results: results
                .iter()
                .map(|(b, c, o)| (b.to_string(), c.to_string(), *o))
                .collect(),
        }
    }

    #[track_caller]
    fn check(summary: &Summary, behaviour: &str, controller: &str, want: (u32, u32, u32, u32, u32, f64, &[u32])) {
        let t = summary
            .tests
            .iter()
            .find(|t| t.behaviour == behaviour && t.controller == controller)
            .unwrap_or_else(|| panic!("no stats for {behaviour}/{controller}"));
        assert_eq!(
            (
                t.runs,
                t.passes,
                t.failures,
                t.not_measured,
                t.missing,
                t.flake_rate,
                t.failed_in.as_slice()
            ),
            want
        );
    }

    use Outcome::{Fail, NotApplicable, Pass};

    #[test]
    fn all_passing_runs_are_clean() {
        let runs = [
            run(1, &[("idle", "nginx", Pass), ("tls", "traefik", NotApplicable)]),
            run(2, &[("idle", "nginx", Pass), ("tls", "traefik", NotApplicable)]),
        ];
        let s = aggregate(&runs, 1.0);
        assert!(s.clean());
        check(&s, "idle", "nginx", (2, 2, 0, 0, 0, 0.0, &[]));
        check(&s, "tls", "traefik", (2, 0, 0, 2, 0, 0.0, &[]));
    }

    #[test]
    fn one_failure_in_four_runs_is_a_quarter_flake_rate() {
        let runs: Vec<Run> = (1..=4)
            .map(|k| run(k, &[("idle", "haproxy", if k == 3 { Fail } else { Pass })]))
            .collect();
        let s = aggregate(&runs, 1.0);
        assert!(!s.clean());
        assert_eq!(s.failed_runs, 1);
        check(&s, "idle", "haproxy", (4, 3, 1, 0, 0, 0.25, &[3]));
    }

    #[test]
    fn a_result_missing_from_a_run_counts_against_it() {
        let runs = [
            run(1, &[("a", "nginx", Pass), ("b", "nginx", Pass)]),
            run(2, &[("a", "nginx", Pass)]),
        ];
        let s = aggregate(&runs, 1.0);
        assert_eq!(s.failed_runs, 1);
        check(&s, "b", "nginx", (1, 1, 0, 0, 1, 0.5, &[2]));
    }

    #[test]
    fn a_run_without_results_or_with_a_nextest_failure_fails() {
        let mut broken = run(2, &[("a", "nginx", Pass)]);
        broken.nextest_passed = false;
        let runs = [run(1, &[("a", "nginx", Pass)]), broken, run(3, &[])];
        let s = aggregate(&runs, 1.0);
        assert_eq!(s.failed_runs, 2);
        check(&s, "a", "nginx", (2, 2, 0, 0, 1, 1.0 / 3.0, &[3]));
    }

    #[test]
    fn tests_keep_the_order_of_the_first_run() {
        let s = aggregate(
            &[run(
                1,
                &[("z", "nginx", Pass), ("a", "nginx", Pass), ("z", "haproxy", Pass)],
            )],
            1.0,
        );
        let names: Vec<String> = s
            .tests
            .iter()
            .map(|t| format!("{}/{}", t.behaviour, t.controller))
            .collect();
        assert_eq!(names, ["z/nginx", "a/nginx", "z/haproxy"]);
    }

    #[test]
    fn markdown_lists_failing_tests_first_with_their_rate() {
        let runs = [
            run(1, &[("ok", "nginx", Pass), ("flaky", "nginx", Pass)]),
            run(2, &[("ok", "nginx", Pass), ("flaky", "nginx", Fail)]),
        ];
        let md = markdown(&aggregate(&runs, 12.0));
        assert!(
            md.starts_with("# Soak: 2 runs of the local suite, 1 failed (12 s)"),
            "{md}"
        );
        let flaky = md.find("| flaky | nginx | 2 | 1 | 1 | 0 | 0 | 50.0% | 2 |").expect(&md);
        let ok = md.find("| ok | nginx | 2 | 2 | 0 | 0 | 0 | 0.0% |").expect(&md);
        assert!(flaky < ok);
    }
}

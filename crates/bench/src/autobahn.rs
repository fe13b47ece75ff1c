//! The Autobahn TestSuite fuzzingclient against ws-echo, compared with the expected results
//! (`cargo xtask autobahn`, and the conformance step of `cargo xtask test`).
//!
//! ws-echo's pure echo endpoint (`/ws?hello=false`) is started on port 0 by the bench's
//! [`Launcher`], the fuzzingclient (`wstest`, from the Python 2 virtualenv `cargo xtask autobahn`
//! installs from `pins.toml`) runs the selected cases, and every case's `behavior` and
//! `behaviorClose` must equal `docs/autobahn/expected.json`. `FAILED` is never accepted;
//! `NON-STRICT`, `INFORMATIONAL` and `UNIMPLEMENTED` only where the expected file says so, as
//! tokio-tungstenite does in its CI.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use ws_echo::Config;

use crate::launch::{LOOPBACK_ANY_PORT, Launcher};

/// Cases 1–10: framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close, limits.
const DEFAULT_CASES: [&str; 10] = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"];
/// permessage-deflate cases, run only when ws-echo negotiates the extension.
const DEFLATE_CASES: [&str; 2] = ["12.*", "13.*"];
const AGENT: &str = "ws-echo";
/// Cases 9.* send messages up to 16 MiB; ws-echo's default limit (1 MiB) would close them with 1009.
const MAX_MESSAGE_SIZE: usize = 64 << 20;
const SUITE_TIMEOUT: Duration = Duration::from_secs(45 * 60);

#[derive(Debug, clap::Args)]
pub struct Autobahn {
    /// `wstest` of the Autobahn TestSuite (`cargo xtask autobahn` installs it and passes it here).
    #[arg(long)]
    wstest: PathBuf,
    /// Case patterns to run, comma-separated (e.g. `1.*,2.*` for CI); default 1.* to 10.*.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Rewrite docs/autobahn/expected.json with this run's results instead of comparing.
    #[arg(long)]
    update: bool,
}

impl Autobahn {
    /// Runs the cases against the ws-echo in `bin_dir` and compares (or, with `--update`, records).
    pub fn run(self, root: &Path, bin_dir: &Path) -> anyhow::Result<()> {
        let pins = model::pins::Pins::load(root)?;
        let suite_version = pins.autobahn.suite_version().unwrap_or("?");
        let work = root.join("target/testbed/autobahn");
        let reports = work.join("reports");
        if reports.exists() {
            fs::remove_dir_all(&reports).with_context(|| format!("clearing {}", reports.display()))?;
        }
        fs::create_dir_all(&reports).with_context(|| format!("creating {}", reports.display()))?;

        let config = Config {
            listen: LOOPBACK_ANY_PORT,
            max_message_size: MAX_MESSAGE_SIZE,
            ..Config::default()
        };
        let server = Launcher::unpinned().ws_echo("ws-echo", &bin_dir.join("ws-echo"), &config, &work)?;
        let addr = server.addr()?;
        let mut cases = self.cases.clone();
        if cases.is_empty() {
            cases = DEFAULT_CASES.iter().map(|c| c.to_string()).collect();
            if offers_deflate(addr).context("asking ws-echo for permessage-deflate")? {
                cases.extend(DEFLATE_CASES.iter().map(|c| c.to_string()));
            }
        }
        let spec = work.join("fuzzingclient.json");
        let url = format!("ws://{addr}/ws?hello=false");
        fs::write(
            &spec,
            serde_json::to_string_pretty(&fuzzing_spec(&reports, &url, &cases))?,
        )
        .with_context(|| format!("writing {}", spec.display()))?;

        println!("autobahn: fuzzingclient, cases {} against {url}", cases.join(","));
        let started = Instant::now();
        run_suite(&self.wstest, &spec, &work.join("wstest.log"))?;
        let elapsed = started.elapsed();
        drop(server);

        let index = reports.join("index.json");
        let text = fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
        let actual = parse_index(&text).with_context(|| format!("parsing {}", index.display()))?;
        println!("{}", summary(&actual, elapsed));

        let expected_path = root.join("docs/autobahn/expected.json");
        if self.update {
            let previous = match fs::read_to_string(&expected_path) {
                Ok(text) => parse_expected(&text).with_context(|| format!("parsing {}", expected_path.display()))?,
                Err(_) => Expected::default(),
            };
            let merged = merge(previous, &actual, &cases, suite_version);
            fs::create_dir_all(expected_path.parent().expect("a file inside docs/autobahn"))?;
            fs::write(&expected_path, serde_json::to_string_pretty(&merged)? + "\n")
                .with_context(|| format!("writing {}", expected_path.display()))?;
            println!(
                "autobahn: wrote {} ({} cases)",
                expected_path.display(),
                merged.cases.len()
            );
            let failed: Vec<&CaseId> = actual.iter().filter(|(_, r)| r.failed()).map(|(id, _)| id).collect();
            if !failed.is_empty() {
                bail!("cases failed and may not be accepted as expected: {}", join(&failed));
            }
            return Ok(());
        }

        let text = fs::read_to_string(&expected_path)
            .with_context(|| format!("reading {} (create it with --update)", expected_path.display()))?;
        let expected = parse_expected(&text).with_context(|| format!("parsing {}", expected_path.display()))?;
        let differences = compare(&expected, &actual, &cases);
        if !differences.is_empty() {
            let list: Vec<String> = differences.iter().map(|d| format!("  {d}")).collect();
            bail!(
                "{} Autobahn cases differ from {} (reports: {}):\n{}",
                differences.len(),
                expected_path.display(),
                reports.join("index.html").display(),
                list.join("\n")
            );
        }
        println!("autobahn: all {} cases match {}", actual.len(), expected_path.display());
        Ok(())
    }
}

/// A case ID such as `6.4.3`, ordered numerically part by part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseId(pub String);

impl CaseId {
    fn parts(&self) -> Vec<u64> {
        self.0.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect()
    }

    /// Autobahn's case patterns: `*` matches any run of characters, everything else literally.
    fn matches(&self, pattern: &str) -> bool {
        glob(pattern.as_bytes(), self.0.as_bytes())
    }
}

impl Ord for CaseId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for CaseId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// What the fuzzingclient concluded about one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// `OK`, `NON-STRICT`, `INFORMATIONAL`, `UNIMPLEMENTED` or `FAILED`.
    pub behavior: String,
    /// How the closing handshake went: `OK`, `INFORMATIONAL`, `FAILED`, `WRONG CODE`, `UNCLEAN`, ...
    #[serde(rename = "behaviorClose")]
    pub behavior_close: String,
}

impl CaseResult {
    fn failed(&self) -> bool {
        self.behavior == "FAILED" || self.behavior_close == "FAILED"
    }
}

/// `docs/autobahn/expected.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// How the results were produced, for whoever reads the file.
    #[serde(default)]
    pub note: String,
    pub cases: BTreeMap<CaseId, CaseResult>,
}

/// One way a run differs from the expected results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The case ran but differs from what is expected (or failed, which is never accepted).
    Changed {
        case: CaseId,
        expected: Option<CaseResult>,
        actual: CaseResult,
    },
    /// The case is expected (and selected) but the run has no result for it.
    Missing { case: CaseId },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Changed {
                case,
                expected: Some(e),
                actual,
            } => write!(
                f,
                "{case}: expected {}/{}, got {}/{}",
                e.behavior, e.behavior_close, actual.behavior, actual.behavior_close
            ),
            Difference::Changed {
                case,
                expected: None,
                actual,
            } => write!(
                f,
                "{case}: not in the expected results, got {}/{}",
                actual.behavior, actual.behavior_close
            ),
            Difference::Missing { case } => write!(f, "{case}: expected but did not run"),
        }
    }
}

/// Compares a run with the expected results, for the cases matching `patterns`.
///
/// A `FAILED` outcome is a difference even when the expected file records it.
pub fn compare(expected: &Expected, actual: &BTreeMap<CaseId, CaseResult>, patterns: &[String]) -> Vec<Difference> {
    let selected = |id: &CaseId| patterns.iter().any(|p| id.matches(p));
    let mut differences = Vec::new();
    for (case, result) in actual {
        let want = expected.cases.get(case);
        if result.failed() || want != Some(result) {
            differences.push(Difference::Changed {
                case: case.clone(),
                expected: want.cloned(),
                actual: result.clone(),
            });
        }
    }
    for case in expected.cases.keys() {
        if selected(case) && !actual.contains_key(case) {
            differences.push(Difference::Missing { case: case.clone() });
        }
    }
    differences.sort_by(|a, b| a.case().cmp(b.case()));
    differences
}

impl Difference {
    fn case(&self) -> &CaseId {
        match self {
            Difference::Changed { case, .. } | Difference::Missing { case } => case,
        }
    }
}

/// The expected results after `--update`: the selected cases replaced by this run, the rest kept.
pub fn merge(
    mut previous: Expected,
    actual: &BTreeMap<CaseId, CaseResult>,
    patterns: &[String],
    suite_version: &str,
) -> Expected {
    previous.cases.retain(|id, _| !patterns.iter().any(|p| id.matches(p)));
    previous
        .cases
        .extend(actual.iter().map(|(id, r)| (id.clone(), r.clone())));
    previous.note = format!(
        "Autobahn TestSuite {suite_version} fuzzingclient against ws-echo /ws?hello=false (--max-message-size {MAX_MESSAGE_SIZE}); \
         written by `cargo xtask autobahn --update`, checked by `cargo xtask autobahn`"
    );
    previous
}

/// The results of agent ws-echo in the fuzzingclient's `index.json` (`{agent: {case: {...}}}`).
pub fn parse_index(text: &str) -> anyhow::Result<BTreeMap<CaseId, CaseResult>> {
    let mut agents: BTreeMap<String, BTreeMap<CaseId, CaseResult>> = serde_json::from_str(text)?;
    agents
        .remove(AGENT)
        .with_context(|| format!("no results for agent {AGENT}"))
}

/// Reads the expected file; it may not accept a `FAILED` case.
pub fn parse_expected(text: &str) -> anyhow::Result<Expected> {
    let expected: Expected = serde_json::from_str(text)?;
    let failed: Vec<&CaseId> = expected
        .cases
        .iter()
        .filter(|(_, r)| r.failed())
        .map(|(id, _)| id)
        .collect();
    if !failed.is_empty() {
        bail!(
            "the expected results accept FAILED for {}; FAILED is never acceptable",
            join(&failed)
        );
    }
    Ok(expected)
}

/// Case count, outcome counts and duration, one line each.
pub fn summary(actual: &BTreeMap<CaseId, CaseResult>, elapsed: Duration) -> String {
    let mut behavior: BTreeMap<&str, usize> = BTreeMap::new();
    let mut close: BTreeMap<&str, usize> = BTreeMap::new();
    for r in actual.values() {
        *behavior.entry(&r.behavior).or_default() += 1;
        *close.entry(&r.behavior_close).or_default() += 1;
    }
    let line = |m: &BTreeMap<&str, usize>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    format!(
        "Autobahn: {} cases in {:.0} s\n  behavior: {}\n  behaviorClose: {}",
        actual.len(),
        elapsed.as_secs_f64(),
        line(&behavior),
        line(&close)
    )
}

fn fuzzing_spec(outdir: &Path, url: &str, cases: &[String]) -> serde_json::Value {
    serde_json::json!({
        "outdir": outdir,
        "servers": [{ "agent": AGENT, "url": url }],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    })
}

fn join(ids: &[&CaseId]) -> String {
    ids.iter().map(|id| id.0.as_str()).collect::<Vec<_>>().join(", ")
}

/// A child process killed (and reaped) when dropped, also on error paths.
#[derive(Debug)]
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether ws-echo accepts permessage-deflate when a client offers it.
fn offers_deflate(addr: SocketAddr) -> anyhow::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /ws?hello=false HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).context("reading the handshake response")? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(accepts_deflate(&String::from_utf8_lossy(&head)))
}

fn accepts_deflate(response_head: &str) -> bool {
    response_head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions") && value.contains("permessage-deflate")
        })
    })
}

/// Runs `wstest -m fuzzingclient`, bounded by [`SUITE_TIMEOUT`], its output in `log`.
fn run_suite(wstest: &Path, spec: &Path, log: &Path) -> anyhow::Result<()> {
    let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(wstest)
        .args(["-m", "fuzzingclient", "-s"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", wstest.display()))?;
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + SUITE_TIMEOUT;
    loop {
        if let Some(status) = child.0.try_wait()? {
            if !status.success() {
                bail!("wstest failed ({status}); its output is in {}", log.display());
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the Autobahn fuzzingclient did not finish within {SUITE_TIMEOUT:?} ({})",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(behavior: &str, close: &str) -> CaseResult {
        CaseResult {
            behavior: behavior.into(),
            behavior_close: close.into(),
        }
    }

    fn run(cases: &[(&str, &str, &str)]) -> BTreeMap<CaseId, CaseResult> {
        cases
            .iter()
            .map(|(id, b, c)| (CaseId(id.to_string()), result(b, c)))
            .collect()
    }

    fn expected(cases: &[(&str, &str, &str)]) -> Expected {
        Expected {
            note: String::new(),
            cases: run(cases),
        }
    }

    #[track_caller]
    fn check(expected: &Expected, actual: &[(&str, &str, &str)], patterns: &[&str], want: &[&str]) {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let got: Vec<String> = compare(expected, &run(actual), &patterns)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn identical_results_have_no_differences() {
        let e = expected(&[("1.1.1", "OK", "OK"), ("6.4.1", "NON-STRICT", "OK")]);
        check(
            &e,
            &[("1.1.1", "OK", "OK"), ("6.4.1", "NON-STRICT", "OK")],
            &["1.*", "6.*"],
            &[],
        );
    }

    #[test]
    fn non_strict_is_a_difference_unless_expected() {
        let e = expected(&[("6.4.1", "OK", "OK")]);
        check(
            &e,
            &[("6.4.1", "NON-STRICT", "OK")],
            &["6.*"],
            &["6.4.1: expected OK/OK, got NON-STRICT/OK"],
        );
    }

    #[test]
    fn a_changed_close_behaviour_is_a_difference() {
        let e = expected(&[("7.1.1", "OK", "OK")]);
        check(
            &e,
            &[("7.1.1", "OK", "UNCLEAN")],
            &["7.*"],
            &["7.1.1: expected OK/OK, got OK/UNCLEAN"],
        );
    }

    #[test]
    fn failed_is_never_accepted_even_when_recorded() {
        let e = expected(&[("5.1", "FAILED", "OK")]);
        check(
            &e,
            &[("5.1", "FAILED", "OK")],
            &["5.*"],
            &["5.1: expected FAILED/OK, got FAILED/OK"],
        );
        assert!(parse_expected(r#"{"cases":{"5.1":{"behavior":"FAILED","behaviorClose":"OK"}}}"#).is_err());
    }

    #[test]
    fn unknown_and_missing_cases_are_differences() {
        let e = expected(&[("1.1.1", "OK", "OK"), ("1.1.2", "OK", "OK")]);
        check(
            &e,
            &[("1.1.1", "OK", "OK"), ("1.1.9", "OK", "OK")],
            &["1.*"],
            &[
                "1.1.2: expected but did not run",
                "1.1.9: not in the expected results, got OK/OK",
            ],
        );
    }

    #[test]
    fn cases_outside_the_selection_are_not_missing() {
        let e = expected(&[("1.1.1", "OK", "OK"), ("10.1.1", "OK", "OK")]);
        check(&e, &[("1.1.1", "OK", "OK")], &["1.*"], &[]);
    }

    #[test]
    fn patterns_match_like_autobahn() {
        let id = |s: &str| CaseId(s.into());
        assert!(id("1.1.1").matches("1.*"));
        assert!(!id("10.1.1").matches("1.*"));
        assert!(id("10.1.1").matches("10.*"));
        assert!(id("6.4.3").matches("6.4.3"));
        assert!(id("6.4.3").matches("*"));
        assert!(!id("6.4.3").matches("6.4"));
    }

    #[test]
    fn case_ids_sort_numerically() {
        let mut ids: Vec<CaseId> = ["1.1.10", "10.1.1", "1.1.2", "2.1"]
            .iter()
            .map(|s| CaseId(s.to_string()))
            .collect();
        ids.sort();
        let sorted: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(sorted, ["1.1.2", "1.1.10", "2.1", "10.1.1"]);
    }

    #[test]
    fn update_replaces_selected_cases_and_keeps_the_rest() {
        let previous = expected(&[("1.1.1", "OK", "OK"), ("1.1.2", "OK", "OK"), ("2.1", "OK", "OK")]);
        let merged = merge(
            previous,
            &run(&[("1.1.1", "NON-STRICT", "OK")]),
            &["1.*".to_string()],
            "0.8.2",
        );
        assert_eq!(merged.cases, run(&[("1.1.1", "NON-STRICT", "OK"), ("2.1", "OK", "OK")]));
    }

    #[test]
    fn index_json_results_of_ws_echo_are_read() {
        let index = r#"{"ws-echo": {"1.1.1": {"behavior": "OK", "behaviorClose": "OK", "duration": 2,
            "remoteCloseCode": 1000, "reportfile": "ws_echo_case_1_1_1.json"}}}"#;
        assert_eq!(parse_index(index).unwrap(), run(&[("1.1.1", "OK", "OK")]));
        assert!(parse_index(r#"{"other": {}}"#).is_err());
    }

    #[test]
    fn summary_counts_outcomes() {
        let s = summary(
            &run(&[("1", "OK", "OK"), ("2", "OK", "OK"), ("3", "NON-STRICT", "UNCLEAN")]),
            Duration::from_secs(3),
        );
        assert_eq!(
            s,
            "Autobahn: 3 cases in 3 s\n  behavior: NON-STRICT 1, OK 2\n  behaviorClose: OK 2, UNCLEAN 1"
        );
    }

    #[test]
    fn deflate_is_detected_only_when_negotiated() {
        assert!(accepts_deflate(
            "HTTP/1.1 101 Switching Protocols\r\nsec-websocket-extensions: permessage-deflate\r\n\r\n"
        ));
        assert!(!accepts_deflate(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        ));
    }
}

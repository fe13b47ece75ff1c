//! `bench-dataplane`'s stdin protocol against real data planes: its first line, `pids`, `metrics`,
//! `reload` (which replaces the workers of nginx and HAProxy) and `terminate` (which replaces the
//! data plane itself), an unknown command, then EOF
//! on stdin ends it with status 0 and leaves no data-plane or pod process behind.
//!
//! Needs the data-plane binaries (`cargo xtask tools`) and a built ws-echo next to the
//! bench-dataplane binary (`cargo build --workspace --bins`), or `TESTBED_WS_ECHO`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// Deploying (pods, data plane, first routed request) on a busy 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(90);
/// One command; a reload waits for the controller's pacing (ingress-nginx: one sync per 3.3 s).
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// From EOF on stdin to the process's exit and every process it started being gone.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// A running `bench-dataplane`; dropping it kills it and every process it reported.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every data-plane and pod process it reported.
    seen: BTreeSet<u32>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing assertion must not leak: take everything down hard.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        }
        for pid in &self.seen {
            if is_alive(*pid) {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn ws_echo() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TESTBED_WS_ECHO").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let beside = PathBuf::from(env!("CARGO_BIN_EXE_bench-dataplane")).with_file_name("ws-echo");
    ensure!(
        beside.is_file(),
        "{} is missing: build it (`cargo build --workspace --bins`) or set TESTBED_WS_ECHO",
        beside.display()
    );
    Ok(beside)
}

impl Running {
    /// Starts `bench-dataplane <args>` in its own process group and returns it with its first line.
    fn start(args: &[&str]) -> anyhow::Result<(Running, Value)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bench-dataplane"))
            .args(args)
            .env("TESTBED_WS_ECHO", ws_echo()?)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .context("starting bench-dataplane")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut running = Running {
            child,
            stdin,
            lines,
            seen: BTreeSet::new(),
        };
        let first = running
            .next_line(START_DEADLINE)
            .context("waiting for the first line")?;
        running.note_pids(&first["data_plane_pids"]);
        for pod in first["pods"].as_array().into_iter().flatten() {
            running.seen.extend(pod["pid"].as_u64().map(|p| p as u32));
        }
        Ok((running, first))
    }

    fn next_line(&mut self, within: Duration) -> anyhow::Result<Value> {
        let line = match self.lines.recv_timeout(within) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("no line within {within:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("stdout closed (exit status: {:?})", self.child.try_wait())
            }
        };
        serde_json::from_str(&line).with_context(|| format!("parsing {line:?}"))
    }

    /// Sends one command line and returns its reply, whose `command` must be the line's first word.
    fn send(&mut self, line: &str) -> anyhow::Result<Value> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush())?;
        let reply = self
            .next_line(COMMAND_DEADLINE)
            .with_context(|| format!("waiting for the reply to {line:?}"))?;
        let word = line.split_whitespace().next().unwrap_or("");
        ensure!(
            reply["command"] == word,
            "reply to {line:?} names another command: {reply}"
        );
        ensure!(reply["ok"].is_boolean(), "reply to {line:?} has no ok: {reply}");
        Ok(reply)
    }

    /// Sends a command that must succeed.
    fn ok(&mut self, line: &str) -> anyhow::Result<Value> {
        let reply = self.send(line)?;
        ensure!(reply["ok"] == true, "{line:?} failed: {reply}");
        Ok(reply)
    }

    fn note_pids(&mut self, pids: &Value) {
        self.seen.extend(pids["main"].as_u64().map(|p| p as u32));
        self.seen.extend(workers(pids));
    }

    /// `pids`, remembering every process for the final check.
    fn pids(&mut self) -> anyhow::Result<(u32, BTreeSet<u32>)> {
        let reply = self.ok("pids")?;
        self.note_pids(&reply);
        let main = reply["main"].as_u64().context("no main pid")? as u32;
        Ok((main, workers(&reply)))
    }
}

fn workers(pids: &Value) -> BTreeSet<u32> {
    (pids["workers"].as_array().into_iter().flatten())
        .filter_map(|w| w.as_u64().map(|p| p as u32))
        .collect()
}

fn is_alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn protocol_round_trip(controller: &str) -> anyhow::Result<()> {
    let (mut running, first) = Running::start(&[controller])?;
    ensure!(first["controller"] == controller, "first line: {first}");
    ensure!(first["reloads"] == true, "{controller} reloads for `reload`: {first}");
    ensure!(first["replicas"] == 1, "first line: {first}");
    ensure!(
        first["data_plane_nofile"].as_u64().is_some_and(|n| n > 0),
        "no data-plane RLIMIT_NOFILE: {first}"
    );
    let pods = first["pods"].as_array().context("no pods")?;
    ensure!(pods.len() == 1, "one pod expected: {first}");
    ensure!(pods[0]["pid"].as_u64().is_some_and(|p| p > 0), "no pod pid: {first}");
    let pod = pods[0]["name"].as_str().context("no pod name")?.to_owned();
    let first_main = first["data_plane_pids"]["main"].as_u64().context("no main pid")? as u32;

    let (main, before) = running.pids()?;
    ensure!(main == first_main, "the main process changed: {first_main} -> {main}");
    ensure!(!before.is_empty(), "{controller} has no worker");

    let metrics = running.ok("metrics")?;
    ensure!(metrics["active"] == 0, "no WebSocket is open: {metrics}");
    ensure!(metrics["per_pod"][&pod] == 0, "per_pod: {metrics}");

    let unknown = running.send("bogus")?;
    ensure!(unknown["ok"] == false, "{unknown}");
    ensure!(
        unknown["error"].as_str().is_some_and(|e| e.contains("unknown command")),
        "{unknown}"
    );

    let reload = running.ok("reload")?;
    ensure!(reload["after_ms"].is_u64(), "{reload}");
    ensure!(reload["reloads"] == true, "{reload}");

    // A reload replaces every worker; the old ones hold no connection and leave at once.
    let deadline = Instant::now() + COMMAND_DEADLINE;
    loop {
        let (main, after) = running.pids()?;
        ensure!(
            main == first_main,
            "the reload replaced the main process: {first_main} -> {main}"
        );
        if !after.is_empty() && after.is_disjoint(&before) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{controller}'s workers did not change after the reload: before {before:?}, now {after:?}"
        );
        std::thread::sleep(POLL);
    }

    // `terminate`: the data plane's pod ends as an upgrade ends it; its replacement is a new main
    // process on the same listener, and the old one is gone first.
    let terminate = running.ok("terminate")?;
    running.note_pids(&terminate["pids"]);
    let (gone, after) = (terminate["gone_ms"].as_u64(), terminate["after_ms"].as_u64());
    ensure!(
        gone.zip(after).is_some_and(|(g, a)| g <= a),
        "the old data plane must be gone before its replacement serves: {terminate}"
    );
    let new_main = terminate["pids"]["main"].as_u64().context("no new main pid")? as u32;
    ensure!(
        new_main != first_main,
        "terminate kept the main process {first_main}: {terminate}"
    );
    ensure!(
        !is_alive(first_main),
        "the old main process {first_main} is alive after terminate"
    );
    let (main, _) = running.pids()?;
    ensure!(main == new_main, "pids names {main}, terminate named {new_main}");

    // EOF on stdin: it tears down and exits 0, leaving nothing behind.
    drop(running.stdin.take());
    let deadline = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = running.child.try_wait()? {
            break status;
        }
        ensure!(
            Instant::now() < deadline,
            "still running {EXIT_DEADLINE:?} after stdin closed"
        );
        std::thread::sleep(POLL);
    };
    ensure!(status.success(), "exited with {status}");
    loop {
        let alive: Vec<u32> = running.seen.iter().copied().filter(|p| is_alive(*p)).collect();
        if alive.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "processes still alive after the exit: {alive:?} (of {:?})",
            running.seen
        );
        std::thread::sleep(POLL);
    }
    Ok(())
}

#[test]
fn nginx_reload_replaces_the_workers_terminate_the_data_plane_and_eof_leaves_nothing() -> anyhow::Result<()> {
    protocol_round_trip("nginx")
}

#[test]
fn haproxy_reload_replaces_the_worker_terminate_the_data_plane_and_eof_leaves_nothing() -> anyhow::Result<()> {
    protocol_round_trip("haproxy")
}

#[test]
fn a_bad_command_line_is_a_usage_error() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_bench-dataplane"))
        .args(["nginx", "--pods", "0"])
        .stdin(Stdio::null())
        .output()?;
    ensure!(out.status.code() == Some(2), "status {}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("--pods") && stderr.contains("usage: bench-dataplane"),
        "{stderr}"
    );
    ensure!(
        out.stdout.is_empty(),
        "nothing on stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

//! An interrupted or failing run leaves nothing behind: no process, no temp dir.
//!
//! Each test starts `testbed local-up` (a data plane in front of two ws-echo
//! pods, held until interrupted), records every process it started and its
//! runtime dir, then ends it the way runs end badly: Ctrl-C to the terminal's
//! process group, SIGTERM as a test runner's timeout sends it, or a panic.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use rstest::rstest;

const DEADLINE: Duration = Duration::from_secs(15);

struct Held {
    child: Child,
    runtime_dir: PathBuf,
    processes: BTreeSet<u32>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // A failing assertion must not leak either: take everything down hard.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        for pid in &self.processes {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Starts `testbed local-up` in its own process group (as a shell starts a foreground job).
fn local_up(controller: &str, extra: &[&str]) -> anyhow::Result<Held> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["local-up", "--controller", controller])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting testbed local-up")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the deployment line")?;
    let info: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("parsing {line:?}"))?;
    let runtime_dir = PathBuf::from(info["runtime_dir"].as_str().context("no runtime_dir")?);
    let mut processes = descendants(child.id());
    processes.insert(info["data_plane"]["main"].as_u64().context("no data plane pid")? as u32);
    for worker in info["data_plane"]["workers"].as_array().into_iter().flatten() {
        processes.extend(worker.as_u64().map(|p| p as u32));
    }
    processes.extend(processes.clone().into_iter().flat_map(descendants));
    let held = Held {
        child,
        runtime_dir,
        processes,
    };
    if !held.runtime_dir.is_dir() {
        bail!(
            "the runtime dir {} does not exist while the deployment is up",
            held.runtime_dir.display()
        );
    }
    // The data plane plus two pods, at least.
    if held.processes.len() < 3 {
        bail!(
            "expected the data plane and two pods, found processes {:?}",
            held.processes
        );
    }
    Ok(held)
}

#[track_caller]
fn check_nothing_left(mut held: Held) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let alive: Vec<u32> = held.processes.iter().copied().filter(|p| is_alive(*p)).collect();
        let exited = matches!(held.child.try_wait(), Ok(Some(_)));
        let dir_gone = !held.runtime_dir.exists();
        if exited && alive.is_empty() && dir_gone {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {DEADLINE:?}: testbed exited: {exited}, processes still alive: {alive:?}, runtime dir {} still there: {}",
            held.runtime_dir.display(),
            !dir_gone
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[rstest]
fn ctrl_c_leaves_nothing_behind(#[values("nginx", "traefik", "haproxy")] controller: &str) -> anyhow::Result<()> {
    let held = local_up(controller, &[])?;
    // A terminal delivers Ctrl-C to the whole foreground process group.
    killpg(Pid::from_raw(held.child.id() as i32), Signal::SIGINT)?;
    check_nothing_left(held);
    Ok(())
}

#[rstest]
fn sigterm_leaves_nothing_behind(#[values("nginx", "haproxy")] controller: &str) -> anyhow::Result<()> {
    let held = local_up(controller, &[])?;
    // A test runner's timeout signals the test process itself.
    kill(Pid::from_raw(held.child.id() as i32), Signal::SIGTERM)?;
    check_nothing_left(held);
    Ok(())
}

#[test]
fn failing_run_leaves_nothing_behind() -> anyhow::Result<()> {
    let held = local_up("nginx", &["--panic-after", "300ms"])?;
    check_nothing_left(held);
    Ok(())
}

fn is_alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn descendants(root: u32) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        let Ok(entries) = std::fs::read_dir("/proc") else { break };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(parent) && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}

//! A third-party client (Python `websockets` 17) checks the real binary: hello, echo, reverse, ticks,
//! metric names, readiness after drain, and Close 1001 after a real SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The Python with `websockets` installed: `TESTBED_PYTHON`, else the venv `cargo xtask tools` creates.
fn python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TESTBED_PYTHON") {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/venv/bin/python");
    venv.exists().then_some(venv)
}

#[tokio::test]
async fn python_websockets_client_sees_the_documented_behaviour() {
    let Some(python) = python() else {
        let reason = "no Python with `websockets`: set TESTBED_PYTHON or run `cargo xtask tools` \
                      (creates target/tools/venv with websockets==17.4)";
        if std::env::var("TESTBED_ALLOW_MISSING_TOOLS").as_deref() == Ok("1") {
            println!("SKIPPED python_websockets_client_sees_the_documented_behaviour: {reason}");
            return;
        }
        panic!("{reason} (or set TESTBED_ALLOW_MISSING_TOOLS=1 to skip)");
    };
    let mut server = Binary::start(&[
        "--tick-interval",
        "200ms",
        "--drain-delay",
        "200ms",
        "--shutdown-grace",
        "300ms",
    ])
    .await
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_check.py");
    let mut client = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", server.addr))
        .args(["--tick-interval", "0.2", "--hold"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", python.display(), script.display()));
    let mut out = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Python start-up and the checks before the hold take a few seconds on a loaded machine.
    let held = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = out.next_line().await.unwrap() {
            seen.push(line.clone());
            if line == "HOLDING" {
                return true;
            }
        }
        false
    })
    .await;
    if held != Ok(true) {
        let held = held.map_err(|_| "timed out after 60 s");
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt;
        let _ = client.stderr.take().unwrap().read_to_string(&mut stderr).await;
        panic!("python client did not reach the hold phase: {held:?}\nstdout: {seen:#?}\nstderr: {stderr}");
    }
    server.signal(Signal::SIGTERM);
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("python client output after SIGTERM")
        .unwrap()
    {
        seen.push(line);
    }
    let status = within("the python client to exit", client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "python client failed ({status}): {seen:#?}");
    for check in [
        "OK hello_first",
        "OK echo_text_and_binary",
        "OK reverse_mode",
        "OK ticks_at_interval",
        "OK metric_names",
        "OK readyz_503_after_drain",
        "CLOSE 1001",
        "OK close_1001_after_sigterm",
    ] {
        assert!(
            seen.iter().any(|l| l == check),
            "python client did not report {check:?}: {seen:#?}"
        );
    }
    let exit = within("ws-echo to exit", server.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "ws-echo exited with {exit}");
}

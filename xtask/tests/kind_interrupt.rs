//! Ctrl-C during `cargo xtask e2e --env kind` deletes the cluster: proven with fake kind, kubectl
//! and helm on PATH that record their calls, and a fake Docker engine that answers the ping.
//!
//! The run is interrupted while `kind create cluster` is still running, the way a user's Ctrl-C
//! reaches it: SIGINT to the whole process group.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A fake tool: logs its arguments, answers `version` with the pinned version, and holds
/// `create cluster` open like a slow cluster start.
fn fake_tool(dir: &Path, name: &str, version_line: &str, log: &Path) {
    let script = format!(
        "#!/bin/sh\n\
         echo \"{name} $*\" >> '{log}'\n\
         case \"$1\" in\n\
           version) echo '{version_line}' ;;\n\
           create) sleep 60 ;;\n\
         esac\n",
        log = log.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Answers every request on the socket with 200 "OK", which is all the `_ping` preflight asks.
fn fake_docker(socket: &Path) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK");
        }
    });
}

#[track_caller]
fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("xtask did not exit within {deadline:?} of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_while_the_cluster_is_created_deletes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fakes = tmp.path().join("fakes");
    let tools = tmp.path().join("tools");
    let state = tmp.path().join("kind");
    std::fs::create_dir_all(&fakes).unwrap();
    let log = tmp.path().join("calls.log");
    std::fs::write(&log, "").unwrap();
    fake_tool(&fakes, "kind", "kind v0.33.0 go1.25 linux/amd64", &log);
    fake_tool(&fakes, "kubectl", "Client Version: v1.37.0", &log);
    fake_tool(&fakes, "helm", "version.BuildInfo{Version:\"v3.19.0\"}", &log);
    let socket = tmp.path().join("docker.sock");
    fake_docker(&socket);

    let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap_or_default());
    let mut xtask = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["e2e", "--env", "kind", "--controller", "nginx"])
        .env("PATH", path)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("TESTBED_TOOLS_BIN", &tools)
        .env("TESTBED_KIND_DIR", &state)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("`kind create cluster` to start", Duration::from_secs(60), || {
        calls().contains("kind create cluster")
    });

    // Ctrl-C: the terminal signals the whole foreground process group.
    let group = format!("-{}", xtask.id());
    let sent = Command::new("kill").args(["-INT", "--", &group]).status().unwrap();
    assert!(sent.success(), "kill -INT {group} failed");
    let status = wait_exit(&mut xtask, Duration::from_secs(30));

    let calls = calls();
    assert!(
        calls.contains("kind delete cluster --name ws-testbed"),
        "the interrupted run did not delete the cluster; calls:\n{calls}"
    );
    assert_eq!(status.code(), Some(130), "exit status after SIGINT: {status}");
    assert!(
        calls.lines().filter(|l| l.starts_with("kind delete")).count() == 1,
        "the cluster is deleted once:\n{calls}"
    );
}

//! `testbed load storm` end to end: the binary holds connections to an
//! in-process ws-echo, the pod shuts down (Close 1001) and comes back on the
//! same port, and the JSON result tells the storm.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

async fn pod(listen: std::net::SocketAddr, name: &str) -> Result<ws_echo::Running> {
    let config = ws_echo::Config {
        listen,
        pod_name: Some(name.into()),
        shutdown_grace: Duration::ZERO,
        ..ws_echo::Config::default()
    };
    Ok(ws_echo::spawn(config).await?)
}

async fn wait_for_file(path: &Path, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{} did not appear within {within:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_storm_reports_a_pod_restart_as_json() -> Result<()> {
    let first = pod("127.0.0.1:0".parse()?, "first").await?;
    let addr = first.local_addr();
    let dir = tempfile::tempdir()?;
    let ready = dir.path().join("ready");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["load", "storm", "-c", "40", "--addr", &addr.to_string()])
        .args([
            "--initial",
            "100ms",
            "--max",
            "400ms",
            "--jitter",
            "0.5",
            "--factor",
            "2",
        ])
        .args(["--settle", "300ms", "--deadline", "20s", "--wait", "20s", "--seed", "5"])
        .arg("--ready-file")
        .arg(&ready)
        .args(["--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting testbed load storm")?;
    assert_eq!(wait_for_file(&ready, Duration::from_secs(20)).await?, "ready 40\n");

    // The pod goes away (Close 1001 to every client) and its replacement
    // listens on the same port after a 300 ms outage.
    first.shutdown();
    first.wait().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _second = pod(addr, "second").await?;

    let output = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .context("testbed load storm did not end")??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("storm: ready 40"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&output.stdout).context("parsing the JSON result")?;
    assert_eq!(r["mode"], "storm");
    assert_eq!(r["outcome"], "settled", "{r:#}");
    for (field, want) in [("connected", 40), ("dropped", 40), ("drops", 40), ("reconnected", 40)] {
        assert_eq!(r[field], want, "{field}: {r:#}");
    }
    assert_eq!(r["drop_causes"]["close 1001"], 40, "{r:#}");
    assert_eq!(
        r["policy"],
        serde_json::json!({ "initial_ms": 100, "max_ms": 400, "factor": 2.0, "jitter": 0.5 })
    );
    assert_eq!(r["seed"], 5);
    // The outage refused the early attempts.
    assert!(r["failed_handshakes"]["refused"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(r["time_to_99_s"].as_f64().is_some_and(|t| t >= 0.1), "{r:#}");
    let timeline = r["timeline"].as_array().context("no timeline")?;
    assert_eq!(timeline.last().map(|s| &s["open"]), Some(&serde_json::json!(40)));
    Ok(())
}

//! Puts one ws-echo pod behind a local data plane (nginx, HAProxy or Traefik) for `cargo xtask bench`.
//!
//! Usage: `bench-dataplane <nginx|haproxy|traefik>`. Deploys through the testbed's `LocalEnv`
//! (pods use `TESTBED_WS_ECHO` when set), prints one JSON line — `controller`, `addr` (the
//! proxy), `host`, `pod_addr` (the pod, for the direct baseline), `data_plane` (its version) —
//! then holds the deployment until stdin closes or SIGTERM/SIGINT arrives, and tears it down.
//! Its children inherit its CPU affinity, so `taskset` on this process pins the whole server side.

use anyhow::Context;
use model::{Controller, IngressSpec};
use testbed::Environment;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let name = std::env::args()
        .nth(1)
        .context("usage: bench-dataplane <nginx|haproxy|traefik>")?;
    let controller: Controller = name.parse()?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let env = testbed::local::LocalEnv::new()?;
    let deployment = env
        .deploy(controller, &IngressSpec::new(1))
        .await
        .with_context(|| format!("deploying ws-echo behind {controller}"))?;
    let pods = deployment.pods().await.context("listing the pods")?;
    let pod = pods.first().context("the deployment has no pod")?;
    let versions = deployment.versions().await;
    let endpoint = deployment.endpoint();
    let line = serde_json::json!({
        "controller": controller.name(),
        "addr": endpoint.addr.to_string(),
        "host": endpoint.host,
        "url": endpoint.ws_url("/ws?hello=false"),
        "pod_addr": pod.addr.to_string(),
        "data_plane": versions.data_plane,
    });
    println!("{line}");
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    let stdin_closed = async {
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = stdin_closed => {}
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    deployment.teardown().await.context("tearing the deployment down")?;
    Ok(())
}

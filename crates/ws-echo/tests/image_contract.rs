//! Contract test for the `ws-echo:dev` container image (built by `cargo xtask image`).
//!
//! Runs the image the way the manifests run it (read-only root filesystem, all
//! capabilities dropped) and checks what Kubernetes relies on: `/healthz`, a
//! WebSocket echo, a non-root process, and Close 1001 to clients on
//! `docker stop` (SIGTERM) within the grace period. With no Docker engine the
//! test reports a skip, unless `TESTBED_REQUIRE_DOCKER=1`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use testcontainers::core::{ContainerPort, IntoContainerPort};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const IMAGE: &str = "ws-echo";
const PORT: ContainerPort = ContainerPort::Tcp(8080);

fn image_tag() -> String {
    std::env::var("TESTBED_IMAGE_TAG").unwrap_or_else(|_| "dev".to_owned())
}

#[tokio::test]
async fn image_serves_echoes_as_non_root_and_closes_1001_on_docker_stop() -> anyhow::Result<()> {
    let Some(docker) = docker_or_skip().await? else {
        return Ok(());
    };
    let tag = image_tag();
    docker
        .inspect_image(&format!("{IMAGE}:{tag}"))
        .await
        .with_context(|| format!("image {IMAGE}:{tag} is missing: run `cargo xtask image`"))?;

    let container = GenericImage::new(IMAGE, tag.as_str())
        .with_exposed_port(8080.tcp())
        .with_env_var("POD_NAME", "contract-pod")
        .with_env_var("SHUTDOWN_GRACE", "1s")
        .with_env_var("LOG_FORMAT", "json")
        .with_readonly_rootfs(true)
        .with_cap_drop("ALL")
        .with_security_opt("no-new-privileges")
        .start()
        .await
        .context("starting the ws-echo container")?;
    let port = container.get_host_port_ipv4(PORT).await?;
    let addr = format!("127.0.0.1:{port}");

    wait_for_healthz(&addr, Duration::from_secs(10)).await?;

    let inspect = docker.inspect_container(container.id(), None).await?;
    let pid = inspect.state.and_then(|s| s.pid).context("container has no pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("Uid:"), "65532", "the server process must run as uid 65532");
    assert_eq!(
        field("CapEff:"),
        "0000000000000000",
        "the server process must hold no capabilities"
    );

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .context("upgrading /ws")?;
    let hello = next_message(&mut ws).await?;
    let hello: serde_json::Value = serde_json::from_str(hello.to_text()?)?;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["pod"], "contract-pod");
    ws.send(Message::text("through the image")).await?;
    assert_eq!(next_message(&mut ws).await?, Message::text("through the image"));

    let stop_started = Instant::now();
    let stop = tokio::spawn({
        let id = container.id().to_owned();
        let docker = docker.clone();
        async move {
            docker
                .stop_container(
                    &id,
                    Some(bollard::query_parameters::StopContainerOptions {
                        t: Some(10),
                        signal: None,
                    }),
                )
                .await
        }
    });
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(8), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            Ok(other) => bail!("connection ended without a close frame: {other:?}"),
            Err(_) => bail!("no close frame within 8 s of docker stop"),
        }
    };
    let elapsed = stop_started.elapsed();
    assert_eq!(
        close.map(|f| f.code),
        Some(CloseCode::Away),
        "docker stop must end with Close 1001"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "close came before the 1 s shutdown grace: {elapsed:?}"
    );
    stop.await??;
    let exit = docker
        .inspect_container(container.id(), None)
        .await?
        .state
        .and_then(|s| s.exit_code);
    assert_eq!(exit, Some(0), "ws-echo must exit 0 after a graceful shutdown");
    Ok(())
}

async fn docker_or_skip() -> anyhow::Result<Option<bollard::Docker>> {
    let require = std::env::var("TESTBED_REQUIRE_DOCKER").as_deref() == Ok("1");
    let docker = match bollard::Docker::connect_with_local_defaults() {
        Ok(docker) => docker,
        Err(err) if !require => {
            eprintln!("SKIPPED: no Docker engine ({err})");
            return Ok(None);
        }
        Err(err) => return Err(err).context("TESTBED_REQUIRE_DOCKER=1 but no Docker engine"),
    };
    match docker.ping().await {
        Ok(_) => Ok(Some(docker)),
        Err(err) if !require => {
            eprintln!("SKIPPED: the Docker engine does not answer ({err})");
            Ok(None)
        }
        Err(err) => Err(err).context("TESTBED_REQUIRE_DOCKER=1 but the Docker engine does not answer"),
    }
}

async fn wait_for_healthz(addr: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(addr, "/healthz").await {
            Ok(200) => return Ok(()),
            Ok(status) => last = format!("status {status}"),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out after {limit:?} waiting for GET /healthz to answer 200 (last: {last})")
}

async fn http_get(addr: &str, path: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: contract\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let head = String::from_utf8_lossy(&response);
    let status = head.split_whitespace().nth(1).context("empty response")?;
    Ok(status.parse()?)
}

async fn next_message<S>(ws: &mut S) -> anyhow::Result<Message>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return Ok(message),
            Ok(other) => bail!("connection ended: {other:?}"),
            Err(_) => bail!("no message within 5 s"),
        }
    }
}

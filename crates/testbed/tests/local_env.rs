//! Integration tests of the local environment: each real data plane in front of ws-echo pods.
//!
//! Needs the pinned binaries (`cargo xtask tools`) and `cargo build -p ws-echo`;
//! `cargo xtask test` does both first.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use model::{Affinity, Controller, CookieAffinity, Drain, IngressSpec, PodSettings};
use model::{Endpoint, EnvKind};
use rstest::rstest;
use testbed::env::{Deployment, TerminationRecord};
use testbed::local::{DataPlaneProcesses, LocalDeployment, LocalEnv};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Short drain figures so each test takes a few seconds.
fn quick_spec() -> IngressSpec {
    IngressSpec::new(3).with_drain(Drain {
        prestop_delay: Duration::from_millis(300),
        termination_grace: Duration::from_secs(3),
        shutdown_grace: Duration::from_millis(200),
    })
}

async fn deploy(controller: Controller, spec: &IngressSpec) -> anyhow::Result<LocalDeployment> {
    init_tracing();
    LocalEnv::new()?
        .deploy_local(controller, spec)
        .await
        .with_context(|| format!("deploying behind {controller} (tools missing? run `cargo xtask tools`)"))
}

/// Opens a WebSocket through the ingress and returns it with the pod named in the hello.
async fn connect(endpoint: &Endpoint) -> anyhow::Result<(Ws, String)> {
    let tcp = TcpStream::connect(endpoint.addr)
        .await
        .context("dialling the ingress")?;
    let (mut ws, response) = tokio_tungstenite::client_async(endpoint.ws_url("/ws"), MaybeTlsStream::Plain(tcp))
        .await
        .context("WebSocket handshake through the ingress")?;
    anyhow::ensure!(response.status() == 101, "handshake status {}", response.status());
    let hello = next_text(&mut ws).await?;
    let hello: serde_json::Value = serde_json::from_str(&hello).context("parsing the hello")?;
    let pod = hello["pod"].as_str().context("hello without a pod")?.to_owned();
    Ok((ws, pod))
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .context("waiting for a message")?
            .context("connection ended")??;
        match msg {
            Message::Text(t) => return Ok(t.to_string()),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => bail!("unexpected message {other:?}"),
        }
    }
}

/// Sends `text` and expects it back (ticks and hellos skipped).
async fn echo(ws: &mut Ws, text: &str) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await.context("sending")?;
    loop {
        let got = next_text(ws).await?;
        if got == text {
            return Ok(());
        }
        anyhow::ensure!(got.contains("\"type\""), "expected the echo of {text:?}, got {got:?}");
    }
}

async fn pod_names(d: &dyn Deployment) -> anyhow::Result<BTreeSet<String>> {
    Ok(d.pods().await?.into_iter().map(|p| p.name).collect())
}

#[track_caller]
fn check_termination_order(record: &TerminationRecord, expect_sigkill: bool) {
    let at = |t: Option<SystemTime>, what: &str| t.unwrap_or_else(|| panic!("{what} missing in {record:#?}"));
    let started = at(record.started, "started");
    let removed = at(record.endpoint_removed, "endpoint_removed");
    let exited = at(record.exited, "exited");
    assert!(started <= removed && removed <= exited, "{record:#?}");
    let sigterm = at(record.sigterm, "sigterm");
    let prestop = at(record.prestop_done, "prestop_done");
    assert!(
        started <= prestop && prestop <= sigterm && sigterm <= exited,
        "{record:#?}"
    );
    match (expect_sigkill, record.sigkill) {
        (true, Some(kill)) => {
            assert!(sigterm <= kill && kill <= exited, "{record:#?}");
            assert_eq!(record.exit_status.as_deref(), Some("signal 9"), "{record:#?}");
        }
        (false, None) => assert_eq!(record.exit_status.as_deref(), Some("exit 0"), "{record:#?}"),
        _ => panic!("sigkill expected: {expect_sigkill}, got {record:#?}"),
    }
}

#[rstest]
#[tokio::test]
async fn echo_passes_through_the_data_plane(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
) -> anyhow::Result<()> {
    let d = deploy(controller, &quick_spec()).await?;
    let (mut ws, pod) = connect(d.endpoint()).await?;
    assert!(pod_names(&d).await?.contains(&pod), "hello from unknown pod {pod}");
    echo(&mut ws, "hello through the ingress").await?;
    let version = d.versions().await.data_plane;
    assert!(!version.starts_with("unknown"), "{version}");
    let metrics = d.pod_metrics(&pod).await?;
    assert!(metrics.contains("websocket_connections_active"), "{metrics}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn pod_deletion_follows_the_kubernetes_order(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
    #[values(false, true)] ignore_sigterm: bool,
) -> anyhow::Result<()> {
    let spec = quick_spec().with_pod(PodSettings {
        ignore_sigterm,
        ..PodSettings::default()
    });
    let d = deploy(controller, &spec).await?;
    let victim = d.pods().await?[0].name.clone();
    let record = d.delete_pod(&victim).await?.wait(Duration::from_secs(10)).await?;
    check_termination_order(&record, ignore_sigterm);
    let left = pod_names(&d).await?;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&victim));
    // New connections only reach the pods that are left.
    for _ in 0..6 {
        let (_ws, pod) = connect(d.endpoint()).await?;
        assert_ne!(pod, victim);
    }
    Ok(())
}

#[rstest]
#[tokio::test]
async fn rollout_restart_replaces_every_pod(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
) -> anyhow::Result<()> {
    let d = deploy(controller, &quick_spec()).await?;
    let before = pod_names(&d).await?;
    d.rollout_restart().await?;
    let pods = d.pods().await?;
    let after: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(before.is_disjoint(&after), "before {before:?}, after {after:?}");
    assert!(pods.iter().all(|p| p.ready), "{pods:?}");
    // The data plane follows through its controller model, in its own time.
    let deadline = tokio::time::Instant::now() + controller.info().control_loop.worst_lag() + Duration::from_secs(5);
    loop {
        let reached = connect(d.endpoint()).await.map(|(_ws, pod)| pod);
        match reached {
            Ok(pod) if after.contains(&pod) => return Ok(()),
            other if tokio::time::Instant::now() > deadline => {
                bail!("no connection reached a new pod {after:?} by the deadline; last: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await, // pacing of the poll
        }
    }
}

#[rstest]
#[tokio::test]
async fn endpoint_change_keeps_workers_and_connections(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
) -> anyhow::Result<()> {
    // A long preStop keeps scaled-down pods serving their open connections.
    let spec = quick_spec().with_drain(Drain {
        prestop_delay: Duration::from_secs(5),
        termination_grace: Duration::from_secs(6),
        shutdown_grace: Duration::from_millis(200),
    });
    let d = deploy(controller, &spec).await?;
    let (mut ws, _) = connect(d.endpoint()).await?;
    let before = d.data_plane_processes();
    d.scale(4).await?;
    assert_eq!(d.pods().await?.iter().filter(|p| p.ready).count(), 4);
    d.scale(2).await?;
    assert_eq!(d.pods().await?.iter().filter(|p| p.ready).count(), 2);
    assert_eq!(
        d.data_plane_processes(),
        before,
        "an endpoint change must not reload {controller}"
    );
    echo(&mut ws, "still here after scaling").await?;
    Ok(())
}

/// Workers that were not there before.
fn new_workers(before: &DataPlaneProcesses, after: &DataPlaneProcesses) -> Vec<u32> {
    after
        .workers
        .iter()
        .copied()
        .filter(|p| !before.workers.contains(p))
        .collect()
}

/// A new Ingress (host) for the same Service: ingress-nginx reloads for its server block; the
/// HAProxy controller adds map rows over the runtime API; Traefik applies it in process.
#[rstest]
#[case::nginx(Controller::Nginx, true)]
#[case::haproxy(Controller::Haproxy, false)]
#[case::traefik(Controller::Traefik, false)]
#[tokio::test]
async fn a_new_route_reloads_nginx_only(#[case] controller: Controller, #[case] reloads: bool) -> anyhow::Result<()> {
    let spec = quick_spec().with_data_plane_drain_limit(Duration::from_secs(2));
    let d = deploy(controller, &spec).await?;
    let (mut ws, _) = connect(d.endpoint()).await?;
    let before = d.data_plane_processes();
    d.apply_unrelated_change().await?;
    let after = d.data_plane_processes();
    assert_eq!(after.main, before.main, "the main process stays");
    if reloads {
        assert!(
            !new_workers(&before, &after).is_empty(),
            "{controller} reloads for a new server block: workers before {before:?}, after {after:?}"
        );
    } else {
        assert_eq!(after, before, "{controller} must not reload for a new route");
        echo(&mut ws, "still here after the new route").await?;
    }
    // The new route answers (apply_unrelated_change waited for it; ask again to show it).
    let addr = d.endpoint().addr;
    let new_route = probe::ProbeOptions::new(addr, &format!("http://unrelated-1.testbed.local:{}/", addr.port()))?;
    let answer = probe::http_request(&new_route, http::Method::POST, "/session", Vec::new()).await?;
    assert_eq!(answer.status, http::StatusCode::OK, "{controller}: the new route");
    let (mut ws, _) = connect(d.endpoint()).await?;
    echo(&mut ws, "the old route after the new one").await?;
    Ok(())
}

/// A controller-wide change the controller reloads for: nginx and HAProxy replace their workers;
/// Traefik, which never reloads, applies its nearest equivalent in process.
#[rstest]
#[case::nginx(Controller::Nginx, true)]
#[case::haproxy(Controller::Haproxy, true)]
#[case::traefik(Controller::Traefik, false)]
#[tokio::test]
async fn a_controller_change_replaces_the_workers_of_nginx_and_haproxy(
    #[case] controller: Controller,
    #[case] reloads: bool,
) -> anyhow::Result<()> {
    let spec = quick_spec().with_data_plane_drain_limit(Duration::from_secs(2));
    let d = deploy(controller, &spec).await?;
    let before = d.data_plane_processes();
    d.apply_controller_change().await?;
    let after = d.data_plane_processes();
    assert_eq!(after.main, before.main, "the main process stays");
    assert_eq!(
        !new_workers(&before, &after).is_empty(),
        reloads,
        "{controller}: workers before {before:?}, after {after:?}"
    );
    let (mut ws, _) = connect(d.endpoint()).await?;
    echo(&mut ws, "after the controller change").await?;
    // A second change is a change again.
    let before = d.data_plane_processes();
    d.apply_controller_change().await?;
    assert_eq!(!new_workers(&before, &d.data_plane_processes()).is_empty(), reloads);
    Ok(())
}

/// The data plane's own pod terminated, as a controller upgrade does, and replaced once it is
/// gone: the open WebSocket ends, the replacement is a new process on the same listener, and
/// a new WebSocket through it reaches a pod. Endpoint changes after it reach the replacement.
#[rstest]
#[tokio::test]
async fn a_replaced_data_plane_serves_the_same_listener(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
) -> anyhow::Result<()> {
    let spec = quick_spec().with_data_plane_drain_limit(Duration::from_secs(1));
    let d = deploy(controller, &spec).await?;
    let (mut ws, _) = connect(d.endpoint()).await?;
    let before = d.data_plane_processes();
    let replaced = d.replace_data_plane().await?;
    let after = d.data_plane_processes();
    assert_ne!(after.main, before.main, "{controller}: a new data-plane process");
    let exited = replaced.old.exited.context("the old data plane's exit time")?;
    assert!(
        exited <= replaced.ready,
        "{controller}: the replacement served before the old one exited"
    );
    assert!(
        std::fs::metadata(format!("/proc/{}", before.main)).is_err(),
        "{controller}: the old data plane ({}) is still running",
        before.main
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        !matches!(ended, Ok(Some(Ok(Message::Text(_) | Message::Binary(_))))),
        "{controller}: the WebSocket held through the old data plane should have ended: {ended:?}"
    );
    let (mut ws, _) = connect(d.endpoint()).await?;
    echo(&mut ws, "through the replacement").await?;
    d.scale(4).await?;
    let pods = pod_names(&d).await?;
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen != pods {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{controller}: the replacement routed to {seen:?} of {pods:?} within 30 s of scaling"
        );
        let (_ws, pod) = connect(d.endpoint()).await?;
        seen.insert(pod);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Knob {
    TlsWithProxyProtocol,
    CookieAffinity,
    ClientIpAffinity,
    IdleTimeout,
    DrainLimit,
    BackendConnections,
}

/// Deploying proves the real binary accepted the rendered configuration and
/// routes to every pod (the harness dials with TLS and PROXY headers when asked).
#[rstest]
#[tokio::test]
async fn every_knob_renders_a_config_the_data_plane_accepts(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
    #[values(
        Knob::TlsWithProxyProtocol,
        Knob::CookieAffinity,
        Knob::ClientIpAffinity,
        Knob::IdleTimeout,
        Knob::DrainLimit,
        Knob::BackendConnections
    )]
    knob: Knob,
) -> anyhow::Result<()> {
    let spec = match knob {
        Knob::TlsWithProxyProtocol => quick_spec().with_tls().with_proxy_protocol(),
        Knob::CookieAffinity => quick_spec().with_affinity(Affinity::Cookie(CookieAffinity::default())),
        Knob::ClientIpAffinity => quick_spec().with_affinity(Affinity::ClientIp),
        Knob::IdleTimeout => quick_spec().with_idle_timeout(Duration::from_secs(3)),
        Knob::DrainLimit => quick_spec().with_data_plane_drain_limit(Duration::from_secs(5)),
        Knob::BackendConnections => quick_spec().with_backend_connections(100_000),
    };
    if let Err(unsupported) = model::capability::check(controller, EnvKind::Local, &spec) {
        // What the controller cannot express is refused before any process starts.
        let err = LocalEnv::new()?.deploy_local(controller, &spec).await.unwrap_err();
        assert!(err.to_string().contains(&unsupported.knob), "{controller}: {err}");
        return Ok(());
    }
    let d = deploy(controller, &spec).await?;
    assert_eq!(d.pods().await?.len(), 3);
    assert_eq!(d.test_ca().is_some(), spec.tls);
    if let Knob::CookieAffinity = knob {
        // The affinity cookie arrives on the 101 itself.
        let tcp = TcpStream::connect(d.endpoint().addr).await?;
        let (_ws, response) =
            tokio_tungstenite::client_async(d.endpoint().ws_url("/ws"), MaybeTlsStream::Plain(tcp)).await?;
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert!(
            cookies
                .iter()
                .any(|c| c.to_str().is_ok_and(|c| c.starts_with("TESTBED_AFFINITY="))),
            "{controller}: no affinity cookie on the 101: {:?}",
            response.headers()
        );
    }
    Ok(())
}

/// The kind environment's readiness request (`wait_routed`) against the same data planes run
/// locally with PROXY protocol on: ingress-nginx and HAProxy then refuse every connection that
/// does not start with a PROXY header, so a readiness request without one never becomes ready.
#[rstest]
#[tokio::test]
async fn kind_readiness_request_gets_through_a_proxy_protocol_listener(
    #[values(
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway
    )]
    controller: Controller,
) -> anyhow::Result<()> {
    use testbed::kind::{readiness_probe, wait_healthz};
    let d = deploy(controller, &quick_spec().with_proxy_protocol()).await?;
    let opts = readiness_probe(d.endpoint(), true, None)?;
    assert!(opts.proxy_client.is_some(), "the request carries a PROXY header");
    wait_healthz("the local data plane to answer /healthz", &opts).await?;
    if controller != Controller::Traefik {
        // Traefik's trustedIPs accepts connections without a header; the others must refuse them.
        let plain = readiness_probe(d.endpoint(), false, None)?;
        let refused = probe::http_get(&plain, "/healthz").await;
        assert!(
            !refused.as_ref().is_ok_and(|r| r.status.is_success()),
            "{controller} answered a request without a PROXY header: {:?}",
            refused.map(|r| r.status)
        );
    }
    Ok(())
}

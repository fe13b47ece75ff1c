//! Short runs of each load-generator mode against an in-process ws-echo.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use probe::ProbeOptions;
use probe::load::{self, ChurnConfig, IdleConfig, LoadError, Ramp, RttConfig, Target};
use probe::tls::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

mod support;

async fn target(path: &str) -> Result<(ws_echo::Running, Target)> {
    let config = ws_echo::Config {
        listen: "127.0.0.1:0".parse()?,
        pod_name: Some("load".into()),
        shutdown_grace: Duration::from_millis(50),
        ..ws_echo::Config::default()
    };
    let pod = ws_echo::spawn(config).await.context("starting ws-echo")?;
    let addr = pod.local_addr();
    let opts = ProbeOptions::new(addr, &format!("ws://{addr}{path}"))?.expect_hello(false);
    Ok((pod, Target::new(opts)))
}

#[tokio::test]
async fn rtt_mode_measures_round_trips_and_percentiles() -> Result<()> {
    let (_pod, target) = target("/ws?hello=false").await?;
    let result = load::run_rtt(
        &target,
        RttConfig {
            connections: 4,
            size: 64,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            ramp: Ramp::default(),
            progress: false,
        },
    )
    .await?;
    assert_eq!(
        (result.connected, result.connect_failures, result.ended_early),
        (4, 0, 0)
    );
    assert!(result.messages > 10, "{result:?}");
    let l = result.latency;
    assert!(
        l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us,
        "{l:?}"
    );
    assert!((result.msgs_per_sec - result.messages as f64 / result.duration_s).abs() < 1.0);
    serde_json::to_string(&result)?;
    Ok(())
}

#[tokio::test]
async fn rtt_mode_skips_the_hello_frame() -> Result<()> {
    let (_pod, target) = target("/ws").await?;
    let config = RttConfig {
        connections: 2,
        duration: Duration::from_millis(150),
        warmup: Duration::ZERO,
        ..RttConfig::default()
    };
    let result = load::run_rtt(&target, config).await?;
    assert!(result.messages > 0 && result.ended_early == 0, "{result:?}");
    Ok(())
}

#[tokio::test]
async fn idle_mode_holds_connections_over_several_sources() -> Result<()> {
    let (_pod, target) = target("/ws?hello=false").await?;
    let target = target.spread_sources("127.0.3.1".parse()?, 3);
    let result = load::run_idle(
        &target,
        IdleConfig {
            connections: 30,
            hold: Duration::from_millis(100),
            ramp: Ramp {
                rate: Some(1000.0),
                max_pending: 8,
            },
            // In-process server: our own RSS stands in for the server's.
            server_pid: Some(std::process::id()),
            progress: false,
        },
    )
    .await?;
    assert_eq!(
        (result.connected, result.failed, result.open_at_end),
        (30, 0, 30),
        "{result:?}"
    );
    assert_eq!(result.source_addresses, 3);
    assert!(
        result.ramp_s >= 0.029,
        "30 connections at 1000/s take ≥ 29 ms: {result:?}"
    );
    assert!(result.server_rss_after_kib.is_some() && result.server_kib_per_connection.is_some());
    Ok(())
}

#[tokio::test]
async fn idle_mode_reports_failures_when_nothing_listens() -> Result<()> {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let target = Target::new(ProbeOptions::new(closed, &format!("ws://{closed}/ws"))?.expect_hello(false));
    let config = IdleConfig {
        connections: 3,
        hold: Duration::ZERO,
        ..IdleConfig::default()
    };
    let result = load::run_idle(&target, config).await?;
    assert_eq!((result.connected, result.failed, result.open_at_end), (0, 3, 0));
    assert!(result.last_error.is_some_and(|e| !e.is_empty()));
    Ok(())
}

#[tokio::test]
async fn churn_mode_counts_handshakes_per_second() -> Result<()> {
    let (_pod, target) = target("/ws?hello=false").await?;
    let result = load::run_churn(
        &target,
        ChurnConfig {
            concurrency: 4,
            duration: Duration::from_millis(300),
            progress: false,
        },
    )
    .await?;
    assert!(result.handshakes > 4 && result.failures == 0, "{result:?}");
    assert_eq!(result.handshake_latency.count, result.handshakes);
    assert!(result.handshakes_per_sec > 0.0);
    Ok(())
}

fn short_rtt(connections: usize) -> RttConfig {
    RttConfig {
        connections,
        duration: Duration::from_millis(300),
        warmup: Duration::ZERO,
        ..RttConfig::default()
    }
}

#[tokio::test]
async fn rtt_mode_answers_pings_and_skips_ticks_between_echoes() -> Result<()> {
    let config = ws_echo::Config {
        listen: "127.0.0.1:0".parse()?,
        tick_interval: Duration::from_millis(10),
        ping_interval: Duration::from_millis(10),
        shutdown_grace: Duration::from_millis(50),
        ..ws_echo::Config::default()
    };
    let pod = ws_echo::spawn(config).await?;
    let addr = pod.local_addr();
    let target = Target::new(ProbeOptions::new(addr, &format!("ws://{addr}/ws"))?);
    let result = load::run_rtt(&target, short_rtt(3)).await?;
    assert!(result.messages > 10 && result.ended_early == 0, "{result:?}");
    Ok(())
}

/// A server that echoes every binary message with its first byte changed.
async fn tampering_server() -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(Message::Binary(data))) = ws.next().await {
                    let mut wrong = data.to_vec();
                    wrong[0] ^= 0xff;
                    if ws.send(Message::binary(wrong)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn rtt_mode_ends_connections_whose_echo_comes_back_wrong() -> Result<()> {
    let addr = tampering_server().await?;
    let target = Target::new(ProbeOptions::new(addr, &format!("ws://{addr}/ws"))?.expect_hello(false));
    let result = load::run_rtt(&target, short_rtt(2)).await?;
    assert_eq!(
        (result.connected, result.ended_early, result.messages),
        (2, 2, 0),
        "{result:?}"
    );
    let error = result.last_error.context("the run must say why connections ended")?;
    assert!(error.contains("different bytes"), "{error}");
    Ok(())
}

#[tokio::test]
async fn rtt_mode_reports_a_refused_upgrade_with_its_status() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let target = Target::new(ProbeOptions::new(addr, &format!("ws://{addr}/ws"))?.expect_hello(false));
    let err = load::run_rtt(&target, short_rtt(2))
        .await
        .err()
        .context("no connection can open")?;
    assert!(matches!(&err, LoadError::NoConnections { failed: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade answered 503"), "{err}");
    Ok(())
}

#[tokio::test]
async fn rtt_mode_runs_over_tls() -> Result<()> {
    let ca = TestCa::generate(&["echo.test"])?;
    let addr = support::tls_echo_server(&ca).await?;
    let url = format!("wss://echo.test:{}/ws", addr.port());
    let opts = ProbeOptions::new(addr, &url)?
        .expect_hello(false)
        .tls(ca.client_config()?);
    let result = load::run_rtt(&Target::new(opts), short_rtt(2)).await?;
    assert!(result.messages > 10 && result.ended_early == 0, "{result:?}");
    Ok(())
}

//! Short runs of each load-generator mode against an in-process ws-echo.

use std::time::Duration;

use anyhow::{Context, Result};
use testbed::load::{self, ChurnConfig, IdleConfig, Ramp, RttConfig, Target};
use testbed::probe::ProbeOptions;

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

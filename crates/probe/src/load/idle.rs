//! Idle hold: open N connections over several source addresses, hold them, count and weigh them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::stats::{CpuClock, rss_kib};
use super::wire::WireSocket;
use super::{Counters, LoadError, Progress, Ramp, Result, Target, open_all};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdleConfig {
    pub connections: usize,
    /// How long to hold once every connection has been attempted.
    pub hold: Duration,
    pub ramp: Ramp,
    /// The server's pid, to report its RSS before and after.
    pub server_pid: Option<u32>,
    pub progress: bool,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            connections: 1000,
            hold: Duration::from_secs(5),
            ramp: Ramp::default(),
            server_pid: None,
            progress: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    pub mode: String,
    pub requested: usize,
    pub connected: u64,
    pub failed: u64,
    /// Connections still open at the end of the hold.
    pub open_at_end: u64,
    /// Connections that ended during ramp-up or hold.
    pub ended_early: u64,
    pub source_addresses: usize,
    /// Seconds from the first dial to the last attempt.
    pub ramp_s: f64,
    pub connects_per_sec: f64,
    pub last_error: Option<String>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    /// (after - before) / open connections.
    pub server_kib_per_connection: Option<f64>,
    pub generator_rss_kib: Option<u64>,
    pub generator_cpu_percent: Option<f64>,
}

pub async fn run_idle(target: &Target, config: IdleConfig) -> Result<IdleResult> {
    if config.connections == 0 {
        return Err(LoadError::Invalid {
            reason: "idle needs at least one connection".into(),
        });
    }
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start(config.progress, "idle", counters.clone());
    let rss_before = config.server_pid.and_then(rss_kib);
    let cpu = CpuClock::start();
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let mut opened = open_all(target, config.connections, config.ramp, &counters, move |_, ws| {
        hold(ws, stop_rx.clone())
    });
    opened.all_attempted().await;
    let ramp_s = start.elapsed().as_secs_f64();
    let connected = counters.connected.load(Ordering::Relaxed);
    tokio::time::sleep(config.hold).await;
    let open_at_end = counters.open();
    let rss_after = config.server_pid.and_then(rss_kib);
    let generator_rss_kib = rss_kib(std::process::id());
    let generator_cpu_percent = cpu.percent();
    let ended_early = counters.ended.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(10), async {
        while opened.tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        opened.tasks.abort_all();
    }
    let last_error = Some(opened.last_error()).filter(|e| !e.is_empty());
    let server_kib_per_connection = match (rss_before, rss_after) {
        (Some(b), Some(a)) if open_at_end > 0 => Some((a as f64 - b as f64) / open_at_end as f64),
        _ => None,
    };
    Ok(IdleResult {
        mode: "idle".into(),
        requested: config.connections,
        connected,
        failed: counters.failed.load(Ordering::Relaxed),
        open_at_end,
        ended_early,
        source_addresses: target.sources.len().max(1),
        ramp_s,
        connects_per_sec: connected as f64 / ramp_s.max(f64::EPSILON),
        last_error,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        server_kib_per_connection,
        generator_rss_kib,
        generator_cpu_percent,
    })
}

/// Holds the connection (answering pings) until told to stop, then closes it cleanly.
async fn hold(mut ws: WireSocket, mut stop: watch::Receiver<bool>) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if ws.hold(stopped).await.is_ok() {
        ws.close(Duration::from_secs(2)).await;
    }
}

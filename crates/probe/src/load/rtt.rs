//! Closed-loop round trips: each connection sends one message and waits for its echo.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::stats::{CpuClock, Percentiles, latency_histogram, record};
use super::wire::WireSocket;
use super::{Counters, LoadError, Progress, Ramp, Result, Target, open_all};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RttConfig {
    pub connections: usize,
    /// Payload bytes per message (binary frames).
    pub size: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Round trips before measuring starts (not recorded).
    pub warmup: Duration,
    pub ramp: Ramp,
    pub progress: bool,
}

impl Default for RttConfig {
    fn default() -> Self {
        RttConfig {
            connections: 100,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            ramp: Ramp::default(),
            progress: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttResult {
    pub mode: String,
    pub connections: usize,
    pub connected: u64,
    pub connect_failures: u64,
    /// Connections that ended before the run did.
    pub ended_early: u64,
    pub size: usize,
    /// The measured window in seconds.
    pub duration_s: f64,
    /// Round trips completed in the measured window.
    pub messages: u64,
    pub msgs_per_sec: f64,
    pub latency: Percentiles,
    /// The generator's own CPU use over the measured window, % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// Why the last connection that ended early ended.
    pub last_error: Option<String>,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

pub async fn run_rtt(target: &Target, config: RttConfig) -> Result<RttResult> {
    if config.connections == 0 {
        return Err(LoadError::Invalid {
            reason: "rtt needs at least one connection".into(),
        });
    }
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start(config.progress, "rtt", counters.clone());
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let payload: Arc<[u8]> = vec![b'x'; config.size].into();
    let task_phase = phase.clone();
    let task_counters = counters.clone();
    let mut opened = open_all(target, config.connections, config.ramp, &counters, move |_, ws| {
        round_trips(ws, payload.clone(), task_phase.clone(), task_counters.clone())
    });
    opened.all_attempted().await;
    let connected = counters.connected.load(Ordering::Relaxed);
    if connected == 0 {
        return Err(LoadError::NoConnections {
            failed: counters.failed.load(Ordering::Relaxed),
            last_error: opened.last_error(),
        });
    }
    tokio::time::sleep(config.warmup).await;
    phase.store(MEASURE, Ordering::Relaxed);
    let cpu = CpuClock::start();
    let measure_start = Instant::now();
    tokio::time::sleep(config.duration).await;
    let ended_early = counters.ended.load(Ordering::Relaxed);
    phase.store(STOP, Ordering::Relaxed);
    let duration_s = measure_start.elapsed().as_secs_f64();
    let generator_cpu_percent = cpu.percent();

    let mut merged = latency_histogram()?;
    let mut last_error = None;
    let collect = async {
        while let Some(done) = opened.tasks.join_next().await {
            if let Ok(Some(Ok((h, ended)))) = done {
                let _ = merged.add(&h);
                last_error = ended.or(last_error.take());
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), collect).await.is_err() {
        tracing::warn!("some rtt connections did not finish within 5 s of the end; dropping them");
        opened.tasks.abort_all();
    }
    let latency = Percentiles::of(&merged);
    Ok(RttResult {
        mode: "rtt".into(),
        connections: config.connections,
        connected,
        connect_failures: counters.failed.load(Ordering::Relaxed),
        ended_early,
        size: config.size,
        duration_s,
        messages: latency.count,
        msgs_per_sec: latency.count as f64 / duration_s,
        latency,
        generator_cpu_percent,
        last_error,
    })
}

/// One connection's loop; returns its histogram of measured round trips and,
/// if it ended before the run did, why.
async fn round_trips(
    mut ws: WireSocket,
    payload: Arc<[u8]>,
    phase: Arc<AtomicU8>,
    counters: Arc<Counters>,
) -> Result<(hdrhistogram::Histogram<u64>, Option<String>)> {
    let mut hist = latency_histogram()?;
    let mut unreported = 0u64;
    let ended = loop {
        let now_phase = phase.load(Ordering::Relaxed);
        if now_phase == STOP {
            break None;
        }
        let sent_at = Instant::now();
        if let Err(e) = ws.round_trip(&payload).await {
            break Some(e.to_string());
        }
        if now_phase == MEASURE {
            record(&mut hist, sent_at.elapsed())?;
        }
        unreported += 1;
        if unreported == 64 {
            counters.messages.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    };
    counters.messages.fetch_add(unreported, Ordering::Relaxed);
    if ended.is_none() {
        ws.close(Duration::from_secs(1)).await;
    }
    Ok((hist, ended))
}

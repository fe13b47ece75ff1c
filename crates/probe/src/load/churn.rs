//! Churn: K concurrent loops of handshake, close, repeat — handshakes per second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::stats::{CpuClock, Percentiles, latency_histogram, record};
use super::wire::WireSocket;
use super::{Counters, LoadError, Progress, Result, Target};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChurnConfig {
    pub concurrency: usize,
    pub duration: Duration,
    pub progress: bool,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            concurrency: 50,
            duration: Duration::from_secs(10),
            progress: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnResult {
    pub mode: String,
    pub concurrency: usize,
    pub duration_s: f64,
    /// Completed upgrades (101 received).
    pub handshakes: u64,
    pub failures: u64,
    pub handshakes_per_sec: f64,
    /// Dial to 101, µs.
    pub handshake_latency: Percentiles,
    pub last_error: Option<String>,
    pub generator_cpu_percent: Option<f64>,
}

pub async fn run_churn(target: &Target, config: ChurnConfig) -> Result<ChurnResult> {
    if config.concurrency == 0 {
        return Err(LoadError::Invalid {
            reason: "churn needs a concurrency of at least one".into(),
        });
    }
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start(config.progress, "churn", counters.clone());
    let cpu = CpuClock::start();
    let start = Instant::now();
    let deadline = start + config.duration;
    let mut loops = tokio::task::JoinSet::new();
    for worker in 0..config.concurrency {
        let target = target.clone();
        let counters = counters.clone();
        loops.spawn(async move { churn_loop(&target, worker, config.concurrency, deadline, &counters).await });
    }
    let mut merged = latency_histogram()?;
    let mut last_error = None;
    while let Some(done) = loops.join_next().await {
        if let Ok(Ok((h, err))) = done {
            let _ = merged.add(&h);
            last_error = err.or(last_error);
        }
    }
    let duration_s = start.elapsed().as_secs_f64();
    let handshakes = counters.handshakes.load(Ordering::Relaxed);
    Ok(ChurnResult {
        mode: "churn".into(),
        concurrency: config.concurrency,
        duration_s,
        handshakes,
        failures: counters.failed.load(Ordering::Relaxed),
        handshakes_per_sec: handshakes as f64 / duration_s,
        handshake_latency: Percentiles::of(&merged),
        last_error,
        generator_cpu_percent: cpu.percent(),
    })
}

async fn churn_loop(
    target: &Target,
    worker: usize,
    stride: usize,
    deadline: Instant,
    counters: &Counters,
) -> Result<(hdrhistogram::Histogram<u64>, Option<String>)> {
    let mut hist = latency_histogram()?;
    let mut last_error = None;
    let mut i = worker;
    while Instant::now() < deadline {
        // Rotate source addresses across iterations as well as workers.
        let opts = target.options_for(i);
        i += stride;
        let started = Instant::now();
        match tokio::time::timeout_at(deadline + Duration::from_secs(5), WireSocket::connect(&opts)).await {
            Ok(Ok(ws)) => {
                record(&mut hist, started.elapsed())?;
                counters.handshakes.fetch_add(1, Ordering::Relaxed);
                // A clean close: our close frame, then read until the server's reply.
                ws.close(Duration::from_secs(2)).await;
            }
            Ok(Err(e)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                last_error = Some(format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
                ));
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                last_error = Some("handshake timed out".into());
            }
        }
    }
    Ok((hist, last_error))
}

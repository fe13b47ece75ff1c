//! The load generator: closed-loop round trips, idle-connection capacity,
//! handshake churn, reconnect storms.
//!
//! Built on the probe's dialing ([`crate::dial`]) and upgrade request,
//! framed by [`wire`] without the probe's timeline: one task per connection,
//! no allocation per message, per-task histograms merged at the end, so the
//! generator is not the bottleneck.
//! Each mode returns a serializable result; `testbed load` prints it.

pub mod churn;
pub mod idle;
pub mod rtt;
pub mod stats;
pub mod storm;
mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use churn::{ChurnConfig, ChurnResult, run_churn};
pub use idle::{IdleConfig, IdleResult, run_idle};
pub use rtt::{RttConfig, RttResult, run_rtt};
pub use stats::{CpuClock, Percentiles, rss_kib};
pub use storm::{ReconnectPolicy, StormConfig, StormOutcome, StormResult, StormSample, run_storm};

use crate::ProbeOptions;

pub type Result<T, E = LoadError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("recording a latency of {micros} µs")]
    Record {
        micros: u64,
        #[source]
        source: hdrhistogram::RecordError,
    },
    #[error("creating the latency histogram")]
    Histogram(#[source] hdrhistogram::CreationError),
    #[error("no connection could be opened ({failed} failed; last error: {last_error})")]
    NoConnections { failed: u64, last_error: String },
    #[error("the load configuration is invalid: {reason}")]
    Invalid { reason: String },
    // Not a #[source]: callers record errors as one line.
    #[error("the connection failed: {0}")]
    Io(std::io::Error),
    #[error("the server broke the WebSocket protocol: {reason}")]
    Protocol { reason: String },
    #[error("the server ended the connection (close code {code:?})")]
    Closed { code: Option<u16> },
    #[error("no connection dropped within {wait_s} s of ready")]
    NoDrop { wait_s: f64 },
    // Not a #[source] either: the message carries it.
    #[error("writing the ready file {}: {error}", path.display())]
    ReadyFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

/// Where and how every connection dials; connection `i` binds `sources[i % len]`.
#[derive(Debug, Clone)]
pub struct Target {
    pub opts: ProbeOptions,
    pub sources: Vec<IpAddr>,
}

impl Target {
    pub fn new(opts: ProbeOptions) -> Self {
        Target {
            opts,
            sources: Vec::new(),
        }
    }

    /// Spreads connections over `count` source addresses starting at `first`
    /// (127.0.0.1, 127.0.0.2, … — each has its own ephemeral port range).
    pub fn spread_sources(mut self, first: std::net::Ipv4Addr, count: u32) -> Self {
        let base = u32::from(first);
        self.sources = (0..count)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(base + i)))
            .collect();
        self
    }

    pub(crate) fn options_for(&self, i: usize) -> ProbeOptions {
        let mut opts = self.opts.clone();
        if !self.sources.is_empty() {
            opts.source_ip = Some(self.sources[i % self.sources.len()]);
        }
        opts
    }
}

/// How fast connections are opened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ramp {
    /// New connections per second; `None` opens as fast as `max_pending` allows.
    pub rate: Option<f64>,
    /// Handshakes in flight at once.
    pub max_pending: usize,
}

impl Default for Ramp {
    fn default() -> Self {
        Ramp {
            rate: None,
            max_pending: 256,
        }
    }
}

impl Ramp {
    /// When connection `i` may start.
    pub(crate) fn due(&self, start: Instant, i: usize) -> Option<Instant> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        Some(start + Duration::from_secs_f64(i as f64 / rate))
    }
}

/// Counters the progress line reads; updated by every connection task.
#[derive(Debug, Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub ended: AtomicU64,
    pub messages: AtomicU64,
    pub handshakes: AtomicU64,
}

impl Counters {
    pub fn open(&self) -> u64 {
        self.connected
            .load(Ordering::Relaxed)
            .saturating_sub(self.ended.load(Ordering::Relaxed))
    }
}

/// Prints a live progress line on stderr until dropped.
#[derive(Debug)]
pub(crate) struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(enabled: bool, mode: &'static str, counters: Arc<Counters>) -> Self {
        if !enabled {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            use std::io::{IsTerminal, Write};
            let tty = std::io::stderr().is_terminal();
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut last_msgs, mut last_hs) = (0, 0);
            loop {
                tick.tick().await;
                let msgs = counters.messages.load(Ordering::Relaxed);
                let hs = counters.handshakes.load(Ordering::Relaxed);
                let line = format!(
                    "[{mode} {:>4.0}s] open {} failed {} ended {} | {} msgs/s | {} handshakes/s",
                    start.elapsed().as_secs_f64(),
                    counters.open(),
                    counters.failed.load(Ordering::Relaxed),
                    counters.ended.load(Ordering::Relaxed),
                    msgs - last_msgs,
                    hs - last_hs,
                );
                (last_msgs, last_hs) = (msgs, hs);
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[2K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            use std::io::IsTerminal;
            if std::io::stderr().is_terminal() {
                eprintln!();
            }
        }
    }
}

/// Connection tasks opened by [`open_all`]; await [`Opened::all_attempted`] before measuring.
#[derive(Debug)]
pub(crate) struct Opened<T> {
    pub(crate) tasks: tokio::task::JoinSet<Option<T>>,
    attempted: Arc<tokio::sync::Semaphore>,
    pub(crate) last_error: Arc<std::sync::Mutex<Option<String>>>,
    n: usize,
}

impl<T> Opened<T> {
    /// Waits until every connection has either connected or failed.
    pub(crate) async fn all_attempted(&self) {
        let n = u32::try_from(self.n).unwrap_or(u32::MAX);
        if let Ok(permits) = self.attempted.acquire_many(n).await {
            permits.forget();
        }
    }

    pub(crate) fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Opens `n` connections at the ramp's pace, one task each running `per_conn` once connected.
pub(crate) fn open_all<F, Fut, T>(
    target: &Target,
    n: usize,
    ramp: Ramp,
    counters: &Arc<Counters>,
    per_conn: F,
) -> Opened<T>
where
    F: Fn(usize, wire::WireSocket) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let attempted = Arc::new(tokio::sync::Semaphore::new(0));
    let pending = Arc::new(tokio::sync::Semaphore::new(ramp.max_pending.max(1)));
    let last_error = Arc::new(std::sync::Mutex::new(None));
    let per_conn = Arc::new(per_conn);
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..n {
        let opts = target.options_for(i);
        let (attempted, pending, last_error) = (attempted.clone(), pending.clone(), last_error.clone());
        let (counters, per_conn) = (counters.clone(), per_conn.clone());
        let due = ramp.due(start, i);
        tasks.spawn(async move {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            let permit = pending.acquire_owned().await.ok();
            let connected = wire::WireSocket::connect(&opts).await;
            drop(permit);
            let ws = match connected {
                Ok(ws) => {
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    attempted.add_permits(1);
                    ws
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = last_error.lock() {
                        *last = Some(format!(
                            "{e}: {}",
                            std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
                        ));
                    }
                    attempted.add_permits(1);
                    return None;
                }
            };
            let out = per_conn(i, ws).await;
            counters.ended.fetch_add(1, Ordering::Relaxed);
            Some(out)
        });
    }
    Opened {
        tasks,
        attempted,
        last_error,
        n,
    }
}

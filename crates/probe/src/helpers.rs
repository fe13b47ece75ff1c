//! Patterns behaviour tests repeat: hold idle, echo loops, reconnect with backoff,
//! and a probe that opens connections continuously during a rollout.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::connection::{Connection, Incoming};
use super::options::ProbeOptions;
use super::timeline::{End, Timeline};
use super::{ConnectStage, ProbeError, Result, connect};

/// How a held connection ended, relative to the start of the hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldOutcome {
    /// Closed, abnormal, or still open at the hold's limit.
    pub end: End,
    /// Time from the start of the hold to the end (or to the limit).
    pub after: Duration,
    /// Text/binary frames received during the hold (ticks included).
    pub data_frames: u64,
    /// Pings received from the server during the hold.
    pub pings_received: u64,
}

impl HoldOutcome {
    pub fn still_open(&self) -> bool {
        matches!(self.end, End::StillOpen { .. })
    }
}

/// Sends nothing; reads (answering pings) until the connection ends or `max` passes.
pub async fn hold_idle(conn: &mut Connection, max: Duration) -> HoldOutcome {
    hold(conn, max, None).await
}

/// Like [`hold_idle`], but the client sends a ping every `every` (and no data).
pub async fn hold_pinging(conn: &mut Connection, max: Duration, every: Duration) -> HoldOutcome {
    hold(conn, max, Some(every)).await
}

async fn hold(conn: &mut Connection, max: Duration, ping_every: Option<Duration>) -> HoldOutcome {
    let start = Instant::now();
    let deadline = start + max;
    let mut data_frames = 0;
    let mut pings_received = 0;
    let mut next_ping = ping_every.map(|every| start + every);
    loop {
        let now = Instant::now();
        if now >= deadline {
            let at_ms = conn.elapsed_ms();
            return HoldOutcome {
                end: End::StillOpen { at_ms },
                after: now - start,
                data_frames,
                pings_received,
            };
        }
        if let (Some(at), Some(every)) = (next_ping, ping_every)
            && now >= at
        {
            next_ping = Some(at + every);
            if conn.ping(&b"probe"[..]).await.is_err() {
                continue; // the end is recorded; the next recv reports it
            }
        }
        let wake = next_ping.map_or(deadline, |at| at.min(deadline));
        match conn.recv(wake.saturating_duration_since(now)).await {
            Ok(Incoming::Text(_) | Incoming::Binary(_)) => data_frames += 1,
            Ok(Incoming::Ping(_)) => pings_received += 1,
            Ok(Incoming::Pong(_) | Incoming::Close { .. }) => {}
            Err(ProbeError::RecvTimeout { .. }) => {}
            Err(ProbeError::Ended { end }) => {
                return HoldOutcome {
                    end,
                    after: start.elapsed(),
                    data_frames,
                    pings_received,
                };
            }
            Err(other) => {
                // recv answers only timeouts and ends; keep the contract explicit anyway.
                let at_ms = conn.elapsed_ms();
                return HoldOutcome {
                    end: End::Abnormal {
                        at_ms,
                        error: other.to_string(),
                    },
                    after: start.elapsed(),
                    data_frames,
                    pings_received,
                };
            }
        }
    }
}

/// What an echo loop saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoReport {
    /// Numbers sent, in order.
    pub sent: Vec<u64>,
    /// Numbers whose exact echo came back.
    pub echoed: Vec<u64>,
    /// Frames that came back but were not the expected echo.
    pub mismatched: Vec<String>,
    /// How the connection ended, if it ended during the loop.
    pub end: Option<End>,
}

impl EchoReport {
    /// Sent but never echoed.
    pub fn unanswered(&self) -> Vec<u64> {
        self.sent.iter().copied().filter(|n| !self.echoed.contains(n)).collect()
    }
}

/// The text an echo loop sends for message `n`.
pub fn numbered(n: u64) -> String {
    format!("msg-{n}")
}

/// Sends `msg-{n}` for each `n` (waiting `interval` between sends) and waits up to
/// `timeout` for each exact echo, skipping ticks and control frames. Stops early
/// when the connection ends; a timed-out echo is left unanswered and the loop goes on.
pub async fn echo_loop(
    conn: &mut Connection,
    numbers: Range<u64>,
    interval: Duration,
    timeout: Duration,
) -> EchoReport {
    let mut report = EchoReport {
        sent: Vec::new(),
        echoed: Vec::new(),
        mismatched: Vec::new(),
        end: None,
    };
    for (i, n) in numbers.enumerate() {
        if i > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let text = numbered(n);
        if let Err(e) = conn.send_text(text.clone()).await {
            report.end = ended(e);
            return report;
        }
        report.sent.push(n);
        match conn.recv_data(timeout).await {
            Ok(Incoming::Text(got)) if got == text => report.echoed.push(n),
            Ok(other) => report.mismatched.push(format!("{other:?}")),
            Err(ProbeError::RecvTimeout { .. }) => {}
            Err(e) => {
                report.end = ended(e);
                return report;
            }
        }
    }
    report
}

fn ended(error: ProbeError) -> Option<End> {
    match error {
        ProbeError::Ended { end } => Some(end),
        other => Some(End::Abnormal {
            at_ms: 0.0,
            error: other.to_string(),
        }),
    }
}

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            factor: 2.0,
            max_attempts: 20,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (0-based; attempt 0 does not wait).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let scaled = self.initial.as_secs_f64() * self.factor.powi(attempt.saturating_sub(1) as i32);
        Duration::from_secs_f64(scaled.min(self.max.as_secs_f64()))
    }
}

/// A connection obtained by [`reconnect_with_backoff`] and what it took.
#[derive(Debug)]
pub struct Reconnected {
    pub conn: Connection,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// Timelines of the failed attempts.
    pub failures: Vec<Timeline>,
    /// From the first attempt's start to the successful connect.
    pub took: Duration,
}

/// Connects, retrying failures with `backoff`.
pub async fn reconnect_with_backoff(opts: &ProbeOptions, backoff: Backoff) -> Result<Reconnected> {
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut attempt = 0;
    loop {
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt += 1;
        match connect(opts).await {
            Ok(conn) => {
                return Ok(Reconnected {
                    conn,
                    attempts: attempt,
                    failures,
                    took: start.elapsed(),
                });
            }
            Err(e) if attempt >= backoff.max_attempts => {
                return Err(ProbeError::GaveUp {
                    what: "reconnecting",
                    attempts: attempt,
                    last: Box::new(e),
                });
            }
            Err(e) => {
                tracing::debug!(attempt, error = %e, "reconnect attempt failed");
                if let Some(timeline) = e.timeline() {
                    failures.push(timeline.clone());
                }
            }
        }
    }
}

/// One attempt of the continuous opener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the attempt started, relative to the opener's start.
    pub at_ms: f64,
    pub outcome: AttemptOutcome,
    pub timeline: Timeline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// 101 and a hello from `pod` (`None` when hellos are not expected).
    Connected { pod: Option<String> },
    /// The upgrade was answered with a status other than 101.
    HandshakeFailed { status: u16 },
    /// No status: refused, reset, TLS, timeout, no hello.
    Error { stage: ConnectStage, message: String },
}

/// Everything the continuous opener saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenerReport {
    pub attempts: Vec<Attempt>,
}

impl OpenerReport {
    pub fn successes(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| matches!(a.outcome, AttemptOutcome::Connected { .. }))
            .count()
    }

    /// Attempts that did not end in a usable connection (status or not).
    pub fn failures(&self) -> usize {
        self.attempts.len() - self.successes()
    }

    /// Failures with an HTTP status, by status.
    pub fn failed_statuses(&self) -> BTreeMap<u16, usize> {
        let mut by_status = BTreeMap::new();
        for a in &self.attempts {
            if let AttemptOutcome::HandshakeFailed { status } = a.outcome {
                *by_status.entry(status).or_default() += 1;
            }
        }
        by_status
    }

    /// Successful connections per pod that said hello.
    pub fn by_pod(&self) -> BTreeMap<String, usize> {
        let mut by_pod = BTreeMap::new();
        for a in &self.attempts {
            if let AttemptOutcome::Connected { pod: Some(pod) } = &a.outcome {
                *by_pod.entry(pod.clone()).or_default() += 1;
            }
        }
        by_pod
    }
}

/// A running continuous opener; [`OpenerHandle::stop`] ends it and returns the report.
#[derive(Debug)]
pub struct OpenerHandle {
    stop: Option<oneshot::Sender<()>>,
    counts: Arc<OpenerCounts>,
    task: tokio::task::JoinHandle<OpenerReport>,
}

/// Live counts of a running opener (finished attempts only).
#[derive(Debug, Default)]
struct OpenerCounts {
    succeeded: AtomicUsize,
    failed: AtomicUsize,
}

impl OpenerHandle {
    /// Finished attempts so far: (connected, failed). For waiting on a condition while it runs.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.counts.succeeded.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops opening, waits for attempts in flight, and returns what was seen.
    pub async fn stop(mut self) -> OpenerReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(report) => report,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

impl Drop for OpenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a connection every `every` until stopped: each attempt connects (hello
/// included when expected), closes with 1000, and records its outcome.
pub fn open_continuously(opts: ProbeOptions, every: Duration) -> OpenerHandle {
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let counts = Arc::new(OpenerCounts::default());
    let task_counts = counts.clone();
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut in_flight = JoinSet::new();
        let mut attempts = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tick.tick() => {
                    let opts = opts.clone();
                    let counts = task_counts.clone();
                    let at_ms = start.elapsed().as_secs_f64() * 1000.0;
                    in_flight.spawn(async move {
                        let attempt = one_attempt(&opts, at_ms).await;
                        let counter = match attempt.outcome {
                            AttemptOutcome::Connected { .. } => &counts.succeeded,
                            _ => &counts.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        attempt
                    });
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(attempt) = done {
                        attempts.push(attempt);
                    }
                }
            }
        }
        while let Some(done) = in_flight.join_next().await {
            if let Ok(attempt) = done {
                attempts.push(attempt);
            }
        }
        attempts.sort_by(|a: &Attempt, b| a.at_ms.total_cmp(&b.at_ms));
        OpenerReport { attempts }
    });
    OpenerHandle {
        stop: Some(stop_tx),
        counts,
        task,
    }
}

/// [`open_continuously`] for a fixed `duration`.
pub async fn open_for(opts: ProbeOptions, every: Duration, duration: Duration) -> OpenerReport {
    let handle = open_continuously(opts, every);
    tokio::time::sleep(duration).await;
    handle.stop().await
}

async fn one_attempt(opts: &ProbeOptions, at_ms: f64) -> Attempt {
    match connect(opts).await {
        Ok(mut conn) => {
            let pod = conn.pod().map(str::to_owned);
            let _ = conn.close(1000, "probe done").await;
            Attempt {
                at_ms,
                outcome: AttemptOutcome::Connected { pod },
                timeline: conn.into_timeline(),
            }
        }
        Err(e) => {
            let outcome = match &e {
                ProbeError::Connect {
                    status: Some(status), ..
                } => AttemptOutcome::HandshakeFailed { status: *status },
                ProbeError::Connect { stage, source, .. } => AttemptOutcome::Error {
                    stage: *stage,
                    message: source.to_string(),
                },
                other => AttemptOutcome::Error {
                    stage: ConnectStage::Handshake,
                    message: other.to_string(),
                },
            };
            let timeline = match e {
                ProbeError::Connect { timeline, .. } => *timeline,
                // No timeline was recorded (the dial itself failed): one that starts at the
                // failure keeps the report's lane on the time axis.
                _ => Timeline::starting_now(opts.url.to_string(), opts.addr),
            };
            Attempt {
                at_ms,
                outcome,
                timeline,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            factor: 2.0,
            max_attempts: 5,
        };
        let delays: Vec<u128> = (0..5).map(|i| b.delay(i).as_millis()).collect();
        assert_eq!(delays, [0, 100, 200, 350, 350]);
    }
}

//! Reconnect storm: hold N connections; when an outside event (a data-plane
//! reload, a rollout of the pods) drops many of them at once, every dropped
//! client reconnects the way browser client libraries do, and the run measures
//! how the proxy and the pods absorb the storm.
//!
//! # The reconnect policy: socket.io-client's
//!
//! socket.io-client's `Manager` (lib/manager.ts in
//! <https://github.com/socketio/socket.io-client>) reconnects with
//! `reconnectionDelay` 1000 ms, `reconnectionDelayMax` 5000 ms and
//! `randomizationFactor` 0.5, through the `Backoff` of the npm package `backo2`
//! (<https://www.npmjs.com/package/backo2>, a fork of segmentio's `backo`; later
//! socket.io-client versions vendor it as lib/contrib/backo2.ts), whose
//! factor defaults to 2. What this module reproduces (our own code, written
//! from that behaviour):
//!
//! - When an open connection closes, `onclose` resets the backoff and calls
//!   `reconnect()`, which waits `duration()` for attempt 0 before dialing: a
//!   dropped client never reconnects immediately.
//! - A failed attempt calls `reconnect()` again: the next attempt waits the
//!   next `duration()`. A successful one resets the attempt count, so a client
//!   that drops again (a rollout replacing pods one after the other) starts
//!   over at attempt 0.
//! - `duration()` for attempt `n` (0-based): `ms = initial * factor^n`; with a
//!   jitter, `rand` uniform in [0, 1), `deviation = floor(rand * jitter * ms)`,
//!   and `ms - deviation` when `floor(rand * 10)` is even, `ms + deviation`
//!   when odd (one draw sets both the size and the sign); then
//!   `min(ms, max)`, truncated to whole milliseconds.
//! - The cap comes after the jitter, on the uncapped exponential: once
//!   `initial * factor^n * (1 - jitter)` reaches `max`, every client waits
//!   exactly `max`. With the defaults that is attempt 4 on (16 s · 0.5 ≥ 5 s):
//!   clients still failing then retry in lockstep every 5 s, jitter or not.
//! - socket.io's `timeout` (20 s) bounds each attempt; here the probe's
//!   handshake timeout does (`testbed load` sets 10 s).
//!
//! `jitter = 0` is the variant without randomization: every client retries at
//! the same instants (the thundering herd).
//!
//! # What is measured
//!
//! Everything counts from the first drop after ready (the moment every initial
//! connection attempt is done): drops during the ramp are reported apart
//! (`drops_before_ready`) and their clients reconnect all the same. The run
//! ends when every client has been open again for `settle`, or `deadline`
//! after the first drop, or with [`LoadError::NoDrop`] when nothing dropped
//! within `wait` of ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::stats::{CpuClock, rss_kib};
use super::wire::{UpgradeStatus, WireSocket};
use super::{Counters, LoadError, Opened, Progress, Ramp, Result, Target, open_all};
use crate::{ConnectStage, ProbeError};

/// Timeline resolution.
const BUCKET: Duration = Duration::from_millis(100);
/// Buckets in the peak-rate window (1 s).
const BUCKETS_PER_SECOND: usize = 10;
/// How often the run checks whether the storm has settled.
const POLL: Duration = Duration::from_millis(10);
/// The longest deadline accepted (bounds the timeline's memory).
const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// A held connection's clean close at the end of the run.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);
/// Keeps `initial * factor^n` finite for any attempt count.
const MAX_EXPONENTIAL_MS: f64 = 1e15;

/// socket.io-client's reconnection backoff (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReconnectPolicy {
    /// `reconnectionDelay`: the base of attempt 0's delay.
    pub initial_ms: u64,
    /// `reconnectionDelayMax`: no delay is longer.
    pub max_ms: u64,
    /// Growth per failed attempt.
    pub factor: f64,
    /// `randomizationFactor`, in [0, 1]: each delay moves by up to this share of itself.
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    /// socket.io-client's defaults.
    fn default() -> Self {
        ReconnectPolicy {
            initial_ms: 1000,
            max_ms: 5000,
            factor: 2.0,
            jitter: 0.5,
        }
    }
}

impl ReconnectPolicy {
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(LoadError::Invalid { reason });
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return invalid(format!("the backoff factor must be positive, not {}", self.factor));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return invalid(format!("the jitter must lie in [0, 1], not {}", self.jitter));
        }
        Ok(())
    }

    /// The wait before reconnect attempt `attempt` (0-based, counted from the
    /// drop), given `rand` drawn uniformly from [0, 1): backo2's `duration()`.
    pub fn delay(&self, attempt: u32, rand: f64) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        // Not capped yet: backo2 applies the jitter to the uncapped value.
        let mut ms = (self.initial_ms as f64 * self.factor.powi(exponent)).min(MAX_EXPONENTIAL_MS);
        if self.jitter > 0.0 {
            let deviation = (rand * self.jitter * ms).floor();
            // The sign comes from the same draw: its tenths digit, even → shorter.
            let shorter = ((rand * 10.0).floor() as u64).is_multiple_of(2);
            ms = if shorter { ms - deviation } else { ms + deviation };
        }
        // `as` truncates to whole milliseconds, as backo2's `| 0` does.
        Duration::from_millis(ms.min(self.max_ms as f64) as u64)
    }
}

/// A client's random draws: SplitMix64, 8 bytes of state, seeded from the
/// run's seed and the client's index, so a seed replays every client's
/// schedule whatever order the tasks run in.
#[derive(Debug, Clone)]
pub struct ClientRng(u64);

impl ClientRng {
    pub fn new(seed: u64, client: usize) -> Self {
        // Hash the index rather than offset the state: SplitMix64 states that
        // differ by multiples of its increment give shifted copies of one sequence.
        ClientRng(mix(seed ^ mix(client as u64 ^ 0x5eed_5eed_5eed_5eed)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormConfig {
    pub connections: usize,
    pub ramp: Ramp,
    pub policy: ReconnectPolicy,
    /// The run ends once every client has been open again for this long.
    pub settle: Duration,
    /// … or this long after the first drop.
    pub deadline: Duration,
    /// Fail when nothing drops within this long of ready.
    pub wait: Duration,
    /// Seeds every client's jitter; `None` takes one from the clock (reported in the result).
    pub seed: Option<u64>,
    /// Gets one line `ready <connected>` once every initial attempt is done.
    pub ready_file: Option<PathBuf>,
    pub progress: bool,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            connections: 1000,
            ramp: Ramp::default(),
            policy: ReconnectPolicy::default(),
            settle: Duration::from_secs(2),
            deadline: Duration::from_secs(120),
            wait: Duration::from_secs(60),
            seed: None,
            ready_file: None,
            progress: false,
        }
    }
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StormOutcome {
    /// Every client was open again and stayed so for `settle`.
    Settled,
    /// `deadline` passed after the first drop.
    Deadline,
}

/// One 100 ms bucket of the storm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StormSample {
    /// The bucket's end, in seconds since the first drop (the last bucket ends with the run).
    pub t_s: f64,
    /// Clients open at `t_s`.
    pub open: u64,
    /// Handshake attempts started in the bucket, successful or not.
    pub attempts: u32,
    /// Attempts that failed in the bucket.
    pub failures: u32,
    /// Attempts that succeeded in the bucket.
    pub reconnects: u32,
    /// Open connections that ended in the bucket.
    pub drops: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormResult {
    pub mode: String,
    pub requested: usize,
    /// Clients connected at ready: the storm's population.
    pub connected: u64,
    /// Initial connection attempts that failed.
    pub failed: u64,
    pub policy: ReconnectPolicy,
    pub seed: u64,
    pub outcome: StormOutcome,
    /// Seconds from the first drop to the end of the run.
    pub duration_s: f64,
    /// Distinct clients that dropped at least once.
    pub dropped: u64,
    /// Drop events (a client dropping twice counts twice).
    pub drops: u64,
    /// How connections ended: "close <code>", "eof" (EOF or a close frame
    /// without a code), "reset", "io", "protocol".
    pub drop_causes: BTreeMap<String, u64>,
    /// Drops while the initial connections were still being opened (not in `drops`).
    pub drops_before_ready: u64,
    /// Clients open at the end.
    pub reconnected: u64,
    /// From the first drop until at least 99 % of `connected` were open and
    /// stayed so to the end; 0 when they never fell below; `None` if not at the end.
    pub time_to_99_s: Option<f64>,
    /// From the first drop until every client was open, for good; `None` if never.
    pub time_to_all_s: Option<f64>,
    /// Reconnect attempts, successful or not.
    pub handshake_attempts: u64,
    /// Failed attempts by kind: the upgrade's HTTP status ("502"), or
    /// "refused", "reset" (also a close before the response), "timeout", "tls", "other".
    pub failed_handshakes: BTreeMap<String, u64>,
    /// The most attempts started in any 1 s window (sliding over 100 ms buckets).
    pub peak_handshakes_per_sec: u64,
    /// The most successful attempts in any 1 s window.
    pub peak_successful_handshakes_per_sec: u64,
    /// Every 100 ms from the first drop to the end.
    pub timeline: Vec<StormSample>,
    /// The generator's CPU from the first drop to the end, % of one core.
    pub generator_cpu_percent: Option<f64>,
    pub generator_rss_kib: Option<u64>,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
}

pub async fn run_storm(target: &Target, config: StormConfig) -> Result<StormResult> {
    validate(&config)?;
    let seed = config.seed.unwrap_or_else(seed_from_clock);
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start(config.progress, "storm", counters.clone());
    let storm = Arc::new(Storm::new(
        target.clone(),
        config.policy,
        seed,
        counters.clone(),
        config.deadline,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let per_conn = storm.clone();
    let mut opened = open_all(target, config.connections, config.ramp, &counters, move |i, ws| {
        client(per_conn.clone(), i, ws, stop_rx.clone())
    });
    opened.all_attempted().await;
    let connected = counters.connected.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    if connected == 0 {
        shut_down(&stop_tx, &mut opened).await;
        return Err(LoadError::NoConnections {
            failed,
            last_error: opened.last_error(),
        });
    }
    // 99 % open ⇔ at most this many down.
    let need = (connected * 99).div_ceil(100);
    storm.down_99.store(connected - need, Ordering::Relaxed);
    let _ = storm.ready.set(Instant::now());
    if let Err(e) = announce_ready(config.ready_file.as_deref(), connected) {
        shut_down(&stop_tx, &mut opened).await;
        return Err(e);
    }

    let _ = tokio::time::timeout(config.wait, storm.first_drop_seen.notified()).await;
    let Some(&first_drop) = storm.first_drop.get() else {
        shut_down(&stop_tx, &mut opened).await;
        return Err(LoadError::NoDrop {
            wait_s: config.wait.as_secs_f64(),
        });
    };
    let cpu = CpuClock::start();
    let deadline = first_drop + config.deadline;
    let outcome = loop {
        let now = Instant::now();
        let settled = storm.down.load(Ordering::Relaxed) == 0
            && storm
                .all_open_at()
                .is_some_and(|at| now >= first_drop + at + config.settle);
        if settled {
            break StormOutcome::Settled;
        }
        if now >= deadline {
            break StormOutcome::Deadline;
        }
        tokio::time::sleep(POLL).await;
    };

    let end = Instant::now();
    let down = storm.down.load(Ordering::Relaxed);
    let duration = end.saturating_duration_since(first_drop);
    let buckets = storm.snapshot(duration);
    let generator_cpu_percent = cpu.percent();
    let generator_rss_kib = rss_kib(std::process::id());
    shut_down(&stop_tx, &mut opened).await;

    let time_to_99_s =
        (down <= storm.down_99.load(Ordering::Relaxed)).then(|| storm.open_99_at().map_or(0.0, |at| at.as_secs_f64()));
    let time_to_all_s = (down == 0).then(|| storm.all_open_at().map_or(0.0, |at| at.as_secs_f64()));
    let timeline = timeline(&buckets, connected, down, duration);
    let failed_handshakes = lock(&storm.failures)
        .iter()
        .map(|(kind, n)| (kind.to_string(), *n))
        .collect();
    Ok(StormResult {
        mode: "storm".into(),
        requested: config.connections,
        connected,
        failed,
        policy: config.policy,
        seed,
        outcome,
        duration_s: duration.as_secs_f64(),
        dropped: storm.dropped.load(Ordering::Relaxed),
        drops: storm.drops.load(Ordering::Relaxed),
        drop_causes: lock(&storm.drop_causes).clone(),
        drops_before_ready: storm.drops_before_ready.load(Ordering::Relaxed),
        reconnected: connected.saturating_sub(down),
        time_to_99_s,
        time_to_all_s,
        handshake_attempts: buckets.iter().map(|b| u64::from(b.attempts)).sum(),
        failed_handshakes,
        peak_handshakes_per_sec: peak_per_second(buckets.iter().map(|b| b.attempts)),
        peak_successful_handshakes_per_sec: peak_per_second(buckets.iter().map(|b| b.reconnects)),
        timeline,
        generator_cpu_percent,
        generator_rss_kib,
        last_error: lock(&storm.last_error).clone(),
    })
}

fn validate(config: &StormConfig) -> Result<()> {
    if config.connections == 0 {
        return Err(LoadError::Invalid {
            reason: "storm needs at least one connection".into(),
        });
    }
    if config.deadline.is_zero() || config.deadline > MAX_DEADLINE {
        return Err(LoadError::Invalid {
            reason: format!(
                "the storm deadline must lie in (0, {} h], not {:?}",
                MAX_DEADLINE.as_secs() / 3600,
                config.deadline
            ),
        });
    }
    config.policy.validate()
}

fn seed_from_clock() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
}

/// Writes `ready <connected>` to the file (through a temporary, so a reader
/// never sees half a line) and says the same on stderr.
fn announce_ready(path: Option<&Path>, connected: u64) -> Result<()> {
    if let Some(path) = path {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let written =
            std::fs::write(&partial, format!("ready {connected}\n")).and_then(|()| std::fs::rename(&partial, path));
        if let Err(error) = written {
            return Err(LoadError::ReadyFile {
                path: path.to_owned(),
                error,
            });
        }
    }
    eprintln!("storm: ready {connected}");
    Ok(())
}

/// Stops every client (held connections close cleanly) and waits for them, boundedly.
async fn shut_down(stop: &watch::Sender<bool>, opened: &mut Opened<()>) {
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(10), async {
        while opened.tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        opened.tasks.abort_all();
    }
}

/// One client: hold, and after every drop reconnect by the policy, until stopped.
async fn client(storm: Arc<Storm>, i: usize, mut ws: WireSocket, mut stop: watch::Receiver<bool>) {
    let mut rng = ClientRng::new(storm.seed, i);
    let mut dropped_before = false;
    loop {
        let held = ws
            .hold(async {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        let cause = match held {
            Ok(()) => {
                ws.close(CLOSE_WITHIN).await;
                return;
            }
            Err(cause) => cause,
        };
        drop(ws);
        storm.on_drop(&cause, &mut dropped_before);
        // Boxed: the reconnect loop's memory exists only while a client is down.
        match Box::pin(reconnect(&storm, i, &mut rng, &mut stop)).await {
            Some(again) => ws = again,
            None => return,
        }
    }
}

/// Attempts until one succeeds, waiting the policy's delay before each; `None` once stopped.
async fn reconnect(
    storm: &Storm,
    i: usize,
    rng: &mut ClientRng,
    stop: &mut watch::Receiver<bool>,
) -> Option<WireSocket> {
    let mut attempt = 0u32;
    loop {
        let delay = storm.policy.delay(attempt, rng.next_f64());
        attempt = attempt.saturating_add(1);
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return None,
            () = tokio::time::sleep(delay) => {}
        }
        storm.on_attempt();
        let opts = storm.target.options_for(i);
        let connected = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return None,
            connected = WireSocket::connect(&opts) => connected,
        };
        match connected {
            Ok(ws) => {
                storm.on_reconnect();
                return Some(ws);
            }
            Err(e) => storm.on_failure(&e),
        }
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FailureKind {
    Status(u16),
    Refused,
    Reset,
    Timeout,
    Tls,
    Other,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::Status(status) => write!(f, "{status}"),
            FailureKind::Refused => f.write_str("refused"),
            FailureKind::Reset => f.write_str("reset"),
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::Tls => f.write_str("tls"),
            FailureKind::Other => f.write_str("other"),
        }
    }
}

impl FailureKind {
    fn of(e: &ProbeError) -> Self {
        let ProbeError::Dial { stage, source, .. } = e else {
            return FailureKind::Other;
        };
        if let Some(UpgradeStatus(status)) = source.downcast_ref::<UpgradeStatus>() {
            return FailureKind::Status(*status);
        }
        if *stage == ConnectStage::Timeout {
            return FailureKind::Timeout;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    ConnectionRefused => return FailureKind::Refused,
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => return FailureKind::Reset,
                    TimedOut => return FailureKind::Timeout,
                    _ => {}
                }
            }
            cause = e.source();
        }
        if *stage == ConnectStage::Tls {
            FailureKind::Tls
        } else {
            FailureKind::Other
        }
    }
}

fn drop_cause(e: &LoadError) -> String {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    match e {
        LoadError::Closed { code: Some(code) } => format!("close {code}"),
        LoadError::Closed { code: None } => "eof".into(),
        LoadError::Io(io) if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) => "reset".into(),
        LoadError::Io(_) => "io".into(),
        LoadError::Protocol { .. } => "protocol".into(),
        _ => "other".into(),
    }
}

/// Events per 100 ms bucket, counted from the first drop.
#[derive(Debug, Default)]
struct Bucket {
    attempts: AtomicU32,
    failures: AtomicU32,
    reconnects: AtomicU32,
    drops: AtomicU32,
}

/// A bucket's counts, read at the end.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    attempts: u32,
    failures: u32,
    reconnects: u32,
    drops: u32,
}

/// What every client task shares.
#[derive(Debug)]
struct Storm {
    target: Target,
    policy: ReconnectPolicy,
    seed: u64,
    /// For the progress line: `connected - ended` is kept at the open count
    /// (a drop adds to `ended`, a reconnect takes it back), `handshakes` counts attempts.
    counters: Arc<Counters>,
    /// Set once every initial attempt is done; drops before it are not the storm's.
    ready: OnceLock<Instant>,
    first_drop: OnceLock<Instant>,
    first_drop_seen: Notify,
    /// Clients down now: dropped and not yet open again.
    down: AtomicU64,
    /// At most this many down means 99 % open; `u64::MAX` until ready.
    down_99: AtomicU64,
    dropped: AtomicU64,
    drops: AtomicU64,
    drops_before_ready: AtomicU64,
    /// µs after the first drop + 1 (0: never) when `down` last reached 0.
    all_open_at_us: AtomicU64,
    /// µs after the first drop + 1 (0: never) when `down` last fell to `down_99`.
    open_99_at_us: AtomicU64,
    buckets: Vec<Bucket>,
    failures: Mutex<BTreeMap<FailureKind, u64>>,
    drop_causes: Mutex<BTreeMap<String, u64>>,
    last_error: Mutex<Option<String>>,
}

impl Storm {
    fn new(target: Target, policy: ReconnectPolicy, seed: u64, counters: Arc<Counters>, deadline: Duration) -> Self {
        // Up to the deadline, plus the bucket the run ends in and one for stragglers.
        let buckets = (deadline.as_millis() / BUCKET.as_millis()) as usize + 2;
        Storm {
            target,
            policy,
            seed,
            counters,
            ready: OnceLock::new(),
            first_drop: OnceLock::new(),
            first_drop_seen: Notify::new(),
            down: AtomicU64::new(0),
            down_99: AtomicU64::new(u64::MAX),
            dropped: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            drops_before_ready: AtomicU64::new(0),
            all_open_at_us: AtomicU64::new(0),
            open_99_at_us: AtomicU64::new(0),
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            failures: Mutex::new(BTreeMap::new()),
            drop_causes: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
        }
    }

    /// Time since the first drop, once there was one.
    fn since_first_drop(&self, at: Instant) -> Option<Duration> {
        self.first_drop.get().map(|first| at.saturating_duration_since(*first))
    }

    /// The bucket of an event at `at`; none before the storm.
    fn bucket(&self, at: Instant) -> Option<&Bucket> {
        let since = self.since_first_drop(at)?;
        let i = (since.as_millis() / BUCKET.as_millis()) as usize;
        self.buckets.get(i.min(self.buckets.len() - 1))
    }

    fn on_drop(&self, cause: &LoadError, dropped_before: &mut bool) {
        let at = Instant::now();
        self.counters.ended.fetch_add(1, Ordering::Relaxed);
        if self.ready.get().is_some() {
            if self.first_drop.set(at).is_ok() {
                self.first_drop_seen.notify_one();
            }
            self.drops.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(dropped_before, true) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(b) = self.bucket(at) {
                b.drops.fetch_add(1, Ordering::Relaxed);
            }
            *lock(&self.drop_causes).entry(drop_cause(cause)).or_default() += 1;
        } else {
            self.drops_before_ready.fetch_add(1, Ordering::Relaxed);
        }
        self.down.fetch_add(1, Ordering::Relaxed);
    }

    fn on_attempt(&self) {
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = self.bucket(Instant::now()) {
            b.attempts.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_failure(&self, e: &ProbeError) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = self.bucket(Instant::now()) {
            b.failures.fetch_add(1, Ordering::Relaxed);
            *lock(&self.failures).entry(FailureKind::of(e)).or_default() += 1;
        }
        let source = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
        *lock(&self.last_error) = Some(format!("{e}: {source}"));
    }

    fn on_reconnect(&self) {
        let at = Instant::now();
        self.counters.ended.fetch_sub(1, Ordering::Relaxed);
        let was = self.down.fetch_sub(1, Ordering::Relaxed);
        let now = was - 1;
        if let Some(b) = self.bucket(at) {
            b.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let Some(since) = self.since_first_drop(at) else {
            return;
        };
        let stamp = u64::try_from(since.as_micros()).unwrap_or(u64::MAX - 1) + 1;
        if now == 0 {
            self.all_open_at_us.fetch_max(stamp, Ordering::Relaxed);
        }
        let down_99 = self.down_99.load(Ordering::Relaxed);
        if was > down_99 && now <= down_99 {
            self.open_99_at_us.fetch_max(stamp, Ordering::Relaxed);
        }
    }

    fn all_open_at(&self) -> Option<Duration> {
        stamp_to_duration(self.all_open_at_us.load(Ordering::Relaxed))
    }

    fn open_99_at(&self) -> Option<Duration> {
        stamp_to_duration(self.open_99_at_us.load(Ordering::Relaxed))
    }

    /// The counts of the buckets up to the one `elapsed` (since the first drop) falls in.
    fn snapshot(&self, elapsed: Duration) -> Vec<Counts> {
        let last = ((elapsed.as_millis() / BUCKET.as_millis()) as usize).min(self.buckets.len() - 1);
        self.buckets[..=last]
            .iter()
            .map(|b| Counts {
                attempts: b.attempts.load(Ordering::Relaxed),
                failures: b.failures.load(Ordering::Relaxed),
                reconnects: b.reconnects.load(Ordering::Relaxed),
                drops: b.drops.load(Ordering::Relaxed),
            })
            .collect()
    }
}

fn stamp_to_duration(stamp: u64) -> Option<Duration> {
    stamp.checked_sub(1).map(Duration::from_micros)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The samples: each bucket's counts and the clients open at its end, worked
/// back from the clients down at the end (`down`) so the last sample matches it.
fn timeline(buckets: &[Counts], connected: u64, down: u64, duration: Duration) -> Vec<StormSample> {
    let net: i64 = buckets
        .iter()
        .map(|b| i64::from(b.drops) - i64::from(b.reconnects))
        .sum();
    // Clients down before the first drop's bucket (dropped during the ramp, say).
    let mut down_now = down as i64 - net;
    let end_s = duration.as_secs_f64();
    buckets
        .iter()
        .enumerate()
        .map(|(k, b)| {
            down_now += i64::from(b.drops) - i64::from(b.reconnects);
            let down = down_now.clamp(0, connected as i64) as u64;
            StormSample {
                // Whole milliseconds: 0.6, not 0.6000000000000001.
                t_s: (((k + 1) as f64 * BUCKET.as_secs_f64()).min(end_s) * 1000.0).round() / 1000.0,
                open: connected - down,
                attempts: b.attempts,
                failures: b.failures,
                reconnects: b.reconnects,
                drops: b.drops,
            }
        })
        .collect()
}

/// The largest sum of any `BUCKETS_PER_SECOND` consecutive buckets (fewer at the start).
fn peak_per_second(per_bucket: impl Iterator<Item = u32>) -> u64 {
    let per_bucket: Vec<u64> = per_bucket.map(u64::from).collect();
    let mut window = 0;
    let mut peak = 0;
    for (k, n) in per_bucket.iter().enumerate() {
        window += n;
        if k >= BUCKETS_PER_SECOND {
            window -= per_bucket[k - BUCKETS_PER_SECOND];
        }
        peak = peak.max(window);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial_ms: u64, max_ms: u64, jitter: f64) -> ReconnectPolicy {
        ReconnectPolicy {
            initial_ms,
            max_ms,
            factor: 2.0,
            jitter,
        }
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn delays_grow_by_the_factor_and_cap_at_max() {
        let p = policy(1000, 5000, 0.0);
        let schedule: Vec<u64> = (0..8).map(|n| ms(p.delay(n, 0.7))).collect();
        assert_eq!(schedule, [1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000]);
        let triple = ReconnectPolicy {
            factor: 3.0,
            ..policy(100, 10_000, 0.0)
        };
        let schedule: Vec<u64> = (0..6).map(|n| ms(triple.delay(n, 0.0))).collect();
        assert_eq!(schedule, [100, 300, 900, 2700, 8100, 10_000]);
        // Far past the cap, nothing overflows.
        assert_eq!(ms(p.delay(u32::MAX, 0.3)), 5000);
        assert_eq!(ms(policy(1000, 5000, 0.5).delay(u32::MAX, 0.99)), 5000);
    }

    #[test]
    fn jittered_delays_lie_within_half_to_one_and_a_half_of_the_base_capped_at_max() {
        let p = ReconnectPolicy::default();
        let mut rng = ClientRng::new(7, 0);
        for n in 0..8u32 {
            let base = 1000.0 * 2f64.powi(n as i32);
            let (low, high) = ((0.5 * base).min(5000.0) as u64, (1.5 * base).min(5000.0) as u64);
            let delays: Vec<u64> = (0..2000).map(|_| ms(p.delay(n, rng.next_f64()))).collect();
            assert!(
                delays.iter().all(|d| (low..=high).contains(d)),
                "attempt {n}: {low}..={high}"
            );
            if high < 5000 {
                // Spread over the whole band, on both sides of the base.
                assert!(delays.iter().any(|d| *d < low + (base * 0.1) as u64), "attempt {n}");
                assert!(delays.iter().any(|d| *d > high - (base * 0.1) as u64), "attempt {n}");
            }
        }
    }

    #[test]
    fn jitter_applies_before_the_cap_so_late_attempts_all_wait_exactly_max() {
        // backo2 jitters the uncapped 16 s of attempt 4: even its shortest, 8 s, exceeds the cap.
        let p = ReconnectPolicy::default();
        let mut rng = ClientRng::new(11, 3);
        assert!((0..1000).all(|_| ms(p.delay(4, rng.next_f64())) == 5000));
        // Attempt 3 (8 s ± 4 s) lands in [4 s, 5 s].
        assert!((0..1000).all(|_| (4000..=5000).contains(&ms(p.delay(3, rng.next_f64())))));
    }

    #[test]
    fn the_jitter_sign_follows_the_tenths_digit_of_the_draw() {
        let p = policy(1000, 60_000, 0.5);
        // 0.25: tenths digit 2 (even) → 1000 - floor(0.25 · 0.5 · 1000) = 875.
        assert_eq!(ms(p.delay(0, 0.25)), 875);
        // 0.35: tenths digit 3 (odd) → 1000 + 175.
        assert_eq!(ms(p.delay(0, 0.35)), 1175);
        assert_eq!(ms(p.delay(0, 0.0)), 1000);
    }

    #[test]
    fn without_jitter_every_client_follows_the_same_exact_schedule() {
        let p = policy(1000, 5000, 0.0);
        let schedules: Vec<Vec<Duration>> = (0..50)
            .map(|client| {
                let mut rng = ClientRng::new(99, client);
                (0..10).map(|n| p.delay(n, rng.next_f64())).collect()
            })
            .collect();
        let expected: Vec<Duration> = [1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000, 5000]
            .map(Duration::from_millis)
            .to_vec();
        assert!(schedules.iter().all(|s| *s == expected));
    }

    #[test]
    fn a_seed_replays_each_clients_jitter_and_clients_differ() {
        let p = ReconnectPolicy::default();
        let schedule = |seed, client| {
            let mut rng = ClientRng::new(seed, client);
            (0..4).map(|n| p.delay(n, rng.next_f64())).collect::<Vec<_>>()
        };
        assert_eq!(schedule(42, 5), schedule(42, 5));
        assert_ne!(schedule(42, 5), schedule(42, 6));
        assert_ne!(schedule(42, 5), schedule(43, 5));
        let mut rng = ClientRng::new(1, 1);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.next_f64()).collect();
        assert!(draws.iter().all(|r| (0.0..1.0).contains(r)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn policies_outside_backo2s_ranges_are_refused() {
        assert!(ReconnectPolicy::default().validate().is_ok());
        assert!(policy(1000, 5000, 1.5).validate().is_err());
        assert!(policy(1000, 5000, -0.1).validate().is_err());
        let flat = ReconnectPolicy {
            factor: 0.0,
            ..ReconnectPolicy::default()
        };
        assert!(flat.validate().is_err());
    }

    #[test]
    fn peak_rates_slide_a_one_second_window_over_the_buckets() {
        assert_eq!(peak_per_second([].into_iter()), 0);
        assert_eq!(peak_per_second([5, 5].into_iter()), 10);
        // Twelve buckets: the best ten are the last ten.
        let counts = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4];
        assert_eq!(peak_per_second(counts.into_iter()), 8);
    }

    #[test]
    fn failures_are_counted_by_status_or_kind() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let dial = |stage, source: Box<dyn std::error::Error + Send + Sync>| ProbeError::Dial { addr, stage, source };
        let io = |kind| Box::new(std::io::Error::from(kind));
        use std::io::ErrorKind;
        let cases = [
            (dial(ConnectStage::Handshake, Box::new(UpgradeStatus(502))), "502"),
            (dial(ConnectStage::Tcp, io(ErrorKind::ConnectionRefused)), "refused"),
            (dial(ConnectStage::Handshake, io(ErrorKind::ConnectionReset)), "reset"),
            (dial(ConnectStage::Handshake, io(ErrorKind::UnexpectedEof)), "reset"),
            (dial(ConnectStage::Timeout, "no upgrade within 10s".into()), "timeout"),
            (dial(ConnectStage::Tls, "bad certificate".into()), "tls"),
            (dial(ConnectStage::Bind, io(ErrorKind::AddrInUse)), "other"),
        ];
        for (e, kind) in cases {
            assert_eq!(FailureKind::of(&e).to_string(), kind, "{e:?}");
        }
    }

    #[test]
    fn the_timeline_ends_with_the_open_count_at_the_end() {
        let counts = |drops, reconnects| Counts {
            drops,
            reconnects,
            ..Counts::default()
        };
        let samples = timeline(
            &[counts(10, 0), counts(0, 4), counts(0, 6)],
            10,
            0,
            Duration::from_millis(250),
        );
        let open: Vec<u64> = samples.iter().map(|s| s.open).collect();
        assert_eq!(open, [0, 4, 10]);
        assert_eq!(samples[2].t_s, 0.25);
    }
}

//! Reconnect storms: what a data-plane reload, the data plane's own termination and a rollout of
//! the pods do to clients that reconnect the way browser client libraries do, behind each data plane.
//!
//! For every data plane (`bench-dataplane <controller> --pods 3 --drain-limit 2 --prestop 1`), for
//! each event and each reconnect policy, one run on a fresh deployment: the load generator
//! (`testbed load storm`) opens the clients and says `ready`; the event goes to `bench-dataplane`
//! (`reload`, `terminate` or `rollout`); the generator then reconnects every dropped client with
//! socket.io-client's backoff and reports how long the clients took to come back, which
//! handshakes failed and how, and a 100 ms timeline.
//!
//! - `reload`: the controller-wide change the controller reloads its data plane for. nginx and
//!   HAProxy start new workers; the old ones cut the WebSockets they hold after the drain limit
//!   (2 s here). Traefik and Envoy Gateway apply that change in process and keep every open
//!   WebSocket: their row says so and no storm is measured.
//! - `terminate`: the data plane's own pod terminated, as a controller upgrade does (its chart's
//!   preStop, the signal, SIGKILL at the end of its grace: `model::shutdown`); its replacement
//!   starts on the same listener once it is gone, because one replica holding the node's hostPorts
//!   cannot be replaced sooner (the kind cluster's topology). The replacement's start-up is the
//!   local process's, not a pod's (no image pull, container start or readiness probe period).
//! - `rollout`: a rolling restart of the pods (maxSurge 1): each old pod's preStop holds it 1 s,
//!   then it closes its WebSockets with 1001.
//!
//! Each proxied WebSocket holds two descriptors in the data plane (client and upstream), so a
//! data-plane process with RLIMIT_NOFILE 20,000 holds at most about 9,872 of them: the clients
//! are capped at what the data plane's processes allow ([`client_limit`]), and the run says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use model::Controller;
use probe::load::{StormOutcome, StormResult, StormSample};
use serde::{Deserialize, Serialize};
use ws_echo::config::duration_arg;

use crate::launch::{DataPlaneInfo, Generator, Launcher, Server, strings};
use crate::render::{Table, html_escape, thousands};
use crate::run::{FD_MARGIN, Paths, generator_args};
use crate::setup::Setup;

/// Pods behind the data plane.
pub const PODS: u32 = 3;
/// How long a replaced nginx/HAProxy worker keeps its connections after a reload.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// The pods' preStop: a rolled-out pod closes its WebSockets with 1001 this long after it is told to go.
pub const PRESTOP: Duration = Duration::from_secs(1);
/// Descriptors a proxied WebSocket holds in the data plane: the client's and the upstream's.
pub const FDS_PER_PROXIED_WEBSOCKET: usize = 2;
/// The longest timeline kept per run; longer ones are downsampled ([`downsample`]).
pub const MAX_TIMELINE_POINTS: usize = 300;
/// What a controller that does not reload its data plane for a controller-wide change does.
pub const DOES_NOT_RELOAD: &str = "does not reload: open WebSockets are kept";

/// Every client's jitter comes from this seed, so runs replay the same schedules.
const SEED: u64 = 1;
/// The generator's first client source address (run.rs uses 127.0.3.x, capacity 127.0.10.x on).
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 1);
/// Clients per source address: leaves ephemeral ports for the storm's retries.
const PER_SOURCE: usize = 4_000;
/// How long `reload` or `rollout` may take to answer (a rollout waits for every old pod).
const EVENT_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the ready file is looked at.
const READY_POLL: Duration = Duration::from_millis(20);
/// socket.io-client's reconnection defaults (see `probe::load::storm`).
const INITIAL: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(5);
const FACTOR: f64 = 2.0;

/// How many clients and how long: `StormSettings::default()` for a real run, [`StormSettings::smoke`].
#[derive(Debug, Clone, PartialEq)]
pub struct StormSettings {
    /// Clients each run holds before its event (capped per data plane: [`client_limit`]).
    pub clients: usize,
    /// A run ends this long after its first drop at the latest.
    pub deadline: Duration,
    /// Shorter settle and wait (a smoke run).
    pub quick: bool,
    /// The data planes to run through (default every one).
    pub controllers: Vec<Controller>,
}

impl Default for StormSettings {
    fn default() -> Self {
        StormSettings {
            clients: 10_000,
            deadline: Duration::from_secs(120),
            quick: false,
            controllers: Controller::ALL.to_vec(),
        }
    }
}

impl StormSettings {
    /// 300 clients, 30 s deadline, 1 s settle: every run in seconds.
    pub fn smoke() -> Self {
        StormSettings {
            clients: 300,
            deadline: Duration::from_secs(30),
            quick: true,
            controllers: Controller::ALL.to_vec(),
        }
    }

    /// A run ends once every client has been open again for this long.
    pub fn settle(&self) -> Duration {
        Duration::from_secs(if self.quick { 1 } else { 2 })
    }

    /// The generator gives up when nothing dropped this long after ready.
    pub fn wait(&self) -> Duration {
        Duration::from_secs(if self.quick { 30 } else { 60 })
    }

    /// How long opening the clients may take before `ready`.
    fn ready_timeout(&self, clients: usize) -> Duration {
        Duration::from_secs(30) + Duration::from_millis(5 * clients as u64)
    }
}

/// What drops the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Reload,
    Termination,
    Rollout,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Reload, Event::Termination, Event::Rollout];

    /// `bench-dataplane`'s command.
    pub fn command(self) -> &'static str {
        match self {
            Event::Reload => "reload",
            Event::Termination => "terminate",
            Event::Rollout => "rollout",
        }
    }

    /// For a chart's title: "Clients open after a …".
    fn noun(self) -> &'static str {
        match self {
            Event::Reload => "reload",
            Event::Termination => "data-plane termination",
            Event::Rollout => "rollout",
        }
    }

    pub fn describe(self) -> String {
        match self {
            Event::Reload => format!(
                "a reload (the controller-wide change the controller reloads its data plane for; the old workers \
                 cut their WebSockets after the {} s drain limit)",
                DRAIN_LIMIT.as_secs()
            ),
            Event::Termination => "the data plane's termination (its pod terminated as a controller upgrade does: \
                 the chart's preStop, the signal, SIGKILL at the end of its grace period; the replacement starts on \
                 the same listener once the old one is gone, as one replica holding the node's hostPorts must; \
                 modelled: the replacement starts as a local process, without a pod's image pull, container start \
                 or readiness probe period)"
                .to_owned(),
            Event::Rollout => format!(
                "a rollout (rolling restart of the {PODS} pods, maxSurge 1; each old pod closes its WebSockets \
                 with 1001 after a {} s preStop)",
                PRESTOP.as_secs()
            ),
        }
    }
}

/// How the clients spread their retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// socket.io-client's default randomizationFactor 0.5.
    Jittered,
    /// randomizationFactor 0: every client retries at the same instants.
    NoJitter,
}

impl Policy {
    pub const ALL: [Policy; 2] = [Policy::Jittered, Policy::NoJitter];

    pub fn jitter(self) -> f64 {
        match self {
            Policy::Jittered => 0.5,
            Policy::NoJitter => 0.0,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Policy::Jittered => "jittered (±50 %)",
            Policy::NoJitter => "no jitter",
        }
    }

    /// For a chart's legend.
    fn short(self) -> &'static str {
        match self {
            Policy::Jittered => "jittered",
            Policy::NoJitter => "no jitter",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Policy::Jittered => "jittered",
            Policy::NoJitter => "no-jitter",
        }
    }
}

/// Every run, and what they mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storms {
    /// Clients asked for per run (each run's own `clients` may be capped lower).
    pub clients: usize,
    pub deadline_s: f64,
    pub settle_s: f64,
    /// A smoke run: too small to quote.
    pub quick: bool,
    /// The data planes the run went through, by [`Setup::label`]: the controller's name, and the
    /// raised limit where a setup raises one.
    pub controllers: Vec<String>,
    pub runs: Vec<StormRun>,
    /// The reconnect policies and events, in words.
    pub policy_doc: String,
    pub notes: Vec<String>,
}

/// One controller × event × policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormRun {
    pub controller: String,
    /// [`Setup::label`] where the setup raises a limit (`None`: the controller's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// [`Setup::setting`], in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// The data plane's version, once it was deployed.
    pub data_plane: Option<String>,
    pub event: Event,
    /// `None`: the row stands for every policy (nothing was measured: [`StormRun::not_measured`]).
    pub policy: Option<Policy>,
    /// The policy's randomizationFactor.
    pub jitter: Option<f64>,
    /// Clients the run opened: the settings' count, capped by `client_limit`.
    pub clients: usize,
    pub client_limit: Option<ClientLimit>,
    /// Why no storm was measured although the run did what it should ([`DOES_NOT_RELOAD`]).
    pub not_measured: Option<String>,
    /// Why the run failed.
    pub error: Option<String>,
    pub figures: Option<StormFigures>,
}

/// How many clients a data plane can hold here, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientLimit {
    pub asked: usize,
    /// The most clients the data plane's processes and the generator can hold.
    pub allowed: usize,
    /// Processes that hold connections (nginx: its workers; the others: one process).
    pub data_plane_processes: usize,
    /// The data plane's RLIMIT_NOFILE (soft), when known.
    pub data_plane_nofile: Option<u64>,
    pub generator_nofile: u64,
    pub reason: String,
}

impl StormRun {
    /// The setup's label: the controller's name for its defaults.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.controller)
    }
}

impl ClientLimit {
    pub fn capped(&self) -> bool {
        self.allowed < self.asked
    }
}

/// What the load generator measured (`probe::load::StormResult`), times from the first drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormFigures {
    /// Clients open at ready: the storm's population.
    pub connected: u64,
    /// Initial connection attempts that failed.
    pub initial_failures: u64,
    /// Distinct clients that dropped at least once after ready.
    pub dropped: u64,
    /// Drop events (a client dropped twice counts twice).
    pub drops: u64,
    /// How connections ended: "close 1001", "eof", "reset", "io", "protocol".
    pub drop_causes: BTreeMap<String, u64>,
    pub drops_before_ready: u64,
    /// Why the run ended: every client back for the settle time, or the deadline.
    pub outcome: StormOutcome,
    /// Seconds from the first drop to the end of the run.
    pub duration_s: f64,
    /// Clients open at the end.
    pub reconnected: u64,
    /// From the first drop until ≥ 99 % of `connected` were open, for good; `None`: not at the end.
    pub time_to_99_s: Option<f64>,
    /// From the first drop until every client was open, for good; `None`: never.
    pub time_to_all_s: Option<f64>,
    /// Reconnect attempts, successful or not.
    pub handshake_attempts: u64,
    /// Failed reconnect attempts by kind: HTTP status of the upgrade ("502"), or "refused",
    /// "reset", "timeout", "tls", "other".
    pub failed_handshakes: BTreeMap<String, u64>,
    /// The most reconnect attempts started in any 1 s window.
    pub peak_handshakes_per_sec: u64,
    /// The most successful reconnects in any 1 s window.
    pub peak_successful_handshakes_per_sec: u64,
    /// `bench-dataplane`'s `after_ms` for the event: reload, until the data plane ran with the
    /// change; terminate, until the replacement routed to every pod; rollout, until every old pod
    /// was gone. Counted from the command, not the first drop.
    pub event_after_ms: Option<u64>,
    /// terminate: until the old data plane had exited, from the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane_gone_ms: Option<u64>,
    pub seed: u64,
    pub generator_cpu_percent: Option<f64>,
    pub last_error: Option<String>,
    /// The generator's 100 ms samples before [`downsample`].
    pub timeline_buckets: usize,
    /// At most [`MAX_TIMELINE_POINTS`] samples; when downsampled, each sample's counts are the sums
    /// since the previous kept sample and `open` is the count at its `t_s`.
    pub timeline: Vec<StormSample>,
}

impl StormFigures {
    pub fn from_result(r: StormResult, event_after_ms: Option<u64>, data_plane_gone_ms: Option<u64>) -> Self {
        StormFigures {
            connected: r.connected,
            initial_failures: r.failed,
            dropped: r.dropped,
            drops: r.drops,
            drop_causes: r.drop_causes,
            drops_before_ready: r.drops_before_ready,
            outcome: r.outcome,
            duration_s: r.duration_s,
            reconnected: r.reconnected,
            time_to_99_s: r.time_to_99_s,
            time_to_all_s: r.time_to_all_s,
            handshake_attempts: r.handshake_attempts,
            failed_handshakes: r.failed_handshakes,
            peak_handshakes_per_sec: r.peak_handshakes_per_sec,
            peak_successful_handshakes_per_sec: r.peak_successful_handshakes_per_sec,
            event_after_ms,
            data_plane_gone_ms,
            seed: r.seed,
            generator_cpu_percent: r.generator_cpu_percent,
            last_error: r.last_error,
            timeline_buckets: r.timeline.len(),
            timeline: downsample(&r.timeline, MAX_TIMELINE_POINTS),
        }
    }
}

/// The reconnect policies and the events, in words (for the report).
pub fn policy_doc() -> String {
    format!(
        "Clients reconnect as socket.io-client does (its Manager with backo2's backoff): a dropped client waits \
         before every attempt, attempt n (from 0) waiting min({initial} s × {FACTOR}^n, {max} s); a successful attempt \
         resets n. Jittered (socket.io's default randomizationFactor 0.5): each wait moves by up to ±50 % of the \
         uncapped value, so the clients dropped together spread their retries (from attempt 4 on every client waits \
         exactly {max} s). No jitter: every client waits exactly {initial} s, 2 s, 4 s, {max} s, … after its drop, so clients \
         dropped together retry together. Events: {}; {}; and {}. Times count from the first drop; a client is back when \
         its WebSocket upgrade succeeded.",
        Event::Reload.describe(),
        Event::Termination.describe(),
        Event::Rollout.describe(),
        initial = INITIAL.as_secs(),
        max = MAX_DELAY.as_secs(),
    )
}

/// Every run of `s`: one fresh deployment each. Failures are recorded in their row (and the notes).
pub fn run(launcher: &Launcher, paths: &Paths, s: &StormSettings) -> Storms {
    let mut storms = Storms {
        clients: s.clients,
        deadline_s: s.deadline.as_secs_f64(),
        settle_s: s.settle().as_secs_f64(),
        quick: s.quick,
        controllers: Setup::all(&s.controllers).iter().map(Setup::label).collect(),
        runs: Vec::new(),
        policy_doc: policy_doc(),
        notes: Vec::new(),
    };
    if let Err(e) = std::fs::create_dir_all(&paths.logs) {
        storms.notes.push(format!("creating {}: {e}", paths.logs.display()));
    }
    for setup in Setup::all(&s.controllers) {
        let controller = setup.label();
        for event in Event::ALL {
            for policy in Policy::ALL {
                eprintln!(
                    "bench: storm: {controller}, {}, {}, {} clients",
                    event.command(),
                    policy.label(),
                    s.clients
                );
                let row = measure(launcher, paths, s, setup, event, policy);
                if let Some(e) = &row.error {
                    let note = format!("{controller} {} {}: {e}", event.command(), policy.label());
                    eprintln!("bench: storm: {note}");
                    storms.notes.push(note);
                }
                if let Some(limit) = row.client_limit.as_ref().filter(|l| l.capped()) {
                    let note = format!("{controller}: {}", limit.reason);
                    if !storms.notes.contains(&note) {
                        storms.notes.push(note);
                    }
                }
                let stands_for_every_policy = row.policy.is_none();
                storms.runs.push(row);
                if stands_for_every_policy {
                    break;
                }
            }
        }
    }
    storms
}

/// One run on a fresh deployment.
fn measure(
    launcher: &Launcher,
    paths: &Paths,
    s: &StormSettings,
    setup: Setup,
    event: Event,
    policy: Policy,
) -> StormRun {
    let controller = setup.controller;
    let mut row = StormRun {
        controller: controller.name().to_owned(),
        label: setup.setting().map(|_| setup.label()),
        setting: setup.setting(),
        data_plane: None,
        event,
        policy: Some(policy),
        jitter: Some(policy.jitter()),
        clients: s.clients,
        client_limit: None,
        not_measured: None,
        error: None,
        figures: None,
    };
    let env = [
        ("TESTBED_WS_ECHO", paths.ws_echo.display().to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut options = strings(&[
        "--pods",
        &PODS.to_string(),
        "--drain-limit",
        &DRAIN_LIMIT.as_secs_f64().to_string(),
        "--prestop",
        &PRESTOP.as_secs_f64().to_string(),
    ]);
    options.extend(setup.options());
    let deployed = launcher.data_plane_with(&paths.data_plane, controller, &options, &env, &paths.logs);
    let (mut server, info) = match deployed {
        Ok(deployed) => deployed,
        Err(e) => {
            row.error = Some(format!("deploying ws-echo behind {}: {e:#}", setup.label()));
            return row;
        }
    };
    row.data_plane = Some(info.data_plane.clone());
    if event == Event::Reload && info.reloads == Some(false) {
        row.policy = None;
        row.jitter = None;
        row.clients = 0;
        row.not_measured = Some(DOES_NOT_RELOAD.to_owned());
        server.stop(Duration::from_secs(15));
        return row;
    }
    let processes = info.data_plane_pids.as_ref().map_or(1, |p| p.workers.len().max(1));
    // What the controller renders may hold fewer: nginx's worker_connections, Envoy Gateway's
    // circuit breaker. A storm through more clients than that would measure the cap, not the storm.
    let rendered = crate::dataplanes::connection_cap(setup, processes, None, None);
    let limit = client_limit(s.clients, info.data_plane_nofile, processes, launcher.nofile, rendered);
    row.clients = limit.allowed.min(s.clients);
    row.client_limit = Some(limit);
    match storm(
        launcher,
        paths,
        s,
        &mut server,
        &info,
        setup,
        event,
        policy,
        row.clients,
    ) {
        Ok(figures) => row.figures = Some(figures),
        Err(e) => row.error = Some(format!("{e:#}")),
    }
    server.stop(Duration::from_secs(15));
    row
}

/// Holds `clients` through the deployment, fires `event` at ready, and collects the storm.
#[allow(clippy::too_many_arguments)]
fn storm(
    launcher: &Launcher,
    paths: &Paths,
    s: &StormSettings,
    server: &mut Server,
    info: &DataPlaneInfo,
    setup: Setup,
    event: Event,
    policy: Policy,
    clients: usize,
) -> anyhow::Result<StormFigures> {
    let controller = setup.label();
    let ready = paths.logs.join(format!(
        "storm-{}-{}-{}.ready",
        setup.slug(),
        event.command(),
        policy.slug()
    ));
    match std::fs::remove_file(&ready) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("removing the old ready file {}: {e}", ready.display()),
    }
    let sources = u32::try_from(clients.div_ceil(PER_SOURCE).max(1)).unwrap_or(u32::MAX);
    let args = generator_args(
        info.addr,
        &info.url,
        Some((sources, FIRST_SOURCE)),
        &storm_args(clients, policy, s, &ready),
    );
    let mut generator = launcher.spawn_generator(&paths.testbed, &args)?;
    let ready_timeout = s.ready_timeout(clients);
    let connected = wait_ready(&ready, &mut generator, ready_timeout).with_context(|| {
        format!(
            "opening {clients} WebSockets through {controller} before the {}",
            event.command()
        )
    })?;
    eprintln!(
        "bench: storm: {connected}/{clients} open through {controller}; {}",
        event.command()
    );
    let reply = server.command(event.command(), EVENT_TIMEOUT)?;
    let after_ms = reply.get("after_ms").and_then(serde_json::Value::as_u64);
    let gone_ms = reply.get("gone_ms").and_then(serde_json::Value::as_u64);
    let result: StormResult = generator
        .finish()
        .with_context(|| format!("the storm after the {} through {controller}", event.command()))?;
    Ok(StormFigures::from_result(result, after_ms, gone_ms))
}

/// `storm …`: the mode's part of `testbed load`'s arguments.
fn storm_args(clients: usize, policy: Policy, s: &StormSettings, ready: &Path) -> Vec<String> {
    let mut args = strings(&["storm", "-c", &clients.to_string()]);
    for (flag, value) in [
        ("--initial", duration_arg(INITIAL)),
        ("--max", duration_arg(MAX_DELAY)),
        ("--factor", FACTOR.to_string()),
        ("--jitter", policy.jitter().to_string()),
        ("--settle", duration_arg(s.settle())),
        ("--deadline", duration_arg(s.deadline)),
        ("--wait", duration_arg(s.wait())),
        ("--ready-file", ready.display().to_string()),
        ("--seed", SEED.to_string()),
    ] {
        args.push(flag.to_owned());
        args.push(value);
    }
    args
}

/// Waits for the generator's `ready <connected>` line; fails when the generator ends first or
/// `timeout` passes.
fn wait_ready(path: &Path, generator: &mut Generator, timeout: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(connected) = parse_ready(&text)
        {
            return Ok(connected);
        }
        if !generator.running() {
            bail!(
                "the storm generator exited before it wrote `ready <connected>` to {} (its stderr is above)",
                path.display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {timeout:?} waiting for the storm generator to write `ready <connected>` to {}",
                path.display()
            );
        }
        std::thread::sleep(READY_POLL);
    }
}

/// `ready 300` → 300.
fn parse_ready(text: &str) -> Option<u64> {
    text.trim().strip_prefix("ready ")?.trim().parse().ok()
}

/// The most clients the data plane and the generator can hold at once here: each of the data
/// plane's `processes` (nginx's workers; one process for the others) needs two descriptors per
/// proxied WebSocket within its RLIMIT_NOFILE, less [`FD_MARGIN`]; the generator one per client;
/// and no more than `rendered`, the most its controller's rendered limits let through, with why
/// (`dataplanes::connection_cap`). With several workers this counts on the kernel spreading the
/// connections over them.
pub fn client_limit(
    asked: usize,
    data_plane_nofile: Option<u64>,
    processes: usize,
    generator_nofile: u64,
    rendered: Option<(u64, String)>,
) -> ClientLimit {
    let processes = processes.max(1);
    let usable = |nofile: u64| usize::try_from(nofile).unwrap_or(usize::MAX).saturating_sub(FD_MARGIN);
    let per_process = data_plane_nofile.map(|n| usable(n) / FDS_PER_PROXIED_WEBSOCKET);
    let data_plane = per_process.map(|p| p.saturating_mul(processes));
    let generator = usable(generator_nofile);
    let descriptors = data_plane.unwrap_or(usize::MAX).min(generator).max(1);
    let rendered = rendered
        .map(|(most, why)| (usize::try_from(most).unwrap_or(usize::MAX).max(1), why))
        .filter(|(most, _)| *most < descriptors);
    let allowed = rendered.as_ref().map_or(descriptors, |(most, _)| *most);
    let workers = if processes == 1 {
        "1 process".to_owned()
    } else {
        format!("{processes} worker processes")
    };
    let data_plane_says = match (data_plane_nofile, per_process) {
        (Some(nofile), Some(per)) => format!(
            "the data plane ({workers}, RLIMIT_NOFILE {} each) holds at most {} proxied WebSockets: \
             ({} − {FD_MARGIN} spare) / {FDS_PER_PROXIED_WEBSOCKET} descriptors (client and upstream) = {} per process{}",
            thousands(nofile as f64),
            thousands(data_plane.unwrap_or(usize::MAX) as f64),
            thousands(nofile as f64),
            thousands(per as f64),
            if processes > 1 {
                " if the kernel spreads them evenly"
            } else {
                ""
            }
        ),
        _ => format!("the data plane's RLIMIT_NOFILE is unknown ({workers}): not capped by it"),
    };
    let generator_says = format!(
        "the load generator holds at most {} (RLIMIT_NOFILE {} − {FD_MARGIN})",
        thousands(generator as f64),
        thousands(generator_nofile as f64)
    );
    let reason = if allowed >= asked {
        format!(
            "{} clients fit: {data_plane_says}; {generator_says}",
            thousands(asked as f64)
        )
    } else if let Some((_, why)) = &rendered {
        format!(
            "capped at {} of {} clients: {why}",
            thousands(allowed as f64),
            thousands(asked as f64)
        )
    } else if data_plane.is_some_and(|d| d <= generator) {
        format!(
            "capped at {} of {} clients: {data_plane_says}",
            thousands(allowed as f64),
            thousands(asked as f64)
        )
    } else {
        format!(
            "capped at {} of {} clients: {generator_says}",
            thousands(allowed as f64),
            thousands(asked as f64)
        )
    };
    ClientLimit {
        asked,
        allowed,
        data_plane_processes: processes,
        data_plane_nofile,
        generator_nofile,
        reason,
    }
}

/// At most `max` samples of `timeline`: the first, the last, the deepest dip (fewest open), the
/// bucket with the most drops, and evenly spaced ones between. Each kept sample carries the sums
/// of the counts since the previous kept one (so totals are kept) and the open count at its
/// `t_s`. A timeline of at most `max` samples comes back as it is.
pub fn downsample(timeline: &[StormSample], max: usize) -> Vec<StormSample> {
    let n = timeline.len();
    if n <= max || max < 4 {
        return timeline.to_vec();
    }
    let first_index_of = |better: &dyn Fn(&StormSample, &StormSample) -> bool| {
        (0..n).fold(
            0,
            |best, i| if better(&timeline[i], &timeline[best]) { i } else { best },
        )
    };
    let deepest = first_index_of(&|a, b| a.open < b.open);
    let most_drops = first_index_of(&|a, b| a.drops > b.drops);
    let mut keep: BTreeSet<usize> = [0, n - 1, deepest, most_drops].into_iter().collect();
    let room = max - keep.len();
    for k in 1..=room {
        keep.insert(((k * (n - 1)) as f64 / (room + 1) as f64).round() as usize);
    }
    // Evenly spaced picks may have landed on the forced ones: fill up from the widest gaps.
    while keep.len() < max {
        let (gap, start) = keep
            .iter()
            .zip(keep.iter().skip(1))
            .map(|(a, b)| (b - a, *a))
            .max()
            .unwrap_or((0, 0));
        if gap < 2 {
            break;
        }
        keep.insert(start + gap / 2);
    }
    let mut out = Vec::with_capacity(keep.len());
    let mut from = 0;
    for i in keep {
        let merged = timeline[from..=i].iter().fold(
            StormSample {
                open: timeline[i].open,
                t_s: timeline[i].t_s,
                attempts: 0,
                failures: 0,
                reconnects: 0,
                drops: 0,
            },
            |mut acc, s| {
                acc.attempts += s.attempts;
                acc.failures += s.failures;
                acc.reconnects += s.reconnects;
                acc.drops += s.drops;
                acc
            },
        );
        out.push(merged);
        from = i + 1;
    }
    out
}

/// One table per event: a row per data plane and policy.
pub fn tables(r: &Storms) -> Vec<Table> {
    let columns = [
        ("data plane", false),
        ("retries", false),
        ("clients", true),
        ("dropped", true),
        ("99 % back, s", true),
        ("all back, s", true),
        ("reconnect attempts", true),
        ("failed attempts", false),
        ("peak attempts/s", true),
        ("peak reconnects/s", true),
        ("event took, ms", true),
        ("drops by cause", false),
        ("note", false),
    ];
    let mut out = Vec::new();
    for event in Event::ALL {
        let runs: Vec<&StormRun> = r.runs.iter().filter(|run| run.event == event).collect();
        if runs.is_empty() {
            continue;
        }
        let mut t = Table {
            title: format!(
                "Reconnect storm after {} ({}; times from the first drop)",
                event.describe(),
                if r.quick {
                    "smoke run: too small to quote"
                } else {
                    "socket.io-client backoff"
                }
            ),
            columns: columns.iter().map(|(h, right)| ((*h).to_owned(), *right)).collect(),
            rows: Vec::new(),
        };
        for run in runs {
            t.rows.push(row_cells(run));
        }
        out.push(t);
    }
    out
}

fn row_cells(run: &StormRun) -> Vec<String> {
    let data_plane = match (&run.data_plane, &run.setting) {
        (Some(dp), Some(setting)) => format!("{} ({dp}), {setting}", run.controller),
        (Some(dp), None) => format!("{} ({dp})", run.controller),
        (None, _) => run.label().to_owned(),
    };
    let policy = run.policy.map_or("-".to_owned(), |p| p.label().to_owned());
    let dash = || "-".to_owned();
    let Some(f) = &run.figures else {
        let note = match (&run.not_measured, &run.error) {
            (Some(why), _) => why.clone(),
            (None, Some(e)) => format!("failed: {e}"),
            (None, None) => "no figures".to_owned(),
        };
        let mut cells = vec![data_plane, policy];
        cells.extend((0..10).map(|_| dash()));
        cells.push(note);
        return cells;
    };
    let seconds = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.2}"));
    let failed = if f.failed_handshakes.is_empty() {
        "0".to_owned()
    } else {
        counts(&f.failed_handshakes)
    };
    let mut note = Vec::new();
    if f.outcome == StormOutcome::Deadline {
        note.push(format!(
            "deadline after {:.0} s: {} of {} open",
            f.duration_s,
            thousands(f.reconnected as f64),
            thousands(f.connected as f64)
        ));
    }
    if f.connected < run.clients as u64 {
        note.push(format!(
            "{} of {} opened",
            thousands(f.connected as f64),
            thousands(run.clients as f64)
        ));
    }
    if let Some(limit) = run.client_limit.as_ref().filter(|l| l.capped()) {
        note.push(limit.reason.clone());
    }
    if let Some(gone) = f.data_plane_gone_ms {
        note.push(format!(
            "the old data plane was gone {} ms after the command",
            thousands(gone as f64)
        ));
    }
    if f.drops > f.dropped {
        note.push(format!(
            "{} clients dropped more than once",
            thousands((f.drops - f.dropped) as f64)
        ));
    }
    vec![
        data_plane,
        policy,
        thousands(f.connected as f64),
        thousands(f.dropped as f64),
        seconds(f.time_to_99_s),
        seconds(f.time_to_all_s),
        thousands(f.handshake_attempts as f64),
        failed,
        thousands(f.peak_handshakes_per_sec as f64),
        thousands(f.peak_successful_handshakes_per_sec as f64),
        f.event_after_ms.map_or_else(dash, |ms| thousands(ms as f64)),
        if f.drop_causes.is_empty() {
            dash()
        } else {
            counts(&f.drop_causes)
        },
        if note.is_empty() { dash() } else { note.join("; ") },
    ]
}

/// `{"502": 359, "refused": 3}` → `502 359, refused 3`.
fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k} {}", thousands(*n as f64)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What should have been measured and was not: every controller × event × policy without
/// figures (a documented "does not reload" row is not a gap), or whose clients never dropped.
pub fn gaps(r: &Storms) -> Vec<String> {
    let mut gaps = Vec::new();
    for controller in &r.controllers {
        for event in Event::ALL {
            for policy in Policy::ALL {
                let what = format!("{controller} {} {}", event.command(), policy.label());
                let matching: Vec<&StormRun> = r
                    .runs
                    .iter()
                    .filter(|run| run.label() == controller && run.event == event)
                    .filter(|run| run.policy.is_none_or(|p| p == policy))
                    .collect();
                if matching
                    .iter()
                    .any(|run| run.policy.is_none() && run.not_measured.is_some())
                {
                    continue;
                }
                let measured = matching.iter().find_map(|run| run.figures.as_ref().map(|f| (run, f)));
                match measured {
                    Some((_, f)) if f.dropped > 0 && !f.timeline.is_empty() => {}
                    Some((_, f)) => gaps.push(format!("{what}: no client dropped ({} connected)", f.connected)),
                    None => match matching.iter().find_map(|run| run.error.as_ref()) {
                        Some(e) => gaps.push(format!("{what}: {e}")),
                        None => gaps.push(format!("{what}: not run")),
                    },
                }
            }
        }
    }
    gaps
}

const PANEL_W: f64 = 700.0;
const PANEL_H: f64 = 280.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 6] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#444444"];

/// A chart's line: a run's open clients (% of those connected) over seconds since the first drop.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The runs' series per event: one line per data plane and policy (no jitter dashed), colours by data plane.
fn series_by_event(r: &Storms) -> Vec<(Event, Vec<Series>)> {
    let mut controllers: Vec<&str> = Vec::new();
    for run in &r.runs {
        if !controllers.contains(&run.label()) {
            controllers.push(run.label());
        }
    }
    Event::ALL
        .into_iter()
        .map(|event| {
            let series = r
                .runs
                .iter()
                .filter(|run| run.event == event)
                .filter_map(|run| {
                    let f = run
                        .figures
                        .as_ref()
                        .filter(|f| f.connected > 0 && !f.timeline.is_empty())?;
                    let policy = run.policy?;
                    let k = controllers.iter().position(|c| *c == run.label()).unwrap_or(0);
                    let pct = |open: u64| open as f64 * 100.0 / f.connected as f64;
                    // Before the first bucket: everyone its drops and reconnects had not touched.
                    let first = &f.timeline[0];
                    let before = (first.open + u64::from(first.drops)).saturating_sub(u64::from(first.reconnects));
                    let mut points = vec![(0.0, pct(before.min(f.connected)))];
                    points.extend(f.timeline.iter().map(|s| (s.t_s, pct(s.open))));
                    Some(Series {
                        name: format!("{}, {}", run.label(), policy.short()),
                        color: COLORS[k % COLORS.len()],
                        dashed: policy == Policy::NoJitter,
                        points,
                    })
                })
                .collect::<Vec<_>>();
            (event, series)
        })
        .filter(|(_, series)| !series.is_empty())
        .collect()
}

/// Clients open after each event (one panel per event with runs), one line per data plane and
/// policy; `None` when no run has a timeline.
pub fn svg(r: &Storms) -> Option<String> {
    let panels = series_by_event(r);
    if panels.is_empty() {
        return None;
    }
    let height = PANEL_H * panels.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{PANEL_W}\" height=\"{height}\" viewBox=\"0 0 {PANEL_W} {height}\" \
         font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"clients reconnected over time after each event, per data plane\">\n"
    );
    for (k, (event, series)) in panels.iter().enumerate() {
        let _ = writeln!(out, "<g transform=\"translate(0 {:.1})\">", PANEL_H * k as f64);
        panel(&mut out, *event, series);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    Some(out)
}

fn panel(out: &mut String, event: Event, series: &[Series]) {
    let plot_w = PANEL_W - LEFT - RIGHT;
    let plot_h = PANEL_H - TOP - BOTTOM;
    let t_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(t, _)| *t))
        .fold(0.0, f64::max);
    let step = tick_step(t_max);
    let x_max = ((t_max / step).ceil() * step).max(step);
    let x = |t: f64| LEFT + plot_w * t / x_max;
    let y = |pct: f64| TOP + plot_h * (1.0 - pct.clamp(0.0, 100.0) / 100.0);
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"18\" font-weight=\"bold\">Clients open after a {}</text>",
        event.noun()
    );
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for pct in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let yy = y(pct);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pct:.0}%</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let ticks = (x_max / step).round() as usize;
    for i in 0..=ticks {
        let t = step * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 4.0,
            TOP + plot_h + 17.0,
            format_tick(t),
            xx = x(t)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds since the first drop</text>",
        LEFT + plot_w / 2.0,
        TOP + plot_h + 36.0
    );
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">clients open, %</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (n, s) in series.iter().enumerate() {
        let dash = if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(t, pct)| format!("{:.1},{:.1}", x(*t), y(*pct)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"><title>{}</title></polyline>",
            html_escape(&s.name),
            s.color,
            points.join(" "),
            html_escape(&s.name)
        );
        let ly = TOP + 10.0 + 18.0 * n as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 22.0,
            s.color,
            lx + 28.0,
            ly + 4.0,
            html_escape(&s.name)
        );
    }
}

/// A round step giving at most about 8 ticks up to `t_max` seconds.
fn tick_step(t_max: f64) -> f64 {
    [0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|step| t_max / step <= 8.0)
        .unwrap_or(3600.0)
}

fn format_tick(t: f64) -> String {
    if t.fract() == 0.0 {
        format!("{t:.0}")
    } else {
        format!("{t:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::Launcher;

    fn sample(t_s: f64, open: u64, drops: u32, reconnects: u32) -> StormSample {
        StormSample {
            t_s,
            open,
            attempts: reconnects + 1,
            failures: 1,
            reconnects,
            drops,
        }
    }

    fn figures(connected: u64, timeline: Vec<StormSample>) -> StormFigures {
        StormFigures {
            connected,
            initial_failures: 0,
            dropped: connected,
            drops: connected + 5,
            drop_causes: BTreeMap::from([("close 1001".to_owned(), connected)]),
            drops_before_ready: 0,
            outcome: StormOutcome::Settled,
            duration_s: 3.5,
            reconnected: connected,
            time_to_99_s: Some(1.234),
            time_to_all_s: Some(2.5),
            handshake_attempts: 1_659,
            failed_handshakes: BTreeMap::from([("502".to_owned(), 1_359), ("refused".to_owned(), 3)]),
            peak_handshakes_per_sec: 1_289,
            peak_successful_handshakes_per_sec: 154,
            event_after_ms: Some(2_951),
            data_plane_gone_ms: None,
            seed: 1,
            generator_cpu_percent: Some(3.0),
            last_error: None,
            timeline_buckets: timeline.len(),
            timeline,
        }
    }

    fn measured(controller: &str, event: Event, policy: Policy) -> StormRun {
        StormRun {
            controller: controller.to_owned(),
            label: None,
            setting: None,
            data_plane: Some(format!("{controller}/1.0")),
            event,
            policy: Some(policy),
            jitter: Some(policy.jitter()),
            clients: 300,
            client_limit: Some(client_limit(300, Some(20_000), 1, 20_000, None)),
            not_measured: None,
            error: None,
            figures: Some(figures(
                300,
                vec![
                    sample(0.1, 0, 300, 0),
                    sample(0.2, 150, 0, 150),
                    sample(0.25, 300, 0, 150),
                ],
            )),
        }
    }

    fn does_not_reload(controller: &str) -> StormRun {
        StormRun {
            controller: controller.to_owned(),
            label: None,
            setting: None,
            data_plane: Some("Traefik 3.6.13".to_owned()),
            event: Event::Reload,
            policy: None,
            jitter: None,
            clients: 0,
            client_limit: None,
            not_measured: Some(DOES_NOT_RELOAD.to_owned()),
            error: None,
            figures: None,
        }
    }

    fn storms(runs: Vec<StormRun>, controllers: &[&str]) -> Storms {
        Storms {
            clients: 300,
            deadline_s: 30.0,
            settle_s: 1.0,
            quick: true,
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
            runs,
            policy_doc: policy_doc(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn one_process_holds_half_its_descriptors_less_the_margin_in_proxied_websockets() {
        let one = client_limit(10_000, Some(20_000), 1, 20_000, None);
        assert_eq!(one.allowed, 9_872);
        assert!(one.capped());
        assert!(
            one.reason
                .starts_with("capped at 9,872 of 10,000 clients: the data plane (1 process"),
            "{}",
            one.reason
        );
        assert!(one.reason.contains("(20,000 − 256 spare) / 2"), "{}", one.reason);

        // nginx's two workers each have their own limit.
        let nginx = client_limit(10_000, Some(20_000), 2, 20_000, None);
        assert_eq!(nginx.allowed, 19_744);
        assert!(!nginx.capped());
        assert!(nginx.reason.starts_with("10,000 clients fit"), "{}", nginx.reason);
        assert!(nginx.reason.contains("2 worker processes"), "{}", nginx.reason);
        assert!(
            nginx.reason.contains("if the kernel spreads them evenly"),
            "{}",
            nginx.reason
        );
    }

    #[test]
    fn a_rendered_limit_below_the_descriptors_caps_the_clients_and_says_why() {
        let why = || "worker_connections allows no more".to_owned();
        let nginx = client_limit(10_000, Some(20_000), 1, 20_000, Some((8_064, why())));
        assert_eq!((nginx.allowed, nginx.capped()), (8_064, true));
        assert_eq!(
            nginx.reason,
            "capped at 8,064 of 10,000 clients: worker_connections allows no more"
        );
        // Above the descriptors' limit it changes nothing.
        let above = client_limit(10_000, Some(20_000), 1, 20_000, Some((100_000, why())));
        assert_eq!(above, client_limit(10_000, Some(20_000), 1, 20_000, None));
        // Below the descriptors' limit but above the clients asked for: they still fit.
        let fits = client_limit(300, Some(20_000), 1, 20_000, Some((1_024, why())));
        assert_eq!((fits.allowed, fits.capped()), (1_024, false));
        assert!(fits.reason.starts_with("300 clients fit"), "{}", fits.reason);
    }

    #[test]
    fn the_generator_caps_the_clients_when_the_data_plane_does_not() {
        let unknown = client_limit(30_000, None, 1, 20_000, None);
        assert_eq!(unknown.allowed, 19_744);
        assert!(
            unknown.reason.contains("the load generator holds at most 19,744"),
            "{}",
            unknown.reason
        );
        let small = client_limit(300, Some(1_024), 4, 20_000, None);
        assert_eq!((small.allowed, small.capped()), (1_536, false));
        // A limit below the margin still lets one client through rather than none.
        assert_eq!(client_limit(10, Some(100), 1, 20_000, None).allowed, 1);
    }

    #[test]
    fn downsampling_keeps_the_ends_the_deepest_dip_and_the_biggest_drop_and_every_count() {
        let n = 1_000;
        let mut timeline: Vec<StormSample> = (0..n)
            .map(|i| StormSample {
                t_s: (i + 1) as f64 / 10.0,
                open: 9_000,
                attempts: 3,
                failures: 1,
                reconnects: 2,
                drops: u32::from(i % 7 == 0),
            })
            .collect();
        timeline[537].drops = 4_000;
        timeline[611].open = 12;
        let out = downsample(&timeline, MAX_TIMELINE_POINTS);
        assert!(
            out.len() <= MAX_TIMELINE_POINTS && out.len() > MAX_TIMELINE_POINTS - 5,
            "{}",
            out.len()
        );
        assert_eq!(out.first().unwrap().t_s, timeline[0].t_s);
        assert_eq!(out.last().unwrap().t_s, timeline[n - 1].t_s);
        assert!(out.iter().any(|s| s.t_s == timeline[537].t_s && s.drops >= 4_000));
        assert!(out.iter().any(|s| s.t_s == timeline[611].t_s && s.open == 12));
        assert!(out.windows(2).all(|w| w[0].t_s < w[1].t_s));
        let sum = |v: &[StormSample], f: fn(&StormSample) -> u32| v.iter().map(f).map(u64::from).sum::<u64>();
        for f in [
            (|s: &StormSample| s.attempts) as fn(&StormSample) -> u32,
            |s| s.failures,
            |s| s.reconnects,
            |s| s.drops,
        ] {
            assert_eq!(sum(&out, f), sum(&timeline, f));
        }
        // Short timelines are kept as they are.
        assert_eq!(
            downsample(&timeline[..50], MAX_TIMELINE_POINTS),
            timeline[..50].to_vec()
        );
    }

    #[test]
    fn tables_have_a_row_per_run_and_say_why_a_reload_was_not_measured() {
        let mut failed = measured("haproxy", Event::Rollout, Policy::NoJitter);
        failed.figures = None;
        failed.error = Some("deploying | broke".to_owned());
        let mut terminated = measured("haproxy", Event::Termination, Policy::Jittered);
        terminated.figures.as_mut().unwrap().data_plane_gone_ms = Some(2_100);
        let r = storms(
            vec![
                measured("nginx", Event::Reload, Policy::Jittered),
                does_not_reload("traefik"),
                terminated,
                measured("nginx", Event::Rollout, Policy::Jittered),
                failed,
            ],
            &["nginx", "traefik", "haproxy"],
        );
        let t = tables(&r);
        assert_eq!(t.len(), 3);
        assert!(t[0].title.contains("reload"), "{}", t[0].title);
        assert!(t[1].title.contains("termination"), "{}", t[1].title);
        assert!(t[2].title.contains("rollout"), "{}", t[2].title);
        assert_eq!(t[0].rows.len(), 2);
        assert_eq!(t[1].rows.len(), 1);
        assert!(
            t[1].rows[0]
                .last()
                .unwrap()
                .contains("the old data plane was gone 2,100 ms after the command"),
            "{:?}",
            t[1].rows[0]
        );
        let t = [t[0].clone(), t[2].clone()];
        assert_eq!(t[1].rows.len(), 2);
        assert!(
            t.iter()
                .flat_map(|t| &t.rows)
                .all(|row| row.len() == t[0].columns.len())
        );
        assert_eq!(
            t[0].rows[0],
            [
                "nginx (nginx/1.0)",
                "jittered (±50 %)",
                "300",
                "300",
                "1.23",
                "2.50",
                "1,659",
                "502 1,359, refused 3",
                "1,289",
                "154",
                "2,951",
                "close 1001 300",
                "5 clients dropped more than once",
            ]
        );
        assert_eq!(t[0].rows[1][0], "traefik (Traefik 3.6.13)");
        assert_eq!(t[0].rows[1][1], "-");
        assert_eq!(t[0].rows[1].last().unwrap(), DOES_NOT_RELOAD);
        assert_eq!(t[1].rows[1].last().unwrap(), "failed: deploying | broke");
        let md = t[1].markdown();
        assert!(md.contains("failed: deploying \\| broke"), "{md}");
    }

    #[test]
    fn the_chart_draws_one_escaped_line_per_measured_run_in_a_panel_per_event() {
        let mut odd = measured("a<b>&\"c\"", Event::Rollout, Policy::NoJitter);
        odd.figures.as_mut().unwrap().timeline[1].open = 30;
        let r = storms(
            vec![
                measured("nginx", Event::Reload, Policy::Jittered),
                measured("nginx", Event::Reload, Policy::NoJitter),
                does_not_reload("traefik"),
                measured("traefik", Event::Termination, Policy::Jittered),
                measured("traefik", Event::Rollout, Policy::Jittered),
                odd,
            ],
            &["nginx", "traefik"],
        );
        let chart = svg(&r).unwrap();
        assert!(chart.starts_with("<svg ") && chart.trim_end().ends_with("</svg>"));
        assert_eq!(chart.matches("<polyline").count(), 5);
        assert_eq!(chart.matches("<g transform").count(), 3);
        assert!(chart.contains("Clients open after a reload") && chart.contains("Clients open after a rollout"));
        assert!(chart.contains("Clients open after a data-plane termination"));
        assert!(chart.contains("seconds since the first drop") && chart.contains("clients open, %"));
        assert!(
            chart.contains("data-series=\"a&lt;b&gt;&amp;&quot;c&quot;, no jitter\""),
            "{chart}"
        );
        assert!(!chart.contains("a<b>"));
        // No jitter is dashed; every line starts at 100 % at the first drop (x = LEFT).
        assert_eq!(chart.matches("<polyline data-series=\"nginx, no jitter\" fill=\"none\" stroke=\"#1b9e77\" stroke-width=\"2\" stroke-dasharray").count(), 1);
        let first_points: Vec<&str> = chart
            .lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| l.split("points=\"").nth(1).unwrap().split(' ').next().unwrap())
            .collect();
        assert!(
            first_points.iter().all(|p| *p == format!("{LEFT:.1},{TOP:.1}")),
            "{first_points:?}"
        );
        assert_eq!(svg(&storms(vec![does_not_reload("traefik")], &["traefik"])), None);
    }

    #[test]
    fn gaps_name_every_combination_without_figures_but_not_a_documented_no_reload() {
        let mut quiet = measured("nginx", Event::Rollout, Policy::NoJitter);
        quiet.figures.as_mut().unwrap().dropped = 0;
        let mut failed = measured("traefik", Event::Rollout, Policy::NoJitter);
        failed.figures = None;
        failed.error = Some("timed out".to_owned());
        let r = storms(
            vec![
                measured("nginx", Event::Reload, Policy::Jittered),
                measured("nginx", Event::Reload, Policy::NoJitter),
                measured("nginx", Event::Termination, Policy::Jittered),
                measured("nginx", Event::Termination, Policy::NoJitter),
                measured("nginx", Event::Rollout, Policy::Jittered),
                quiet,
                does_not_reload("traefik"),
                measured("traefik", Event::Termination, Policy::Jittered),
                measured("traefik", Event::Rollout, Policy::Jittered),
                failed,
            ],
            &["nginx", "traefik", "haproxy"],
        );
        let gaps = gaps(&r);
        assert_eq!(
            gaps,
            [
                "nginx rollout no jitter: no client dropped (300 connected)",
                "traefik terminate no jitter: not run",
                "traefik rollout no jitter: timed out",
                "haproxy reload jittered (±50 %): not run",
                "haproxy reload no jitter: not run",
                "haproxy terminate jittered (±50 %): not run",
                "haproxy terminate no jitter: not run",
                "haproxy rollout jittered (±50 %): not run",
                "haproxy rollout no jitter: not run",
            ]
        );
    }

    #[test]
    fn the_generator_is_asked_for_socket_io_backoff_with_the_policys_jitter() {
        let s = StormSettings::smoke();
        let args = storm_args(300, Policy::NoJitter, &s, Path::new("/tmp/r.ready"));
        assert_eq!(
            args.join(" "),
            "storm -c 300 --initial 1s --max 5s --factor 2 --jitter 0 --settle 1s --deadline 30s --wait 30s \
             --ready-file /tmp/r.ready --seed 1"
        );
        assert!(
            storm_args(1, Policy::Jittered, &s, Path::new("r"))
                .join(" ")
                .contains("--jitter 0.5")
        );
        assert_eq!(parse_ready("ready 300\n"), Some(300));
        assert_eq!(parse_ready("read"), None);
    }

    /// Reconnect storms through nginx (reload and rollout) and Traefik (rollout, and its "does not
    /// reload" row), smoke-sized. Needs `cargo build --workspace --bins` first; run with
    /// `cargo test -p bench storm -- --ignored --nocapture`. `STORM_CONTROLLERS=all` runs every
    /// data plane.
    #[test]
    #[ignore = "starts data planes and the load generator; run by hand"]
    fn smoke_storms_through_the_data_planes() {
        let root = crate::workspace_root();
        let bin_dir = root.join("target/debug");
        let paths = Paths::new(&root, &bin_dir, Some(root.join("target/testbed/storm-smoke")));
        let mut s = StormSettings::smoke();
        if std::env::var("STORM_CONTROLLERS").as_deref() != Ok("all") {
            s.controllers = vec![Controller::Nginx, Controller::Traefik];
        }
        let launcher = Launcher::detect(20_000);
        let started = Instant::now();
        let r = run(&launcher, &paths, &s);
        let took = started.elapsed();
        for t in tables(&r) {
            println!("{}", t.markdown());
        }
        for n in &r.notes {
            println!("- {n}");
        }
        std::fs::create_dir_all(&paths.out).unwrap();
        std::fs::write(paths.out.join("storms.json"), serde_json::to_vec_pretty(&r).unwrap()).unwrap();
        if let Some(svg) = svg(&r) {
            std::fs::write(paths.out.join("storms.svg"), svg).unwrap();
        }
        println!("took {took:?}; wrote {}", paths.out.display());
        let gaps = gaps(&r);
        assert!(gaps.is_empty(), "{gaps:#?}");
    }
}

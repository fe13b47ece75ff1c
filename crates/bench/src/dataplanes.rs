//! The data planes' own cost and capacity: the twin of [`crate::capacity`] for the proxies.
//!
//! For every [`Controller::ALL`] data plane in turn, one `bench-dataplane` deployment (data plane
//! and pods on the server core, generators on the other) measures three figures, from the data
//! plane's own processes (main process and workers, read afresh with `pids`: a reload replaces
//! workers) and the pods' own count of open WebSockets (`metrics`: what the data plane really
//! proxied, not what a client hoped for):
//!
//! 1. **KiB per idle WebSocket** ([`Memory`]): the data plane's summed RSS before, and again
//!    while [`DataPlaneSettings::idle_connections`] idle WebSockets are held through it, divided
//!    by the WebSockets the pods counted around that reading. A proxied WebSocket costs the proxy
//!    two file descriptors (client side and upstream), so one process holds at most about
//!    (RLIMIT_NOFILE − margin) / 2, and Envoy Gateway's cluster lets 1,024 through
//!    ([`ENVOY_CIRCUIT_BREAKER`]): below the setting, the figure is measured at that many and
//!    [`Memory::note`] says why ([`memory_plan`]). It is never over WebSockets that were not held.
//! 2. **CPU per 1,000 echoed messages/s** ([`Cpu`]): 100 connections × 64-byte round trips through
//!    the data plane; its CPU time read inside the generator's measured window, as a share of one
//!    core, divided by thousands of round trips per second.
//! 3. **Connections held** ([`Held`]): [`DataPlaneSettings::capacity_target`] idle WebSockets aimed
//!    at one data-plane instance from generators sharded as [`crate::capacity`] does (each under
//!    its own file limit, over its own source addresses), with pods enough that they are never the
//!    limit; the peak of the pods' count sampled every 250 ms, and the first limit it ran into
//!    ([`first_limit`]), named from the data plane's log (found through `/proc/<pid>/fd/2`), its
//!    runtime state (HAProxy's `show info`, Envoy's admin `/stats` circuit breakers) or the
//!    configured limits' arithmetic ([`configured_limits`]).
//!
//! Data planes that stop accepting at their limit (HAProxy at its maxconn, Traefik at the file
//! limit, Envoy queueing behind its circuit breaker) leave each further client waiting out its
//! 10 s handshake timeout, which at 50,000 connections would take many minutes. So once the held
//! count has not grown for [`DataPlaneSettings::stall`] the run dials a small probe (what a new
//! client meets while the rest are held) and stops generators still stuck dialing; once the target
//! is held it stops them after `hold_s`.
//!
//! The data plane inherits the launcher's RLIMIT_NOFILE: [`bench`] asks for twice the target (as
//! far as the hard limit allows), so that the smoke run's target fits and the full run's limit is
//! the machine's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use model::connection_limit::{
    breaker_raised, cluster_circuit_breaker, derives_maxconn, is_raised_breaker, overload_downstream,
    worker_connections,
};
use model::control_loop::Sourced;
use model::{ConnectionLimit, Controller};
use probe::load::stats::cpu_time;
use probe::load::{IdleResult, RttResult, rss_kib};
use serde::{Deserialize, Serialize};
use ws_echo::config::duration_arg;

use crate::launch::{DataPlaneInfo, DataPlanePids, Generator, Launcher, Server, strings};
use crate::render::{Table, thousands};
use crate::run::{FD_MARGIN, Paths, generator_args, idle_args};
use crate::setup::Setup;

/// File descriptors a proxied WebSocket takes in the proxy: the client's and the upstream's.
pub const FDS_PER_WEBSOCKET: u64 = 2;

/// Connections per source address: below the default ephemeral range (32768–60999).
const PER_SOURCE: usize = 20_000;
/// Source blocks (as in [`crate::capacity`]): the memory run's generator, each capacity
/// generator `k` at 127.0.(24 + 8k).1, and the probe; none share an address.
const MEMORY_FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 20, 1);
const HELD_FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 24, 1);
const SOURCE_BLOCK: u32 = 8 * 256;
const PROBE_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 19, 1);
/// WebSockets the probe dials once the held count stopped growing.
const PROBE_CONNECTIONS: usize = 16;
/// How often the pods' counts are read while generators hold.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// What a probe may take: `testbed load`'s 10 s handshake timeout and some.
const PROBE_SPAN: Duration = Duration::from_secs(12);
/// How long a `bench-dataplane` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a ramp may take before the run gives up on it.
const RAMP_LIMIT: Duration = Duration::from_secs(120);
/// How much of the data plane's log is read for a limit message (Traefik logs every failed
/// accept, hundreds of MB a minute at its file limit).
const LOG_SCAN_LIMIT: u64 = 512 << 20;

/// What to measure and how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPlaneSettings {
    /// Idle WebSockets held through the data plane for the memory figure (at most what its file
    /// limit allows).
    pub idle_connections: usize,
    /// Idle WebSockets aimed at one data-plane instance for the held figure.
    pub capacity_target: usize,
    /// Round-trip connections and message size for the CPU figure.
    pub rtt_connections: usize,
    pub message_bytes: usize,
    /// Seconds of round trips measured, after `warmup_s`.
    pub rtt_s: f64,
    pub warmup_s: f64,
    /// Seconds the generators hold once every connection has been attempted.
    pub hold_s: f64,
    /// Client source addresses each generator spreads over (at least one per 20,000).
    pub sources: u32,
    pub quick: bool,
}

impl Default for DataPlaneSettings {
    fn default() -> Self {
        DataPlaneSettings {
            idle_connections: 10_000,
            capacity_target: 50_000,
            rtt_connections: 100,
            message_bytes: 64,
            rtt_s: 10.0,
            warmup_s: 2.0,
            hold_s: 10.0,
            sources: 8,
            quick: false,
        }
    }
}

impl DataPlaneSettings {
    /// A seconds-long run per data plane: 300 idle, 1,000 held, 1 s windows.
    pub fn smoke() -> Self {
        DataPlaneSettings {
            idle_connections: 300,
            capacity_target: 1_000,
            rtt_s: 1.0,
            warmup_s: 0.2,
            hold_s: 1.0,
            sources: 2,
            quick: true,
            ..DataPlaneSettings::default()
        }
    }

    /// The bench's own settings (`bench run` flags) carried over.
    pub fn from_settings(s: &crate::result::Settings) -> Self {
        DataPlaneSettings {
            idle_connections: s.idle_connections,
            capacity_target: s.capacity_target,
            rtt_connections: s.rtt_connections,
            message_bytes: s.message_bytes,
            rtt_s: s.duration_s,
            warmup_s: s.warmup_s,
            hold_s: if s.quick { 2.0 } else { 10.0 },
            sources: s.source_addresses.max(1),
            quick: s.quick,
        }
    }

    /// How long the held count may stay flat below the target before the run calls it the limit.
    pub fn stall(&self) -> Duration {
        if self.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        }
    }

    fn hold(&self) -> Duration {
        Duration::from_secs_f64(self.hold_s.max(0.5))
    }
}

/// Every data plane's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPlaneCapacity {
    pub settings: DataPlaneSettings,
    /// The RLIMIT_NOFILE every process ran with (data plane, pods, generators).
    pub nofile_limit: u64,
    pub planes: Vec<DataPlaneFigures>,
    /// Data planes that could not be deployed, and why.
    pub notes: Vec<String>,
}

/// One data plane's figures; a part that failed is `None` and says why in `notes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPlaneFigures {
    pub controller: String,
    /// What differs from the controller's defaults ([`Setup::setting`]); `None`: as it renders it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// Its version, e.g. "nginx/1.31.3".
    pub data_plane: String,
    /// The data plane's RLIMIT_NOFILE (soft).
    pub nofile: Option<u64>,
    /// ws-echo pods behind it.
    pub pods: u32,
    /// Its connection limits as the controller renders them, with where that comes from.
    pub configured_limits: Vec<String>,
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub held: Option<Held>,
    pub notes: Vec<String>,
}

/// RSS per idle WebSocket held through the data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// [`DataPlaneSettings::idle_connections`].
    pub requested: usize,
    /// What the generator dialed: `requested`, or less where the file limit allows less.
    pub attempted: usize,
    /// WebSockets the pods counted open when the RSS was read: the figure's divisor.
    pub connections: u64,
    /// Data-plane processes summed (main and workers).
    pub processes: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after − before) / connections.
    pub kib_per_connection: f64,
    /// Why `connections` is below `requested`.
    pub note: Option<String>,
}

/// The data plane's CPU while it echoes round trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub connections: u64,
    pub message_bytes: usize,
    /// Round trips per second through the data plane (each one message echoed).
    pub msgs_per_sec: f64,
    /// Seconds over which the data plane's CPU time was read.
    pub window_s: f64,
    /// CPU seconds of all its processes over that window.
    pub cpu_seconds: f64,
    /// cpu_seconds / window_s × 100: % of one core.
    pub core_percent: f64,
    /// core_percent / (msgs_per_sec / 1000): % of one core per 1,000 echoed msgs/s.
    pub percent_per_1k_msgs: f64,
    /// "window": inside the generator's measured window; "run": over its whole run (start,
    /// connect and warm-up included), when the window could not be read.
    pub basis: String,
}

/// Idle WebSockets one data-plane instance held at once, and what stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub target: usize,
    pub generators: usize,
    pub source_addresses: u64,
    /// The most WebSockets the pods counted open at once.
    pub peak: u64,
    /// Seconds from the first generator's start to that peak.
    pub peak_after_s: f64,
    /// Handshakes that succeeded and failed, over the generators that ran to their end; `None`
    /// when every generator was stopped while dialing (their counts die with them). When the
    /// target was held the generators are stopped `hold_s` later, every attempt having connected.
    pub connected: Option<u64>,
    pub failed: Option<u64>,
    /// Generators stopped while still dialing, once the count had stopped growing (their counts
    /// are not in `connected` / `failed`).
    pub generators_stopped: usize,
    pub last_errors: Vec<String>,
    /// What a new client met once the count had stopped growing.
    pub probe: Option<Probe>,
    pub limit: FirstLimit,
}

/// A few WebSockets dialed at the plateau.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub attempted: usize,
    pub connected: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    /// The fewest WebSockets the pods counted while it ran (the plateau stayed held if this is
    /// the peak).
    pub held_meanwhile: u64,
}

/// Which limit a data plane ran into first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The target was held.
    None,
    /// nginx's `worker_connections`.
    WorkerConnections,
    /// RLIMIT_NOFILE.
    FileDescriptors,
    /// HAProxy's maxconn, which it derives from RLIMIT_NOFILE when none is configured.
    DerivedMaxconn,
    /// Envoy's overload manager (`max_active_downstream_connections`).
    Overload,
    /// Envoy's per-cluster circuit breaker (max_connections / max_requests).
    CircuitBreaker,
    /// A pod reached ws-echo's `max-connections`.
    PodMaxConnections,
    Unidentified,
}

/// The first limit hit, in words, and what shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstLimit {
    pub kind: LimitKind,
    pub text: String,
    /// "log: …" (the line), "runtime API: …", "admin stats: …", "arithmetic: …".
    pub evidence: String,
}

/// What [`first_limit`] decides from.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitInput {
    pub controller: Controller,
    /// The setup's raised backend connection limit ([`Setup::backend_connections`]).
    pub backend_connections: Option<u32>,
    pub target: u64,
    pub held: u64,
    /// Processes that hold connections (nginx and HAProxy workers, else the one process).
    pub holding_processes: usize,
    /// The data plane's RLIMIT_NOFILE.
    pub nofile: Option<u64>,
    /// The first limit message in its log while the generators ran.
    pub log_line: Option<String>,
    /// HAProxy's `show info` Maxconn.
    pub haproxy_maxconn: Option<u64>,
    /// Envoy's open circuit breakers at the plateau (admin `/stats`), e.g.
    /// "cluster.c.circuit_breakers.default.cx_open 1".
    pub envoy_breaker: Option<String>,
    /// The pod holding the most at the peak, and how many.
    pub busiest_pod: Option<(String, u64)>,
    pub pod_max_connections: u64,
}

/// Runs every data plane, one after the other.
pub fn run(launcher: &Launcher, paths: &Paths, s: &DataPlaneSettings) -> DataPlaneCapacity {
    run_controllers(launcher, paths, s, &Controller::ALL)
}

/// [`run`] over some data planes only.
pub fn run_controllers(
    launcher: &Launcher,
    paths: &Paths,
    s: &DataPlaneSettings,
    controllers: &[Controller],
) -> DataPlaneCapacity {
    let mut out = DataPlaneCapacity {
        settings: s.clone(),
        nofile_limit: launcher.nofile,
        planes: Vec::new(),
        notes: Vec::new(),
    };
    for setup in Setup::all(controllers) {
        let label = setup.label();
        eprintln!("bench: data planes: {label}");
        match measure(launcher, paths, s, setup) {
            Ok(figures) => out.planes.push(figures),
            Err(e) => {
                let note = format!("{label}: {e:#}");
                eprintln!("bench: data planes: {note}");
                out.notes.push(note);
            }
        }
    }
    out
}

/// Runs [`run`] as `bench` would (launcher, paths under `root`), writes `dataplanes.json` and
/// `dataplanes.md` into `out`, and returns the result.
#[doc(hidden)]
pub fn bench(root: &Path, bin_dir: &Path, out: PathBuf, s: &DataPlaneSettings) -> anyhow::Result<DataPlaneCapacity> {
    let paths = Paths::new(root, bin_dir, Some(out));
    std::fs::create_dir_all(&paths.logs).with_context(|| format!("creating {}", paths.logs.display()))?;
    // Enough for one process to proxy the target (two descriptors each), as far as the hard limit allows.
    let want = s.capacity_target.max(s.idle_connections) * 2 + FD_MARGIN * 4;
    let launcher = Launcher::detect(want as u64);
    let mut result = run(&launcher, &paths, s);
    result.notes.splice(0..0, launcher.notes.iter().cloned());
    let write = |name: &str, content: &[u8]| {
        let path = paths.out.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
    };
    write("dataplanes.json", &serde_json::to_vec_pretty(&result)?)?;
    write("dataplanes.md", markdown(&result).as_bytes())?;
    Ok(result)
}

/// Pods behind each data plane: enough that none reaches ws-echo's `max-connections` before
/// the data plane is at the target.
fn pods_for(s: &DataPlaneSettings) -> u32 {
    let most = s.capacity_target.max(s.idle_connections);
    let pods = most.div_ceil(pod_max_connections() as usize) + 1;
    u32::try_from(pods).unwrap_or(u32::MAX).clamp(1, 127)
}

/// ws-echo's `max-connections` as the local pods run it (its default).
fn pod_max_connections() -> u64 {
    ws_echo::Config::default().max_connections as u64
}

fn measure(
    launcher: &Launcher,
    paths: &Paths,
    s: &DataPlaneSettings,
    setup: Setup,
) -> anyhow::Result<DataPlaneFigures> {
    let controller = setup.controller;
    let label = setup.label();
    let pods = pods_for(s);
    let env = [
        ("TESTBED_WS_ECHO", paths.ws_echo.display().to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut options = strings(&["--pods", &pods.to_string()]);
    options.extend(setup.options());
    let (server, info) = launcher.data_plane_with(&paths.data_plane, controller, &options, &env, &paths.logs)?;
    let mut plane = Plane::new(setup, server, info);
    let mut figures = DataPlaneFigures {
        controller: controller.name().to_owned(),
        setting: setup.setting(),
        data_plane: plane.info.data_plane.clone(),
        nofile: plane.info.data_plane_nofile,
        pods,
        configured_limits: Vec::new(),
        memory: None,
        cpu: None,
        held: None,
        notes: Vec::new(),
    };
    if plane.log.is_none() {
        figures
            .notes
            .push("the data plane's log was not found (/proc/<pid>/fd/2): limits come from arithmetic".to_owned());
    }
    // Memory first, on a fresh data plane, so "before" is its resting RSS.
    let parts: [(&str, Part); 3] = [("memory", Part::Memory), ("cpu", Part::Cpu), ("held", Part::Held)];
    for (name, part) in parts {
        if let Ok(Some(status)) = plane.server.child.try_wait() {
            figures
                .notes
                .push(format!("{name}: not measured: bench-dataplane exited ({status})"));
            continue;
        }
        eprintln!("bench: data planes: {label}: {name}");
        let measured = match part {
            Part::Memory => memory(&mut plane, launcher, paths, s).map(|m| figures.memory = Some(m)),
            Part::Cpu => cpu(&mut plane, launcher, paths, s).map(|c| figures.cpu = Some(c)),
            Part::Held => held(&mut plane, launcher, paths, s).map(|h| figures.held = Some(h)),
        };
        if let Err(e) = measured {
            let note = format!("{name}: {e:#}");
            eprintln!("bench: data planes: {label}: {note}");
            figures.notes.push(note);
        }
    }
    let workers = plane.pids().map(|p| holding_processes(&p)).unwrap_or(1);
    figures.configured_limits =
        configured_limits(setup, plane.info.data_plane_nofile, workers, plane.haproxy_maxconn());
    plane.server.stop(Duration::from_secs(15));
    Ok(figures)
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Memory,
    Cpu,
    Held,
}

/// One deployed data plane and what the run reads from it.
struct Plane {
    setup: Setup,
    server: Server,
    info: DataPlaneInfo,
    /// Where its stdout and stderr go (`<runtime dir>/<controller>.log`).
    log: Option<PathBuf>,
    /// Its working directory: the deployment's runtime dir (sockets, rendered configuration).
    runtime_dir: Option<PathBuf>,
}

/// The pods' open WebSockets.
#[derive(Debug, Clone, Default, PartialEq)]
struct Active {
    total: u64,
    per_pod: BTreeMap<String, u64>,
}

impl Plane {
    fn new(setup: Setup, server: Server, info: DataPlaneInfo) -> Self {
        let main = info.data_plane_pids.as_ref().map(|p| p.main);
        let link = |what: &str| main.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/{what}")).ok());
        let log = link("fd/2").filter(|p| p.is_file());
        let runtime_dir = link("cwd");
        Plane {
            setup,
            server,
            info,
            log,
            runtime_dir,
        }
    }

    fn pids(&mut self) -> anyhow::Result<DataPlanePids> {
        let reply = self.server.command("pids", COMMAND_TIMEOUT)?;
        serde_json::from_value(reply).context("parsing the pids reply")
    }

    /// The data plane's summed RSS and how many processes it has, read afresh.
    fn rss(&mut self) -> anyhow::Result<(u64, usize)> {
        let pids = unique(&self.pids()?);
        let rss: Option<u64> = pids.iter().map(|&p| rss_kib(p)).sum();
        let rss = rss.with_context(|| format!("reading the RSS of {pids:?}"))?;
        Ok((rss, pids.len()))
    }

    fn active(&mut self) -> anyhow::Result<Active> {
        let reply = self.server.command("metrics", COMMAND_TIMEOUT)?;
        Ok(Active {
            total: reply.get("active").and_then(serde_json::Value::as_u64).unwrap_or(0),
            per_pod: reply
                .get("per_pod")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default(),
        })
    }

    /// RSS while the pods' count stayed the same around the reading: (count, RSS, processes).
    fn steady_rss(&mut self) -> Option<(u64, u64, usize)> {
        let before = self.active().ok()?.total;
        let (rss, processes) = self.rss().ok()?;
        let after = self.active().ok()?.total;
        (before == after && before > 0).then_some((before, rss, processes))
    }

    fn log_len(&self) -> u64 {
        (self.log.as_ref())
            .and_then(|l| std::fs::metadata(l).ok())
            .map_or(0, |m| m.len())
    }

    fn limit_line(&self, from: u64) -> Option<String> {
        scan_log(self.log.as_deref()?, from)
    }

    /// The connection limits it runs with (the model's facts, and the setup's raised one).
    fn limits(&self) -> Vec<Sourced<ConnectionLimit>> {
        self.setup.limits()
    }

    /// Envoy's open circuit breakers now, from its admin `/stats` (where the data plane has a
    /// cluster circuit breaker).
    fn envoy_breaker(&self) -> Option<String> {
        cluster_circuit_breaker(&self.limits())?;
        let dir = self.runtime_dir.as_deref()?;
        let addr = std::fs::read_to_string(dir.join("envoy-admin-address")).ok()?;
        let addr: std::net::SocketAddr = addr.trim().parse().ok()?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            stream,
            "GET /stats?filter=circuit_breakers.default|upstream_cx_overflow|upstream_rq_pending_overflow \
             HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        open_breakers(&http_body(&text)?)
    }

    /// HAProxy's `show info` Maxconn (where the data plane derives its maxconn).
    fn haproxy_maxconn(&self) -> Option<u64> {
        if !derives_maxconn(&self.limits()) {
            return None;
        }
        haproxy_info(self.runtime_dir.as_deref()?).map(|i| i.maxconn)
    }
}

/// Each pid once (Traefik and Envoy report their one process as main and worker).
fn unique(pids: &DataPlanePids) -> Vec<u32> {
    pids.all().into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Processes that hold connections: the workers where there are separate ones, else the main.
fn holding_processes(pids: &DataPlanePids) -> usize {
    let workers: BTreeSet<u32> = pids.workers.iter().copied().filter(|&w| w != pids.main).collect();
    workers.len().max(1)
}

/// Summed CPU time of `pids`; `None` if any cannot be read.
fn cpu_sum(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|&p| cpu_time(p)).sum()
}

/// How many idle WebSockets the memory figure is measured over: `requested`, or the most the
/// data plane's processes may hold ([`connection_cap`]), with the reason.
pub fn memory_plan(
    requested: usize,
    setup: impl Into<Setup>,
    holding_processes: usize,
    nofile: Option<u64>,
    haproxy_maxconn: Option<u64>,
) -> (usize, Option<String>) {
    match connection_cap(setup, holding_processes, nofile, haproxy_maxconn) {
        Some((most, why)) if most < requested as u64 => {
            let most = most.max(1) as usize;
            (
                most,
                Some(format!(
                    "measured at {} instead of {}: {why}",
                    thousands(most as f64),
                    thousands(requested as f64)
                )),
            )
        }
        _ => (requested, None),
    }
}

/// The most WebSockets the data plane holds as its controller renders it, and why: its processes
/// at two file descriptors each, nginx's worker_connections, Envoy Gateway's cluster circuit
/// breaker, HAProxy's derived maxconn; the smallest wins. `None`: nothing known bounds it.
pub fn connection_cap(
    setup: impl Into<Setup>,
    holding_processes: usize,
    nofile: Option<u64>,
    haproxy_maxconn: Option<u64>,
) -> Option<(u64, String)> {
    let margin = FD_MARGIN as u64;
    let holding = holding_processes.max(1) as u64;
    let processes = if holding > 1 {
        format!("{holding} processes hold both sides of every WebSocket")
    } else {
        "one process holds both sides of every WebSocket".to_owned()
    };
    let mut limits: Vec<(u64, String)> = Vec::new();
    if let Some(n) = nofile {
        limits.push((
            holding * (n.saturating_sub(margin) / FDS_PER_WEBSOCKET),
            format!(
                "{processes} (two file descriptors: client and upstream) and RLIMIT_NOFILE {} per process \
                 ({margin} kept spare) allows no more",
                thousands(n as f64)
            ),
        ));
    }
    let setup_limits = setup.into().limits();
    for limit in &setup_limits {
        match limit.value {
            ConnectionLimit::WorkerConnections { per_worker } => limits.push((
                holding * (per_worker.saturating_sub(margin) / FDS_PER_WEBSOCKET),
                format!(
                    "{processes} and worker_connections {per_worker} per worker (two per WebSocket, \
                     {margin} kept spare) allows no more"
                ),
            )),
            ConnectionLimit::ClusterCircuitBreaker { max_connections } => limits.push((
                max_connections,
                if is_raised_breaker(limit) {
                    format!(
                        "the raised cluster circuit breaker lets no more WebSockets through (BackendTrafficPolicy \
                         circuitBreaker {})",
                        thousands(max_connections as f64)
                    )
                } else {
                    format!(
                        "Envoy's default cluster circuit breaker lets no more WebSockets through (max_connections \
                         and max_requests {max_connections}; Envoy Gateway sets only max_retries)"
                    )
                },
            )),
            // The derived maxconn is read at run time (`haproxy_maxconn`, below); the overload
            // manager's process-wide limit is far above any memory run.
            ConnectionLimit::DerivedMaxconn | ConnectionLimit::OverloadDownstream { .. } => {}
        }
    }
    if let Some(m) = haproxy_maxconn {
        limits.push((
            holding * m.saturating_sub(16),
            format!("HAProxy's derived maxconn {} allows no more", thousands(m as f64)),
        ));
    }
    limits.into_iter().min_by_key(|(most, _)| *most)
}

fn memory(plane: &mut Plane, launcher: &Launcher, paths: &Paths, s: &DataPlaneSettings) -> anyhow::Result<Memory> {
    let pids = plane.pids()?;
    let (attempted, cap_note) = memory_plan(
        s.idle_connections,
        plane.setup,
        holding_processes(&pids),
        plane.info.data_plane_nofile,
        plane.haproxy_maxconn(),
    );
    let (rss_before, _) = plane.rss()?;
    let log_from = plane.log_len();
    let sources = s
        .sources
        .max(u32::try_from(attempted / PER_SOURCE + 1).unwrap_or(u32::MAX));
    let hold = Duration::from_secs_f64(s.hold_s.clamp(1.0, 3.0));
    let args = generator_args(
        plane.info.addr,
        &plane.info.url,
        Some((sources, MEMORY_FIRST_SOURCE)),
        &idle_args(attempted, hold, None),
    );
    let mut generator = launcher.spawn_generator(&paths.testbed, &args)?;
    let deadline = Instant::now() + hold + RAMP_LIMIT;
    // The last steady reading at the highest count: later readings at that count have settled.
    let mut best: Option<(u64, u64, usize)> = None;
    let mut at_full = 0;
    let mut last_rise = Instant::now();
    let mut stalled = false;
    while generator.running() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the generator was still running after {:?}",
            hold + RAMP_LIMIT
        );
        if let Some(sample) = plane.steady_rss() {
            if best.is_none_or(|b| sample.0 > b.0) {
                last_rise = Instant::now();
            }
            if best.is_none_or(|b| sample.0 >= b.0) {
                best = Some(sample);
            }
            at_full += usize::from(sample.0 >= attempted as u64);
        }
        // Two steady readings with every WebSocket held: the figure is in.
        if at_full >= 2 {
            break;
        }
        let top = best.map_or(0, |b| b.0);
        let patience = if top == 0 { s.stall() * 3 } else { s.stall() };
        if last_rise.elapsed() >= patience {
            stalled = true;
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    // Stopped early (all held, or the count stopped growing) or ended on its own.
    let idle: Option<IdleResult> = if generator.running() {
        drop(generator);
        None
    } else {
        Some(generator.finish()?)
    };
    let last_error = idle.as_ref().and_then(|i| i.last_error.clone());
    let (connections, rss_after, processes) =
        best.with_context(|| format!("no WebSocket was held (last error: {})", last(&last_error)))?;
    let mut notes: Vec<String> = cap_note.into_iter().collect();
    if connections < attempted as u64 {
        let how = match &idle {
            Some(i) => format!(
                "{} failed, last error: {}",
                thousands(i.failed as f64),
                last(&i.last_error)
            ),
            None if stalled => format!("the count stayed there for {:?}", s.stall()),
            None => "the generator was stopped".to_owned(),
        };
        let mut note = format!(
            "only {} of {} held ({how}), so the figure is over those {}",
            thousands(connections as f64),
            thousands(attempted as f64),
            thousands(connections as f64)
        );
        if let Some(line) = plane.limit_line(log_from) {
            note.push_str(&format!("; its log: {line}"));
        } else if let Some(breaker) = plane.envoy_breaker() {
            note.push_str(&format!("; Envoy's admin stats: {breaker}"));
        }
        notes.push(note);
    }
    Ok(Memory {
        requested: s.idle_connections,
        attempted,
        connections,
        processes,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        kib_per_connection: (rss_after as f64 - rss_before as f64) / connections as f64,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

fn last(error: &Option<String>) -> &str {
    error.as_deref().unwrap_or("-")
}

/// `testbed load rtt` as the bench's part 1 and 2 run it.
fn rtt_args(s: &DataPlaneSettings) -> Vec<String> {
    strings(&[
        "rtt",
        "--connections",
        &s.rtt_connections.to_string(),
        "--size",
        &s.message_bytes.to_string(),
        "--duration",
        &secs(s.rtt_s),
        "--warmup",
        &secs(s.warmup_s),
    ])
}

fn secs(s: f64) -> String {
    duration_arg(Duration::from_secs_f64(s.max(0.0)))
}

/// When, from the generator's start, the data plane's CPU is read: inside the generator's
/// measured window (which starts after its start-up, 100 connections' handshakes and the
/// warm-up); `None` when that window is too short to leave margins.
fn cpu_window(s: &DataPlaneSettings) -> Option<(Duration, Duration)> {
    let start = s.warmup_s + 0.3;
    let end = s.warmup_s + s.rtt_s - 0.1;
    (end - start >= 0.3).then(|| (Duration::from_secs_f64(start), Duration::from_secs_f64(end)))
}

/// % of one core per 1,000 echoed msgs/s: cpu_seconds / window_s / (msgs_per_sec / 1000) × 100.
pub fn percent_per_1k_msgs(cpu_seconds: f64, window_s: f64, msgs_per_sec: f64) -> Option<f64> {
    (window_s > 0.0 && msgs_per_sec > 0.0).then(|| cpu_seconds / window_s * 100.0 / (msgs_per_sec / 1000.0))
}

fn cpu(plane: &mut Plane, launcher: &Launcher, paths: &Paths, s: &DataPlaneSettings) -> anyhow::Result<Cpu> {
    let pids = unique(&plane.pids()?);
    let args = generator_args(plane.info.addr, &plane.info.url, None, &rtt_args(s));
    let run_before = cpu_sum(&pids);
    let started = Instant::now();
    let mut generator = launcher.spawn_generator(&paths.testbed, &args)?;
    let mut window = None;
    if let Some((from, to)) = cpu_window(s) {
        std::thread::sleep(from.saturating_sub(started.elapsed()));
        let (c0, w0) = (cpu_sum(&pids), Instant::now());
        std::thread::sleep(to.saturating_sub(started.elapsed()));
        let (c1, w1) = (cpu_sum(&pids), Instant::now());
        // Only if the generator was still measuring when the window closed.
        if generator.running() {
            window = c0.zip(c1).map(|(a, b)| (b.saturating_sub(a), w1 - w0));
        }
    }
    let rtt: RttResult = generator.finish()?;
    let run_after = cpu_sum(&pids);
    let wall = started.elapsed();
    anyhow::ensure!(
        rtt.msgs_per_sec > 0.0,
        "no round trips through the data plane ({} of {} connected; last error: {})",
        rtt.connected,
        rtt.connections,
        last(&rtt.last_error)
    );
    let (used, over, basis) = match window {
        Some((used, over)) => (used, over, "window"),
        None => {
            let used = run_before
                .zip(run_after)
                .map(|(a, b)| b.saturating_sub(a))
                .with_context(|| format!("reading the CPU time of {pids:?}"))?;
            (used, wall, "run")
        }
    };
    let (cpu_seconds, window_s) = (used.as_secs_f64(), over.as_secs_f64());
    Ok(Cpu {
        connections: rtt.connected,
        message_bytes: rtt.size,
        msgs_per_sec: rtt.msgs_per_sec,
        window_s,
        cpu_seconds,
        core_percent: cpu_seconds / window_s * 100.0,
        percent_per_1k_msgs: percent_per_1k_msgs(cpu_seconds, window_s, rtt.msgs_per_sec).unwrap_or(f64::NAN),
        basis: basis.to_owned(),
    })
}

/// Splits `total` into as few near-equal shares as keep each at most `per_process`.
fn shares(total: usize, per_process: usize) -> Vec<usize> {
    let n = total.div_ceil(per_process.max(1)).max(1);
    (0..n).map(|k| total / n + usize::from(k < total % n)).collect()
}

/// The highest count seen, when, and each pod's share then.
#[derive(Debug, Default)]
struct Peak {
    active: Active,
    after: Duration,
}

fn held(plane: &mut Plane, launcher: &Launcher, paths: &Paths, s: &DataPlaneSettings) -> anyhow::Result<Held> {
    let target = s.capacity_target.max(1);
    let per_generator = usize::try_from(launcher.nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_MARGIN)
        .max(1);
    let shares = shares(target, per_generator);
    // Long enough that what is held stays held while a probe waits out its handshake timeout.
    let fill_hold = s.hold().max(PROBE_SPAN);
    let log_from = plane.log_len();
    let started = Instant::now();
    let mut generators = Vec::new();
    let mut source_addresses = 0u64;
    for (k, share) in shares.iter().enumerate() {
        let sources = s.sources.max(u32::try_from(share / PER_SOURCE + 1).unwrap_or(u32::MAX));
        source_addresses += u64::from(sources);
        let first = Ipv4Addr::from(u32::from(HELD_FIRST_SOURCE) + SOURCE_BLOCK * k as u32);
        let args = generator_args(
            plane.info.addr,
            &plane.info.url,
            Some((sources, first)),
            &idle_args(*share, fill_hold, None),
        );
        generators.push(launcher.spawn_generator(&paths.testbed, &args)?);
    }
    let mut peak = Peak::default();
    // Reads the pods' count, keeps the peak; the count read, if any.
    let sample = |plane: &mut Plane, peak: &mut Peak| -> Option<u64> {
        let a = plane.active().ok()?;
        let total = a.total;
        if total > peak.active.total {
            *peak = Peak {
                active: a,
                after: started.elapsed(),
            };
        }
        Some(total)
    };
    let deadline = started + fill_hold + RAMP_LIMIT;
    let mut last_rise = started;
    let mut reached: Option<Instant> = None;
    let mut plateau = false;
    while generators.iter_mut().any(Generator::running) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the generators were still running after {:?}",
            fill_hold + RAMP_LIMIT
        );
        let before = peak.active.total;
        sample(plane, &mut peak);
        if peak.active.total > before {
            last_rise = Instant::now();
        }
        if peak.active.total as usize >= target {
            // Held: every attempt connected; hold it a while, then stop.
            if reached.get_or_insert_with(Instant::now).elapsed() >= s.hold() {
                break;
            }
        } else {
            let patience = if peak.active.total == 0 {
                s.stall() * 3
            } else {
                s.stall()
            };
            if last_rise.elapsed() >= patience {
                plateau = true;
                break;
            }
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    // Read while the generators still hold: a breaker closes again as connections end.
    let breaker = plane.envoy_breaker();
    let mut probe = None;
    if plateau {
        let plateau_at = Instant::now();
        eprintln!(
            "bench: data planes: {}: held {} for {:?} without growing; probing with {PROBE_CONNECTIONS} more",
            plane.setup.label(),
            peak.active.total,
            s.stall()
        );
        let args = generator_args(
            plane.info.addr,
            &plane.info.url,
            Some((1, PROBE_SOURCE)),
            &idle_args(PROBE_CONNECTIONS, Duration::from_millis(200), None),
        );
        let mut prober = launcher.spawn_generator(&paths.testbed, &args)?;
        let mut held_meanwhile = peak.active.total;
        let give_up = Instant::now() + PROBE_SPAN * 2;
        while prober.running() && Instant::now() < give_up {
            if let Some(n) = sample(plane, &mut peak) {
                held_meanwhile = held_meanwhile.min(n);
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        probe = match prober.finish::<IdleResult>() {
            Ok(p) => Some(Probe {
                attempted: p.requested,
                connected: p.connected,
                failed: p.failed,
                last_error: p.last_error,
                held_meanwhile,
            }),
            Err(e) => {
                eprintln!("bench: data planes: the probe failed: {e:#}");
                None
            }
        };
        // Clients that time out (the data plane stopped accepting) keep their generators
        // dialing for minutes: stop those now. Otherwise the generators have dialed everything
        // and end their hold soon, with their counts.
        let stuck = probe
            .as_ref()
            .is_some_and(|p| p.failed > 0 && p.last_error.as_deref().is_some_and(|e| e.contains("no upgrade within")));
        if !stuck {
            let patience = plateau_at + fill_hold + Duration::from_secs(2);
            while Instant::now() < patience && generators.iter_mut().any(Generator::running) {
                sample(plane, &mut peak);
                std::thread::sleep(SAMPLE_EVERY);
            }
        }
    }
    let target_held = peak.active.total as usize >= target;
    let mut outs = Vec::new();
    let mut stopped = 0;
    let mut errors = Vec::new();
    for mut generator in generators {
        if generator.running() {
            stopped += usize::from(!target_held);
            drop(generator);
        } else {
            match generator.finish::<IdleResult>() {
                Ok(out) => outs.push(out),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    let mut last_errors: Vec<String> = outs.iter().filter_map(|o| o.last_error.clone()).collect();
    last_errors.extend(errors);
    last_errors.dedup();
    // Stopped once the target was held: every attempt had connected.
    let (connected, failed) = if target_held {
        (Some(peak.active.total), Some(0))
    } else if outs.is_empty() {
        (None, None)
    } else {
        (
            Some(outs.iter().map(|o| o.connected).sum()),
            Some(outs.iter().map(|o| o.failed).sum()),
        )
    };

    let holding = plane.pids().map(|p| holding_processes(&p)).unwrap_or(1);
    let busiest_pod = (peak.active.per_pod.iter())
        .max_by_key(|(_, n)| **n)
        .map(|(name, n)| (name.clone(), *n));
    let limit = first_limit(&LimitInput {
        controller: plane.setup.controller,
        backend_connections: plane.setup.backend_connections,
        target: target as u64,
        held: peak.active.total,
        holding_processes: holding,
        nofile: plane.info.data_plane_nofile,
        log_line: plane.limit_line(log_from),
        haproxy_maxconn: plane.haproxy_maxconn(),
        envoy_breaker: breaker,
        busiest_pod,
        pod_max_connections: pod_max_connections(),
    });
    Ok(Held {
        target,
        generators: shares.len(),
        source_addresses,
        peak: peak.active.total,
        peak_after_s: peak.after.as_secs_f64(),
        connected,
        failed,
        generators_stopped: stopped,
        last_errors,
        probe,
        limit,
    })
}

/// Which limit a line of a data plane's log reports, if any.
pub fn evidence_kind(line: &str) -> Option<LimitKind> {
    let line = line.to_ascii_lowercase();
    if line.contains("worker_connections are not enough") {
        Some(LimitKind::WorkerConnections)
    } else if line.contains("too many open files") || line.contains("fd limit") || line.contains("emfile") {
        Some(LimitKind::FileDescriptors)
    } else if line.contains("max_active_downstream_connections")
        || line.contains("global_downstream_max_connections")
        || line.contains("downstream_global_cx_overflow")
    {
        Some(LimitKind::Overload)
    } else if line.contains("maxconn") && line.contains("reached") {
        Some(LimitKind::DerivedMaxconn)
    } else {
        None
    }
}

/// The first line of `log` after byte `from` that reports a limit, cleaned for a table.
pub fn scan_log(log: &Path, from: u64) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut reader = BufReader::new(file.take(LOG_SCAN_LIMIT));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                if evidence_kind(&line).is_some() {
                    return Some(clean_line(&line));
                }
            }
        }
    }
}

/// Without terminal colours (Traefik's), trimmed, at most 300 characters.
fn clean_line(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then a final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    let out = out.trim();
    match out.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out.to_owned(),
    }
}

/// The open circuit breakers (and overflow counts) in Envoy's admin `/stats` text, e.g.
/// "cluster.c.circuit_breakers.default.cx_open 1, …"; `None` when none is open.
pub fn open_breakers(stats: &str) -> Option<String> {
    let nonzero: Vec<(&str, u64)> = stats
        .lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(':')?;
            Some((name.trim(), value.trim().parse::<u64>().ok()?))
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    let open = nonzero
        .iter()
        .any(|(n, _)| n.contains(".circuit_breakers.") && n.ends_with("_open"));
    open.then(|| {
        (nonzero.iter())
            .map(|(n, v)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The body of an HTTP/1.1 response read to its end (chunked or not); `None` unless 200.
fn http_body(response: &str) -> Option<String> {
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Some(body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// HAProxy's limits from its runtime API (`show info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaproxyInfo {
    pub maxconn: u64,
    pub maxsock: Option<u64>,
    pub ulimit_n: Option<u64>,
}

pub fn parse_show_info(text: &str) -> Option<HaproxyInfo> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(HaproxyInfo {
        maxconn: field("Maxconn")?,
        maxsock: field("Maxsock"),
        ulimit_n: field("Ulimit-n"),
    })
}

/// `show info` on the runtime API socket in the deployment's runtime dir.
fn haproxy_info(runtime_dir: &Path) -> Option<HaproxyInfo> {
    let mut stream = UnixStream::connect(runtime_dir.join("haproxy-runtime-api.sock")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"show info\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    parse_show_info(&text)
}

/// The connection limits `controller` renders locally, each with its source.
pub fn configured_limits(
    setup: impl Into<Setup>,
    nofile: Option<u64>,
    workers: usize,
    haproxy_maxconn: Option<u64>,
) -> Vec<String> {
    let setup = setup.into();
    let info = setup.controller.info();
    let mut out = Vec::new();
    for limit in &setup.limits() {
        match limit.value {
            ConnectionLimit::WorkerConnections { per_worker } => {
                out.push(format!(
                    "worker_processes {workers} (ingress-nginx's worker-processes default, runtime.NumCPU(): the CPUs the \
                     controller may run on, config.go at controller-v1.15.1)"
                ));
                out.push(format!(
                    "worker_connections {per_worker} per worker (ingress-nginx's max-worker-connections default, \
                     internal/ingress/controller/config/config.go at controller-v1.15.1), counting the client and \
                     the upstream connection"
                ));
            }
            ConnectionLimit::DerivedMaxconn => out.push(match haproxy_maxconn {
                Some(m) => format!(
                    "no maxconn rendered (the haproxytech controller's defaults), so HAProxy derives it from \
                     RLIMIT_NOFILE: Maxconn {m} (show info)"
                ),
                None => "no maxconn rendered (the haproxytech controller's defaults), so HAProxy derives it from \
                         RLIMIT_NOFILE"
                    .to_owned(),
            }),
            ConnectionLimit::OverloadDownstream { max } => out.push(format!(
                "overload manager max_active_downstream_connections {max} (Envoy Gateway's bootstrap.yaml.tpl at \
                 v1.9.0)"
            )),
            ConnectionLimit::ClusterCircuitBreaker { max_connections } if is_raised_breaker(limit) => {
                out.push(format!(
                    "cluster circuit breaker raised by a BackendTrafficPolicy circuitBreaker: max_connections, \
                     max_pending_requests and max_requests {max_connections} \
                     (internal/gatewayapi/clustersettings.go, internal/xds/translator/cluster.go at v1.9.0)"
                ))
            }
            ConnectionLimit::ClusterCircuitBreaker { max_connections } => out.push(format!(
                "cluster circuit breaker: only max_retries 1024 rendered (internal/xds/translator/cluster.go at \
                 v1.9.0), so max_connections, max_pending_requests and max_requests keep Envoy's default \
                 {max_connections}"
            )),
        }
    }
    if out.is_empty() {
        out.push(format!("no connection limit ({} has none by default)", info.title));
    }
    if let Some(n) = nofile {
        out.push(format!("RLIMIT_NOFILE {n} per process, two per proxied WebSocket"));
    }
    out
}

/// Whether `held` is what a limit of `expected` lets through (a few connections go to
/// listeners, logs and sockets of the process itself).
fn near(held: u64, expected: u64) -> bool {
    expected > 0 && held as f64 >= expected as f64 * 0.9 && held as f64 <= expected as f64 * 1.02
}

/// Names the first limit the data plane ran into: the target held; else a limit message in its
/// log (the earliest one); HAProxy's derived maxconn reached; a pod at its `max-connections`;
/// the count the configured limits' arithmetic gives; else not identified.
pub fn first_limit(i: &LimitInput) -> FirstLimit {
    let workers = i.holding_processes.max(1) as u64;
    let held = thousands(i.held as f64);
    let fd_text = |n: u64| {
        format!(
            "file descriptors: RLIMIT_NOFILE {} per process, two per proxied WebSocket (client and upstream) \
             → at most about {} per process × {workers}",
            thousands(n as f64),
            thousands((n / FDS_PER_WEBSOCKET) as f64)
        )
    };
    let limits = &Setup {
        controller: i.controller,
        backend_connections: i.backend_connections,
    }
    .limits();
    let worker_connections = worker_connections(limits);
    let overload = overload_downstream(limits);
    let breaker = cluster_circuit_breaker(limits);
    let wc_text = match worker_connections {
        Some(n) => format!(
            "nginx worker_connections: {n} per worker (ingress-nginx's max-worker-connections default), two per \
             proxied WebSocket → at most about {workers} × {}",
            thousands((n / FDS_PER_WEBSOCKET) as f64)
        ),
        None => "nginx worker_connections".to_owned(),
    };
    let overload_text = match overload {
        Some(n) => format!(
            "Envoy's overload manager: max_active_downstream_connections {} (Envoy Gateway's bootstrap)",
            thousands(n as f64)
        ),
        None => "Envoy's overload manager: max_active_downstream_connections".to_owned(),
    };
    let breaker_text = match breaker {
        Some(n) if breaker_raised(limits) => format!(
            "Envoy's cluster circuit breaker, raised: max_connections and max_requests {} per cluster \
             (BackendTrafficPolicy circuitBreaker), one of each per WebSocket",
            thousands(n as f64)
        ),
        Some(n) => format!(
            "Envoy's cluster circuit breaker: max_connections and max_requests {} per cluster (Envoy's defaults: \
             Envoy Gateway sets only max_retries), one of each per WebSocket",
            thousands(n as f64)
        ),
        None => "Envoy's cluster circuit breaker".to_owned(),
    };
    let maxconn_text = |m: u64| {
        format!(
            "HAProxy's maxconn {}: none is rendered, so HAProxy derived it from RLIMIT_NOFILE{}",
            thousands(m as f64),
            i.nofile
                .map(|n| format!(" {}", thousands(n as f64)))
                .unwrap_or_default()
        )
    };
    let limit = |kind, text: String, evidence: String| FirstLimit { kind, text, evidence };

    if i.held >= i.target {
        return limit(
            LimitKind::None,
            "none reached: the target was held".to_owned(),
            format!("the pods counted {held} of {} open at once", thousands(i.target as f64)),
        );
    }
    if let Some(line) = &i.log_line
        && let Some(kind) = evidence_kind(line)
    {
        let text = match kind {
            LimitKind::WorkerConnections => wc_text,
            LimitKind::FileDescriptors => match i.nofile {
                Some(n) => fd_text(n),
                None => "file descriptors: the process's RLIMIT_NOFILE".to_owned(),
            },
            LimitKind::Overload => overload_text,
            LimitKind::DerivedMaxconn => match i.haproxy_maxconn {
                Some(m) => maxconn_text(m),
                None => "HAProxy's maxconn".to_owned(),
            },
            _ => line.clone(),
        };
        return limit(kind, text, format!("log: {line}"));
    }
    if derives_maxconn(limits)
        && let Some(m) = i.haproxy_maxconn
        && near(i.held, m)
    {
        return limit(
            LimitKind::DerivedMaxconn,
            maxconn_text(m),
            format!("runtime API: show info Maxconn {m}; held {held}"),
        );
    }
    if let Some(breaker) = &i.envoy_breaker {
        return limit(
            LimitKind::CircuitBreaker,
            breaker_text.clone(),
            format!("admin stats: {breaker}; held {held}"),
        );
    }
    if let Some((pod, n)) = &i.busiest_pod
        && *n >= i.pod_max_connections
    {
        return limit(
            LimitKind::PodMaxConnections,
            format!(
                "the pods: ws-echo's max-connections {} per pod",
                thousands(i.pod_max_connections as f64)
            ),
            format!("pod {pod} held {}", thousands(*n as f64)),
        );
    }
    // The configured limits' arithmetic: the smallest one that matches the count.
    let mut candidates: Vec<(u64, LimitKind, String)> = Vec::new();
    if let Some(n) = i.nofile {
        candidates.push((
            workers * (n / FDS_PER_WEBSOCKET),
            LimitKind::FileDescriptors,
            fd_text(n),
        ));
    }
    if let Some(n) = worker_connections {
        candidates.push((workers * (n / FDS_PER_WEBSOCKET), LimitKind::WorkerConnections, wc_text));
    }
    if let Some(n) = breaker {
        candidates.push((n, LimitKind::CircuitBreaker, breaker_text));
    }
    if let Some(n) = overload {
        candidates.push((n, LimitKind::Overload, overload_text));
    }
    candidates.sort_by_key(|(expected, _, _)| *expected);
    if let Some((expected, kind, text)) = candidates.into_iter().find(|(e, _, _)| near(i.held, *e)) {
        return limit(
            kind,
            text,
            format!(
                "arithmetic: held {held} ≈ {} (no limit message in the data plane's log)",
                thousands(expected as f64)
            ),
        );
    }
    limit(
        LimitKind::Unidentified,
        format!(
            "not identified: held {held} of {}, no limit message in the data plane's log and no configured \
             limit near that count",
            thousands(i.target as f64)
        ),
        "-".to_owned(),
    )
}

/// The two tables: cost per WebSocket and per message, and connections held.
pub fn tables(r: &DataPlaneCapacity) -> Vec<Table> {
    let columns = |c: &[(&str, bool)]| c.iter().map(|(h, right)| ((*h).to_owned(), *right)).collect();
    let mut cost = Table {
        title: "Data planes: memory per idle WebSocket and CPU per 1,000 echoed msgs/s (data plane and pods on \
                the server core)"
            .to_owned(),
        columns: columns(&[
            ("data plane", false),
            ("KiB per idle WebSocket", true),
            ("WebSockets held for it", true),
            ("data-plane RSS KiB", true),
            ("msgs/s", true),
            ("CPU % of one core", true),
            ("% of one core per 1,000 msgs/s", true),
            ("note", false),
        ]),
        rows: Vec::new(),
    };
    let mut held = Table {
        title: "Data planes: idle WebSockets one instance holds at once".to_owned(),
        columns: columns(&[
            ("data plane", false),
            ("target", true),
            ("held at once", true),
            ("failed handshakes", true),
            ("pods", true),
            ("first limit hit", false),
            ("evidence", false),
            ("a new client then met", false),
            ("configured limits", false),
        ]),
        rows: Vec::new(),
    };
    for p in &r.planes {
        let name = match &p.setting {
            Some(setting) => format!("{} ({}), {setting}", p.controller, p.data_plane),
            None => format!("{} ({})", p.controller, p.data_plane),
        };
        let m = p.memory.as_ref();
        let c = p.cpu.as_ref();
        let mut notes: Vec<String> = m.and_then(|m| m.note.clone()).into_iter().collect();
        notes.extend(p.notes.iter().filter(|n| !n.starts_with("held")).cloned());
        cost.rows.push(vec![
            name.clone(),
            m.map_or("-".into(), |m| format!("{:.1}", m.kib_per_connection)),
            m.map_or("-".into(), |m| thousands(m.connections as f64)),
            m.map_or("-".into(), |m| {
                format!(
                    "{} → {}",
                    thousands(m.rss_before_kib as f64),
                    thousands(m.rss_after_kib as f64)
                )
            }),
            c.map_or("-".into(), |c| thousands(c.msgs_per_sec)),
            c.map_or("-".into(), |c| format!("{:.0}%", c.core_percent)),
            c.map_or("-".into(), |c| format!("{:.1}%", c.percent_per_1k_msgs)),
            if notes.is_empty() { "-".into() } else { notes.join("; ") },
        ]);
        let h = p.held.as_ref();
        held.rows.push(vec![
            name,
            h.map_or("-".into(), |h| thousands(h.target as f64)),
            h.map_or("-".into(), |h| thousands(h.peak as f64)),
            h.map_or("-".into(), |h| {
                let stopped = format!(
                    "{} of {} generators stopped while dialing",
                    h.generators_stopped, h.generators
                );
                match h.failed {
                    None => format!("not counted: {stopped}"),
                    Some(f) if h.generators_stopped > 0 => format!("{} (+ {stopped})", thousands(f as f64)),
                    Some(f) => thousands(f as f64),
                }
            }),
            p.pods.to_string(),
            h.map_or_else(
                || {
                    p.notes
                        .iter()
                        .find(|n| n.starts_with("held"))
                        .cloned()
                        .unwrap_or("-".into())
                },
                |h| h.limit.text.clone(),
            ),
            h.map_or("-".into(), |h| h.limit.evidence.clone()),
            h.and_then(|h| h.probe.as_ref()).map_or("-".into(), |p| {
                format!(
                    "{} of {} connected; {} (while {} were held)",
                    p.connected,
                    p.attempted,
                    p.last_error.as_deref().unwrap_or("no error"),
                    thousands(p.held_meanwhile as f64)
                )
            }),
            p.configured_limits.join("; "),
        ]);
    }
    vec![cost, held]
}

/// The tables and the notes, as markdown.
pub fn markdown(r: &DataPlaneCapacity) -> String {
    let mut out = String::new();
    for t in tables(r) {
        out.push_str(&t.markdown());
        out.push('\n');
    }
    if !r.notes.is_empty() {
        out.push_str("Notes:\n\n");
        for n in &r.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}

/// Every figure a run should have produced and did not, per controller (the smoke check).
pub fn gaps(r: &DataPlaneCapacity) -> Vec<String> {
    let mut gaps = Vec::new();
    for setup in Setup::all(&Controller::ALL) {
        let controller = setup.label();
        let setting = setup.setting();
        let found = (r.planes.iter()).find(|p| p.controller == setup.controller.name() && p.setting == setting);
        let Some(p) = found else {
            gaps.push(format!("no figures for {controller}"));
            continue;
        };
        match &p.memory {
            Some(m) if m.connections > 0 && m.kib_per_connection.is_finite() => {}
            Some(m) => gaps.push(format!("{controller}: memory over {} WebSockets", m.connections)),
            None => gaps.push(format!("{controller}: no memory per idle WebSocket")),
        }
        match &p.cpu {
            Some(c) if c.msgs_per_sec > 0.0 && c.percent_per_1k_msgs.is_finite() => {}
            Some(c) => gaps.push(format!("{controller}: CPU at {} msgs/s", c.msgs_per_sec)),
            None => gaps.push(format!("{controller}: no CPU per 1,000 msgs/s")),
        }
        match &p.held {
            Some(h) if h.peak > 0 => {}
            Some(_) => gaps.push(format!("{controller}: no connection held")),
            None => gaps.push(format!("{controller}: no connections-held figure")),
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(controller: Controller, held: u64) -> LimitInput {
        LimitInput {
            controller,
            backend_connections: None,
            target: 50_000,
            held,
            holding_processes: 1,
            nofile: Some(20_000),
            log_line: None,
            haproxy_maxconn: None,
            envoy_breaker: None,
            busiest_pod: None,
            pod_max_connections: 10_000,
        }
    }

    #[test]
    fn a_held_target_reached_no_limit_whatever_the_log_says() {
        let i = LimitInput {
            target: 1_000,
            log_line: Some("accept4: too many open files".to_owned()),
            ..input(Controller::Traefik, 1_000)
        };
        let l = first_limit(&i);
        assert_eq!(l.kind, LimitKind::None);
        assert_eq!(l.text, "none reached: the target was held");
    }

    #[test]
    fn nginx_near_two_workers_of_worker_connections_is_worker_connections() {
        let i = LimitInput {
            holding_processes: 2,
            ..input(Controller::Nginx, 16_300)
        };
        let l = first_limit(&i);
        assert_eq!(l.kind, LimitKind::WorkerConnections);
        assert!(l.text.contains("worker_connections: 16384 per worker"), "{}", l.text);
        assert!(
            l.evidence.starts_with("arithmetic: held 16,300 ≈ 16,384"),
            "{}",
            l.evidence
        );
    }

    #[test]
    fn single_process_proxies_near_half_their_file_limit_ran_out_of_descriptors() {
        for c in [Controller::Traefik, Controller::EnvoyGateway] {
            let l = first_limit(&input(c, 9_950));
            assert_eq!(l.kind, LimitKind::FileDescriptors, "{c}");
            assert!(
                l.text
                    .contains("RLIMIT_NOFILE 20,000 per process, two per proxied WebSocket")
            );
        }
        let envoy = first_limit(&LimitInput {
            nofile: Some(1_000_000),
            ..input(Controller::EnvoyGateway, 49_990)
        });
        assert_eq!(envoy.kind, LimitKind::Overload);
        assert!(envoy.text.contains("max_active_downstream_connections 50,000"));
    }

    #[test]
    fn the_first_log_message_names_the_limit_before_any_arithmetic() {
        let nginx = "2026/12/02 02:30:00 [alert] 41#41: 16384 worker_connections are not enough";
        let l = first_limit(&LimitInput {
            log_line: Some(nginx.to_owned()),
            holding_processes: 2,
            ..input(Controller::Nginx, 12_000)
        });
        assert_eq!(l.kind, LimitKind::WorkerConnections);
        assert_eq!(l.evidence, format!("log: {nginx}"));

        let emfile = "2026/12/02 02:30:00 [crit] 41#41: accept4() failed (24: Too many open files)";
        let l = first_limit(&LimitInput {
            log_line: Some(emfile.to_owned()),
            ..input(Controller::Nginx, 12_000)
        });
        assert_eq!(l.kind, LimitKind::FileDescriptors);

        let envoy =
            "[error][envoy_bug] envoy bug failure: false. Details: socket(2) failed, got error: Too many open files";
        assert_eq!(
            first_limit(&LimitInput {
                log_line: Some(envoy.to_owned()),
                ..input(Controller::EnvoyGateway, 9_000)
            })
            .kind,
            LimitKind::FileDescriptors
        );
    }

    #[test]
    fn haproxy_at_its_derived_maxconn_is_named_from_the_runtime_api() {
        let l = first_limit(&LimitInput {
            haproxy_maxconn: Some(9_983),
            ..input(Controller::Haproxy, 9_983)
        });
        assert_eq!(l.kind, LimitKind::DerivedMaxconn);
        assert!(
            l.text.contains("maxconn 9,983") && l.text.contains("RLIMIT_NOFILE 20,000"),
            "{}",
            l.text
        );
        assert!(l.evidence.starts_with("runtime API: show info Maxconn 9983"));
    }

    #[test]
    fn a_pod_at_its_max_connections_is_the_limit_and_an_odd_count_is_not_identified() {
        let l = first_limit(&LimitInput {
            busiest_pod: Some(("ws-echo-1".to_owned(), 10_000)),
            ..input(Controller::Traefik, 12_000)
        });
        assert_eq!(l.kind, LimitKind::PodMaxConnections);
        assert_eq!(l.evidence, "pod ws-echo-1 held 10,000");
        let l = first_limit(&input(Controller::Nginx, 3_000));
        assert_eq!(l.kind, LimitKind::Unidentified);
        assert!(l.text.starts_with("not identified: held 3,000 of 50,000"));
    }

    #[test]
    fn log_lines_are_classified_and_startup_lines_are_not() {
        for (line, kind) in [
            (
                "[alert] 16384 worker_connections are not enough",
                LimitKind::WorkerConnections,
            ),
            ("accept4() failed (24: Too many open files)", LimitKind::FileDescriptors),
            (
                "\u{1b}[31mERR\u{1b}[0m error=\"accept tcp 127.0.0.1:1: accept4: too many open files\"",
                LimitKind::FileDescriptors,
            ),
            (
                "Proxy ingress_http reached process FD limit (maxsock=20000)",
                LimitKind::FileDescriptors,
            ),
            ("overflow: downstream_global_cx_overflow", LimitKind::Overload),
        ] {
            assert_eq!(evidence_kind(line), Some(kind), "{line}");
        }
        for line in [
            "[NOTICE]   (27011) : New worker (27013) forked",
            "Traefik version 3.6.13 built on 2026-04-07",
            "2026/12/02 [notice] 1#1: start worker processes",
        ] {
            assert_eq!(evidence_kind(line), None, "{line}");
        }
    }

    #[test]
    fn the_log_is_scanned_from_an_offset_for_its_first_limit_line_without_colours() {
        let dir = std::env::temp_dir().join(format!("bench-dataplanes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("traefik.log");
        let early = "old: accept4: too many open files\n";
        let text = format!(
            "{early}\u{1b}[90mT\u{1b}[0m \u{1b}[32mINF\u{1b}[0m started\n\
             \u{1b}[90mT\u{1b}[0m \u{1b}[31mERR\u{1b}[0m error=\"accept4: too many open files\"\nsecond: EMFILE\n"
        );
        std::fs::write(&log, text).unwrap();
        assert_eq!(scan_log(&log, 0).as_deref(), Some("old: accept4: too many open files"));
        assert_eq!(
            scan_log(&log, early.len() as u64).as_deref(),
            Some("T ERR error=\"accept4: too many open files\"")
        );
        assert_eq!(scan_log(&dir.join("missing.log"), 0), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(clean_line(&"x".repeat(400)).chars().count(), 301);
    }

    #[test]
    fn envoy_at_its_cluster_circuit_breaker_is_named_from_its_admin_stats_or_the_count() {
        let stats = "cluster.c.circuit_breakers.default.cx_open: 1\n\
                     cluster.c.circuit_breakers.default.cx_pool_open: 0\n\
                     cluster.c.circuit_breakers.default.rq_open: 1\n\
                     cluster.c.upstream_cx_overflow: 256\n\
                     cluster.c.upstream_rq_pending_overflow: 0\n";
        let chunked = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            20,
            &stats[..20],
            stats.len() - 20,
            &stats[20..]
        );
        assert_eq!(http_body(&chunked).as_deref(), Some(stats));
        assert_eq!(http_body("HTTP/1.1 426 Upgrade Required\r\n\r\nUpgrade Required"), None);
        let open = open_breakers(stats).unwrap();
        assert_eq!(
            open,
            "cluster.c.circuit_breakers.default.cx_open 1, cluster.c.circuit_breakers.default.rq_open 1, \
             cluster.c.upstream_cx_overflow 256"
        );
        assert_eq!(
            open_breakers("cluster.c.circuit_breakers.default.cx_open: 0\ncluster.c.upstream_cx_overflow: 3\n"),
            None
        );
        let l = first_limit(&LimitInput {
            envoy_breaker: Some(open),
            ..input(Controller::EnvoyGateway, 1_024)
        });
        assert_eq!(l.kind, LimitKind::CircuitBreaker);
        assert!(
            l.text.contains("max_connections and max_requests 1,024 per cluster"),
            "{}",
            l.text
        );
        assert!(
            l.evidence
                .starts_with("admin stats: cluster.c.circuit_breakers.default.cx_open 1")
        );
        // Without the stats, the count alone points at it.
        let l = first_limit(&input(Controller::EnvoyGateway, 1_024));
        assert_eq!(l.kind, LimitKind::CircuitBreaker);
        assert!(l.evidence.starts_with("arithmetic: held 1,024 ≈ 1,024"));
    }

    #[test]
    fn haproxy_show_info_gives_its_derived_maxconn() {
        let text =
            "Name: HAProxy\nVersion: 2.8.25\nUlimit-n: 20000\nMaxsock: 20000\nMaxconn: 9983\nHard_maxconn: 9983\n";
        assert_eq!(
            parse_show_info(text),
            Some(HaproxyInfo {
                maxconn: 9_983,
                maxsock: Some(20_000),
                ulimit_n: Some(20_000)
            })
        );
        assert_eq!(parse_show_info("Name: HAProxy\n"), None);
    }

    #[test]
    fn configured_limits_come_from_each_controllers_limit_kinds() {
        let lines = |c: Controller| configured_limits(c, Some(20_000), 2, Some(9_983));
        let fd = "RLIMIT_NOFILE 20000 per process, two per proxied WebSocket".to_owned();
        assert_eq!(
            lines(Controller::Nginx),
            vec![
                "worker_processes 2 (ingress-nginx's worker-processes default, runtime.NumCPU(): the CPUs the \
                 controller may run on, config.go at controller-v1.15.1)"
                    .to_owned(),
                "worker_connections 16384 per worker (ingress-nginx's max-worker-connections default, \
                 internal/ingress/controller/config/config.go at controller-v1.15.1), counting the client and the \
                 upstream connection"
                    .to_owned(),
                fd.clone(),
            ]
        );
        assert_eq!(
            lines(Controller::Haproxy),
            vec![
                "no maxconn rendered (the haproxytech controller's defaults), so HAProxy derives it from \
                 RLIMIT_NOFILE: Maxconn 9983 (show info)"
                    .to_owned(),
                fd.clone(),
            ]
        );
        assert_eq!(
            lines(Controller::EnvoyGateway),
            vec![
                "overload manager max_active_downstream_connections 50000 (Envoy Gateway's bootstrap.yaml.tpl at \
                 v1.9.0)"
                    .to_owned(),
                "cluster circuit breaker: only max_retries 1024 rendered (internal/xds/translator/cluster.go at \
                 v1.9.0), so max_connections, max_pending_requests and max_requests keep Envoy's default 1024"
                    .to_owned(),
                fd.clone(),
            ]
        );
        assert_eq!(
            lines(Controller::Traefik),
            vec!["no connection limit (Traefik has none by default)".to_owned(), fd]
        );
    }

    #[test]
    fn the_memory_run_stays_under_what_the_file_limit_lets_one_process_hold() {
        assert_eq!(
            memory_plan(10_000, Controller::Nginx, 2, Some(20_000), None),
            (10_000, None)
        );
        let (n, note) = memory_plan(10_000, Controller::Traefik, 1, Some(20_000), None);
        assert_eq!(n, 9_872);
        let note = note.unwrap();
        assert_eq!(
            note,
            "measured at 9,872 instead of 10,000: one process holds both sides of every WebSocket (two file \
             descriptors: client and upstream) and RLIMIT_NOFILE 20,000 per process (256 kept spare) allows no more"
        );
        let (n, note) = memory_plan(10_000, Controller::Haproxy, 1, Some(20_000), Some(9_800));
        assert_eq!(n, 9_784);
        assert!(note.unwrap().contains("derived maxconn 9,800"));
        assert_eq!(
            memory_plan(300, Controller::EnvoyGateway, 1, Some(20_000), None),
            (300, None)
        );
        let (n, note) = memory_plan(10_000, Controller::EnvoyGateway, 1, Some(20_000), None);
        assert_eq!(n, 1_024);
        assert!(note.unwrap().contains("default cluster circuit breaker"));
        assert_eq!(memory_plan(300, Controller::EnvoyGateway, 1, None, None), (300, None));
    }

    #[test]
    fn cpu_per_thousand_messages_is_core_share_over_thousands_of_msgs() {
        // 0.5 CPU s over 2 s = 25% of a core, at 10,000 msgs/s → 2.5% per 1,000 msgs/s.
        assert_eq!(percent_per_1k_msgs(0.5, 2.0, 10_000.0), Some(2.5));
        assert_eq!(percent_per_1k_msgs(0.5, 0.0, 10_000.0), None);
        assert_eq!(percent_per_1k_msgs(0.5, 2.0, 0.0), None);
        let s = DataPlaneSettings::smoke();
        assert_eq!(
            rtt_args(&s).join(" "),
            "rtt --connections 100 --size 64 --duration 1s --warmup 200ms"
        );
        let (from, to) = cpu_window(&s).unwrap();
        assert_eq!((from.as_millis(), to.as_millis()), (500, 1100));
        assert_eq!(cpu_window(&DataPlaneSettings { rtt_s: 0.5, ..s }), None);
    }

    #[test]
    fn pods_and_generators_are_sized_so_neither_is_the_limit() {
        assert_eq!(pods_for(&DataPlaneSettings::default()), 6);
        assert_eq!(pods_for(&DataPlaneSettings::smoke()), 2);
        assert_eq!(shares(50_000, 19_744), vec![16_667, 16_667, 16_666]);
        assert_eq!(shares(1_000, 19_744), vec![1_000]);
        let pids = DataPlanePids {
            main: 7,
            workers: vec![7],
        };
        assert_eq!((holding_processes(&pids), unique(&pids)), (1, vec![7]));
        let pids = DataPlanePids {
            main: 7,
            workers: vec![8, 9],
        };
        assert_eq!((holding_processes(&pids), unique(&pids)), (2, vec![7, 8, 9]));
    }

    fn complete() -> DataPlaneCapacity {
        let plane = |setup: Setup| DataPlaneFigures {
            controller: setup.controller.name().to_owned(),
            setting: setup.setting(),
            data_plane: "v1".to_owned(),
            nofile: Some(20_000),
            pods: 6,
            configured_limits: configured_limits(setup, Some(20_000), 2, Some(9_983)),
            memory: Some(Memory {
                requested: 10_000,
                attempted: 9_872,
                connections: 9_870,
                processes: 1,
                rss_before_kib: 20_000,
                rss_after_kib: 60_000,
                kib_per_connection: 40_000.0 / 9_870.0,
                note: Some("measured at 9,872 instead of 10,000".to_owned()),
            }),
            cpu: Some(Cpu {
                connections: 100,
                message_bytes: 64,
                msgs_per_sec: 12_345.0,
                window_s: 9.6,
                cpu_seconds: 4.8,
                core_percent: 50.0,
                percent_per_1k_msgs: 50.0 / 12.345,
                basis: "window".to_owned(),
            }),
            held: Some(Held {
                target: 50_000,
                generators: 3,
                source_addresses: 24,
                peak: 16_380,
                peak_after_s: 12.5,
                connected: None,
                failed: None,
                generators_stopped: 3,
                last_errors: Vec::new(),
                probe: Some(Probe {
                    attempted: 16,
                    connected: 0,
                    failed: 16,
                    last_error: Some("no upgrade within 10s".to_owned()),
                    held_meanwhile: 16_379,
                }),
                limit: first_limit(&LimitInput {
                    holding_processes: 2,
                    ..input(Controller::Nginx, 16_380)
                }),
            }),
            notes: Vec::new(),
        };
        DataPlaneCapacity {
            settings: DataPlaneSettings::default(),
            nofile_limit: 20_000,
            planes: Setup::all(&Controller::ALL).into_iter().map(plane).collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn gaps_name_every_missing_figure_per_controller() {
        let empty = DataPlaneCapacity {
            settings: DataPlaneSettings::smoke(),
            nofile_limit: 20_000,
            planes: Vec::new(),
            notes: Vec::new(),
        };
        assert_eq!(
            gaps(&empty),
            [
                "no figures for nginx",
                "no figures for traefik",
                "no figures for haproxy",
                "no figures for envoy-gateway",
                "no figures for envoy-gateway, circuitBreaker 100,000"
            ]
        );
        let mut r = complete();
        assert_eq!(gaps(&r), Vec::<String>::new());
        r.planes[0].memory = None;
        r.planes[1].cpu = None;
        r.planes[2].held.as_mut().unwrap().peak = 0;
        r.planes.pop();
        assert_eq!(
            gaps(&r),
            [
                "nginx: no memory per idle WebSocket",
                "traefik: no CPU per 1,000 msgs/s",
                "haproxy: no connection held",
                "no figures for envoy-gateway, circuitBreaker 100,000"
            ]
        );
    }

    #[test]
    fn tables_show_each_data_plane_with_its_figures_limit_and_configured_limits() {
        let mut r = complete();
        r.planes[1].memory = None;
        r.planes[1].held = None;
        r.planes[1]
            .notes
            .push("held: the generators were still running".to_owned());
        let t = tables(&r);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].rows.len(), 5);
        // The raised setup has its own row, saying what it raised, and its own configured limit.
        assert!(
            t[0].rows[4][0].starts_with("envoy-gateway (v1), circuitBreaker raised to 100,000"),
            "{:?}",
            t[0].rows[4]
        );
        assert!(
            t[1].rows[4]
                .last()
                .unwrap()
                .contains("raised by a BackendTrafficPolicy circuitBreaker"),
            "{:?}",
            t[1].rows[4]
        );
        assert!(t[1].rows[3].last().unwrap().contains("keep Envoy's default 1024"));
        assert_eq!(
            t[0].rows[0],
            [
                "nginx (v1)",
                "4.1",
                "9,870",
                "20,000 → 60,000",
                "12,345",
                "50%",
                "4.1%",
                "measured at 9,872 instead of 10,000"
            ]
        );
        assert_eq!(t[0].rows[1][1], "-");
        let md = markdown(&r);
        for needle in [
            "### Data planes: idle WebSockets one instance holds at once",
            "| nginx (v1) | 50,000 | 16,380 | not counted: 3 of 3 generators stopped while dialing | 6 | nginx worker_connections",
            "0 of 16 connected; no upgrade within 10s (while 16,379 were held)",
            "worker_processes 2 (ingress-nginx's worker-processes default, runtime.NumCPU(): the CPUs the \
                 controller may run on, config.go at controller-v1.15.1)",
            "Maxconn 9983 (show info)",
            "max_active_downstream_connections 50000",
            "| traefik (v1) | - | - | - | 6 | held: the generators were still running |",
        ] {
            assert!(md.contains(needle), "{needle:?} not in\n{md}");
        }
        assert!(t[1].html().contains("<td>nginx (v1)</td>"));
    }

    /// `cargo test -p bench dataplanes -- --ignored --nocapture` after `cargo build --workspace --bins`.
    /// `BENCH_DATAPLANES=nginx,haproxy` measures only those; `BENCH_DATAPLANES_FULL=1` uses the
    /// full settings (10,000 idle, 50,000 aimed at, 10 s windows: about a minute per data plane).
    #[test]
    #[ignore = "deploys every data plane (about 20 s with the smoke settings); run by hand"]
    fn smoke_run_through_every_data_plane() {
        let root = crate::workspace_root();
        let exe = std::env::current_exe().unwrap();
        let bin_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let full = std::env::var_os("BENCH_DATAPLANES_FULL").is_some();
        let s = if full {
            DataPlaneSettings::default()
        } else {
            DataPlaneSettings::smoke()
        };
        let only: Option<Vec<Controller>> = std::env::var("BENCH_DATAPLANES")
            .ok()
            .map(|list| list.split(',').map(|c| c.trim().parse().unwrap()).collect());
        let out = root.join(if full {
            "target/testbed/bench-dataplanes"
        } else {
            "target/testbed/bench-dataplanes-smoke"
        });
        let started = Instant::now();
        let r = match &only {
            None => bench(&root, &bin_dir, out, &s).unwrap(),
            Some(controllers) => {
                let paths = Paths::new(&root, &bin_dir, Some(out));
                let want = s.capacity_target.max(s.idle_connections) * 2 + FD_MARGIN * 4;
                run_controllers(&Launcher::detect(want as u64), &paths, &s, controllers)
            }
        };
        println!("{}", markdown(&r));
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
        println!("took {:?}", started.elapsed());
        if only.is_none() {
            assert_eq!(gaps(&r), Vec::<String>::new());
        }
    }
}

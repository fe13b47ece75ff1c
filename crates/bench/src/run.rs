//! The benchmark: ws-echo against anchor echo servers, behind each data plane, and its capacity.
//!
//! Measures in one run, server pinned to core 0 and the load generator (`testbed load`) to core
//! 1, medians of `--rounds` rounds:
//! 1. ws-echo (`/ws?hello=false`), a plain tokio-tungstenite echo server and Python `websockets`:
//!    msgs/s and p99 (100 connections × 64-byte round trips), KiB RSS per idle connection,
//!    handshakes/s (50 concurrent loops), as ratios to the tokio-tungstenite anchor;
//! 2. ws-echo behind nginx, Traefik and HAProxy (`bench-dataplane`): added p50/p99 and throughput ratio;
//! 3. how many idle connections ws-echo holds at once, and its RSS ([`crate::capacity`]).
//!
//! Writes `bench.json`, `bench.md`, `bench-latency.svg` and `bench.fragment.html` (which the e2e
//! report embeds) into `--out` (default `target/testbed/bench`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use model::Controller;
use probe::load::{ChurnResult, IdleResult, RttResult};
use serde::Deserialize;
use ws_echo::config::{Config, duration_arg};

use crate::launch::{LOOPBACK_ANY_PORT, Launcher, Server, strings};
use crate::result::{BenchResult, EchoRound, EchoServer, Machine, ProxyFigures, ProxyRound, Settings};
use crate::{capacity, dataplanes, render, storm, sys};

/// What to measure and how long: `bench run`'s flags (`cargo xtask bench` passes them on).
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// A short smoke run: 1 round, 2 s windows, 2,000 idle connections, capacity 5,000.
    #[arg(long)]
    pub quick: bool,
    /// Rounds per measurement; the tables show medians (default 3, 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds measured per round-trip and handshake run (default 10, 2 with --quick).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds before round trips are recorded (default 2, 0.5 with --quick).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Idle connections for the RSS-per-connection figure (default 10,000).
    #[arg(long)]
    pub idle_connections: Option<usize>,
    /// Idle connections the capacity run aims at (default 50,000).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// At most this many connections per ws-echo process in the capacity run
    /// (default: as many as RLIMIT_NOFILE allows), like spreading them over pods.
    #[arg(long)]
    pub capacity_per_process: Option<usize>,
    /// Client source addresses (127.0.3.1, 127.0.3.2, …) idle and churn runs spread over.
    #[arg(long, default_value_t = 8)]
    pub sources: u32,
    /// Skip part 2 (the data planes).
    #[arg(long)]
    pub skip_proxies: bool,
    /// Skip part 3 (capacity).
    #[arg(long)]
    pub skip_capacity: bool,
    /// Skip part 4 (each data plane's memory and CPU per WebSocket, and how many it holds).
    #[arg(long)]
    pub skip_dataplanes: bool,
    /// Skip part 5 (reconnect storms through each data plane).
    #[arg(long)]
    pub skip_storms: bool,
    /// Clients per reconnect storm (default 10,000; 300 with --quick), capped per data plane at
    /// what its file-descriptor limit lets it hold.
    #[arg(long)]
    pub storm_clients: Option<usize>,
    /// Where the results go (default target/testbed/bench).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Round trips use 100 connections × 64-byte messages; handshakes 50 concurrent loops (issue 6).
const RTT_CONNECTIONS: usize = 100;
const MESSAGE_BYTES: usize = 64;
const CHURN_CONCURRENCY: usize = 50;
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);
/// File descriptors a process needs besides its connections.
pub(crate) const FD_MARGIN: usize = 256;

impl Flags {
    /// A seconds-long run of every part, which `cargo xtask test` makes so the bench cannot rot.
    pub fn smoke(out: PathBuf) -> Self {
        Flags {
            quick: true,
            rounds: Some(1),
            duration: Some(1.0),
            warmup: Some(0.2),
            idle_connections: Some(300),
            capacity: Some(1_000),
            capacity_per_process: Some(400),
            sources: 2,
            skip_proxies: false,
            skip_capacity: false,
            skip_dataplanes: false,
            skip_storms: false,
            storm_clients: None,
            out: Some(out),
        }
    }

    /// Part 5's settings: the smoke run's with --quick.
    pub fn storm_settings(&self) -> storm::StormSettings {
        let base = if self.quick {
            storm::StormSettings::smoke()
        } else {
            storm::StormSettings::default()
        };
        storm::StormSettings {
            clients: self.storm_clients.unwrap_or(base.clients).max(1),
            ..base
        }
    }

    pub fn settings(&self) -> Settings {
        let q = self.quick;
        Settings {
            rounds: self.rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
            duration_s: self.duration.unwrap_or(if q { 2.0 } else { 10.0 }),
            warmup_s: self.warmup.unwrap_or(if q { 0.5 } else { 2.0 }),
            rtt_connections: RTT_CONNECTIONS,
            message_bytes: MESSAGE_BYTES,
            idle_connections: self.idle_connections.unwrap_or(if q { 2_000 } else { 10_000 }),
            churn_concurrency: CHURN_CONCURRENCY,
            source_addresses: self.sources.max(1),
            capacity_target: self.capacity.unwrap_or(if q { 5_000 } else { 50_000 }),
            capacity_per_process: self.capacity_per_process.filter(|n| *n > 0),
            quick: q,
        }
    }
}

/// Where the binaries, the Python anchor and the results are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub ws_echo: PathBuf,
    pub testbed: PathBuf,
    pub anchor: PathBuf,
    pub data_plane: PathBuf,
    pub python: PathBuf,
    pub python_script: PathBuf,
    pub out: PathBuf,
    pub logs: PathBuf,
}

impl Paths {
    /// The binaries in `bin_dir` (where this one was built), the tools and results under `root`.
    pub fn new(root: &Path, bin_dir: &Path, out: Option<PathBuf>) -> Self {
        let out = out.unwrap_or_else(|| root.join("target/testbed/bench"));
        Paths {
            ws_echo: bin_dir.join("ws-echo"),
            testbed: bin_dir.join("testbed"),
            anchor: bin_dir.join("anchor-tungstenite-echo"),
            data_plane: bin_dir.join("bench-dataplane"),
            python: root.join("target/tools/venv/bin/python"),
            python_script: root.join("crates/bench-anchors/python/websockets_echo.py"),
            logs: out.join("logs"),
            out,
        }
    }
}

/// Runs every part and writes the results; prints the tables.
pub fn bench(root: &Path, bin_dir: &Path, flags: &Flags) -> anyhow::Result<()> {
    let (result, out) = measure(root, bin_dir, flags)?;
    println!("{}", render::markdown(&result));
    println!(
        "bench: wrote {}/bench.{{json,md,fragment.html}} and bench-latency.svg",
        out.display()
    );
    Ok(())
}

/// [`Flags::smoke`]: each part must produce its figures.
pub fn smoke(root: &Path, bin_dir: &Path, out: PathBuf) -> anyhow::Result<()> {
    let (result, out) = measure(root, bin_dir, &Flags::smoke(out))?;
    let missing = smoke_gaps(&result);
    anyhow::ensure!(
        missing.is_empty(),
        "the bench smoke run lacks figures ({}); its notes: {}; see {}/bench.md",
        missing.join("; "),
        result.notes.join("; "),
        out.display()
    );
    println!(
        "bench: smoke run: {} echo servers, {} data planes, {} idle connections held; {}",
        result.echo.len(),
        result.proxies.len(),
        result.capacity.as_ref().map_or(0, |c| c.held),
        out.display()
    );
    Ok(())
}

/// Runs every part; returns the result and the directory it was written to.
fn measure(root: &Path, bin_dir: &Path, flags: &Flags) -> anyhow::Result<(BenchResult, PathBuf)> {
    let settings = flags.settings();
    let paths = Paths::new(root, bin_dir, flags.out.clone());
    std::fs::create_dir_all(&paths.logs).with_context(|| format!("creating {}", paths.logs.display()))?;
    // Part 4 proxies up to the capacity target through one process: two descriptors each.
    let launcher =
        Launcher::detect((settings.capacity_target.max(settings.idle_connections) * 2 + FD_MARGIN * 4) as u64);
    let (cpu_model, cores, kernel) = sys::machine();
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    eprintln!(
        "bench: {cpu_model}, {cores} cores, Linux {kernel}; {}",
        launcher.pinning
    );
    let mut result = BenchResult {
        started_unix,
        machine: Machine {
            cpu_model,
            cores,
            kernel,
            pinning: launcher.pinning.clone(),
            nofile_limit: launcher.nofile,
            load_average: sys::load_average(),
        },
        settings: settings.clone(),
        echo: Vec::new(),
        proxies: Vec::new(),
        capacity: None,
        dataplanes: None,
        storms: None,
        notes: launcher.notes.clone(),
    };
    let run = Run {
        launcher: &launcher,
        paths: &paths,
        settings: &settings,
    };
    result.echo = run.echo_servers(root, &mut result.notes);
    if !flags.skip_proxies {
        result.proxies = run.proxies(&mut result.notes);
    }
    if !flags.skip_capacity {
        match capacity::run(&launcher, &paths, &settings) {
            Ok(c) => result.capacity = Some(c),
            Err(e) => result.notes.push(format!("capacity run failed: {e:#}")),
        }
    }
    if !flags.skip_dataplanes {
        result.dataplanes = Some(dataplanes::run(
            &launcher,
            &paths,
            &dataplanes::DataPlaneSettings::from_settings(&settings),
        ));
    }
    if !flags.skip_storms {
        result.storms = Some(storm::run(&launcher, &paths, &flags.storm_settings()));
    }
    write_outputs(&paths.out, &result)?;
    Ok((result, paths.out))
}

struct Run<'a> {
    launcher: &'a Launcher,
    paths: &'a Paths,
    settings: &'a Settings,
}

/// One echo server of part 1: what it is and how to start it.
struct EchoSpec {
    name: &'static str,
    label: String,
    start: Start,
}

enum Start {
    WsEcho(Config),
    Program { program: PathBuf, args: Vec<String> },
}

impl Run<'_> {
    fn echo_specs(&self, root: &Path) -> Vec<EchoSpec> {
        let listen = LOOPBACK_ANY_PORT.to_string();
        vec![
            EchoSpec {
                name: "ws-echo",
                label: "ws-echo (/ws?hello=false)".to_owned(),
                start: Start::WsEcho(ws_echo_config(self.settings.idle_connections)),
            },
            EchoSpec {
                name: "tokio-tungstenite",
                label: format!(
                    "plain tokio-tungstenite {} echo (default config)",
                    lock_version(root, "tokio-tungstenite").unwrap_or_default()
                ),
                start: Start::Program {
                    program: self.paths.anchor.clone(),
                    args: vec![listen.clone()],
                },
            },
            EchoSpec {
                name: "python-websockets",
                label: format!("Python websockets {} (asyncio)", self.python_websockets_version()),
                start: Start::Program {
                    program: self.paths.python.clone(),
                    args: vec![self.paths.python_script.display().to_string(), listen],
                },
            },
        ]
    }

    fn python_websockets_version(&self) -> String {
        std::process::Command::new(&self.paths.python)
            .args(["-c", "import websockets; print(websockets.__version__)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "?".to_owned())
    }

    /// Part 1: rounds interleave the servers; each round starts each server fresh.
    fn echo_servers(&self, root: &Path, notes: &mut Vec<String>) -> Vec<EchoServer> {
        let specs = self.echo_specs(root);
        let mut rounds: Vec<Vec<EchoRound>> = vec![Vec::new(); specs.len()];
        for round in 1..=self.settings.rounds {
            for (spec, out) in specs.iter().zip(&mut rounds) {
                eprintln!("bench: round {round}/{}: {}", self.settings.rounds, spec.name);
                match self.echo_round(spec) {
                    Ok((r, note)) => {
                        out.push(r);
                        notes.extend(note.map(|n| format!("{} round {round}: {n}", spec.name)));
                    }
                    Err(e) => {
                        let note = format!("{} round {round} failed: {e:#}", spec.name);
                        eprintln!("bench: {note}");
                        notes.push(note);
                    }
                }
            }
        }
        specs
            .into_iter()
            .zip(rounds)
            .filter(|(_, r)| !r.is_empty())
            .map(|(spec, r)| EchoServer::new(spec.name, spec.label, r))
            .collect()
    }

    fn start(&self, spec: &EchoSpec) -> anyhow::Result<Server> {
        let (launcher, logs) = (self.launcher, &self.paths.logs);
        match &spec.start {
            Start::WsEcho(config) => launcher.ws_echo(spec.name, &self.paths.ws_echo, config, logs),
            Start::Program { program, args } => launcher.server(spec.name, program, args, &[], logs),
        }
    }

    /// One round of one server; the note says what the reader must know about it.
    fn echo_round(&self, spec: &EchoSpec) -> anyhow::Result<(EchoRound, Option<String>)> {
        let s = self.settings;
        let server = self.start(spec)?;
        let addr = server.addr()?;
        let url = format!("ws://{addr}/ws?hello=false");
        // Idle first, on a fresh process, so "before" is the server's resting RSS.
        let idle: IdleResult = self.generate(
            &server,
            &url,
            s.source_addresses,
            &idle_args(s.idle_connections, hold(s), Some(server.pid)),
        )?;
        let note = (idle.open_at_end < idle.requested as u64).then(|| {
            format!(
                "only {}/{} idle connections held, so KiB per idle connection is over those (last error: {})",
                idle.open_at_end,
                idle.requested,
                idle.last_error.as_deref().unwrap_or("-")
            )
        });
        if let Some(n) = &note {
            eprintln!("bench: {}: {n}", spec.name);
        }
        let (rtt, server_cpu) = sys::with_cpu(server.pid, || {
            self.generate::<RttResult>(&server, &url, 1, &rtt_args(s))
        })?;
        let (churn, churn_server_cpu) = sys::with_cpu(server.pid, || {
            self.generate::<ChurnResult>(&server, &url, s.source_addresses, &churn_args(s))
        })?;
        let round = EchoRound {
            msgs_per_sec: rtt.msgs_per_sec,
            latency: rtt.latency.into(),
            kib_per_idle_connection: idle.server_kib_per_connection,
            idle_open: idle.open_at_end,
            handshakes_per_sec: churn.handshakes_per_sec,
            generator_cpu_percent: rtt.generator_cpu_percent,
            server_cpu_percent: server_cpu.map(|c| c.percent),
            churn_generator_cpu_percent: churn.generator_cpu_percent,
            churn_server_cpu_percent: churn_server_cpu.map(|c| c.percent),
            server_cpu_us_per_handshake: churn_server_cpu
                .filter(|_| churn.handshakes > 0)
                .map(|c| c.seconds * 1e6 / churn.handshakes as f64),
        };
        Ok((round, note))
    }

    fn generate<T: for<'de> Deserialize<'de>>(
        &self,
        server: &Server,
        url: &str,
        sources: u32,
        mode: &[String],
    ) -> anyhow::Result<T> {
        self.generate_at(server.addr()?, url, sources, mode)
    }

    fn generate_at<T: for<'de> Deserialize<'de>>(
        &self,
        addr: SocketAddr,
        url: &str,
        sources: u32,
        mode: &[String],
    ) -> anyhow::Result<T> {
        let args = generator_args(addr, url, (sources > 1).then_some((sources, FIRST_SOURCE)), mode);
        self.launcher.generate(&self.paths.testbed, &args)
    }

    /// Part 2: per data plane, each round measures the pod directly, then through the proxy.
    fn proxies(&self, notes: &mut Vec<String>) -> Vec<ProxyFigures> {
        let mut out = Vec::new();
        for controller in Controller::ALL {
            eprintln!("bench: deploying ws-echo behind {controller}");
            match self.proxy(controller) {
                Ok(f) => out.push(f),
                Err(e) => {
                    let note = format!("{controller}: {e:#}");
                    eprintln!("bench: {note}");
                    notes.push(note);
                }
            }
        }
        out
    }

    fn proxy(&self, controller: Controller) -> anyhow::Result<ProxyFigures> {
        let s = self.settings;
        let env = [
            ("TESTBED_WS_ECHO", self.paths.ws_echo.display().to_string()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        let (mut server, info) =
            self.launcher
                .data_plane(&self.paths.data_plane, controller, &env, &self.paths.logs)?;
        let direct_url = format!("ws://{}/ws?hello=false", info.pod_addr);
        let mut rounds = Vec::new();
        for round in 1..=s.rounds {
            eprintln!("bench: round {round}/{}: direct vs {controller}", s.rounds);
            let direct: RttResult = self.generate_at(info.pod_addr, &direct_url, 1, &rtt_args(s))?;
            let proxied: RttResult = self.generate_at(info.addr, &info.url, 1, &rtt_args(s))?;
            rounds.push(ProxyRound {
                direct_msgs_per_sec: direct.msgs_per_sec,
                direct: direct.latency.into(),
                proxied_msgs_per_sec: proxied.msgs_per_sec,
                proxied: proxied.latency.into(),
            });
        }
        server.stop(Duration::from_secs(15));
        Ok(ProxyFigures::new(controller.name(), info.data_plane, rounds))
    }
}

/// ws-echo on a free loopback port, taking `connections` plus the margin.
pub(crate) fn ws_echo_config(connections: usize) -> Config {
    Config {
        listen: LOOPBACK_ANY_PORT,
        max_connections: connections + FD_MARGIN,
        ..Config::default()
    }
}

fn hold(s: &Settings) -> Duration {
    if s.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    }
}

fn secs(s: f64) -> String {
    duration_arg(Duration::from_secs_f64(s.max(0.0)))
}

/// `testbed load` against `addr`; `spread` is (how many source addresses, the first), else the default source.
pub(crate) fn generator_args(
    addr: SocketAddr,
    url: &str,
    spread: Option<(u32, Ipv4Addr)>,
    mode: &[String],
) -> Vec<String> {
    let mut args = strings(&["load", "--json", "--quiet", "--addr", &addr.to_string(), "--url", url]);
    if let Some((sources, first_source)) = spread {
        args.extend(strings(&[
            "--sources",
            &sources.to_string(),
            "--first-source",
            &first_source.to_string(),
        ]));
    }
    args.extend(mode.iter().cloned());
    args
}

fn rtt_args(s: &Settings) -> Vec<String> {
    strings(&[
        "rtt",
        "--connections",
        &s.rtt_connections.to_string(),
        "--size",
        &s.message_bytes.to_string(),
        "--duration",
        &secs(s.duration_s),
        "--warmup",
        &secs(s.warmup_s),
    ])
}

pub(crate) fn idle_args(connections: usize, hold: Duration, pid: Option<u32>) -> Vec<String> {
    let connections = connections.to_string();
    let mut args = strings(&["idle", "--connections", &connections, "--hold", &duration_arg(hold)]);
    if let Some(pid) = pid {
        args.extend(strings(&["--pid", &pid.to_string()]));
    }
    args
}

fn churn_args(s: &Settings) -> Vec<String> {
    strings(&[
        "churn",
        "--concurrency",
        &s.churn_concurrency.to_string(),
        "--duration",
        &secs(s.duration_s),
    ])
}

/// The version of `package` in Cargo.lock (first match).
fn lock_version(root: &Path, package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok()?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&needle)? + needle.len();
    let rest = &lock[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn write_outputs(dir: &Path, result: &BenchResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, content: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
    };
    write("bench.json", &serde_json::to_vec_pretty(result)?)?;
    write("bench.md", render::markdown(result).as_bytes())?;
    if let Some(svg) = render::latency_svg(result) {
        write("bench-latency.svg", svg.as_bytes())?;
    }
    if let Some(svg) = result.storms.as_ref().and_then(storm::svg) {
        write("bench-storms.svg", svg.as_bytes())?;
    }
    write("bench.fragment.html", render::fragment_html(result).as_bytes())?;
    Ok(())
}

/// What a run that completed should have measured and did not.
fn smoke_gaps(r: &BenchResult) -> Vec<String> {
    let mut gaps = Vec::new();
    for name in ["ws-echo", "tokio-tungstenite", "python-websockets"] {
        match r.echo.iter().find(|e| e.name == name) {
            None => gaps.push(format!("no figures for {name}")),
            Some(e) => {
                let m = &e.median;
                if !(m.msgs_per_sec > 0.0 && m.handshakes_per_sec > 0.0 && m.kib_per_idle_connection.is_some()) {
                    gaps.push(format!("{name}: {m:?}"));
                }
            }
        }
    }
    for controller in Controller::ALL {
        if !r
            .proxies
            .iter()
            .any(|p| p.controller == controller.name() && p.proxied_msgs_per_sec > 0.0)
        {
            gaps.push(format!("no proxied round trips through {controller}"));
        }
    }
    match &r.capacity {
        // The smoke run caps processes below its target, so the spread over processes runs too.
        Some(c) if c.held == c.target as u64 && c.server_processes > 1 => {}
        Some(c) => gaps.push(format!(
            "capacity held {} of {} over {} process(es)",
            c.held, c.target, c.server_processes
        )),
        None => gaps.push("no capacity figures".to_owned()),
    }
    match &r.dataplanes {
        Some(d) => gaps.extend(dataplanes::gaps(d).into_iter().map(|g| format!("data planes: {g}"))),
        None => gaps.push("no data-plane capacity figures".to_owned()),
    }
    match &r.storms {
        Some(storms) => gaps.extend(storm::gaps(storms).into_iter().map(|g| format!("storm: {g}"))),
        None => gaps.push("no reconnect-storm figures".to_owned()),
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Latency;

    #[test]
    fn generator_arguments_spell_durations_humantime_understands() {
        let s = Flags {
            duration: Some(2.5),
            rounds: None,
            warmup: None,
            ..Flags::smoke(PathBuf::new())
        }
        .settings();
        assert_eq!(s.rounds, 1);
        assert_eq!(
            rtt_args(&s).join(" "),
            "rtt --connections 100 --size 64 --duration 2500ms --warmup 500ms"
        );
        assert_eq!(
            idle_args(10, Duration::from_secs(3), Some(7)).join(" "),
            "idle --connections 10 --hold 3s --pid 7"
        );
        assert_eq!(churn_args(&s).join(" "), "churn --concurrency 50 --duration 2500ms");
    }

    #[test]
    fn generator_json_parses_into_the_bench_figures() {
        let rtt: RttResult = serde_json::from_str(
            r#"{"mode":"rtt","connections":100,"connected":100,"connect_failures":0,"ended_early":0,"size":64,
                "duration_s":2.0,"messages":2469,"msgs_per_sec":1234.5,
                "latency":{"count":9,"mean_us":1.0,"p50_us":10,"p90_us":20,"p99_us":30,"p999_us":40,"max_us":50},
                "generator_cpu_percent":88.0,"last_error":null}"#,
        )
        .unwrap();
        let lat: Latency = rtt.latency.into();
        assert_eq!(
            (rtt.msgs_per_sec, lat.p99_us, rtt.generator_cpu_percent),
            (1234.5, 30.0, Some(88.0))
        );
    }

    #[test]
    fn ws_echo_takes_the_connections_plus_the_margin_on_a_free_loopback_port() {
        assert_eq!(
            ws_echo_config(300).to_args(),
            ["--listen=127.0.0.1:0", "--max-connections=556"]
        );
    }
}

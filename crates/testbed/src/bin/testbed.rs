//! The `testbed` CLI: `testbed load rtt|idle|churn|storm` drives the load generator;
//! `testbed local-up` holds a local deployment (a data plane in front of ws-echo
//! pods) until interrupted, for debugging by hand.
//!
//! Results go to stdout (JSON with `--json`, a short table otherwise); the live
//! progress line goes to stderr. `--workers` sizes the tokio runtime (default 1: a
//! current-thread runtime, so the generator can be pinned to one core with `taskset`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use probe::ProbeOptions;
use probe::load::{self, ChurnConfig, IdleConfig, Ramp, ReconnectPolicy, RttConfig, StormConfig, Target};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Parser)]
#[command(name = "testbed", about = "ws-ingress-testbed tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate WebSocket load against a server or an ingress.
    // Boxed: the load flags are much larger than local-up's.
    Load(Box<LoadCmd>),
    /// Deploy ws-echo pods behind a local data plane and hold them until Ctrl-C.
    LocalUp(LocalUpCmd),
}

#[derive(Debug, Args)]
struct LocalUpCmd {
    /// nginx, traefik or haproxy.
    #[arg(long, default_value = "nginx")]
    controller: model::Controller,
    #[arg(long, default_value_t = 2)]
    pods: u32,
    /// Panic this long after the deployment is up (shows that a failing run cleans up).
    #[arg(long, value_parser = humantime::parse_duration)]
    panic_after: Option<Duration>,
}

#[derive(Debug, Args)]
struct LoadCmd {
    #[command(subcommand)]
    mode: Mode,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Common {
    /// Address to dial (the server or the ingress).
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// URL for the upgrade request (Host header and path); default ws://<addr>/ws?hello=false.
    #[arg(long, global = true)]
    url: Option<String>,
    /// PEM CA certificate to trust for wss:// URLs.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Tokio worker threads.
    #[arg(long, global = true, default_value_t = 1)]
    workers: usize,
    /// New connections per second during ramp-up (default: unlimited).
    #[arg(long, global = true)]
    rate: Option<f64>,
    /// Handshakes in flight at once during ramp-up.
    #[arg(long, global = true, default_value_t = 256)]
    max_pending: usize,
    /// Spread connections over this many source addresses starting at --first-source.
    #[arg(long, global = true, default_value_t = 1)]
    sources: u32,
    #[arg(long, global = true, default_value = "127.0.0.1")]
    first_source: Ipv4Addr,
    /// Print the result as JSON (default: human-readable).
    #[arg(long, global = true)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Closed-loop round trips: msgs/s and latency percentiles.
    Rtt {
        #[arg(long, short = 'c', default_value_t = 100)]
        connections: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        warmup: Duration,
    },
    /// Open N idle connections, hold them, report how many stay open (and the server's RSS).
    Idle {
        #[arg(long, short = 'c', default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        hold: Duration,
        /// Server pid whose RSS to report before and after.
        #[arg(long)]
        pid: Option<u32>,
        /// Read buffer per connection in bytes (small keeps the generator lean).
        #[arg(long, default_value_t = 4096)]
        read_buffer: usize,
    },
    /// K concurrent loops of handshake + close: handshakes/s.
    Churn {
        #[arg(long, short = 'k', default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Hold N connections; when an outside event (a reload, a rollout) drops them,
    /// reconnect every client with socket.io-client's backoff and measure the storm.
    ///
    /// Writes `ready <connected>` to --ready-file (and `storm: ready <connected>` to
    /// stderr) once every connection has been attempted: the moment to fire the event.
    Storm {
        #[arg(long, short = 'c', default_value_t = 1000)]
        connections: usize,
        /// Attempt 0's delay after a drop (socket.io `reconnectionDelay`).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        initial: Duration,
        /// The longest delay (socket.io `reconnectionDelayMax`).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        max: Duration,
        /// Delay growth per failed attempt.
        #[arg(long, default_value_t = 2.0)]
        factor: f64,
        /// Randomization in [0, 1] (socket.io `randomizationFactor`); 0: every client
        /// retries at the same instants.
        #[arg(long, default_value_t = 0.5)]
        jitter: f64,
        /// End once every client has been open again for this long.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        settle: Duration,
        /// End this long after the first drop at the latest.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        deadline: Duration,
        /// Fail when no connection drops within this long of ready.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// File to write `ready <connected>` to.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Seeds the jitter (default: from the clock; the result reports it).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Load(cmd) => {
            // One worker: a current-thread runtime, which skips the work-stealing
            // scheduler's cross-thread bookkeeping on every wake-up.
            let mut builder = match cmd.common.workers {
                0 | 1 => tokio::runtime::Builder::new_current_thread(),
                n => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n);
                    b
                }
            };
            let runtime = builder.enable_all().build().context("building the tokio runtime")?;
            runtime.block_on(run_load(*cmd))
        }
        Command::LocalUp(cmd) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("building the tokio runtime")?;
            runtime.block_on(local_up(cmd))
        }
    }
}

/// Prints one JSON line describing the deployment, then holds it. Interrupting
/// the process (SIGINT, SIGTERM) goes through the harness's own cleanup.
async fn local_up(cmd: LocalUpCmd) -> Result<()> {
    let env = testbed::local::LocalEnv::new()?;
    let deployment = env
        .deploy_local(cmd.controller, &model::IngressSpec::new(cmd.pods))
        .await
        .with_context(|| format!("deploying {} pods behind {}", cmd.pods, cmd.controller))?;
    let endpoint = testbed::Deployment::endpoint(&deployment);
    let pods = testbed::Deployment::pods(&deployment).await?;
    let processes = deployment.data_plane_processes();
    let line = serde_json::json!({
        "controller": cmd.controller,
        "url": endpoint.ws_url("/ws"),
        "dial": endpoint.addr,
        "runtime_dir": deployment.runtime_dir(),
        "data_plane": { "main": processes.main, "workers": processes.workers },
        "pods": pods.iter().map(|p| serde_json::json!({ "name": p.name, "addr": p.addr })).collect::<Vec<_>>(),
    });
    println!("{line}");
    eprintln!("holding; Ctrl-C tears everything down");
    match cmd.panic_after {
        Some(after) => {
            tokio::time::sleep(after).await;
            panic!("--panic-after {after:?} elapsed (a failing run must clean up too)");
        }
        None => std::future::pending::<()>().await,
    }
    Ok(())
}

async fn run_load(cmd: LoadCmd) -> Result<()> {
    let common = &cmd.common;
    let url = common
        .url
        .clone()
        .unwrap_or_else(|| format!("ws://{}/ws?hello=false", common.addr));
    let mut opts = ProbeOptions::new(common.addr, &url)
        .context("parsing --url")?
        .expect_hello(false)
        .handshake_timeout(Duration::from_secs(10));
    if let Some(ca) = &common.ca {
        opts = opts.tls(client_config(ca)?);
    }
    if let Mode::Idle { read_buffer, .. } = cmd.mode {
        opts = opts.ws_config(
            WebSocketConfig::default()
                .read_buffer_size(read_buffer)
                .write_buffer_size(0),
        );
    }
    let mut target = Target::new(opts);
    if common.sources > 1 || common.first_source != Ipv4Addr::LOCALHOST {
        target = target.spread_sources(common.first_source, common.sources.max(1));
    }
    let ramp = Ramp {
        rate: common.rate,
        max_pending: common.max_pending,
    };
    let progress = !common.quiet;
    let (json, human) = match cmd.mode {
        Mode::Rtt {
            connections,
            size,
            duration,
            warmup,
        } => {
            let r = load::run_rtt(
                &target,
                RttConfig {
                    connections,
                    size,
                    duration,
                    warmup,
                    ramp,
                    progress,
                },
            )
            .await
            .context("running the rtt load")?;
            let human = format!(
                "rtt: {} connections ({} failed), {} B, {:.1} s: {:.0} msgs/s, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; generator CPU {}",
                r.connected,
                r.connect_failures,
                r.size,
                r.duration_s,
                r.msgs_per_sec,
                r.latency.p50_us,
                r.latency.p99_us,
                r.latency.p999_us,
                r.latency.max_us,
                percent(r.generator_cpu_percent)
            );
            (serde_json::to_string_pretty(&r)?, human)
        }
        Mode::Idle {
            connections, hold, pid, ..
        } => {
            let r = load::run_idle(
                &target,
                IdleConfig {
                    connections,
                    hold,
                    ramp,
                    server_pid: pid,
                    progress,
                },
            )
            .await
            .context("running the idle load")?;
            let human = format!(
                "idle: {}/{} connected ({} failed) over {} sources in {:.1} s; {} open after the hold; server RSS {} -> {} KiB ({} KiB/conn); generator RSS {} KiB{}",
                r.connected,
                r.requested,
                r.failed,
                r.source_addresses,
                r.ramp_s,
                r.open_at_end,
                opt(r.server_rss_before_kib),
                opt(r.server_rss_after_kib),
                r.server_kib_per_connection.map_or("-".into(), |k| format!("{k:.1}")),
                opt(r.generator_rss_kib),
                r.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            (serde_json::to_string_pretty(&r)?, human)
        }
        Mode::Churn { concurrency, duration } => {
            let r = load::run_churn(
                &target,
                ChurnConfig {
                    concurrency,
                    duration,
                    progress,
                },
            )
            .await
            .context("running the churn load")?;
            let human = format!(
                "churn: {} loops, {:.1} s: {} handshakes ({} failed), {:.0} handshakes/s, p50 {} µs, p99 {} µs; generator CPU {}",
                r.concurrency,
                r.duration_s,
                r.handshakes,
                r.failures,
                r.handshakes_per_sec,
                r.handshake_latency.p50_us,
                r.handshake_latency.p99_us,
                percent(r.generator_cpu_percent)
            );
            (serde_json::to_string_pretty(&r)?, human)
        }
        Mode::Storm {
            connections,
            initial,
            max,
            factor,
            jitter,
            settle,
            deadline,
            wait,
            ready_file,
            seed,
        } => {
            let policy = ReconnectPolicy {
                initial_ms: millis(initial),
                max_ms: millis(max),
                factor,
                jitter,
            };
            let r = load::run_storm(
                &target,
                StormConfig {
                    connections,
                    ramp,
                    policy,
                    settle,
                    deadline,
                    wait,
                    seed,
                    ready_file,
                    progress,
                },
            )
            .await
            .context("running the storm load")?;
            let seconds = |s: Option<f64>| s.map_or("never".into(), |s| format!("{s:.2} s"));
            let failures = r
                .failed_handshakes
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let human = format!(
                "storm: {}/{} connected; {} clients dropped ({} drops), {} open at the end ({:?} after {:.1} s); \
                 99% back in {}, all in {}; {} handshakes ({} failed{}), peak {}/s ({}/s successful); generator CPU {}{}",
                r.connected,
                r.requested,
                r.dropped,
                r.drops,
                r.reconnected,
                r.outcome,
                r.duration_s,
                seconds(r.time_to_99_s),
                seconds(r.time_to_all_s),
                r.handshake_attempts,
                r.failed_handshakes.values().sum::<u64>(),
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(": {failures}")
                },
                r.peak_handshakes_per_sec,
                r.peak_successful_handshakes_per_sec,
                percent(r.generator_cpu_percent),
                r.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            (serde_json::to_string_pretty(&r)?, human)
        }
    };
    println!("{}", if common.json { json } else { human });
    Ok(())
}

fn client_config(ca: &std::path::Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let pem = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
    probe::tls::client_config_from_pem(&pem).with_context(|| format!("using {} as the CA", ca.display()))
}

/// Whole milliseconds, as socket.io-client's options are given.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}%"))
}

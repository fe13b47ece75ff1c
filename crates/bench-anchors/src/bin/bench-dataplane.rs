//! Puts ws-echo pods behind a local data plane (nginx, HAProxy, Traefik, Envoy) for `cargo xtask bench`.
//!
//! Usage: `bench-dataplane <controller> [--pods N] [--drain-limit SECS] [--prestop SECS]
//! [--backend-connections N]`.
//! Deploys through the testbed's `LocalEnv` (pods use `TESTBED_WS_ECHO` when set) and prints one
//! JSON line: `controller`, `addr` (the proxy), `host`, `url`, `pod_addr` (the first pod, for the
//! direct baseline), `data_plane` (its version), `pods` (`name`, `addr`, `ready`, `pid`),
//! `data_plane_pids` (`main`, `workers`), `data_plane_nofile` / `data_plane_nofile_hard` (the main
//! process's RLIMIT_NOFILE), `reloads` (whether the controller reloads for `reload`) and the spec's
//! `replicas`, `drain_limit_s`, `backend_connections` and `drain`. Then it takes commands on stdin, one per line, and
//! answers each with one JSON line (see `bench_anchors::dataplane`): `pids`, `reload`, `rollout`,
//! `terminate`, `route`, `metrics`. It tears the deployment down when stdin closes or SIGTERM/SIGINT arrives.
//! Its children inherit its CPU affinity, so `taskset` on this process pins the whole server side.

use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use bench_anchors::dataplane::{self, Args, ArgsError, Command};
use futures_util::FutureExt;
use model::Controller;
use serde_json::{Value, json};
use testbed::Deployment;
use testbed::controllers::ControllerChange;
use testbed::local::{DataPlaneProcesses, LocalDeployment, LocalEnv};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}", USAGE = dataplane::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-dataplane: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench-dataplane: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // The stdin thread may still be blocked in a read; nothing waits for it.
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-dataplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn any(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let controller = args.controller;
    let spec = args.spec();
    let mut signals = Signals::install()?;
    let env = LocalEnv::new()?;
    let deployment = tokio::select! {
        deployed = env.deploy_local(controller, &spec) => {
            deployed.with_context(|| format!("deploying ws-echo behind {controller}"))?
        }
        () = signals.any() => anyhow::bail!("interrupted while deploying ws-echo behind {controller}"),
    };
    // From here on the deployment is torn down whatever happens.
    let served = serve(&deployment, &args, &mut signals).await;
    let torn_down = Deployment::teardown(Box::new(deployment))
        .await
        .context("tearing the deployment down");
    served.and(torn_down)
}

/// Prints the first line, then answers commands until stdin closes, stdout goes away or a
/// signal arrives.
async fn serve(deployment: &LocalDeployment, args: &Args, signals: &mut Signals) -> anyhow::Result<()> {
    let line = first_line(deployment, args).await?;
    if !emit(&line) {
        return Ok(());
    }
    let mut lines = stdin_lines();
    loop {
        let line = tokio::select! {
            line = lines.recv() => match line {
                Some(line) => line,
                None => return Ok(()),
            },
            () = signals.any() => return Ok(()),
        };
        let reply = tokio::select! {
            reply = answer(deployment, args.controller, &line) => reply,
            () = signals.any() => return Ok(()),
        };
        if !emit(&reply) {
            return Ok(());
        }
    }
}

/// Writes one line to stdout; false once stdout is gone.
fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Stdin's lines, read on a thread of their own (a blocking read cannot be cancelled, and the
/// process must be able to end while one is pending); the channel closes at EOF.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn first_line(deployment: &LocalDeployment, args: &Args) -> anyhow::Result<String> {
    let controller = args.controller;
    let pods = deployment.pods().await.context("listing the pods")?;
    let pod = pods.first().context("the deployment has no pod")?;
    let versions = deployment.versions().await;
    let endpoint = deployment.endpoint();
    let processes = deployment.data_plane_processes();
    let nofile = dataplane::read_nofile(processes.main);
    let spec = deployment.spec();
    let line = json!({
        "controller": controller.name(),
        "addr": endpoint.addr.to_string(),
        "host": endpoint.host,
        "url": endpoint.ws_url("/ws?hello=false"),
        "pod_addr": pod.addr.to_string(),
        "data_plane": versions.data_plane,
        "pods": pods_json(deployment, &pods),
        "data_plane_pids": pids_json(&processes),
        "data_plane_nofile": nofile.and_then(|n| n.soft),
        "data_plane_nofile_hard": nofile.and_then(|n| n.hard),
        "reloads": reloads(controller, spec),
        "replicas": spec.pods,
        "drain_limit_s": spec.data_plane.drain_limit.map(dataplane::secs),
        "backend_connections": spec.data_plane.backend_connections,
        "drain": {
            "prestop_s": dataplane::secs(spec.drain.prestop_delay),
            "shutdown_grace_s": dataplane::secs(spec.drain.shutdown_grace),
            "termination_grace_s": dataplane::secs(spec.drain.termination_grace),
        },
    });
    Ok(line.to_string())
}

fn pids_json(processes: &DataPlaneProcesses) -> Value {
    json!({ "main": processes.main, "workers": processes.workers })
}

fn pods_json(deployment: &LocalDeployment, pods: &[testbed::Pod]) -> Value {
    let pids = deployment.pod_pids();
    Value::Array(
        pods.iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "addr": p.addr.to_string(),
                    "ready": p.ready,
                    "pid": pids.get(&p.name),
                })
            })
            .collect(),
    )
}

/// Whether `controller` applies the change `reload` makes by reloading its data plane: in kind
/// that change is a ConfigMap key the controller reloads for (ingress-nginx, HAProxy); Traefik
/// and Envoy Gateway get their nearest equivalent, applied in process.
fn reloads(controller: Controller, spec: &model::IngressSpec) -> bool {
    let opts = testbed::render::kind::RenderOptions::new("bench");
    matches!(
        testbed::controllers::of(controller).controller_change(spec, &opts, 0),
        ControllerChange::ConfigMap { .. }
    )
}

/// The reply line to one stdin line. Never panics: a failure, or a panic inside the testbed,
/// is an error reply.
async fn answer(deployment: &LocalDeployment, controller: Controller, line: &str) -> String {
    let command = match Command::parse(line) {
        Ok(command) => command,
        Err(e) => return dataplane::error_reply(dataplane::command_word(line), &e),
    };
    let result = AssertUnwindSafe(execute(deployment, controller, command))
        .catch_unwind()
        .await;
    match result {
        Ok(Ok(fields)) => dataplane::ok_reply(command.name(), fields),
        Ok(Err(e)) => dataplane::error_reply(command.name(), &format!("{e:#}")),
        Err(panic) => {
            let what = (panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            dataplane::error_reply(command.name(), &format!("panicked: {what}"))
        }
    }
}

async fn execute(deployment: &LocalDeployment, controller: Controller, command: Command) -> anyhow::Result<Value> {
    let started = Instant::now();
    let begun = SystemTime::now();
    let after_ms = |started: Instant| started.elapsed().as_millis() as u64;
    Ok(match command {
        Command::Pids => pids_json(&deployment.data_plane_processes()),
        Command::Reload => {
            deployment.apply_controller_change().await?;
            json!({ "after_ms": after_ms(started), "reloads": reloads(controller, deployment.spec()) })
        }
        Command::Rollout => {
            deployment.rollout_restart().await?;
            let elapsed = after_ms(started);
            let pods = deployment.pods().await?;
            json!({ "after_ms": elapsed, "pods": pods_json(deployment, &pods) })
        }
        Command::Terminate => {
            let replaced = deployment.replace_data_plane().await?;
            let since = |at: Option<SystemTime>| {
                at.and_then(|at| at.duration_since(begun).ok())
                    .map(|d| d.as_millis() as u64)
            };
            json!({
                "after_ms": since(Some(replaced.ready)),
                "gone_ms": since(replaced.old.exited),
                "signal_ms": since(replaced.old.sigterm),
                "sigkill": replaced.old.sigkill.is_some(),
                "exit": replaced.old.exit_status,
                "pids": pids_json(&deployment.data_plane_processes()),
            })
        }
        Command::Route => {
            deployment.apply_unrelated_change().await?;
            json!({ "after_ms": after_ms(started) })
        }
        Command::Metrics => {
            let pods = deployment.pods().await?;
            let texts = futures_util::future::join_all(pods.iter().map(|p| deployment.pod_metrics(&p.name))).await;
            let per_pod = (pods.into_iter().zip(texts))
                .map(|(p, text)| (p.name, text.map_err(|e| format!("{:#}", anyhow::Error::from(e)))))
                .collect();
            dataplane::metrics_fields(per_pod).map_err(anyhow::Error::msg)?
        }
    })
}

//! A pod: one ws-echo process on its own loopback address, ready when `/readyz` answers 200.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::http::{self, Target};
use super::process::{log_stdio, log_tail};
use super::{LocalError, READY_TIMEOUT, Result};
use model::IngressSpec;

#[derive(Debug)]
pub(crate) struct PodProcess {
    pub name: String,
    pub addr: SocketAddr,
    /// Taken by the termination task.
    pub child: Option<Child>,
    pub pid: u32,
    /// The data plane routes to it.
    pub in_endpoints: bool,
    pub terminating: bool,
    /// Killed by [`crate::cleanup`] if the harness is interrupted; travels with `child`.
    pub cleanup: Option<crate::cleanup::Registration>,
}

impl PodProcess {
    /// Starts ws-echo as pod `name` on `addr` and waits until it is ready.
    pub async fn spawn(ws_echo: &Path, dir: &Path, name: String, addr: SocketAddr, spec: &IngressSpec) -> Result<Self> {
        let log = dir.join("pods").join(format!("{name}.log"));
        let (stdout, stderr) = log_stdio(&log).map_err(super::io_err(format!("opening {}", log.display())))?;
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        let mut cmd = Command::new(ws_echo);
        cmd.env("POD_NAME", &name)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--drain-delay")
            .arg(fmt(spec.drain.prestop_delay))
            .arg("--shutdown-grace")
            .arg(fmt(spec.drain.shutdown_grace))
            .arg("--log-format")
            .arg("text");
        if let Some(tick) = spec.pod.tick_interval {
            cmd.arg("--tick-interval").arg(fmt(tick));
        }
        if let Some(ping) = spec.pod.ping_interval {
            cmd.arg("--ping-interval").arg(fmt(ping));
        }
        if spec.pod.ignore_sigterm {
            cmd.arg("--ignore-sigterm");
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| LocalError::Spawn {
            what: format!("pod {name}"),
            program: ws_echo.to_owned(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let cleanup = Some(crate::cleanup::process(pid));
        let start = Instant::now();
        let target = Target::direct(addr);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LocalError::ExitedEarly {
                    what: format!("pod {name}"),
                    status: super::process::exit_text(status),
                    log_tail: log_tail(&log, 20),
                });
            }
            if let Ok(r) = http::request(&target, None, "GET", "/readyz", Duration::from_secs(1)).await
                && r.status == 200
            {
                break;
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(LocalError::NotReady {
                    what: format!("pod {name} to answer 200 on /readyz at {addr}"),
                    after: READY_TIMEOUT,
                    log_tail: log_tail(&log, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::debug!(pod = %name, %addr, "pod ready");
        Ok(PodProcess {
            name,
            addr,
            child: Some(child),
            pid,
            in_endpoints: false,
            terminating: false,
            cleanup,
        })
    }
}

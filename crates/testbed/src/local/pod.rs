//! A pod: one ws-echo process on its own loopback address, ready when `/readyz` answers 200.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::process::{log_stdio, log_tail};
use super::{LocalError, READY_TIMEOUT, Result};
use crate::ready::{self, Accept, Check, WaitFor};
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
        let mut config = crate::render::ws_echo_config(spec, addr);
        config.pod_name = Some(name.clone());
        let mut cmd = Command::new(ws_echo);
        cmd.args(config.to_args());
        cmd.stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| LocalError::Spawn {
            what: format!("pod {name}"),
            program: ws_echo.to_owned(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let cleanup = Some(crate::cleanup::process(pid));
        let client = super::pod_client(addr, Duration::from_secs(1))?;
        let what = format!("pod {name} to answer 200 on /readyz at {addr}");
        let readyz = WaitFor::Http {
            opts: Box::new(client),
            path: "/readyz".to_owned(),
            accept: Accept::Success,
        };
        let child = std::sync::Mutex::new(child);
        let exited = || {
            let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
            child.try_wait().ok().flatten()
        };
        let ready = ready::until(&what, READY_TIMEOUT, Duration::from_millis(10), || async {
            if let Some(status) = exited() {
                return Check::Abort(format!("it exited ({})", super::process::exit_text(status)));
            }
            readyz.check().await
        })
        .await;
        let child = child.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Err(wait) = ready {
            return Err(LocalError::Wait {
                wait,
                log_tail: log_tail(&log, 20),
            });
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

//! The data-plane process, whichever controller's: start, readiness, endpoint updates,
//! configuration changes, process ids. What differs per controller is its [`Driver`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use model::{Controller, IngressSpec};
use nix::sys::signal::Signal;
use probe::ProbeOptions;
use probe::tls::TlsFiles;
use tokio::process::{Child, Command};

use super::process::{log_stdio, log_tail, signal_group};
use super::{LocalError, READY_TIMEOUT, Result, io_err};
use crate::controllers::{self, Driver};
use crate::env::TerminationRecord;
use crate::ready::{self, Check, WaitFor};
use crate::render::local::{Backends, ExtraRoute, LocalContext, TlsPaths};

/// The data plane's processes at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneProcesses {
    /// nginx master, HAProxy master, the Traefik process.
    pub main: u32,
    /// Processes that hold connections: nginx and HAProxy workers (old ones
    /// included while they drain after a reload); for Traefik, its one process.
    pub workers: Vec<u32>,
}

/// What changed for the data plane; its controller decides how it gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The ready endpoints (never a reload).
    Endpoints,
    /// A new route (another Ingress for the same Service).
    Route,
    /// A controller-wide change (a reload, where the controller reloads).
    Controller,
}

/// One data-plane process and the driver that configures it as its controller does.
#[derive(Debug)]
pub(crate) struct DataPlane {
    controller: Controller,
    binary: PathBuf,
    driver: Box<dyn Driver>,
    /// Listener, runtime dir, TLS, nginx's backend store; pods and extra routes are filled per render.
    base: LocalContext,
    child: Mutex<Option<Child>>,
    pid: u32,
    log: PathBuf,
    /// Killed by [`crate::cleanup`] if the harness is interrupted.
    cleanup: Option<crate::cleanup::Registration>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DataPlane {
    pub async fn start(
        controller: Controller,
        binary: &Path,
        spec: &IngressSpec,
        dir: &Path,
        listen: SocketAddr,
        tls: Option<&TlsFiles>,
        endpoints: &[SocketAddr],
    ) -> Result<Self> {
        let mut driver = controllers::of(controller).driver();
        let mut base = LocalContext {
            listen,
            runtime_dir: dir.to_owned(),
            backends: Backends {
                pods: Vec::new(),
                store: None,
            },
            tls: tls.map(TlsPaths::from),
            extra_routes: Vec::new(),
        };
        driver.prepare(&mut base, endpoints).await?;
        let log = dir.join(format!("{controller}.log"));
        let mut dp = DataPlane {
            controller,
            binary: binary.to_owned(),
            driver,
            base,
            child: Mutex::new(None),
            pid: 0,
            log,
            cleanup: None,
        };
        dp.driver.write_config(spec, &dp.context(endpoints, &[]))?;
        let mut cmd = Command::new(binary);
        cmd.args(dp.driver.args(spec, &dp.base));
        let (stdout, stderr) = log_stdio(&dp.log).map_err(io_err(format!("opening {}", dp.log.display())))?;
        cmd.current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group, so teardown reaches the workers too.
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| LocalError::Spawn {
            what: controller.to_string(),
            program: binary.to_owned(),
            source,
        })?;
        dp.pid = child.id().unwrap_or_default();
        dp.cleanup = Some(crate::cleanup::process_group(dp.pid));
        *lock(&dp.child) = Some(child);
        let mut conditions = vec![WaitFor::Listening(listen)];
        conditions.extend(dp.driver.ready(&dp.base));
        for condition in conditions {
            dp.wait(&condition).await?;
        }
        let ctx = dp.context(endpoints, &[]);
        dp.driver
            .started(spec, &ctx, dp.pid)
            .await
            .map_err(|e| dp.with_log(e))?;
        Ok(dp)
    }

    /// Waits for `condition`, giving up at once if the process exits.
    async fn wait(&self, condition: &WaitFor) -> Result<()> {
        let what = format!("{} ({})", condition.describe(), self.controller);
        let result = ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            if let Some(status) = lock(&self.child).as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Check::Abort(format!("it exited ({})", super::process::exit_text(status)));
            }
            condition.check().await
        })
        .await;
        result.map_err(|wait| LocalError::Wait {
            wait,
            log_tail: self.log_tail(),
        })
    }

    fn context(&self, endpoints: &[SocketAddr], extra: &[ExtraRoute]) -> LocalContext {
        let mut ctx = self.base.clone();
        ctx.backends.pods = endpoints.to_vec();
        ctx.extra_routes = extra.to_vec();
        ctx
    }

    /// Hands `change` to the driver, which applies it the way the controller does, for the
    /// current endpoints and extra routes; returns once the data plane has it.
    pub async fn apply(
        &self,
        change: Change,
        spec: &IngressSpec,
        endpoints: &[SocketAddr],
        extra: &[ExtraRoute],
        probe: &ProbeOptions,
    ) -> Result<()> {
        let ctx = self.context(endpoints, extra);
        let applied = match change {
            Change::Endpoints => self.driver.set_endpoints(spec, &ctx, probe).await,
            Change::Route => self.driver.apply_config(spec, &ctx, self.pid, probe).await,
            Change::Controller => self.driver.apply_controller_change(spec, &ctx, self.pid, probe).await,
        };
        applied.map_err(|e| self.with_log(e))
    }

    /// A not-ready error from a driver, with this data plane's log.
    fn with_log(&self, e: LocalError) -> LocalError {
        match e {
            LocalError::NotReady { what, after, .. } => LocalError::NotReady {
                what,
                after,
                log_tail: self.log_tail(),
            },
            LocalError::Wait { wait, .. } => LocalError::Wait {
                wait,
                log_tail: self.log_tail(),
            },
            other => other,
        }
    }

    pub fn processes(&self) -> DataPlaneProcesses {
        DataPlaneProcesses {
            main: self.pid,
            workers: self.driver.workers(self.pid),
        }
    }

    /// "nginx/1.31.3", "HAProxy 2.8.25-…", "Traefik 3.6.13".
    pub async fn version(&self) -> String {
        let controller = controllers::of(self.controller);
        let out = match Command::new(&self.binary)
            .args(controller.version_args())
            .output()
            .await
        {
            Ok(out) => out,
            Err(e) => return format!("unknown ({e})"),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        controller
            .parse_version(&text)
            .unwrap_or_else(|| format!("unknown ({})", text.trim()))
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 30)
    }

    /// Kills the whole process group (master, workers, old workers).
    pub fn kill(&self) {
        if self.pid != 0 {
            let _ = signal_group(self.pid, Signal::SIGKILL);
        }
        if let Some(child) = lock(&self.child).as_mut() {
            let _ = child.start_kill();
        }
    }

    /// Terminates the data plane as its pod's termination does: the driver's shutdown (preStop,
    /// signal), then SIGKILL to the whole group at the end of the pod's grace period.
    pub async fn terminate(&self, spec: &IngressSpec) -> TerminationRecord {
        let grace = self.controller.info().shutdown.grace.value;
        let deadline = tokio::time::Instant::now() + grace;
        let mut record = TerminationRecord {
            pod: format!("{} data plane", self.controller),
            started: Some(SystemTime::now()),
            ..TerminationRecord::default()
        };
        match tokio::time::timeout_at(deadline, self.driver.shutdown(spec, &self.base, self.pid)).await {
            Ok(Ok(marks)) => {
                record.prestop_done = marks.prestop_done;
                record.sigterm = Some(marks.signalled);
            }
            Ok(Err(e)) => tracing::warn!(controller = %self.controller, error = %e, "data-plane shutdown failed"),
            Err(_) => tracing::warn!(controller = %self.controller, "data-plane shutdown outlasted the grace period"),
        }
        let child = lock(&self.child).take();
        if let Some(mut child) = child {
            let status = match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    record.sigkill = Some(SystemTime::now());
                    let _ = signal_group(self.pid, Signal::SIGKILL);
                    child.wait().await
                }
            };
            record.exit_status = status.ok().map(super::process::exit_text);
        }
        // Workers or old processes of the group outlive the master only until the grace ends.
        let _ = signal_group(self.pid, Signal::SIGKILL);
        record.exited = Some(SystemTime::now());
        record
    }

    pub async fn wait_exit(&self, limit: Duration) {
        let child = lock(&self.child).take();
        if let Some(mut child) = child {
            let _ = tokio::time::timeout(limit, child.wait()).await;
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

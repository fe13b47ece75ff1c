//! The data-plane process: start, endpoint updates without reload, configuration reloads, process ids.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use super::dns::DnsResponder;
use super::http::{self, Target};
use super::process::{children_of, log_stdio, log_tail, signal, signal_group};
use super::{LocalError, READY_TIMEOUT, Result, io_err, runtime_api};
use crate::render::local::{
    Backends, ExtraRoute, LocalContext, NAMESPACE, Resolver, SERVICE, TlsPaths, haproxy, nginx, traefik,
};
use model::{Controller, IngressSpec};
use probe::tls::TlsFiles;

/// The data plane's processes at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneProcesses {
    /// nginx master, HAProxy master, the Traefik process.
    pub main: u32,
    /// Processes that hold connections: nginx and HAProxy workers (old ones
    /// included while they drain after a reload); for Traefik, its one process.
    pub workers: Vec<u32>,
}

#[derive(Debug)]
pub(crate) struct DataPlane {
    controller: Controller,
    binary: PathBuf,
    /// Listener, runtime dir, TLS, resolver; pods and extra routes are filled per render.
    base: LocalContext,
    child: Mutex<Option<Child>>,
    pid: u32,
    log: PathBuf,
    /// nginx only: the Service name's A records.
    dns: Option<DnsResponder>,
    /// HAProxy only: which pod each server slot holds.
    slots: Mutex<Vec<Option<SocketAddr>>>,
    /// Traefik only: generation of the dynamic configuration last written.
    generation: Mutex<u64>,
    /// Killed by [`crate::cleanup`] if the harness is interrupted.
    cleanup: Option<crate::cleanup::Registration>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DataPlane {
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        controller: Controller,
        binary: &Path,
        spec: &IngressSpec,
        dir: &Path,
        listen: SocketAddr,
        tls: Option<&TlsFiles>,
        endpoints: &[SocketAddr],
        target: &Target,
    ) -> Result<Self> {
        let pod_port = endpoints.first().map(|a| a.port()).unwrap_or(80);
        let dns = match controller {
            Controller::Nginx => Some(
                DnsResponder::start(&service_dns_name(), ipv4s(endpoints))
                    .await
                    .map_err(io_err("starting the DNS responder"))?,
            ),
            _ => None,
        };
        let base = LocalContext {
            listen,
            runtime_dir: dir.to_owned(),
            backends: Backends {
                pods: Vec::new(),
                resolver: dns.as_ref().map(|d| Resolver {
                    server: d.addr(),
                    name: service_dns_name(),
                    port: pod_port,
                    valid_secs: 1,
                }),
                server_slots: haproxy::DEFAULT_SERVER_SLOTS,
            },
            tls: tls.map(TlsPaths::from),
            extra_routes: Vec::new(),
        };
        let log = dir.join(format!("{controller}.log"));
        let mut dp = DataPlane {
            controller,
            binary: binary.to_owned(),
            base,
            child: Mutex::new(None),
            pid: 0,
            log,
            dns,
            slots: Mutex::new(endpoints.iter().copied().map(Some).collect()),
            generation: Mutex::new(1),
            cleanup: None,
        };
        dp.write_config(spec, endpoints, &[])?;
        let mut cmd = Command::new(binary);
        match controller {
            Controller::Nginx => {
                cmd.arg("-p")
                    .arg(dir)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"))
                    .arg("-e")
                    .arg("stderr");
            }
            Controller::Haproxy => {
                cmd.arg("-W")
                    .arg("-S")
                    .arg(haproxy::master_socket(&dp.base))
                    .arg("-f")
                    .arg(dir.join("haproxy.cfg"));
            }
            Controller::Traefik => {
                cmd.arg(format!("--configFile={}", dir.join("traefik.yaml").display()));
            }
        }
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
        dp.wait_listening(target.addr).await?;
        if controller == Controller::Haproxy {
            dp.wait_master_ready().await?;
        }
        Ok(dp)
    }

    fn context(&self, endpoints: &[SocketAddr], extra: &[ExtraRoute]) -> LocalContext {
        let mut ctx = self.base.clone();
        ctx.backends.pods = endpoints.to_vec();
        ctx.extra_routes = extra.to_vec();
        ctx
    }

    /// Renders and writes the configuration files for the current state.
    fn write_config(&self, spec: &IngressSpec, endpoints: &[SocketAddr], extra: &[ExtraRoute]) -> Result<()> {
        let ctx = self.context(endpoints, extra);
        let dir = &self.base.runtime_dir;
        match self.controller {
            Controller::Nginx => write(&dir.join("nginx.conf"), &nginx::render(spec, &ctx)?),
            Controller::Haproxy => {
                let slots = lock(&self.slots).clone();
                write(&dir.join("haproxy.cfg"), &haproxy::render(spec, &ctx, &slots)?)
            }
            Controller::Traefik => {
                write(&dir.join("traefik.yaml"), &traefik::render_static(spec, &ctx)?)?;
                let generation = *lock(&self.generation);
                self.write_dynamic(spec, &ctx, generation)
            }
        }
    }

    fn write_dynamic(&self, spec: &IngressSpec, ctx: &LocalContext, generation: u64) -> Result<()> {
        let text = traefik::render_dynamic(spec, ctx, &ctx.backends.pods, generation)?;
        let dir = traefik::dynamic_dir(ctx);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Written beside the watched directory, then renamed in: Traefik never reads half a file.
        let tmp = ctx.runtime_dir.join(format!(".{}.tmp", traefik::DYNAMIC_FILE));
        write(&tmp, &text)?;
        let dest = dir.join(traefik::DYNAMIC_FILE);
        std::fs::rename(&tmp, &dest).map_err(io_err(format!("replacing {}", dest.display())))
    }

    async fn wait_listening(&self, addr: SocketAddr) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = lock(&self.child).as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(LocalError::ExitedEarly {
                    what: self.controller.to_string(),
                    status: super::process::exit_text(status),
                    log_tail: self.log_tail(),
                });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(LocalError::NotReady {
                    what: format!("{} to listen on {addr}", self.controller),
                    after: READY_TIMEOUT,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The HAProxy master serves its CLI (and handles reloads) only once its
    /// loop runs, a moment after the first worker already serves traffic.
    async fn wait_master_ready(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.haproxy_workers().await {
                Ok(workers) if !workers.is_empty() => return Ok(()),
                _ if start.elapsed() > READY_TIMEOUT => {
                    return Err(LocalError::NotReady {
                        what: "the HAProxy master CLI to list a worker".to_owned(),
                        after: READY_TIMEOUT,
                        log_tail: self.log_tail(),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Gives the data plane the new endpoint set the way its controller
    /// does (no reload) and returns once it has them.
    pub async fn set_endpoints(
        &self,
        spec: &IngressSpec,
        endpoints: &[SocketAddr],
        extra: &[ExtraRoute],
        target: &Target,
    ) -> Result<()> {
        match self.controller {
            Controller::Nginx => {
                let Some(dns) = &self.dns else { return Ok(()) };
                let version = dns.set(ipv4s(endpoints));
                // nginx re-resolves every `valid` seconds; the change is in once it fetched it.
                let limit = Duration::from_secs(5);
                if dns.wait_served(version, limit).await {
                    Ok(())
                } else {
                    Err(LocalError::NotReady {
                        what: "nginx to re-resolve the Service name".to_owned(),
                        after: limit,
                        log_tail: self.log_tail(),
                    })
                }
            }
            Controller::Haproxy => {
                let commands = {
                    let mut slots = lock(&self.slots);
                    let wanted = slot_plan(&slots, endpoints, self.base.backends.server_slots);
                    let mut commands = Vec::new();
                    for (i, new) in wanted.iter().enumerate() {
                        if slots.get(i).copied().flatten() != *new {
                            commands.extend(haproxy::slot_commands(i as u32 + 1, *new));
                        }
                    }
                    *slots = wanted;
                    commands
                };
                let socket = haproxy::runtime_socket(&self.base);
                for command in commands {
                    let answer = runtime_api::send(&socket, &command)
                        .await
                        .map_err(io_err(format!("sending {command:?} to the HAProxy runtime API")))?;
                    let refused = ["No such", "Unknown", "Require", "not found", "invalid", "Invalid"];
                    if refused.iter().any(|r| answer.contains(r)) {
                        return Err(LocalError::RuntimeApi { command, answer });
                    }
                    tracing::debug!(command, answer = answer.trim(), "HAProxy runtime API");
                }
                Ok(())
            }
            Controller::Traefik => {
                let generation = {
                    let mut g = lock(&self.generation);
                    *g += 1;
                    *g
                };
                let ctx = self.context(endpoints, extra);
                self.write_dynamic(spec, &ctx, generation)?;
                self.wait_generation(generation, target).await
            }
        }
    }

    /// Traefik applied dynamic configuration `generation` once its marker router answers.
    async fn wait_generation(&self, generation: u64, target: &Target) -> Result<()> {
        let probe = Target {
            host: traefik::generation_host(generation),
            ..target.clone()
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = http::request(&probe, None, "GET", "/healthz", Duration::from_secs(2)).await
                && r.status != 404
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(LocalError::NotReady {
                    what: format!("Traefik to apply dynamic configuration generation {generation}"),
                    after: READY_TIMEOUT,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A configuration change: re-render and reload (nginx, HAProxy) or
    /// rewrite the dynamic configuration (Traefik, which never reloads).
    pub async fn apply_config(
        &self,
        spec: &IngressSpec,
        endpoints: &[SocketAddr],
        extra: &[ExtraRoute],
        target: &Target,
    ) -> Result<()> {
        match self.controller {
            Controller::Nginx | Controller::Haproxy => {
                self.write_config(spec, endpoints, extra)?;
                self.reload().await
            }
            Controller::Traefik => self.set_endpoints(spec, endpoints, extra, target).await,
        }
    }

    /// Asks nginx or HAProxy to reload the configuration file (Traefik never reloads).
    pub async fn reload(&self) -> Result<()> {
        match self.controller {
            // `nginx -s reload`: SIGHUP to the master.
            Controller::Nginx => signal(self.pid, Signal::SIGHUP).map_err(|source| LocalError::Signal {
                what: "the nginx master (reload)".to_owned(),
                source,
            }),
            // Master-worker reload through the master CLI, as the controller does:
            // new workers start, old ones keep their connections until hard-stop-after.
            // The CLI only answers once the master loop runs, unlike an early SIGUSR2.
            Controller::Haproxy => {
                let socket = haproxy::master_socket(&self.base);
                match runtime_api::send(&socket, "reload").await {
                    Ok(answer) => tracing::debug!(answer = answer.trim(), "HAProxy master reload"),
                    // The master closes the CLI connection while it re-executes.
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::debug!(error = %e, "HAProxy master reload")
                    }
                    Err(e) => return Err(io_err("asking the HAProxy master to reload")(e)),
                }
                Ok(())
            }
            Controller::Traefik => Ok(()),
        }
    }

    pub fn processes(&self) -> DataPlaneProcesses {
        let workers = match self.controller {
            Controller::Traefik => vec![self.pid],
            Controller::Nginx | Controller::Haproxy => children_of(self.pid),
        };
        DataPlaneProcesses {
            main: self.pid,
            workers,
        }
    }

    /// HAProxy's own view of its workers (master CLI `show proc`).
    pub async fn haproxy_workers(&self) -> Result<Vec<u32>> {
        let socket = haproxy::master_socket(&self.base);
        let answer = runtime_api::send(&socket, "show proc")
            .await
            .map_err(io_err("asking the HAProxy master for its workers"))?;
        Ok(runtime_api::parse_worker_pids(&answer))
    }

    /// "nginx/1.31.3", "HAProxy 2.8.25-…", "Traefik 3.7.15".
    pub async fn version(&self) -> String {
        let args: &[&str] = match self.controller {
            Controller::Nginx | Controller::Haproxy => &["-v"],
            Controller::Traefik => &["version"],
        };
        let out = match Command::new(&self.binary).args(args).output().await {
            Ok(out) => out,
            Err(e) => return format!("unknown ({e})"),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_version(self.controller, &text).unwrap_or_else(|| format!("unknown ({})", text.trim()))
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

/// The Service's DNS name nginx resolves.
fn service_dns_name() -> String {
    format!("{SERVICE}.{NAMESPACE}.svc.cluster.local")
}

fn ipv4s(addrs: &[SocketAddr]) -> Vec<std::net::Ipv4Addr> {
    addrs
        .iter()
        .filter_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// New slot contents: pods keep their slot, gone pods free theirs, new pods take the lowest free ones.
fn slot_plan(current: &[Option<SocketAddr>], endpoints: &[SocketAddr], count: u32) -> Vec<Option<SocketAddr>> {
    let count = (count as usize).max(current.len()).max(endpoints.len());
    let mut plan: Vec<Option<SocketAddr>> = (0..count)
        .map(|i| current.get(i).copied().flatten().filter(|a| endpoints.contains(a)))
        .collect();
    for ep in endpoints {
        if !plan.contains(&Some(*ep))
            && let Some(free) = plan.iter_mut().find(|s| s.is_none())
        {
            *free = Some(*ep);
        }
    }
    plan
}

fn parse_version(controller: Controller, text: &str) -> Option<String> {
    match controller {
        Controller::Nginx => text
            .lines()
            .find_map(|l| l.strip_prefix("nginx version: "))
            .map(|v| v.trim().to_owned()),
        Controller::Haproxy => text
            .lines()
            .find_map(|l| l.strip_prefix("HAProxy version "))
            .and_then(|v| v.split_whitespace().next())
            .map(|v| format!("HAProxy {v}")),
        Controller::Traefik => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version:"))
            .map(|v| format!("Traefik {}", v.trim())),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, n], 8080))
    }

    #[test]
    fn pods_keep_their_slots_and_new_pods_fill_the_lowest_free_slot() {
        let current = vec![Some(a(1)), Some(a(2)), Some(a(3)), None];
        let plan = slot_plan(&current, &[a(1), a(3), a(4)], 4);
        assert_eq!(plan, [Some(a(1)), Some(a(4)), Some(a(3)), None]);
    }

    #[test]
    fn versions_are_read_from_each_binary() {
        assert_eq!(
            parse_version(Controller::Nginx, "nginx version: nginx/1.31.3\n").as_deref(),
            Some("nginx/1.31.3")
        );
        assert_eq!(
            parse_version(
                Controller::Haproxy,
                "HAProxy version 2.8.25-5cf5d0683 2026/06/26 - https://haproxy.org/\n"
            )
            .as_deref(),
            Some("HAProxy 2.8.25-5cf5d0683")
        );
        assert_eq!(
            parse_version(Controller::Traefik, "Version:      3.7.15\nCodename: x\n").as_deref(),
            Some("Traefik 3.7.15")
        );
    }
}

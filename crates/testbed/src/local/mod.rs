//! The local environment: real nginx, HAProxy and Traefik binaries in front of ws-echo processes acting as pods.
//!
//! Each deployment gets a temp dir (kept with `TESTBED_KEEP=1`) holding the
//! rendered configuration, pid files, sockets and logs. Pods are ws-echo
//! processes on their own loopback address (127.0.1.N, one port shared by the
//! deployment). Endpoint changes reach the data plane the way the controllers
//! do it, without a reload: nginx's backend store takes a POST of the
//! backends (its workers pick them up within 1 s), HAProxy's server slots are set over the runtime
//! API, Traefik's dynamic file is rewritten. A new route re-renders and
//! reloads nginx (SIGHUP), replaces HAProxy's routing maps over the runtime
//! API and rewrites Traefik's dynamic file; a controller-wide change reloads
//! nginx and HAProxy (its master CLI) and rewrites Traefik's dynamic file.

mod control_loop;
mod dataplane;
mod pod;
pub(crate) mod process;
pub(crate) mod runtime_api;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use self::control_loop::{Applied, EndpointSync, Pacer};
pub use self::dataplane::DataPlaneProcesses;
use self::dataplane::{Change, DataPlane};
use self::pod::PodProcess;
use crate::env::{Deployment, EnvError, Environment, Pod, Termination, TerminationRecord, Versions, keep_requested};
use crate::ready::{self, Check};
use crate::render::local::ExtraRoute;
use model::{Controller, EnvKind, IngressSpec, Unsupported};
use probe::ProbeOptions;
use probe::tls::TestCa;

pub type Result<T, E = LocalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    #[error(transparent)]
    Tools(#[from] crate::tools::ToolsError),
    #[error("generating the TLS files")]
    Tls(#[from] probe::tls::TlsError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {what} ({program})")]
    Spawn {
        what: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited ({status}) before it was ready; {log_tail}")]
    ExitedEarly {
        what: String,
        status: String,
        log_tail: String,
    },
    #[error("timed out after {after:?} waiting for {what}; {log_tail}")]
    NotReady {
        what: String,
        after: Duration,
        log_tail: String,
    },
    #[error("{wait}; {log_tail}")]
    Wait {
        wait: crate::ready::NotReady,
        log_tail: String,
    },
    #[error("nginx's backend store refused {request}: {answer}")]
    BackendStore { request: String, answer: String },
    #[error("HAProxy runtime API command {command:?} was refused: {answer}")]
    RuntimeApi { command: String, answer: String },
    #[error("signalling {what}")]
    Signal {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("no pod named {pod:?} in this deployment")]
    NoSuchPod { pod: String },
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    #[error("{0}")]
    Setting(String),
    #[error("{what}: {error}")]
    ControlLoop { what: String, error: String },
}

/// A wait that ended without its condition; the data plane adds its log where it has one.
impl From<crate::ready::NotReady> for LocalError {
    fn from(wait: crate::ready::NotReady) -> Self {
        LocalError::Wait {
            wait,
            log_tail: String::new(),
        }
    }
}

impl From<LocalError> for EnvError {
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::Unsupported(u) => EnvError::Unsupported(u),
            LocalError::NoSuchPod { pod } => EnvError::NoSuchPod { pod },
            other => EnvError::failed("the local environment", other),
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}

/// How long the harness waits for a process or the data plane to become ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

/// HAProxy's own view of its workers (master CLI `show proc`).
pub(crate) async fn master_workers(socket: &Path) -> std::io::Result<Vec<u32>> {
    let answer = runtime_api::send(socket, "show proc").await?;
    Ok(runtime_api::parse_worker_pids(&answer))
}

/// The harness's own client for one pod, dialled directly (`/readyz`, `/drain`, `/metrics`).
pub(crate) fn pod_client(addr: SocketAddr, timeout: Duration) -> Result<ProbeOptions> {
    Ok(ProbeOptions::new(addr, &format!("http://{addr}/"))?.handshake_timeout(timeout))
}

/// The `"pod"` field of a ws-echo JSON answer (`POST /session`).
fn pod_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("pod")?.as_str().map(str::to_owned)
}

/// The local environment. Cheap; every deployment is independent.
#[derive(Debug, Default)]
pub struct LocalEnv {}

impl LocalEnv {
    pub fn new() -> crate::env::Result<Self> {
        Ok(LocalEnv {})
    }

    /// Like [`Environment::deploy`], returning the concrete type (for its process ids).
    pub async fn deploy_local(&self, controller: Controller, spec: &IngressSpec) -> Result<LocalDeployment> {
        LocalDeployment::start(controller, spec).await
    }
}

#[async_trait]
impl Environment for LocalEnv {
    fn kind(&self) -> EnvKind {
        EnvKind::Local
    }

    async fn deploy(&self, controller: Controller, spec: &IngressSpec) -> crate::env::Result<Box<dyn Deployment>> {
        Ok(Box::new(self.deploy_local(controller, spec).await?))
    }
}

/// Pods and the data plane in front of them; dropping it kills every process.
#[derive(Debug)]
pub struct LocalDeployment {
    inner: Arc<Inner>,
    endpoint: model::Endpoint,
}

#[derive(Debug)]
struct Inner {
    controller: Controller,
    spec: IngressSpec,
    dir: PathBuf,
    tempdir: Mutex<Option<tempfile::TempDir>>,
    /// Removed by [`crate::cleanup`] if the harness is interrupted.
    _tempdir_cleanup: crate::cleanup::Registration,
    ca: Option<TestCa>,
    ws_echo: PathBuf,
    /// Port every pod listens on, each on its own 127.0.1.N.
    pod_port: u16,
    /// A client of this deployment: the data plane's listener, the Ingress host, TLS, PROXY header.
    client: ProbeOptions,
    /// The data plane now; [`LocalDeployment::replace_data_plane`] swaps in its replacement.
    data_plane: Mutex<Arc<DataPlane>>,
    /// What a replacement data plane starts from besides `client.addr`, its listener: its
    /// binary and TLS files.
    data_plane_binary: PathBuf,
    tls_files: Option<probe::tls::TlsFiles>,
    state: Mutex<State>,
    /// Serializes endpoint and configuration changes.
    /// One sync at a time reaches the data plane, as in the controller.
    ops: tokio::sync::Mutex<()>,
    /// The controller's pacing, which every sync waits for.
    pacer: Pacer,
    /// Endpoint changes on their way through the controller model.
    endpoint_sync: EndpointSync,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What [`LocalDeployment::replace_data_plane`] did: the old data plane's termination and when
/// its replacement served every ready pod.
#[derive(Debug, Clone)]
pub struct DataPlaneReplacement {
    pub old: TerminationRecord,
    pub ready: SystemTime,
}

#[derive(Debug)]
struct State {
    pods: BTreeMap<String, PodProcess>,
    /// ReplicaSet-like hash in new pod names; changes on rollout.
    template_hash: String,
    next_index: u32,
    extra_routes: Vec<ExtraRoute>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data plane now (a replacement may swap in while the caller holds this one).
    fn data_plane(&self) -> Arc<DataPlane> {
        self.data_plane.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ready pods the data plane should route to.
    fn endpoints(&self) -> Vec<SocketAddr> {
        self.state()
            .pods
            .values()
            .filter(|p| p.in_endpoints)
            .map(|p| p.addr)
            .collect()
    }

    /// Gives the data plane the current endpoints the way the controller does (the caller holds
    /// `ops` and had its turn).
    async fn apply_endpoints(&self) -> Result<()> {
        let endpoints = self.endpoints();
        let extra = self.state().extra_routes.clone();
        self.data_plane()
            .apply(Change::Endpoints, &self.spec, &endpoints, &extra, &self.client)
            .await
    }

    /// The controller's endpoint loop: waits for a change, the informer delay and its turn,
    /// then carries the latest endpoints (every change made meanwhile) to the data plane.
    async fn endpoint_loop(inner: Weak<Inner>, informer_delay: Duration) {
        let Some(mut wanted) = inner.upgrade().map(|i| i.endpoint_sync.subscribe()) else {
            return;
        };
        let mut applied = 0;
        loop {
            if wanted.wait_for(|g| *g > applied).await.is_err() {
                return;
            }
            tokio::time::sleep(informer_delay).await;
            let Some(inner) = inner.upgrade() else { return };
            inner.pacer.turn().await;
            let _ops = inner.ops.lock().await;
            let generation = inner.endpoint_sync.wanted();
            let result = inner.apply_endpoints().await;
            applied = generation;
            inner.endpoint_sync.publish(Applied {
                generation,
                at: SystemTime::now(),
                error: result.err().map(|e| e.to_string()),
            });
        }
    }

    /// How long an endpoint change may take through the controller model before the harness
    /// gives up on it.
    fn endpoint_limit(&self) -> Duration {
        READY_TIMEOUT + self.controller.info().control_loop.worst_lag()
    }

    /// Starts `count` new pods and waits until they are Ready; they join the endpoints and the
    /// controller model carries them to the data plane in its own time, as in a cluster.
    async fn add_pods(self: &Arc<Self>, count: u32) -> Result<Vec<String>> {
        let mut starting = Vec::new();
        for _ in 0..count {
            let (name, addr) = {
                let mut s = self.state();
                s.next_index += 1;
                let n = s.next_index;
                let name = format!("ws-echo-{}-{n}", s.template_hash);
                // 127.0.1.1 ..= 127.0.1.254, then 127.0.2.x is avoided (client sources).
                let addr = SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 1, ((n - 1) % 254 + 1) as u8)),
                    self.pod_port,
                );
                (name, addr)
            };
            starting.push(PodProcess::spawn(&self.ws_echo, &self.dir, name, addr, &self.spec));
        }
        let mut started = Vec::new();
        for result in futures_util::future::join_all(starting).await {
            started.push(result?);
        }
        let names: Vec<String> = started.iter().map(|p| p.name.clone()).collect();
        {
            let mut s = self.state();
            for mut pod in started {
                pod.in_endpoints = true;
                s.pods.insert(pod.name.clone(), pod);
            }
        }
        self.endpoint_sync.changed();
        Ok(names)
    }

    /// Waits until requests through the data plane have reached every pod in `names`.
    async fn wait_routed(&self, names: &BTreeSet<String>) -> Result<()> {
        let seen = Mutex::new(BTreeSet::new());
        let tries = std::sync::atomic::AtomicU32::new(0);
        let what = format!("{} to route to pods {names:?}", self.controller);
        let routed = ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            // Distinct client addresses, so client-IP affinity spreads too.
            let i = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 2, (i % 250 + 1) as u8));
            // A fresh cookie jar: an affinity cookie would pin every request to one pod.
            let mut opts = self
                .client
                .clone()
                .cookie_jar(probe::CookieJar::new())
                .source_ip(source);
            if self.spec.proxy_protocol {
                opts = opts.proxy_protocol(SocketAddr::new(source, 40_000 + (i % 20_000) as u16));
            }
            match probe::http_request(&opts, http::Method::POST, "/session", Vec::new()).await {
                Ok(r) if r.status == http::StatusCode::OK => {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    seen.extend(pod_of(&r.body));
                    if names.is_subset(&seen) {
                        Check::Ready(())
                    } else {
                        Check::NotYet(format!("reached {seen:?}"))
                    }
                }
                Ok(r) => Check::NotYet(format!("status {}", r.status)),
                Err(e) => Check::NotYet(e.to_string()),
            }
        })
        .await;
        routed.map_err(|wait| LocalError::Wait {
            wait,
            log_tail: self.data_plane().log_tail(),
        })
    }

    /// Starts Kubernetes' termination sequence for `name`. The receiver
    /// fires once the pod left the data plane's endpoints.
    fn start_termination(self: &Arc<Self>, name: &str) -> Result<(Termination, oneshot::Receiver<()>)> {
        let (mut child, cleanup, pid, addr) = {
            let mut s = self.state();
            let pod = s
                .pods
                .get_mut(name)
                .filter(|p| !p.terminating)
                .ok_or_else(|| LocalError::NoSuchPod { pod: name.to_owned() })?;
            pod.terminating = true;
            pod.in_endpoints = false;
            let child = pod
                .child
                .take()
                .ok_or_else(|| LocalError::NoSuchPod { pod: name.to_owned() })?;
            (child, pod.cleanup.take(), pod.pid, pod.addr)
        };
        let generation = self.endpoint_sync.changed();
        let (done_tx, done_rx) = oneshot::channel();
        let (removed_tx, removed_rx) = oneshot::channel();
        let inner = self.clone();
        let pod_name = name.to_owned();
        let name = name.to_owned();
        let grace = self.spec.drain.termination_grace;
        let task = tokio::spawn(async move {
            // Registered until this task ends with the pod gone (or is aborted and drops the child).
            let _cleanup = cleanup;
            let started = SystemTime::now();
            let deadline = tokio::time::Instant::now() + grace;
            let mut record = TerminationRecord {
                pod: name.clone(),
                started: Some(started),
                ..TerminationRecord::default()
            };
            // Endpoint removal and preStop start together, as in Kubernetes; the removal reaches
            // the data plane through the controller model.
            let removal = async {
                let result = inner.endpoint_sync.applied(generation, inner.endpoint_limit()).await;
                let _ = removed_tx.send(());
                result.map_err(|error| LocalError::ControlLoop {
                    what: format!("removing {name} from the endpoints"),
                    error,
                })
            };
            let stop = async {
                let drain = async {
                    let pod = pod_client(addr, grace)?;
                    Ok::<_, LocalError>(probe::http_get(&pod, "/drain").await?)
                };
                let prestop = tokio::time::timeout_at(deadline, drain).await;
                let prestop_done = matches!(prestop, Ok(Ok(_))).then(SystemTime::now);
                let mut sigterm = None;
                if tokio::time::Instant::now() < deadline {
                    if let Err(e) = process::signal(pid, nix::sys::signal::Signal::SIGTERM) {
                        tracing::warn!(pod = %name, error = %e, "SIGTERM failed");
                    }
                    sigterm = Some(SystemTime::now());
                }
                let mut sigkill = None;
                let status = match tokio::time::timeout_at(deadline, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        sigkill = Some(SystemTime::now());
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                (prestop_done, sigterm, sigkill, status)
            };
            let (removed, (prestop_done, sigterm, sigkill, status)) = tokio::join!(removal, stop);
            record.exited = Some(SystemTime::now());
            record.prestop_done = prestop_done;
            record.sigterm = sigterm;
            record.sigkill = sigkill;
            record.exit_status = status.as_ref().ok().map(|s| process::exit_text(*s));
            inner.state().pods.remove(&name);
            let result = match removed {
                Ok(at) => {
                    record.endpoint_removed = Some(at);
                    Ok(record)
                }
                Err(e) => Err(EnvError::from(e)),
            };
            tracing::debug!(pod = %name, ?result, "pod terminated");
            let _ = done_tx.send(result);
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task.abort_handle());
        Ok((Termination::new(pod_name, done_rx), removed_rx))
    }

    fn kill_everything(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        for pod in self.state().pods.values_mut() {
            if let Some(child) = pod.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        self.data_plane().kill();
    }
}

impl LocalDeployment {
    /// Adds the route `make` builds from its 1-based number, the way the controller applies a
    /// new Ingress, and returns once the new host answers (over TLS with its own certificate
    /// where it has one: the handshake checks it for the new host).
    async fn add_route(&self, make: impl FnOnce(usize) -> ExtraRoute) -> crate::env::Result<()> {
        let _ops = self.inner.ops.lock().await;
        self.inner.pacer.turn().await;
        let route = {
            let mut s = self.inner.state();
            let route = make(s.extra_routes.len() + 1);
            s.extra_routes.push(route.clone());
            route
        };
        let endpoints = self.inner.endpoints();
        let extra = self.inner.state().extra_routes.clone();
        let inner = &self.inner;
        inner
            .data_plane()
            .apply(Change::Route, &inner.spec, &endpoints, &extra, &inner.client)
            .await?;
        // The change is applied once the new route answers.
        let scheme = if inner.client.is_tls() { "https" } else { "http" };
        let url = format!("{scheme}://{}:{}/session", route.host, inner.client.addr.port());
        let mut new_route = ProbeOptions::new(inner.client.addr, &url).map_err(LocalError::from)?;
        new_route.cookies = probe::CookieJar::new();
        new_route.tls = inner.client.tls.clone();
        new_route.handshake_timeout = Duration::from_secs(2);
        if inner.spec.proxy_protocol {
            new_route = new_route.proxy_protocol(SocketAddr::from(([127, 0, 2, 1], 40_000)));
        }
        let last_apply = Mutex::new(Instant::now());
        let what = format!("the new route {} to answer", route.host);
        let answered = ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            let stale = last_apply.lock().unwrap_or_else(|e| e.into_inner()).elapsed() > Duration::from_secs(3);
            if stale {
                // A change asked for while the data plane was still busy (an nginx reload starting)
                // is asked for again; HAProxy's map update sends nothing when its maps already hold
                // the route.
                tracing::warn!(controller = %inner.controller, "the new route does not answer yet; applying again");
                if let Err(e) = inner
                    .data_plane()
                    .apply(Change::Route, &inner.spec, &endpoints, &extra, &inner.client)
                    .await
                {
                    return Check::NotYet(e.to_string());
                }
                *last_apply.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            match probe::http_request(&new_route, http::Method::POST, "/session", Vec::new()).await {
                Ok(r) if r.status == http::StatusCode::OK => Check::Ready(()),
                Ok(r) => Check::NotYet(format!("status {}", r.status)),
                Err(e) => Check::NotYet(e.to_string()),
            }
        })
        .await;
        answered.map_err(|wait| {
            EnvError::from(LocalError::Wait {
                wait,
                log_tail: inner.data_plane().log_tail(),
            })
        })
    }

    async fn start(controller: Controller, spec: &IngressSpec) -> Result<Self> {
        model::capability::check(controller, model::EnvKind::Local, spec)?;
        let ws_echo = crate::tools::ws_echo()?;
        let binary = crate::tools::data_plane(controller)?;
        let tempdir = tempfile::Builder::new()
            .prefix(&format!("testbed-{controller}-"))
            .tempdir()
            .map_err(io_err("creating the deployment's temp dir"))?;
        let dir = tempdir.path().to_owned();
        // nginx workers run as `nobody` when the harness is root; they must reach their temp paths.
        set_mode(&dir, 0o755)?;
        std::fs::create_dir_all(dir.join("pods")).map_err(io_err("creating the pods' log dir"))?;

        let (ca, tls_files) = if spec.tls {
            let ca = TestCa::generate(&[spec.host.as_str(), "127.0.0.1"])?;
            let files = ca.write_to(&dir)?;
            (Some(ca), Some(files))
        } else {
            (None, None)
        };
        let tls_client = ca.as_ref().map(|ca| ca.client_config()).transpose()?;

        let pod_port = free_port(IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
        let listen = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))?,
        );
        let endpoint = model::Endpoint {
            addr: listen,
            host: spec.host.clone(),
            tls: spec.tls,
        };
        let mut client = ProbeOptions::for_endpoint(&endpoint, "/")?.handshake_timeout(Duration::from_secs(2));
        if let Some(tls) = tls_client {
            client = client.tls(tls);
        }
        let state = State {
            pods: BTreeMap::new(),
            template_hash: template_hash(),
            next_index: 0,
            extra_routes: Vec::new(),
        };

        // Pods first, as a Deployment's pods exist before the controller routes to them.
        let mut starting = Vec::new();
        let mut names = Vec::new();
        for n in 1..=spec.pods {
            let name = format!("ws-echo-{}-{n}", state.template_hash);
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, n as u8)), pod_port);
            names.push(name.clone());
            starting.push(PodProcess::spawn(&ws_echo, &dir, name.clone(), addr, spec));
        }
        let mut pods = BTreeMap::new();
        for result in futures_util::future::join_all(starting).await {
            let mut pod = result?;
            pod.in_endpoints = true;
            pods.insert(pod.name.clone(), pod);
        }
        let endpoints: Vec<SocketAddr> = pods.values().map(|p| p.addr).collect();
        let informer_delay = model::control_loop::informer_delay().map_err(LocalError::Setting)?;
        let data_plane =
            DataPlane::start(controller, &binary, spec, &dir, listen, tls_files.as_ref(), &endpoints).await?;
        let inner = Arc::new(Inner {
            controller,
            spec: spec.clone(),
            _tempdir_cleanup: crate::cleanup::dir(dir.clone()),
            dir,
            tempdir: Mutex::new(Some(tempdir)),
            ca,
            ws_echo,
            pod_port,
            client,
            data_plane: Mutex::new(Arc::new(data_plane)),
            data_plane_binary: binary,
            tls_files,
            state: Mutex::new(State {
                pods,
                next_index: spec.pods,
                ..state
            }),
            ops: tokio::sync::Mutex::new(()),
            pacer: Pacer::started(controller.info().control_loop.pacing.value, tokio::time::Instant::now()),
            endpoint_sync: EndpointSync::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let endpoint_loop = tokio::spawn(Inner::endpoint_loop(Arc::downgrade(&inner), informer_delay));
        inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(endpoint_loop.abort_handle());
        let deployment = LocalDeployment { endpoint, inner };
        deployment.inner.wait_routed(&names.into_iter().collect()).await?;
        tracing::info!(controller = %controller, dir = %deployment.inner.dir.display(), "local deployment ready");
        Ok(deployment)
    }

    /// The data plane's main process and its workers now (nginx master and
    /// workers, HAProxy master and workers — old ones too while they drain —,
    /// Traefik's single process). A reload changes the workers; an endpoint
    /// change must not.
    pub fn data_plane_processes(&self) -> DataPlaneProcesses {
        self.inner.data_plane().processes()
    }

    /// Terminates the data plane as its pod's termination does ([`Deployment::terminate_data_plane`])
    /// and starts its replacement on the same listener once the old one is gone: the controller
    /// has one replica holding the node's hostPorts, so its replacement cannot bind them sooner
    /// (the kind cluster's topology). The replacement starts from the current endpoints and
    /// routes; no endpoint or configuration change reaches either meanwhile. Returns once the
    /// replacement answers.
    pub async fn replace_data_plane(&self) -> crate::env::Result<DataPlaneReplacement> {
        let inner = &self.inner;
        let _ops = inner.ops.lock().await;
        let old = inner.data_plane();
        let record = old.terminate(&inner.spec).await;
        let endpoints = inner.endpoints();
        let extra = inner.state().extra_routes.clone();
        let new = DataPlane::start(
            inner.controller,
            &inner.data_plane_binary,
            &inner.spec,
            &inner.dir,
            inner.client.addr,
            inner.tls_files.as_ref(),
            &endpoints,
        )
        .await?;
        if !extra.is_empty() {
            new.apply(Change::Route, &inner.spec, &endpoints, &extra, &inner.client)
                .await?;
        }
        *inner.data_plane.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        let routed: BTreeSet<String> = inner
            .state()
            .pods
            .iter()
            .filter(|(_, p)| p.in_endpoints)
            .map(|(n, _)| n.clone())
            .collect();
        inner.wait_routed(&routed).await?;
        Ok(DataPlaneReplacement {
            old: record,
            ready: SystemTime::now(),
        })
    }

    /// Each pod's ws-echo process id now, by pod name (terminating pods included until they
    /// exit), in name order like [`Deployment::pods`].
    pub fn pod_pids(&self) -> BTreeMap<String, u32> {
        (self.inner.state().pods.iter())
            .map(|(name, p)| (name.clone(), p.pid))
            .collect()
    }

    /// The deployment's temp dir: rendered configuration, logs, sockets.
    pub fn runtime_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The testbed CA when the spec asks for TLS (trust it to dial the endpoint).
    pub fn test_ca(&self) -> Option<&TestCa> {
        self.inner.ca.as_ref()
    }
}

impl Drop for LocalDeployment {
    fn drop(&mut self) {
        self.inner.kill_everything();
        let tempdir = self.inner.tempdir.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tempdir) = tempdir
            && keep_requested()
        {
            let path = tempdir.keep();
            tracing::info!(dir = %path.display(), "TESTBED_KEEP: kept the deployment's files");
        }
    }
}

#[async_trait]
impl Deployment for LocalDeployment {
    fn controller(&self) -> Controller {
        self.inner.controller
    }

    fn tls_ca(&self) -> Option<&TestCa> {
        self.test_ca()
    }

    fn spec(&self) -> &IngressSpec {
        &self.inner.spec
    }

    fn endpoint(&self) -> &model::Endpoint {
        &self.endpoint
    }

    async fn versions(&self) -> Versions {
        Versions {
            controller: format!(
                "none (local: {} configuration rendered by testbed)",
                self.inner.controller
            ),
            data_plane: self.inner.data_plane().version().await,
        }
    }

    async fn pods(&self) -> crate::env::Result<Vec<Pod>> {
        Ok(self
            .inner
            .state()
            .pods
            .iter()
            .map(|(name, p)| Pod {
                name: name.clone(),
                addr: p.addr,
                ready: p.in_endpoints && !p.terminating,
            })
            .collect())
    }

    async fn delete_pod(&self, pod: &str) -> crate::env::Result<Termination> {
        Ok(self.inner.start_termination(pod)?.0)
    }

    async fn rollout_restart(&self) -> crate::env::Result<()> {
        let old: Vec<String> = {
            let mut s = self.inner.state();
            s.template_hash = template_hash();
            s.pods
                .iter()
                .filter(|(_, p)| !p.terminating)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut terminations = Vec::new();
        for name in old {
            // maxSurge 1, maxUnavailable 0: an old pod goes as soon as its replacement is Ready,
            // whatever the ingress has seen of either.
            self.inner.add_pods(1).await?;
            let (termination, _removed) = self.inner.start_termination(&name)?;
            terminations.push(termination);
        }
        let limit = self.inner.spec.drain.termination_grace + Duration::from_secs(5);
        for termination in terminations {
            termination.wait(limit).await?;
        }
        Ok(())
    }

    async fn scale(&self, replicas: u32) -> crate::env::Result<()> {
        let current: Vec<String> = self
            .inner
            .state()
            .pods
            .iter()
            .filter(|(_, p)| !p.terminating)
            .map(|(n, _)| n.clone())
            .collect();
        let now = current.len() as u32;
        if replicas > now {
            self.inner.add_pods(replicas - now).await?;
        } else {
            // The newest pods go first, as a ReplicaSet scaling down prefers them. Like the kind
            // environment, this returns once they left the Service's endpoints, not the data plane's.
            for name in current.iter().rev().take((now - replicas) as usize) {
                self.inner.start_termination(name)?;
            }
        }
        Ok(())
    }

    async fn apply_unrelated_change(&self) -> crate::env::Result<()> {
        self.add_route(|n| ExtraRoute {
            host: format!("unrelated-{n}.testbed.local"),
            path: "/".to_owned(),
            tls: None,
        })
        .await
    }

    async fn apply_listener_change(&self) -> crate::env::Result<()> {
        let what = "adding a host with its own certificate to the listener";
        let ca = (self.inner.ca.as_ref()).ok_or_else(|| EnvError::failed(what, "the spec has no TLS listener"))?;
        let n = self.inner.state().extra_routes.len() + 1;
        let host = format!("listener-{n}.testbed.local");
        let cert = ca.issue(&[host.as_str()]).map_err(LocalError::from)?;
        let files = (cert.write_named(&self.inner.dir, &format!("listener-{n}"))).map_err(LocalError::from)?;
        let route = ExtraRoute {
            host,
            path: "/".to_owned(),
            tls: Some((&files).into()),
        };
        self.add_route(|_| route).await
    }

    async fn apply_controller_change(&self) -> crate::env::Result<()> {
        let _ops = self.inner.ops.lock().await;
        self.inner.pacer.turn().await;
        let inner = &self.inner;
        let endpoints = inner.endpoints();
        let extra = inner.state().extra_routes.clone();
        inner
            .data_plane()
            .apply(Change::Controller, &inner.spec, &endpoints, &extra, &inner.client)
            .await?;
        Ok(())
    }

    async fn terminate_data_plane(&self) -> crate::env::Result<Termination> {
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let record = inner.data_plane().terminate(&inner.spec).await;
            let _ = tx.send(Ok(record));
        });
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task.abort_handle());
        Ok(Termination::new(format!("{} data plane", self.inner.controller), rx))
    }

    async fn pod_metrics(&self, pod: &str) -> crate::env::Result<String> {
        let addr = self
            .inner
            .state()
            .pods
            .get(pod)
            .map(|p| p.addr)
            .ok_or_else(|| EnvError::NoSuchPod { pod: pod.to_owned() })?;
        let what = format!("reading /metrics of pod {pod}");
        let client = pod_client(addr, Duration::from_secs(5))?;
        let r = probe::http_get(&client, "/metrics")
            .await
            .map_err(|e| EnvError::failed(what.clone(), e))?;
        if !r.status.is_success() {
            return Err(EnvError::failed(what, format!("status {}", r.status)));
        }
        Ok(r.text())
    }

    async fn teardown(self: Box<Self>) -> crate::env::Result<()> {
        self.inner.kill_everything();
        self.inner.data_plane().wait_exit(Duration::from_secs(5)).await;
        drop(self);
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("setting the mode of {}", path.display())))
}

/// A port the OS says is free on `ip` (0.0.0.0: free on every address).
fn free_port(ip: IpAddr) -> Result<u16> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).map_err(io_err("finding a free port"))?;
    Ok(listener.local_addr().map_err(io_err("finding a free port"))?.port())
}

/// Ten lowercase alphanumerics, like a ReplicaSet's pod-template-hash.
fn template_hash() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

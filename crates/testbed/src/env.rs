//! The operations the behaviour suite needs from an environment, whatever runs it.
//!
//! Two implementations: [`crate::local`] (real proxy binaries in front of
//! ws-echo processes) and [`crate::kind`] (real controllers in a kind
//! cluster). A test picks one with `TESTBED_ENV` and never looks further.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use model::{Controller, Endpoint, EnvKind, IngressSpec, UnknownEnv, Unsupported};

pub type Result<T, E = EnvError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Unsupported(#[from] Unsupported),
    #[error("TESTBED_ENV: {0}")]
    UnknownEnv(#[from] UnknownEnv),
    #[error("no pod named {pod:?} in this deployment")]
    NoSuchPod { pod: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("{what} failed")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl EnvError {
    pub fn failed(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        EnvError::Failed {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// `TESTBED_KEEP=1` keeps processes, temp dirs and namespaces for debugging.
pub fn keep_requested() -> bool {
    matches!(std::env::var("TESTBED_KEEP").as_deref(), Ok("1" | "true" | "yes"))
}

/// A pod as the environment sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub name: String,
    /// Address the data plane sends traffic to.
    pub addr: SocketAddr,
    pub ready: bool,
}

/// Versions of what actually ran, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// e.g. "ingress-nginx controller-v1.x" (kind) or "none (local)".
    pub controller: String,
    /// e.g. "nginx/1.31.3".
    pub data_plane: String,
}

/// What happened during one pod's termination, with wall-clock instants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminationRecord {
    pub pod: String,
    pub started: Option<SystemTime>,
    /// The pod left the data plane's endpoints (as observed).
    pub endpoint_removed: Option<SystemTime>,
    /// preStop (`GET /drain`) returned.
    pub prestop_done: Option<SystemTime>,
    pub sigterm: Option<SystemTime>,
    /// SIGKILL was needed at the end of the grace period.
    pub sigkill: Option<SystemTime>,
    pub exited: Option<SystemTime>,
    /// Exit status as text ("exit 0", "signal 9").
    pub exit_status: Option<String>,
}

/// A pod termination in progress; [`Termination::wait`] returns when the pod is gone.
pub struct Termination {
    pub pod: String,
    done: tokio::sync::oneshot::Receiver<Result<TerminationRecord>>,
}

impl fmt::Debug for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Termination")
            .field("pod", &self.pod)
            .finish_non_exhaustive()
    }
}

impl Termination {
    pub fn new(pod: String, done: tokio::sync::oneshot::Receiver<Result<TerminationRecord>>) -> Self {
        Termination { pod, done }
    }

    /// Waits until the pod is gone, at most `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<TerminationRecord> {
        let what = format!("pod {} to terminate", self.pod);
        match tokio::time::timeout(timeout, self.done).await {
            Ok(Ok(record)) => record,
            Ok(Err(_)) => Err(EnvError::failed(what, "the termination task ended without a result")),
            Err(_) => Err(EnvError::Timeout { what, after: timeout }),
        }
    }
}

/// An environment: something that can put an [`IngressSpec`] in front of ws-echo pods.
#[async_trait]
pub trait Environment: Send + Sync {
    fn kind(&self) -> EnvKind;

    /// Deploys ws-echo pods behind `controller` as `spec` asks and waits until
    /// the ingress routes to all of them. Fails with [`EnvError::Unsupported`]
    /// when the controller cannot express the spec.
    async fn deploy(&self, controller: Controller, spec: &IngressSpec) -> Result<Box<dyn Deployment>>;
}

/// One deployed spec: pods, the ingress in front of them, and what can be done to them.
/// Dropping it tears everything down unless [`keep_requested`].
#[async_trait]
pub trait Deployment: Send + Sync {
    fn controller(&self) -> Controller;
    fn spec(&self) -> &IngressSpec;
    fn endpoint(&self) -> &Endpoint;
    /// The CA whose certificate the ingress serves when the spec asks for TLS.
    fn tls_ca(&self) -> Option<&probe::tls::TestCa>;
    async fn versions(&self) -> Versions;

    /// Pods that exist now (ready or not), in name order.
    async fn pods(&self) -> Result<Vec<Pod>>;

    /// Starts Kubernetes' termination sequence for `pod` and returns at once:
    /// endpoint removal and preStop (`GET /drain`) together, then SIGTERM,
    /// then SIGKILL at the end of the termination grace period.
    async fn delete_pod(&self, pod: &str) -> Result<Termination>;

    /// Rolls every pod (maxSurge 1, maxUnavailable 0); returns when done.
    async fn rollout_restart(&self) -> Result<()>;

    /// Sets the number of pods and returns once that many are Ready (and the surplus ones left
    /// the Service's endpoints); the data plane follows through its controller, in its own time.
    async fn scale(&self, replicas: u32) -> Result<()>;

    /// Adds a route unrelated to this deployment's (another Ingress, a new host, for the same
    /// Service), the kind of change that makes some controllers reload.
    /// Returns once the data plane serves the new route.
    async fn apply_unrelated_change(&self) -> Result<()>;

    /// Adds another host to the data plane's own TLS listener, with its own certificate: another
    /// Ingress with a `tls` section and its Secret (Envoy Gateway: another HTTPS listener on the
    /// Gateway, same port, with its route). The kind of change that touches the listener. Needs
    /// a spec with TLS. Returns once the new host answers with its certificate.
    async fn apply_listener_change(&self) -> Result<()>;

    /// Applies a controller-wide configuration change the controller applies by reloading its
    /// data plane, where it reloads at all (where it never does, its nearest equivalent: a
    /// change it applies in process). The change itself touches no WebSocket; each controller
    /// module says which it is. Returns once the data plane runs with it.
    async fn apply_controller_change(&self) -> Result<()>;

    /// Terminates the data plane's own pod, as a controller upgrade does (its preStop, the
    /// signal its container gets, SIGKILL at the end of its grace period), and returns at once;
    /// the record says when each step happened and when the data plane was gone.
    async fn terminate_data_plane(&self) -> Result<Termination>;

    /// A pod's `/metrics` text.
    async fn pod_metrics(&self, pod: &str) -> Result<String>;

    /// Tears everything down now and reports failures (drop does the same, silently).
    async fn teardown(self: Box<Self>) -> Result<()>;
}

/// Opens the environment `TESTBED_ENV` names.
pub async fn from_env() -> Result<Box<dyn Environment>> {
    match EnvKind::current()? {
        EnvKind::Local => Ok(Box::new(crate::local::LocalEnv::new()?)),
        EnvKind::Kind => Ok(Box::new(crate::kind::KindEnv::connect().await?)),
    }
}

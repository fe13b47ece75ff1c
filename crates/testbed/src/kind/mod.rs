//! The kind environment: real controllers in a kind cluster, driven through kube-rs.
//!
//! `cargo xtask up` (or `e2e --env kind`) creates the cluster, installs the controllers and writes
//! the kubeconfig and the cluster config it used under `target/testbed/kind/`. [`KindEnv`] reads
//! both: it talks to the API server with kube-rs and dials each controller on the 127.0.0.1 port the
//! cluster config maps to it, sending the Ingress host in the Host header (or SNI).
//!
//! Each [`KindEnv::deploy`] gets its own random namespace holding the rendered objects
//! ([`crate::render::kind`]), applied server-side from one multi-document YAML stream. The
//! namespace is deleted on teardown or drop unless `TESTBED_KEEP=1`; when a test panics, the pods,
//! events and logs are dumped to `target/testbed/kind/dumps/<namespace>/` first.

pub mod config;
pub mod ops;
pub mod pod_log;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment as K8sDeployment};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod as K8sPod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Config, ResourceExt};
use serde::de::DeserializeOwned;

use crate::controllers::{self, ControllerChange};
use crate::env::{Deployment, EnvError, Environment, Pod, Termination, TerminationRecord, Versions, keep_requested};
use crate::render::kind::{
    self as render, APP_NAME, CONTAINER_PORT, ControllerSettings, FIELD_MANAGER, KindObjects, RenderOptions,
    TlsMaterial, install,
};
use model::{Controller, Endpoint, EnvKind, IngressSpec};
use probe::ProbeOptions;
use probe::tls::TestCa;

use self::config::KindClusterConfig;

pub type Result<T, E = KindError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("no kubeconfig at {path}: run `cargo xtask up` first (or set TESTBED_KUBECONFIG)")]
    NoKubeconfig { path: PathBuf },
    #[error("loading kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("reading the kind cluster config")]
    ClusterConfig(#[from] config::ConfigError),
    #[error("kind cluster config has no usable mapping for {controller}: {problem}")]
    NoPortMapping { controller: Controller, problem: String },
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("parsing YAML document {index} for server-side apply")]
    Yaml {
        index: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("YAML document {index} has no apiVersion/kind or name")]
    Incomplete { index: usize },
    #[error("waiting for {what}: {detail}")]
    Wait { what: String, detail: String },
    #[error("generating the testbed CA")]
    Tls(#[from] probe::tls::TlsError),
    #[error("writing failure dump to {path}")]
    Dump {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<KindError> for EnvError {
    fn from(e: KindError) -> Self {
        EnvError::failed("kind environment", e)
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KindError {
    let what = what.into();
    move |source| KindError::Api { what, source }
}

/// `target/testbed/kind/` of this workspace (or `TESTBED_KIND_DIR`).
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESTBED_KIND_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testbed/kind")
}

/// Default timeout for one wait (rollouts, endpoint changes, routing).
pub const WAIT: Duration = Duration::from_secs(120);

/// Runs `fut` for at most `after`, naming what was awaited when it times out.
pub async fn within<T>(what: &str, after: Duration, fut: impl Future<Output = T>) -> crate::env::Result<T> {
    tokio::time::timeout(after, fut).await.map_err(|_| EnvError::Timeout {
        what: what.to_owned(),
        after,
    })
}

/// Polls `probe` every `every` until it yields `Some`, or times out naming `what`.
pub async fn poll_until<T, F, Fut>(what: &str, after: Duration, every: Duration, mut probe: F) -> crate::env::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, after, async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(every).await;
        }
    })
    .await
}

/// The kind environment: a client for the cluster `cargo xtask up` created.
pub struct KindEnv {
    client: Client,
    config: Config,
    cluster: KindClusterConfig,
    ca: TestCa,
    image: String,
}

impl fmt::Debug for KindEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindEnv")
            .field("cluster", &self.cluster.name)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

impl KindEnv {
    /// Connects with `target/testbed/kind/kubeconfig` (or `TESTBED_KUBECONFIG`) and reads the
    /// cluster config `xtask up` used (`cluster.yaml` next to it, or `TESTBED_KIND_CONFIG`).
    pub async fn connect() -> crate::env::Result<Self> {
        let dir = state_dir();
        let kubeconfig = std::env::var_os("TESTBED_KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("kubeconfig"));
        let cluster_config = std::env::var_os("TESTBED_KIND_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("cluster.yaml"));
        Ok(Self::connect_with(&kubeconfig, &cluster_config).await?)
    }

    pub async fn connect_with(kubeconfig: &Path, cluster_config: &Path) -> Result<Self> {
        if !kubeconfig.exists() {
            return Err(KindError::NoKubeconfig {
                path: kubeconfig.to_owned(),
            });
        }
        let kc_err = |source| KindError::Kubeconfig {
            path: kubeconfig.to_owned(),
            source,
        };
        let kc = Kubeconfig::read_from(kubeconfig).map_err(kc_err)?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(kc_err)?;
        let client = Client::try_from(config.clone()).map_err(KindError::Client)?;
        let cluster = KindClusterConfig::load(cluster_config)?;
        let ca = TestCa::generate(&["echo.testbed.local", "*.testbed.local", "localhost", "127.0.0.1"])?;
        let image = std::env::var("TESTBED_IMAGE").unwrap_or_else(|_| render::DEFAULT_IMAGE.to_owned());
        Ok(KindEnv {
            client,
            config,
            cluster,
            ca,
            image,
        })
    }

    /// The CA the probe must trust for `wss://` through the ingress.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn endpoint(&self, controller: Controller, spec: &IngressSpec) -> Result<Endpoint> {
        let addr = self
            .cluster
            .host_addr(controller, spec.tls)
            .map_err(|problem| KindError::NoPortMapping { controller, problem })?;
        Ok(Endpoint {
            addr,
            host: spec.host.clone(),
            tls: spec.tls,
        })
    }
}

#[async_trait]
impl Environment for KindEnv {
    fn kind(&self) -> EnvKind {
        EnvKind::Kind
    }

    async fn deploy(&self, controller: Controller, spec: &IngressSpec) -> crate::env::Result<Box<dyn Deployment>> {
        model::capability::check(controller, EnvKind::Kind, spec)?;
        let namespace = ops::namespace_name(controller, rand::random::<u32>());
        let spec = &ops::spec_in_namespace(spec, &namespace);
        let mut opts = RenderOptions::new(&namespace);
        opts.image = self.image.clone();
        opts.tls = Some(TlsMaterial::from(&self.ca));
        let objects = render::render(controller, spec, &opts)?;
        let endpoint = self.endpoint(controller, spec)?;
        tracing::info!(%controller, %namespace, addr = %endpoint.addr, "deploying to kind");

        // From here on the handle owns the namespace: a failure below still cleans it up.
        let deployment = KindDeployment {
            controller,
            spec: spec.clone(),
            endpoint,
            namespace,
            client: self.client.clone(),
            config: self.config.clone(),
            ca: self.ca.clone(),
            opts,
            unrelated: AtomicU32::new(0),
            listener_changes: AtomicU32::new(0),
            controller_changes: AtomicU32::new(0),
            torn_down: AtomicBool::new(false),
        };
        let ready = async {
            deployment.create_namespace().await?;
            apply_settings(&self.client, controller, &objects.settings).await?;
            deployment.apply(&objects).await?;
            deployment.wait_rolled_out().await?;
            deployment.wait_ready_endpoints(spec.pods as usize).await?;
            deployment.wait_routed().await
        };
        if let Err(e) = ready.await {
            // Dump before the handle's drop deletes the namespace.
            let dir = dump_dir(deployment.namespace());
            match deployment.dump(&dir).await {
                Ok(()) => tracing::warn!(dump = %dir.display(), error = %e, "deploy failed"),
                Err(dump_err) => tracing::warn!(error = %e, %dump_err, "deploy failed and dumping failed"),
            }
            return Err(e);
        }
        Ok(Box::new(deployment))
    }
}

/// Applies the controller-wide settings and waits until the controller runs with them.
async fn apply_settings(client: &Client, controller: Controller, settings: &ControllerSettings) -> Result<()> {
    let inst = install(controller);
    match settings {
        ControllerSettings::ConfigMap(cm) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), inst.namespace);
            let name = cm.name_any();
            let mut cm = cm.clone();
            cm.metadata.managed_fields = None;
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": inst.namespace},
                "data": cm.data,
            });
            api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await
                .map_err(api_err(format!("applying {controller} ConfigMap {name}")))?;
            // The controller watches its ConfigMap and applies it; no restart needed.
            Ok(())
        }
        ControllerSettings::None => Ok(()),
        ControllerSettings::StaticArgs {
            managed_prefixes,
            args: wanted,
        } => {
            let api: Api<K8sDeployment> = Api::namespaced(client.clone(), inst.namespace);
            let current = api
                .get(inst.workload)
                .await
                .map_err(api_err(format!("reading {} Deployment {}", controller, inst.workload)))?;
            let current_args = ops::container_args(&current, inst.container);
            let merged = render::merge_static_args(&current_args, managed_prefixes, wanted);
            if ops::static_args_applied(&current, inst.container, &merged) {
                return Ok(());
            }
            if merged != current_args {
                tracing::info!(%controller, args = ?wanted, "restarting the controller with new static arguments");
                api.patch(
                    inst.workload,
                    &PatchParams::default(),
                    &Patch::Strategic(ops::container_args_patch(inst.container, &merged)),
                )
                .await
                .map_err(api_err(format!("patching {controller}'s static arguments")))?;
            }
            // Also when the arguments were already in the spec: an earlier try may have patched
            // them and given up while the old pod still served with the old ones.
            let what = format!("{controller} to roll out with new static arguments");
            match tokio::time::timeout(WAIT, await_condition(api, inst.workload, ops::deployment_rolled_out)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(KindError::Wait {
                    what,
                    detail: e.to_string(),
                }),
                Err(_) => Err(KindError::Wait {
                    what,
                    detail: format!(
                        "timed out after {WAIT:?} (one node: the controller's strategy must let the old pod go first)"
                    ),
                }),
            }
        }
    }
}

/// Server-side applies every document of a multi-document YAML stream, discovering each kind's
/// API resource. Namespaced objects without a namespace go into `default_namespace`.
pub async fn apply_yaml(client: &Client, yaml: &str, default_namespace: &str) -> Result<Vec<String>> {
    apply_yaml_as(client, yaml, default_namespace, FIELD_MANAGER).await
}

/// The field manager of the listener changes. An object they share with the deployment's own
/// routing and its unrelated changes (Envoy Gateway's Gateway, whose `listeners` are a list map
/// keyed by name) then keeps the fields each manager applied: neither kind of change takes away
/// the listeners the other added.
pub const LISTENER_FIELD_MANAGER: &str = "ws-ingress-testbed-listener-changes";

/// [`apply_yaml`] by `field_manager`.
pub async fn apply_yaml_as(
    client: &Client,
    yaml: &str,
    default_namespace: &str,
    field_manager: &str,
) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    for (index, obj) in parse_yaml_docs(yaml)?.into_iter().enumerate() {
        let types = obj.types.as_ref().ok_or(KindError::Incomplete { index })?;
        let gvk = GroupVersionKind::try_from(types).map_err(|_| KindError::Incomplete { index })?;
        let name = obj.metadata.name.clone().ok_or(KindError::Incomplete { index })?;
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(api_err(format!("discovering {}/{}", gvk.group, gvk.kind)))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj.metadata.namespace.as_deref().unwrap_or(default_namespace);
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &PatchParams::apply(field_manager).force(), &Patch::Apply(&obj))
            .await
            .map_err(api_err(format!("applying {} {name}", gvk.kind)))?;
        applied.push(format!("{}/{name}", gvk.kind));
    }
    Ok(applied)
}

/// The non-empty documents of a multi-document YAML stream, each with apiVersion, kind and name.
pub fn parse_yaml_docs(yaml: &str) -> Result<Vec<DynamicObject>> {
    use serde::Deserialize as _;
    let mut objects = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|source| KindError::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_yaml_ng::from_value(value).map_err(|source| KindError::Yaml { index, source })?;
        if obj.types.is_none() || obj.metadata.name.is_none() {
            return Err(KindError::Incomplete { index });
        }
        objects.push(obj);
    }
    Ok(objects)
}

/// One deployed spec in its own namespace.
pub struct KindDeployment {
    controller: Controller,
    spec: IngressSpec,
    endpoint: Endpoint,
    namespace: String,
    client: Client,
    config: Config,
    ca: TestCa,
    opts: RenderOptions,
    unrelated: AtomicU32,
    listener_changes: AtomicU32,
    controller_changes: AtomicU32,
    torn_down: AtomicBool,
}

impl fmt::Debug for KindDeployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindDeployment")
            .field("controller", &self.controller)
            .field("namespace", &self.namespace)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl KindDeployment {
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn create_namespace(&self) -> Result<()> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace.clone()),
                labels: Some(
                    [
                        ("app.kubernetes.io/part-of", "ws-ingress-testbed"),
                        ("testbed.io/controller", self.controller.name()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": ns.metadata});
        Api::<Namespace>::all(self.client.clone())
            .patch(
                &self.namespace,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(api_err(format!("creating namespace {}", self.namespace)))?;
        Ok(())
    }

    async fn apply(&self, objects: &KindObjects) -> Result<()> {
        let applied = apply_yaml(&self.client, &objects.to_yaml(), &self.namespace).await?;
        tracing::debug!(namespace = %self.namespace, ?applied, "applied");
        Ok(())
    }

    async fn wait_rolled_out(&self) -> crate::env::Result<()> {
        let what = format!("Deployment {}/{APP_NAME} to roll out", self.namespace);
        within(
            &what,
            WAIT,
            await_condition(self.api::<K8sDeployment>(), APP_NAME, ops::deployment_rolled_out),
        )
        .await?
        .map_err(|e| EnvError::failed(what, e))?;
        Ok(())
    }

    async fn ready_endpoints(&self) -> Result<BTreeSet<String>> {
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={APP_NAME}"));
        let slices = self
            .api::<EndpointSlice>()
            .list(&lp)
            .await
            .map_err(api_err("listing EndpointSlices"))?;
        Ok(ops::ready_endpoint_pods(&slices.items))
    }

    async fn wait_ready_endpoints(&self, count: usize) -> crate::env::Result<BTreeSet<String>> {
        let what = format!(
            "{count} ready endpoints in EndpointSlices of {}/{APP_NAME}",
            self.namespace
        );
        poll_until(&what, WAIT, Duration::from_millis(250), || async {
            self.ready_endpoints().await.ok().filter(|eps| eps.len() == count)
        })
        .await
    }

    /// Waits until the controller routes this deployment's host to the pods (a 2xx from `/healthz`).
    async fn wait_routed(&self) -> crate::env::Result<()> {
        let what = format!(
            "{} to route {} (GET /healthz → 2xx)",
            self.controller, self.endpoint.host
        );
        let opts = readiness_probe(&self.endpoint, self.spec.proxy_protocol, Some(&self.ca))?;
        wait_healthz(&what, &opts).await
    }

    /// Waits until the controller accepted every object of `yaml` at its current generation
    /// (a Gateway API or policy status condition `Accepted`).
    async fn wait_accepted(&self, yaml: &str) -> crate::env::Result<()> {
        for obj in parse_yaml_docs(yaml).map_err(KindError::into_env)? {
            let (Some(types), Some(name)) = (obj.types.as_ref(), obj.metadata.name.clone()) else {
                continue;
            };
            let gvk = GroupVersionKind::try_from(types)
                .map_err(|_| EnvError::failed("reading an applied object's kind", format!("{types:?}")))?;
            let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(api_err(format!("discovering {}/{}", gvk.group, gvk.kind)))
                .map_err(KindError::into_env)?;
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
            let what = format!("{} to accept {} {name}", self.controller, gvk.kind);
            let deadline = Instant::now() + WAIT;
            loop {
                let current = api
                    .get(&name)
                    .await
                    .map_err(api_err(format!("reading {} {name}", gvk.kind)))
                    .map_err(KindError::into_env)?;
                let value = serde_json::to_value(&current).unwrap_or_default();
                if ops::accepted_at_generation(&value) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(EnvError::Timeout { what, after: WAIT });
                }
                tokio::time::sleep(Duration::from_millis(250)).await; // pacing of the poll
            }
        }
        Ok(())
    }

    async fn dump(&self, dir: &Path) -> Result<()> {
        dump_namespace(&self.client, &self.namespace, dir).await
    }

    /// The controller's pods now (its workload's selector).
    async fn controller_pods(&self) -> Result<Vec<String>> {
        let inst = install(self.controller);
        let what = format!("reading {} {}", inst.workload_kind, inst.workload);
        let selector = match inst.workload_kind {
            "DaemonSet" => Api::<DaemonSet>::namespaced(self.client.clone(), inst.namespace)
                .get(inst.workload)
                .await
                .map_err(api_err(what))?
                .spec
                .and_then(|s| s.selector.match_labels),
            _ => Api::<K8sDeployment>::namespaced(self.client.clone(), inst.namespace)
                .get(inst.workload)
                .await
                .map_err(api_err(what))?
                .spec
                .and_then(|s| s.selector.match_labels),
        };
        let labels: Vec<String> = selector
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let lp = ListParams::default().labels(&labels.join(","));
        let pods = Api::<K8sPod>::namespaced(self.client.clone(), inst.namespace)
            .list(&lp)
            .await
            .map_err(api_err(format!("listing {} pods", self.controller)))?;
        Ok(pods.items.iter().map(ResourceExt::name_any).collect())
    }

    /// Follows the controller's container logs from now on; the receiver yields once one of them
    /// logs a line containing `needle`. Returns once every log is being followed, so nothing
    /// logged after it returns is missed; the tasks end with the line or at [`WAIT`].
    async fn watch_controller_log(&self, needle: &'static str) -> Result<tokio::sync::mpsc::Receiver<String>> {
        let inst = install(self.controller);
        let pods: Api<K8sPod> = Api::namespaced(self.client.clone(), inst.namespace);
        let (found_tx, found_rx) = tokio::sync::mpsc::channel(1);
        for pod in self.controller_pods().await? {
            let params = LogParams {
                container: Some(inst.container.to_owned()),
                follow: true,
                since_seconds: Some(1),
                ..LogParams::default()
            };
            let stream = pods
                .log_stream(&pod, &params)
                .await
                .map_err(api_err(format!("following the log of {} pod {pod}", self.controller)))?;
            let found = found_tx.clone();
            tokio::spawn(async move {
                use futures_util::{AsyncBufReadExt, StreamExt};
                let mut lines = stream.lines();
                let read = async {
                    while let Some(Ok(line)) = lines.next().await {
                        if line.contains(needle) {
                            let _ = found.send(line).await;
                            return;
                        }
                    }
                };
                let _ = tokio::time::timeout(WAIT, read).await;
            });
        }
        Ok(found_rx)
    }
}

/// The address a readiness request claims in its PROXY header (TEST-NET-1, never a real client).
const READINESS_PROXY_CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), 40000);

/// The probe options of a readiness request to `endpoint`, made as the suite's own clients make
/// theirs: TLS with the testbed CA when the endpoint terminates TLS, and a PROXY header when the
/// spec turns PROXY protocol on — ingress-nginx and HAProxy then require one on every connection,
/// so a request without it never succeeds.
pub fn readiness_probe(
    endpoint: &Endpoint,
    proxy_protocol: bool,
    ca: Option<&TestCa>,
) -> crate::env::Result<ProbeOptions> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| EnvError::failed("building the readiness request", e);
    let mut opts = ProbeOptions::new(endpoint.addr, &endpoint.http_url("/healthz")).map_err(|e| failed(e.into()))?;
    if let Some(ca) = ca.filter(|_| endpoint.tls) {
        opts = opts.tls(ca.client_config().map_err(|e| failed(e.into()))?);
    }
    if proxy_protocol {
        opts = opts.proxy_protocol(READINESS_PROXY_CLIENT);
    }
    Ok(opts)
}

/// A TLS client configuration that trusts `ca` and accepts no server certificate but `cert`'s:
/// what tells a new host's own certificate from another the CA issued for the same name.
pub fn presenting(ca: &TestCa, cert: &TestCa) -> std::result::Result<Arc<rustls::ClientConfig>, rustls::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = |what: &str, text: &str| {
        CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| rustls::Error::General(format!("{what}: {e}")))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem("the CA certificate", &ca.ca_cert_pem)?)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let pinned = PinnedServerCert {
        expected: pem("the server certificate", &cert.server_cert_pem)?,
        verifier,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(pinned))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Verifies as `verifier` does, then requires the end-entity certificate to be `expected`.
#[derive(Debug)]
struct PinnedServerCert {
    verifier: Arc<rustls::client::WebPkiServerVerifier>,
    expected: rustls::pki_types::CertificateDer<'static>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self
            .verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if end_entity.as_ref() != self.expected.as_ref() {
            return Err(rustls::Error::General(format!(
                "{} presented another certificate than the one issued for it",
                server_name.to_str()
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// Polls `GET /healthz` with `opts` until it answers 2xx, naming `what` when it times out.
pub async fn wait_healthz(what: &str, opts: &ProbeOptions) -> crate::env::Result<()> {
    poll_until(what, WAIT, Duration::from_millis(250), || async {
        match probe::http_get(opts, "/healthz").await {
            Ok(response) if response.status.is_success() => Some(()),
            Ok(response) => {
                tracing::debug!(status = %response.status, "{what}: not yet");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "{what}: not yet");
                None
            }
        }
    })
    .await
}

/// Writes pods (YAML), events and container logs of `namespace` into `dir`.
pub async fn dump_namespace(client: &Client, namespace: &str, dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KindError::Dump { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let pods: Api<K8sPod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing pods for the dump"))?;
    let pods_file = dir.join("pods.yaml");
    std::fs::write(&pods_file, serde_yaml_ng::to_string(&list.items).unwrap_or_default()).map_err(io(&pods_file))?;
    for pod in &list.items {
        let name = pod.name_any();
        for previous in [false, true] {
            let lp = LogParams {
                previous,
                timestamps: true,
                ..LogParams::default()
            };
            if let Ok(logs) = pods.logs(&name, &lp).await {
                let file = dir.join(format!("{name}{}.log", if previous { ".previous" } else { "" }));
                std::fs::write(&file, logs).map_err(io(&file))?;
            }
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = events.list(&ListParams::default()).await {
        let text: String = list
            .items
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}/{}: {} {}\n",
                    e.last_timestamp
                        .as_ref()
                        .map(|t| format!("{:?}", t.0))
                        .unwrap_or_default(),
                    e.type_.as_deref().unwrap_or(""),
                    e.involved_object.kind.as_deref().unwrap_or(""),
                    e.involved_object.name.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or(""),
                )
            })
            .collect();
        let file = dir.join("events.txt");
        std::fs::write(&file, text).map_err(io(&file))?;
    }
    Ok(())
}

async fn delete_namespace(client: &Client, namespace: &str) -> Result<()> {
    match Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(api_err(format!("deleting namespace {namespace}"))(e)),
    }
}

fn dump_dir(namespace: &str) -> PathBuf {
    state_dir().join("dumps").join(namespace)
}

#[async_trait]
impl Deployment for KindDeployment {
    fn controller(&self) -> Controller {
        self.controller
    }

    fn tls_ca(&self) -> Option<&TestCa> {
        self.spec.tls.then_some(&self.ca)
    }

    fn spec(&self) -> &IngressSpec {
        &self.spec
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn versions(&self) -> Versions {
        let inst = install(self.controller);
        let image = match inst.workload_kind {
            "DaemonSet" => Api::<DaemonSet>::namespaced(self.client.clone(), inst.namespace)
                .get(inst.workload)
                .await
                .ok()
                .and_then(|d| d.spec?.template.spec)
                .and_then(|p| p.containers.into_iter().find(|c| c.name == inst.container)?.image),
            _ => Api::<K8sDeployment>::namespaced(self.client.clone(), inst.namespace)
                .get(inst.workload)
                .await
                .ok()
                .and_then(|d| d.spec?.template.spec)
                .and_then(|p| p.containers.into_iter().find(|c| c.name == inst.container)?.image),
        };
        let image = image.unwrap_or_else(|| "unknown".to_owned());
        Versions {
            data_plane: format!("bundled in {image}"),
            controller: image,
        }
    }

    async fn pods(&self) -> crate::env::Result<Vec<Pod>> {
        let lp = ListParams::default().labels(&render::pod_selector());
        let list = self
            .api::<K8sPod>()
            .list(&lp)
            .await
            .map_err(api_err("listing ws-echo pods"))
            .map_err(KindError::into_env)?;
        let mut pods: Vec<Pod> = list
            .items
            .iter()
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
                Some(Pod {
                    name: p.name_any(),
                    addr: SocketAddr::new(ip, CONTAINER_PORT),
                    ready: ops::pod_ready(Some(p)),
                })
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
    }

    async fn delete_pod(&self, pod: &str) -> crate::env::Result<Termination> {
        let api = self.api::<K8sPod>();
        let current = api
            .get_opt(pod)
            .await
            .map_err(api_err(format!("reading pod {pod}")))
            .map_err(KindError::into_env)?
            .ok_or_else(|| EnvError::NoSuchPod { pod: pod.to_owned() })?;
        let uid = current.uid().unwrap_or_default();
        let grace = self.spec.drain.termination_grace + WAIT;
        // Follow the log from before the delete, so the preStop's end and SIGTERM are not missed.
        let log = tokio::spawn(pod_log::follow(api.clone(), pod.to_owned(), APP_NAME, grace));
        let started = SystemTime::now();
        api.delete(pod, &DeleteParams::default())
            .await
            .map_err(api_err(format!("deleting pod {pod}")))
            .map_err(KindError::into_env)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slices = self.api::<EndpointSlice>();
        let name = pod.to_owned();
        tokio::spawn(async move {
            let mut result = observe_termination(api, slices, name, uid, started, grace).await;
            // The log ends with the container; by the time the pod is gone it has, or soon will.
            if let Ok(record) = &mut result
                && let Ok(Ok(marks)) = tokio::time::timeout(WAIT, log).await
            {
                record.prestop_done = marks.prestop_done;
                record.sigterm = marks.sigterm;
            }
            let _ = tx.send(result);
        });
        Ok(Termination::new(pod.to_owned(), rx))
    }

    async fn rollout_restart(&self) -> crate::env::Result<()> {
        let patch = ops::rollout_restart_patch(&ops::rfc3339(SystemTime::now()));
        self.api::<K8sDeployment>()
            .patch(APP_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("patching restartedAt for a rollout restart"))
            .map_err(KindError::into_env)?;
        self.wait_rolled_out().await?;
        self.wait_ready_endpoints(self.spec.pods as usize).await?;
        Ok(())
    }

    async fn scale(&self, replicas: u32) -> crate::env::Result<()> {
        self.api::<K8sDeployment>()
            .patch(
                APP_NAME,
                &PatchParams::default(),
                &Patch::Merge(&ops::scale_patch(replicas)),
            )
            .await
            .map_err(api_err(format!("scaling to {replicas}")))
            .map_err(KindError::into_env)?;
        self.wait_rolled_out().await?;
        self.wait_ready_endpoints(replicas as usize).await?;
        Ok(())
    }

    async fn apply_unrelated_change(&self) -> crate::env::Result<()> {
        let serial = self.unrelated.fetch_add(1, Ordering::Relaxed);
        let module = controllers::of(self.controller);
        let (yaml, host) = match module.unrelated_routing(&self.spec, &self.opts, serial) {
            Some(routing) => routing,
            None => {
                let ingress = render::unrelated_ingress(self.controller, &self.opts, serial);
                let host = ingress
                    .spec
                    .as_ref()
                    .and_then(|s| s.rules.as_ref())
                    .and_then(|r| r.first())
                    .and_then(|r| r.host.clone())
                    .unwrap_or_default();
                (render::to_yaml_doc(&ingress), host)
            }
        };
        apply_yaml(&self.client, &yaml, &self.namespace)
            .await
            .map_err(KindError::into_env)?;
        // The unrelated host is only served on plain HTTP; wait on that port.
        let unrelated = Endpoint {
            addr: SocketAddr::new(self.endpoint.addr.ip(), install(self.controller).http_port),
            host: host.clone(),
            tls: false,
        };
        let what = format!("{} to serve the unrelated host {host}", self.controller);
        let opts = readiness_probe(&unrelated, self.spec.proxy_protocol, None)?;
        wait_healthz(&what, &opts).await
    }

    /// Issues a certificate for the next listener host from the deployment's CA, applies its
    /// Secret and what serves the host with it — another Ingress with a `tls` section, or the
    /// controller's own objects ([`controllers::ControllerImpl::listener_routing`]) — and waits
    /// until the host answers on the TLS port presenting exactly that certificate (the
    /// deployment's own certificate covers `*.testbed.local`, so trusting the CA would not tell
    /// them apart).
    async fn apply_listener_change(&self) -> crate::env::Result<()> {
        let what = format!(
            "adding a host with its own certificate to {}'s TLS listener",
            self.controller
        );
        if !self.spec.tls {
            return Err(EnvError::failed(
                what,
                "the spec has no TLS listener (IngressSpec::with_tls)",
            ));
        }
        let serial = self.listener_changes.fetch_add(1, Ordering::Relaxed);
        let host = render::listener_host(&self.opts, serial);
        let cert = (self.ca.issue(&[host.as_str()]))
            .map_err(|e| EnvError::failed(format!("issuing a certificate for {host}"), e))?;
        let tls = TlsMaterial::from(&cert);
        let yaml = render::listener_change_yaml(self.controller, &self.spec, &self.opts, serial, &tls);
        apply_yaml_as(&self.client, &yaml, &self.namespace, LISTENER_FIELD_MANAGER)
            .await
            .map_err(KindError::into_env)?;
        // The deployment's own TLS port, the new host as SNI and Host.
        let listener = Endpoint {
            addr: self.endpoint.addr,
            host: host.clone(),
            tls: true,
        };
        let client = presenting(&self.ca, &cert).map_err(|e| EnvError::failed(what, e))?;
        let opts = readiness_probe(&listener, self.spec.proxy_protocol, None)?.tls(client);
        let what = format!("{} to serve {host} with its own certificate", self.controller);
        wait_healthz(&what, &opts).await
    }

    async fn apply_controller_change(&self) -> crate::env::Result<()> {
        let serial = self.controller_changes.fetch_add(1, Ordering::Relaxed);
        let module = controllers::of(self.controller);
        match module.controller_change(&self.spec, &self.opts, serial) {
            ControllerChange::ConfigMap { data, reloaded_log } => {
                // On top of this spec's settings and by the same field manager, so the next
                // deploy's settings take the changed keys away again.
                let ControllerSettings::ConfigMap(mut cm) = module.settings(&self.spec) else {
                    return Err(EnvError::failed(
                        format!("changing {}'s ConfigMap", self.controller),
                        "its settings are not a ConfigMap",
                    ));
                };
                cm.data.get_or_insert_default().extend(data);
                let mut reloaded = self.watch_controller_log(reloaded_log).await?;
                apply_settings(&self.client, self.controller, &ControllerSettings::ConfigMap(cm)).await?;
                let what = format!("{} to log {reloaded_log:?} after the ConfigMap change", self.controller);
                let line = within(&what, WAIT, reloaded.recv())
                    .await?
                    .ok_or_else(|| EnvError::failed(what.clone(), "no controller pod's log said so"))?;
                tracing::debug!(controller = %self.controller, line, "controller change applied");
            }
            ControllerChange::IngressAnnotations { annotations } => {
                let ingresses = self.api::<k8s_openapi::api::networking::v1::Ingress>();
                let current = ingresses
                    .get(APP_NAME)
                    .await
                    .map_err(api_err(format!("reading Ingress {}/{APP_NAME}", self.namespace)))
                    .map_err(KindError::into_env)?;
                let serial = self.unrelated.fetch_add(1, Ordering::Relaxed);
                let marker = format!("applied-{serial}-{}.testbed.local", self.namespace);
                let mut rules = current.spec.and_then(|s| s.rules).unwrap_or_default();
                let mut marker_rule = rules.first().cloned().unwrap_or_default();
                marker_rule.host = Some(marker.clone());
                rules.push(marker_rule);
                let patch = serde_json::json!({
                    "metadata": {"annotations": annotations},
                    "spec": {"rules": rules},
                });
                ingresses
                    .patch(APP_NAME, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(api_err(format!("changing Ingress {}/{APP_NAME}", self.namespace)))
                    .map_err(KindError::into_env)?;
                // The marker host answers once the update that carries the change is applied.
                let applied = Endpoint {
                    addr: SocketAddr::new(self.endpoint.addr.ip(), install(self.controller).http_port),
                    host: marker,
                    tls: false,
                };
                let what = format!(
                    "{} to apply the Ingress change (marker host {})",
                    self.controller, applied.host
                );
                wait_healthz(&what, &readiness_probe(&applied, self.spec.proxy_protocol, None)?).await?;
            }
            ControllerChange::Objects { yaml } => {
                apply_yaml(&self.client, &yaml, &self.namespace)
                    .await
                    .map_err(KindError::into_env)?;
                self.wait_accepted(&yaml).await?;
            }
        }
        self.wait_routed().await
    }

    /// Deletes one pod of the controller's workload (where its data plane runs) and follows it
    /// until it is gone; its Deployment or DaemonSet starts a new one, as an upgrade would.
    async fn terminate_data_plane(&self) -> crate::env::Result<Termination> {
        let inst = install(self.controller);
        let pods: Api<K8sPod> = Api::namespaced(self.client.clone(), inst.namespace);
        let own = controllers::of(self.controller).data_plane_pods(&self.namespace);
        let container = own.as_ref().map_or(inst.container, |(_, c)| *c);
        let what = format!("reading {}'s {} {}", self.controller, inst.workload_kind, inst.workload);
        let labels = if inst.workload_kind == "DaemonSet" {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), inst.namespace);
            let ds = api
                .get(inst.workload)
                .await
                .map_err(api_err(what))
                .map_err(KindError::into_env)?;
            ds.spec.and_then(|s| s.selector.match_labels)
        } else {
            let api: Api<K8sDeployment> = Api::namespaced(self.client.clone(), inst.namespace);
            let d = api
                .get(inst.workload)
                .await
                .map_err(api_err(what))
                .map_err(KindError::into_env)?;
            d.spec.and_then(|s| s.selector.match_labels)
        };
        let selector = match own {
            Some((selector, _)) => selector,
            None => labels
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_err(format!("listing {}'s pods ({selector})", self.controller)))
            .map_err(KindError::into_env)?;
        let victim = list
            .items
            .iter()
            .find(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| s.containers.iter().any(|c| c.name == container))
            })
            .ok_or_else(|| {
                EnvError::failed(
                    format!("finding {}'s data-plane pod", self.controller),
                    format!("no pod with {selector} runs a container named {container}"),
                )
            })?;
        let name = victim.name_any();
        let uid = victim.uid().unwrap_or_default();
        let started = SystemTime::now();
        pods.delete(&name, &DeleteParams::default())
            .await
            .map_err(api_err(format!("deleting {}'s pod {name}", self.controller)))
            .map_err(KindError::into_env)?;
        let limit = self.controller.info().shutdown.grace.value + WAIT;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pod = name.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + limit;
            let mut record = TerminationRecord {
                pod: pod.clone(),
                started: Some(started),
                ..TerminationRecord::default()
            };
            let result = loop {
                match pods.get_opt(&pod).await {
                    Ok(Some(p)) if p.uid().as_deref() == Some(uid.as_str()) => {}
                    Ok(_) => {
                        record.exited = Some(SystemTime::now());
                        break Ok(record);
                    }
                    Err(e) => break Err(EnvError::failed(format!("following pod {pod}"), e)),
                }
                if Instant::now() > deadline {
                    break Err(EnvError::Timeout {
                        what: format!("data-plane pod {pod} to go"),
                        after: limit,
                    });
                }
                tokio::time::sleep(Duration::from_millis(250)).await; // pacing of the poll
            };
            let _ = tx.send(result);
        });
        Ok(Termination::new(name, rx))
    }

    async fn pod_metrics(&self, pod: &str) -> crate::env::Result<String> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{CONTAINER_PORT}/proxy/metrics",
            self.namespace
        );
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| EnvError::failed("building the metrics proxy request", e))?;
        self.client
            .request_text(request)
            .await
            .map_err(api_err(format!(
                "reading /metrics of {pod} through the API server proxy"
            )))
            .map_err(KindError::into_env)
    }

    async fn teardown(self: Box<Self>) -> crate::env::Result<()> {
        self.torn_down.store(true, Ordering::SeqCst);
        if keep_requested() {
            tracing::info!(namespace = %self.namespace, "TESTBED_KEEP=1: keeping namespace");
            return Ok(());
        }
        delete_namespace(&self.client, &self.namespace)
            .await
            .map_err(KindError::into_env)
    }
}

impl KindError {
    fn into_env(self) -> EnvError {
        self.into()
    }
}

/// Follows one pod's termination: when it left the ready endpoints, how its container ended,
/// when it was gone.
async fn observe_termination(
    pods: Api<K8sPod>,
    slices: Api<EndpointSlice>,
    pod: String,
    uid: String,
    started: SystemTime,
    limit: Duration,
) -> crate::env::Result<TerminationRecord> {
    let mut record = TerminationRecord {
        pod: pod.clone(),
        started: Some(started),
        ..TerminationRecord::default()
    };
    let deadline = Instant::now() + limit;
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={APP_NAME}"));
    loop {
        if record.endpoint_removed.is_none()
            && let Ok(list) = slices.list(&lp).await
            && !ops::ready_endpoint_pods(&list.items).contains(&pod)
        {
            record.endpoint_removed = Some(SystemTime::now());
        }
        match pods.get_opt(&pod).await {
            Ok(Some(p)) if p.uid().as_deref() == Some(uid.as_str()) => {
                let terminated = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.name == APP_NAME))
                    .and_then(|c| c.state.as_ref()?.terminated.clone());
                if let Some(t) = terminated {
                    record.exit_status = Some(match t.signal {
                        Some(sig) => format!("signal {sig}"),
                        None if t.exit_code == 137 => "signal 9".to_owned(),
                        None => format!("exit {}", t.exit_code),
                    });
                    if t.exit_code == 137 {
                        record.sigkill = t.finished_at.as_ref().map(|_| SystemTime::now());
                    }
                }
            }
            Ok(_) => {
                record.exited = Some(SystemTime::now());
                if record.endpoint_removed.is_none() {
                    record.endpoint_removed = record.exited;
                }
                return Ok(record);
            }
            Err(e) => tracing::debug!(error = %e, "reading terminating pod"),
        }
        if Instant::now() > deadline {
            return Err(EnvError::Timeout {
                what: format!("pod {pod} to be gone"),
                after: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for KindDeployment {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let torn_down = self.torn_down.load(Ordering::SeqCst);
        if torn_down && !failed {
            return;
        }
        let keep = keep_requested();
        let namespace = self.namespace.clone();
        let config = self.config.clone();
        // A fresh runtime and client on their own thread: Drop may run inside (or outside) the
        // test's runtime, and the test's client must not be driven from a blocked thread.
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = Client::try_from(config) else { return };
                if failed {
                    let dir = dump_dir(&namespace);
                    match dump_namespace(&client, &namespace, &dir).await {
                        Ok(()) => eprintln!("kind: dumped pods, events and logs to {}", dir.display()),
                        Err(e) => eprintln!("kind: dumping {namespace} failed: {e}"),
                    }
                }
                if keep {
                    eprintln!("kind: TESTBED_KEEP=1, keeping namespace {namespace}");
                } else if !torn_down && let Err(e) = delete_namespace(&client, &namespace).await {
                    eprintln!("kind: {e}");
                }
            });
        });
        let _ = worker.join();
    }
}

/// Convenience for tests that want a handle's namespace dumped explicitly.
pub async fn dump(deployment: &KindDeployment) -> Result<PathBuf> {
    let dir = dump_dir(deployment.namespace());
    deployment.dump(&dir).await?;
    Ok(dir)
}

/// Wait conditions as plain closures, so they can be combined with kube's [`Condition`] helpers.
pub fn rolled_out() -> impl Condition<K8sDeployment> {
    ops::deployment_rolled_out
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<KindDeployment>();
    is::<Arc<KindEnv>>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_change_waits_for_the_new_hosts_own_certificate() {
        let ca = TestCa::generate(&["echo.testbed.local", "*.testbed.local"]).unwrap();
        let host = "listener-0-tb-test.testbed.local";
        let cert = ca.issue(&[host]).unwrap();
        let client = presenting(&ca, &cert).unwrap();
        probe::tls::handshake_in_memory(client.clone(), cert.server_config().unwrap(), host).unwrap();
        // The deployment's own certificate is valid for the new host too: trusting the CA would
        // take it for the new one.
        probe::tls::handshake_in_memory(ca.client_config().unwrap(), ca.server_config().unwrap(), host).unwrap();
        let err = probe::tls::handshake_in_memory(client.clone(), ca.server_config().unwrap(), host).unwrap_err();
        assert!(err.to_string().contains("another certificate"), "{err}");
        // And it still verifies the chain: a certificate for the host from another CA is refused.
        let other = TestCa::generate(&[host]).unwrap();
        let err = probe::tls::handshake_in_memory(client, other.server_config().unwrap(), host).unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[tokio::test]
    async fn a_listener_change_without_tls_fails_before_applying_anything() {
        // An API server nobody listens on: the change must fail before it talks to one.
        let config = Config::new("http://127.0.0.1:9".parse().unwrap());
        let spec = IngressSpec::new(1);
        let deployment = KindDeployment {
            controller: Controller::Nginx,
            endpoint: Endpoint {
                addr: "127.0.0.1:18080".parse().unwrap(),
                host: spec.host.clone(),
                tls: false,
            },
            spec,
            namespace: "tb-test".to_owned(),
            client: Client::try_from(config.clone()).unwrap(),
            config,
            ca: TestCa::generate(&["echo.testbed.local"]).unwrap(),
            opts: RenderOptions::new("tb-test"),
            unrelated: AtomicU32::new(0),
            listener_changes: AtomicU32::new(0),
            controller_changes: AtomicU32::new(0),
            // Nothing to delete on drop.
            torn_down: AtomicBool::new(true),
        };
        let err = deployment.apply_listener_change().await.unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
        assert_eq!(deployment.listener_changes.load(Ordering::Relaxed), 0);
    }
}

//! Kubernetes objects for the kind environment: the ws-echo Deployment, Service, NetworkPolicy,
//! TLS Secret and the Ingress, as typed k8s-openapi objects.
//!
//! [`render`] turns an `IngressSpec` into [`KindObjects`]: the ws-echo Deployment (probes,
//! preStop drain, hardened securityContext), its Service, a NetworkPolicy, the Ingress carrying the
//! controller's IngressClass, an optional TLS Secret, and the controller-level settings the spec
//! needs ([`ControllerSettings`]). What is particular to a controller — its annotations, settings,
//! Helm values and where it is installed ([`ControllerInstall`]) — comes from its module in
//! [`crate::controllers`]; this module never names one.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, Secret, SecurityContext, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec as K8sIngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::controllers;
pub use crate::render::duration_value;
use model::{Affinity, Controller, IngressSpec, Unsupported};

/// Name of the ws-echo Deployment, Service and Ingress in each test namespace.
pub const APP_NAME: &str = "ws-echo";
/// The port ws-echo listens on inside the pod (HTTP, WebSocket and `/metrics`).
pub const CONTAINER_PORT: u16 = 8080;
/// The Service port the Ingress points at.
pub const SERVICE_PORT: u16 = 80;
/// Image tag `cargo xtask up` builds and loads into the kind nodes.
pub const DEFAULT_IMAGE: &str = model::cluster::IMAGE_TAG;
/// Secret holding the testbed CA's server certificate when TLS is on.
pub const TLS_SECRET_NAME: &str = "ws-echo-tls";
/// The docker network kind creates by default (`kind`, 172.18.0.0/16): where API-server-proxied
/// `/metrics` requests come from (the API server runs on the node's network).
pub const KIND_NODE_CIDR: &str = "172.18.0.0/16";
/// Namespace and labels of a Prometheus that may scrape ws-echo's `/metrics`.
pub const MONITORING_NAMESPACE: &str = "monitoring";
pub use model::cluster::FIELD_MANAGER;
pub use model::cluster::SAMPLE_HOST;

/// Where one controller lives in the cluster and how the host reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerInstall {
    pub controller: Controller,
    /// Namespace the Helm release is installed into.
    pub namespace: &'static str,
    /// Helm release name.
    pub release: &'static str,
    /// The controller's workload (`Deployment` or `DaemonSet`) and its name.
    pub workload_kind: &'static str,
    pub workload: &'static str,
    /// Container in that workload that runs the data plane.
    pub container: &'static str,
    /// The controller's ConfigMap (ingress-nginx, HAProxy); Traefik has none.
    pub config_map: Option<&'static str>,
    /// hostPort on the ingress-ready node and the same port on 127.0.0.1 (kind extraPortMappings).
    pub http_port: u16,
    pub https_port: u16,
}

/// The install rows of every controller, in [`Controller::ALL`] order. The kind cluster configs
/// under `clusters/` map exactly these ports; a test keeps them in step.
pub fn installs() -> impl Iterator<Item = &'static ControllerInstall> {
    Controller::ALL.into_iter().map(install)
}

/// The install row for `controller`.
pub fn install(controller: Controller) -> &'static ControllerInstall {
    controllers::of(controller).install()
}

/// Our default data-plane drain limit, set in the Helm values (upstream defaults are 240 s, 30 min, 10 s).
pub const DEFAULT_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// terminationGracePeriodSeconds for the controller pods (ingress-nginx's kind manifest sets 0).
pub const CONTROLLER_GRACE_SECONDS: i64 = 30;

/// What the rendering needs besides the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub namespace: String,
    /// ws-echo image, already loaded into the kind nodes.
    pub image: String,
    /// PEM certificate chain and key for the TLS Secret (needed when `spec.tls`).
    pub tls: Option<TlsMaterial>,
    /// Source range of API-server-proxied `/metrics` requests.
    pub metrics_scrape_cidr: String,
    /// The sample app `cargo xtask up` leaves running: reachable inside the cluster only where a
    /// controller gives each deployment its own data plane (Envoy Gateway), so that the tests'
    /// data planes can take the host ports.
    pub sample: bool,
}

impl RenderOptions {
    pub fn new(namespace: impl Into<String>) -> Self {
        RenderOptions {
            namespace: namespace.into(),
            image: DEFAULT_IMAGE.to_owned(),
            tls: None,
            metrics_scrape_cidr: KIND_NODE_CIDR.to_owned(),
            sample: false,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl From<&probe::tls::TestCa> for TlsMaterial {
    /// `ca`'s server certificate with the CA's after it (the chain a TLS Secret holds) and its key.
    fn from(ca: &probe::tls::TestCa) -> Self {
        TlsMaterial {
            cert_chain_pem: format!("{}{}", ca.server_cert_pem, ca.ca_cert_pem),
            key_pem: ca.server_key_pem.clone(),
        }
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// Controller-wide settings a spec needs. They apply to every Ingress of that controller, so the
/// kind environment re-applies them on each deploy (tests of one controller run one at a time).
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerSettings {
    /// Keys for the controller's ConfigMap (ingress-nginx, HAProxy), applied server-side.
    ConfigMap(Box<ConfigMap>),
    /// Static arguments of the controller's container (Traefik): `args` replace every argument
    /// that starts with one of `managed_prefixes`; the chart's others stay. Changing them rolls
    /// the controller's pods.
    StaticArgs {
        managed_prefixes: &'static [&'static str],
        args: Vec<String>,
    },
    /// None: every knob rides on the deployment's own objects (Gateway API and its policies).
    None,
}

/// A [`ControllerSettings::ConfigMap`] for `install`'s ConfigMap.
pub fn config_map_settings(install: &ControllerInstall, data: BTreeMap<String, String>) -> ControllerSettings {
    ControllerSettings::ConfigMap(Box::new(ConfigMap {
        metadata: ObjectMeta {
            name: install.config_map.map(str::to_owned),
            namespace: Some(install.namespace.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }))
}

/// The data-plane drain limit a spec asks for in kind: its own, else the one our Helm values set.
pub fn drain_limit(spec: &IngressSpec) -> Duration {
    spec.data_plane.drain_limit.unwrap_or(DEFAULT_DRAIN_LIMIT)
}

/// Everything one deployment of a spec consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct KindObjects {
    pub controller: Controller,
    pub deployment: Deployment,
    pub service: Service,
    /// The Ingress, for a controller driven through one.
    pub ingress: Option<Ingress>,
    /// The controller's own routing objects instead (Gateway API and its policies), as YAML
    /// documents in apply order.
    pub routing_objects: Option<String>,
    pub network_policy: NetworkPolicy,
    pub tls_secret: Option<Secret>,
    pub settings: ControllerSettings,
}

impl KindObjects {
    /// The namespaced objects as one multi-document YAML stream, in apply order
    /// (the controller-level settings live in the controller's namespace and are not included).
    pub fn to_yaml(&self) -> String {
        let mut docs = Vec::new();
        if let Some(secret) = &self.tls_secret {
            docs.push(to_yaml_doc(secret));
        }
        docs.push(to_yaml_doc(&self.deployment));
        docs.push(to_yaml_doc(&self.service));
        docs.push(to_yaml_doc(&self.network_policy));
        docs.extend(self.routing_yaml());
        docs.join("---\n")
    }

    /// What routes to the ws-echo Service: the Ingress, or the controller's own objects.
    pub fn routing_yaml(&self) -> Option<String> {
        match (&self.ingress, &self.routing_objects) {
            (_, Some(objects)) => Some(objects.clone()),
            (Some(ingress), None) => Some(to_yaml_doc(ingress)),
            (None, None) => None,
        }
    }
}

/// One YAML document for a typed object.
pub fn to_yaml_doc<T: Serialize>(obj: &T) -> String {
    serde_yaml_ng::to_string(obj).expect("k8s-openapi objects serialize to YAML")
}

/// Renders `spec` for `controller`, or says which knob it cannot express.
pub fn render(controller: Controller, spec: &IngressSpec, opts: &RenderOptions) -> Result<KindObjects, Unsupported> {
    model::capability::check(controller, model::EnvKind::Kind, spec)?;
    let tls_secret = match (spec.tls, &opts.tls) {
        (true, Some(tls)) => Some(tls_secret(TLS_SECRET_NAME, opts, tls)),
        _ => None,
    };
    let routing_objects = controllers::of(controller).routing_objects(spec, opts)?;
    Ok(KindObjects {
        controller,
        deployment: deployment(controller, spec, opts),
        service: service(controller, spec, opts),
        ingress: routing_objects
            .is_none()
            .then(|| ingress(controller, spec, opts, TLS_SECRET_NAME)),
        routing_objects,
        network_policy: network_policy(controller, opts),
        tls_secret,
        settings: controller_settings(controller, spec),
    })
}

fn labels(controller: Controller) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "ws-ingress-testbed".to_owned()),
        ("testbed.io/controller".to_owned(), controller.name().to_owned()),
    ])
}

/// Label selector matching the ws-echo pods.
pub fn pod_selector() -> String {
    format!("app.kubernetes.io/name={APP_NAME}")
}

fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned())])
}

fn meta(name: &str, controller: Controller, opts: &RenderOptions) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(opts.namespace.clone()),
        labels: Some(labels(controller)),
        ..ObjectMeta::default()
    }
}

fn grace_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
}

/// The ws-echo container arguments for a spec.
pub fn ws_echo_args(spec: &IngressSpec) -> Vec<String> {
    let listen = std::net::SocketAddr::from(([0, 0, 0, 0], CONTAINER_PORT));
    crate::render::ws_echo_config(spec, listen).to_args()
}

fn http_get(path: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::String("http".to_owned()),
        ..HTTPGetAction::default()
    }
}

fn deployment(controller: Controller, spec: &IngressSpec, opts: &RenderOptions) -> Deployment {
    let env = |name: &str, field: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let container = Container {
        name: APP_NAME.to_owned(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(ws_echo_args(spec)),
        env: Some(vec![
            env("POD_NAME", "metadata.name"),
            env("POD_NAMESPACE", "metadata.namespace"),
            env("POD_IP", "status.podIP"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: i32::from(CONTAINER_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/readyz")),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            timeout_seconds: Some(1),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/healthz")),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            timeout_seconds: Some(2),
            ..Probe::default()
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(http_get("/drain")),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(i64::from(model::cluster::RUN_AS_UID)),
            run_as_group: Some(i64::from(model::cluster::RUN_AS_UID)),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("128Mi".to_owned()))])),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    };
    let mut pod_labels = labels(controller);
    pod_labels.extend(selector());
    Deployment {
        metadata: meta(APP_NAME, controller, opts),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(spec.pods).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(grace_seconds(spec.drain.termination_grace)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(i64::from(model::cluster::RUN_AS_UID)),
                        run_as_group: Some(i64::from(model::cluster::RUN_AS_UID)),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service(controller: Controller, spec: &IngressSpec, opts: &RenderOptions) -> Service {
    let annotations = controllers::of(controller).service_annotations(spec);
    let mut metadata = meta(APP_NAME, controller, opts);
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: i32::from(SERVICE_PORT),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            session_affinity: Some(if spec.service.session_affinity_client_ip {
                "ClientIP".to_owned()
            } else {
                "None".to_owned()
            }),
            publish_not_ready_addresses: spec.service.publish_not_ready_addresses.then_some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Ingress annotations `controller` needs for `spec`.
pub fn ingress_annotations(controller: Controller, spec: &IngressSpec) -> BTreeMap<String, String> {
    controllers::of(controller).ingress_annotations(spec)
}

/// The Ingress for `spec`'s host and path to the ws-echo Service, terminating TLS for the host
/// with the Secret `tls_secret` when `spec.tls`.
fn ingress(controller: Controller, spec: &IngressSpec, opts: &RenderOptions, tls_secret: &str) -> Ingress {
    let mut metadata = meta(APP_NAME, controller, opts);
    let annotations = ingress_annotations(controller, spec);
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Ingress {
        metadata,
        spec: Some(K8sIngressSpec {
            ingress_class_name: Some(controller.ingress_class().to_owned()),
            tls: spec.tls.then(|| {
                vec![IngressTLS {
                    hosts: Some(vec![spec.host.clone()]),
                    secret_name: Some(tls_secret.to_owned()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(spec.path.clone()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: APP_NAME.to_owned(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..K8sIngressSpec::default()
        }),
        ..Ingress::default()
    }
}

/// The host a test deployment in `namespace` is served on: unique per namespace, so no other
/// Ingress (the sample app, a namespace still terminating from an earlier test) shares its route.
/// One DNS label under testbed.local, so the testbed CA's `*.testbed.local` covers it.
pub fn deployment_host(namespace: &str) -> String {
    format!("{namespace}.testbed.local")
}

/// An Ingress for a host nobody dials: applying it is the "unrelated configuration change" that
/// makes ingress-nginx reload. Its host is new to the controller (unique per namespace and serial):
/// a host another Ingress already serves would change nothing and provoke nothing.
pub fn unrelated_ingress(controller: Controller, opts: &RenderOptions, serial: u32) -> Ingress {
    let host = format!("unrelated-{serial}-{}.testbed.local", opts.namespace);
    added_ingress(controller, opts, &format!("unrelated-{serial}"), &host, None)
}

/// Another Ingress of `controller`'s class, named `name`: `host` to the ws-echo Service, no
/// annotations (what the deployment's own Ingress sets is its route's, not the new host's),
/// terminating TLS for `host` with the Secret `tls_secret` when given. Where a controller picks
/// entry points by annotation, it is served on all of them, with TLS on those that terminate it
/// by default (the pinned charts' HTTPS entry point does).
fn added_ingress(
    controller: Controller,
    opts: &RenderOptions,
    name: &str,
    host: &str,
    tls_secret: Option<&str>,
) -> Ingress {
    let mut spec = IngressSpec::new(1);
    spec.host = host.to_owned();
    spec.tls = tls_secret.is_some();
    let mut ing = ingress(controller, &spec, opts, tls_secret.unwrap_or(TLS_SECRET_NAME));
    ing.metadata.name = Some(name.to_owned());
    ing.metadata.annotations = None;
    ing
}

/// The host of the `serial`-th listener change (`Deployment::apply_listener_change`): new to the
/// controller, unique per namespace and serial, one DNS label under testbed.local.
pub fn listener_host(opts: &RenderOptions, serial: u32) -> String {
    format!("listener-{serial}-{}.testbed.local", opts.namespace)
}

/// The name of the `serial`-th listener change's Ingress (Envoy Gateway: its HTTPRoute).
pub fn listener_change_name(serial: u32) -> String {
    format!("listener-{serial}")
}

/// The name of the Secret holding the `serial`-th listener change's certificate.
pub fn listener_secret_name(serial: u32) -> String {
    format!("listener-{serial}-tls")
}

/// The `serial`-th listener change for a controller driven through Ingress: another host with
/// its own certificate on the listener that terminates the deployment's TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerChange {
    /// [`listener_host`].
    pub host: String,
    /// Its certificate ([`listener_secret_name`]); applied before the Ingress that names it.
    pub secret: Secret,
    /// Another Ingress of the controller's class, as [`unrelated_ingress`], with a `tls` section
    /// for the host naming the Secret.
    pub ingress: Ingress,
}

impl ListenerChange {
    /// The Secret and the Ingress as one multi-document YAML stream, in apply order.
    pub fn to_yaml(&self) -> String {
        format!("{}---\n{}", to_yaml_doc(&self.secret), to_yaml_doc(&self.ingress))
    }
}

/// The `serial`-th listener change, its Secret holding `tls` (a certificate for
/// [`listener_host`]).
pub fn listener_change(controller: Controller, opts: &RenderOptions, serial: u32, tls: &TlsMaterial) -> ListenerChange {
    let host = listener_host(opts, serial);
    let secret_name = listener_secret_name(serial);
    ListenerChange {
        secret: listener_secret(opts, serial, tls),
        ingress: added_ingress(
            controller,
            opts,
            &listener_change_name(serial),
            &host,
            Some(&secret_name),
        ),
        host,
    }
}

/// What `Deployment::apply_listener_change` applies for the `serial`-th change of a deployment of
/// `spec` (a spec with TLS), in apply order: its Secret holding `tls`, then what serves its host
/// with it — the controller's own objects ([`controllers::ControllerImpl::listener_routing`]), or
/// another Ingress ([`listener_change`]).
pub fn listener_change_yaml(
    controller: Controller,
    spec: &IngressSpec,
    opts: &RenderOptions,
    serial: u32,
    tls: &TlsMaterial,
) -> String {
    match controllers::of(controller).listener_routing(spec, opts, serial) {
        Some(routing) => format!("{}---\n{routing}", to_yaml_doc(&listener_secret(opts, serial, tls))),
        None => listener_change(controller, opts, serial, tls).to_yaml(),
    }
}

/// The Secret of the `serial`-th listener change, holding `tls`: what every controller's listener
/// change names (an Ingress's `tls` section, a Gateway listener's `certificateRefs`).
pub fn listener_secret(opts: &RenderOptions, serial: u32, tls: &TlsMaterial) -> Secret {
    tls_secret(&listener_secret_name(serial), opts, tls)
}

fn network_policy(controller: Controller, opts: &RenderOptions) -> NetworkPolicy {
    let port = NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(CONTAINER_PORT))),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    let controllers = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_owned(),
                operator: "In".to_owned(),
                values: Some(installs().map(|i| i.namespace.to_owned()).collect()),
            }]),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let prometheus = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                MONITORING_NAMESPACE.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "prometheus".to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let api_server_proxy = NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: opts.metrics_scrape_cidr.clone(),
            ..IPBlock::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: meta(APP_NAME, controller, opts),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![controllers]),
                    ports: Some(vec![port.clone()]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![prometheus, api_server_proxy]),
                    ports: Some(vec![port]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// A `kubernetes.io/tls` Secret `name` holding `tls`.
fn tls_secret(name: &str, opts: &RenderOptions, tls: &TlsMaterial) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(opts.namespace.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), tls.cert_chain_pem.clone()),
            ("tls.key".to_owned(), tls.key_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// The controller-wide settings `spec` needs. Every key the testbed manages is present, so
/// applying them resets whatever the previous test set.
pub fn controller_settings(controller: Controller, spec: &IngressSpec) -> ControllerSettings {
    controllers::of(controller).settings(spec)
}

/// Replaces the arguments that start with one of `managed` in `current` with `wanted`, keeping the
/// chart's own.
pub fn merge_static_args(current: &[String], managed: &[&str], wanted: &[String]) -> Vec<String> {
    let mut out: Vec<String> = current
        .iter()
        .filter(|a| !managed.iter().any(|p| a.starts_with(p)))
        .cloned()
        .collect();
    out.extend(wanted.iter().cloned());
    out
}

/// What every controller's Helm values share: the ingress-ready node, our drain limit, a real
/// terminationGracePeriodSeconds, a rollout that can finish on one node.
#[derive(Debug, Clone)]
pub struct HelmCommon {
    pub node_selector: serde_json::Value,
    pub tolerations: serde_json::Value,
    /// Our default data-plane drain limit, as a duration string.
    pub drain: String,
    pub grace_seconds: i64,
    pub one_node_rollout: serde_json::Value,
}

impl HelmCommon {
    pub fn new() -> Self {
        use serde_json::json;
        HelmCommon {
            node_selector: json!({"ingress-ready": "true", "kubernetes.io/os": "linux"}),
            tolerations: json!([
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
            ]),
            drain: duration_value(DEFAULT_DRAIN_LIMIT),
            grace_seconds: CONTROLLER_GRACE_SECONDS,
            one_node_rollout: one_node_rollout(),
        }
    }
}

impl Default for HelmCommon {
    fn default() -> Self {
        Self::new()
    }
}

/// Our overrides of each controller's Helm chart: own IngressClass, hostPorts on the ingress-ready
/// node, short drain limit, a real terminationGracePeriodSeconds, no telemetry.
pub fn helm_values(controller: Controller) -> serde_json::Value {
    controllers::of(controller).helm_values(&HelmCommon::new())
}

/// The rollout strategy of a controller that holds hostPorts on a one-node cluster: the old pod
/// must go before the new one can bind the ports (ingress-nginx's own kind manifest sets
/// maxUnavailable 1). A surge pod (Traefik's chart default maxSurge 1 / maxUnavailable 0, or the
/// Kubernetes default 25 %/25 % of one replica) stays Pending forever and the rollout never ends.
fn one_node_rollout() -> serde_json::Value {
    serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
}

/// The sample app `cargo xtask up` deploys behind every controller (`manifests/sample/`).
pub fn sample_spec() -> IngressSpec {
    let mut spec = IngressSpec::new(3);
    spec.host = SAMPLE_HOST.to_owned();
    spec
}

/// The sample specs committed under `manifests/`: a plain one and one per interesting knob.
pub fn sample_specs() -> Vec<(&'static str, IngressSpec)> {
    use model::CookieAffinity;
    let plain = IngressSpec::new(3);
    let idle = IngressSpec::new(3).with_idle_timeout(Duration::from_secs(3));
    let cookie = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity::default()));
    let tls = IngressSpec::new(3).with_tls();
    vec![
        ("plain", plain),
        ("idle-3s", idle),
        ("cookie-affinity", cookie),
        ("tls", tls),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::CookieAffinity;

    fn opts() -> RenderOptions {
        RenderOptions::new("tb-test")
    }

    #[track_caller]
    fn check_annotation(controller: Controller, spec: &IngressSpec, key: &str, value: Option<&str>) {
        let objs = render(controller, spec, &opts()).expect("renders");
        let mut all = objs
            .ingress
            .as_ref()
            .unwrap()
            .metadata
            .annotations
            .clone()
            .unwrap_or_default();
        all.extend(objs.service.metadata.annotations.clone().unwrap_or_default());
        assert_eq!(all.get(key).map(String::as_str), value, "{key} in {all:?}");
    }

    #[test]
    fn nginx_idle_timeout_sets_read_and_send_timeouts_in_seconds() {
        let spec = IngressSpec::new(3).with_idle_timeout(Duration::from_millis(2500));
        check_annotation(
            Controller::Nginx,
            &spec,
            "nginx.ingress.kubernetes.io/proxy-read-timeout",
            Some("3"),
        );
        check_annotation(
            Controller::Nginx,
            &spec,
            "nginx.ingress.kubernetes.io/proxy-send-timeout",
            Some("3"),
        );
    }

    #[test]
    fn cookie_affinity_lands_where_each_controller_reads_it() {
        let cookie = CookieAffinity {
            name: "SID".to_owned(),
            max_age_secs: Some(60),
        };
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(cookie.clone()));
        check_annotation(
            Controller::Nginx,
            &spec,
            "nginx.ingress.kubernetes.io/affinity",
            Some("cookie"),
        );
        check_annotation(
            Controller::Nginx,
            &spec,
            "nginx.ingress.kubernetes.io/session-cookie-name",
            Some("SID"),
        );
        check_annotation(
            Controller::Nginx,
            &spec,
            "nginx.ingress.kubernetes.io/session-cookie-max-age",
            Some("60"),
        );
        let traefik = render(Controller::Traefik, &spec, &opts()).unwrap();
        let svc = traefik.service.metadata.annotations.unwrap();
        assert_eq!(svc["traefik.ingress.kubernetes.io/service.sticky.cookie.name"], "SID");
        assert_eq!(svc["traefik.ingress.kubernetes.io/service.sticky.cookie.maxage"], "60");

        let session = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            max_age_secs: None,
            ..cookie
        }));
        let haproxy = render(Controller::Haproxy, &session, &opts()).unwrap();
        assert_eq!(
            haproxy.service.metadata.annotations.unwrap()["haproxy.org/cookie-persistence"],
            "SID"
        );
        let ing = haproxy.ingress.unwrap().metadata.annotations.unwrap_or_default();
        assert!(
            !ing.contains_key("haproxy.org/cookie-persistence"),
            "set once, on the Service: {ing:?}"
        );
    }

    #[test]
    fn client_ip_affinity_is_hash_or_source_and_unsupported_for_traefik() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        check_annotation(
            Controller::Nginx,
            &spec,
            "nginx.ingress.kubernetes.io/upstream-hash-by",
            Some("$remote_addr"),
        );
        check_annotation(Controller::Haproxy, &spec, "haproxy.org/load-balance", Some("source"));
        let err = render(Controller::Traefik, &spec, &opts()).unwrap_err();
        assert_eq!(err.knob, "affinity.client_ip");
    }

    #[test]
    fn haproxy_cookie_max_age_is_unsupported() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SID".to_owned(),
            max_age_secs: Some(5),
        }));
        assert_eq!(
            render(Controller::Haproxy, &spec, &opts()).unwrap_err().knob,
            "affinity.cookie.max_age_secs"
        );
    }

    #[test]
    fn shared_capability_table_still_applies() {
        let mut spec = IngressSpec::new(1);
        spec.timeouts.tunnel = Some(Duration::from_secs(3));
        assert_eq!(
            render(Controller::Nginx, &spec, &opts()).unwrap_err().knob,
            "timeouts.tunnel"
        );
    }

    #[test]
    fn deployment_is_hardened_and_drains() {
        let spec = IngressSpec::new(3);
        let d = render(Controller::Nginx, &spec, &opts()).unwrap().deployment;
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(10));
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre_stop.http_get.as_ref().unwrap().path.as_deref(), Some("/drain"));
        let readiness = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        let liveness = c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        assert!(c.args.as_ref().unwrap().contains(&"--drain-delay=3s".to_owned()));
    }

    #[test]
    fn data_plane_settings_carry_drain_limit_and_proxy_protocol() {
        let spec = IngressSpec::new(1)
            .with_proxy_protocol()
            .with_data_plane_drain_limit(Duration::from_secs(5));
        let ControllerSettings::ConfigMap(cm) = controller_settings(Controller::Nginx, &spec) else {
            panic!("nginx uses a ConfigMap")
        };
        let data = cm.data.unwrap();
        assert_eq!(data["worker-shutdown-timeout"], "5s");
        assert_eq!(data["use-proxy-protocol"], "true");
        let ControllerSettings::ConfigMap(cm) = controller_settings(Controller::Haproxy, &spec) else {
            panic!("haproxy uses a ConfigMap")
        };
        assert_eq!(cm.data.unwrap()["hard-stop-after"], "5s");
        let ControllerSettings::StaticArgs { args, .. } = controller_settings(Controller::Traefik, &spec) else {
            panic!("traefik uses static args")
        };
        assert!(args.contains(&"--entryPoints.web.transport.lifeCycle.graceTimeOut=5s".to_owned()));
        assert!(args.contains(&"--entryPoints.web.proxyProtocol.trustedIPs=0.0.0.0/0".to_owned()));
    }

    /// kind gives the controller keys; local writes the lines the controller makes of them. Both
    /// read render::haproxy, so one spec means one set of HAProxy timeouts in either environment.
    #[test]
    fn haproxy_timeouts_are_the_same_in_kind_and_local() {
        use crate::controllers::haproxy::config as local;
        use crate::render::local::test_support::context;
        let mut spec = IngressSpec::new(3).with_idle_timeout(Duration::from_secs(3));
        spec.timeouts.read = Some(Duration::from_millis(2500));
        let ControllerSettings::ConfigMap(cm) = controller_settings(Controller::Haproxy, &spec) else {
            panic!("haproxy uses a ConfigMap")
        };
        let data = cm.data.unwrap();
        let annotations = ingress_annotations(Controller::Haproxy, &spec);
        let slots: Vec<_> = context().backends.pods.iter().copied().map(Some).collect();
        let cfg = local::render(&spec, &context(), &slots).unwrap();
        let (defaults, backend) = cfg.split_once("\nbackend ").unwrap();
        for directive in ["client", "server", "tunnel"] {
            let value = &data[&format!("timeout-{directive}")];
            assert!(
                defaults.contains(&format!("timeout {directive} {value}")),
                "ConfigMap timeout-{directive}: {value} is not local's defaults:\n{defaults}"
            );
        }
        let server = &annotations["haproxy.org/timeout-server"];
        assert_eq!(server, "2500ms");
        assert!(backend.contains(&format!("timeout server {server}")), "{backend}");
    }

    #[test]
    fn traefik_args_merge_replaces_only_managed_ones() {
        let current = vec![
            "--global.checknewversion=false".to_owned(),
            "--entryPoints.web.transport.lifeCycle.graceTimeOut=10s".to_owned(),
        ];
        let merged = merge_static_args(
            &current,
            &crate::controllers::traefik::MANAGED_ARG_PREFIXES,
            &["--entryPoints.web.transport.lifeCycle.graceTimeOut=5s".to_owned()],
        );
        assert_eq!(
            merged,
            vec![
                "--global.checknewversion=false".to_owned(),
                "--entryPoints.web.transport.lifeCycle.graceTimeOut=5s".to_owned()
            ]
        );
    }

    /// The offline guard; `cargo xtask charts` checks the same against the rendered charts.
    #[test]
    fn helm_values_let_the_old_controller_pod_go_first_on_one_node() {
        let strategies = [
            (
                Controller::Nginx,
                &helm_values(Controller::Nginx)["controller"]["updateStrategy"],
            ),
            (Controller::Traefik, &helm_values(Controller::Traefik)["updateStrategy"]),
            (
                Controller::Haproxy,
                &helm_values(Controller::Haproxy)["controller"]["strategy"],
            ),
        ];
        for (controller, strategy) in strategies {
            assert_eq!(strategy["type"], "RollingUpdate", "{controller}: {strategy}");
            assert_eq!(
                strategy["rollingUpdate"]["maxUnavailable"], 1,
                "{controller}: {strategy}"
            );
            assert_eq!(strategy["rollingUpdate"]["maxSurge"], 0, "{controller}: {strategy}");
        }
    }

    #[test]
    fn a_listener_change_is_its_own_tls_secret_and_an_ingress_terminating_its_host_with_it() {
        let ca = probe::tls::TestCa::generate(&["echo.testbed.local", "*.testbed.local"]).unwrap();
        let host = listener_host(&opts(), 3);
        assert_eq!(host, "listener-3-tb-test.testbed.local");
        let cert = ca.issue(&[host.as_str()]).unwrap();
        let through_ingress = Controller::ALL
            .into_iter()
            .filter(|c| c.info().api == model::RoutingApi::Ingress)
            .collect::<Vec<_>>();
        assert!(through_ingress.len() >= 3, "{through_ingress:?}");
        for controller in through_ingress {
            let change = listener_change(controller, &opts(), 3, &TlsMaterial::from(&cert));
            assert_eq!(change.host, host);
            let secret = &change.secret;
            assert_eq!(secret.metadata.name.as_deref(), Some("listener-3-tls"));
            assert_eq!(secret.metadata.namespace.as_deref(), Some("tb-test"));
            assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
            let data = secret.string_data.as_ref().unwrap();
            assert_eq!(
                data["tls.crt"],
                format!("{}{}", cert.server_cert_pem, ca.ca_cert_pem),
                "the new host's certificate, then the CA"
            );
            assert_ne!(
                data["tls.crt"],
                TlsMaterial::from(&ca).cert_chain_pem,
                "not the deployment's"
            );
            assert_eq!(data["tls.key"], cert.server_key_pem);

            let ing = &change.ingress;
            assert_eq!(ing.metadata.name.as_deref(), Some("listener-3"));
            assert_eq!(ing.metadata.annotations, None, "{controller}: as the unrelated Ingress");
            let spec = ing.spec.as_ref().unwrap();
            assert_eq!(spec.ingress_class_name.as_deref(), Some(controller.ingress_class()));
            assert_eq!(
                spec.tls,
                Some(vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some("listener-3-tls".to_owned()),
                }])
            );
            let rules = spec.rules.as_ref().unwrap();
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[0].host.as_deref(), Some(host.as_str()));
            let backend = rules[0].http.as_ref().unwrap().paths[0]
                .backend
                .service
                .as_ref()
                .unwrap();
            assert_eq!(backend.name, APP_NAME);

            let docs = crate::kind::parse_yaml_docs(&change.to_yaml()).unwrap();
            let kinds: Vec<&str> = docs.iter().map(|d| d.types.as_ref().unwrap().kind.as_str()).collect();
            assert_eq!(kinds, ["Secret", "Ingress"], "the Secret before what names it");
        }
    }

    #[test]
    fn the_deployments_own_ingress_keeps_its_secret_and_the_unrelated_one_has_no_tls() {
        let mut o = opts();
        o.tls = Some(TlsMaterial {
            cert_chain_pem: "chain".to_owned(),
            key_pem: "key".to_owned(),
        });
        let objects = render(Controller::Nginx, &IngressSpec::new(1).with_tls(), &o).unwrap();
        let tls = objects.ingress.unwrap().spec.unwrap().tls.unwrap();
        assert_eq!(tls[0].secret_name.as_deref(), Some(TLS_SECRET_NAME));
        assert_eq!(
            objects.tls_secret.unwrap().metadata.name.as_deref(),
            Some(TLS_SECRET_NAME)
        );
        let unrelated = unrelated_ingress(Controller::Nginx, &o, 0);
        assert_eq!(unrelated.spec.unwrap().tls, None);
    }

    #[test]
    fn helm_values_use_no_key_the_pinned_charts_dropped() {
        let traefik = helm_values(Controller::Traefik);
        assert!(traefik.get("globalArguments").is_none(), "removed in Traefik chart v36");
        let haproxy = helm_values(Controller::Haproxy);
        assert!(
            haproxy["controller"]["ingressClassResource"].get("enabled").is_none(),
            "HAProxy chart 1.49.0 reads no ingressClassResource.enabled"
        );
        assert_eq!(
            haproxy["controller"]["publishService"]["enabled"], false,
            "publish-service would name the Service the values disable"
        );
    }

    #[test]
    fn helm_values_keep_telemetry_off_and_ports_distinct() {
        let traefik = helm_values(Controller::Traefik);
        assert_eq!(traefik["global"]["checkNewVersion"], false);
        assert_eq!(traefik["global"]["sendAnonymousUsage"], false);
        let nginx = helm_values(Controller::Nginx);
        assert_eq!(
            nginx["controller"]["terminationGracePeriodSeconds"],
            CONTROLLER_GRACE_SECONDS
        );
        let mut ports: Vec<u16> = installs().flat_map(|i| [i.http_port, i.https_port]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), Controller::ALL.len() * 2);
    }
}

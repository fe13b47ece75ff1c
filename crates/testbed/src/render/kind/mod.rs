//! Kubernetes objects for the kind environment: Ingress with each controller's annotations, Service, Deployment.
//!
//! [`render`] turns an [`IngressSpec`] into typed k8s-openapi objects: the ws-echo Deployment (probes,
//! preStop drain, hardened securityContext), its Service, a NetworkPolicy, the Ingress carrying the
//! controller's own annotations and IngressClass, an optional TLS Secret, and the controller-level
//! settings the spec needs ([`ControllerSettings`]: an ingress-nginx or HAProxy ConfigMap, Traefik
//! static arguments). [`INSTALLS`] says where each controller lives in the cluster and which host
//! ports reach it; [`helm_values`] writes our overrides of each controller's Helm chart.
//!
//! Annotation facts (checked against upstream documentation):
//! - ingress-nginx: `nginx.ingress.kubernetes.io/proxy-read-timeout`, `proxy-send-timeout` (seconds),
//!   `affinity: cookie`, `session-cookie-name`, `session-cookie-max-age`, `upstream-hash-by`;
//!   ConfigMap keys `worker-shutdown-timeout`, `use-proxy-protocol`.
//! - Traefik (Kubernetes Ingress provider): `traefik.ingress.kubernetes.io/router.entrypoints`,
//!   `router.tls` on the Ingress; `service.sticky.cookie`, `.name`, `.maxage` on the *Service*. The
//!   provider reads no load-balancer strategy from annotations (its `ServiceIng` has only
//!   serversScheme, serversTransport, passHostHeader, sticky and nativeLB), so client-IP affinity
//!   (`hrw`) would need the CRD provider's TraefikService: the shared `model::capability::check`
//!   answers [`Unsupported`] in every environment.
//!   Entry point timeouts, `lifeCycle.graceTimeOut` and `proxyProtocol` are static arguments.
//! - HAProxy (haproxytech v3.2.6): `load-balance` on the Ingress; `cookie-persistence` on the
//!   Service (the controller reads it from Service, Ingress and ConfigMap, in that order:
//!   documentation/annotations.md, pkg/service/service.go); timeouts as ConfigMap keys
//!   `timeout-client`, `timeout-server`, `timeout-tunnel` (one mapping shared with the local
//!   renderer: [`crate::render::local::haproxy::timeouts`]); ConfigMap-only `hard-stop-after`,
//!   `proxy-protocol`.

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

use crate::render::haproxy;
use model::{Affinity, Controller, IngressSpec, Unsupported};

/// Name of the ws-echo Deployment, Service and Ingress in each test namespace.
pub const APP_NAME: &str = "ws-echo";
/// The port ws-echo listens on inside the pod (HTTP, WebSocket and `/metrics`).
pub const CONTAINER_PORT: u16 = 8080;
/// The Service port the Ingress points at.
pub const SERVICE_PORT: u16 = 80;
/// Image tag `cargo xtask up` builds and loads into the kind nodes.
pub const DEFAULT_IMAGE: &str = "ws-echo:testbed";
/// Secret holding the testbed CA's server certificate when TLS is on.
pub const TLS_SECRET_NAME: &str = "ws-echo-tls";
/// The docker network kind creates by default (`kind`, 172.18.0.0/16): where API-server-proxied
/// `/metrics` requests come from (the API server runs on the node's network).
pub const KIND_NODE_CIDR: &str = "172.18.0.0/16";
/// Namespace and labels of a Prometheus that may scrape ws-echo's `/metrics`.
pub const MONITORING_NAMESPACE: &str = "monitoring";
/// Host of the sample app `cargo xtask up` deploys. No test Ingress uses it: two Ingresses of one
/// class with the same host and path shadow each other (ingress-nginx keeps the oldest,
/// internal/ingress/controller/controller.go; Traefik's order between equal routers is
/// unspecified; HAProxy's route map gets two rows with one key).
pub const SAMPLE_HOST: &str = "sample.testbed.local";
/// Field manager for every server-side apply the testbed makes.
pub const FIELD_MANAGER: &str = "ws-ingress-testbed";

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

/// One row per controller, in [`Controller::ALL`] order. The kind cluster configs under `clusters/`
/// map exactly these ports; a test keeps them in step.
pub const INSTALLS: [ControllerInstall; 3] = [
    ControllerInstall {
        controller: Controller::Nginx,
        namespace: "ingress-nginx",
        release: "ingress-nginx",
        workload_kind: "Deployment",
        workload: "ingress-nginx-controller",
        container: "controller",
        config_map: Some("ingress-nginx-controller"),
        http_port: 18080,
        https_port: 18443,
    },
    ControllerInstall {
        controller: Controller::Traefik,
        namespace: "traefik",
        release: "traefik",
        workload_kind: "Deployment",
        workload: "traefik",
        container: "traefik",
        config_map: None,
        http_port: 28080,
        https_port: 28443,
    },
    ControllerInstall {
        controller: Controller::Haproxy,
        namespace: "haproxy-controller",
        release: "haproxy",
        workload_kind: "DaemonSet",
        workload: "haproxy-kubernetes-ingress",
        container: "kubernetes-ingress-controller",
        config_map: Some("haproxy-kubernetes-ingress"),
        http_port: 38080,
        https_port: 38443,
    },
];

/// The install row for `controller`.
pub fn install(controller: Controller) -> &'static ControllerInstall {
    INSTALLS
        .iter()
        .find(|i| i.controller == controller)
        .expect("INSTALLS has a row per controller")
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
}

impl RenderOptions {
    pub fn new(namespace: impl Into<String>) -> Self {
        RenderOptions {
            namespace: namespace.into(),
            image: DEFAULT_IMAGE.to_owned(),
            tls: None,
            metrics_scrape_cidr: KIND_NODE_CIDR.to_owned(),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub cert_chain_pem: String,
    pub key_pem: String,
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
    /// Static arguments for the Traefik container, replacing every argument with one of
    /// [`TRAEFIK_MANAGED_ARG_PREFIXES`].
    TraefikArgs(Vec<String>),
}

/// Traefik arguments the testbed owns; others (from the Helm chart) are left alone.
pub const TRAEFIK_MANAGED_ARG_PREFIXES: [&str; 4] = [
    "--entryPoints.web.transport.",
    "--entryPoints.websecure.transport.",
    "--entryPoints.web.proxyProtocol.",
    "--entryPoints.websecure.proxyProtocol.",
];

/// Everything one deployment of a spec consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct KindObjects {
    pub controller: Controller,
    pub deployment: Deployment,
    pub service: Service,
    pub ingress: Ingress,
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
        docs.push(to_yaml_doc(&self.ingress));
        docs.join("---\n")
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
        (true, Some(tls)) => Some(tls_secret(opts, tls)),
        _ => None,
    };
    Ok(KindObjects {
        controller,
        deployment: deployment(controller, spec, opts),
        service: service(controller, spec, opts),
        ingress: ingress(controller, spec, opts),
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

/// Humantime-ish duration for ws-echo flags and Traefik/HAProxy values: whole seconds as `3s`, else `1500ms`.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// ingress-nginx timeouts are whole seconds; round up so a short timeout never becomes 0.
fn nginx_seconds(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1).to_string()
}

fn grace_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
}

/// The ws-echo container arguments for a spec.
pub fn ws_echo_args(spec: &IngressSpec) -> Vec<String> {
    let mut args = vec![
        format!("--listen=0.0.0.0:{CONTAINER_PORT}"),
        format!("--drain-delay={}", go_duration(spec.drain.prestop_delay)),
        format!("--shutdown-grace={}", go_duration(spec.drain.shutdown_grace)),
    ];
    if let Some(tick) = spec.pod.tick_interval {
        args.push(format!("--tick-interval={}", go_duration(tick)));
    }
    if let Some(ping) = spec.pod.ping_interval {
        args.push(format!("--ping-interval={}", go_duration(ping)));
    }
    if spec.pod.ignore_sigterm {
        args.push("--ignore-sigterm".to_owned());
    }
    args
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
            run_as_user: Some(65532),
            run_as_group: Some(65532),
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
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
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
    let mut annotations = BTreeMap::new();
    match (controller, &spec.affinity) {
        (Controller::Traefik, Affinity::Cookie(cookie)) => {
            let key = |k: &str| format!("traefik.ingress.kubernetes.io/service.sticky.cookie{k}");
            annotations.insert(key(""), "true".to_owned());
            annotations.insert(key(".name"), cookie.name.clone());
            if let Some(max_age) = cookie.max_age_secs {
                annotations.insert(key(".maxage"), max_age.to_string());
            }
        }
        (Controller::Haproxy, Affinity::Cookie(cookie)) => {
            // Read from Service, Ingress and ConfigMap (the Service first); on the Service it pins
            // this backend whichever Ingress routes to it.
            annotations.insert("haproxy.org/cookie-persistence".to_owned(), cookie.name.clone());
        }
        _ => {}
    }
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
    let mut a = BTreeMap::new();
    let t = &spec.timeouts;
    match controller {
        Controller::Nginx => {
            let key = |k: &str| format!("nginx.ingress.kubernetes.io/{k}");
            // proxy-read/send-timeout govern upgraded connections; the idle timeout sets both.
            if let Some(read) = t.read.or(t.idle) {
                a.insert(key("proxy-read-timeout"), nginx_seconds(read));
            }
            if let Some(send) = t.send.or(t.idle) {
                a.insert(key("proxy-send-timeout"), nginx_seconds(send));
            }
            match &spec.affinity {
                Affinity::None => {}
                Affinity::Cookie(cookie) => {
                    a.insert(key("affinity"), "cookie".to_owned());
                    a.insert(key("affinity-mode"), "persistent".to_owned());
                    a.insert(key("session-cookie-name"), cookie.name.clone());
                    if let Some(max_age) = cookie.max_age_secs {
                        a.insert(key("session-cookie-max-age"), max_age.to_string());
                    }
                }
                Affinity::ClientIp => {
                    a.insert(key("upstream-hash-by"), "$remote_addr".to_owned());
                }
            }
        }
        Controller::Traefik => {
            let key = |k: &str| format!("traefik.ingress.kubernetes.io/{k}");
            let entrypoint = if spec.tls { "websecure" } else { "web" };
            a.insert(key("router.entrypoints"), entrypoint.to_owned());
            if spec.tls {
                a.insert(key("router.tls"), "true".to_owned());
            }
        }
        Controller::Haproxy => {
            let key = |k: &str| format!("haproxy.org/{k}");
            for timeout in haproxy::timeouts(spec)
                .iter()
                .filter(|k| k.scope == haproxy::Scope::Ingress)
            {
                a.insert(key(timeout.key), go_duration(timeout.value));
            }
            if let Affinity::ClientIp = spec.affinity {
                a.insert(key("load-balance"), "source".to_owned());
            }
        }
    }
    a
}

fn ingress(controller: Controller, spec: &IngressSpec, opts: &RenderOptions) -> Ingress {
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
                    secret_name: Some(TLS_SECRET_NAME.to_owned()),
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
    let mut spec = IngressSpec::new(1);
    spec.host = format!("unrelated-{serial}-{}.testbed.local", opts.namespace);
    let mut ing = ingress(controller, &spec, opts);
    ing.metadata.name = Some(format!("unrelated-{serial}"));
    ing.metadata.annotations = None;
    ing
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
                values: Some(INSTALLS.iter().map(|i| i.namespace.to_owned()).collect()),
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

fn tls_secret(opts: &RenderOptions, tls: &TlsMaterial) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(TLS_SECRET_NAME.to_owned()),
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

/// The controller-wide settings `spec` needs. Every key the testbed manages is present, so applying
/// them resets whatever the previous test set.
pub fn controller_settings(controller: Controller, spec: &IngressSpec) -> ControllerSettings {
    let drain = spec.data_plane.drain_limit.unwrap_or(DEFAULT_DRAIN_LIMIT);
    let inst = install(controller);
    let config_map = |data: BTreeMap<String, String>| {
        ControllerSettings::ConfigMap(Box::new(ConfigMap {
            metadata: ObjectMeta {
                name: inst.config_map.map(str::to_owned),
                namespace: Some(inst.namespace.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }))
    };
    match controller {
        Controller::Nginx => config_map(BTreeMap::from([
            ("worker-shutdown-timeout".to_owned(), go_duration(drain)),
            ("use-proxy-protocol".to_owned(), spec.proxy_protocol.to_string()),
        ])),
        Controller::Haproxy => {
            let mut data = BTreeMap::from([("hard-stop-after".to_owned(), go_duration(drain))]);
            for timeout in haproxy::timeouts(spec)
                .iter()
                .filter(|k| k.scope == haproxy::Scope::ConfigMap)
            {
                data.insert(timeout.key.to_owned(), go_duration(timeout.value));
            }
            if spec.proxy_protocol {
                data.insert("proxy-protocol".to_owned(), "0.0.0.0/0".to_owned());
            }
            config_map(data)
        }
        Controller::Traefik => {
            let mut args = Vec::new();
            for ep in ["web", "websecure"] {
                args.push(format!(
                    "--entryPoints.{ep}.transport.lifeCycle.graceTimeOut={}",
                    go_duration(drain)
                ));
                if let Some(idle) = spec.timeouts.idle {
                    args.push(format!(
                        "--entryPoints.{ep}.transport.respondingTimeouts.readTimeout={}",
                        go_duration(idle)
                    ));
                    args.push(format!(
                        "--entryPoints.{ep}.transport.respondingTimeouts.idleTimeout={}",
                        go_duration(idle)
                    ));
                }
                if spec.proxy_protocol {
                    args.push(format!("--entryPoints.{ep}.proxyProtocol.trustedIPs=0.0.0.0/0"));
                }
            }
            ControllerSettings::TraefikArgs(args)
        }
    }
}

/// Replaces the testbed-managed arguments in `current` with `wanted`, keeping the chart's own.
pub fn merge_traefik_args(current: &[String], wanted: &[String]) -> Vec<String> {
    let mut out: Vec<String> = current
        .iter()
        .filter(|a| !TRAEFIK_MANAGED_ARG_PREFIXES.iter().any(|p| a.starts_with(p)))
        .cloned()
        .collect();
    out.extend(wanted.iter().cloned());
    out
}

/// Our overrides of each controller's Helm chart: own IngressClass, hostPorts on the ingress-ready
/// node, short drain limit, a real terminationGracePeriodSeconds, no telemetry.
pub fn helm_values(controller: Controller) -> serde_json::Value {
    use serde_json::json;
    let inst = install(controller);
    let class = controller.ingress_class();
    let node_selector = json!({"ingress-ready": "true", "kubernetes.io/os": "linux"});
    let tolerations = json!([
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    ]);
    let drain = go_duration(DEFAULT_DRAIN_LIMIT);
    match controller {
        Controller::Nginx => json!({
            "controller": {
                "ingressClass": class,
                "ingressClassResource": {
                    "name": class,
                    "enabled": true,
                    "default": false,
                    "controllerValue": "k8s.io/ingress-nginx",
                },
                "watchIngressWithoutClass": false,
                "kind": "Deployment",
                "replicaCount": 1,
                "hostPort": {"enabled": true, "ports": {"http": inst.http_port, "https": inst.https_port}},
                "service": {"type": "ClusterIP"},
                "publishService": {"enabled": false},
                "extraArgs": {"publish-status-address": "localhost"},
                "nodeSelector": node_selector,
                "tolerations": tolerations,
                "terminationGracePeriodSeconds": CONTROLLER_GRACE_SECONDS,
                "admissionWebhooks": {"enabled": false},
                "config": {"worker-shutdown-timeout": drain, "use-proxy-protocol": "false"},
                "updateStrategy": one_node_rollout(),
            }
        }),
        Controller::Traefik => json!({
            // Chart v36 removed root `globalArguments` (39.0.8's values.schema.json rejects it);
            // these two keys render --global.checkNewVersion/--global.sendAnonymousUsage=false.
            "global": {"checkNewVersion": false, "sendAnonymousUsage": false},
            "ingressClass": {"enabled": true, "isDefaultClass": false, "name": class},
            "providers": {
                "kubernetesIngress": {"enabled": true, "publishedService": {"enabled": false}},
                "kubernetesCRD": {"enabled": false},
            },
            "ports": {
                "web": {"hostPort": inst.http_port},
                "websecure": {"hostPort": inst.https_port},
            },
            "service": {"type": "ClusterIP"},
            "nodeSelector": node_selector,
            "tolerations": tolerations,
            "deployment": {"replicas": 1, "terminationGracePeriodSeconds": CONTROLLER_GRACE_SECONDS},
            "updateStrategy": one_node_rollout(),
            "additionalArguments": [
                format!("--entryPoints.web.transport.lifeCycle.graceTimeOut={drain}"),
                format!("--entryPoints.websecure.transport.lifeCycle.graceTimeOut={drain}"),
            ],
        }),
        Controller::Haproxy => json!({
            "controller": {
                "kind": "DaemonSet",
                "ingressClass": class,
                // Chart 1.49.0 creates the IngressClass unconditionally (no `enabled` key).
                "ingressClassResource": {"name": class, "default": false},
                "daemonset": {
                    "useHostPort": true,
                    "hostPorts": {"http": inst.http_port, "https": inst.https_port, "stat": 38024},
                },
                "service": {"enabled": false},
                // Its default (true) passes --publish-service naming the Service disabled above.
                "publishService": {"enabled": false},
                "strategy": one_node_rollout(),
                "nodeSelector": node_selector,
                "tolerations": tolerations,
                "terminationGracePeriodSeconds": CONTROLLER_GRACE_SECONDS,
                "config": {"hard-stop-after": drain},
            }
        }),
    }
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
        let mut all = objs.ingress.metadata.annotations.clone().unwrap_or_default();
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
        let ing = haproxy.ingress.metadata.annotations.unwrap_or_default();
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
        let ControllerSettings::TraefikArgs(args) = controller_settings(Controller::Traefik, &spec) else {
            panic!("traefik uses static args")
        };
        assert!(args.contains(&"--entryPoints.web.transport.lifeCycle.graceTimeOut=5s".to_owned()));
        assert!(args.contains(&"--entryPoints.web.proxyProtocol.trustedIPs=0.0.0.0/0".to_owned()));
    }

    /// kind gives the controller keys; local writes the lines the controller makes of them. Both
    /// read render::haproxy, so one spec means one set of HAProxy timeouts in either environment.
    #[test]
    fn haproxy_timeouts_are_the_same_in_kind_and_local() {
        use crate::render::local::{haproxy as local, test_support::context};
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
        let merged = merge_traefik_args(
            &current,
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
        let mut ports: Vec<u16> = INSTALLS.iter().flat_map(|i| [i.http_port, i.https_port]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}

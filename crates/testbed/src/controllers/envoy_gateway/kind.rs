//! Gateway API and Envoy Gateway objects for the kind environment: what Envoy Gateway
//! (envoyproxy/gateway v1.9.0) serves a spec from instead of an Ingress.
//!
//! The objects are typed with kube's `CustomResource` derive, only the fields rendered here:
//! GatewayClass, Gateway, HTTPRoute (`gateway.networking.k8s.io/v1`, Gateway API v1.6.1 as the
//! chart ships it) and EnvoyProxy, ClientTrafficPolicy, BackendTrafficPolicy
//! (`gateway.envoyproxy.io/v1alpha1`). The crates.io `gateway-api` crate is not used: its newest
//! release (0.22.0) is built on kube 4 and k8s-openapi 0.28, and needs Rust 1.92.
//!
//! What each spec knob becomes is read from the local renderer's one translation,
//! [`config::policies`], so a knob lands on the same field in both environments:
//!
//! | spec | object | field |
//! |---|---|---|
//! | `timeouts.idle` | ClientTrafficPolicy → Gateway | `timeout.http.streamIdleTimeout` |
//! | `proxy_protocol` | ClientTrafficPolicy → Gateway | `proxyProtocol: {}` |
//! | `affinity: client-ip` | BackendTrafficPolicy → HTTPRoute | `loadBalancer: {type: ConsistentHash, consistentHash: {type: SourceIP}}` |
//! | `affinity: cookie` | HTTPRoute rule | `sessionPersistence` (`absoluteTimeout` + `cookieConfig.lifetimeType: Permanent` with a max age)¹ |
//! | `tls` | Gateway | an HTTPS listener terminating with the `ws-echo-tls` Secret |
//! | `data_plane.drain_limit` | EnvoyProxy of the Gateway | `shutdown.drainTimeout` (our 10 s default when unset, as the other controllers' Helm values) |
//! | `timeouts.read/send/tunnel` | — | refused: [`Inexpressible`] |
//!
//! ¹ Gateway API's experimental channel, which the chart installs (charts/gateway-helm/charts/crds/
//! crds/gatewayapi-crds.yaml, bundle v1.6.1); the standard channel's HTTPRoute has no
//! `sessionPersistence` (charts/gateway-crds-helm/templates/standard-gatewayapi-crds.yaml).
//!
//! Client addresses: no `clientIPDetection`, so Envoy Gateway's default applies — the peer
//! address (after the PROXY header when `proxy_protocol`) is the client's and is appended to
//! X-Forwarded-For, no hop trusted (envoyproxy/gateway v1.9.0 internal/xds/translator/
//! listener.go: `use_remote_address` unless ClientIPDetection is set). SourceIP hashing reads
//! that same address.
//!
//! ## One Envoy fleet per Gateway
//!
//! Each test namespace has its own Gateway (`eg`, the local renderer's name) and Envoy Gateway
//! gives it its own Envoy Deployment and Service in the controller's namespace, as it does by
//! default. `mergeGateways` is deliberately off: merged Gateways share one xDS listener per port,
//! and on a plain-HTTP port only the first Gateway listener's connection-manager settings are
//! rendered (envoyproxy/gateway v1.9.0 internal/xds/translator/translator.go: the HCM is added
//! once to the shared default filter chain), so a test's ClientTrafficPolicy would not reach
//! Envoy while the sample app's Gateway exists. The GatewayClass's EnvoyProxy holds what every
//! fleet shares (ClusterIP Service — a LoadBalancer Service never gets an address in kind and
//! the Gateway would stay `Programmed=False` (internal/gatewayapi/status/gateway.go) — the
//! ingress-ready node, a rollout that frees hostPorts first, our default drain). Each Gateway's
//! own EnvoyProxy (`infrastructure.parametersRef`, merged over the class's with
//! `mergeType: StrategicMerge`, internal/gatewayapi/envoyproxy_merge.go) adds the spec's drain
//! and, when [`Exposure::HostPorts`], the hostPorts that kind maps to 127.0.0.1. One fleet at a
//! time holds them: a test's Envoy pod stays Pending until the previous test's has gone (its
//! shutdown manager drains at least `minDrainDuration`, 10 s, at most `drainTimeout`:
//! internal/cmd/envoy/shutdown_manager.go).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentStrategy;
use k8s_openapi::api::core::v1::{ContainerPort, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::config::{self, Policies, gateway_listener_name, httproute_name};
use crate::render::kind::{
    APP_NAME, DEFAULT_DRAIN_LIMIT, HelmCommon, RenderOptions, SERVICE_PORT, TLS_SECRET_NAME, listener_change_name,
    listener_host, listener_secret_name, to_yaml_doc,
};
use model::IngressSpec;

pub use super::config::{GATEWAY_NAME, Inexpressible};

pub type Result<T, E = Inexpressible> = std::result::Result<T, E>;

/// The Gateway API group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";
/// Envoy Gateway's API group.
pub const ENVOY_GATEWAY_GROUP: &str = "gateway.envoyproxy.io";
/// The GatewayClass every Gateway here names (the registry's class for Envoy Gateway).
pub const GATEWAY_CLASS: &str = "envoy-gateway";
/// The controller name Envoy Gateway's chart configures (envoyproxy/gateway v1.9.0
/// charts/gateway-helm/values.tmpl.yaml, from which the release's values.yaml is generated:
/// `config.envoyGateway.gateway.controllerName`).
pub const CONTROLLER_NAME: &str = "gateway.envoyproxy.io/gatewayclass-controller";
/// The Helm release's namespace: Envoy Gateway's control plane, the class's EnvoyProxy and every
/// Envoy fleet (the default `ControllerNamespace` deploy type).
pub const CONTROLLER_NAMESPACE: &str = "envoy-gateway-system";
/// The GatewayClass's EnvoyProxy, in [`CONTROLLER_NAMESPACE`].
pub const CLASS_ENVOY_PROXY: &str = "envoy-gateway";
/// The Gateway's listener ports, what an ingress2gateway conversion of an Ingress writes.
pub const HTTP_LISTENER_PORT: u16 = 80;
pub const HTTPS_LISTENER_PORT: u16 = 443;
/// Envoy Gateway adds this to a privileged listener port to get the container port Envoy binds
/// (envoyproxy/gateway v1.9.0 internal/gatewayapi/translator.go `wellKnownPortShift`,
/// listener.go `servicePortToContainerPort`): 80 → 10080, 443 → 10443.
pub const WELL_KNOWN_PORT_SHIFT: u16 = 10000;
/// The data-plane container of an Envoy fleet (internal/infrastructure/kubernetes/proxy/
/// resource.go `envoyContainerName`).
pub const ENVOY_CONTAINER: &str = "envoy";
/// Labels Envoy Gateway puts on a Gateway's Envoy pods (internal/gatewayapi/translator.go).
pub const OWNING_GATEWAY_NAME_LABEL: &str = "gateway.envoyproxy.io/owning-gateway-name";
pub const OWNING_GATEWAY_NAMESPACE_LABEL: &str = "gateway.envoyproxy.io/owning-gateway-namespace";

// ---- Gateway API (gateway.networking.k8s.io/v1) ------------------------------------------

/// GatewayClass `spec` (cluster-scoped).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GatewayClass",
    plural = "gatewayclasses",
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    pub controller_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<ParametersReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A GatewayClass's `parametersRef` (namespaced target).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParametersReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Gateway `spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "Gateway",
    plural = "gateways",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub port: i32,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<LocalParametersReference>,
}

/// A Gateway's `infrastructure.parametersRef`: an object in the Gateway's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalParametersReference {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// HTTPRoute `spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    plural = "httproutes",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    pub parent_refs: Vec<ParentReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub rules: Vec<HTTPRouteRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HTTPRouteMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HTTPBackendRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HTTPRouteTimeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathMatch>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPPathMatch {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPBackendRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteTimeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// An HTTPRoute rule's `sessionPersistence` (Gateway API experimental channel; the standard
/// channel's HTTPRoute v1.6.1 has no such field).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<String>,
}

// ---- Envoy Gateway (gateway.envoyproxy.io/v1alpha1) ---------------------------------------

/// EnvoyProxy `spec` (api/v1alpha1/envoyproxy_types.go).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.envoyproxy.io",
    version = "v1alpha1",
    kind = "EnvoyProxy",
    plural = "envoyproxies",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyProxySpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<EnvoyProxyProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownConfig>,
    /// How this EnvoyProxy merges over the less specific one (GatewayClass < Gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_type: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyProxyProvider {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<EnvoyProxyKubernetesProvider>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyProxyKubernetesProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_deployment: Option<KubernetesDeploymentSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_service: Option<KubernetesServiceSpec>,
}

/// api/v1alpha1/shared_types.go `KubernetesDeploymentSpec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesDeploymentSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<KubernetesPodSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<KubernetesPatchSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesPodSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// A patch Envoy Gateway applies to the Deployment it renders (`StrategicMerge` by default;
/// api/v1alpha1/shared_types.go `KubernetesPatchSpec`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesPatchSpec {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub value: serde_json::Value,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesServiceSpec {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
}

/// A policy's target (Gateway API `LocalPolicyTargetReferenceWithSectionName`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// ClientTrafficPolicy `spec` (api/v1alpha1/clienttrafficpolicy_types.go).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.envoyproxy.io",
    version = "v1alpha1",
    kind = "ClientTrafficPolicy",
    plural = "clienttrafficpolicies",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ClientTrafficPolicySpec {
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ClientTimeout>,
    /// `proxyProtocol: {}`: the PROXY header (v1 or v2) is required on every connection. v1.9.0
    /// still reads the deprecated `enableProxyProtocol: true`; `proxyProtocol` takes precedence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolSettings>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HTTPClientTimeout>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPClientTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyProtocolSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// BackendTrafficPolicy `spec` (api/v1alpha1/backendtrafficpolicy_types.go).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.envoyproxy.io",
    version = "v1alpha1",
    kind = "BackendTrafficPolicy",
    plural = "backendtrafficpolicies",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTrafficPolicySpec {
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<BackendTimeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// BackendTrafficPolicy `circuitBreaker` (api/v1alpha1/circuitbreaker_types.go).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HTTPTimeout>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<String>,
}

// ---- Durations -----------------------------------------------------------------------------

/// The longest Gateway API duration: at most five digits per unit (GEP-2257; the CRDs' pattern
/// `^([0-9]{1,5}(h|m|s|ms)){1,4}$`).
const MAX_HOURS: u64 = 99_999;

/// A Gateway API duration (GEP-2257), which every duration field here takes (Envoy Gateway's
/// are `gwapiv1.Duration` too): hours, minutes, seconds and milliseconds, zero parts left out,
/// `0s` for zero. It has millisecond resolution, so a finer duration is rounded up (a timer
/// never fires earlier than asked); `None` past 99999 h.
pub fn gateway_duration(d: Duration) -> Option<String> {
    let mut ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    if ms == 0 {
        return Some("0s".to_owned());
    }
    let hours = ms / 3_600_000;
    if hours > u128::from(MAX_HOURS) {
        return None;
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        let n = ms / size;
        ms %= size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    Some(out)
}

fn duration_field(knob: &'static str, d: Duration) -> Result<String> {
    gateway_duration(d).ok_or(Inexpressible {
        knob,
        reason: "Gateway API durations have at most five digits per unit, 99999h at most \
                 (GEP-2257; envoyproxy/gateway v1.9.0 charts/gateway-helm/charts/crds/crds/gatewayapi-crds.yaml)",
    })
}

fn opt_duration(knob: &'static str, d: Option<Duration>) -> Result<Option<String>> {
    d.map(|d| duration_field(knob, d)).transpose()
}

// ---- Rendering -----------------------------------------------------------------------------

/// How the host reaches a Gateway's Envoy fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// The Envoy pod binds these hostPorts on the ingress-ready node, which kind's
    /// extraPortMappings expose on 127.0.0.1 (the controller's install row). One fleet at a time
    /// can hold them: a test's fleet starts once the previous test's has terminated.
    HostPorts { http: u16, https: u16 },
    /// Only inside the cluster, through the fleet's ClusterIP Service (the sample app, which
    /// must not hold the hostPorts the tests' fleets need).
    InCluster,
}

/// Everything one deployment of a spec adds in its namespace besides the ws-echo Deployment,
/// Service, NetworkPolicy and TLS Secret (`KindObjects`), which replace the Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayObjects {
    /// The Gateway's own EnvoyProxy: the spec's drain and the hostPorts.
    pub envoy_proxy: EnvoyProxy,
    pub gateway: Gateway,
    pub http_route: HTTPRoute,
    /// Only when the spec sets a listener knob.
    pub client_traffic_policy: Option<ClientTrafficPolicy>,
    /// Only when the spec sets a route knob.
    pub backend_traffic_policy: Option<BackendTrafficPolicy>,
}

impl GatewayObjects {
    /// The objects as one multi-document YAML stream, in apply order (what a policy or route
    /// refers to first).
    pub fn to_yaml(&self) -> String {
        let mut docs = vec![
            to_yaml_doc(&self.envoy_proxy),
            to_yaml_doc(&self.gateway),
            to_yaml_doc(&self.http_route),
        ];
        if let Some(p) = &self.client_traffic_policy {
            docs.push(to_yaml_doc(p));
        }
        if let Some(p) = &self.backend_traffic_policy {
            docs.push(to_yaml_doc(p));
        }
        docs.join("---\n")
    }
}

/// Renders `spec` for Envoy Gateway in `opts.namespace`, or says which knob it cannot express.
pub fn render(spec: &IngressSpec, opts: &RenderOptions, exposure: Exposure) -> Result<GatewayObjects> {
    render_policies(&config::policies(spec)?, spec, opts, exposure)
}

/// Renders already translated policies: what [`render`] does after [`config::policies`], and
/// what a change to one of them (`ControllerChange::ClientTrafficPolicy`) re-renders.
pub fn render_policies(
    p: &Policies,
    spec: &IngressSpec,
    opts: &RenderOptions,
    exposure: Exposure,
) -> Result<GatewayObjects> {
    Ok(GatewayObjects {
        envoy_proxy: gateway_envoy_proxy(p, opts, exposure)?,
        gateway: gateway(spec, opts),
        http_route: http_route(p, spec, opts)?,
        client_traffic_policy: client_traffic_policy(p, opts)?,
        backend_traffic_policy: backend_traffic_policy(p, spec, opts)?,
    })
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "ws-ingress-testbed".to_owned()),
        ("testbed.io/controller".to_owned(), GATEWAY_CLASS.to_owned()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

fn target(kind: &str, name: &str) -> PolicyTargetReference {
    PolicyTargetReference {
        group: GATEWAY_API_GROUP.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        section_name: None,
    }
}

/// The GatewayClass (cluster-scoped, applied once with the chart), its parameters the class's
/// EnvoyProxy.
pub fn gateway_class() -> GatewayClass {
    GatewayClass {
        metadata: meta(GATEWAY_CLASS, None),
        spec: GatewayClassSpec {
            controller_name: CONTROLLER_NAME.to_owned(),
            parameters_ref: Some(ParametersReference {
                group: ENVOY_GATEWAY_GROUP.to_owned(),
                kind: "EnvoyProxy".to_owned(),
                name: CLASS_ENVOY_PROXY.to_owned(),
                // Envoy Gateway reads a GatewayClass's EnvoyProxy from this namespace, "default"
                // when unset (internal/provider/kubernetes/controller.go
                // processGatewayClassParamsRef).
                namespace: Some(CONTROLLER_NAMESPACE.to_owned()),
            }),
            description: Some("ws-ingress-testbed: Envoy Gateway, one Envoy fleet per Gateway".to_owned()),
        },
    }
}

/// What every Envoy fleet of the class shares, from the same settings as the other controllers'
/// Helm values: the ingress-ready node, a rollout that lets the old pod free its hostPorts first,
/// a ClusterIP Service, our default drain limit.
pub fn class_envoy_proxy(common: &HelmCommon) -> EnvoyProxy {
    // HelmCommon holds these as Helm values; they are our own constants, so they parse.
    let node_selector: BTreeMap<String, String> =
        serde_json::from_value(common.node_selector.clone()).expect("HelmCommon.node_selector is a string map");
    let tolerations: Vec<Toleration> =
        serde_json::from_value(common.tolerations.clone()).expect("HelmCommon.tolerations are tolerations");
    let strategy: DeploymentStrategy =
        serde_json::from_value(common.one_node_rollout.clone()).expect("HelmCommon.one_node_rollout is a strategy");
    EnvoyProxy {
        metadata: meta(CLASS_ENVOY_PROXY, Some(CONTROLLER_NAMESPACE)),
        spec: EnvoyProxySpec {
            provider: Some(EnvoyProxyProvider {
                type_: "Kubernetes".to_owned(),
                kubernetes: Some(EnvoyProxyKubernetesProvider {
                    envoy_deployment: Some(KubernetesDeploymentSpec {
                        replicas: Some(1),
                        strategy: Some(strategy),
                        pod: Some(KubernetesPodSpec {
                            node_selector,
                            tolerations,
                        }),
                        patch: None,
                    }),
                    // The default is LoadBalancer (api/v1alpha1/shared_types.go), which kind
                    // never gives an address.
                    envoy_service: Some(KubernetesServiceSpec {
                        type_: Some("ClusterIP".to_owned()),
                    }),
                }),
            }),
            shutdown: Some(ShutdownConfig {
                drain_timeout: gateway_duration(DEFAULT_DRAIN_LIMIT),
            }),
            merge_type: None,
        },
    }
}

/// The Gateway's EnvoyProxy, merged over the class's: the drain limit (EnvoyProxy
/// `shutdown.drainTimeout`, which sets Envoy's `--drain-time-s`, the shutdown manager's drain
/// timeout and terminationGracePeriodSeconds = drain + 300 s: internal/infrastructure/common/
/// proxy_args.go, internal/infrastructure/kubernetes/proxy/resource_provider.go
/// expectedTerminationGracePeriodSeconds) and the hostPorts.
fn gateway_envoy_proxy(p: &Policies, opts: &RenderOptions, exposure: Exposure) -> Result<EnvoyProxy> {
    let drain = p.drain_timeout.unwrap_or(DEFAULT_DRAIN_LIMIT);
    let provider = match exposure {
        Exposure::InCluster => None,
        Exposure::HostPorts { http, https } => Some(EnvoyProxyProvider {
            type_: "Kubernetes".to_owned(),
            kubernetes: Some(EnvoyProxyKubernetesProvider {
                envoy_deployment: Some(KubernetesDeploymentSpec {
                    patch: Some(host_ports_patch(http, https)),
                    ..KubernetesDeploymentSpec::default()
                }),
                envoy_service: None,
            }),
        }),
    };
    Ok(EnvoyProxy {
        metadata: meta(GATEWAY_NAME, Some(&opts.namespace)),
        spec: EnvoyProxySpec {
            provider,
            shutdown: Some(ShutdownConfig {
                drain_timeout: Some(duration_field("data_plane.drain_limit", drain)?),
            }),
            merge_type: Some("StrategicMerge".to_owned()),
        },
    })
}

/// The container port Envoy binds for a listener port (Envoy Gateway's port shift).
pub fn container_port(listener_port: u16) -> u16 {
    if listener_port < 1024 {
        listener_port + WELL_KNOWN_PORT_SHIFT
    } else {
        listener_port
    }
}

/// A strategic-merge patch of the Envoy Deployment Envoy Gateway renders: the envoy container
/// (merged by name) gains ports (merged by containerPort) binding the listeners' container ports
/// to hostPorts. Envoy Gateway declares only its metrics and readiness ports
/// (internal/infrastructure/kubernetes/proxy/resource.go expectedProxyContainers), so these are
/// new entries.
fn host_ports_patch(http: u16, https: u16) -> KubernetesPatchSpec {
    let port = |name: &str, listener: u16, host: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(container_port(listener)),
        host_port: Some(i32::from(host)),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let ports = [
        port("http-host", HTTP_LISTENER_PORT, http),
        port("https-host", HTTPS_LISTENER_PORT, https),
    ];
    KubernetesPatchSpec {
        type_: Some("StrategicMerge".to_owned()),
        value: serde_json::json!({
            "spec": {"template": {"spec": {"containers": [
                {"name": ENVOY_CONTAINER, "ports": ports}
            ]}}}
        }),
    }
}

/// The HTTP listener for `host` on port 80.
pub fn http_listener(host: &str) -> Listener {
    Listener {
        name: gateway_listener_name(host, false),
        hostname: Some(host.to_owned()),
        port: i32::from(HTTP_LISTENER_PORT),
        protocol: "HTTP".to_owned(),
        tls: None,
    }
}

/// The HTTPS listener for `host` on port 443, terminating TLS with the deployment's Secret.
pub fn https_listener(host: &str) -> Listener {
    https_listener_with(host, TLS_SECRET_NAME)
}

/// The HTTPS listener for `host` on port 443, terminating TLS with the Secret `secret`.
pub fn https_listener_with(host: &str, secret: &str) -> Listener {
    Listener {
        name: gateway_listener_name(host, true),
        hostname: Some(host.to_owned()),
        port: i32::from(HTTPS_LISTENER_PORT),
        protocol: "HTTPS".to_owned(),
        tls: Some(ListenerTls {
            mode: Some("Terminate".to_owned()),
            certificate_refs: vec![SecretObjectReference {
                group: Some(String::new()),
                kind: Some("Secret".to_owned()),
                name: secret.to_owned(),
                namespace: None,
            }],
        }),
    }
}

/// The listeners for `host`: HTTP, and HTTPS when `tls` (as ingress2gateway converts a TLS
/// Ingress host: both).
fn host_listeners(host: &str, tls: bool) -> Vec<Listener> {
    let mut listeners = vec![http_listener(host)];
    if tls {
        listeners.push(https_listener(host));
    }
    listeners
}

/// The deployment's Gateway: its host's listeners, its own EnvoyProxy as parameters.
pub fn gateway(spec: &IngressSpec, opts: &RenderOptions) -> Gateway {
    Gateway {
        metadata: meta(GATEWAY_NAME, Some(&opts.namespace)),
        spec: GatewaySpec {
            gateway_class_name: GATEWAY_CLASS.to_owned(),
            listeners: host_listeners(&spec.host, spec.tls),
            infrastructure: Some(GatewayInfrastructure {
                parameters_ref: Some(LocalParametersReference {
                    group: ENVOY_GATEWAY_GROUP.to_owned(),
                    kind: "EnvoyProxy".to_owned(),
                    name: GATEWAY_NAME.to_owned(),
                }),
            }),
        },
    }
}

fn service_backend() -> HTTPBackendRef {
    HTTPBackendRef {
        group: Some(String::new()),
        kind: Some("Service".to_owned()),
        name: APP_NAME.to_owned(),
        port: Some(i32::from(SERVICE_PORT)),
    }
}

fn path_prefix(path: &str) -> HTTPRouteMatch {
    HTTPRouteMatch {
        path: Some(HTTPPathMatch {
            type_: "PathPrefix".to_owned(),
            value: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
        }),
    }
}

fn parent(section_name: Option<String>) -> ParentReference {
    ParentReference {
        group: Some(GATEWAY_API_GROUP.to_owned()),
        kind: Some("Gateway".to_owned()),
        name: GATEWAY_NAME.to_owned(),
        section_name,
    }
}

/// The HTTPRoute for the spec's host and path to the ws-echo Service, with the rule's
/// `timeouts` and `sessionPersistence`.
fn http_route(p: &Policies, spec: &IngressSpec, opts: &RenderOptions) -> Result<HTTPRoute> {
    let session_persistence = match &p.rule.session_cookie {
        None => None,
        Some(cookie) => {
            let absolute_timeout = opt_duration("affinity.cookie.max_age_secs", cookie.ttl)?;
            // Envoy Gateway sets a cookie TTL only with lifetimeType Permanent (which the CRD
            // then requires absoluteTimeout for); otherwise a session cookie
            // (internal/gatewayapi/route.go processHTTPRouteRule).
            let cookie_config = absolute_timeout.as_ref().map(|_| CookieConfig {
                lifetime_type: Some("Permanent".to_owned()),
            });
            Some(SessionPersistence {
                session_name: Some(cookie.name.clone()),
                type_: Some("Cookie".to_owned()),
                absolute_timeout,
                cookie_config,
            })
        }
    };
    let timeouts = opt_duration("timeouts.request", p.rule.request_timeout)?
        .map(|request| HTTPRouteTimeouts { request: Some(request) });
    Ok(HTTPRoute {
        metadata: meta(&httproute_name(&spec.host), Some(&opts.namespace)),
        spec: HTTPRouteSpec {
            parent_refs: vec![parent(None)],
            hostnames: vec![spec.host.clone()],
            rules: vec![HTTPRouteRule {
                matches: vec![path_prefix(&spec.path)],
                backend_refs: vec![service_backend()],
                timeouts,
                session_persistence,
            }],
        },
    })
}

/// The ClientTrafficPolicy on the Gateway (every listener), when a listener knob is set.
fn client_traffic_policy(p: &Policies, opts: &RenderOptions) -> Result<Option<ClientTrafficPolicy>> {
    let c = &p.client;
    let idle_timeout = opt_duration("timeouts.idle", c.idle_timeout)?;
    let stream_idle_timeout = opt_duration("timeouts.idle", c.stream_idle_timeout)?;
    if idle_timeout.is_none() && stream_idle_timeout.is_none() && !c.proxy_protocol {
        return Ok(None);
    }
    let timeout = (idle_timeout.is_some() || stream_idle_timeout.is_some()).then_some(ClientTimeout {
        http: Some(HTTPClientTimeout {
            idle_timeout,
            stream_idle_timeout,
        }),
    });
    Ok(Some(ClientTrafficPolicy {
        metadata: meta(GATEWAY_NAME, Some(&opts.namespace)),
        spec: ClientTrafficPolicySpec {
            target_refs: vec![target("Gateway", GATEWAY_NAME)],
            timeout,
            proxy_protocol: c.proxy_protocol.then(ProxyProtocolSettings::default),
        },
    }))
}

/// The BackendTrafficPolicy on the spec's HTTPRoute, when a route knob is set.
fn backend_traffic_policy(
    p: &Policies,
    spec: &IngressSpec,
    opts: &RenderOptions,
) -> Result<Option<BackendTrafficPolicy>> {
    let b = &p.backend;
    let stream_idle_timeout = opt_duration("timeouts.idle", b.stream_idle_timeout)?;
    if !b.source_ip_hash && stream_idle_timeout.is_none() && b.circuit_breaker.is_none() {
        return Ok(None);
    }
    let route = httproute_name(&spec.host);
    Ok(Some(BackendTrafficPolicy {
        metadata: meta(&route, Some(&opts.namespace)),
        spec: BackendTrafficPolicySpec {
            target_refs: vec![target("HTTPRoute", &route)],
            load_balancer: b.source_ip_hash.then(|| LoadBalancer {
                type_: "ConsistentHash".to_owned(),
                consistent_hash: Some(ConsistentHash {
                    type_: "SourceIP".to_owned(),
                }),
            }),
            timeout: stream_idle_timeout.map(|d| BackendTimeout {
                http: Some(HTTPTimeout {
                    stream_idle_timeout: Some(d),
                }),
            }),
            circuit_breaker: b.circuit_breaker.map(|most| CircuitBreaker {
                max_connections: Some(i64::from(most)),
                max_pending_requests: Some(i64::from(most)),
                max_parallel_requests: Some(i64::from(most)),
            }),
        },
    }))
}

/// The label selector of a deployment's Envoy pods (in [`CONTROLLER_NAMESPACE`]): what the
/// kind environment deletes or watches to terminate the data plane.
pub fn data_plane_selector(namespace: &str) -> String {
    format!("{OWNING_GATEWAY_NAMESPACE_LABEL}={namespace},{OWNING_GATEWAY_NAME_LABEL}={GATEWAY_NAME}")
}

// ---- Changes -------------------------------------------------------------------------------

/// The host of the `serial`-th unrelated route: new to the controller, nobody dials it (as
/// `unrelated_ingress`).
pub fn unrelated_host(opts: &RenderOptions, serial: u32) -> String {
    format!("unrelated-{serial}-{}.testbed.local", opts.namespace)
}

/// The host of the `serial`-th listener change (the Ingress controllers' too).
pub fn listener_change_host(opts: &RenderOptions, serial: u32) -> String {
    listener_host(opts, serial)
}

/// A route for another host to the same Service, and the listener it attaches to (by
/// `sectionName`). A route only attaches to a listener whose hostname matches (Gateway API:
/// HTTPRoute `hostnames`), and the deployment's listeners are its own host's, so the route comes
/// with its host's listener as ingress2gateway converts a new Ingress host (the local renderer
/// does the same).
///
/// An unrelated route ([`unrelated_route`]) attaches through an HTTP listener. On the HTTP port
/// every Gateway listener shares the xDS listener's default filter chain and route
/// configuration (envoyproxy/gateway v1.9.0 internal/xds/translator/translator.go), so for
/// Envoy it is a route change: a new virtual host, the listener as it was. A listener change
/// ([`listener_change`]) attaches through an HTTPS listener with its own certificate, which is a
/// new filter chain of the xDS listener.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteChange {
    /// Added to the Gateway's listeners ([`with_listeners`]).
    pub listener: Listener,
    pub route: HTTPRoute,
}

impl RouteChange {
    /// An HTTPRoute `name` for the listener's host, to the ws-echo Service, attached to `listener`.
    fn through(listener: Listener, name: &str, opts: &RenderOptions) -> Self {
        let route = HTTPRoute {
            metadata: meta(name, Some(&opts.namespace)),
            spec: HTTPRouteSpec {
                parent_refs: vec![parent(Some(listener.name.clone()))],
                hostnames: listener.hostname.iter().cloned().collect(),
                rules: vec![HTTPRouteRule {
                    matches: vec![path_prefix("/")],
                    backend_refs: vec![service_backend()],
                    ..HTTPRouteRule::default()
                }],
            },
        };
        RouteChange { listener, route }
    }
}

/// The `serial`-th unrelated route.
pub fn unrelated_route(opts: &RenderOptions, serial: u32) -> RouteChange {
    let listener = http_listener(&unrelated_host(opts, serial));
    RouteChange::through(listener, &format!("unrelated-{serial}"), opts)
}

/// The `serial`-th listener change, what `Deployment::apply_listener_change` adds for a spec with
/// TLS (`None` without): another HTTPS listener on the deployment's port for
/// [`listener_change_host`], terminating with its own certificate (the Secret
/// [`listener_secret_name`], which the kind environment applies first), and an HTTPRoute for
/// that host attached to it: the HTTPS half of what ingress2gateway makes of another Ingress
/// with a `tls` section (its HTTP listener is left out; the change is the TLS listener's).
///
/// On HTTPS every Gateway listener hostname becomes its own filter chain, matching that SNI, of
/// the one xDS listener on the port (envoyproxy/gateway v1.9.0
/// internal/xds/translator/listener.go), so for Envoy this changes the listener: a filter chain
/// added to it. Envoy updates a listener's filter chains in place: connections on the chains
/// that did not change stay, only those on a removed or changed chain are drained. Whether a
/// WebSocket on the deployment's own host lives through it is what the behaviour measures.
pub fn listener_change(spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> Option<RouteChange> {
    if !spec.tls {
        return None;
    }
    let listener = https_listener_with(&listener_change_host(opts, serial), &listener_secret_name(serial));
    Some(RouteChange::through(listener, &listener_change_name(serial), opts))
}

/// `gateway` with `listeners` added, each replacing a listener of the same name.
pub fn with_listeners(gateway: &Gateway, listeners: impl IntoIterator<Item = Listener>) -> Gateway {
    let mut out = gateway.clone();
    for listener in listeners {
        out.spec.listeners.retain(|l| l.name != listener.name);
        out.spec.listeners.push(listener);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Affinity, CookieAffinity};
    use serde_json::{Value, json};

    const HOST_PORTS: Exposure = Exposure::HostPorts {
        http: 48080,
        https: 48443,
    };

    fn opts() -> RenderOptions {
        RenderOptions::new("tb-test")
    }

    fn spec() -> IngressSpec {
        let mut spec = IngressSpec::new(3);
        spec.host = crate::render::kind::deployment_host("tb-test");
        spec
    }

    fn objects(spec: &IngressSpec) -> GatewayObjects {
        render(spec, &opts(), HOST_PORTS).expect("renders")
    }

    fn json<T: Serialize>(obj: &T) -> Value {
        serde_json::to_value(obj).expect("serializes")
    }

    /// Each JSON pointer holds the value (`None`: is absent).
    #[track_caller]
    fn check<T: Serialize>(obj: &T, expected: &[(&str, Option<Value>)]) {
        let v = json(obj);
        for (pointer, want) in expected {
            assert_eq!(
                v.pointer(pointer),
                want.as_ref(),
                "{pointer} in:\n{}",
                serde_yaml_ng::to_string(&v).unwrap_or_default()
            );
        }
    }

    fn cookie(max_age_secs: Option<u64>) -> IngressSpec {
        spec().with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs,
        }))
    }

    #[test]
    fn a_plain_spec_is_a_gateway_and_a_route_to_the_service_without_policies() {
        let o = objects(&spec());
        assert!(o.client_traffic_policy.is_none() && o.backend_traffic_policy.is_none());
        check(
            &o.gateway,
            &[
                ("/apiVersion", Some(json!("gateway.networking.k8s.io/v1"))),
                ("/kind", Some(json!("Gateway"))),
                ("/metadata/name", Some(json!("eg"))),
                ("/metadata/namespace", Some(json!("tb-test"))),
                ("/spec/gatewayClassName", Some(json!("envoy-gateway"))),
                (
                    "/spec/listeners",
                    Some(json!([{
                        "name": "tb-test-testbed-local-http",
                        "hostname": "tb-test.testbed.local",
                        "port": 80,
                        "protocol": "HTTP",
                    }])),
                ),
                (
                    "/spec/infrastructure/parametersRef",
                    Some(json!({"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": "eg"})),
                ),
            ],
        );
        check(
            &o.http_route,
            &[
                ("/apiVersion", Some(json!("gateway.networking.k8s.io/v1"))),
                ("/kind", Some(json!("HTTPRoute"))),
                ("/metadata/name", Some(json!("ws-echo-tb-test-testbed-local"))),
                ("/spec/hostnames", Some(json!(["tb-test.testbed.local"]))),
                (
                    "/spec/parentRefs",
                    Some(json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg"}])),
                ),
                (
                    "/spec/rules/0/matches",
                    Some(json!([{"path": {"type": "PathPrefix", "value": "/"}}])),
                ),
                (
                    "/spec/rules/0/backendRefs",
                    Some(json!([{"group": "", "kind": "Service", "name": "ws-echo", "port": 80}])),
                ),
                ("/spec/rules/0/sessionPersistence", None),
                ("/spec/rules/0/timeouts", None),
            ],
        );
    }

    #[test]
    fn idle_timeout_is_the_client_traffic_policys_stream_idle_timeout_on_the_gateway() {
        let o = objects(&spec().with_idle_timeout(Duration::from_millis(2500)));
        let ctp = o.client_traffic_policy.as_ref().expect("a ClientTrafficPolicy");
        check(
            ctp,
            &[
                ("/apiVersion", Some(json!("gateway.envoyproxy.io/v1alpha1"))),
                ("/kind", Some(json!("ClientTrafficPolicy"))),
                (
                    "/spec/targetRefs",
                    Some(json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg"}])),
                ),
                ("/spec/timeout/http/streamIdleTimeout", Some(json!("2s500ms"))),
                ("/spec/timeout/http/idleTimeout", None),
                ("/spec/proxyProtocol", None),
            ],
        );
        assert!(
            o.backend_traffic_policy.is_none(),
            "the listener's timer, not the route's"
        );
    }

    #[test]
    fn proxy_protocol_is_an_empty_proxy_protocol_on_the_client_traffic_policy() {
        let o = objects(&spec().with_proxy_protocol());
        check(
            o.client_traffic_policy.as_ref().expect("a ClientTrafficPolicy"),
            &[
                ("/spec/proxyProtocol", Some(json!({}))),
                ("/spec/enableProxyProtocol", None),
                ("/spec/timeout", None),
            ],
        );
    }

    #[test]
    fn client_ip_affinity_is_a_source_ip_consistent_hash_on_the_route() {
        let o = objects(&spec().with_affinity(Affinity::ClientIp));
        check(
            o.backend_traffic_policy.as_ref().expect("a BackendTrafficPolicy"),
            &[
                ("/kind", Some(json!("BackendTrafficPolicy"))),
                (
                    "/spec/targetRefs",
                    Some(json!([{
                        "group": "gateway.networking.k8s.io",
                        "kind": "HTTPRoute",
                        "name": "ws-echo-tb-test-testbed-local",
                    }])),
                ),
                (
                    "/spec/loadBalancer",
                    Some(json!({"type": "ConsistentHash", "consistentHash": {"type": "SourceIP"}})),
                ),
                ("/spec/timeout", None),
            ],
        );
        assert!(o.client_traffic_policy.is_none());
    }

    #[test]
    fn a_raised_backend_connection_limit_is_the_routes_circuit_breaker() {
        let o = objects(&spec().with_backend_connections(100_000));
        check(
            o.backend_traffic_policy.as_ref().expect("a BackendTrafficPolicy"),
            &[
                (
                    "/spec/circuitBreaker",
                    Some(json!({
                        "maxConnections": 100_000,
                        "maxPendingRequests": 100_000,
                        "maxParallelRequests": 100_000,
                    })),
                ),
                ("/spec/loadBalancer", None),
                ("/spec/timeout", None),
            ],
        );
    }

    #[test]
    fn cookie_affinity_is_session_persistence_permanent_only_with_a_max_age() {
        check(
            &objects(&cookie(Some(600))).http_route,
            &[(
                "/spec/rules/0/sessionPersistence",
                Some(json!({
                    "sessionName": "SESSION",
                    "type": "Cookie",
                    "absoluteTimeout": "10m",
                    "cookieConfig": {"lifetimeType": "Permanent"},
                })),
            )],
        );
        check(
            &objects(&cookie(None)).http_route,
            &[(
                "/spec/rules/0/sessionPersistence",
                Some(json!({"sessionName": "SESSION", "type": "Cookie"})),
            )],
        );
    }

    #[test]
    fn tls_adds_an_https_listener_terminating_with_the_secret_beside_the_http_one() {
        let o = objects(&spec().with_tls());
        check(
            &o.gateway,
            &[
                ("/spec/listeners/0/name", Some(json!("tb-test-testbed-local-http"))),
                ("/spec/listeners/0/tls", None),
                ("/spec/listeners/1/name", Some(json!("tb-test-testbed-local-https"))),
                ("/spec/listeners/1/port", Some(json!(443))),
                ("/spec/listeners/1/protocol", Some(json!("HTTPS"))),
                ("/spec/listeners/1/hostname", Some(json!("tb-test.testbed.local"))),
                (
                    "/spec/listeners/1/tls",
                    Some(json!({
                        "mode": "Terminate",
                        "certificateRefs": [{"group": "", "kind": "Secret", "name": "ws-echo-tls"}],
                    })),
                ),
            ],
        );
        // The route names no listener, so it attaches to both.
        check(&o.http_route, &[("/spec/parentRefs/0/sectionName", None)]);
    }

    #[test]
    fn drain_limit_is_the_gateways_envoy_proxy_drain_timeout_with_our_default() {
        let drained = objects(&spec().with_data_plane_drain_limit(Duration::from_secs(5)));
        check(
            &drained.envoy_proxy,
            &[
                ("/kind", Some(json!("EnvoyProxy"))),
                ("/metadata/namespace", Some(json!("tb-test"))),
                ("/spec/shutdown/drainTimeout", Some(json!("5s"))),
                ("/spec/mergeType", Some(json!("StrategicMerge"))),
            ],
        );
        check(
            &objects(&spec()).envoy_proxy,
            &[("/spec/shutdown/drainTimeout", Some(json!("10s")))],
        );
    }

    #[test]
    fn host_ports_are_patched_onto_the_envoy_container_at_the_shifted_listener_ports() {
        let o = objects(&spec());
        check(
            &o.envoy_proxy,
            &[
                ("/spec/provider/type", Some(json!("Kubernetes"))),
                (
                    "/spec/provider/kubernetes/envoyDeployment/patch",
                    Some(json!({
                        "type": "StrategicMerge",
                        "value": {"spec": {"template": {"spec": {"containers": [{
                            "name": "envoy",
                            "ports": [
                                {"name": "http-host", "containerPort": 10080, "hostPort": 48080, "protocol": "TCP"},
                                {"name": "https-host", "containerPort": 10443, "hostPort": 48443, "protocol": "TCP"},
                            ],
                        }]}}}},
                    })),
                ),
            ],
        );
        let in_cluster = render(&spec(), &opts(), Exposure::InCluster).unwrap();
        check(&in_cluster.envoy_proxy, &[("/spec/provider", None)]);
        assert_eq!(container_port(8080), 8080, "unprivileged ports are not shifted");
    }

    #[test]
    fn read_send_and_tunnel_timeouts_are_refused_with_their_upstream_source() {
        for knob in ["timeouts.read", "timeouts.send", "timeouts.tunnel"] {
            let mut s = spec();
            let t = Some(Duration::from_secs(3));
            match knob {
                "timeouts.read" => s.timeouts.read = t,
                "timeouts.send" => s.timeouts.send = t,
                _ => s.timeouts.tunnel = t,
            }
            let err = render(&s, &opts(), HOST_PORTS).unwrap_err();
            assert_eq!(err.knob, knob);
            assert!(
                err.reason
                    .contains("envoyproxy/gateway v1.9.0 api/v1alpha1/timeout_types.go"),
                "{knob}: {}",
                err.reason
            );
        }
    }

    #[test]
    fn a_duration_past_the_gateway_api_limit_is_refused() {
        let err = render(
            &spec().with_idle_timeout(Duration::from_secs(100_000 * 3600)),
            &opts(),
            HOST_PORTS,
        )
        .unwrap_err();
        assert_eq!(err.knob, "timeouts.idle");
        assert!(err.reason.contains("GEP-2257"), "{}", err.reason);
    }

    #[test]
    fn gateway_durations_are_gep_2257_with_millisecond_resolution() {
        let d = |d: Duration| gateway_duration(d).unwrap();
        assert_eq!(d(Duration::ZERO), "0s");
        assert_eq!(d(Duration::from_secs(3)), "3s");
        assert_eq!(d(Duration::from_millis(2500)), "2s500ms");
        assert_eq!(d(Duration::from_millis(250)), "250ms");
        assert_eq!(d(Duration::from_secs(3601)), "1h1s");
        assert_eq!(d(Duration::from_secs(3600 + 120)), "1h2m");
        assert_eq!(d(Duration::from_nanos(1_000_001)), "2ms", "rounded up");
        assert_eq!(d(Duration::from_nanos(1)), "1ms");
        assert_eq!(d(Duration::from_secs(99_999 * 3600)), "99999h");
        assert_eq!(gateway_duration(Duration::from_secs(100_000 * 3600)), None);
    }

    /// The kind objects carry exactly what the local renderer's one translation says, field for
    /// field (the invariant: a knob is translated once).
    #[test]
    fn every_policy_of_the_local_translation_lands_on_its_kind_field() {
        let specs = [
            spec().with_idle_timeout(Duration::from_secs(3)),
            spec().with_proxy_protocol(),
            spec().with_affinity(Affinity::ClientIp),
            cookie(Some(60)),
            cookie(None),
            spec().with_data_plane_drain_limit(Duration::from_secs(7)),
            spec().with_backend_connections(100_000),
        ];
        for s in specs {
            let p = config::policies(&s).unwrap();
            let o = render_policies(&p, &s, &opts(), HOST_PORTS).unwrap();
            let ctp = o.client_traffic_policy.as_ref().map(json).unwrap_or_default();
            let btp = o.backend_traffic_policy.as_ref().map(json).unwrap_or_default();
            let route = json(&o.http_route);
            let dur = |d: Option<Duration>| d.map(|d| json!(gateway_duration(d).unwrap()));
            assert_eq!(
                ctp.pointer("/spec/timeout/http/streamIdleTimeout").cloned(),
                dur(p.client.stream_idle_timeout)
            );
            assert_eq!(
                ctp.pointer("/spec/timeout/http/idleTimeout").cloned(),
                dur(p.client.idle_timeout)
            );
            assert_eq!(ctp.pointer("/spec/proxyProtocol").is_some(), p.client.proxy_protocol);
            assert_eq!(btp.pointer("/spec/loadBalancer").is_some(), p.backend.source_ip_hash);
            for field in ["maxConnections", "maxPendingRequests", "maxParallelRequests"] {
                assert_eq!(
                    btp.pointer(&format!("/spec/circuitBreaker/{field}")).cloned(),
                    p.backend.circuit_breaker.map(|n| json!(n)),
                    "{field}"
                );
            }
            assert_eq!(
                btp.pointer("/spec/timeout/http/streamIdleTimeout").cloned(),
                dur(p.backend.stream_idle_timeout)
            );
            assert_eq!(
                route.pointer("/spec/rules/0/sessionPersistence/sessionName").cloned(),
                p.rule.session_cookie.as_ref().map(|c| json!(c.name))
            );
            assert_eq!(
                route
                    .pointer("/spec/rules/0/sessionPersistence/absoluteTimeout")
                    .cloned(),
                dur(p.rule.session_cookie.as_ref().and_then(|c| c.ttl))
            );
            assert_eq!(
                json(&o.envoy_proxy).pointer("/spec/shutdown/drainTimeout").cloned(),
                dur(Some(p.drain_timeout.unwrap_or(DEFAULT_DRAIN_LIMIT)))
            );
        }
    }

    #[test]
    fn the_controller_change_sets_the_connection_idle_timeout_on_the_same_policy() {
        let s = spec().with_idle_timeout(Duration::from_secs(3));
        let mut p = config::policies(&s).unwrap();
        p.client.idle_timeout = Some(config::changed_idle_timeout(1));
        let o = render_policies(&p, &s, &opts(), HOST_PORTS).unwrap();
        check(
            o.client_traffic_policy.as_ref().unwrap(),
            &[
                ("/metadata/name", Some(json!("eg"))),
                ("/spec/timeout/http/idleTimeout", Some(json!("1h1s"))),
                ("/spec/timeout/http/streamIdleTimeout", Some(json!("3s"))),
            ],
        );
    }

    #[test]
    fn an_unrelated_route_attaches_through_its_own_http_listener() {
        let change = unrelated_route(&opts(), 7);
        assert_eq!(change.listener, http_listener("unrelated-7-tb-test.testbed.local"));
        check(
            &change.route,
            &[
                ("/metadata/name", Some(json!("unrelated-7"))),
                ("/metadata/namespace", Some(json!("tb-test"))),
                ("/spec/hostnames", Some(json!(["unrelated-7-tb-test.testbed.local"]))),
                (
                    "/spec/parentRefs/0/sectionName",
                    Some(json!("unrelated-7-tb-test-testbed-local-http")),
                ),
                ("/spec/rules/0/backendRefs/0/name", Some(json!("ws-echo"))),
            ],
        );
        let g = with_listeners(&gateway(&spec(), &opts()), [change.listener.clone()]);
        let names: Vec<&str> = g.spec.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["tb-test-testbed-local-http", "unrelated-7-tb-test-testbed-local-http"]
        );
        assert_eq!(with_listeners(&g, [change.listener]), g, "re-adding replaces");
    }

    #[test]
    fn a_listener_change_is_an_https_listener_with_its_own_certificate_and_a_route_through_it() {
        assert_eq!(listener_change(&spec(), &opts(), 2), None, "needs a spec with TLS");
        let change = listener_change(&spec().with_tls(), &opts(), 2).expect("a change");
        check(
            &change.listener,
            &[
                ("/name", Some(json!("listener-2-tb-test-testbed-local-https"))),
                ("/hostname", Some(json!("listener-2-tb-test.testbed.local"))),
                ("/port", Some(json!(443))),
                ("/protocol", Some(json!("HTTPS"))),
                (
                    "/tls",
                    Some(json!({
                        "mode": "Terminate",
                        "certificateRefs": [{"group": "", "kind": "Secret", "name": "listener-2-tls"}],
                    })),
                ),
            ],
        );
        check(
            &change.route,
            &[
                ("/kind", Some(json!("HTTPRoute"))),
                ("/metadata/name", Some(json!("listener-2"))),
                ("/metadata/namespace", Some(json!("tb-test"))),
                ("/spec/hostnames", Some(json!(["listener-2-tb-test.testbed.local"]))),
                ("/spec/parentRefs/0/name", Some(json!("eg"))),
                (
                    "/spec/parentRefs/0/sectionName",
                    Some(json!("listener-2-tb-test-testbed-local-https")),
                ),
                ("/spec/rules/0/backendRefs/0/name", Some(json!("ws-echo"))),
            ],
        );
    }

    #[test]
    fn the_gateway_after_a_listener_change_keeps_the_deployments_listeners_on_the_same_port() {
        let s = spec().with_tls();
        let change = listener_change(&s, &opts(), 0).unwrap();
        let g = with_listeners(&gateway(&s, &opts()), [change.listener]);
        let listeners: Vec<(&str, i32, &str)> = g
            .spec
            .listeners
            .iter()
            .map(|l| {
                let cert = l.tls.as_ref().map_or("", |t| t.certificate_refs[0].name.as_str());
                (l.hostname.as_deref().unwrap_or(""), l.port, cert)
            })
            .collect();
        assert_eq!(
            listeners,
            [
                ("tb-test.testbed.local", 80, ""),
                ("tb-test.testbed.local", 443, "ws-echo-tls"),
                ("listener-0-tb-test.testbed.local", 443, "listener-0-tls"),
            ]
        );
    }

    #[test]
    fn the_class_points_at_its_envoy_proxy_which_places_every_fleet_like_the_other_controllers() {
        check(
            &gateway_class(),
            &[
                ("/kind", Some(json!("GatewayClass"))),
                ("/metadata/name", Some(json!("envoy-gateway"))),
                ("/metadata/namespace", None),
                (
                    "/spec/controllerName",
                    Some(json!("gateway.envoyproxy.io/gatewayclass-controller")),
                ),
                (
                    "/spec/parametersRef",
                    Some(json!({
                        "group": "gateway.envoyproxy.io",
                        "kind": "EnvoyProxy",
                        "name": "envoy-gateway",
                        "namespace": "envoy-gateway-system",
                    })),
                ),
            ],
        );
        let common = HelmCommon::new();
        check(
            &class_envoy_proxy(&common),
            &[
                ("/metadata/namespace", Some(json!("envoy-gateway-system"))),
                ("/spec/provider/kubernetes/envoyService/type", Some(json!("ClusterIP"))),
                (
                    "/spec/provider/kubernetes/envoyDeployment/pod/nodeSelector",
                    Some(common.node_selector.clone()),
                ),
                (
                    "/spec/provider/kubernetes/envoyDeployment/pod/tolerations",
                    Some(common.tolerations.clone()),
                ),
                (
                    "/spec/provider/kubernetes/envoyDeployment/strategy",
                    Some(common.one_node_rollout.clone()),
                ),
                ("/spec/shutdown/drainTimeout", Some(json!("10s"))),
                ("/spec/mergeType", None),
            ],
        );
    }

    #[test]
    fn the_data_plane_is_found_by_envoy_gateways_owning_gateway_labels() {
        assert_eq!(
            data_plane_selector("tb-test"),
            "gateway.envoyproxy.io/owning-gateway-namespace=tb-test,gateway.envoyproxy.io/owning-gateway-name=eg"
        );
    }

    #[test]
    fn the_yaml_stream_is_in_apply_order_and_parses_back_into_the_types() {
        let o = objects(&spec().with_proxy_protocol().with_affinity(Affinity::ClientIp));
        let yaml = o.to_yaml();
        let kinds: Vec<String> = yaml
            .split("---\n")
            .map(|doc| {
                let v: Value = serde_yaml_ng::from_str(doc).unwrap();
                v["kind"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "EnvoyProxy",
                "Gateway",
                "HTTPRoute",
                "ClientTrafficPolicy",
                "BackendTrafficPolicy"
            ]
        );
        let docs: Vec<&str> = yaml.split("---\n").collect();
        let back: HTTPRoute = serde_yaml_ng::from_str(docs[2]).unwrap();
        assert_eq!(back, o.http_route);
        let back: EnvoyProxy = serde_yaml_ng::from_str(docs[0]).unwrap();
        assert_eq!(back, o.envoy_proxy);
    }

    #[test]
    fn the_class_is_the_registrys_class_for_envoy_gateway() {
        assert_eq!(model::Controller::EnvoyGateway.ingress_class(), GATEWAY_CLASS);
    }
}

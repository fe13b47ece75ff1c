//! The Envoy configuration Envoy Gateway's xDS translator renders for one Gateway and HTTPRoute,
//! delivered to a local Envoy as file-based xDS.
//!
//! Envoy Gateway (envoyproxy/gateway v1.9.0) never reloads Envoy: its control plane pushes xDS
//! (listeners, routes, clusters, endpoints, secrets) over one ADS stream, and Envoy applies each
//! resource type on its own. Locally every resource type is a file Envoy watches
//! (`path_config_source`): the bootstrap names the LDS and CDS files; each listener's HTTP
//! connection manager names its RDS file, each cluster its EDS file, each TLS filter chain its
//! SDS file. So an endpoint change rewrites only EDS files and a new route only RDS (and CDS/EDS
//! for its cluster), never the listener, as in the real controller; a change to the listener
//! (a new HTTPS hostname, PROXY protocol, a ClientTrafficPolicy timeout) rewrites LDS and Envoy
//! drains the filter chains it replaces. A file is replaced by renaming a new one over it
//! (Envoy's path watcher reacts to the move, not to writes).
//!
//! The spec becomes what a user writes ([`policies`]): a Gateway with one listener per host (as
//! ingress2gateway converts an Ingress), an HTTPRoute per Ingress rule to the ws-echo Service,
//! a ClientTrafficPolicy on the Gateway, a BackendTrafficPolicy on the HTTPRoute, the HTTPRoute
//! rule's `sessionPersistence`, and the EnvoyProxy's `shutdown.drainTimeout`. The xDS that
//! follows mirrors the translator's defaults; each carries its source as
//! `envoyproxy/gateway v1.9.0 <path>`. Names follow the default (v1) xDS name scheme
//! (`XDSNameSchemeV2` is off by default: api/v1alpha1/envoygateway_helpers.go).
//!
//! Left out locally, none of which acts on a connection: the default JSON access log to stdout
//! (internal/gatewayapi/listener.go `processAccessLog`), the Prometheus stats listener and the
//! readiness listener (internal/xds/bootstrap/bootstrap.yaml.tpl, internal/xds/translator/
//! listener_ready.go), stats tag extraction and the topology-injector local cluster
//! (bootstrap.yaml.tpl). Secrets reach Envoy as files instead of inline bytes over ADS. With TLS
//! only the HTTPS listener is rendered: ingress2gateway also converts a TLS host into an HTTP
//! listener on port 80, and a local run has one address.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::render::kind::TLS_SECRET_NAME;
use crate::render::local::{LocalContext, NAMESPACE, SERVICE, SERVICE_PORT, TlsPaths};
use model::{Affinity, Controller, IngressSpec, Unsupported};

pub type Result<T, E = Inexpressible> = std::result::Result<T, E>;

/// A spec knob Envoy Gateway cannot express: the spec field and why (with the upstream source).
///
/// The model registry has no Envoy Gateway variant yet, so this is not a [`model::Unsupported`]
/// itself; [`Inexpressible::unsupported`] makes one for a given controller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Envoy Gateway cannot express {knob}: {reason}")]
pub struct Inexpressible {
    /// The spec field, e.g. `timeouts.tunnel`.
    pub knob: &'static str,
    pub reason: &'static str,
}

impl Inexpressible {
    /// The model's answer for `controller`.
    pub fn unsupported(&self, controller: Controller) -> Unsupported {
        Unsupported::new(controller, self.knob, self.reason)
    }
}

// ---- Names --------------------------------------------------------------------------------

/// The Gateway's namespace: the Service's.
pub const GATEWAY_NAMESPACE: &str = NAMESPACE;
/// The Gateway (and GatewayClass) name of Envoy Gateway's quickstart.
pub const GATEWAY_NAME: &str = "eg";
/// The pod name Envoy is started under (`--service-node`, the pod name in the real controller).
pub const LOCAL_POD_NAME: &str = "envoy-default-eg-local";

/// The Gateway listener for `host`: one per host, `<host>-http` or `<host>-https`, as
/// ingress2gateway converts Ingress hosts into listeners (kubernetes-sigs/ingress2gateway
/// pkg/i2gw/providers/common/converter.go `toHTTPRoutesAndGateways`).
pub fn gateway_listener_name(host: &str, tls: bool) -> String {
    format!("{}-{}", name_from_host(host), if tls { "https" } else { "http" })
}

/// The HTTPRoute for `host`: `<ingress>-<host>`, one per host with a rule per path, as
/// ingress2gateway groups Ingress rules (converter.go `toHTTPRoute`, utils.go `RouteName`).
pub fn httproute_name(host: &str) -> String {
    format!("{SERVICE}-{}", name_from_host(host))
}

/// `--service-cluster`: the infra IR's name, `<gateway namespace>/<gateway name>`
/// (envoyproxy/gateway v1.9.0 internal/gatewayapi/translator.go `IRKey`,
/// internal/infrastructure/common/proxy_args.go).
pub fn service_cluster() -> String {
    format!("{GATEWAY_NAMESPACE}/{GATEWAY_NAME}")
}

/// The IR listener name, which names the xDS listener, its filter chains and route
/// configurations: `<namespace>/<gateway>/<listener>` (envoyproxy/gateway v1.9.0
/// internal/gatewayapi/helpers.go `irListenerName`).
fn ir_listener_name(listener: &str) -> String {
    format!("{GATEWAY_NAMESPACE}/{GATEWAY_NAME}/{listener}")
}

/// `httproute/<namespace>/<name>/rule/<n>`: the route destination, which names the cluster
/// (envoyproxy/gateway v1.9.0 internal/gatewayapi/helpers.go `irRouteDestinationName`).
fn cluster_name(httproute: &str, rule: usize) -> String {
    format!("httproute/{NAMESPACE}/{httproute}/rule/{rule}")
}

/// ingress2gateway's `NameFromHost` (pkg/i2gw/providers/common/utils.go): every run of other
/// characters becomes `-`, leading ones dropped; no host is `all-hosts`.
fn name_from_host(host: &str) -> String {
    if host.is_empty() || host == "*" {
        return "all-hosts".to_owned();
    }
    let mut out = String::new();
    for c in host.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

// ---- Files --------------------------------------------------------------------------------

/// The bootstrap, `-c`. Envoy Gateway passes the same document as `--config-yaml`.
pub const BOOTSTRAP_FILE: &str = "envoy-bootstrap.yaml";
pub const LDS_FILE: &str = "lds.yaml";
pub const CDS_FILE: &str = "cds.yaml";
/// The Gateway's certificate (one Secret for every HTTPS listener but those with their own).
pub const SDS_FILE: &str = "sds-tls.yaml";

/// The SDS file of a listener's own certificate: Envoy's SDS takes exactly one Secret per
/// file, so each has its own.
pub fn own_sds_file(secret: &str) -> String {
    format!("sds-{secret}.yaml")
}

/// The Secret name of a host's own certificate: its first label and `-tls`
/// (`listener-1.testbed.local` → `listener-1-tls`).
pub fn own_secret(host: &str) -> String {
    format!("{}-tls", host.split('.').next().unwrap_or(host))
}
/// Where Envoy writes its admin address (`--admin-address-path`): the port when it is 0.
pub const ADMIN_ADDRESS_FILE: &str = "envoy-admin-address";

/// The RDS file of route configuration `n` (one per HTTP port; one per HTTPS listener).
pub fn rds_file(n: usize) -> String {
    format!("rds-{n}.yaml")
}

/// The EDS file of cluster `n` (one per HTTPRoute: the spec's is 0). Envoy's EDS takes exactly
/// one `ClusterLoadAssignment` per update, so every cluster has its own file.
pub fn eds_file(n: usize) -> String {
    format!("eds-{n}.yaml")
}

fn path_in(ctx: &LocalContext, file: &str) -> PathBuf {
    ctx.runtime_dir.join(file)
}

/// A file-based config source for one xDS resource type.
fn file_source(path: &Path) -> Value {
    json!({
        "path_config_source": { "path": path.display().to_string() },
        "resource_api_version": "V3",
    })
}

// ---- What a user writes --------------------------------------------------------------------

/// The Gateway API and Envoy Gateway policy settings a user writes for a spec: the one
/// translation of the spec's knobs, which both the local renderer and the kind objects read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    /// ClientTrafficPolicy targeting the Gateway (every listener).
    pub client: ClientTrafficPolicy,
    /// BackendTrafficPolicy targeting the spec's HTTPRoute.
    pub backend: BackendTrafficPolicy,
    /// The spec's HTTPRoute rule.
    pub rule: RouteRule,
    /// EnvoyProxy `spec.shutdown.drainTimeout`.
    pub drain_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTrafficPolicy {
    /// `timeout.http.streamIdleTimeout` → HCM `stream_idle_timeout`.
    pub stream_idle_timeout: Option<Duration>,
    /// `timeout.http.idleTimeout` → HCM `common_http_protocol_options.idle_timeout` (a
    /// connection without streams; an open WebSocket is a stream).
    pub idle_timeout: Option<Duration>,
    /// `proxyProtocol: {}` (formerly `enableProxyProtocol: true`).
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTrafficPolicy {
    /// `loadBalancer: {type: ConsistentHash, consistentHash: {type: SourceIP}}`.
    pub source_ip_hash: bool,
    /// `timeout.http.streamIdleTimeout` → route `idle_timeout`.
    pub stream_idle_timeout: Option<Duration>,
    /// `circuitBreaker: {maxConnections, maxParallelRequests, maxPendingRequests}`, all three at
    /// this value: what a user raising the limit for this many WebSockets writes (each holds an
    /// upstream connection and a request; a burst of reconnects waits as pending requests) →
    /// the cluster's `max_connections`, `max_requests`, `max_pending_requests` (envoyproxy/gateway
    /// v1.9.0 internal/gatewayapi/clustersettings.go `buildCircuitBreaker`,
    /// internal/xds/translator/cluster.go `buildXdsClusterCircuitBreaker`).
    pub circuit_breaker: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRule {
    /// `timeouts.request` → route `timeout` and `idle_timeout` ([`route_idle_timeout`]).
    pub request_timeout: Option<Duration>,
    /// `sessionPersistence` (type Cookie).
    pub session_cookie: Option<SessionCookie>,
}

/// Gateway API `sessionPersistence: {type: Cookie, sessionName, absoluteTimeout,
/// cookieConfig: {lifetimeType: Permanent}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    pub name: String,
    /// `absoluteTimeout` with `lifetimeType: Permanent`; `None` is a session cookie.
    pub ttl: Option<Duration>,
}

/// What a user writes for `spec`, or the first knob Envoy Gateway cannot express.
pub fn policies(spec: &IngressSpec) -> Result<Policies> {
    let t = &spec.timeouts;
    // Envoy Gateway's HTTP timers (envoyproxy/gateway v1.9.0 api/v1alpha1/timeout_types.go):
    // request/stream durations, connection idle (no streams) and stream idle — "no upstream or
    // downstream activity". None of them times one direction of an upgraded stream.
    if t.read.is_some() {
        return Err(Inexpressible {
            knob: "timeouts.read",
            reason: "Envoy Gateway has no upstream read timer for an upgraded stream: its stream idle \
                     timeouts (ClientTrafficPolicy and BackendTrafficPolicy timeout.http.streamIdleTimeout) \
                     count activity in either direction (envoyproxy/gateway v1.9.0 \
                     api/v1alpha1/timeout_types.go); see timeouts.idle",
        });
    }
    if t.send.is_some() {
        return Err(Inexpressible {
            knob: "timeouts.send",
            reason: "Envoy Gateway has no upstream write timer: its stream idle timeouts count \
                     activity in either direction (envoyproxy/gateway v1.9.0 \
                     api/v1alpha1/timeout_types.go); see timeouts.idle",
        });
    }
    if t.tunnel.is_some() {
        return Err(Inexpressible {
            knob: "timeouts.tunnel",
            reason: "Envoy Gateway has no timer that applies only once a connection is upgraded: \
                     streamIdleTimeout applies to every stream on the listener or route \
                     (envoyproxy/gateway v1.9.0 api/v1alpha1/timeout_types.go, \
                     internal/xds/translator/route.go idleTimeout); see timeouts.idle",
        });
    }
    let mut p = Policies {
        // The idle knob users set for WebSockets: ClientTrafficPolicy
        // timeout.http.streamIdleTimeout, the HCM's stream idle timer
        // (envoyproxy/gateway v1.9.0 internal/gatewayapi/clienttrafficpolicy.go,
        // internal/xds/translator/listener.go addHCMToXDSListener).
        client: ClientTrafficPolicy {
            stream_idle_timeout: t.idle,
            idle_timeout: None,
            proxy_protocol: spec.proxy_protocol,
        },
        drain_timeout: drain_timeout(spec),
        ..Policies::default()
    };
    match &spec.affinity {
        Affinity::None => {}
        // Gateway API sessionPersistence; Envoy Gateway takes a TTL only with lifetimeType
        // Permanent (envoyproxy/gateway v1.9.0 internal/gatewayapi/route.go
        // processHTTPRouteRule).
        Affinity::Cookie(cookie) => {
            p.rule.session_cookie = Some(SessionCookie {
                name: cookie.name.clone(),
                ttl: cookie.max_age_secs.map(Duration::from_secs),
            });
        }
        // BackendTrafficPolicy loadBalancer ConsistentHash, type SourceIP
        // (envoyproxy/gateway v1.9.0 internal/gatewayapi/clustersettings.go
        // buildConsistentHashLoadBalancer).
        Affinity::ClientIp => p.backend.source_ip_hash = true,
    }
    p.backend.circuit_breaker = spec.data_plane.backend_connections;
    Ok(p)
}

/// EnvoyProxy `spec.shutdown.drainTimeout`: the spec's data-plane drain limit, which sets
/// `--drain-time-s` and the shutdown manager's drain timeout (envoyproxy/gateway v1.9.0
/// internal/infrastructure/common/proxy_args.go, internal/infrastructure/kubernetes/proxy/
/// resource.go expectedShutdownPreStopCommand).
pub fn drain_timeout(spec: &IngressSpec) -> Option<Duration> {
    spec.data_plane.drain_limit
}

/// Route `idle_timeout` as the translator sets it (envoyproxy/gateway v1.9.0
/// internal/xds/translator/route.go `idleTimeout`): the BackendTrafficPolicy's
/// streamIdleTimeout; else none when a ClientTrafficPolicy sets the listener's; else, when the
/// HTTPRoute sets `timeouts.request`, max(1 h, request), or 0 (off) for a request timeout of 0;
/// else none (the HCM's stream idle timeout applies).
pub fn route_idle_timeout(p: &Policies) -> Option<Duration> {
    if let Some(d) = p.backend.stream_idle_timeout {
        return Some(d);
    }
    if p.client.stream_idle_timeout.is_some() {
        return None;
    }
    let request = p.rule.request_timeout?;
    Some(if request.is_zero() {
        Duration::ZERO
    } else {
        request.max(Duration::from_secs(3600))
    })
}

// ---- The Gateway's routes ------------------------------------------------------------------

/// One HTTPRoute rule: the spec's (first) or another Ingress rule's. Rules on one host are
/// rules of that host's HTTPRoute, in order; each has its own cluster.
#[derive(Debug, Clone)]
struct Binding {
    host: String,
    path: String,
    httproute: String,
    rule: usize,
    primary: bool,
}

impl Binding {
    fn cluster(&self) -> String {
        cluster_name(&self.httproute, self.rule)
    }
}

fn bindings(spec: &IngressSpec, ctx: &LocalContext) -> Vec<Binding> {
    let rules = std::iter::once((spec.host.as_str(), spec.path.as_str()))
        .chain(ctx.extra_routes.iter().map(|r| (r.host.as_str(), r.path.as_str())));
    let mut out: Vec<Binding> = Vec::new();
    for (host, path) in rules {
        let rule = out.iter().filter(|b| b.host == host).count();
        out.push(Binding {
            host: host.to_owned(),
            path: path.to_owned(),
            httproute: httproute_name(host),
            rule,
            primary: out.is_empty(),
        });
    }
    out
}

/// The Gateway's listeners: one per distinct host, in order (the spec's first).
fn hosts(bindings: &[Binding]) -> Vec<&str> {
    let mut hosts: Vec<&str> = Vec::new();
    for b in bindings {
        if !hosts.contains(&b.host.as_str()) {
            hosts.push(&b.host);
        }
    }
    hosts
}

// ---- Bootstrap -----------------------------------------------------------------------------

/// Where Envoy's admin interface listens: Envoy Gateway's is 127.0.0.1:19000
/// (envoyproxy/gateway v1.9.0 internal/xds/bootstrap/bootstrap.go `EnvoyAdminPort`); locally a
/// port 0 address (read back from [`ADMIN_ADDRESS_FILE`]) or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Admin {
    /// A unix socket in the runtime directory.
    pub fn socket(ctx: &LocalContext) -> Self {
        Admin::Unix(ctx.runtime_dir.join("envoy-admin.sock"))
    }
}

/// The bootstrap (envoyproxy/gateway v1.9.0 internal/xds/bootstrap/bootstrap.yaml.tpl) with
/// file-based LDS and CDS in place of the ADS stream to the control plane.
pub fn render_bootstrap(ctx: &LocalContext, admin: &Admin) -> String {
    let address = match admin {
        Admin::Tcp(addr) => json!({ "socket_address": {
            "address": addr.ip().to_string(), "port_value": addr.port() } }),
        Admin::Unix(path) => json!({ "pipe": { "path": path.display().to_string() } }),
    };
    let config = json!({
        "admin": {
            // Admin access log to /dev/null (bootstrap.go envoyAdminAccessLogPath).
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": "/dev/null",
                },
            }],
            "address": address,
        },
        "layered_runtime": { "layers": [{
            "name": "global_config",
            "static_layer": {
                "re2.max_program_size.error_level": 4_294_967_295_u64,
                "re2.max_program_size.warn_level": 1000,
            },
        }]},
        // The control plane's ADS stream (lds_config/cds_config `ads: {}`), as files.
        "dynamic_resources": {
            "lds_config": file_source(&path_in(ctx, LDS_FILE)),
            "cds_config": file_source(&path_in(ctx, CDS_FILE)),
        },
        // At most 50000 downstream connections (bootstrap.yaml.tpl overload_manager).
        "overload_manager": {
            "refresh_interval": "0.250s",
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 50000,
                },
            }],
        },
    });
    document(
        "the bootstrap Envoy Gateway v1.9.0 renders (internal/xds/bootstrap/bootstrap.yaml.tpl), \
         with LDS and CDS from files instead of ADS",
        &config,
    )
}

// ---- Listener (LDS) ------------------------------------------------------------------------

/// The LDS file: one listener on `ctx.listen` with a filter chain per HTTPS Gateway listener,
/// or one default filter chain shared by every HTTP Gateway listener on the port.
pub fn render_listeners(spec: &IngressSpec, ctx: &LocalContext) -> Result<String> {
    let p = policies(spec)?;
    Ok(listeners_from(&p, spec, ctx))
}

fn listeners_from(p: &Policies, spec: &IngressSpec, ctx: &LocalContext) -> String {
    let b = bindings(spec, ctx);
    let hosts = hosts(&b);
    let tls = ctx.tls.is_some();
    let port = ctx.listen.port();
    let first = ir_listener_name(&gateway_listener_name(hosts[0], tls));

    let mut listener = Map::new();
    // Named after the first Gateway listener on the port (v1 name scheme, listener.go
    // xdsListenerName); the address is the container port's (0.0.0.0 there).
    listener.insert("name".into(), json!(first));
    listener.insert(
        "address".into(),
        json!({ "socket_address": {
            "protocol": "TCP",
            "address": ctx.listen.ip().to_string(),
            "port_value": port,
        }}),
    );
    // listener.go: tcpListenerPerConnectionBufferLimitBytes 32768 and
    // defaultMaxAcceptConnectionsPerSocketEvent 1 (buildXdsTCPListener).
    listener.insert("per_connection_buffer_limit_bytes".into(), json!(32768));
    listener.insert("max_connections_to_accept_per_socket_event".into(), json!(1));

    let mut listener_filters = Vec::new();
    if p.client.proxy_protocol {
        // ClientTrafficPolicy proxyProtocol: the PROXY protocol listener filter, inserted first
        // (internal/xds/translator/proxy_protocol.go patchProxyProtocolFilter); v1 and v2, not
        // optional.
        listener_filters.push(json!({
            "name": "envoy.filters.listener.proxy_protocol",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
            },
        }));
    }
    if tls {
        // HTTPS listeners with a hostname match SNI, which needs the TLS inspector
        // (listener.go addServerNamesMatch, addXdsTLSInspectorFilter).
        listener_filters.push(json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
            },
        }));
    }
    if !listener_filters.is_empty() {
        listener.insert("listener_filters".into(), Value::Array(listener_filters));
    }

    if tls {
        // One filter chain per HTTPS Gateway listener, named after it, matching its hostname,
        // with its own route configuration (listener.go addHCMToXDSListener,
        // httpsListenerFilterChainName, routeConfigName).
        let chains: Vec<Value> = hosts
            .iter()
            .enumerate()
            .map(|(n, host)| {
                let name = ir_listener_name(&gateway_listener_name(host, true));
                json!({
                    "name": name,
                    "filter_chain_match": { "server_names": [host] },
                    "filters": [hcm(p, spec, ctx, &name, &path_in(ctx, &rds_file(n)), true, n == 0)],
                    "transport_socket": downstream_tls(ctx, host),
                })
            })
            .collect();
        listener.insert("filter_chains".into(), Value::Array(chains));
    } else {
        // Every HTTP Gateway listener on the port shares the default filter chain and one
        // route configuration, both named after the first (listener.go
        // httpListenerDefaultFilterChainName; translator.go processHTTPListenerXdsTranslation).
        listener.insert(
            "default_filter_chain".into(),
            json!({
                "name": first,
                "filters": [hcm(p, spec, ctx, &first, &path_in(ctx, &rds_file(0)), false, true)],
            }),
        );
    }
    listener.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.config.listener.v3.Listener"),
    );
    document(
        "the listener Envoy Gateway v1.9.0's xDS translator renders (internal/xds/translator/listener.go)",
        &json!({ "version_info": "1", "resources": [Value::Object(listener)] }),
    )
}

/// The HTTP connection manager (envoyproxy/gateway v1.9.0 internal/xds/translator/listener.go
/// addHCMToXDSListener). `with_session` adds the stateful session filter, which only the
/// listener carrying the spec's route has (session_persistence.go patchHCM).
fn hcm(
    p: &Policies,
    spec: &IngressSpec,
    ctx: &LocalContext,
    route_config: &str,
    rds_path: &Path,
    tls: bool,
    with_session: bool,
) -> Value {
    let port = ctx.listen.port();
    let mut common = Map::new();
    // Headers with underscores are rejected (listener.go buildHeadersWithUnderscoresAction).
    common.insert("headers_with_underscores_action".into(), json!("REJECT_REQUEST"));
    if let Some(idle) = p.client.idle_timeout {
        common.insert("idle_timeout".into(), json!(proto_duration(idle)));
    }
    let mut m = Map::new();
    m.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
    );
    // `http-<port>` / `https-<port>` (listener.go hcmStatPrefix).
    m.insert(
        "stat_prefix".into(),
        json!(format!("{}-{port}", if tls { "https" } else { "http" })),
    );
    m.insert("codec_type".into(), json!("AUTO"));
    m.insert(
        "rds".into(),
        json!({ "route_config_name": route_config, "config_source": file_source(rds_path) }),
    );
    m.insert("server_header_transformation".into(), json!("PASS_THROUGH"));
    // listener.go http2ProtocolOptions defaults: 100 streams, 64 KiB stream and 1 MiB
    // connection windows. No extended CONNECT: WebSockets are HTTP/1.1 upgrades.
    m.insert(
        "http2_protocol_options".into(),
        json!({
            "max_concurrent_streams": 100,
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": 1_048_576,
        }),
    );
    // X-Forwarded-For: the peer address (after PROXY protocol) is the client's and is appended,
    // no trusted hops (listener.go: useRemoteAddress true unless ClientIPDetection is set).
    m.insert("use_remote_address".into(), json!(true));
    // normalize_path on; merge_slashes and UnescapeAndRedirect are the Gateway listener's IR
    // defaults (internal/gatewayapi/listener.go; listener.go translateEscapePath).
    m.insert("normalize_path".into(), json!(true));
    m.insert("merge_slashes".into(), json!(true));
    m.insert(
        "path_with_escaped_slashes_action".into(),
        json!("UNESCAPE_AND_REDIRECT"),
    );
    m.insert("common_http_protocol_options".into(), Value::Object(common));
    m.insert("forward_client_cert_details".into(), json!("SANITIZE"));
    // Unset, Envoy's stream idle timeout is 5 min, as the API documents
    // (api/v1alpha1/timeout_types.go HTTPClientTimeout.StreamIdleTimeout).
    if let Some(idle) = p.client.stream_idle_timeout {
        m.insert("stream_idle_timeout".into(), json!(proto_duration(idle)));
    }
    let mut filters = Vec::new();
    if with_session && let Some(cookie) = &p.rule.session_cookie {
        // The stateful session filter, off on the HCM and switched on by the route's
        // per-filter config (session_persistence.go buildHCMStatefulSessionFilter).
        filters.push(json!({
            "name": "envoy.filters.http.stateful_session",
            "disabled": true,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
                "session_state": cookie_session_state(cookie, &spec.path),
            },
        }));
    }
    // The router last; x-envoy-* response headers suppressed (internal/xds/filters/wellknown.go
    // GenerateRouterFilter, EnableEnvoyHeaders false).
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "suppress_envoy_headers": true,
        },
    }));
    m.insert("http_filters".into(), Value::Array(filters));
    json!({ "name": "envoy.filters.network.http_connection_manager", "typed_config": m })
}

/// The HTTPS filter chain's TLS context (envoyproxy/gateway v1.9.0
/// internal/xds/translator/listener.go buildXdsDownstreamTLSSocket): ALPN h2 and http/1.1
/// (buildALPNProtocols), the certificate by SDS, session resumption off unless a
/// ClientTrafficPolicy turns it on (setDownstreamTLSSessionSettings). A listener whose route
/// brought its own certificate serves that one (its certificateRefs).
fn downstream_tls(ctx: &LocalContext, host: &str) -> Value {
    let (secret, file) = match ctx.extra_routes.iter().find(|r| r.host == host && r.tls.is_some()) {
        Some(r) => {
            let own = own_secret(&r.host);
            (format!("{NAMESPACE}/{own}"), own_sds_file(&own))
        }
        None => (secret_name(), SDS_FILE.to_owned()),
    };
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [{
                    "name": secret,
                    "sds_config": file_source(&path_in(ctx, &file)),
                }],
            },
            "disable_stateful_session_resumption": true,
            "disable_stateless_session_resumption": true,
        },
    })
}

/// `<namespace>/<secret>` (envoyproxy/gateway v1.9.0 internal/gatewayapi/helpers.go
/// irTLSListenerConfigName).
fn secret_name() -> String {
    format!("{NAMESPACE}/{TLS_SECRET_NAME}")
}

/// The SDS file with the Gateway's certificate, when `ctx.tls` is set.
pub fn render_secret(ctx: &LocalContext) -> Option<String> {
    Some(secret_document(&secret_name(), ctx.tls.as_ref()?))
}

/// The SDS files (file name, text) of the listeners' own certificates, when the Gateway has TLS.
pub fn render_own_secrets(ctx: &LocalContext) -> Vec<(String, String)> {
    if ctx.tls.is_none() {
        return Vec::new();
    }
    ctx.extra_routes
        .iter()
        .filter_map(|r| {
            let own = own_secret(&r.host);
            Some((
                own_sds_file(&own),
                secret_document(&format!("{NAMESPACE}/{own}"), r.tls.as_ref()?),
            ))
        })
        .collect()
}

fn secret_document(name: &str, tls: &TlsPaths) -> String {
    let config = json!({
        "version_info": "1",
        "resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": name,
            "tls_certificate": {
                "certificate_chain": { "filename": tls.cert.display().to_string() },
                "private_key": { "filename": tls.key.display().to_string() },
            },
        }],
    });
    document(
        "a Gateway TLS Secret as Envoy Gateway v1.9.0 sends it over SDS \
         (internal/xds/translator/listener.go buildXdsTLSCertSecret), as file paths",
        &config,
    )
}

// ---- Routes (RDS) --------------------------------------------------------------------------

/// The RDS files (file name, text): one route configuration for HTTP, one per HTTPS listener.
pub fn render_routes(spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>> {
    let p = policies(spec)?;
    Ok(routes_from(&p, spec, ctx))
}

fn routes_from(p: &Policies, spec: &IngressSpec, ctx: &LocalContext) -> Vec<(String, String)> {
    let b = bindings(spec, ctx);
    let hosts = hosts(&b);
    let tls = ctx.tls.is_some();
    // HTTP: one configuration, named after the first listener, with every host's virtual host;
    // HTTPS: one per listener (translator.go processHTTPListenerXdsTranslation, listener.go
    // routeConfigName).
    let groups: Vec<(String, Vec<&str>)> = if tls {
        hosts
            .iter()
            .map(|h| (ir_listener_name(&gateway_listener_name(h, true)), vec![*h]))
            .collect()
    } else {
        vec![(ir_listener_name(&gateway_listener_name(hosts[0], false)), hosts.clone())]
    };
    groups
        .into_iter()
        .enumerate()
        .map(|(n, (name, group))| {
            let vhosts: Vec<Value> = group.iter().map(|host| virtual_host(p, spec, &b, host, tls)).collect();
            let config = json!({
                "version_info": "1",
                "resources": [{
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": name,
                    // translator.go: IgnorePortInHostMatching true.
                    "ignore_port_in_host_matching": true,
                    "virtual_hosts": vhosts,
                }],
            });
            (
                rds_file(n),
                document(
                    "the routes Envoy Gateway v1.9.0's xDS translator renders (internal/xds/translator/route.go)",
                    &config,
                ),
            )
        })
        .collect()
}

/// One virtual host per hostname, named `<listener>/<host with underscores>`
/// (envoyproxy/gateway v1.9.0 internal/xds/translator/translator.go addRouteToRouteConfig,
/// virtualHostName), its routes longest prefix first (internal/gatewayapi/sort.go).
fn virtual_host(p: &Policies, spec: &IngressSpec, b: &[Binding], host: &str, tls: bool) -> Value {
    let underscored = host.replace('.', "_");
    let mut routes: Vec<&Binding> = b.iter().filter(|x| x.host == host).collect();
    routes.sort_by_key(|x| std::cmp::Reverse(x.path.len()));
    let routes: Vec<Value> = routes.into_iter().map(|x| route(p, spec, x, &underscored)).collect();
    json!({
        "name": format!("{}/{underscored}", ir_listener_name(&gateway_listener_name(host, tls))),
        "domains": [host],
        "routes": routes,
    })
}

/// One HTTPRoute rule's route (envoyproxy/gateway v1.9.0 internal/xds/translator/route.go
/// buildXdsRoute). The BackendTrafficPolicy and session persistence are the spec's route's only.
fn route(p: &Policies, spec: &IngressSpec, b: &Binding, underscored_host: &str) -> Value {
    let none = Policies::default();
    let p = if b.primary { p } else { &none };
    let mut action = Map::new();
    action.insert("cluster".into(), json!(b.cluster()));
    // WebSocket upgrades on every route (route.go defaultUpgradeConfig, buildUpgradeConfig).
    action.insert("upgrade_configs".into(), json!([{ "upgrade_type": "websocket" }]));
    if let Some(idle) = route_idle_timeout(p) {
        action.insert("idle_timeout".into(), json!(proto_duration(idle)));
    }
    // HTTPRoute timeouts.request → route timeout; unset, Envoy's 15 s, which covers only the
    // upgrade handshake of a WebSocket (route.go getEffectiveRequestTimeout).
    if let Some(request) = p.rule.request_timeout {
        action.insert("timeout".into(), json!(proto_duration(request)));
    }
    if p.backend.source_ip_hash {
        // ConsistentHash SourceIP: hash on the connection's source address (route.go
        // buildConsistentHashPolicy), balanced by Maglev in the cluster.
        action.insert(
            "hash_policy".into(),
            json!([{ "connection_properties": { "source_ip": true } }]),
        );
    }
    let mut r = Map::new();
    // `httproute/<ns>/<name>/rule/<n>/match/0/<host>` (internal/gatewayapi/helpers.go irRouteName,
    // route.go host suffix).
    r.insert(
        "name".into(),
        json!(format!(
            "httproute/{NAMESPACE}/{}/rule/{}/match/0/{underscored_host}",
            b.httproute, b.rule
        )),
    );
    r.insert("match".into(), path_match(&b.path));
    r.insert("route".into(), Value::Object(action));
    if let Some(cookie) = &p.rule.session_cookie {
        r.insert(
            "typed_per_filter_config".into(),
            json!({ "envoy.filters.http.stateful_session": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSessionPerRoute",
                "stateful_session": { "session_state": cookie_session_state(cookie, &spec.path) },
            }}),
        );
    }
    Value::Object(r)
}

/// PathPrefix: `/` as a prefix, anything else as a path-separated prefix without its trailing
/// slash (envoyproxy/gateway v1.9.0 internal/xds/translator/route.go buildPathMatch).
fn path_match(path: &str) -> Value {
    if path.is_empty() || path == "/" {
        json!({ "prefix": "/" })
    } else {
        json!({ "path_separated_prefix": path.trim_end_matches('/') })
    }
}

/// Cookie-based session state: the session name, the route's path prefix as cookie path, the
/// TTL of a Permanent cookie (envoyproxy/gateway v1.9.0 internal/xds/translator/
/// session_persistence.go buildStatefulSessionFilterConfig, routePathToCookiePath).
fn cookie_session_state(cookie: &SessionCookie, path: &str) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), json!(cookie.name));
    c.insert("path".into(), json!(if path.is_empty() { "/" } else { path }));
    if let Some(ttl) = cookie.ttl {
        c.insert("ttl".into(), json!(proto_duration(ttl)));
    }
    json!({
        "name": "envoy.http.stateful_session.cookie",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
            "cookie": c,
        },
    })
}

// ---- Clusters (CDS) ------------------------------------------------------------------------

/// The CDS file: an EDS cluster per HTTPRoute rule, each with its own EDS file.
pub fn render_clusters(spec: &IngressSpec, ctx: &LocalContext) -> Result<String> {
    let p = policies(spec)?;
    let clusters: Vec<Value> = bindings(spec, ctx)
        .iter()
        .enumerate()
        .map(|(n, b)| {
            let backend = if b.primary {
                p.backend.clone()
            } else {
                BackendTrafficPolicy::default()
            };
            cluster(&backend, b, &path_in(ctx, &eds_file(n)))
        })
        .collect();
    Ok(document(
        "the clusters Envoy Gateway v1.9.0's xDS translator renders (internal/xds/translator/cluster.go)",
        &json!({ "version_info": "1", "resources": clusters }),
    ))
}

/// One route destination's cluster (envoyproxy/gateway v1.9.0 internal/xds/translator/
/// cluster.go buildXdsCluster): Service endpoints by EDS (EndpointTypeStatic), connect timeout
/// 10 s (tcpClusterPerConnectTimeout), 32 KiB buffers, V4_PREFERRED, endpoints dropped as soon as
/// EDS removes them (IgnoreHealthOnHostRemoval), 1024 retries allowed (circuit breaker), least
/// request over locality-weighted localities by default, Maglev for a consistent hash; the
/// BackendTrafficPolicy's circuit breaker where it sets one (Envoy's defaults, 1024, otherwise).
fn cluster(backend: &BackendTrafficPolicy, b: &Binding, eds_path: &Path) -> Value {
    let name = b.cluster();
    let mut thresholds = json!({ "priority": "DEFAULT", "max_retries": 1024 });
    if let Some(most) = backend.circuit_breaker {
        thresholds["max_connections"] = json!(most);
        thresholds["max_pending_requests"] = json!(most);
        thresholds["max_requests"] = json!(most);
    }
    let policy = if backend.source_ip_hash {
        json!({
            "name": "envoy.load_balancing_policies.maglev",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
            },
        })
    } else {
        json!({
            "name": "envoy.load_balancing_policies.least_request",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
                "locality_lb_config": { "locality_weighted_lb_config": {} },
            },
        })
    };
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "EDS",
        "eds_cluster_config": { "service_name": name, "eds_config": file_source(eds_path) },
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": 32768,
        "dns_lookup_family": "V4_PREFERRED",
        "common_lb_config": {},
        "ignore_health_on_host_removal": true,
        "circuit_breakers": { "thresholds": [thresholds] },
        "load_balancing_policy": { "policies": [{ "typed_extension_config": policy }] },
    })
}

// ---- Endpoints (EDS) -----------------------------------------------------------------------

/// The EDS files (file name, text), one per cluster: the Service's endpoints. `draining` are
/// endpoints still in the EndpointSlice but terminating or not serving, which Envoy Gateway keeps
/// with health status DRAINING (envoyproxy/gateway v1.9.0 internal/gatewayapi/route.go
/// getIREndpointsFromEndpointSlice): no new requests, open streams stay.
pub fn render_endpoints(
    spec: &IngressSpec,
    ctx: &LocalContext,
    ready: &[SocketAddr],
    draining: &[SocketAddr],
) -> Vec<(String, String)> {
    bindings(spec, ctx)
        .iter()
        .enumerate()
        .map(|(n, b)| (eds_file(n), endpoints_text(b, ready, draining)))
        .collect()
}

/// One cluster's `ClusterLoadAssignment`: one locality named after the backend (region
/// `<destination>/backend/0`), weight 1 per endpoint and locality (envoyproxy/gateway v1.9.0
/// internal/xds/translator/cluster.go buildXdsClusterLoadAssignment, buildWeightedLocalities).
fn endpoints_text(b: &Binding, ready: &[SocketAddr], draining: &[SocketAddr]) -> String {
    let name = b.cluster();
    let endpoint = |addr: &SocketAddr, draining: bool| {
        let mut e = json!({
            "endpoint": { "address": { "socket_address": {
                "address": addr.ip().to_string(),
                "port_value": addr.port(),
            }}},
            "load_balancing_weight": 1,
        });
        if draining {
            e["health_status"] = json!("DRAINING");
        }
        e
    };
    let lb_endpoints: Vec<Value> = ready
        .iter()
        .map(|a| endpoint(a, false))
        .chain(draining.iter().map(|a| endpoint(a, true)))
        .collect();
    let config = json!({
        "version_info": "1",
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": name,
            "endpoints": [{
                "locality": { "region": format!("{name}/backend/0") },
                "lb_endpoints": lb_endpoints,
                "load_balancing_weight": 1,
            }],
        }],
    });
    document(
        &format!(
            "the endpoints of {SERVICE}:{SERVICE_PORT} as Envoy Gateway v1.9.0 sends them over EDS \
             (internal/xds/translator/cluster.go)"
        ),
        &config,
    )
}

// ---- All files and the command line ---------------------------------------------------------

/// Every file a local Gateway starts from (file name in `ctx.runtime_dir`, text), endpoints
/// from `ctx.backends.pods`. Write the xDS files before the bootstrap's Envoy starts; later
/// replace each by renaming a new one over it.
pub fn render_files(spec: &IngressSpec, ctx: &LocalContext, admin: &Admin) -> Result<Vec<(String, String)>> {
    render_files_after(spec, ctx, admin, 0)
}

/// The controller-wide change number `serial` (1, 2, …) a deployment asks for: the Gateway's
/// ClientTrafficPolicy `timeout.http.idleTimeout` (the HCM's connection idle timeout, Envoy's
/// 1 h unless set) set to 1 h + `serial` s. A listener setting, so Envoy Gateway pushes a new
/// listener and Envoy drains the one it replaces: its nearest equivalent of a reload
/// (envoyproxy/gateway#8889).
pub fn changed_idle_timeout(serial: u32) -> Duration {
    Duration::from_secs(3600 + u64::from(serial))
}

/// [`render_files`] after `changes` controller-wide changes ([`changed_idle_timeout`]).
pub fn render_files_after(
    spec: &IngressSpec,
    ctx: &LocalContext,
    admin: &Admin,
    changes: u32,
) -> Result<Vec<(String, String)>> {
    let mut p = policies(spec)?;
    if changes > 0 {
        p.client.idle_timeout = Some(changed_idle_timeout(changes));
    }
    let mut files = vec![
        (BOOTSTRAP_FILE.to_owned(), render_bootstrap(ctx, admin)),
        (LDS_FILE.to_owned(), listeners_from(&p, spec, ctx)),
        (CDS_FILE.to_owned(), render_clusters(spec, ctx)?),
    ];
    files.extend(routes_from(&p, spec, ctx));
    files.extend(render_endpoints(spec, ctx, &ctx.backends.pods, &[]));
    if let Some(secret) = render_secret(ctx) {
        files.push((SDS_FILE.to_owned(), secret));
    }
    files.extend(render_own_secrets(ctx));
    Ok(files)
}

/// Envoy Gateway's drain time when the EnvoyProxy sets no `shutdown.drainTimeout`
/// (envoyproxy/gateway v1.9.0 internal/infrastructure/common/proxy_args.go BuildProxyArgs).
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(60);
/// `--log-level` unless the EnvoyProxy sets one (envoyproxy/gateway v1.9.0
/// api/v1alpha1/envoyproxy_helpers.go DefaultEnvoyProxyLoggingLevel).
pub const LOG_LEVEL: &str = "warn";

/// `--drain-time-s`: [`drain_timeout`], else 60, in whole seconds as Go's `%.0f` rounds them
/// (half to even).
pub fn drain_time_secs(spec: &IngressSpec) -> u64 {
    let drain = drain_timeout(spec).unwrap_or(DEFAULT_DRAIN_TIME);
    drain.as_secs_f64().round_ties_even() as u64
}

/// Envoy's arguments as Envoy Gateway starts it (envoyproxy/gateway v1.9.0
/// internal/infrastructure/common/proxy_args.go BuildProxyArgs: `--service-cluster`,
/// `--service-node`, the bootstrap, `--log-level warn`, `--cpuset-threads`, `--drain-strategy
/// immediate`, `--drain-time-s`), with the bootstrap as a file (`-c`) instead of
/// `--config-yaml`. Local additions: `--disable-hot-restart`, as several Envoys share this
/// machine's shared-memory namespace (each pod has its own), and `--admin-address-path`, where
/// the admin port lands when it is 0.
pub fn args(spec: &IngressSpec, ctx: &LocalContext) -> Vec<OsString> {
    let drain = drain_time_secs(spec).to_string();
    let mut a: Vec<OsString> = vec!["-c".into(), path_in(ctx, BOOTSTRAP_FILE).into_os_string()];
    let cluster = service_cluster();
    let flags: [&str; 11] = [
        "--service-cluster",
        &cluster,
        "--service-node",
        LOCAL_POD_NAME,
        "--log-level",
        LOG_LEVEL,
        "--cpuset-threads",
        "--drain-strategy",
        "immediate",
        "--drain-time-s",
        &drain,
    ];
    a.extend(flags.iter().map(OsString::from));
    a.push("--disable-hot-restart".into());
    a.push("--admin-address-path".into());
    a.push(path_in(ctx, ADMIN_ADDRESS_FILE).into_os_string());
    a
}

// ---- Helpers -------------------------------------------------------------------------------

/// A protobuf JSON duration: whole seconds as `3s`, else `2.500s`.
pub fn proto_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let frac = format!("{:09}", d.subsec_nanos());
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    }
}

fn document(what: &str, value: &Value) -> String {
    // A JSON value always serializes to YAML.
    let yaml = serde_yaml_ng::to_string(value).unwrap_or_default();
    format!("# Rendered by testbed: {what}.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::render::local::ExtraRoute;
    use crate::render::local::test_support::{context, with_tls};
    use model::CookieAffinity;

    /// Parses a rendered YAML document.
    #[track_caller]
    fn parse(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{text}"))
    }

    /// The one resource of an xDS file.
    #[track_caller]
    fn resource(text: &str) -> Value {
        let doc = parse(text);
        let resources = doc["resources"].as_array().expect("resources");
        assert_eq!(resources.len(), 1, "{text}");
        resources[0].clone()
    }

    fn listener(spec: &IngressSpec, ctx: &LocalContext) -> Value {
        resource(&render_listeners(spec, ctx).expect("renders"))
    }

    fn routes(spec: &IngressSpec, ctx: &LocalContext) -> Vec<Value> {
        render_routes(spec, ctx)
            .expect("renders")
            .iter()
            .map(|(_, t)| resource(t))
            .collect()
    }

    fn clusters(spec: &IngressSpec, ctx: &LocalContext) -> Vec<Value> {
        parse(&render_clusters(spec, ctx).expect("renders"))["resources"]
            .as_array()
            .expect("resources")
            .clone()
    }

    /// The HTTP connection manager's config in the HTTP listener's default filter chain.
    fn http_hcm(l: &Value) -> &Value {
        &l["default_filter_chain"]["filters"][0]["typed_config"]
    }

    fn the_route(rds: &Value) -> &Value {
        &rds["virtual_hosts"][0]["routes"][0]
    }

    #[track_caller]
    fn check_fields(value: &Value, expected: &[(&str, Value)]) {
        for (pointer, want) in expected {
            assert_eq!(
                value.pointer(pointer),
                Some(want),
                "{pointer} in:\n{}",
                serde_yaml_ng::to_string(value).unwrap_or_default()
            );
        }
    }

    fn cookie(max_age_secs: Option<u64>) -> IngressSpec {
        IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs,
        }))
    }

    fn with_route(mut ctx: LocalContext, host: &str, path: &str) -> LocalContext {
        ctx.extra_routes.push(ExtraRoute {
            host: host.to_owned(),
            path: path.to_owned(),
            tls: None,
        });
        ctx
    }

    #[test]
    fn an_http_gateway_is_one_listener_with_the_translators_connection_manager() {
        let l = listener(&IngressSpec::new(3), &context());
        check_fields(
            &l,
            &[
                ("/name", json!("default/eg/echo-testbed-local-http")),
                ("/address/socket_address/address", json!("127.0.0.1")),
                ("/address/socket_address/port_value", json!(18000)),
                ("/per_connection_buffer_limit_bytes", json!(32768)),
                ("/max_connections_to_accept_per_socket_event", json!(1)),
                (
                    "/default_filter_chain/name",
                    json!("default/eg/echo-testbed-local-http"),
                ),
            ],
        );
        assert!(l.get("listener_filters").is_none() && l.get("filter_chains").is_none());
        check_fields(
            http_hcm(&l),
            &[
                ("/stat_prefix", json!("http-18000")),
                ("/use_remote_address", json!(true)),
                ("/normalize_path", json!(true)),
                ("/merge_slashes", json!(true)),
                ("/path_with_escaped_slashes_action", json!("UNESCAPE_AND_REDIRECT")),
                ("/server_header_transformation", json!("PASS_THROUGH")),
                (
                    "/common_http_protocol_options/headers_with_underscores_action",
                    json!("REJECT_REQUEST"),
                ),
                ("/http2_protocol_options/max_concurrent_streams", json!(100)),
                ("/rds/route_config_name", json!("default/eg/echo-testbed-local-http")),
                (
                    "/rds/config_source/path_config_source/path",
                    json!("/tmp/testbed-run/rds-0.yaml"),
                ),
                ("/http_filters/0/name", json!("envoy.filters.http.router")),
                ("/http_filters/0/typed_config/suppress_envoy_headers", json!(true)),
            ],
        );
        // Envoy's 5 min stream idle timeout and 1 h connection idle timeout stay implicit.
        let hcm = http_hcm(&l);
        assert!(hcm.get("stream_idle_timeout").is_none(), "{hcm}");
        assert!(
            hcm["common_http_protocol_options"].get("idle_timeout").is_none(),
            "{hcm}"
        );
        assert_eq!(hcm["http_filters"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn every_route_upgrades_websockets_to_the_routes_cluster() {
        let rds = &routes(&IngressSpec::new(3), &context())[0];
        check_fields(
            rds,
            &[
                ("/name", json!("default/eg/echo-testbed-local-http")),
                ("/ignore_port_in_host_matching", json!(true)),
                (
                    "/virtual_hosts/0/name",
                    json!("default/eg/echo-testbed-local-http/echo_testbed_local"),
                ),
                ("/virtual_hosts/0/domains", json!(["echo.testbed.local"])),
            ],
        );
        check_fields(
            the_route(rds),
            &[
                (
                    "/name",
                    json!("httproute/default/ws-echo-echo-testbed-local/rule/0/match/0/echo_testbed_local"),
                ),
                ("/match", json!({ "prefix": "/" })),
                (
                    "/route/cluster",
                    json!("httproute/default/ws-echo-echo-testbed-local/rule/0"),
                ),
                ("/route/upgrade_configs", json!([{ "upgrade_type": "websocket" }])),
            ],
        );
        let action = &the_route(rds)["route"];
        for unset in ["idle_timeout", "timeout", "hash_policy"] {
            assert!(action.get(unset).is_none(), "{unset}: {action}");
        }
    }

    #[test]
    fn a_longer_path_is_a_path_separated_prefix_without_its_trailing_slash() {
        let mut spec = IngressSpec::new(3);
        spec.path = "/ws/".to_owned();
        let rds = &routes(&spec, &context())[0];
        assert_eq!(the_route(rds)["match"], json!({ "path_separated_prefix": "/ws" }));
    }

    #[test]
    fn idle_timeout_is_the_client_traffic_policys_stream_idle_timeout() {
        let spec = IngressSpec::new(3).with_idle_timeout(Duration::from_millis(2500));
        assert_eq!(
            http_hcm(&listener(&spec, &context()))["stream_idle_timeout"],
            json!("2.5s")
        );
        // A listener stream idle timeout keeps the route's unset.
        assert!(
            the_route(&routes(&spec, &context())[0])["route"]
                .get("idle_timeout")
                .is_none()
        );
    }

    #[test]
    fn route_idle_timeout_follows_the_translators_precedence() {
        let secs = Duration::from_secs;
        let rule = |request: Option<Duration>| Policies {
            rule: RouteRule {
                request_timeout: request,
                session_cookie: None,
            },
            ..Policies::default()
        };
        assert_eq!(route_idle_timeout(&rule(None)), None);
        assert_eq!(route_idle_timeout(&rule(Some(secs(30)))), Some(secs(3600)));
        assert_eq!(route_idle_timeout(&rule(Some(secs(7200)))), Some(secs(7200)));
        assert_eq!(route_idle_timeout(&rule(Some(Duration::ZERO))), Some(Duration::ZERO));
        let mut listener_set = rule(Some(secs(30)));
        listener_set.client.stream_idle_timeout = Some(secs(3));
        assert_eq!(route_idle_timeout(&listener_set), None);
        listener_set.backend.stream_idle_timeout = Some(secs(4));
        assert_eq!(route_idle_timeout(&listener_set), Some(secs(4)));
    }

    #[test]
    fn httproute_request_timeout_sets_the_route_timeout_and_an_hour_of_idle() {
        let spec = IngressSpec::new(3);
        let p = Policies {
            rule: RouteRule {
                request_timeout: Some(Duration::from_secs(30)),
                session_cookie: None,
            },
            ..Policies::default()
        };
        let rds = resource(&routes_from(&p, &spec, &context())[0].1);
        check_fields(
            the_route(&rds),
            &[
                ("/route/timeout", json!("30s")),
                ("/route/idle_timeout", json!("3600s")),
            ],
        );
    }

    #[test]
    fn client_traffic_policy_idle_timeout_is_the_connection_idle_timeout() {
        let mut p = policies(&IngressSpec::new(3)).unwrap();
        p.client.idle_timeout = Some(Duration::from_secs(90));
        let l = resource(&listeners_from(&p, &IngressSpec::new(3), &context()));
        assert_eq!(
            http_hcm(&l)["common_http_protocol_options"]["idle_timeout"],
            json!("90s")
        );
    }

    #[test]
    fn cookie_affinity_is_the_stateful_session_filter_switched_on_by_the_route() {
        let spec = cookie(Some(600));
        let hcm = http_hcm(&listener(&spec, &context())).clone();
        check_fields(
            &hcm,
            &[
                ("/http_filters/0/name", json!("envoy.filters.http.stateful_session")),
                ("/http_filters/0/disabled", json!(true)),
                (
                    "/http_filters/0/typed_config/session_state/typed_config/cookie/name",
                    json!("SESSION"),
                ),
                ("/http_filters/1/name", json!("envoy.filters.http.router")),
            ],
        );
        let route = the_route(&routes(&spec, &context())[0]).clone();
        let state = "/typed_per_filter_config/envoy.filters.http.stateful_session/stateful_session/session_state";
        check_fields(
            &route,
            &[
                (&format!("{state}/name"), json!("envoy.http.stateful_session.cookie")),
                (
                    &format!("{state}/typed_config/cookie"),
                    json!({ "name": "SESSION", "path": "/", "ttl": "600s" }),
                ),
            ],
        );
        // Without Max-Age it is a session cookie: no TTL.
        let route = the_route(&routes(&cookie(None), &context())[0]).clone();
        assert_eq!(
            route.pointer(&format!("{state}/typed_config/cookie")),
            Some(&json!({ "name": "SESSION", "path": "/" }))
        );
    }

    #[test]
    fn client_ip_affinity_hashes_the_source_address_over_maglev() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        let rds = &routes(&spec, &context())[0];
        assert_eq!(
            the_route(rds)["route"]["hash_policy"],
            json!([{ "connection_properties": { "source_ip": true } }])
        );
        check_fields(
            &clusters(&spec, &context())[0],
            &[(
                "/load_balancing_policy/policies/0/typed_extension_config/name",
                json!("envoy.load_balancing_policies.maglev"),
            )],
        );
    }

    #[test]
    fn clusters_are_eds_with_the_translators_defaults() {
        let c = &clusters(&IngressSpec::new(3), &context())[0];
        check_fields(
            c,
            &[
                ("/name", json!("httproute/default/ws-echo-echo-testbed-local/rule/0")),
                ("/type", json!("EDS")),
                (
                    "/eds_cluster_config/service_name",
                    json!("httproute/default/ws-echo-echo-testbed-local/rule/0"),
                ),
                (
                    "/eds_cluster_config/eds_config/path_config_source/path",
                    json!("/tmp/testbed-run/eds-0.yaml"),
                ),
                ("/connect_timeout", json!("10s")),
                ("/per_connection_buffer_limit_bytes", json!(32768)),
                ("/ignore_health_on_host_removal", json!(true)),
                ("/circuit_breakers/thresholds/0/max_retries", json!(1024)),
                (
                    "/load_balancing_policy/policies/0/typed_extension_config/name",
                    json!("envoy.load_balancing_policies.least_request"),
                ),
                (
                    "/load_balancing_policy/policies/0/typed_extension_config/typed_config/locality_lb_config",
                    json!({ "locality_weighted_lb_config": {} }),
                ),
            ],
        );
        // Envoy's own defaults (1024) apply: the translator renders none of them.
        let thresholds = &c["circuit_breakers"]["thresholds"][0];
        for unset in ["max_connections", "max_pending_requests", "max_requests"] {
            assert!(thresholds.get(unset).is_none(), "{unset}: {thresholds}");
        }
    }

    #[test]
    fn a_raised_circuit_breaker_reaches_the_routes_cluster_only() {
        let spec = IngressSpec::new(3).with_backend_connections(100_000);
        assert_eq!(policies(&spec).unwrap().backend.circuit_breaker, Some(100_000));
        let mut ctx = context();
        ctx.extra_routes.push(crate::render::local::ExtraRoute {
            host: "unrelated-1.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: None,
        });
        let all = clusters(&spec, &ctx);
        check_fields(
            &all[0],
            &[
                ("/circuit_breakers/thresholds/0/max_connections", json!(100_000)),
                ("/circuit_breakers/thresholds/0/max_pending_requests", json!(100_000)),
                ("/circuit_breakers/thresholds/0/max_requests", json!(100_000)),
                ("/circuit_breakers/thresholds/0/max_retries", json!(1024)),
            ],
        );
        assert!(all.len() > 1, "the extra route has its own cluster");
        for other in &all[1..] {
            assert!(
                other["circuit_breakers"]["thresholds"][0]
                    .get("max_connections")
                    .is_none(),
                "{other}"
            );
        }
    }

    #[test]
    fn endpoints_are_one_weighted_locality_and_terminating_pods_stay_as_draining() {
        let ctx = context();
        let ready = &ctx.backends.pods[..2];
        let draining = &ctx.backends.pods[2..];
        let files = render_endpoints(&IngressSpec::new(3), &ctx, ready, draining);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "eds-0.yaml");
        let cla = resource(&files[0].1);
        check_fields(
            &cla,
            &[
                (
                    "/cluster_name",
                    json!("httproute/default/ws-echo-echo-testbed-local/rule/0"),
                ),
                (
                    "/endpoints/0/locality/region",
                    json!("httproute/default/ws-echo-echo-testbed-local/rule/0/backend/0"),
                ),
                ("/endpoints/0/load_balancing_weight", json!(1)),
                (
                    "/endpoints/0/lb_endpoints/0/endpoint/address/socket_address",
                    json!({ "address": "127.0.1.1", "port_value": 18080 }),
                ),
                ("/endpoints/0/lb_endpoints/0/load_balancing_weight", json!(1)),
                ("/endpoints/0/lb_endpoints/2/health_status", json!("DRAINING")),
            ],
        );
        assert!(cla["endpoints"][0]["lb_endpoints"][0].get("health_status").is_none());
    }

    #[test]
    fn proxy_protocol_is_the_first_listener_filter() {
        let l = listener(
            &IngressSpec::new(3).with_proxy_protocol().with_tls(),
            &with_tls(context()),
        );
        let names: Vec<&str> = l["listener_filters"]
            .as_array()
            .expect("listener filters")
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.listener.proxy_protocol",
                "envoy.filters.listener.tls_inspector"
            ]
        );
        assert!(
            l["listener_filters"][0]["typed_config"]
                .get("allow_requests_without_proxy_protocol")
                .is_none()
        );
    }

    #[test]
    fn tls_is_a_filter_chain_per_hostname_matching_sni_with_the_certificate_over_sds() {
        let ctx = with_tls(context());
        let l = listener(&IngressSpec::new(3).with_tls(), &ctx);
        assert!(l.get("default_filter_chain").is_none());
        check_fields(
            &l,
            &[
                ("/name", json!("default/eg/echo-testbed-local-https")),
                (
                    "/listener_filters/0/name",
                    json!("envoy.filters.listener.tls_inspector"),
                ),
                ("/filter_chains/0/name", json!("default/eg/echo-testbed-local-https")),
                (
                    "/filter_chains/0/filter_chain_match/server_names",
                    json!(["echo.testbed.local"]),
                ),
                (
                    "/filter_chains/0/filters/0/typed_config/stat_prefix",
                    json!("https-18000"),
                ),
                (
                    "/filter_chains/0/transport_socket/typed_config/common_tls_context/alpn_protocols",
                    json!(["h2", "http/1.1"]),
                ),
                (
                    "/filter_chains/0/transport_socket/typed_config/common_tls_context/tls_certificate_sds_secret_configs/0/name",
                    json!("default/ws-echo-tls"),
                ),
                (
                    "/filter_chains/0/transport_socket/typed_config/disable_stateless_session_resumption",
                    json!(true),
                ),
            ],
        );
        let secret = resource(&render_secret(&ctx).expect("a secret with TLS"));
        check_fields(
            &secret,
            &[
                ("/name", json!("default/ws-echo-tls")),
                (
                    "/tls_certificate/certificate_chain/filename",
                    json!("/tmp/testbed-run/server.crt"),
                ),
                (
                    "/tls_certificate/private_key/filename",
                    json!("/tmp/testbed-run/server.key"),
                ),
            ],
        );
        assert!(render_secret(&context()).is_none());
    }

    #[test]
    fn a_listener_with_its_own_certificate_is_its_own_filter_chain_and_secret() {
        let mut ctx = with_route(with_tls(context()), "listener-1.testbed.local", "/");
        ctx.extra_routes[0].tls = Some(TlsPaths {
            cert: "/tmp/testbed-run/listener-1.crt".into(),
            key: "/tmp/testbed-run/listener-1.key".into(),
            bundle: "/tmp/testbed-run/listener-1.pem".into(),
        });
        let spec = IngressSpec::new(1).with_tls();
        let l = listener(&spec, &ctx);
        let sds = "/transport_socket/typed_config/common_tls_context/tls_certificate_sds_secret_configs/0";
        check_fields(
            &l["filter_chains"][0],
            &[(&format!("{sds}/name"), json!("default/ws-echo-tls"))],
        );
        check_fields(
            &l["filter_chains"][1],
            &[
                ("/filter_chain_match/server_names", json!(["listener-1.testbed.local"])),
                (&format!("{sds}/name"), json!("default/listener-1-tls")),
                (
                    &format!("{sds}/sds_config/path_config_source/path"),
                    json!("/tmp/testbed-run/sds-listener-1-tls.yaml"),
                ),
            ],
        );
        let own = render_own_secrets(&ctx);
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].0, "sds-listener-1-tls.yaml");
        check_fields(
            &resource(&own[0].1),
            &[
                ("/name", json!("default/listener-1-tls")),
                (
                    "/tls_certificate/certificate_chain/filename",
                    json!("/tmp/testbed-run/listener-1.crt"),
                ),
            ],
        );
    }

    /// The file names and texts of a rendered set, keyed by name.
    fn files(spec: &IngressSpec, ctx: &LocalContext) -> BTreeMap<String, String> {
        render_files(spec, ctx, &Admin::socket(ctx))
            .expect("renders")
            .into_iter()
            .collect()
    }

    /// The names of the files whose text differs between two rendered sets (or exists in one).
    fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
        let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        names.into_iter().filter(|n| a.get(*n) != b.get(*n)).cloned().collect()
    }

    #[test]
    fn an_endpoint_change_rewrites_only_the_eds_file() {
        let spec = IngressSpec::new(3);
        let before = files(&spec, &context());
        let mut ctx = context();
        ctx.backends.pods.pop();
        assert_eq!(changed(&before, &files(&spec, &ctx)), ["eds-0.yaml"]);
    }

    #[test]
    fn a_new_http_route_leaves_the_listener_and_adds_a_virtual_host_and_a_cluster() {
        let spec = IngressSpec::new(3);
        let ctx = with_route(context(), "other.testbed.local", "/");
        let after = files(&spec, &ctx);
        assert_eq!(
            changed(&files(&spec, &context()), &after),
            ["cds.yaml", "eds-1.yaml", "rds-0.yaml"]
        );
        let rds = resource(&after["rds-0.yaml"]);
        check_fields(
            &rds,
            &[
                (
                    "/virtual_hosts/1/name",
                    json!("default/eg/other-testbed-local-http/other_testbed_local"),
                ),
                (
                    "/virtual_hosts/1/routes/0/route/cluster",
                    json!("httproute/default/ws-echo-other-testbed-local/rule/0"),
                ),
            ],
        );
        assert_eq!(
            resource(&after["eds-1.yaml"])["cluster_name"],
            json!("httproute/default/ws-echo-other-testbed-local/rule/0")
        );
    }

    #[test]
    fn a_second_path_on_the_host_is_the_next_rule_of_its_httproute_and_matches_first() {
        let ctx = with_route(context(), "echo.testbed.local", "/api");
        let rds = &routes(&IngressSpec::new(3), &ctx)[0];
        let vhosts = rds["virtual_hosts"].as_array().expect("virtual hosts");
        assert_eq!(vhosts.len(), 1);
        check_fields(
            &vhosts[0],
            &[
                ("/routes/0/match", json!({ "path_separated_prefix": "/api" })),
                (
                    "/routes/0/route/cluster",
                    json!("httproute/default/ws-echo-echo-testbed-local/rule/1"),
                ),
                ("/routes/1/match", json!({ "prefix": "/" })),
            ],
        );
        assert_eq!(clusters(&IngressSpec::new(3), &ctx).len(), 2);
    }

    #[test]
    fn a_new_https_hostname_adds_a_filter_chain_to_the_listener() {
        let spec = IngressSpec::new(3).with_tls();
        let ctx = with_route(with_tls(context()), "other.testbed.local", "/");
        let after = files(&spec, &ctx);
        assert_eq!(
            changed(&files(&spec, &with_tls(context())), &after),
            ["cds.yaml", "eds-1.yaml", "lds.yaml", "rds-1.yaml"]
        );
        let l = resource(&after["lds.yaml"]);
        check_fields(
            &l,
            &[
                ("/filter_chains/1/name", json!("default/eg/other-testbed-local-https")),
                (
                    "/filter_chains/1/filter_chain_match/server_names",
                    json!(["other.testbed.local"]),
                ),
                (
                    "/filter_chains/1/filters/0/typed_config/rds/route_config_name",
                    json!("default/eg/other-testbed-local-https"),
                ),
            ],
        );
        // The first chain is unchanged, so Envoy keeps its connections.
        let before = resource(&files(&spec, &with_tls(context()))["lds.yaml"]);
        assert_eq!(before["filter_chains"][0], l["filter_chains"][0]);
    }

    #[test]
    fn session_persistence_and_the_load_balancer_stay_on_the_specs_route() {
        let spec = cookie(None);
        let ctx = with_route(context(), "other.testbed.local", "/");
        let rds = &routes(&spec, &ctx)[0];
        assert!(
            rds["virtual_hosts"][0]["routes"][0]
                .get("typed_per_filter_config")
                .is_some()
        );
        assert!(
            rds["virtual_hosts"][1]["routes"][0]
                .get("typed_per_filter_config")
                .is_none()
        );
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        let c = clusters(&spec, &ctx);
        let lb = |c: &Value| c["load_balancing_policy"]["policies"][0]["typed_extension_config"]["name"].clone();
        assert_eq!(lb(&c[0]), json!("envoy.load_balancing_policies.maglev"));
        assert_eq!(lb(&c[1]), json!("envoy.load_balancing_policies.least_request"));
    }

    #[test]
    fn read_send_and_tunnel_timeouts_are_inexpressible() {
        for knob in ["timeouts.read", "timeouts.send", "timeouts.tunnel"] {
            let mut spec = IngressSpec::new(3);
            let t = &mut spec.timeouts;
            *match knob {
                "timeouts.read" => &mut t.read,
                "timeouts.send" => &mut t.send,
                _ => &mut t.tunnel,
            } = Some(Duration::from_secs(3));
            let err = render_files(&spec, &context(), &Admin::socket(&context())).unwrap_err();
            assert_eq!(err.knob, knob);
            assert!(err.reason.contains("envoyproxy/gateway v1.9.0"), "{err}");
            assert_eq!(err.unsupported(Controller::Nginx).knob, knob);
        }
    }

    #[test]
    fn the_bootstrap_reads_listeners_and_clusters_from_files() {
        let ctx = context();
        let b = parse(&render_bootstrap(&ctx, &Admin::socket(&ctx)));
        check_fields(
            &b,
            &[
                ("/admin/address/pipe/path", json!("/tmp/testbed-run/envoy-admin.sock")),
                ("/admin/access_log/0/typed_config/path", json!("/dev/null")),
                (
                    "/dynamic_resources/lds_config/path_config_source/path",
                    json!("/tmp/testbed-run/lds.yaml"),
                ),
                (
                    "/dynamic_resources/cds_config/path_config_source/path",
                    json!("/tmp/testbed-run/cds.yaml"),
                ),
                (
                    "/overload_manager/resource_monitors/0/typed_config/max_active_downstream_connections",
                    json!(50000),
                ),
            ],
        );
        let b = parse(&render_bootstrap(
            &ctx,
            &Admin::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
        ));
        assert_eq!(
            b["admin"]["address"],
            json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } })
        );
    }

    #[test]
    fn the_command_line_is_envoy_gateways_with_the_drain_limit_as_drain_time() {
        let ctx = context();
        let text = |spec: &IngressSpec| {
            args(spec, &ctx)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(&IngressSpec::new(3)),
            "-c /tmp/testbed-run/envoy-bootstrap.yaml --service-cluster default/eg \
             --service-node envoy-default-eg-local --log-level warn --cpuset-threads \
             --drain-strategy immediate --drain-time-s 60 --disable-hot-restart \
             --admin-address-path /tmp/testbed-run/envoy-admin-address"
        );
        let drain = |d: Duration| drain_time_secs(&IngressSpec::new(3).with_data_plane_drain_limit(d));
        assert_eq!(drain(Duration::from_secs(5)), 5);
        // Go's %.0f: half to even.
        assert_eq!(drain(Duration::from_millis(2500)), 2);
        assert_eq!(drain(Duration::from_millis(3500)), 4);
        assert!(
            text(&IngressSpec::new(3).with_data_plane_drain_limit(Duration::from_secs(5)))
                .contains("--drain-time-s 5 ")
        );
    }

    #[test]
    fn proto_durations_are_seconds_with_a_fraction() {
        assert_eq!(proto_duration(Duration::from_secs(3)), "3s");
        assert_eq!(proto_duration(Duration::from_millis(250)), "0.25s");
        assert_eq!(proto_duration(Duration::from_nanos(1_000_000_001)), "1.000000001s");
    }

    #[test]
    fn listener_and_route_names_are_ingress2gateways() {
        assert_eq!(
            gateway_listener_name("echo.testbed.local", false),
            "echo-testbed-local-http"
        );
        assert_eq!(gateway_listener_name("*", true), "all-hosts-https");
        assert_eq!(gateway_listener_name("a..b", false), "a-b-http");
        assert_eq!(httproute_name("echo.testbed.local"), "ws-echo-echo-testbed-local");
        assert_eq!(service_cluster(), "default/eg");
    }

    // ---- Envoy itself ----

    /// The envoy binary, as `tools::data_plane` finds data planes (the override variable, else
    /// `target/tools/bin/envoy`); a missing one fails with the install command, as the other
    /// data planes' tests do.
    fn envoy() -> PathBuf {
        const ENV_VAR: &str = "TESTBED_ENVOY";
        let path = match std::env::var_os(ENV_VAR) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => crate::tools::tools_dir().join("bin").join("envoy"),
        };
        if !path.is_file() {
            panic!(
                "{}",
                crate::tools::ToolsError::DataPlaneMissing {
                    tool: "envoy",
                    path,
                    env_var: ENV_VAR,
                }
            );
        }
        path
    }

    /// A spec's rendered files written into a fresh runtime directory, with real TLS files.
    struct Written {
        dir: tempfile::TempDir,
        spec: IngressSpec,
        ctx: LocalContext,
        files: BTreeMap<String, String>,
    }

    fn write(spec: IngressSpec, extra_host: Option<&str>) -> Written {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ctx = context();
        ctx.runtime_dir = dir.path().to_path_buf();
        ctx.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let ca = spec
            .tls
            .then(|| probe::tls::TestCa::generate(&[&spec.host, "other.testbed.local"]).expect("test CA"));
        if let Some(ca) = &ca {
            ctx.tls = Some((&ca.write_to(dir.path()).expect("TLS files")).into());
        }
        if let Some(host) = extra_host {
            ctx = with_route(ctx, host, "/");
            // A listener change: the new host comes with its own certificate.
            if let Some(ca) = ca.as_ref().filter(|_| host.starts_with("listener-")) {
                let own = ca.issue(&[host]).expect("own certificate");
                let files = own.write_named(dir.path(), "listener-1").expect("own TLS files");
                if let Some(route) = ctx.extra_routes.last_mut() {
                    route.tls = Some((&files).into());
                }
            }
        }
        let admin = Admin::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)));
        let files: BTreeMap<String, String> = render_files(&spec, &ctx, &admin)
            .expect("renders")
            .into_iter()
            .collect();
        for (name, text) in &files {
            std::fs::write(dir.path().join(name), text).expect("writing a rendered file");
        }
        Written { dir, spec, ctx, files }
    }

    /// The bootstrap with every file-based resource inlined (listeners with their route
    /// configurations, clusters with their endpoints, the secret): `--mode validate` checks a
    /// bootstrap and its static resources but never reads xDS files.
    fn inlined(w: &Written) -> Value {
        let by_path = |path: &str| -> Value {
            let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let text = w
                .files
                .get(name)
                .unwrap_or_else(|| panic!("{path} is not a rendered file"));
            let mut r = resource(text);
            r.as_object_mut().map(|o| o.remove("@type"));
            r
        };
        fn walk(v: &mut Value, by_path: &dyn Fn(&str) -> Value) {
            match v {
                Value::Object(o) => {
                    if let Some(path) = o
                        .get("rds")
                        .and_then(|r| r.pointer("/config_source/path_config_source/path"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                    {
                        o.remove("rds");
                        o.insert("route_config".into(), by_path(&path));
                    }
                    o.remove("sds_config");
                    for child in o.values_mut() {
                        walk(child, by_path);
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|c| walk(c, by_path)),
                _ => {}
            }
        }
        let mut boot = parse(&w.files[BOOTSTRAP_FILE]);
        boot.as_object_mut().map(|o| o.remove("dynamic_resources"));
        let strip = |mut r: Value| {
            r.as_object_mut().map(|o| o.remove("@type"));
            r
        };
        let mut listeners: Vec<Value> = parse(&w.files[LDS_FILE])["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(strip)
            .collect();
        listeners.iter_mut().for_each(|l| walk(l, &by_path));
        let clusters: Vec<Value> = parse(&w.files[CDS_FILE])["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let mut c = strip(c);
                let path = c
                    .pointer("/eds_cluster_config/eds_config/path_config_source/path")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .expect("an EDS cluster");
                let o = c.as_object_mut().expect("a cluster");
                o.remove("eds_cluster_config");
                o.insert("type".into(), json!("STATIC"));
                o.insert("load_assignment".into(), by_path(&path));
                c
            })
            .collect();
        let mut statics = json!({ "listeners": listeners, "clusters": clusters });
        let secrets: Vec<Value> = (w.files.iter())
            .filter(|(name, _)| name.starts_with("sds-"))
            .map(|(_, sds)| strip(resource(sds)))
            .collect();
        if !secrets.is_empty() {
            statics["secrets"] = Value::Array(secrets);
        }
        boot["static_resources"] = statics;
        boot
    }

    /// Runs envoy with `args`, its output captured; returns (success, output).
    fn run_envoy(args: &[OsString]) -> (bool, String) {
        let out = std::process::Command::new(envoy())
            .args(args)
            .output()
            .expect("running envoy");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// An envoy started on the rendered files, killed on drop.
    struct Running(std::process::Child);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `GET <path>` on the admin interface; the body.
    fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(admin)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default())
    }

    /// Every counter and gauge on the admin interface, by name.
    fn stats(admin: SocketAddr) -> BTreeMap<String, u64> {
        admin_get(admin, "/stats")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Starts envoy on the rendered files and waits until it is live (every xDS resource
    /// initialised) or the deadline passes; returns the process, its admin address and stats.
    fn start(w: &Written) -> (Running, SocketAddr, BTreeMap<String, u64>) {
        let address_file = w.dir.path().join(ADMIN_ADDRESS_FILE);
        let child = std::process::Command::new(envoy())
            .args(args(&w.spec, &w.ctx))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(w.dir.path().join("envoy.log")).expect("log file"))
            .spawn()
            .expect("starting envoy");
        let running = Running(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut last = BTreeMap::new();
        loop {
            let admin: Option<SocketAddr> = std::fs::read_to_string(&address_file)
                .ok()
                .and_then(|a| a.trim().parse().ok());
            if let Some(admin) = admin {
                last = stats(admin);
                // server.state 0 is LIVE: listeners, routes, clusters, endpoints and secrets
                // all initialised.
                if last.get("server.state") == Some(&0) {
                    return (running, admin, last);
                }
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(w.dir.path().join("envoy.log")).unwrap_or_default();
                panic!("envoy did not go live within 20 s; last stats {last:?}\nlog:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spec_named(name: &str) -> (IngressSpec, Option<&'static str>) {
        let secs = Duration::from_secs;
        match name {
            "plain" => (IngressSpec::new(3), None),
            "tls" => (IngressSpec::new(3).with_tls(), None),
            "proxy_protocol" => (IngressSpec::new(3).with_proxy_protocol(), None),
            "proxy_protocol_and_tls" => (IngressSpec::new(3).with_proxy_protocol().with_tls(), None),
            "cookie_affinity" => (cookie(Some(600)), None),
            "session_cookie_affinity" => (cookie(None), None),
            "client_ip_affinity" => (IngressSpec::new(3).with_affinity(Affinity::ClientIp), None),
            "idle_timeout_and_drain_limit" => (
                IngressSpec::new(3)
                    .with_idle_timeout(Duration::from_millis(2500))
                    .with_data_plane_drain_limit(secs(5)),
                None,
            ),
            "extra_route" => (cookie(None), Some("other.testbed.local")),
            "extra_https_route" => (
                IngressSpec::new(3).with_tls().with_affinity(Affinity::ClientIp),
                Some("other.testbed.local"),
            ),
            "https_listener_with_its_own_certificate" => {
                (IngressSpec::new(3).with_tls(), Some("listener-1.testbed.local"))
            }
            "raised_circuit_breaker" => (
                IngressSpec::new(3).with_backend_connections(100_000),
                Some("other.testbed.local"),
            ),
            other => panic!("no spec named {other}"),
        }
    }

    /// The pinned Envoy accepts what the renderer writes: `--mode validate` over the bootstrap with
    /// every resource inlined, then a real start on the files (file-based LDS, RDS, CDS, EDS and
    /// SDS) until the server is live with every update accepted.
    #[rstest::rstest]
    fn envoy_accepts_the_rendered_configuration(
        #[values(
            "plain",
            "tls",
            "proxy_protocol",
            "proxy_protocol_and_tls",
            "cookie_affinity",
            "session_cookie_affinity",
            "client_ip_affinity",
            "idle_timeout_and_drain_limit",
            "extra_route",
            "extra_https_route",
            "https_listener_with_its_own_certificate",
            "raised_circuit_breaker"
        )]
        name: &str,
    ) {
        let (spec, extra) = spec_named(name);
        let w = write(spec, extra);

        let validation = w.dir.path().join("validate.yaml");
        std::fs::write(&validation, serde_yaml_ng::to_string(&inlined(&w)).unwrap()).unwrap();
        let (ok, output) = run_envoy(&[
            "--mode".into(),
            "validate".into(),
            "--disable-hot-restart".into(),
            "-c".into(),
            validation.into_os_string(),
        ]);
        assert!(ok, "envoy --mode validate refused {name}:\n{output}");

        let (_envoy, _admin, stats) = start(&w);
        let problems: Vec<String> = stats
            .iter()
            .filter(|(k, v)| (k.ends_with(".update_rejected") || k.ends_with(".update_failure")) && **v > 0)
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let routes = 1 + usize::from(extra.is_some());
        let expect = [
            ("listener_manager.lds.update_success", 1),
            ("listener_manager.total_listeners_active", 1),
            ("cluster_manager.cds.update_success", 1),
            ("cluster_manager.active_clusters", routes as u64),
        ];
        for (stat, want) in expect {
            assert_eq!(stats.get(stat), Some(&want), "{name}: {stat}");
        }
        for b in bindings(&w.spec, &w.ctx) {
            let cluster = b.cluster();
            assert_eq!(
                stats.get(&format!("cluster.{cluster}.membership_total")),
                Some(&3),
                "{name}: endpoints of {cluster}"
            );
        }
    }
}

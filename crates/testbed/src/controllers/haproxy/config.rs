//! haproxy.cfg and the routing maps as the HAProxy Kubernetes Ingress controller writes them.
//!
//! The controller runs HAProxy in master-worker mode, keeps a backend per
//! Service port with a fixed number of `server` slots, and fills or empties
//! the slots over the runtime API when endpoints change (no reload). Routing
//! is data too: host and path rows live in map files the frontend looks up,
//! replaced over the runtime API when Ingress rules change (no reload). TLS
//! certificates are files in one directory the HTTPS bind serves; a new one is
//! written there and added over the runtime API (no reload). Other
//! changes (a new backend, frontend rules, global/defaults settings, binds)
//! rewrite the file and reload; old workers keep their connections until
//! `hard-stop-after`. Defaults follow the controller's shipped haproxy.cfg and
//! pkg/haproxy/env/defaults.go (haproxytech/kubernetes-ingress v3.2.6).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::timeouts::{self, Scope};
use crate::render::kind::TLS_SECRET_NAME;
use crate::render::local::{LocalContext, NAMESPACE, Result, SERVICE, TlsPaths, duration_value};
use model::EnvKind;
use model::capability::check;
use model::{Affinity, Controller, IngressSpec};

/// The controller's `scale-server-slots` default.
pub const DEFAULT_SERVER_SLOTS: u32 = 42;
/// The controller's `hard-stop-after` default.
pub const DEFAULT_HARD_STOP_AFTER: Duration = Duration::from_secs(30 * 60);
/// Where an empty slot points (never dialled: the slot is in maintenance).
pub const EMPTY_SLOT_ADDR: &str = "127.0.0.1:1";

/// Defaults from the controller's haproxy.cfg, in its order.
pub const DEFAULT_TIMEOUTS: [(&str, Duration); 6] = [
    ("http-request", Duration::from_secs(5)),
    ("connect", Duration::from_secs(5)),
    ("client", Duration::from_secs(50)),
    ("queue", Duration::from_secs(5)),
    ("server", Duration::from_secs(50)),
    ("tunnel", Duration::from_secs(3600)),
];
/// `timeout http-keep-alive` default (1m).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// The ConfigMap key `Deployment::apply_controller_change` changes. It lands in `defaults`
/// (pkg/annotations/annotations.go `Defaults`, pkg/annotations/global/timeout.go), and a
/// `defaults` change makes the controller reload ("Defaults config updated",
/// pkg/controller/global.go `defaultsCfg`). It only bounds how long a request queues for a
/// server, so it does nothing to an established WebSocket itself.
pub const CHANGED_KEY: &str = "timeout-queue";

/// The value of [`CHANGED_KEY`] after `changes` controller changes: its default (5s) plus a
/// second per change, so every change is a new value.
pub fn changed_queue_timeout(changes: u32) -> Duration {
    let default = DEFAULT_TIMEOUTS
        .iter()
        .find(|(name, _)| *name == "queue")
        .map_or(Duration::from_secs(5), |(_, d)| *d);
    default + Duration::from_secs(u64::from(changes))
}

/// One of the routing maps the controller keeps (pkg/route/route.go: `HOST`, `PATH_EXACT`,
/// `PATH_PREFIX_EXACT`, `PATH_PREFIX`). They are persistent (pkg/haproxy/main.go `New`): the
/// files exist, empty or not, because the frontend's rules always read them. The persistent
/// `sni` map is only read by the SSL-passthrough frontend, which the testbed never renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteMap {
    Host,
    PathExact,
    PathPrefixExact,
    PathPrefix,
}

impl RouteMap {
    pub const ALL: [RouteMap; 4] = [
        RouteMap::Host,
        RouteMap::PathExact,
        RouteMap::PathPrefixExact,
        RouteMap::PathPrefix,
    ];

    /// `maps/<name>.map` in the configuration directory, as pkg/haproxy/maps/main.go `GetPath`
    /// and pkg/haproxy/env/main.go (`MapsDir`) place it.
    pub fn relative_path(self) -> &'static str {
        match self {
            RouteMap::Host => "maps/host.map",
            RouteMap::PathExact => "maps/path-exact.map",
            RouteMap::PathPrefixExact => "maps/path-prefix-exact.map",
            RouteMap::PathPrefix => "maps/path-prefix.map",
        }
    }
}

/// The rows of every routing map, each map's rows sorted as the controller sorts them before it
/// writes or sends them (pkg/haproxy/maps/main.go `getContent`).
pub type MapRows = BTreeMap<RouteMap, Vec<String>>;

/// The maps directory: `<config dir>/maps` (pkg/haproxy/env/main.go `MapsDir`).
pub fn maps_dir(ctx: &LocalContext) -> PathBuf {
    ctx.runtime_dir.join("maps")
}

pub fn map_path(ctx: &LocalContext, map: RouteMap) -> PathBuf {
    ctx.runtime_dir.join(map.relative_path())
}

/// The map rows for the spec's route and every extra route (each another Ingress rule for the
/// same Service, so the same backend).
pub fn route_maps(spec: &IngressSpec, ctx: &LocalContext) -> MapRows {
    let backend = backend_name();
    let mut maps: MapRows = RouteMap::ALL.into_iter().map(|m| (m, Vec::new())).collect();
    let mut routes = vec![(spec.host.as_str(), spec.path.as_str())];
    routes.extend(ctx.extra_routes.iter().map(|r| (r.host.as_str(), r.path.as_str())));
    for (host, path) in routes {
        add_prefix_route(&mut maps, host, path, &backend);
    }
    for rows in maps.values_mut() {
        rows.sort();
        rows.dedup();
    }
    maps
}

/// The rows pkg/route/route.go `AddHostPathRoute` appends for a host and a `pathType: Prefix`
/// path (the kind renderer's Ingress uses Prefix): the host maps to itself in `host`; `/` is one
/// `path-prefix` row, any other path an exact row without its trailing slash plus a prefix row
/// with one. Columns are separated by three tabs, as there.
fn add_prefix_route(maps: &mut MapRows, host: &str, path: &str, backend: &str) {
    let mut row = |map: RouteMap, key: String, value: &str| {
        if let Some(rows) = maps.get_mut(&map) {
            rows.push(format!("{key}\t\t\t{value}"));
        }
    };
    row(RouteMap::Host, host.to_owned(), host);
    if path.is_empty() || path == "/" {
        row(RouteMap::PathPrefix, format!("{host}/"), backend);
    } else {
        let path = path.trim_end_matches('/');
        row(RouteMap::PathPrefixExact, format!("{host}{path}"), backend);
        row(RouteMap::PathPrefix, format!("{host}{path}/"), backend);
    }
}

/// A map file's text: one row a line (pkg/haproxy/maps/main.go `getContent`).
pub fn map_file_text(rows: &[String]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// HAProxy's default `tune.bufsize`, which bounds one runtime API payload
/// (pkg/haproxy/api/api.go `BufferSize`).
pub const RUNTIME_BUFFER_SIZE: usize = 16000;

/// `prepare map <file>`: a new, empty version of the map to fill (client-native's `PrepareMap`,
/// called by pkg/haproxy/api/runtime.go `SetMapContent`).
pub fn prepare_map_command(path: &Path) -> String {
    format!("prepare map {}", path.display())
}

/// The version number in `prepare map`'s answer (`New version created: 3`).
pub fn parse_prepared_version(answer: &str) -> Option<u32> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("New version created:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `add map @<version> <file> <<` with the rows as payload, in chunks that each stay under
/// [`RUNTIME_BUFFER_SIZE`], as `SetMapContent` sends them. Each command ends with the payload's
/// last row; the runtime API client's final newline closes the payload with an empty line.
pub fn add_map_commands(version: u32, path: &Path, rows: &[String]) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    let mut chunk = String::new();
    for row in rows {
        if !chunk.is_empty() && chunk.len() + row.len() >= RUNTIME_BUFFER_SIZE {
            chunks.push(std::mem::take(&mut chunk));
        }
        chunk.push_str(row);
        chunk.push('\n');
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
        .into_iter()
        .map(|payload| format!("add map @{version} {} <<\n{payload}", path.display()))
        .collect()
}

/// `commit map @<version> <file>`: the prepared version replaces the live one atomically.
pub fn commit_map_command(version: u32, path: &Path) -> String {
    format!("commit map @{version} {}", path.display())
}

/// The HTTPS bind's ALPN: the controller's `tls-alpn` default (pkg/annotations/common/main.go),
/// which pkg/haproxy/api/frontend.go `FrontendEnableSSLOffload` puts on the bind.
pub const TLS_ALPN: &str = "h2,http/1.1";

/// The frontend certificates directory, `<config dir>/certs/frontend` (pkg/haproxy/env/main.go
/// `Certs.FrontendDir`). The HTTPS bind serves the whole directory (`ssl crt <dir>`:
/// `FrontendEnableSSLOffload` sets `bind.SslCertificate = certDir`, the handler's `CertDir` being
/// `c.haproxy.Certs.FrontendDir`, pkg/controller/handler.go), and the directory is also the name
/// of that bind's crt-list on the runtime API.
pub fn certs_dir(ctx: &LocalContext) -> PathBuf {
    ctx.runtime_dir.join("certs").join("frontend")
}

/// The file the controller writes for a frontend TLS Secret: `<namespace>_<secret name>.pem`
/// (pkg/haproxy/certs/main.go `AddSecret`, `FT_CERT`, and `writeSecret`'s `.pem`).
pub fn cert_file_name(secret: &str) -> String {
    format!("{NAMESPACE}_{secret}.pem")
}

/// The TLS Secret of an extra route that has its own certificate: named after its host's first
/// label (`listener-1` for `listener-1.testbed.local`), so each host's Secret keeps its name.
pub fn route_secret_name(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// One certificate the HTTPS bind serves: the file in [`certs_dir`] and the TLS files the testbed
/// keeps the Secret's data in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendCert {
    pub path: PathBuf,
    pub tls: TlsPaths,
}

/// Every certificate the HTTPS bind serves: the spec's ([`TLS_SECRET_NAME`], as the kind
/// renderer's Ingress names it) and each extra route's own, in that order. None without a TLS
/// listener: the local data plane has one listener, and it serves certificates only when the
/// spec asks for TLS.
pub fn frontend_certs(ctx: &LocalContext) -> Vec<FrontendCert> {
    let Some(tls) = &ctx.tls else {
        return Vec::new();
    };
    let dir = certs_dir(ctx);
    let mut certs = vec![FrontendCert {
        path: dir.join(cert_file_name(TLS_SECRET_NAME)),
        tls: tls.clone(),
    }];
    for route in &ctx.extra_routes {
        let Some(tls) = &route.tls else { continue };
        let path = dir.join(cert_file_name(route_secret_name(&route.host)));
        if !certs.iter().any(|c| c.path == path) {
            certs.push(FrontendCert { path, tls: tls.clone() });
        }
    }
    certs
}

/// A certificate file's text: the Secret's `tls.key`, then its `tls.crt` (the chain), as
/// pkg/haproxy/certs/main.go `certContent` joins them.
pub fn cert_file_text(key: &str, chain: &str) -> String {
    let mut text = key.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(chain);
    text
}

/// `new ssl cert <file>`: an empty certificate store for a new file (client-native's
/// `NewCertificate`, called by pkg/haproxy/certs/main.go `updateRuntime`).
pub fn new_cert_command(path: &Path) -> String {
    format!("new ssl cert {}", path.display())
}

/// Whether `new ssl cert` created the store (`New empty certificate store '<file>'!`), as
/// client-native checks it.
pub fn new_cert_created(answer: &str) -> bool {
    answer.contains("New empty certificate store")
}

/// Whether `new ssl cert` found the store there already (`Certificate '<file>' already
/// exists!`): `updateRuntime` then updates it and leaves the crt-list alone.
pub fn cert_already_exists(answer: &str) -> bool {
    answer.contains("already exists")
}

/// `set ssl cert <file> <<` with the file's text as payload (client-native's `SetCertificate`).
/// The command ends with the payload's last line; the runtime API client's final newline
/// closes the payload with an empty line, as with [`add_map_commands`].
pub fn set_cert_command(path: &Path, text: &str) -> String {
    let mut command = format!("set ssl cert {} <<\n{text}", path.display());
    if !command.ends_with('\n') {
        command.push('\n');
    }
    command
}

/// Whether `set ssl cert` opened or updated its transaction (`Transaction created for
/// certificate <file>!`), as client-native's `transactionOK` checks it (case-insensitively).
pub fn cert_transaction_ok(answer: &str) -> bool {
    let answer = answer.to_lowercase();
    answer.contains("transaction created") || answer.contains("transaction updated")
}

/// `commit ssl cert <file>` (client-native's `CommitCertificate`).
pub fn commit_cert_command(path: &Path) -> String {
    format!("commit ssl cert {}", path.display())
}

/// Whether the commit succeeded (`Committing <file>` then `Success!`), as client-native checks it.
pub fn cert_committed(answer: &str) -> bool {
    answer.contains("Committing") && answer.contains("Success!")
}

/// `add ssl crt-list <dir> <file>`: a new certificate joins the directory bind's crt-list
/// (client-native's `AddCrtListEntry`; pkg/haproxy/certs/main.go `updateRuntime` passes the
/// file's directory as the crt-list).
pub fn add_crt_list_command(dir: &Path, path: &Path) -> String {
    format!("add ssl crt-list {} {}", dir.display(), path.display())
}

/// Whether the crt-list took the certificate (`Inserting certificate '<file>' in crt-list
/// '<dir>'.` then `Success!`), as client-native checks it.
pub fn crt_list_added(answer: &str) -> bool {
    answer.contains("Success")
}

/// The backend name the controller uses: `<namespace>_svc_<service>_<port name or number>`.
pub fn backend_name() -> String {
    format!("{NAMESPACE}_svc_{SERVICE}_http")
}

/// The name of slot `n` (1-based), as in the controller's `SRV_<n>`.
pub fn slot_name(n: u32) -> String {
    format!("SRV_{n}")
}

/// The master CLI socket (`-S`), the runtime API socket and the pid file inside the runtime dir.
pub fn master_socket(ctx: &LocalContext) -> std::path::PathBuf {
    ctx.runtime_dir.join("haproxy-master.sock")
}

pub fn runtime_socket(ctx: &LocalContext) -> std::path::PathBuf {
    ctx.runtime_dir.join("haproxy-runtime-api.sock")
}

/// Renders haproxy.cfg. `slots` gives each slot's current pod (`None` = empty);
/// when shorter than the slot count, the rest are empty. Pass
/// `ctx.backends.pods` on first start.
pub fn render(spec: &IngressSpec, ctx: &LocalContext, slots: &[Option<SocketAddr>]) -> Result<String> {
    render_with_changes(spec, ctx, slots, 0)
}

/// [`render`] after `changes` controller changes ([`CHANGED_KEY`]).
pub fn render_with_changes(
    spec: &IngressSpec,
    ctx: &LocalContext,
    slots: &[Option<SocketAddr>],
    changes: u32,
) -> Result<String> {
    check(Controller::Haproxy, EnvKind::Local, spec)?;
    let dir = ctx.runtime_dir.display();
    let backend = backend_name();
    let timeouts = timeouts::timeouts(spec);
    let hard_stop = spec.data_plane.drain_limit.unwrap_or(DEFAULT_HARD_STOP_AFTER);

    let mut c = String::new();
    let w = &mut c;
    let _ = writeln!(
        w,
        "# Rendered by testbed as the HAProxy Kubernetes Ingress controller writes haproxy.cfg."
    );
    let _ = writeln!(w, "global");
    let _ = writeln!(w, "  master-worker");
    let _ = writeln!(w, "  pidfile {dir}/haproxy.pid");
    let _ = writeln!(
        w,
        "  stats socket {} level admin expose-fd listeners",
        runtime_socket(ctx).display()
    );
    // The controller's global defaults: `stats timeout` 36000 ms, these bind options, and in
    // `defaults` no maxconn and no `option redispatch` (pkg/haproxy/env/defaults.go at v3.2.6), so a
    // connection a stopped pod refuses is retried on the same server and answered 503.
    let _ = writeln!(w, "  stats timeout 36s");
    let _ = writeln!(
        w,
        "  # hard-stop-after: old workers end their connections this long after a reload."
    );
    let _ = writeln!(w, "  hard-stop-after {}", duration_value(hard_stop));
    let _ = writeln!(w, "  log stderr format raw local0 notice");
    let _ = writeln!(w, "  ssl-default-bind-options no-sslv3 no-tls-tickets no-tlsv10");
    let _ = writeln!(w);
    let _ = writeln!(w, "defaults");
    let _ = writeln!(w, "  log global");
    let _ = writeln!(w, "  log-tag ingress");
    let _ = writeln!(w, "  mode http");
    let _ = writeln!(w, "  option dontlognull");
    let _ = writeln!(w, "  option http-keep-alive");
    for (name, default) in DEFAULT_TIMEOUTS {
        // The ConfigMap's timeout keys land here (render::haproxy, shared with kind).
        let value = timeouts
            .iter()
            .find(|k| k.scope == Scope::ConfigMap && k.directive() == name)
            .map_or(default, |k| k.value);
        if changes > 0 && CHANGED_KEY.strip_prefix("timeout-") == Some(name) {
            let _ = writeln!(w, "  # {CHANGED_KEY} (ConfigMap), controller change {changes}");
            let _ = writeln!(w, "  timeout {name} {}", duration_value(changed_queue_timeout(changes)));
            continue;
        }
        let _ = writeln!(w, "  timeout {name} {}", duration_value(value));
    }
    let _ = writeln!(w, "  timeout http-keep-alive {}", duration_value(DEFAULT_KEEP_ALIVE));
    let _ = writeln!(w);

    let _ = writeln!(w, "frontend http");
    let mut bind = format!("  bind {}", ctx.listen);
    if spec.proxy_protocol {
        bind.push_str(" accept-proxy");
    }
    if ctx.tls.is_some() {
        // The controller's HTTPS bind: the certificates directory, every Secret a file in it
        // ([`frontend_certs`]), and `tls-alpn`'s default.
        let _ = write!(bind, " ssl crt {} alpn {TLS_ALPN}", certs_dir(ctx).display());
    }
    let _ = writeln!(w, "{bind}");
    let _ = writeln!(w, "  mode http");
    let _ = writeln!(w, "  option forwardfor");
    // Backend switching through the routing maps: the set-var rules of pkg/controller/controller.go
    // `setupHAProxyRules` and the one `use_backend` of the shipped haproxy.cfg
    // (fs/usr/local/etc/haproxy/haproxy.cfg, pkg/route/route.go `CustomRoutesReset`). A new host
    // or path is a map row, not a line here.
    let map = |m: RouteMap| map_path(ctx, m).display().to_string();
    let not_found = |var: &str| format!("if !{{ var(txn.{var}) -m found }}");
    let rules = [
        "txn.base) base".to_owned(),
        "txn.path) path".to_owned(),
        "txn.host) req.hdr(Host),field(1,:),lower".to_owned(),
        format!("txn.host_match) var(txn.host),map({})", map(RouteMap::Host)),
        format!(
            "txn.host_match) var(txn.host),regsub(^[^.]*,,),map({},'') {}",
            map(RouteMap::Host),
            not_found("host_match")
        ),
        format!(
            "txn.path_match) var(txn.host_match),concat(,txn.path,),map({})",
            map(RouteMap::PathExact)
        ),
        format!(
            "txn.path_match) var(txn.host_match),concat(,txn.path,),map({}) {}",
            map(RouteMap::PathPrefixExact),
            not_found("path_match")
        ),
        format!(
            "txn.path_match) var(txn.host_match),concat(,txn.path,),map_beg({}) {}",
            map(RouteMap::PathPrefix),
            not_found("path_match")
        ),
    ];
    for rule in rules {
        let _ = writeln!(w, "  http-request set-var({rule}");
    }
    let _ = writeln!(w, "  use_backend %[var(txn.path_match),field(1,.)]");
    let _ = writeln!(w, "  default_backend default-local-service");
    let _ = writeln!(w);

    let _ = writeln!(w, "backend default-local-service");
    let _ = writeln!(w, "  mode http");
    let _ = writeln!(w, "  http-request return status 404");
    let _ = writeln!(w);

    let _ = writeln!(w, "backend {backend}");
    let _ = writeln!(w, "  mode http");
    match &spec.affinity {
        Affinity::ClientIp => {
            let _ = writeln!(w, "  # load-balance: source");
            let _ = writeln!(w, "  balance source");
        }
        _ => {
            let _ = writeln!(w, "  balance roundrobin");
        }
    }
    let _ = writeln!(w, "  option forwardfor");
    if let Affinity::Cookie(cookie) = &spec.affinity {
        let _ = writeln!(w, "  # cookie-persistence: {}", cookie.name);
        // pkg/annotations/service/cookie.go: name only, no maxlife or attributes.
        let _ = writeln!(w, "  cookie {} insert indirect nocache dynamic", cookie.name);
        let _ = writeln!(w, "  dynamic-cookie-key ohph7OoGhong");
    }
    for key in timeouts.iter().filter(|k| k.scope == Scope::Ingress) {
        let _ = writeln!(w, "  # haproxy.org/{}", key.key);
        let _ = writeln!(w, "  timeout {} {}", key.directive(), duration_value(key.value));
    }
    let count = DEFAULT_SERVER_SLOTS.max(slots.len() as u32);
    for n in 1..=count {
        let name = slot_name(n);
        match slots.get(n as usize - 1).copied().flatten() {
            Some(addr) => {
                let _ = writeln!(w, "  server {name} {addr} enabled");
            }
            None => {
                let _ = writeln!(w, "  server {name} {EMPTY_SLOT_ADDR} disabled");
            }
        }
    }
    Ok(c)
}

/// Runtime API commands that put `pod` into slot `n`, or empty it.
pub fn slot_commands(n: u32, pod: Option<SocketAddr>) -> Vec<String> {
    let server = format!("{}/{}", backend_name(), slot_name(n));
    match pod {
        Some(addr) => vec![
            format!("set server {server} addr {} port {}", addr.ip(), addr.port()),
            format!("set server {server} state ready"),
        ],
        None => vec![format!("set server {server} state maint")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::local::ExtraRoute;
    use crate::render::local::test_support::{check, check_absent, context, with_tls};
    use model::CookieAffinity;

    fn render_ok(spec: &IngressSpec, ctx: &LocalContext) -> String {
        let slots: Vec<Option<SocketAddr>> = ctx.backends.pods.iter().copied().map(Some).collect();
        render(spec, ctx, &slots).expect("renders")
    }

    #[test]
    fn defaults_are_the_controller_defaults() {
        let conf = render_ok(&IngressSpec::new(3), &context());
        check(
            &conf,
            &[
                "master-worker",
                "timeout tunnel 3600s",
                "timeout client 50s",
                "timeout server 50s",
                "timeout http-request 5s",
                "timeout connect 5s",
                "timeout http-keep-alive 60s",
                "hard-stop-after 1800s",
                "balance roundrobin",
                "option forwardfor",
                "bind 127.0.0.1:18000\n",
                "stats socket /tmp/testbed-run/haproxy-runtime-api.sock level admin expose-fd listeners",
            ],
        );
        check_absent(&conf, &["cookie ", "accept-proxy", "ssl crt"]);
    }

    #[test]
    fn idle_timeout_sets_tunnel_client_and_server() {
        let spec = IngressSpec::new(3).with_idle_timeout(Duration::from_secs(3));
        check(
            &render_ok(&spec, &context()),
            &["timeout tunnel 3s", "timeout client 3s", "timeout server 3s"],
        );
    }

    #[test]
    fn tunnel_and_read_timeouts_have_their_own_lines() {
        let mut spec = IngressSpec::new(3);
        spec.timeouts.tunnel = Some(Duration::from_secs(4));
        spec.timeouts.read = Some(Duration::from_millis(2500));
        let conf = render_ok(&spec, &context());
        check(
            &conf,
            &[
                "timeout tunnel 4s",
                "timeout client 50s",
                "timeout server 50s",
                "# haproxy.org/timeout-server\n  timeout server 2500ms",
            ],
        );
    }

    #[test]
    fn drain_limit_sets_hard_stop_after() {
        let spec = IngressSpec::new(3).with_data_plane_drain_limit(Duration::from_secs(5));
        check(&render_ok(&spec, &context()), &["hard-stop-after 5s"]);
    }

    #[test]
    fn pods_fill_the_first_slots_and_the_rest_are_disabled() {
        let conf = render_ok(&IngressSpec::new(3), &context());
        check(
            &conf,
            &[
                "backend default_svc_ws-echo_http",
                "server SRV_1 127.0.1.1:18080 enabled",
                "server SRV_3 127.0.1.3:18080 enabled",
                "server SRV_4 127.0.0.1:1 disabled",
                "server SRV_42 127.0.0.1:1 disabled",
            ],
        );
        check_absent(&conf, &["SRV_43"]);
    }

    #[test]
    fn cookie_affinity_inserts_a_dynamic_cookie() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs: None,
        }));
        check(
            &render_ok(&spec, &context()),
            &[
                "cookie SESSION insert indirect nocache dynamic\n",
                "dynamic-cookie-key ",
            ],
        );
    }

    #[test]
    fn cookie_max_age_is_unsupported_as_the_controller_takes_only_a_name() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs: Some(600),
        }));
        assert_eq!(render_ok_err(&spec).knob, "affinity.cookie.max_age_secs");
    }

    #[test]
    fn client_ip_affinity_balances_by_source() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        check(&render_ok(&spec, &context()), &["balance source"]);
    }

    #[test]
    fn proxy_protocol_and_tls_go_on_the_bind_line() {
        let spec = IngressSpec::new(3).with_proxy_protocol().with_tls();
        check(
            &render_ok(&spec, &with_tls(context())),
            &["bind 127.0.0.1:18000 accept-proxy ssl crt /tmp/testbed-run/certs/frontend "],
        );
    }

    #[test]
    fn the_tls_bind_serves_a_certificate_directory_with_h2_and_http11() {
        let spec = IngressSpec::new(3).with_tls();
        let conf = render_ok(&spec, &with_tls(context()));
        check(
            &conf,
            &["  bind 127.0.0.1:18000 ssl crt /tmp/testbed-run/certs/frontend alpn h2,http/1.1\n"],
        );
        // The certificate is a file in the directory, never named on the bind.
        check_absent(&conf, &["server.pem", "default_ws-echo-tls.pem"]);
        assert_eq!(
            frontend_certs(&with_tls(context())),
            [FrontendCert {
                path: PathBuf::from("/tmp/testbed-run/certs/frontend/default_ws-echo-tls.pem"),
                tls: with_tls(context()).tls.unwrap(),
            }]
        );
    }

    fn listener_route(ctx: LocalContext, n: u32) -> LocalContext {
        let mut ctx = ctx;
        ctx.extra_routes.push(ExtraRoute {
            host: format!("listener-{n}.testbed.local"),
            path: "/".to_owned(),
            tls: Some(TlsPaths {
                cert: PathBuf::from(format!("/tmp/testbed-run/listener-{n}.crt")),
                key: PathBuf::from(format!("/tmp/testbed-run/listener-{n}.key")),
                bundle: PathBuf::from(format!("/tmp/testbed-run/listener-{n}.pem")),
            }),
        });
        ctx
    }

    #[test]
    fn an_extra_route_with_its_own_certificate_is_a_file_in_that_directory() {
        let plain = with_tls(context());
        let ctx = listener_route(listener_route(plain.clone(), 1), 2);
        let certs = frontend_certs(&ctx);
        let paths: Vec<_> = certs.iter().map(|c| c.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/tmp/testbed-run/certs/frontend/default_ws-echo-tls.pem",
                "/tmp/testbed-run/certs/frontend/default_listener-1.pem",
                "/tmp/testbed-run/certs/frontend/default_listener-2.pem",
            ]
        );
        assert_eq!(certs[1].tls, ctx.extra_routes[0].tls.clone().unwrap());
        // The bind does not change: a new certificate is not a reload.
        let spec = IngressSpec::new(3).with_tls();
        assert_eq!(render_ok(&spec, &ctx), render_ok(&spec, &plain));
        // Without a TLS listener there is no directory to serve a certificate from.
        assert!(frontend_certs(&listener_route(context(), 1)).is_empty());
    }

    #[test]
    fn a_certificate_file_is_the_key_then_the_chain() {
        assert_eq!(cert_file_text("KEY\n", "CERT\nCA\n"), "KEY\nCERT\nCA\n");
        assert_eq!(cert_file_text("KEY", "CERT\n"), "KEY\nCERT\n");
    }

    #[test]
    fn a_new_certificate_is_new_set_commit_then_added_to_the_directory_crt_list() {
        let ctx = listener_route(with_tls(context()), 1);
        let cert = &frontend_certs(&ctx)[1];
        let file = "/tmp/testbed-run/certs/frontend/default_listener-1.pem";
        assert_eq!(new_cert_command(&cert.path), format!("new ssl cert {file}"));
        assert_eq!(
            set_cert_command(&cert.path, "KEY\nCERT\n"),
            format!("set ssl cert {file} <<\nKEY\nCERT\n")
        );
        assert_eq!(commit_cert_command(&cert.path), format!("commit ssl cert {file}"));
        assert_eq!(
            add_crt_list_command(&certs_dir(&ctx), &cert.path),
            format!("add ssl crt-list /tmp/testbed-run/certs/frontend {file}")
        );
        // HAProxy 2.8.25's answers.
        assert!(new_cert_created(&format!("New empty certificate store '{file}'!\n\n")));
        assert!(cert_already_exists(&format!(
            "Certificate '{file}' already exists!\n\n"
        )));
        assert!(cert_transaction_ok(&format!(
            "Transaction created for certificate {file}!\n\n"
        )));
        assert!(!cert_transaction_ok(
            "Can't replace a certificate which is not referenced by the configuration!\n"
        ));
        assert!(cert_committed(&format!("Committing {file}\nSuccess!\n\n")));
        assert!(!cert_committed("No ongoing transaction! !\nCan't commit x.pem!\n\n"));
        assert!(crt_list_added(&format!(
            "Inserting certificate '{file}' in crt-list '/tmp/testbed-run/certs/frontend'.\nSuccess!\n\n"
        )));
        assert!(!crt_list_added(
            "Can't edit the crt-list: file already exists in this directory!\n\n"
        ));
    }

    #[test]
    fn a_route_secret_is_named_after_its_hosts_first_label() {
        assert_eq!(route_secret_name("listener-3.testbed.local"), "listener-3");
        assert_eq!(
            cert_file_name(route_secret_name("listener-3.testbed.local")),
            "default_listener-3.pem"
        );
        assert_eq!(cert_file_name(TLS_SECRET_NAME), "default_ws-echo-tls.pem");
    }

    fn with_route(host: &str, path: &str) -> LocalContext {
        let mut ctx = context();
        ctx.extra_routes.push(ExtraRoute {
            host: host.to_owned(),
            path: path.to_owned(),
            tls: None,
        });
        ctx
    }

    #[test]
    fn routing_is_one_use_backend_over_the_maps_and_no_host_is_in_the_config() {
        let ctx = with_route("other.testbed.local", "/");
        let conf = render_ok(&IngressSpec::new(3), &ctx);
        check(
            &conf,
            &[
                "  http-request set-var(txn.path) path\n",
                "  http-request set-var(txn.host) req.hdr(Host),field(1,:),lower\n",
                "  http-request set-var(txn.host_match) var(txn.host),map(/tmp/testbed-run/maps/host.map)\n",
                "  http-request set-var(txn.host_match) var(txn.host),regsub(^[^.]*,,),map(/tmp/testbed-run/maps/host.map,'') \
                 if !{ var(txn.host_match) -m found }\n",
                "  http-request set-var(txn.path_match) var(txn.host_match),concat(,txn.path,),\
                 map(/tmp/testbed-run/maps/path-exact.map)\n",
                "  http-request set-var(txn.path_match) var(txn.host_match),concat(,txn.path,),\
                 map(/tmp/testbed-run/maps/path-prefix-exact.map) if !{ var(txn.path_match) -m found }\n",
                "  http-request set-var(txn.path_match) var(txn.host_match),concat(,txn.path,),\
                 map_beg(/tmp/testbed-run/maps/path-prefix.map) if !{ var(txn.path_match) -m found }\n",
                "  use_backend %[var(txn.path_match),field(1,.)]\n  default_backend default-local-service\n",
            ],
        );
        check_absent(&conf, &["echo.testbed.local", "other.testbed.local"]);
        // A new route changes the maps, never haproxy.cfg.
        assert_eq!(conf, render_ok(&IngressSpec::new(3), &context()));
    }

    #[test]
    fn route_maps_hold_each_host_and_its_prefix_row() {
        let maps = route_maps(&IngressSpec::new(3), &with_route("other.testbed.local", "/"));
        assert_eq!(
            maps[&RouteMap::Host],
            [
                "echo.testbed.local\t\t\techo.testbed.local",
                "other.testbed.local\t\t\tother.testbed.local"
            ]
        );
        assert_eq!(
            maps[&RouteMap::PathPrefix],
            [
                "echo.testbed.local/\t\t\tdefault_svc_ws-echo_http",
                "other.testbed.local/\t\t\tdefault_svc_ws-echo_http"
            ]
        );
        assert!(maps[&RouteMap::PathExact].is_empty());
        assert!(maps[&RouteMap::PathPrefixExact].is_empty());
        assert_eq!(
            map_file_text(&maps[&RouteMap::Host]),
            "echo.testbed.local\t\t\techo.testbed.local\nother.testbed.local\t\t\tother.testbed.local\n"
        );
    }

    #[test]
    fn a_longer_prefix_path_gets_an_exact_row_and_a_slash_terminated_prefix_row() {
        let maps = route_maps(&IngressSpec::new(3), &with_route("api.testbed.local", "/v1/"));
        assert_eq!(
            maps[&RouteMap::PathPrefixExact],
            ["api.testbed.local/v1\t\t\tdefault_svc_ws-echo_http"]
        );
        assert!(
            maps[&RouteMap::PathPrefix].contains(&"api.testbed.local/v1/\t\t\tdefault_svc_ws-echo_http".to_owned())
        );
    }

    #[test]
    fn map_updates_are_prepare_add_commit_on_the_map_file() {
        let path = map_path(&context(), RouteMap::Host);
        assert_eq!(prepare_map_command(&path), "prepare map /tmp/testbed-run/maps/host.map");
        assert_eq!(parse_prepared_version("New version created: 7\n\n"), Some(7));
        assert_eq!(parse_prepared_version("Unknown map identifier.\n"), None);
        let rows = vec!["a.test\t\t\ta.test".to_owned(), "b.test\t\t\tb.test".to_owned()];
        assert_eq!(
            add_map_commands(7, &path, &rows),
            ["add map @7 /tmp/testbed-run/maps/host.map <<\na.test\t\t\ta.test\nb.test\t\t\tb.test\n"]
        );
        assert_eq!(
            commit_map_command(7, &path),
            "commit map @7 /tmp/testbed-run/maps/host.map"
        );
    }

    #[test]
    fn a_large_map_is_sent_in_chunks_under_the_buffer_size() {
        let rows: Vec<String> = (0..1000)
            .map(|n| format!("host-{n}.testbed.local\t\t\thost-{n}.testbed.local"))
            .collect();
        let commands = add_map_commands(1, Path::new("/m/host.map"), &rows);
        assert!(commands.len() > 1);
        assert!(commands.iter().all(|c| c.len() < RUNTIME_BUFFER_SIZE + 64));
        let sent: usize = commands.iter().map(|c| c.lines().count() - 1).sum();
        assert_eq!(sent, rows.len());
    }

    #[test]
    fn a_controller_change_moves_timeout_queue_and_nothing_else() {
        let spec = IngressSpec::new(3);
        let slots: Vec<_> = context().backends.pods.iter().copied().map(Some).collect();
        let before = render(&spec, &context(), &slots).unwrap();
        let after = render_with_changes(&spec, &context(), &slots, 2).unwrap();
        check(&before, &["timeout queue 5s\n"]);
        check(
            &after,
            &["# timeout-queue (ConfigMap), controller change 2\n  timeout queue 7s\n"],
        );
        let changed: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
        assert_eq!(
            changed,
            [
                "  # timeout-queue (ConfigMap), controller change 2",
                "  timeout queue 7s"
            ]
        );
    }

    #[test]
    fn slot_commands_set_address_then_state() {
        let cmds = slot_commands(2, Some(SocketAddr::from(([127, 0, 1, 9], 8080))));
        assert_eq!(
            cmds,
            [
                "set server default_svc_ws-echo_http/SRV_2 addr 127.0.1.9 port 8080",
                "set server default_svc_ws-echo_http/SRV_2 state ready",
            ]
        );
        assert_eq!(
            slot_commands(2, None),
            ["set server default_svc_ws-echo_http/SRV_2 state maint"]
        );
    }

    #[test]
    fn send_timeout_is_unsupported() {
        let mut spec = IngressSpec::new(3);
        spec.timeouts.send = Some(Duration::from_secs(3));
        assert_eq!(render_ok_err(&spec).knob, "timeouts.send");
    }

    fn render_ok_err(spec: &IngressSpec) -> model::Unsupported {
        render(spec, &context(), &[]).unwrap_err()
    }
}

//! haproxy.cfg as the HAProxy Kubernetes Ingress controller writes it.
//!
//! The controller runs HAProxy in master-worker mode, keeps a backend per
//! Service port with a fixed number of `server` slots, and fills or empties
//! the slots over the runtime API when endpoints change (no reload). Any
//! other change rewrites the file and reloads; old workers keep their
//! connections until `hard-stop-after`. Defaults follow the controller's
//! shipped haproxy.cfg and pkg/haproxy/env/defaults.go.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::timeouts::{self, Scope};
use crate::render::local::{LocalContext, NAMESPACE, Result, SERVICE, duration_value};
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
    let _ = writeln!(w, "  stats timeout 1m");
    let _ = writeln!(
        w,
        "  # hard-stop-after: old workers end their connections this long after a reload."
    );
    let _ = writeln!(w, "  hard-stop-after {}", duration_value(hard_stop));
    let _ = writeln!(w, "  log stderr format raw local0 notice");
    let _ = writeln!(
        w,
        "  ssl-default-bind-options no-sslv3 no-tls-tickets no-tlsv10 no-tlsv11"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "defaults");
    let _ = writeln!(w, "  log global");
    let _ = writeln!(w, "  log-tag ingress");
    let _ = writeln!(w, "  mode http");
    let _ = writeln!(w, "  maxconn 5000");
    let _ = writeln!(w, "  option redispatch");
    let _ = writeln!(w, "  option dontlognull");
    let _ = writeln!(w, "  option http-keep-alive");
    for (name, default) in DEFAULT_TIMEOUTS {
        // The ConfigMap's timeout keys land here (render::haproxy, shared with kind).
        let value = timeouts
            .iter()
            .find(|k| k.scope == Scope::ConfigMap && k.directive() == name)
            .map_or(default, |k| k.value);
        let _ = writeln!(w, "  timeout {name} {}", duration_value(value));
    }
    let _ = writeln!(w, "  timeout http-keep-alive {}", duration_value(DEFAULT_KEEP_ALIVE));
    let _ = writeln!(w);

    let _ = writeln!(w, "frontend http");
    let mut bind = format!("  bind {}", ctx.listen);
    if spec.proxy_protocol {
        bind.push_str(" accept-proxy");
    }
    if let Some(tls) = &ctx.tls {
        let _ = write!(bind, " ssl crt {} alpn http/1.1", tls.bundle.display());
    }
    let _ = writeln!(w, "{bind}");
    let _ = writeln!(w, "  mode http");
    let _ = writeln!(w, "  option forwardfor");
    let _ = writeln!(w, "  http-request set-var(txn.host) req.hdr(host),field(1,:),lower");
    let mut routes = vec![(spec.host.as_str(), spec.path.as_str())];
    routes.extend(ctx.extra_routes.iter().map(|r| (r.host.as_str(), r.path.as_str())));
    for (host, path) in routes {
        let _ = writeln!(
            w,
            "  use_backend {backend} if {{ var(txn.host) -m str {host} }} {{ path_beg {path} }}"
        );
    }
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
            &["bind 127.0.0.1:18000 accept-proxy ssl crt /tmp/testbed-run/server.pem"],
        );
    }

    #[test]
    fn routes_match_host_and_path() {
        let mut ctx = context();
        ctx.extra_routes.push(ExtraRoute {
            host: "other.testbed.local".to_owned(),
            path: "/".to_owned(),
        });
        check(
            &render_ok(&IngressSpec::new(3), &ctx),
            &[
                "use_backend default_svc_ws-echo_http if { var(txn.host) -m str echo.testbed.local } { path_beg / }",
                "{ var(txn.host) -m str other.testbed.local }",
            ],
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

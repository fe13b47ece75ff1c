//! nginx.conf as ingress-nginx generates it from its template, for open-source nginx.
//!
//! ingress-nginx balances in Lua and keeps endpoints in Lua shared memory: the controller POSTs
//! the backends to `/configuration/backends` on an internal listener (internal/ingress/controller/
//! nginx.go `configureBackends`), and every worker copies them into its own balancers on a 1 s
//! timer (rootfs/etc/nginx/lua/balancer.lua `BACKENDS_SYNC_INTERVAL`), so endpoint changes never
//! reload nginx. The pinned nginx has njs instead of Lua; [`SCRIPT`] does the same in njs: a
//! `js_content` store in a `js_shared_dict_zone`, a `js_periodic` copy per worker every second,
//! and `js_set $upstream_peer` choosing the endpoint per request (round robin, the sticky cookie
//! of sticky_persistent.lua, or chash.lua's ring for `upstream-hash-by`). The sticky cookie is
//! set on the first response (the 101 too, hence `always`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::render::local::{LocalContext, Result, SERVICE, SERVICE_PORT, TlsPaths, duration_value};
use model::EnvKind;
use model::capability::check;
use model::{Affinity, Controller, IngressSpec};

/// ingress-nginx's `worker-shutdown-timeout` default.
pub const DEFAULT_WORKER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(240);
/// ingress-nginx's `proxy-read-timeout` / `proxy-send-timeout` default.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(60);
/// ingress-nginx's `proxy-connect-timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// ingress-nginx's `keep-alive` default (internal/ingress/controller/config/config.go `KeepAlive`).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(75);

/// The ConfigMap key `Deployment::apply_controller_change` changes: `keep-alive`, the http
/// block's `keepalive_timeout` (rootfs/etc/nginx/template/nginx.tmpl). Any ConfigMap change
/// changes the configuration's `BackendConfigChecksum`, which dynamic reconfiguration cannot
/// apply, so the controller reloads (internal/ingress/controller/controller.go `syncIngress`,
/// pkg/util/ingress/ingress.go `IsDynamicConfigurationEnough`). It bounds idle keep-alive
/// connections between requests, so it does nothing to an established WebSocket itself.
pub const CHANGED_KEY: &str = "keep-alive";

/// `keep-alive` after `changes` controller changes: the default plus a second per change.
pub fn changed_keep_alive(changes: u32) -> Duration {
    DEFAULT_KEEP_ALIVE + Duration::from_secs(u64::from(changes))
}

/// The upstream name ingress-nginx gives a Service port: `<namespace>-<service>-<port>`.
pub fn upstream_name() -> String {
    format!("{}-{SERVICE}-{SERVICE_PORT}", crate::render::local::NAMESPACE)
}

/// The njs balancer and backend store ([`SCRIPT_FILE`] in the runtime directory).
pub const SCRIPT: &str = include_str!("ingress.js");
/// Its file name, beside nginx.conf.
pub const SCRIPT_FILE: &str = "ingress.js";

/// What ingress-nginx reads from its own process when it renders nginx.conf
/// (internal/ingress/controller/nginx.go `OnUpdate`, controller-v1.15.1): the CPUs it may run
/// on and its hard RLIMIT_NOFILE, which the nginx it starts inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// Go's `runtime.NumCPU()`: the CPUs in the process's affinity mask (not a cgroup quota).
    pub cpus: usize,
    /// The hard RLIMIT_NOFILE; `None` when unlimited.
    pub nofile_hard: Option<u64>,
}

impl Host {
    /// This process's, as the controller reads its own.
    pub fn current() -> Host {
        let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .count()
            })
            .unwrap_or(1);
        let nofile_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(_, hard)| hard)
            .filter(|&hard| hard != nix::sys::resource::RLIM_INFINITY);
        Host {
            cpus: cpus.max(1),
            nofile_hard,
        }
    }

    /// `worker-processes`' default: `strconv.Itoa(runtime.NumCPU())` (config.go `NewDefault`).
    pub fn worker_processes(&self) -> usize {
        self.cpus.max(1)
    }

    /// `max-worker-open-files` 0 (its default) becomes the hard limit less 1,024, and 1,024 when
    /// that is less (nginx.go `OnUpdate`, util.go `rlimitMaxNumFiles`). Unlimited reads as -1 in
    /// Go's int, so it also ends at 1,024.
    pub fn max_worker_open_files(&self) -> u64 {
        match self.nofile_hard {
            Some(hard) if hard >= 2_048 => hard - 1_024,
            _ => 1_024,
        }
    }
}

/// Renders nginx.conf.
pub fn render(spec: &IngressSpec, ctx: &LocalContext) -> Result<String> {
    render_with_changes(spec, ctx, 0)
}

/// [`render`] after `changes` controller changes ([`CHANGED_KEY`]).
pub fn render_with_changes(spec: &IngressSpec, ctx: &LocalContext, changes: u32) -> Result<String> {
    render_on(spec, ctx, changes, &Host::current())
}

/// [`render_with_changes`] as the controller renders it on `host`.
pub fn render_on(spec: &IngressSpec, ctx: &LocalContext, changes: u32, host: &Host) -> Result<String> {
    check(Controller::Nginx, EnvKind::Local, spec)?;
    // `max-worker-connections` 16384 by default: set, so never derived from the open files.
    let worker_connections =
        model::connection_limit::worker_connections(Controller::Nginx.info().connection_limits).unwrap_or(16_384);
    let dir = ctx.runtime_dir.display();
    let upstream = upstream_name();
    // `timeouts.idle` sets both directions: an upgraded connection is idle
    // when neither side sends, and nginx counts each direction separately.
    let read = spec
        .timeouts
        .read
        .or(spec.timeouts.idle)
        .unwrap_or(DEFAULT_PROXY_TIMEOUT);
    let send = spec
        .timeouts
        .send
        .or(spec.timeouts.idle)
        .unwrap_or(DEFAULT_PROXY_TIMEOUT);
    let shutdown = spec.data_plane.drain_limit.unwrap_or(DEFAULT_WORKER_SHUTDOWN_TIMEOUT);

    let mut c = String::new();
    let w = &mut c;
    let _ = writeln!(
        w,
        "# Rendered by testbed as ingress-nginx renders nginx.conf (ingress {}).",
        spec.host
    );
    let _ = writeln!(w, "daemon off;");
    let _ = writeln!(w, "master_process on;");
    let _ = writeln!(w, "worker_processes {};", host.worker_processes());
    let _ = writeln!(w, "worker_rlimit_nofile {};", host.max_worker_open_files());
    let _ = writeln!(w, "pid {dir}/nginx.pid;");
    let _ = writeln!(w, "error_log stderr notice;");
    let _ = writeln!(
        w,
        "# worker-shutdown-timeout: old workers end their connections this long after a reload."
    );
    let _ = writeln!(w, "worker_shutdown_timeout {};", duration_value(shutdown));
    let _ = writeln!(
        w,
        "events {{\n    multi_accept on;\n    worker_connections {worker_connections};\n    use epoll;\n}}"
    );
    let _ = writeln!(w, "http {{");
    for (directive, sub) in [
        ("client_body_temp_path", "client-body"),
        ("proxy_temp_path", "proxy-temp"),
        ("fastcgi_temp_path", "fastcgi-temp"),
        ("uwsgi_temp_path", "uwsgi-temp"),
        ("scgi_temp_path", "scgi-temp"),
    ] {
        let _ = writeln!(w, "    {directive} {dir}/{sub};");
    }
    let _ = writeln!(w, "    access_log {dir}/access.log;");
    if changes > 0 {
        let _ = writeln!(w, "    # {CHANGED_KEY} (ConfigMap), controller change {changes}");
    }
    let _ = writeln!(
        w,
        "    keepalive_timeout {};",
        duration_value(changed_keep_alive(changes))
    );
    let _ = writeln!(w, "    server_tokens off;");
    let _ = writeln!(w, "    # Upgrade handling, as in ingress-nginx's template.");
    let _ = writeln!(
        w,
        "    map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' close;\n    }}"
    );
    if spec.proxy_protocol {
        let _ = writeln!(
            w,
            "    # use-proxy-protocol: the client address comes from the PROXY header."
        );
        let _ = writeln!(w, "    real_ip_header proxy_protocol;");
        let _ = writeln!(w, "    set_real_ip_from 0.0.0.0/0;");
    }
    let _ = writeln!(
        w,
        "    # The balancer: ingress-nginx's Lua (balancer.lua) as njs. `backends` holds the POSTed list and"
    );
    let _ = writeln!(
        w,
        "    # each worker's copy; `sync` the versions and round-robin counters."
    );
    let _ = writeln!(w, "    js_path {dir};");
    let _ = writeln!(w, "    js_import ingress from {SCRIPT_FILE};");
    let _ = writeln!(w, "    js_shared_dict_zone zone=backends:1m type=string;");
    let _ = writeln!(w, "    js_shared_dict_zone zone=sync:64k type=number;");
    for attempt in 0..NEXT_UPSTREAM_TRIES {
        let _ = writeln!(w, "    js_set ${} ingress.upstreamPeer;", peer_variable(attempt));
    }
    let _ = writeln!(w, "    js_var $affinity_cookie;");
    if let Some(store) = ctx.backends.store {
        let _ = writeln!(
            w,
            "    # The controller's internal listener: POST /configuration/backends (no reload)."
        );
        let _ = writeln!(w, "    server {{");
        let _ = writeln!(w, "        listen {store};");
        let _ = writeln!(w, "        client_max_body_size 8m;");
        let _ = writeln!(w, "        client_body_buffer_size 8m;");
        let _ = writeln!(
            w,
            "        location = /configuration/backends {{\n            js_content ingress.configureBackends;\n        }}"
        );
        let _ = writeln!(
            w,
            "        location = /configuration/workers {{\n            js_content ingress.workers;\n        }}"
        );
        let _ = writeln!(
            w,
            "        # balancer.lua: ngx.timer.every(BACKENDS_SYNC_INTERVAL = 1, sync_backends) in every worker."
        );
        let _ = writeln!(
            w,
            "        location @sync {{\n            js_periodic ingress.syncBackends interval=1s worker_affinity=all;\n        }}"
        );
        let _ = writeln!(w, "        location / {{\n            return 404;\n        }}");
        let _ = writeln!(w, "    }}");
    }
    match &spec.affinity {
        Affinity::None => {}
        Affinity::ClientIp => {
            let _ = writeln!(
                w,
                "    # upstream-hash-by: \"$remote_addr\" (chash, from the POSTed backend)"
            );
        }
        Affinity::Cookie(cookie) => {
            let _ = writeln!(
                w,
                "    # affinity: cookie, affinity-mode: persistent, session-cookie-name: {} (from the POSTed backend)",
                cookie.name
            );
        }
    }

    let ssl = if ctx.tls.is_some() { " ssl" } else { "" };
    let proxy = if spec.proxy_protocol { " proxy_protocol" } else { "" };
    let _ = writeln!(w, "    # default backend: hosts without an Ingress rule");
    let _ = writeln!(w, "    server {{");
    let _ = writeln!(w, "        listen {}{ssl}{proxy} default_server;", ctx.listen);
    write_tls(w, ctx.tls.as_ref());
    let _ = writeln!(w, "        location / {{\n            return 404;\n        }}");
    let _ = writeln!(w, "    }}");

    // Every Ingress host is its own server block, with its Ingress's certificate where it has
    // one (ingress-nginx v1.15.1 serves it through ssl_certificate_by_lua_file, nginx.tmpl; a
    // certificate alone is dynamic, but a new host is a new server, which reloads:
    // pkg/util/ingress/ingress.go IsDynamicConfigurationEnough).
    let mut routes = vec![(spec.host.as_str(), spec.path.as_str(), true, ctx.tls.as_ref())];
    routes.extend(ctx.extra_routes.iter().map(|r| {
        (
            r.host.as_str(),
            r.path.as_str(),
            false,
            r.tls.as_ref().or(ctx.tls.as_ref()),
        )
    }));
    for (host, path, main, tls) in routes {
        let _ = writeln!(w, "    ## start server {host}");
        let _ = writeln!(w, "    server {{");
        let _ = writeln!(w, "        server_name {host};");
        let _ = writeln!(w, "        listen {}{ssl}{proxy};", ctx.listen);
        write_tls(w, tls.filter(|_| ctx.tls.is_some()));
        let cookie = main && matches!(spec.affinity, Affinity::Cookie(_));
        // `proxy_next_upstream error timeout; proxy_next_upstream_tries 3` with balancer.lua's
        // `set_more_tries(1)`: each failed try asks the balancer again. Without an upstream block
        // nginx cannot retry itself, so a failed try (502/504 from nginx, not from the pod) goes to
        // a named location that asks the balancer for the next peer.
        for attempt in 0..NEXT_UPSTREAM_TRIES {
            if attempt == 0 {
                let _ = writeln!(w, "        location {path} {{");
            } else {
                let _ = writeln!(w, "        location @next_upstream_{attempt} {{");
            }
            let _ = writeln!(w, "            set $proxy_upstream_name \"{upstream}\";");
            let _ = writeln!(w, "            set $location_path \"{path}\";");
            let peer = peer_variable(attempt);
            if attempt == 0 {
                let _ = writeln!(
                    w,
                    "            # No endpoint in this worker's view: ingress-nginx answers 503."
                );
                let _ = writeln!(
                    w,
                    "            if (${peer} = \"\") {{\n                return 503;\n            }}"
                );
            }
            if attempt + 1 < NEXT_UPSTREAM_TRIES {
                let _ = writeln!(w, "            recursive_error_pages on;");
                let _ = writeln!(w, "            error_page 502 504 = @next_upstream_{};", attempt + 1);
            }
            if cookie {
                let _ = writeln!(w, "            add_header Set-Cookie $affinity_cookie always;");
            }
            write_proxy(w, read, send, &peer);
            let _ = writeln!(w, "        }}");
        }
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w, "    ## end server {host}");
    }
    let _ = writeln!(w, "}}");
    Ok(c)
}

/// `proxy-next-upstream-tries` default (internal/ingress/controller/config/config.go).
pub const NEXT_UPSTREAM_TRIES: u32 = 3;

/// The js_set variable holding the peer of try `attempt` (0-based): one per try, since nginx
/// caches a variable's value for the request.
fn peer_variable(attempt: u32) -> String {
    if attempt == 0 {
        "upstream_peer".to_owned()
    } else {
        format!("upstream_peer_try_{attempt}")
    }
}

/// The template's proxy settings for one location (rootfs/etc/nginx/template/nginx.tmpl).
fn write_proxy(w: &mut String, read: Duration, send: Duration, peer: &str) {
    for line in [
        "proxy_set_header Host $host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Request-ID $request_id;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Host $host;",
        "proxy_set_header X-Forwarded-Port $server_port;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Scheme $scheme;",
    ] {
        let _ = writeln!(w, "            {line}");
    }
    let _ = writeln!(
        w,
        "            proxy_connect_timeout {};",
        duration_value(DEFAULT_CONNECT_TIMEOUT)
    );
    let _ = writeln!(w, "            proxy_send_timeout {};", duration_value(send));
    let _ = writeln!(w, "            proxy_read_timeout {};", duration_value(read));
    let _ = writeln!(w, "            proxy_buffering off;");
    let _ = writeln!(w, "            proxy_request_buffering on;");
    let _ = writeln!(w, "            proxy_http_version 1.1;");
    let _ = writeln!(w, "            proxy_pass http://${peer};");
}

fn write_tls(w: &mut String, tls: Option<&TlsPaths>) {
    if let Some(tls) = tls {
        let _ = writeln!(w, "        ssl_certificate {};", tls.cert.display());
        let _ = writeln!(w, "        ssl_certificate_key {};", tls.key.display());
        let _ = writeln!(w, "        ssl_protocols TLSv1.2 TLSv1.3;");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::local::ExtraRoute;
    use crate::render::local::test_support::{check, check_absent, context, with_tls};
    use model::CookieAffinity;

    fn render_ok(spec: &IngressSpec, ctx: &LocalContext) -> String {
        render(spec, ctx).expect("renders")
    }

    #[test]
    fn workers_and_their_open_files_follow_the_host_as_the_controller_reads_it() {
        let spec = IngressSpec::new(3);
        let on = |cpus, nofile_hard| render_on(&spec, &context(), 0, &Host { cpus, nofile_hard }).unwrap();
        check(
            &on(2, Some(20_000)),
            &[
                "worker_processes 2;\n",
                "worker_rlimit_nofile 18976;\n",
                "    worker_connections 16384;\n",
            ],
        );
        check(
            &on(8, Some(1_048_576)),
            &["worker_processes 8;\n", "worker_rlimit_nofile 1047552;\n"],
        );
        // A low or unlimited hard limit ends at 1,024, as in the controller.
        check(
            &on(1, Some(1_500)),
            &["worker_processes 1;\n", "worker_rlimit_nofile 1024;\n"],
        );
        check(&on(1, None), &["worker_rlimit_nofile 1024;\n"]);
        let here = Host::current();
        assert!(here.cpus >= 1);
        check(
            &render_ok(&spec, &context()),
            &[&format!("worker_processes {};\n", here.worker_processes())],
        );
    }

    #[test]
    fn a_controller_change_moves_keep_alive_and_nothing_else() {
        let spec = IngressSpec::new(3);
        let before = render_ok(&spec, &context());
        let after = render_with_changes(&spec, &context(), 2).unwrap();
        check(&before, &["    keepalive_timeout 75s;\n"]);
        let changed: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
        assert_eq!(
            changed,
            [
                "    # keep-alive (ConfigMap), controller change 2",
                "    keepalive_timeout 77s;"
            ]
        );
    }

    #[test]
    fn upgrade_headers_and_http11_are_always_set() {
        let conf = render_ok(&IngressSpec::new(3), &context());
        check(
            &conf,
            &[
                "map $http_upgrade $connection_upgrade",
                "proxy_http_version 1.1;",
                "proxy_set_header Upgrade $http_upgrade;",
                "proxy_set_header Connection $connection_upgrade;",
                "proxy_set_header X-Forwarded-For $remote_addr;",
                "proxy_set_header X-Real-IP $remote_addr;",
                "server_name echo.testbed.local;",
                "listen 127.0.0.1:18000;",
                "daemon off;",
                "pid /tmp/testbed-run/nginx.pid;",
            ],
        );
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let conf = render_ok(&IngressSpec::new(3), &context());
        check(
            &conf,
            &[
                "proxy_read_timeout 60s;",
                "proxy_send_timeout 60s;",
                "proxy_connect_timeout 5s;",
                "worker_shutdown_timeout 240s;",
            ],
        );
        check_absent(&conf, &["hash ", "proxy_protocol", "ssl_certificate"]);
    }

    #[test]
    fn idle_timeout_sets_read_and_send_timeouts() {
        let spec = IngressSpec::new(3).with_idle_timeout(Duration::from_secs(3));
        check(
            &render_ok(&spec, &context()),
            &["proxy_read_timeout 3s;", "proxy_send_timeout 3s;"],
        );
    }

    #[test]
    fn read_and_send_timeouts_are_separate() {
        let mut spec = IngressSpec::new(3);
        spec.timeouts.read = Some(Duration::from_millis(1500));
        spec.timeouts.send = Some(Duration::from_secs(7));
        check(
            &render_ok(&spec, &context()),
            &["proxy_read_timeout 1500ms;", "proxy_send_timeout 7s;"],
        );
    }

    #[test]
    fn drain_limit_sets_worker_shutdown_timeout() {
        let spec = IngressSpec::new(3).with_data_plane_drain_limit(Duration::from_secs(5));
        check(&render_ok(&spec, &context()), &["worker_shutdown_timeout 5s;"]);
    }

    #[test]
    fn cookie_affinity_sets_the_balancers_cookie_on_every_status() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs: Some(600),
        }));
        let conf = render_ok(&spec, &context());
        check(
            &conf,
            &[
                "js_var $affinity_cookie;",
                "add_header Set-Cookie $affinity_cookie always;",
                "set $location_path \"/\";",
            ],
        );
        check_absent(&conf, &["hash ", "$cookie_SESSION"]);
    }

    #[test]
    fn client_ip_affinity_is_the_balancers_not_an_upstream_hash() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        let conf = render_ok(&spec, &context());
        check(&conf, &["proxy_pass http://$upstream_peer;"]);
        check_absent(&conf, &["hash ", "upstream default-ws-echo-80"]);
    }

    #[test]
    fn endpoints_come_from_the_backend_store_without_dns() {
        let conf = render_ok(&IngressSpec::new(3), &context());
        check(
            &conf,
            &[
                "js_path /tmp/testbed-run;",
                "js_import ingress from ingress.js;",
                "js_shared_dict_zone zone=backends:1m type=string;",
                "js_shared_dict_zone zone=sync:64k type=number;",
                "js_set $upstream_peer ingress.upstreamPeer;",
                "listen 127.0.0.1:18053;",
                "location = /configuration/backends {\n            js_content ingress.configureBackends;",
                "js_periodic ingress.syncBackends interval=1s worker_affinity=all;",
                "set $proxy_upstream_name \"default-ws-echo-80\";",
                "if ($upstream_peer = \"\") {\n                return 503;",
                "proxy_pass http://$upstream_peer;",
            ],
        );
        check_absent(
            &conf,
            &[
                "resolver",
                "resolve;",
                "server 127.0.1.1:18080;",
                "upstream default-ws-echo-80 {",
            ],
        );
    }

    #[test]
    fn the_script_serves_the_store_and_the_balancer_the_config_names() {
        for function in ["configureBackends", "workers", "syncBackends", "upstreamPeer"] {
            check(SCRIPT, &[&format!("function {function}(")]);
            let export = SCRIPT
                .lines()
                .find(|l| l.starts_with("export default"))
                .unwrap_or_default();
            assert!(export.contains(function), "{function} is not exported: {export}");
        }
    }

    #[test]
    fn tls_terminates_with_the_server_certificate() {
        let conf = render_ok(&IngressSpec::new(3).with_tls(), &with_tls(context()));
        check(
            &conf,
            &[
                "listen 127.0.0.1:18000 ssl;",
                "ssl_certificate /tmp/testbed-run/server.crt;",
                "ssl_certificate_key /tmp/testbed-run/server.key;",
            ],
        );
    }

    #[test]
    fn proxy_protocol_listens_for_it_and_trusts_it_for_the_client_ip() {
        let conf = render_ok(&IngressSpec::new(3).with_proxy_protocol(), &context());
        check(
            &conf,
            &[
                "listen 127.0.0.1:18000 proxy_protocol;",
                "real_ip_header proxy_protocol;",
                "set_real_ip_from 0.0.0.0/0;",
            ],
        );
    }

    #[test]
    fn extra_routes_become_server_blocks() {
        let mut ctx = context();
        ctx.extra_routes.push(ExtraRoute {
            host: "other.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: None,
        });
        check(
            &render_ok(&IngressSpec::new(3), &ctx),
            &["server_name other.testbed.local;"],
        );
    }

    #[test]
    fn a_host_with_its_own_certificate_serves_it_on_the_same_listener() {
        let mut ctx = with_tls(context());
        ctx.extra_routes.push(ExtraRoute {
            host: "listener-1.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: Some(TlsPaths {
                cert: "/tmp/testbed-run/listener-1.crt".into(),
                key: "/tmp/testbed-run/listener-1.key".into(),
                bundle: "/tmp/testbed-run/listener-1.pem".into(),
            }),
        });
        let conf = render_ok(&IngressSpec::new(1).with_tls(), &ctx);
        let server = conf
            .split("## start server listener-1.testbed.local")
            .nth(1)
            .and_then(|rest| rest.split("## end server").next())
            .expect("a server block for the new host");
        check(
            server,
            &[
                "listen 127.0.0.1:18000 ssl;",
                "ssl_certificate /tmp/testbed-run/listener-1.crt;",
                "ssl_certificate_key /tmp/testbed-run/listener-1.key;",
            ],
        );
        // The spec's own host keeps the listener's certificate.
        let main = conf.split("## start server listener-1.testbed.local").next().unwrap();
        assert!(!main.contains("listener-1.crt"), "{main}");
    }

    #[test]
    fn tunnel_timeout_is_unsupported() {
        let mut spec = IngressSpec::new(3);
        spec.timeouts.tunnel = Some(Duration::from_secs(3));
        let err = render(&spec, &context()).unwrap_err();
        assert_eq!(err.knob, "timeouts.tunnel");
    }
}

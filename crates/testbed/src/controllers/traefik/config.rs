//! Traefik's static configuration and the dynamic configuration its Kubernetes Ingress provider builds.
//!
//! Traefik never reloads: its providers push dynamic configurations that it
//! applies in place, without closing established connections. Locally, the
//! file provider (watched directory) stands in for the Kubernetes Ingress
//! provider; the routers and services are the ones the Ingress provider
//! derives from the Ingress and its annotations.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::render::duration_value;
use crate::render::local::{LocalContext, Result, SERVICE, SERVICE_PORT};
use model::EnvKind;
use model::capability::check;
use model::{Affinity, Controller, IngressSpec};

/// The entry point's name, as in Traefik's Helm chart.
pub const ENTRY_POINT: &str = "web";
/// `lifeCycle.graceTimeOut` default.
pub const DEFAULT_GRACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Traefik's default, which the chart keeps: at most one new configuration from the providers
/// every 2 s (traefik/traefik v3.6.13 cmd/configuration.go, `ProvidersThrottleDuration`).
pub const PROVIDERS_THROTTLE: &str = "2s";
/// The file (inside the watched directory) holding the dynamic configuration.
pub const DYNAMIC_FILE: &str = "dynamic.yaml";
/// Host of the harness-only router whose presence tells that dynamic
/// configuration `generation` is applied; see [`generation_host`].
pub const GENERATION_DOMAIN: &str = "testbed-generation.internal";

/// `generation-<n>.testbed-generation.internal`: a router for this host exists
/// only in dynamic configuration `n`, so a request that is not a 404 proves
/// Traefik applied it. Harness instrumentation; the Ingress provider has no such router.
pub fn generation_host(generation: u64) -> String {
    format!("generation-{generation}.{GENERATION_DOMAIN}")
}

/// The annotation `Deployment::apply_controller_change` sets on the deployment's Ingress.
/// Traefik never reloads; its nearest equivalent of a controller reload is a dynamic-configuration
/// change, which it applies in process by building new routers and switching entry points to them
/// (traefik v3.6.13 pkg/server/server_entrypoint_tcp.go `SwitchRouter`). A router's priority
/// (pkg/provider/kubernetes/ingress/kubernetes.go) is such a change that routes nothing
/// differently: no other router matches the deployment's host.
pub const CHANGED_ANNOTATION: &str = "traefik.ingress.kubernetes.io/router.priority";

/// The router priority after `changes` controller changes (0: Traefik's default, from the rule).
pub fn changed_priority(changes: u32) -> u32 {
    changes
}

/// The service name the Ingress provider derives: `<namespace>-<service>-<port>`.
pub fn service_name() -> String {
    format!("{}-{SERVICE}-{SERVICE_PORT}", crate::render::local::NAMESPACE)
}

/// The directory the file provider watches.
pub fn dynamic_dir(ctx: &LocalContext) -> std::path::PathBuf {
    ctx.runtime_dir.join("dynamic")
}

/// Renders the static configuration (traefik.yaml).
pub fn render_static(spec: &IngressSpec, ctx: &LocalContext) -> Result<String> {
    check(Controller::Traefik, EnvKind::Local, spec)?;
    let grace = spec.data_plane.drain_limit.unwrap_or(DEFAULT_GRACE_TIMEOUT);
    let mut transport = Map::new();
    transport.insert("lifeCycle".into(), json!({ "graceTimeOut": duration_value(grace) }));
    if let Some(idle) = spec.timeouts.idle {
        transport.insert(
            "respondingTimeouts".into(),
            json!({ "readTimeout": duration_value(idle), "idleTimeout": duration_value(idle) }),
        );
    }
    let mut entry = Map::new();
    entry.insert("address".into(), json!(ctx.listen.to_string()));
    entry.insert("transport".into(), Value::Object(transport));
    if spec.proxy_protocol {
        entry.insert("proxyProtocol".into(), json!({ "trustedIPs": ["127.0.0.0/8"] }));
    }
    let config = json!({
        "global": { "checkNewVersion": false, "sendAnonymousUsage": false },
        "log": { "level": "INFO" },
        "entryPoints": { ENTRY_POINT: entry },
        "providers": {
            "providersThrottleDuration": PROVIDERS_THROTTLE,
            "file": { "directory": dynamic_dir(ctx).display().to_string(), "watch": true },
        },
    });
    let yaml = to_yaml(&config);
    Ok(format!(
        "# Rendered by testbed: Traefik's static configuration.\n\
         # Nothing leaves the machine: checkNewVersion and sendAnonymousUsage are false.\n\
         # providersThrottleDuration {PROVIDERS_THROTTLE}: Traefik's default, as the chart leaves it.\n\
         # The file provider stands in for the Kubernetes Ingress provider.\n{yaml}"
    ))
}

/// Renders the dynamic configuration: what the Ingress provider would build,
/// with `pods` as the Service's ready endpoints.
pub fn render_dynamic(spec: &IngressSpec, ctx: &LocalContext, pods: &[SocketAddr], generation: u64) -> Result<String> {
    render_dynamic_with_changes(spec, ctx, pods, generation, 0)
}

/// [`render_dynamic`] after `changes` controller changes: the deployment's router carries
/// [`CHANGED_ANNOTATION`]'s priority.
pub fn render_dynamic_with_changes(
    spec: &IngressSpec,
    ctx: &LocalContext,
    pods: &[SocketAddr],
    generation: u64,
    changes: u32,
) -> Result<String> {
    check(Controller::Traefik, EnvKind::Local, spec)?;
    let service = service_name();
    let mut routers = Map::new();
    let mut routes = vec![(spec.host.clone(), spec.path.clone())];
    routes.extend(ctx.extra_routes.iter().map(|r| (r.host.clone(), r.path.clone())));
    for (i, (host, path)) in routes.iter().enumerate() {
        let name = format!(
            "{}-{}-{}",
            crate::render::local::NAMESPACE,
            host.replace('.', "-"),
            slug(path)
        );
        let mut r = router(host, path, &service, ctx.tls.is_some());
        if i == 0 && changes > 0 {
            r["priority"] = json!(changed_priority(changes));
        }
        routers.insert(name, r);
    }
    routers.insert(
        "testbed-generation".into(),
        router(&generation_host(generation), "/", &service, ctx.tls.is_some()),
    );

    let servers: Vec<Value> = pods.iter().map(|p| json!({ "url": format!("http://{p}") })).collect();
    let mut lb = Map::new();
    lb.insert("servers".into(), Value::Array(servers));
    lb.insert("passHostHeader".into(), json!(true));
    match &spec.affinity {
        // Client-IP affinity never gets here: the capability table refuses it, as the Ingress provider
        // cannot express it.
        Affinity::None | Affinity::ClientIp => {}
        Affinity::Cookie(cookie) => {
            let mut c = Map::new();
            c.insert("name".into(), json!(cookie.name));
            c.insert("httpOnly".into(), json!(true));
            if let Some(age) = cookie.max_age_secs {
                c.insert("maxAge".into(), json!(age));
            }
            lb.insert("sticky".into(), json!({ "cookie": c }));
        }
    }
    let mut config = json!({
        "http": {
            "routers": routers,
            "services": { service: { "loadBalancer": lb } },
        }
    });
    if let Some(tls) = &ctx.tls {
        // Every Ingress's TLS Secret is one certificate of the provider's configuration
        // (traefik v3.6.13 pkg/provider/kubernetes/ingress/kubernetes.go getCertificates,
        // getTLSConfig); the entry point picks one by SNI, without restarting anything.
        let own = ctx.extra_routes.iter().filter_map(|r| r.tls.as_ref());
        let certificates: Vec<Value> = std::iter::once(tls)
            .chain(own)
            .map(|t| json!({ "certFile": t.cert.display().to_string(), "keyFile": t.key.display().to_string() }))
            .collect();
        config["tls"] = json!({
            "certificates": certificates,
            "stores": { "default": { "defaultCertificate": {
                "certFile": tls.cert.display().to_string(),
                "keyFile": tls.key.display().to_string(),
            }}},
        });
    }
    Ok(format!(
        "# Rendered by testbed: the dynamic configuration Traefik's Ingress provider builds (generation {generation}).\n{}",
        to_yaml(&config)
    ))
}

fn router(host: &str, path: &str, service: &str, tls: bool) -> Value {
    let mut r = json!({
        "rule": format!("Host(`{host}`) && PathPrefix(`{path}`)"),
        "entryPoints": [ENTRY_POINT],
        "service": service,
    });
    if tls {
        r["tls"] = json!({});
    }
    r
}

fn slug(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if s.trim_matches('-').is_empty() {
        "root".to_owned()
    } else {
        s.trim_matches('-').to_owned()
    }
}

fn to_yaml(value: &Value) -> String {
    // A JSON value always serializes to YAML.
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::local::ExtraRoute;
    use crate::render::local::test_support::{check, check_absent, context, with_tls};
    use model::CookieAffinity;

    fn statics(spec: &IngressSpec) -> String {
        render_static(spec, &context()).expect("renders")
    }

    fn dynamic(spec: &IngressSpec, ctx: &LocalContext) -> String {
        render_dynamic(spec, ctx, &ctx.backends.pods, 7).expect("renders")
    }

    #[test]
    fn a_controller_change_sets_the_deployment_routers_priority_only() {
        let spec = IngressSpec::new(3);
        let ctx = context();
        let before = render_dynamic(&spec, &ctx, &ctx.backends.pods, 7).unwrap();
        let after = render_dynamic_with_changes(&spec, &ctx, &ctx.backends.pods, 7, 2).unwrap();
        check_absent(&before, &["priority"]);
        let changed: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
        assert_eq!(changed, ["      priority: 2"], "{after}");
    }

    #[test]
    fn nothing_leaves_the_machine() {
        let conf = statics(&IngressSpec::new(3));
        check(&conf, &["checkNewVersion: false", "sendAnonymousUsage: false"]);
        check_absent(&conf, &["api:", "dashboard", "ping:"]);
    }

    #[test]
    fn static_config_watches_the_dynamic_directory() {
        let conf = statics(&IngressSpec::new(3));
        check(
            &conf,
            &[
                "address: 127.0.0.1:18000",
                "directory: /tmp/testbed-run/dynamic",
                "watch: true",
                "providersThrottleDuration: 2s",
                "graceTimeOut: 10s",
            ],
        );
        check_absent(&conf, &["respondingTimeouts", "proxyProtocol"]);
    }

    #[test]
    fn idle_timeout_sets_read_and_idle_timeouts() {
        let conf = statics(&IngressSpec::new(3).with_idle_timeout(Duration::from_secs(3)));
        check(&conf, &["respondingTimeouts:", "readTimeout: 3s", "idleTimeout: 3s"]);
    }

    #[test]
    fn drain_limit_sets_grace_timeout() {
        let conf = statics(&IngressSpec::new(3).with_data_plane_drain_limit(Duration::from_secs(5)));
        check(&conf, &["graceTimeOut: 5s"]);
    }

    #[test]
    fn proxy_protocol_trusts_loopback() {
        let conf = statics(&IngressSpec::new(3).with_proxy_protocol());
        check(&conf, &["proxyProtocol:", "trustedIPs:", "127.0.0.0/8"]);
    }

    #[test]
    fn routers_match_host_and_path_and_servers_are_the_pods() {
        let conf = dynamic(&IngressSpec::new(3), &context());
        check(
            &conf,
            &[
                "rule: Host(`echo.testbed.local`) && PathPrefix(`/`)",
                "service: default-ws-echo-80",
                "url: http://127.0.1.1:18080",
                "url: http://127.0.1.3:18080",
                "Host(`generation-7.testbed-generation.internal`)",
            ],
        );
        check_absent(&conf, &["sticky", "strategy", "tls"]);
    }

    #[test]
    fn cookie_affinity_is_a_sticky_cookie() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs: Some(600),
        }));
        check(
            &dynamic(&spec, &context()),
            &["sticky:", "cookie:", "name: SESSION", "maxAge: 600", "httpOnly: true"],
        );
    }

    #[test]
    fn client_ip_affinity_is_refused_as_the_ingress_provider_cannot_express_it() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        let err = render_dynamic(&spec, &context(), &[], 1).unwrap_err();
        assert!(err.to_string().contains("affinity.client_ip"), "{err}");
    }

    #[test]
    fn tls_adds_the_certificate_and_router_tls() {
        let conf = dynamic(&IngressSpec::new(3).with_tls(), &with_tls(context()));
        check(
            &conf,
            &[
                "tls: {}",
                "certFile: /tmp/testbed-run/server.crt",
                "keyFile: /tmp/testbed-run/server.key",
            ],
        );
    }

    #[test]
    fn a_host_with_its_own_certificate_adds_it_to_the_certificates() {
        let mut ctx = with_tls(context());
        ctx.extra_routes.push(ExtraRoute {
            host: "listener-1.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: Some(crate::render::local::TlsPaths {
                cert: "/tmp/testbed-run/listener-1.crt".into(),
                key: "/tmp/testbed-run/listener-1.key".into(),
                bundle: "/tmp/testbed-run/listener-1.pem".into(),
            }),
        });
        let conf = dynamic(&IngressSpec::new(1).with_tls(), &ctx);
        check(
            &conf,
            &[
                "Host(`listener-1.testbed.local`)",
                "certFile: /tmp/testbed-run/listener-1.crt",
                "keyFile: /tmp/testbed-run/listener-1.key",
            ],
        );
    }

    #[test]
    fn extra_routes_add_routers() {
        let mut ctx = context();
        ctx.extra_routes.push(ExtraRoute {
            host: "other.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: None,
        });
        check(&dynamic(&IngressSpec::new(3), &ctx), &["Host(`other.testbed.local`)"]);
    }

    #[test]
    fn read_and_tunnel_timeouts_are_unsupported() {
        let mut spec = IngressSpec::new(3);
        spec.timeouts.read = Some(Duration::from_secs(3));
        assert_eq!(render_static(&spec, &context()).unwrap_err().knob, "timeouts.read");
        let mut spec = IngressSpec::new(3);
        spec.timeouts.tunnel = Some(Duration::from_secs(3));
        assert_eq!(render_static(&spec, &context()).unwrap_err().knob, "timeouts.tunnel");
    }
}

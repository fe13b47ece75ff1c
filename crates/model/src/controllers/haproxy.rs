//! HAProxy Kubernetes Ingress (haproxytech/kubernetes-ingress v3.2.6, chart 1.49.0): facts and capability.

use std::time::Duration;

use crate::connection_limit::ConnectionLimit;
use crate::control_loop::{ControlLoop, Pacing, Sourced};
use crate::controller::{Controller, ControllerInfo, RoutingApi};
use crate::shutdown::DataPlaneShutdown;
use crate::spec::{Affinity, IngressSpec, Unsupported};

pub static INFO: ControllerInfo = ControllerInfo {
    name: "haproxy",
    aliases: &["haproxy-ingress"],
    title: "HAProxy Kubernetes Ingress",
    ingress_class: "haproxy",
    api: RoutingApi::Ingress,
    data_plane: "haproxy",
    binary_env: "TESTBED_HAPROXY",
    ships: "HAProxy 3.2 (haproxytech/kubernetes-ingress v3.2.6, image haproxytech/haproxy-alpine:3.2)",
    ships_source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/build/Dockerfile",
    control_loop: ControlLoop {
        endpoints: Sourced {
            value: "server slots filled or emptied over the runtime API (`set server … addr/state`); \
                    a reload only when the endpoints outgrow the slots (42 by default)",
            source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/pkg/service/endpoints.go",
        },
        reloads_for: Sourced {
            value: "a new or changed backend, frontend rules, global/defaults settings, binds, or endpoints \
                    beyond the server slots; host/path routes are map updates over the runtime API",
            source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/pkg/route/route.go",
        },
        // `--sync-period` 5s: changes gathered from the informers are applied together on the next
        // COMMAND event, which MonitorChanges (pkg/k8s/main.go) sends every period.
        pacing: Sourced {
            value: Pacing::Period(Duration::from_secs(5)),
            source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/pkg/utils/flags.go",
        },
        data_plane_poll: None,
    },
    shutdown: DataPlaneShutdown {
        prestop: Sourced {
            value: "none (the chart's lifecycle is empty; its soft-stop preStop is only a commented example)",
            source: "https://github.com/haproxytech/helm-charts/blob/kubernetes-ingress-1.49.0/kubernetes-ingress/values.yaml",
        },
        // s6-overlay stage 3 stops the controller, then haproxy with s6's default down-signal,
        // SIGTERM: HAProxy's hard stop. hard-stop-after bounds only a soft stop (SIGUSR1).
        on_signal: Sourced {
            value: "s6-overlay sends HAProxy SIGTERM, a hard stop: listeners and every open connection close \
                    at once, without a close frame; hard-stop-after plays no part",
            source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/fs/etc/s6-overlay/s6-rc.d/haproxy/run",
        },
        grace: Sourced {
            value: Duration::from_secs(60),
            source: "https://github.com/haproxytech/helm-charts/blob/kubernetes-ingress-1.49.0/kubernetes-ingress/values.yaml",
        },
    },
    // `timeout tunnel` 1 h in the controller's defaults.
    default_idle: Sourced {
        value: Some(Duration::from_secs(3600)),
        source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/pkg/haproxy/env/defaults.go",
    },
    // No maxconn rendered in the global section, so HAProxy derives it from RLIMIT_NOFILE.
    connection_limits: &[Sourced {
        value: ConnectionLimit::DerivedMaxconn,
        source: "https://github.com/haproxytech/kubernetes-ingress/blob/v3.2.6/pkg/haproxy/env/defaults.go",
    }],
    check,
};

fn check(spec: &IngressSpec) -> Result<(), Unsupported> {
    let unsupported = |knob: &str, reason: &str| Err(Unsupported::new(Controller::Haproxy, knob, reason));
    if let Affinity::Cookie(cookie) = &spec.affinity
        && cookie.max_age_secs.is_some()
    {
        return unsupported(
            "affinity.cookie.max_age_secs",
            "haproxy.org/cookie-persistence takes only the cookie name; the controller renders \
             `cookie <name> insert indirect nocache dynamic` with no maxlife/maxidle or attributes \
             (pkg/annotations/service/cookie.go at v3.2.6)",
        );
    }
    if spec.timeouts.send.is_some() {
        return unsupported(
            "timeouts.send",
            "HAProxy has no write-only timeout; timeout server/tunnel count inactivity in both directions",
        );
    }
    if spec.data_plane.backend_connections.is_some() {
        return unsupported(
            "data_plane.backend_connections",
            "the haproxytech controller renders no limit on a backend's connections; its pod-maxconn \
             annotation sets a per-pod maxconn, divided among the HAProxy instances \
             (pkg/annotations/service/maxconn.go at v3.2.6), which the testbed does not model",
        );
    }
    Ok(())
}

//! Traefik (chart 39.0.8, Traefik v3.6.13, Kubernetes Ingress provider): facts and capability.

use std::time::Duration;

use crate::control_loop::{ControlLoop, Pacing, Sourced};
use crate::controller::{Controller, ControllerInfo, RoutingApi};
use crate::shutdown::DataPlaneShutdown;
use crate::spec::{Affinity, IngressSpec, Unsupported};

pub static INFO: ControllerInfo = ControllerInfo {
    name: "traefik",
    aliases: &[],
    title: "Traefik",
    ingress_class: "traefik",
    api: RoutingApi::Ingress,
    data_plane: "traefik",
    binary_env: "TESTBED_TRAEFIK",
    ships: "Traefik v3.6.13 (chart 39.0.8 appVersion)",
    ships_source: "https://github.com/traefik/traefik-helm-chart/blob/v39.0.8/traefik/Chart.yaml",
    control_loop: ControlLoop {
        endpoints: Sourced {
            value: "a new dynamic configuration with the service's new server list, applied in process",
            source: "https://github.com/traefik/traefik/blob/v3.6.13/pkg/provider/kubernetes/ingress/kubernetes.go",
        },
        reloads_for: Sourced {
            value: "nothing: every change is a new dynamic configuration swapped in process",
            source: "https://github.com/traefik/traefik/blob/v3.6.13/pkg/server/configurationwatcher.go",
        },
        // providersThrottleDuration 2s (cmd/configuration.go), applied per provider in
        // pkg/provider/aggregator/aggregator.go; the local Traefik applies it itself.
        pacing: Sourced {
            value: Pacing::Throttle(Duration::from_secs(2)),
            source: "https://github.com/traefik/traefik/blob/v3.6.13/cmd/configuration.go",
        },
        data_plane_poll: None,
    },
    shutdown: DataPlaneShutdown {
        prestop: Sourced {
            value: "none (the chart's lifecycle is empty)",
            source: "https://github.com/traefik/traefik-helm-chart/blob/v39.0.8/traefik/values.yaml",
        },
        // SIGTERM → TCPEntryPoint.Shutdown: requestAcceptGraceTimeout (0), the listener closed,
        // then every tracked connection, hijacked WebSockets included, closed at graceTimeOut.
        on_signal: Sourced {
            value: "the listener closes at once (requestAcceptGraceTimeout 0: new connections refused); open \
                    connections, WebSockets included, are closed without a close frame at graceTimeOut (10 s)",
            source: "https://github.com/traefik/traefik/blob/v3.6.13/pkg/server/server_entrypoint_tcp.go",
        },
        grace: Sourced {
            value: Duration::from_secs(60),
            source: "https://github.com/traefik/traefik-helm-chart/blob/v39.0.8/traefik/values.yaml",
        },
    },
    // No timer ends an upgraded connection: the entry point's respondingTimeouts do not reach a
    // hijacked WebSocket (measured: an idle one outlives a 3 s readTimeout/idleTimeout).
    default_idle: Sourced {
        value: None,
        source: "https://github.com/traefik/traefik/blob/v3.6.13/pkg/server/server_entrypoint_tcp.go",
    },
    // Traefik's entry points and services have no connection limit by default.
    connection_limits: &[],
    check,
};

fn check(spec: &IngressSpec) -> Result<(), Unsupported> {
    let t = &spec.timeouts;
    let unsupported = |knob: &str, reason: &str| Err(Unsupported::new(Controller::Traefik, knob, reason));
    if t.read.is_some() || t.send.is_some() {
        return unsupported(
            if t.read.is_some() {
                "timeouts.read"
            } else {
                "timeouts.send"
            },
            "Traefik has no per-route upstream read/send timeout for upgraded connections; \
             only the entry point's respondingTimeouts exist (see timeouts.idle)",
        );
    }
    if t.tunnel.is_some() {
        return unsupported("timeouts.tunnel", "Traefik has no tunnel timeout");
    }
    if spec.affinity == Affinity::ClientIp {
        return unsupported(
            "affinity.client_ip",
            "Traefik's Kubernetes Ingress provider reads no load-balancer strategy from Ingress or \
             Service annotations (only sticky cookies, serversscheme, serverstransport, passhostheader, \
             nativelb: pkg/provider/kubernetes/ingress/annotations.go at v3.6.13); the hrw strategy \
             needs a TraefikService from the CRD provider, which is not the Ingress a user writes",
        );
    }
    if spec.data_plane.backend_connections.is_some() {
        return unsupported(
            "data_plane.backend_connections",
            "Traefik renders no limit on the connections to a backend; its inFlightReq middleware \
             (pkg/middlewares/inflightreq at v3.6.13) can set one, which the testbed does not model",
        );
    }
    Ok(())
}

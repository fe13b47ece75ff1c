//! Envoy Gateway (envoyproxy/gateway v1.9.0, chart gateway-helm v1.9.0), driven through Gateway
//! API: facts and capability.

use std::time::Duration;

use crate::connection_limit::ConnectionLimit;
use crate::control_loop::{ControlLoop, Pacing, Sourced};
use crate::controller::{Controller, ControllerInfo, RoutingApi};
use crate::shutdown::DataPlaneShutdown;
use crate::spec::{IngressSpec, Unsupported};

pub static INFO: ControllerInfo = ControllerInfo {
    name: "envoy-gateway",
    aliases: &["envoygateway", "eg"],
    title: "Envoy Gateway",
    // The GatewayClass it serves (Gateway API has no IngressClass).
    ingress_class: "envoy-gateway",
    api: RoutingApi::GatewayApi,
    data_plane: "envoy",
    binary_env: "TESTBED_ENVOY",
    ships: "Envoy 1.39.0 (envoyproxy/gateway v1.9.0 DefaultEnvoyProxyImage, distroless-v1.39.0)",
    ships_source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/api/v1alpha1/shared_types.go",
    control_loop: ControlLoop {
        endpoints: Sourced {
            value: "EndpointSlices translated to EDS and pushed over ADS; the listener is untouched",
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/gatewayapi/route.go",
        },
        reloads_for: Sourced {
            value: "nothing: every change is an xDS push. A change to a listener (a new hostname's filter \
                    chain, a ClientTrafficPolicy) replaces it and Envoy drains the connections on the filter \
                    chains it replaced; routes (RDS), clusters and endpoints change in place",
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/xds/translator/listener.go",
        },
        // controller-runtime's default workqueue (10 qps, burst 100 overall; 5 ms per-item
        // backoff only on errors) never holds one deployment's changes.
        pacing: Sourced {
            value: Pacing::Immediate,
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/provider/kubernetes/controller.go",
        },
        data_plane_poll: None,
    },
    shutdown: DataPlaneShutdown {
        // The shutdown manager's preStop: /healthcheck/fail, then downstream_cx_active polled every
        // 1 s until 0 after at least 10 s, or until drainTimeout (60 s); the Envoy container's
        // preStop returns when it is done, and Envoy gets SIGTERM.
        prestop: Sourced {
            value: "the shutdown manager fails Envoy's health check and waits until connections reach 0 (after \
                    10 s at least) or drainTimeout (60 s) passes",
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/cmd/envoy/shutdown_manager.go",
        },
        on_signal: Sourced {
            value: "new connections are accepted until SIGTERM; then Envoy closes its listeners and every \
                    connection at once, without a close frame (no graceful close for upgraded streams)",
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/infrastructure/kubernetes/proxy/resource.go",
        },
        // drainTimeout + 300 s (resource_provider.go expectedTerminationGracePeriodSeconds).
        grace: Sourced {
            value: Duration::from_secs(360),
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/infrastructure/kubernetes/proxy/resource_provider.go",
        },
    },
    // Envoy's stream idle timeout, 5 min, which Envoy Gateway leaves in place unless a
    // ClientTrafficPolicy or BackendTrafficPolicy sets streamIdleTimeout.
    default_idle: Sourced {
        value: Some(Duration::from_secs(300)),
        source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/api/v1alpha1/timeout_types.go",
    },
    // The bootstrap's overload manager caps downstream connections at 50000; the cluster's circuit
    // breaker renders only max_retries 1024 (buildXdsClusterCircuitBreaker), so max_connections,
    // max_pending_requests and max_requests keep Envoy's default 1024.
    connection_limits: &[
        Sourced {
            value: ConnectionLimit::OverloadDownstream { max: 50_000 },
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/xds/bootstrap/bootstrap.yaml.tpl",
        },
        Sourced {
            value: ConnectionLimit::ClusterCircuitBreaker { max_connections: 1_024 },
            source: "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/xds/translator/cluster.go",
        },
    ],
    check,
};

fn check(spec: &IngressSpec) -> Result<(), Unsupported> {
    let t = &spec.timeouts;
    let unsupported = |knob: &str, reason: &str| Err(Unsupported::new(Controller::EnvoyGateway, knob, reason));
    // Envoy Gateway's HTTP timers (api/v1alpha1/timeout_types.go): request and stream durations,
    // connection idle (no streams) and stream idle, "no upstream or downstream activity".
    if t.read.is_some() || t.send.is_some() {
        return unsupported(
            if t.read.is_some() {
                "timeouts.read"
            } else {
                "timeouts.send"
            },
            "Envoy Gateway has no one-direction timer for an upgraded stream: its stream idle timeouts \
             (ClientTrafficPolicy and BackendTrafficPolicy timeout.http.streamIdleTimeout) count activity \
             in either direction (envoyproxy/gateway v1.9.0 api/v1alpha1/timeout_types.go); see timeouts.idle",
        );
    }
    if t.tunnel.is_some() {
        return unsupported(
            "timeouts.tunnel",
            "Envoy Gateway has no timer that applies only once a connection is upgraded: streamIdleTimeout \
             applies to every stream of the listener or route (envoyproxy/gateway v1.9.0 \
             api/v1alpha1/timeout_types.go, internal/xds/translator/route.go)",
        );
    }
    Ok(())
}

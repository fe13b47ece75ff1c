//! The connection limits a controller renders for its data plane, or leaves to the data plane's
//! defaults, by kind: data, so code outside the controller modules branches on the kind of limit
//! and never on the controller.

use crate::control_loop::Sourced;

/// One kind of limit on the connections a data plane holds, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionLimit {
    /// nginx's `worker_connections`: per worker process, counting client and upstream
    /// connections alike (two per proxied WebSocket).
    WorkerConnections { per_worker: u64 },
    /// No `maxconn` rendered: HAProxy derives it from RLIMIT_NOFILE when it starts; the value
    /// is read from the runtime API (`show info`, `Maxconn`).
    DerivedMaxconn,
    /// Envoy's overload manager: `max_active_downstream_connections`, over the whole process.
    OverloadDownstream { max: u64 },
    /// Envoy's per-cluster circuit breaker (`max_connections`, `max_pending_requests`,
    /// `max_requests`); a WebSocket takes one upstream connection and one active request for its
    /// lifetime. Its open breakers show in the admin `/stats`.
    ClusterCircuitBreaker { max_connections: u64 },
}

/// A controller's connection limits, each with the upstream file it is read from.
pub type ConnectionLimits = &'static [Sourced<ConnectionLimit>];

/// Where a circuit breaker raised by the spec's `data_plane.backend_connections` comes from:
/// Envoy Gateway's BackendTrafficPolicy `circuitBreaker`, translated per cluster.
pub const RAISED_BREAKER_SOURCE: &str =
    "https://github.com/envoyproxy/gateway/blob/v1.9.0/internal/gatewayapi/clustersettings.go";

/// The limits a data plane runs with for `spec`: its controller's defaults, with the cluster
/// circuit breaker at the spec's `data_plane.backend_connections` where it sets one.
pub fn for_spec(limits: &[Sourced<ConnectionLimit>], spec: &crate::IngressSpec) -> Vec<Sourced<ConnectionLimit>> {
    limits
        .iter()
        .map(|l| match (l.value, spec.data_plane.backend_connections) {
            (ConnectionLimit::ClusterCircuitBreaker { .. }, Some(most)) => Sourced {
                value: ConnectionLimit::ClusterCircuitBreaker {
                    max_connections: u64::from(most),
                },
                source: RAISED_BREAKER_SOURCE,
            },
            _ => *l,
        })
        .collect()
}

/// Whether `limit` is a circuit breaker the spec set (not Envoy's default).
pub fn is_raised_breaker(limit: &Sourced<ConnectionLimit>) -> bool {
    matches!(limit.value, ConnectionLimit::ClusterCircuitBreaker { .. }) && limit.source == RAISED_BREAKER_SOURCE
}

/// Whether the circuit breaker in `limits` is one the spec set (not Envoy's default).
pub fn breaker_raised(limits: &[Sourced<ConnectionLimit>]) -> bool {
    limits.iter().any(is_raised_breaker)
}

/// nginx's `worker_connections` per worker, if the limits have one.
pub fn worker_connections(limits: &[Sourced<ConnectionLimit>]) -> Option<u64> {
    limits.iter().find_map(|l| match l.value {
        ConnectionLimit::WorkerConnections { per_worker } => Some(per_worker),
        _ => None,
    })
}

/// Envoy's overload manager `max_active_downstream_connections`, if the limits have one.
pub fn overload_downstream(limits: &[Sourced<ConnectionLimit>]) -> Option<u64> {
    limits.iter().find_map(|l| match l.value {
        ConnectionLimit::OverloadDownstream { max } => Some(max),
        _ => None,
    })
}

/// Envoy's per-cluster circuit breaker `max_connections`, if the limits have one.
pub fn cluster_circuit_breaker(limits: &[Sourced<ConnectionLimit>]) -> Option<u64> {
    limits.iter().find_map(|l| match l.value {
        ConnectionLimit::ClusterCircuitBreaker { max_connections } => Some(max_connections),
        _ => None,
    })
}

/// Whether the data plane derives its `maxconn` (HAProxy with none rendered).
pub fn derives_maxconn(limits: &[Sourced<ConnectionLimit>]) -> bool {
    limits.iter().any(|l| l.value == ConnectionLimit::DerivedMaxconn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Controller;

    #[test]
    fn every_limit_names_an_upstream_source_and_each_kind_appears_once() {
        for c in Controller::ALL {
            let limits = c.info().connection_limits;
            for l in limits {
                assert!(l.source.starts_with("https://github.com/"), "{c}: {l:?}");
            }
            for (i, a) in limits.iter().enumerate() {
                for b in &limits[i + 1..] {
                    assert_ne!(
                        std::mem::discriminant(&a.value),
                        std::mem::discriminant(&b.value),
                        "{c}: the same kind of limit twice"
                    );
                }
            }
        }
    }

    #[test]
    fn a_spec_raises_only_the_circuit_breaker() {
        let envoy = Controller::EnvoyGateway.info().connection_limits;
        let defaults = for_spec(envoy, &crate::IngressSpec::new(1));
        assert_eq!(defaults, envoy.to_vec());
        assert!(!breaker_raised(&defaults));
        let raised = for_spec(envoy, &crate::IngressSpec::new(1).with_backend_connections(100_000));
        assert_eq!(cluster_circuit_breaker(&raised), Some(100_000));
        assert_eq!(overload_downstream(&raised), overload_downstream(envoy));
        assert!(breaker_raised(&raised));
        let nginx = Controller::Nginx.info().connection_limits;
        assert_eq!(
            for_spec(nginx, &crate::IngressSpec::new(1).with_backend_connections(5)),
            nginx.to_vec()
        );
    }

    #[test]
    fn the_lookups_find_each_kind() {
        let limits = [
            Sourced {
                value: ConnectionLimit::WorkerConnections { per_worker: 7 },
                source: "",
            },
            Sourced {
                value: ConnectionLimit::ClusterCircuitBreaker { max_connections: 9 },
                source: "",
            },
        ];
        assert_eq!(worker_connections(&limits), Some(7));
        assert_eq!(cluster_circuit_breaker(&limits), Some(9));
        assert_eq!(overload_downstream(&limits), None);
        assert!(!derives_maxconn(&limits));
        assert!(derives_maxconn(&[Sourced {
            value: ConnectionLimit::DerivedMaxconn,
            source: ""
        }]));
    }
}

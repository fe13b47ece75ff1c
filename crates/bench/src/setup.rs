//! What a data plane runs as in parts 4 and 5: as its controller renders it by default, or with
//! a default limit raised the way a user raises it.
//!
//! Envoy Gateway's data plane holds at most 1,024 WebSockets per route by default (Envoy's
//! cluster circuit breaker, which Envoy Gateway leaves at Envoy's defaults), so its default row
//! measures that cap and nothing else. The question a user then asks — what does it cost, and
//! how does it storm, once the limit is raised — gets a second row wherever the defaults hold a
//! cluster circuit breaker: the same deployment with `data_plane.backend_connections` set (a
//! BackendTrafficPolicy `circuitBreaker` in a cluster). The choice is by kind of limit, never by
//! controller.

use model::connection_limit::{ConnectionLimit, cluster_circuit_breaker, for_spec};
use model::control_loop::Sourced;
use model::{Controller, IngressSpec};

use crate::render::thousands;

/// The circuit breaker's raised value: above every target the bench aims at (50,000 held).
pub const RAISED_BACKEND_CONNECTIONS: u32 = 100_000;

/// One data plane as the bench deploys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub controller: Controller,
    /// `bench-dataplane --backend-connections N`: the spec's `data_plane.backend_connections`.
    pub backend_connections: Option<u32>,
}

impl From<Controller> for Setup {
    fn from(controller: Controller) -> Self {
        Setup {
            controller,
            backend_connections: None,
        }
    }
}

impl Setup {
    /// Every controller as it renders its data plane; after each whose defaults hold a cluster
    /// circuit breaker, the same with it raised to [`RAISED_BACKEND_CONNECTIONS`].
    pub fn all(controllers: &[Controller]) -> Vec<Setup> {
        let mut out = Vec::new();
        for &controller in controllers {
            out.push(Setup::from(controller));
            if cluster_circuit_breaker(controller.info().connection_limits).is_some() {
                out.push(Setup {
                    controller,
                    backend_connections: Some(RAISED_BACKEND_CONNECTIONS),
                });
            }
        }
        out
    }

    /// The connection limits this setup runs with.
    pub fn limits(&self) -> Vec<Sourced<ConnectionLimit>> {
        let mut spec = IngressSpec::new(1);
        spec.data_plane.backend_connections = self.backend_connections;
        for_spec(self.controller.info().connection_limits, &spec)
    }

    /// What differs from the controller's defaults, in words; `None` for the defaults. Only a
    /// cluster circuit breaker is ever raised ([`Setup::all`]; the other controllers refuse the knob).
    pub fn setting(&self) -> Option<String> {
        let most = self.backend_connections?;
        Some(format!(
            "circuitBreaker raised to {} (BackendTrafficPolicy maxConnections, maxParallelRequests, \
             maxPendingRequests)",
            thousands(f64::from(most))
        ))
    }

    /// "envoy-gateway", or "envoy-gateway, circuitBreaker 100,000" with a setting.
    pub fn label(&self) -> String {
        match self.backend_connections {
            None => self.controller.name().to_owned(),
            Some(most) => format!(
                "{}, circuitBreaker {}",
                self.controller.name(),
                thousands(f64::from(most))
            ),
        }
    }

    /// `bench-dataplane`'s options for this setup.
    pub fn options(&self) -> Vec<String> {
        match self.backend_connections {
            None => Vec::new(),
            Some(most) => vec!["--backend-connections".to_owned(), most.to_string()],
        }
    }

    /// A short name for files: "envoy-gateway", "envoy-gateway-cb100000".
    pub fn slug(&self) -> String {
        match self.backend_connections {
            None => self.controller.name().to_owned(),
            Some(most) => format!("{}-cb{most}", self.controller.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_data_plane_with_a_circuit_breaker_gets_a_raised_setup() {
        let all = Setup::all(&Controller::ALL);
        let raised: Vec<&Setup> = all.iter().filter(|s| s.backend_connections.is_some()).collect();
        assert_eq!(all.len(), Controller::ALL.len() + raised.len());
        for s in &raised {
            assert!(cluster_circuit_breaker(s.controller.info().connection_limits).is_some());
            assert!(model::connection_limit::breaker_raised(&s.limits()));
            assert_eq!(
                cluster_circuit_breaker(&s.limits()),
                Some(u64::from(RAISED_BACKEND_CONNECTIONS))
            );
            assert!(s.setting().unwrap().starts_with("circuitBreaker raised to 100,000"));
            assert_eq!(s.options(), ["--backend-connections", "100000"]);
            // The raised one follows its controller's default.
            let i = all.iter().position(|x| x == *s).unwrap();
            assert_eq!(all[i - 1], Setup::from(s.controller));
        }
        assert!(!raised.is_empty(), "Envoy Gateway's defaults hold a circuit breaker");
        let envoy = Setup::from(Controller::EnvoyGateway);
        assert_eq!((envoy.setting(), envoy.label()), (None, "envoy-gateway".to_owned()));
        assert_eq!(raised[0].label(), "envoy-gateway, circuitBreaker 100,000");
        assert_eq!(raised[0].slug(), "envoy-gateway-cb100000");
    }
}

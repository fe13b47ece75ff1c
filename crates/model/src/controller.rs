//! The controller registry: every controller the testbed knows, and where its facts live.
//!
//! **Invariant:** this file and `controllers/` are the only places in this crate that name a
//! controller; everything else asks [`Controller::info`]. Adding a controller is one module in
//! `controllers/`, one variant here, and one row in [`Controller::ALL`] and [`Controller::info`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::connection_limit::ConnectionLimits;
use crate::control_loop::{ControlLoop, Sourced};
use crate::controllers::{envoy_gateway, haproxy, nginx, traefik};
use crate::shutdown::DataPlaneShutdown;
use crate::spec::{IngressSpec, Unsupported};

/// The ingress controllers the testbed knows. The order is the report's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// ingress-nginx (kubernetes/ingress-nginx), data plane nginx.
    Nginx,
    /// Traefik v3, its own data plane.
    Traefik,
    /// HAProxy Kubernetes Ingress (haproxytech/kubernetes-ingress), data plane HAProxy.
    Haproxy,
    /// Envoy Gateway (envoyproxy/gateway), data plane Envoy, driven through Gateway API.
    #[serde(rename = "envoy-gateway")]
    EnvoyGateway,
}

/// The Kubernetes API a controller is driven through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingApi {
    /// `networking.k8s.io/v1` Ingress, with the controller's annotations.
    Ingress,
    /// Gateway API (`gateway.networking.k8s.io/v1`: GatewayClass, Gateway, HTTPRoute) with the
    /// implementation's policy objects.
    GatewayApi,
}

impl fmt::Display for RoutingApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutingApi::Ingress => "Ingress",
            RoutingApi::GatewayApi => "Gateway API",
        })
    }
}

/// What every crate may know about a controller without rendering anything for it.
#[derive(Debug)]
pub struct ControllerInfo {
    /// Short name: command line, file names, profiles, the CI matrix.
    pub name: &'static str,
    /// Other names accepted on the command line.
    pub aliases: &'static [&'static str],
    /// The project's name for it, for reports.
    pub title: &'static str,
    /// The IngressClass (or GatewayClass) it watches, so all of them live in one cluster.
    pub ingress_class: &'static str,
    /// The API it is driven through.
    pub api: RoutingApi,
    /// The data-plane binary the local environment runs (its name under `target/tools/bin/`).
    pub data_plane: &'static str,
    /// Environment variable that points the local environment at another binary.
    pub binary_env: &'static str,
    /// The data plane the real controller ships at the pinned version, and where that is read.
    /// The local environment may run another build; the report shows both.
    pub ships: &'static str,
    pub ships_source: &'static str,
    /// How a change reaches its data plane: the model the local environment runs.
    pub control_loop: ControlLoop,
    /// How its data-plane pod ends: the sequence the local environment runs.
    pub shutdown: DataPlaneShutdown,
    /// With nothing configured, how long an idle WebSocket lasts before the data plane ends it
    /// (`None`: nothing ends it).
    pub default_idle: Sourced<Option<Duration>>,
    /// The limits on the connections its data plane holds, as the controller renders them (or
    /// leaves them to the data plane's defaults), each with its source; empty: none.
    pub connection_limits: ConnectionLimits,
    /// What the controller can express of a spec, in any environment.
    pub check: fn(&IngressSpec) -> Result<(), Unsupported>,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Nginx,
        Controller::Traefik,
        Controller::Haproxy,
        Controller::EnvoyGateway,
    ];

    /// The registry: the one place that maps a controller to its module.
    pub fn info(self) -> &'static ControllerInfo {
        match self {
            Controller::Nginx => &nginx::INFO,
            Controller::Traefik => &traefik::INFO,
            Controller::Haproxy => &haproxy::INFO,
            Controller::EnvoyGateway => &envoy_gateway::INFO,
        }
    }

    /// Short name used on the command line, in file names and in the CI matrix.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The IngressClass each controller watches, so all of them live in one cluster.
    pub fn ingress_class(self) -> &'static str {
        self.info().ingress_class
    }

    /// Every short name, for messages: "nginx, traefik, haproxy".
    pub fn names() -> String {
        Controller::ALL.map(Controller::name).join(", ")
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown controller {given:?}: expected one of {expected}")]
pub struct UnknownController {
    pub given: String,
    pub expected: String,
}

impl FromStr for Controller {
    type Err = UnknownController;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Controller::ALL
            .into_iter()
            .find(|c| c.name() == wanted || c.info().aliases.contains(&wanted.as_str()))
            .ok_or_else(|| UnknownController {
                given: s.to_owned(),
                expected: Controller::names(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_names_round_trip() {
        for c in Controller::ALL {
            assert_eq!(c.name().parse::<Controller>().unwrap(), c);
            for alias in c.info().aliases {
                assert_eq!(alias.parse::<Controller>().unwrap(), c);
            }
        }
        let err = "envoy".parse::<Controller>().unwrap_err();
        assert!(err.to_string().contains("envoy"), "{err}");
        assert!(err.to_string().contains("haproxy"), "{err}");
    }

    #[test]
    fn names_and_classes_are_distinct() {
        let mut names: Vec<_> = Controller::ALL.iter().map(|c| c.name()).collect();
        let mut classes: Vec<_> = Controller::ALL.iter().map(|c| c.ingress_class()).collect();
        names.dedup();
        classes.sort_unstable();
        classes.dedup();
        assert_eq!(names.len(), Controller::ALL.len());
        assert_eq!(classes.len(), Controller::ALL.len());
    }
}

//! What a behaviour needs from the ingress, derived from its spec by one function.
//!
//! As in the Gateway API conformance suite, every behaviour declares its features; here they are
//! not a second source of truth but a readable copy of what [`Feature::of`] finds in the spec, and
//! a unit test fails when the two drift apart.

use std::fmt;

use model::{Affinity, CookieAffinity, DataPlane, IngressSpec, ServiceSettings, Timeouts};

/// One thing an ingress (or the cluster behind it) must be able to express for a behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    IdleTimeout,
    ReadTimeout,
    SendTimeout,
    TunnelTimeout,
    CookieAffinity,
    CookieMaxAge,
    ClientIpAffinity,
    Tls,
    ProxyProtocol,
    DataPlaneDrainLimit,
    /// A limit on the data plane's connections to the backend (Envoy's cluster circuit breaker).
    BackendConnections,
    ServiceSessionAffinity,
    PublishNotReadyAddresses,
}

impl Feature {
    /// Every feature, in the order [`Feature::of`] lists them.
    pub const ALL: [Feature; 13] = [
        Feature::IdleTimeout,
        Feature::ReadTimeout,
        Feature::SendTimeout,
        Feature::TunnelTimeout,
        Feature::CookieAffinity,
        Feature::CookieMaxAge,
        Feature::ClientIpAffinity,
        Feature::Tls,
        Feature::ProxyProtocol,
        Feature::DataPlaneDrainLimit,
        Feature::BackendConnections,
        Feature::ServiceSessionAffinity,
        Feature::PublishNotReadyAddresses,
    ];

    /// Short kebab-case name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Feature::IdleTimeout => "idle-timeout",
            Feature::ReadTimeout => "read-timeout",
            Feature::SendTimeout => "send-timeout",
            Feature::TunnelTimeout => "tunnel-timeout",
            Feature::CookieAffinity => "cookie-affinity",
            Feature::CookieMaxAge => "cookie-max-age",
            Feature::ClientIpAffinity => "client-ip-affinity",
            Feature::Tls => "tls",
            Feature::ProxyProtocol => "proxy-protocol",
            Feature::DataPlaneDrainLimit => "data-plane-drain-limit",
            Feature::BackendConnections => "backend-connections",
            Feature::ServiceSessionAffinity => "service-session-affinity",
            Feature::PublishNotReadyAddresses => "publish-not-ready-addresses",
        }
    }

    /// The spec field that asks for it: what `model::Unsupported::knob` names when a controller
    /// cannot express it (a refused knob is this path or lies under it).
    pub fn knob(self) -> &'static str {
        match self {
            Feature::IdleTimeout => "timeouts.idle",
            Feature::ReadTimeout => "timeouts.read",
            Feature::SendTimeout => "timeouts.send",
            Feature::TunnelTimeout => "timeouts.tunnel",
            Feature::CookieAffinity => "affinity.cookie",
            Feature::CookieMaxAge => "affinity.cookie.max_age_secs",
            Feature::ClientIpAffinity => "affinity.client_ip",
            Feature::Tls => "tls",
            Feature::ProxyProtocol => "proxy_protocol",
            Feature::DataPlaneDrainLimit => "data_plane.drain_limit",
            Feature::BackendConnections => "data_plane.backend_connections",
            Feature::ServiceSessionAffinity => "service.session_affinity_client_ip",
            Feature::PublishNotReadyAddresses => "service.publish_not_ready_addresses",
        }
    }

    /// Whether a refused `knob` (from `model::Unsupported`) is this feature's.
    pub fn covers(self, knob: &str) -> bool {
        knob.strip_prefix(self.knob())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    }

    /// Everything `spec` asks of the ingress, in [`Feature::ALL`] order.
    ///
    /// The destructuring is exhaustive on purpose: a new spec field does not compile here until
    /// someone decides whether it is a feature.
    pub fn of(spec: &IngressSpec) -> Vec<Feature> {
        let IngressSpec {
            // Routing and the pods themselves: every controller has them.
            host: _,
            path: _,
            pods: _,
            drain: _,
            pod: _,
            timeouts,
            affinity,
            tls,
            proxy_protocol,
            data_plane,
            service,
        } = spec;
        let Timeouts {
            idle,
            read,
            send,
            tunnel,
        } = timeouts;
        let DataPlane {
            drain_limit,
            backend_connections,
        } = data_plane;
        let ServiceSettings {
            session_affinity_client_ip,
            publish_not_ready_addresses,
        } = service;
        let (cookie, cookie_max_age, client_ip) = match affinity {
            Affinity::None => (false, false, false),
            Affinity::Cookie(CookieAffinity { name: _, max_age_secs }) => (true, max_age_secs.is_some(), false),
            Affinity::ClientIp => (false, false, true),
        };
        let wanted = [
            (Feature::IdleTimeout, idle.is_some()),
            (Feature::ReadTimeout, read.is_some()),
            (Feature::SendTimeout, send.is_some()),
            (Feature::TunnelTimeout, tunnel.is_some()),
            (Feature::CookieAffinity, cookie),
            (Feature::CookieMaxAge, cookie_max_age),
            (Feature::ClientIpAffinity, client_ip),
            (Feature::Tls, *tls),
            (Feature::ProxyProtocol, *proxy_protocol),
            (Feature::DataPlaneDrainLimit, drain_limit.is_some()),
            (Feature::BackendConnections, backend_connections.is_some()),
            (Feature::ServiceSessionAffinity, *session_affinity_client_ip),
            (Feature::PublishNotReadyAddresses, *publish_not_ready_addresses),
        ];
        wanted.into_iter().filter(|(_, on)| *on).map(|(f, _)| f).collect()
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_plain_spec_needs_nothing() {
        assert_eq!(Feature::of(&IngressSpec::new(3)), []);
    }

    #[test]
    fn features_come_out_in_registry_order() {
        let mut spec = IngressSpec::new(1)
            .with_tls()
            .with_idle_timeout(Duration::from_secs(3))
            .with_affinity(Affinity::Cookie(CookieAffinity {
                name: "SID".to_owned(),
                max_age_secs: Some(5),
            }));
        spec.timeouts.tunnel = Some(Duration::from_secs(1));
        spec.service.publish_not_ready_addresses = true;
        assert_eq!(
            Feature::of(&spec),
            [
                Feature::IdleTimeout,
                Feature::TunnelTimeout,
                Feature::CookieAffinity,
                Feature::CookieMaxAge,
                Feature::Tls,
                Feature::PublishNotReadyAddresses,
            ]
        );
        assert!(Feature::ALL.is_sorted(), "ALL lists the features in declaration order");
    }

    #[test]
    fn a_refused_knob_belongs_to_the_feature_it_lies_under() {
        assert!(Feature::CookieAffinity.covers("affinity.cookie"));
        assert!(Feature::CookieAffinity.covers("affinity.cookie.name"));
        assert!(Feature::CookieMaxAge.covers("affinity.cookie.max_age_secs"));
        assert!(!Feature::CookieAffinity.covers("affinity.cookies"));
        assert!(!Feature::Tls.covers("timeouts.idle"));
        let names: std::collections::BTreeSet<_> = Feature::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Feature::ALL.len(), "feature names are distinct");
    }
}

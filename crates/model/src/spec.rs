//! What a test asks of the ingress: one model that every controller renders.
//!
//! The behaviour suite only ever builds an [`IngressSpec`]; it never names a
//! controller-specific knob. Each controller's renderer translates the spec
//! into its own annotations and native configuration, or answers
//! [`Unsupported`] with the reason.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Controller;

/// Everything a behaviour test wants from the ingress in front of its pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngressSpec {
    /// Virtual host the Ingress rule matches (sent as the Host header / SNI).
    pub host: String,
    /// Path prefix routed to the ws-echo Service (covers `/ws`, `/session`, `/`).
    pub path: String,
    /// Number of ws-echo pods (Deployment replicas).
    pub pods: u32,
    pub timeouts: Timeouts,
    pub affinity: Affinity,
    /// Terminate TLS at the ingress with the testbed CA's server certificate.
    pub tls: bool,
    /// Expect a PROXY protocol v1/v2 header on the ingress's listener.
    pub proxy_protocol: bool,
    /// How each pod is told to stop (preStop, grace periods).
    pub drain: Drain,
    /// Settings of the ws-echo processes themselves.
    pub pod: PodSettings,
    /// Data-plane-wide settings, where a controller has them.
    pub data_plane: DataPlane,
    /// Kubernetes Service settings that only exist in a cluster.
    pub service: ServiceSettings,
}

impl IngressSpec {
    /// A plain spec: one host, `/` routed to `pods` pods, every knob at its default.
    pub fn new(pods: u32) -> Self {
        IngressSpec {
            host: "echo.testbed.local".to_owned(),
            path: "/".to_owned(),
            pods,
            timeouts: Timeouts::default(),
            affinity: Affinity::None,
            tls: false,
            proxy_protocol: false,
            drain: Drain::default(),
            pod: PodSettings::default(),
            data_plane: DataPlane::default(),
            service: ServiceSettings::default(),
        }
    }

    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.idle = Some(timeout);
        self
    }

    pub fn with_affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = affinity;
        self
    }

    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn with_proxy_protocol(mut self) -> Self {
        self.proxy_protocol = true;
        self
    }

    pub fn with_drain(mut self, drain: Drain) -> Self {
        self.drain = drain;
        self
    }

    pub fn with_pod(mut self, pod: PodSettings) -> Self {
        self.pod = pod;
        self
    }

    pub fn with_data_plane_drain_limit(mut self, limit: Duration) -> Self {
        self.data_plane.drain_limit = Some(limit);
        self
    }

    pub fn with_backend_connections(mut self, most: u32) -> Self {
        self.data_plane.backend_connections = Some(most);
        self
    }
}

/// Proxy timeouts. `None` leaves the controller's default in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    /// How long an established (upgraded) connection may carry no traffic in
    /// either direction before the proxy closes it. The knob users mean when
    /// they say "the WebSocket timeout".
    #[serde(with = "opt_duration")]
    pub idle: Option<Duration>,
    /// Longest wait between two reads from the upstream (pod).
    #[serde(with = "opt_duration")]
    pub read: Option<Duration>,
    /// Longest wait between two writes to the upstream (pod).
    #[serde(with = "opt_duration")]
    pub send: Option<Duration>,
    /// Timeout that applies once a connection is upgraded to a tunnel.
    #[serde(with = "opt_duration")]
    pub tunnel: Option<Duration>,
}

/// Session affinity at the ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Affinity {
    #[default]
    None,
    /// The proxy sets a cookie on the first response (the 101 for WebSockets)
    /// and routes requests carrying it to the same pod.
    Cookie(CookieAffinity),
    /// Requests from the same client address go to the same pod.
    ClientIp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieAffinity {
    pub name: String,
    /// Cookie `Max-Age` in seconds; `None` makes it a session cookie.
    pub max_age_secs: Option<u64>,
}

impl Default for CookieAffinity {
    fn default() -> Self {
        CookieAffinity {
            name: "TESTBED_AFFINITY".to_owned(),
            max_age_secs: None,
        }
    }
}

/// How a pod is stopped: the Kubernetes termination sequence's timings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    /// preStop `GET /drain` holds the pod this long (ws-echo `--drain-delay`).
    #[serde(with = "humantime_serde_compat")]
    pub prestop_delay: Duration,
    /// terminationGracePeriodSeconds: SIGKILL this long after deletion starts.
    #[serde(with = "humantime_serde_compat")]
    pub termination_grace: Duration,
    /// After SIGTERM, ws-echo keeps serving this long before Close 1001
    /// (ws-echo `--shutdown-grace`).
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
}

impl Default for Drain {
    /// Short but realistic figures: the suite's "graceful termination" settings.
    fn default() -> Self {
        Drain {
            prestop_delay: Duration::from_secs(3),
            termination_grace: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Settings of the ws-echo processes (the Deployment's container args).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSettings {
    /// Server "tick" messages on every connection (`--tick-interval`).
    #[serde(with = "opt_duration")]
    pub tick_interval: Option<Duration>,
    /// Server-initiated WebSocket pings (`--ping-interval`).
    #[serde(with = "opt_duration")]
    pub ping_interval: Option<Duration>,
    /// ws-echo `--ignore-sigterm`: only SIGKILL at the end of the grace period stops it.
    pub ignore_sigterm: bool,
}

/// Data-plane-wide settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DataPlane {
    /// How long a replaced proxy process may keep serving the connections it
    /// holds: ingress-nginx `worker-shutdown-timeout`, HAProxy
    /// `hard-stop-after`, Traefik `lifeCycle.graceTimeOut`.
    #[serde(with = "opt_duration")]
    pub drain_limit: Option<Duration>,
    /// The most connections the data plane opens to the route's backend at once, where the
    /// controller has such a limit: Envoy Gateway's BackendTrafficPolicy `circuitBreaker`
    /// (Envoy's defaults otherwise: 1,024). Each WebSocket holds one for its lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_connections: Option<u32>,
}

/// Service settings that only mean something inside Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSettings {
    /// `sessionAffinity: ClientIP` on the Service.
    pub session_affinity_client_ip: bool,
    /// `publishNotReadyAddresses: true` on the Service.
    pub publish_not_ready_addresses: bool,
}

/// A knob the controller cannot express. The suite reports it as not supported,
/// with this reason; a renderer never silently drops a knob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{controller} cannot express {knob}: {reason}")]
pub struct Unsupported {
    pub controller: Controller,
    /// The spec field, e.g. `timeouts.tunnel`.
    pub knob: String,
    pub reason: String,
}

impl Unsupported {
    pub fn new(controller: Controller, knob: impl Into<String>, reason: impl Into<String>) -> Self {
        Unsupported {
            controller,
            knob: knob.into(),
            reason: reason.into(),
        }
    }
}

/// Durations serialize as humantime strings ("3s", "1m 30s") in reports and profiles.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_json_with_readable_durations() {
        let spec = IngressSpec::new(3)
            .with_idle_timeout(Duration::from_secs(3))
            .with_affinity(Affinity::Cookie(CookieAffinity::default()));
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""idle":"3s""#), "{json}");
        let back: IngressSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
}

//! The catalogue: every behaviour the suite measures, in report order.
//!
//! Modelled on the Gateway API conformance suite: a short name, a
//! description, and the features it needs. What each controller is expected
//! to do lives in `docs/profiles/<controller>.toml`, not here.

/// A group of behaviours, as the report shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Upgrade,
    Timeouts,
    Affinity,
    Termination,
    Reloads,
    Kubernetes,
    Observability,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Upgrade => "upgrade",
            Area::Timeouts => "timeouts",
            Area::Affinity => "affinity",
            Area::Termination => "graceful termination",
            Area::Reloads => "reloads",
            Area::Kubernetes => "kubernetes-only",
            Area::Observability => "observability",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    pub name: &'static str,
    pub area: Area,
    pub description: &'static str,
    /// Only a real cluster can show it; `local` reports a skip with this reason.
    pub kubernetes_only: Option<&'static str>,
}

const fn b(name: &'static str, area: Area, description: &'static str) -> Behaviour {
    Behaviour {
        name,
        area,
        description,
        kubernetes_only: None,
    }
}

pub const CATALOGUE: &[Behaviour] = &[
    b(
        "upgrade_echoes_text_and_binary",
        Area::Upgrade,
        "101 Switching Protocols; the hello names a pod; text, binary and a 64 KiB message round-trip exactly.",
    ),
    b(
        "upgrade_negotiates_subprotocol",
        Area::Upgrade,
        "Offering `echo.v1` gets it selected, visible to the client in the 101 and in the hello.",
    ),
    b(
        "plain_http_served_alongside",
        Area::Upgrade,
        "`/` and `/healthz` through the same host answer 200.",
    ),
    b(
        "wss_through_tls_termination",
        Area::Upgrade,
        "wss:// through the ingress, TLS terminated with the testbed CA's certificate.",
    ),
    b(
        "client_ip_forwarded",
        Area::Upgrade,
        "The hello's `forwarded_for`/`real_ip` carry the client's address.",
    ),
    b(
        "proxy_protocol_preserves_client_ip",
        Area::Upgrade,
        "With PROXY protocol on at the ingress, a PROXY v1 header naming 203.0.113.7 shows up as the client address.",
    ),
    b(
        "idle_connection_closed_at_timeout",
        Area::Timeouts,
        "Idle timeout 3 s, no traffic either way: when and how the connection ends.",
    ),
    b(
        "server_ticks_keep_connection_alive",
        Area::Timeouts,
        "Idle timeout 3 s, server ticks every 1 s: still open after 3× the timeout.",
    ),
    b(
        "server_pings_keep_connection_alive",
        Area::Timeouts,
        "Idle timeout 3 s, server pings every 1 s and nothing else: measured.",
    ),
    b(
        "client_pings_keep_connection_alive",
        Area::Timeouts,
        "Idle timeout 3 s, client pings every 1 s and nothing else: measured.",
    ),
    b(
        "no_affinity_spreads_connections",
        Area::Affinity,
        "3 pods, no affinity: 30 connections reach at least 2 pods.",
    ),
    b(
        "cookie_affinity_pins_reconnects",
        Area::Affinity,
        "Cookie affinity: the cookie arrives on the 101; 10 reconnects with it reach the same pod.",
    ),
    b(
        "client_ip_affinity_pins_by_source",
        Area::Affinity,
        "Client-IP affinity: 5 source addresses × 5 reconnects; each source always reaches one pod, sources spread over ≥ 2 pods.",
    ),
    b(
        "cookie_affinity_moves_when_pod_dies",
        Area::Affinity,
        "The pinned pod is deleted; reconnecting with the old cookie reaches a live pod without error.",
    ),
    b(
        "polling_session_needs_affinity",
        Area::Affinity,
        "`POST /session` then 10 `GET /session/{sid}`: all 200 with cookie affinity; without it at least one 400.",
    ),
    b(
        "existing_connection_survives_prestop",
        Area::Termination,
        "During preStop (drain 3 s) the client still gets echoes and ticks from the terminating pod.",
    ),
    b(
        "no_new_connections_to_terminating_pod",
        Area::Termination,
        "After deletion starts, new connections reach other pods; measures how long the terminating pod still got new ones.",
    ),
    b(
        "server_close_1001_reaches_client",
        Area::Termination,
        "After SIGTERM + shutdown grace the client receives Close 1001 through the proxy, not an abnormal end.",
    ),
    b(
        "client_reconnects_to_new_pod",
        Area::Termination,
        "After 1001 the client reconnects to a ready pod; measures the disruption.",
    ),
    b(
        "rolling_update_has_no_failed_handshakes",
        Area::Termination,
        "A connection every 100 ms during a rollout restart of 3 pods: failed handshakes counted.",
    ),
    b(
        "no_message_loss_across_rollout",
        Area::Termination,
        "A client that reconnects on close and numbers its messages loses none sent before the close frame arrived.",
    ),
    b(
        "sigkill_after_grace_ends_connection_abnormally",
        Area::Termination,
        "With --ignore-sigterm, the connection ends abnormally at the end of the grace period.",
    ),
    b(
        "connection_survives_endpoint_change",
        Area::Reloads,
        "Scaling up and down leaves open connections alone.",
    ),
    b(
        "connection_fate_on_config_reload",
        Area::Reloads,
        "An unrelated route is added with the data-plane drain limit at 5 s: whether and when existing connections end.",
    ),
    Behaviour {
        name: "service_session_affinity_is_bypassed",
        area: Area::Kubernetes,
        description: "Service `sessionAffinity: ClientIP` without ingress affinity: 30 connections from one client still reach ≥ 2 pods when the controller routes to pod IPs.",
        kubernetes_only: Some(
            "Service sessionAffinity is implemented by kube-proxy, which the local environment does not have",
        ),
    },
    Behaviour {
        name: "publish_not_ready_addresses_keeps_terminating_pod_routable",
        area: Area::Kubernetes,
        description: "With `publishNotReadyAddresses: true`, whether and how long new connections still reach a terminating pod.",
        kubernetes_only: Some("publishNotReadyAddresses is an EndpointSlice behaviour of a real cluster"),
    },
    b(
        "metrics_count_active_connections",
        Area::Observability,
        "With 5 open connections, `websocket_connections_active` summed over the pods' /metrics is 5.",
    ),
];

/// The behaviour called `name` and its position in the catalogue.
pub fn find(name: &str) -> Option<(usize, &'static Behaviour)> {
    CATALOGUE.iter().enumerate().find(|(_, b)| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        for (i, b) in CATALOGUE.iter().enumerate() {
            assert!(
                b.name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'_' || c.is_ascii_digit()),
                "{}",
                b.name
            );
            assert_eq!(find(b.name).map(|(j, _)| j), Some(i), "duplicate {}", b.name);
        }
    }
}

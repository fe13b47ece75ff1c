//! The HAProxy controller's timeout keys for a spec: one translation both renderers read.
//!
//! haproxytech/kubernetes-ingress v3.2.6, documentation/annotations.md: `timeout-client` and
//! `timeout-tunnel` are ConfigMap-only keys (they land in haproxy.cfg's `defaults`);
//! `timeout-server` is also read from an Ingress or Service annotation (it then lands in that
//! backend). The local renderer writes the lines these keys produce; the kind renderer writes the
//! keys themselves.

use std::time::Duration;

use model::IngressSpec;

/// Where the controller reads a key from, and so which haproxy.cfg section it ends up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The controller's ConfigMap → `defaults`.
    ConfigMap,
    /// An `haproxy.org/<key>` annotation on the Ingress → the backend.
    Ingress,
}

/// One timeout key and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutKey {
    /// The controller's key, e.g. `timeout-tunnel`.
    pub key: &'static str,
    pub scope: Scope,
    pub value: Duration,
}

impl TimeoutKey {
    /// The haproxy.cfg directive the key becomes: `timeout-tunnel` → `tunnel`.
    pub fn directive(&self) -> &'static str {
        self.key.trim_start_matches("timeout-")
    }
}

/// The keys `spec` sets. `timeouts.idle` sets client, server and tunnel together (an idle
/// WebSocket is cut by `timeout tunnel` once upgraded, by client/server before); `timeouts.read`
/// overrides the server timeout of this Ingress's backend; `timeouts.tunnel` overrides the tunnel
/// timeout (ConfigMap-only, so controller-wide).
pub fn timeouts(spec: &IngressSpec) -> Vec<TimeoutKey> {
    let t = &spec.timeouts;
    let key = |key, scope, value: Option<Duration>| value.map(|value| TimeoutKey { key, scope, value });
    [
        key("timeout-client", Scope::ConfigMap, t.idle),
        key("timeout-server", Scope::ConfigMap, t.idle),
        key("timeout-tunnel", Scope::ConfigMap, t.tunnel.or(t.idle)),
        key("timeout-server", Scope::Ingress, t.read),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_sets_client_server_and_tunnel_in_the_config_map() {
        let spec = IngressSpec::new(1).with_idle_timeout(Duration::from_secs(3));
        let keys: Vec<_> = timeouts(&spec).iter().map(|k| (k.key, k.scope)).collect();
        assert_eq!(
            keys,
            [
                ("timeout-client", Scope::ConfigMap),
                ("timeout-server", Scope::ConfigMap),
                ("timeout-tunnel", Scope::ConfigMap)
            ]
        );
    }

    #[test]
    fn read_timeout_is_an_ingress_annotation_and_tunnel_overrides_idle() {
        let mut spec = IngressSpec::new(1).with_idle_timeout(Duration::from_secs(3));
        spec.timeouts.read = Some(Duration::from_secs(2));
        spec.timeouts.tunnel = Some(Duration::from_secs(4));
        let keys = timeouts(&spec);
        let tunnel = keys.iter().find(|k| k.key == "timeout-tunnel").unwrap();
        assert_eq!(tunnel.value, Duration::from_secs(4));
        assert_eq!(tunnel.directive(), "tunnel");
        assert!(keys.contains(&TimeoutKey {
            key: "timeout-server",
            scope: Scope::Ingress,
            value: Duration::from_secs(2)
        }));
    }
}

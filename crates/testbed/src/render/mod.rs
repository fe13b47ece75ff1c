//! Rendering an `IngressSpec` into each controller's configuration.
//!
//! Whether a controller can express a spec is `model::capability::check`, the one table both
//! environments share. [`local`] writes each data plane's native configuration the way its
//! controller would; [`kind`] writes the Kubernetes objects (Ingress with the controller's
//! annotations, Service, Deployment, controller-level settings). Rendering is pure: no I/O.

pub mod kind;
pub mod local;

use std::net::SocketAddr;
use std::time::Duration;

use model::IngressSpec;

/// The ws-echo configuration of a spec's pods, listening on `listen`: what both environments
/// start them with (kind as container args, local as a process's), rendered by
/// `ws_echo::Config::to_args`.
pub fn ws_echo_config(spec: &IngressSpec, listen: SocketAddr) -> ws_echo::Config {
    ws_echo::Config {
        listen,
        drain_delay: spec.drain.prestop_delay,
        shutdown_grace: spec.drain.shutdown_grace,
        tick_interval: spec.pod.tick_interval.unwrap_or_default(),
        ping_interval: spec.pod.ping_interval.unwrap_or_default(),
        ignore_sigterm: spec.pod.ignore_sigterm,
        ..ws_echo::Config::default()
    }
}

/// A duration as every data plane and controller setting here reads it (nginx, HAProxy, Go's
/// time.ParseDuration) and as ws-echo's flags spell it: whole seconds as `3s`, else milliseconds
/// (`1500ms`). One formatter for both: `ws_echo::config::duration_arg`.
pub fn duration_value(d: Duration) -> String {
    ws_echo::config::duration_arg(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_seconds_or_milliseconds() {
        assert_eq!(duration_value(Duration::from_secs(3)), "3s");
        assert_eq!(duration_value(Duration::from_millis(2500)), "2500ms");
        assert_eq!(duration_value(Duration::from_secs(3600)), "3600s");
    }
}

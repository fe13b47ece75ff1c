//! Rendering an [`IngressSpec`] into each controller's configuration.
//!
//! [`check`] is the one capability table both environments share, so `local`
//! and `kind` give the same "unsupported" answers. [`local`] writes each data
//! plane's native configuration the way its controller would; [`kind`] writes
//! the Kubernetes objects (Ingress with the controller's annotations, Service,
//! Deployment, controller-level settings). Rendering is pure: no I/O.

pub mod haproxy;
pub mod kind;
pub mod local;

use crate::spec::{Affinity, Controller, IngressSpec, Unsupported};

/// Whether `controller` can express everything `spec` asks, in any environment.
pub fn check(controller: Controller, spec: &IngressSpec) -> Result<(), Unsupported> {
    let t = &spec.timeouts;
    let unsupported = |knob: &str, reason: &str| Err(Unsupported::new(controller, knob, reason));
    match controller {
        Controller::Nginx => {
            if t.tunnel.is_some() {
                return unsupported(
                    "timeouts.tunnel",
                    "ingress-nginx has no tunnel timeout for upgraded HTTP connections; \
                     proxy-read-timeout/proxy-send-timeout govern them (proxy-stream-timeout is for TCP services only)",
                );
            }
        }
        Controller::Traefik => {
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
        }
        Controller::Haproxy => {
            if let Affinity::Cookie(cookie) = &spec.affinity
                && cookie.max_age_secs.is_some()
            {
                return unsupported(
                    "affinity.cookie.max_age_secs",
                    "haproxy.org/cookie-persistence takes only the cookie name; the controller renders \
                     `cookie <name> insert indirect nocache dynamic` with no maxlife/maxidle or attributes \
                     (pkg/annotations/service/cookie.go at v3.2.6)",
                );
            }
            if t.send.is_some() {
                return unsupported(
                    "timeouts.send",
                    "HAProxy has no write-only timeout; timeout server/tunnel count inactivity in both directions",
                );
            }
        }
    }
    if let Affinity::Cookie(cookie) = &spec.affinity
        && !valid_cookie_name(&cookie.name)
    {
        return unsupported("affinity.cookie.name", "cookie names must be non-empty [A-Za-z0-9_-]");
    }
    Ok(())
}

fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Like [`check`], plus what only exists inside Kubernetes.
pub fn check_local(controller: Controller, spec: &IngressSpec) -> Result<(), Unsupported> {
    check(controller, spec)?;
    if spec.service.session_affinity_client_ip {
        return Err(Unsupported::new(
            controller,
            "service.session_affinity_client_ip",
            "Service sessionAffinity is implemented by kube-proxy; the local environment has no kube-proxy",
        ));
    }
    if spec.service.publish_not_ready_addresses {
        return Err(Unsupported::new(
            controller,
            "service.publish_not_ready_addresses",
            "publishNotReadyAddresses is an EndpointSlice behaviour of a real cluster",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[track_caller]
    fn check_unsupported(controller: Controller, spec: &IngressSpec, knob: &str) {
        let err = check(controller, spec).expect_err("should be unsupported");
        assert_eq!(err.knob, knob);
        assert!(!err.reason.is_empty());
    }

    #[test]
    fn plain_spec_is_supported_everywhere() {
        for c in Controller::ALL {
            check(c, &IngressSpec::new(3)).unwrap();
            check_local(c, &IngressSpec::new(3)).unwrap();
        }
    }

    #[test]
    fn tunnel_timeout_is_haproxy_only() {
        let mut spec = IngressSpec::new(1);
        spec.timeouts.tunnel = Some(Duration::from_secs(3));
        check_unsupported(Controller::Nginx, &spec, "timeouts.tunnel");
        check_unsupported(Controller::Traefik, &spec, "timeouts.tunnel");
        check(Controller::Haproxy, &spec).unwrap();
    }

    #[test]
    fn traefik_client_ip_affinity_is_unsupported_in_every_environment() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        check_unsupported(Controller::Traefik, &spec, "affinity.client_ip");
        assert_eq!(
            check_local(Controller::Traefik, &spec).unwrap_err().knob,
            "affinity.client_ip"
        );
        check(Controller::Nginx, &spec).unwrap();
        check(Controller::Haproxy, &spec).unwrap();
    }

    #[test]
    fn service_settings_are_unsupported_locally() {
        let mut spec = IngressSpec::new(1);
        spec.service.session_affinity_client_ip = true;
        for c in Controller::ALL {
            check(c, &spec).unwrap();
            let err = check_local(c, &spec).unwrap_err();
            assert_eq!(err.knob, "service.session_affinity_client_ip");
        }
    }
}

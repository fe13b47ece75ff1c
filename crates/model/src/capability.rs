//! The capability table: whether a controller can express a spec in an environment.
//!
//! **Invariant:** both environments ask this one function, so they give the same answer for the
//! same controller; only what an environment itself lacks differs (kube-proxy and EndpointSlices
//! in `local`).

use crate::controller::Controller;
use crate::env::EnvKind;
use crate::spec::{Affinity, IngressSpec, Unsupported};

/// `Ok` when `controller` can express everything `spec` asks in `env`; otherwise the first knob
/// it cannot, with the reason.
pub fn check(controller: Controller, env: EnvKind, spec: &IngressSpec) -> Result<(), Unsupported> {
    (controller.info().check)(spec)?;
    let unsupported = |knob: &str, reason: &str| Err(Unsupported::new(controller, knob, reason));
    if let Affinity::Cookie(cookie) = &spec.affinity
        && !valid_cookie_name(&cookie.name)
    {
        return unsupported("affinity.cookie.name", "cookie names must be non-empty [A-Za-z0-9_-]");
    }
    match env {
        EnvKind::Local => {
            if spec.service.session_affinity_client_ip {
                return unsupported(
                    "service.session_affinity_client_ip",
                    "Service sessionAffinity is implemented by kube-proxy; the local environment has no kube-proxy",
                );
            }
            if spec.service.publish_not_ready_addresses {
                return unsupported(
                    "service.publish_not_ready_addresses",
                    "publishNotReadyAddresses is an EndpointSlice behaviour of a real cluster",
                );
            }
        }
        EnvKind::Kind => {
            if spec.pods == 0 {
                return unsupported(
                    "pods",
                    "a Deployment behind an Ingress needs at least one pod for the suite",
                );
            }
        }
    }
    Ok(())
}

fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spec::CookieAffinity;

    #[track_caller]
    fn check_unsupported(controller: Controller, env: EnvKind, spec: &IngressSpec, knob: &str) {
        let err = check(controller, env, spec).expect_err("should be unsupported");
        assert_eq!(err.knob, knob);
        assert!(!err.reason.is_empty());
    }

    #[test]
    fn plain_spec_is_supported_everywhere() {
        for c in Controller::ALL {
            for env in EnvKind::ALL {
                check(c, env, &IngressSpec::new(3)).unwrap();
            }
        }
    }

    #[test]
    fn tunnel_timeout_is_haproxy_only() {
        let mut spec = IngressSpec::new(1);
        spec.timeouts.tunnel = Some(Duration::from_secs(3));
        for env in EnvKind::ALL {
            check_unsupported(Controller::Nginx, env, &spec, "timeouts.tunnel");
            check_unsupported(Controller::Traefik, env, &spec, "timeouts.tunnel");
            check(Controller::Haproxy, env, &spec).unwrap();
        }
    }

    #[test]
    fn traefik_client_ip_affinity_is_unsupported_in_every_environment() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::ClientIp);
        for env in EnvKind::ALL {
            check_unsupported(Controller::Traefik, env, &spec, "affinity.client_ip");
            check(Controller::Nginx, env, &spec).unwrap();
            check(Controller::Haproxy, env, &spec).unwrap();
        }
    }

    #[test]
    fn haproxy_cookie_max_age_is_unsupported_in_every_environment() {
        let spec = IngressSpec::new(3).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "SID".to_owned(),
            max_age_secs: Some(5),
        }));
        for env in EnvKind::ALL {
            check_unsupported(Controller::Haproxy, env, &spec, "affinity.cookie.max_age_secs");
            check(Controller::Nginx, env, &spec).unwrap();
        }
    }

    #[test]
    fn service_settings_exist_only_in_kubernetes() {
        let mut spec = IngressSpec::new(1);
        spec.service.session_affinity_client_ip = true;
        for c in Controller::ALL {
            check(c, EnvKind::Kind, &spec).unwrap();
            check_unsupported(c, EnvKind::Local, &spec, "service.session_affinity_client_ip");
        }
    }

    #[test]
    fn a_bad_cookie_name_is_refused() {
        let spec = IngressSpec::new(1).with_affinity(Affinity::Cookie(CookieAffinity {
            name: "a b".to_owned(),
            max_age_secs: None,
        }));
        check_unsupported(Controller::Nginx, EnvKind::Local, &spec, "affinity.cookie.name");
    }
}

//! Pure pieces of the kind environment: namespace names, patch bodies, wait conditions.
//!
//! Everything here is a plain function of its inputs so it is unit-tested without a cluster;
//! [`super`] wraps the conditions in `kube::runtime::wait::await_condition` with timeouts.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use model::{Controller, IngressSpec};

/// Namespace for one deployment: `tb-<controller>-<8 hex digits>`, a valid DNS-1123 label.
pub fn namespace_name(controller: Controller, suffix: u32) -> String {
    format!("tb-{}-{suffix:08x}", controller.name())
}

/// `spec` as deployed in `namespace`: served on that namespace's own host
/// ([`crate::render::kind::deployment_host`]), so no other Ingress can shadow its route.
pub fn spec_in_namespace(spec: &IngressSpec, namespace: &str) -> IngressSpec {
    let mut spec = spec.clone();
    spec.host = crate::render::kind::deployment_host(namespace);
    spec
}

/// Whether `name` is a valid DNS-1123 label (what a namespace name must be).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// What `kubectl rollout restart` sends: a new pod-template annotation, so every pod is replaced.
pub fn rollout_restart_patch(restarted_at_rfc3339: &str) -> Value {
    json!({
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": restarted_at_rfc3339
        }}}}
    })
}

/// A merge patch setting the replica count.
pub fn scale_patch(replicas: u32) -> Value {
    json!({"spec": {"replicas": replicas}})
}

/// A strategic-merge patch setting one container's args (containers merge by name).
pub fn container_args_patch(container: &str, args: &[String]) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": container, "args": args}]}}}})
}

/// RFC 3339 UTC timestamp with seconds precision, as kubectl writes `restartedAt`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A rollout is done when the controller has seen the latest spec and every replica is updated,
/// ready and available, with no old pods left over.
pub fn deployment_rolled_out(obj: Option<&Deployment>) -> bool {
    let Some(d) = obj else { return false };
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.ready_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
}

/// The args of `container` in a Deployment's pod template (empty when unset).
pub fn container_args(deployment: &Deployment, container: &str) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == container))
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

/// Whether pods with exactly `args` are what serves: in the spec *and* rolled out. Args in the spec
/// alone prove nothing — the rollout that puts them into a pod may not have finished.
pub fn static_args_applied(deployment: &Deployment, container: &str, args: &[String]) -> bool {
    container_args(deployment, container) == args && deployment_rolled_out(Some(deployment))
}

/// A pod whose Ready condition is True.
pub fn pod_ready(obj: Option<&Pod>) -> bool {
    obj.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| conds.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Pods (by name) that the EndpointSlices list as ready and not terminating: what a controller
/// that follows EndpointSlices routes new connections to.
pub fn ready_endpoint_pods(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| {
            let c = e.conditions.as_ref();
            // The API: "nil should be interpreted as true" for ready, as false for terminating.
            c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
        })
        .filter_map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()))
        .collect()
}

/// The HTTP status code from the first line of a response (`HTTP/1.1 200 OK`).
pub fn status_code(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Whether a Gateway API object's or policy's status says `Accepted=True` for its current
/// generation: in `status.conditions`, or for every parent/ancestor (`status.parents[]`,
/// `status.ancestors[]`) it lists.
pub fn accepted_at_generation(object: &serde_json::Value) -> bool {
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    let accepted = |conditions: &serde_json::Value| {
        conditions.as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Accepted"
                    && c["status"] == "True"
                    && c["observedGeneration"].as_i64().unwrap_or(0) >= generation
            })
        })
    };
    let status = &object["status"];
    if accepted(&status["conditions"]) {
        return true;
    }
    ["parents", "ancestors"].iter().any(|key| {
        status[key]
            .as_array()
            .is_some_and(|list| !list.is_empty() && list.iter().all(|p| accepted(&p["conditions"])))
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn accepted_means_the_current_generation_was_accepted_by_every_ancestor() {
        let policy = |observed: i64, status: &str| {
            serde_json::json!({
                "metadata": {"generation": 2},
                "status": {"ancestors": [{"conditions": [
                    {"type": "Accepted", "status": status, "observedGeneration": observed}
                ]}]},
            })
        };
        assert!(accepted_at_generation(&policy(2, "True")));
        assert!(!accepted_at_generation(&policy(1, "True")), "an older generation");
        assert!(!accepted_at_generation(&policy(2, "False")));
        assert!(!accepted_at_generation(
            &serde_json::json!({"metadata": {"generation": 1}})
        ));
    }
    use std::time::{Duration, UNIX_EPOCH};

    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    use super::*;

    #[test]
    fn namespace_names_are_dns_labels_and_distinct() {
        let a = namespace_name(Controller::Haproxy, 0xdead_beef);
        assert_eq!(a, "tb-haproxy-deadbeef");
        assert!(is_dns_label(&a));
        assert_ne!(a, namespace_name(Controller::Haproxy, 1));
        assert!(!is_dns_label("Tb_bad"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn restart_and_scale_patches_are_what_kubectl_sends() {
        let p = rollout_restart_patch("2026-01-02T03:04:05Z");
        assert_eq!(
            p["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(scale_patch(5), json!({"spec": {"replicas": 5}}));
        let args = container_args_patch("traefik", &["--a=1".to_owned()]);
        assert_eq!(args["spec"]["template"]["spec"]["containers"][0]["name"], "traefik");
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_767_323_045)),
            "2026-01-02T03:04:05Z"
        );
    }

    fn deployment(generation: i64, observed: i64, replicas: i32, updated: i32, ready: i32, total: i32) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                replicas: Some(total),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    #[test]
    fn rollout_waits_for_new_generation_and_old_pods_gone() {
        assert!(deployment_rolled_out(Some(&deployment(2, 2, 3, 3, 3, 3))));
        assert!(
            !deployment_rolled_out(Some(&deployment(3, 2, 3, 3, 3, 3))),
            "not observed yet"
        );
        assert!(
            !deployment_rolled_out(Some(&deployment(2, 2, 3, 2, 3, 3))),
            "one old pod"
        );
        assert!(
            !deployment_rolled_out(Some(&deployment(2, 2, 3, 3, 3, 4))),
            "surge pod still there"
        );
        assert!(!deployment_rolled_out(None));
    }

    #[test]
    fn static_args_count_only_once_rolled_out() {
        use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
        let args = vec!["--entryPoints.web.transport.lifeCycle.graceTimeOut=5s".to_owned()];
        let with_args = |mut d: Deployment| {
            d.spec.as_mut().unwrap().template = PodTemplateSpec {
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "traefik".to_owned(),
                        args: Some(args.clone()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            };
            d
        };
        // Patched, but the surge pod never started: the old pod still runs the old args.
        let stuck = with_args(deployment(2, 2, 1, 0, 1, 2));
        assert_eq!(container_args(&stuck, "traefik"), args);
        assert!(!static_args_applied(&stuck, "traefik", &args));
        assert!(static_args_applied(
            &with_args(deployment(2, 2, 1, 1, 1, 1)),
            "traefik",
            &args
        ));
        assert!(!static_args_applied(
            &with_args(deployment(2, 2, 1, 1, 1, 1)),
            "traefik",
            &[]
        ));
    }

    #[test]
    fn ready_endpoints_exclude_terminating_and_unready() {
        let ep = |name: &str, ready: bool, terminating: bool| Endpoint {
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(terminating),
            }),
            target_ref: Some(ObjectReference {
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let slice = EndpointSlice {
            endpoints: vec![ep("a", true, false), ep("b", false, false), ep("c", true, true)],
            ..EndpointSlice::default()
        };
        assert_eq!(ready_endpoint_pods(&[slice]), BTreeSet::from(["a".to_owned()]));
    }

    #[test]
    fn ready_null_means_ready() {
        let ep = |name: &str, conditions: Option<EndpointConditions>| Endpoint {
            conditions,
            target_ref: Some(ObjectReference {
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let unset = EndpointConditions::default();
        let terminating = EndpointConditions {
            terminating: Some(true),
            ..EndpointConditions::default()
        };
        let slice = EndpointSlice {
            endpoints: vec![ep("a", Some(unset)), ep("b", None), ep("c", Some(terminating))],
            ..EndpointSlice::default()
        };
        assert_eq!(
            ready_endpoint_pods(&[slice]),
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn deployed_spec_gets_its_namespace_host() {
        let namespace = namespace_name(Controller::Nginx, 7);
        let spec = spec_in_namespace(&IngressSpec::new(3), &namespace);
        assert_eq!(spec.host, "tb-nginx-00000007.testbed.local");
        assert_ne!(spec.host, crate::render::kind::SAMPLE_HOST);
    }

    #[test]
    fn status_line_parses() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\nx: y"), Some(200));
        assert_eq!(status_code("HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(status_code("garbage"), None);
    }
}

//! ingress-nginx (kubernetes/ingress-nginx controller-v1.15.1, chart 4.15.1): kind objects and local driver.
//!
//! kind: annotations `nginx.ingress.kubernetes.io/proxy-read-timeout`, `proxy-send-timeout`
//! (seconds), `affinity: cookie`, `session-cookie-name`, `session-cookie-max-age`,
//! `upstream-hash-by`; ConfigMap keys `worker-shutdown-timeout`, `use-proxy-protocol`.
//! local: [`config`] writes nginx.conf as the controller's template does; [`driver`] runs it.

pub mod config;
mod driver;

use std::collections::BTreeMap;
use std::time::Duration;

use model::{Affinity, Controller, IngressSpec, Unsupported};
use serde_json::json;

use super::{ControllerChange, ControllerImpl, Driver};
use crate::render::kind::{
    ControllerInstall, ControllerSettings, HelmCommon, RenderOptions, config_map_settings, drain_limit, duration_value,
};
use crate::render::local::LocalContext;

#[derive(Debug)]
pub struct Nginx;

static INSTALL: ControllerInstall = ControllerInstall {
    controller: Controller::Nginx,
    namespace: "ingress-nginx",
    release: "ingress-nginx",
    workload_kind: "Deployment",
    workload: "ingress-nginx-controller",
    container: "controller",
    config_map: Some("ingress-nginx-controller"),
    http_port: 18080,
    https_port: 18443,
};

/// ingress-nginx timeouts are whole seconds; round up so a short timeout never becomes 0.
fn seconds(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1).to_string()
}

impl ControllerImpl for Nginx {
    fn controller(&self) -> Controller {
        Controller::Nginx
    }

    fn install(&self) -> &'static ControllerInstall {
        &INSTALL
    }

    fn ingress_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let t = &spec.timeouts;
        let key = |k: &str| format!("nginx.ingress.kubernetes.io/{k}");
        // proxy-read/send-timeout govern upgraded connections; the idle timeout sets both.
        if let Some(read) = t.read.or(t.idle) {
            a.insert(key("proxy-read-timeout"), seconds(read));
        }
        if let Some(send) = t.send.or(t.idle) {
            a.insert(key("proxy-send-timeout"), seconds(send));
        }
        match &spec.affinity {
            Affinity::None => {}
            Affinity::Cookie(cookie) => {
                a.insert(key("affinity"), "cookie".to_owned());
                a.insert(key("affinity-mode"), "persistent".to_owned());
                a.insert(key("session-cookie-name"), cookie.name.clone());
                if let Some(max_age) = cookie.max_age_secs {
                    a.insert(key("session-cookie-max-age"), max_age.to_string());
                }
            }
            Affinity::ClientIp => {
                a.insert(key("upstream-hash-by"), "$remote_addr".to_owned());
            }
        }
        a
    }

    fn service_annotations(&self, _spec: &IngressSpec) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn settings(&self, spec: &IngressSpec) -> ControllerSettings {
        config_map_settings(
            &INSTALL,
            BTreeMap::from([
                ("worker-shutdown-timeout".to_owned(), duration_value(drain_limit(spec))),
                ("use-proxy-protocol".to_owned(), spec.proxy_protocol.to_string()),
            ]),
        )
    }

    fn helm_values(&self, common: &HelmCommon) -> serde_json::Value {
        let class = Controller::Nginx.ingress_class();
        json!({
            "controller": {
                "ingressClass": class,
                "ingressClassResource": {
                    "name": class,
                    "enabled": true,
                    "default": false,
                    "controllerValue": "k8s.io/ingress-nginx",
                },
                "watchIngressWithoutClass": false,
                "kind": "Deployment",
                "replicaCount": 1,
                "hostPort": {"enabled": true, "ports": {"http": INSTALL.http_port, "https": INSTALL.https_port}},
                "service": {"type": "ClusterIP"},
                "publishService": {"enabled": false},
                "extraArgs": {"publish-status-address": "localhost"},
                "nodeSelector": common.node_selector,
                "tolerations": common.tolerations,
                "terminationGracePeriodSeconds": common.grace_seconds,
                "admissionWebhooks": {"enabled": false},
                "config": {"worker-shutdown-timeout": common.drain, "use-proxy-protocol": "false"},
                "updateStrategy": common.one_node_rollout,
            }
        })
    }

    /// `keep-alive` (whole seconds) in the ConfigMap: the controller reloads for any ConfigMap
    /// change (internal/ingress/controller/controller.go `syncIngress`) and logs "Backend
    /// successfully reloaded" once it did.
    fn controller_change(&self, _spec: &IngressSpec, _opts: &RenderOptions, serial: u32) -> ControllerChange {
        let value = config::changed_keep_alive(serial + 1).as_secs().to_string();
        ControllerChange::ConfigMap {
            data: BTreeMap::from([(config::CHANGED_KEY.to_owned(), value)]),
            reloaded_log: "Backend successfully reloaded",
        }
    }

    fn local_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>, Unsupported> {
        Ok(vec![
            ("nginx.conf".to_owned(), config::render(spec, ctx)?),
            (config::SCRIPT_FILE.to_owned(), config::SCRIPT.to_owned()),
        ])
    }

    fn driver(&self) -> Box<dyn Driver> {
        Box::new(driver::NginxDriver::default())
    }

    fn version_args(&self) -> &'static [&'static str] {
        &["-v"]
    }

    fn parse_version(&self, output: &str) -> Option<String> {
        output
            .lines()
            .find_map(|l| l.strip_prefix("nginx version: "))
            .map(|v| v.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_sets_read_and_send_timeouts_in_whole_seconds() {
        let spec = IngressSpec::new(3).with_idle_timeout(Duration::from_millis(2500));
        let a = Nginx.ingress_annotations(&spec);
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3");
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-send-timeout"], "3");
    }

    #[test]
    fn version_is_read_from_nginx_v() {
        assert_eq!(
            Nginx.parse_version("nginx version: nginx/1.31.3\n").as_deref(),
            Some("nginx/1.31.3")
        );
    }
}

//! HAProxy Kubernetes Ingress (haproxytech/kubernetes-ingress v3.2.6, chart 1.49.0): kind objects and local driver.
//!
//! kind: `load-balance` and `timeout-server` on the Ingress; `cookie-persistence` on the Service
//! (the controller reads it from Service, Ingress and ConfigMap, in that order:
//! documentation/annotations.md, pkg/service/service.go); ConfigMap keys `timeout-client`,
//! `timeout-server`, `timeout-tunnel` ([`timeouts`], the one translation both environments read),
//! `hard-stop-after`, `proxy-protocol`.
//! local: [`config`] writes haproxy.cfg and the routing maps as the controller does, with the TLS
//! bind serving a certificates directory (`ssl crt <dir>`, one `<namespace>_<secret>.pem` a TLS
//! Secret); [`driver`] fills server slots, replaces map contents and adds a new host's
//! certificate over the runtime API (no reload), and reloads through the master CLI for
//! controller-wide changes.

pub mod config;
mod driver;
pub mod timeouts;

use std::collections::BTreeMap;

use model::{Affinity, Controller, IngressSpec, Unsupported};
use serde_json::json;

use self::timeouts::Scope;
use super::{ControllerChange, ControllerImpl, Driver};
use crate::render::kind::{
    ControllerInstall, ControllerSettings, HelmCommon, RenderOptions, config_map_settings, drain_limit, duration_value,
};
use crate::render::local::LocalContext;

#[derive(Debug)]
pub struct Haproxy;

static INSTALL: ControllerInstall = ControllerInstall {
    controller: Controller::Haproxy,
    namespace: "haproxy-controller",
    release: "haproxy",
    workload_kind: "DaemonSet",
    workload: "haproxy-kubernetes-ingress",
    container: "kubernetes-ingress-controller",
    config_map: Some("haproxy-kubernetes-ingress"),
    http_port: 38080,
    https_port: 38443,
};

impl ControllerImpl for Haproxy {
    fn controller(&self) -> Controller {
        Controller::Haproxy
    }

    fn install(&self) -> &'static ControllerInstall {
        &INSTALL
    }

    fn ingress_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String> {
        let key = |k: &str| format!("haproxy.org/{k}");
        let mut a = BTreeMap::new();
        for timeout in timeouts::timeouts(spec).iter().filter(|k| k.scope == Scope::Ingress) {
            a.insert(key(timeout.key), duration_value(timeout.value));
        }
        if let Affinity::ClientIp = spec.affinity {
            a.insert(key("load-balance"), "source".to_owned());
        }
        a
    }

    fn service_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        if let Affinity::Cookie(cookie) = &spec.affinity {
            // Read from Service, Ingress and ConfigMap (the Service first); on the Service it pins
            // this backend whichever Ingress routes to it.
            a.insert("haproxy.org/cookie-persistence".to_owned(), cookie.name.clone());
        }
        a
    }

    fn settings(&self, spec: &IngressSpec) -> ControllerSettings {
        let mut data = BTreeMap::from([("hard-stop-after".to_owned(), duration_value(drain_limit(spec)))]);
        for timeout in timeouts::timeouts(spec).iter().filter(|k| k.scope == Scope::ConfigMap) {
            data.insert(timeout.key.to_owned(), duration_value(timeout.value));
        }
        if spec.proxy_protocol {
            data.insert("proxy-protocol".to_owned(), "0.0.0.0/0".to_owned());
        }
        config_map_settings(&INSTALL, data)
    }

    fn helm_values(&self, common: &HelmCommon) -> serde_json::Value {
        let class = Controller::Haproxy.ingress_class();
        json!({
            "controller": {
                "kind": "DaemonSet",
                "ingressClass": class,
                // Chart 1.49.0 creates the IngressClass unconditionally (no `enabled` key).
                "ingressClassResource": {"name": class, "default": false},
                "daemonset": {
                    "useHostPort": true,
                    "hostPorts": {"http": INSTALL.http_port, "https": INSTALL.https_port, "stat": 38024},
                },
                "service": {"enabled": false},
                // Its default (true) passes --publish-service naming the Service disabled above.
                "publishService": {"enabled": false},
                "strategy": common.one_node_rollout,
                "nodeSelector": common.node_selector,
                "tolerations": common.tolerations,
                "terminationGracePeriodSeconds": common.grace_seconds,
                "config": {"hard-stop-after": common.drain},
            }
        })
    }

    /// `timeout-queue` in the ConfigMap: a `defaults` key, which the controller reloads for
    /// (pkg/controller/global.go `defaultsCfg`: "Defaults config updated"); it logs
    /// "HAProxy reloaded" once the reload succeeded (pkg/controller/controller.go `updateHAProxy`).
    fn controller_change(&self, _spec: &IngressSpec, _opts: &RenderOptions, serial: u32) -> ControllerChange {
        let value = config::changed_queue_timeout(serial + 1);
        ControllerChange::ConfigMap {
            data: BTreeMap::from([(config::CHANGED_KEY.to_owned(), duration_value(value))]),
            reloaded_log: "HAProxy reloaded",
        }
    }

    /// haproxy.cfg and the maps. The certificate files are copies of the TLS files the context
    /// names, written by the driver ([`config::frontend_certs`]), so they are not text rendered here.
    fn local_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>, Unsupported> {
        let slots: Vec<_> = ctx.backends.pods.iter().copied().map(Some).collect();
        let mut files = vec![("haproxy.cfg".to_owned(), config::render(spec, ctx, &slots)?)];
        for (map, rows) in config::route_maps(spec, ctx) {
            files.push((map.relative_path().to_owned(), config::map_file_text(&rows)));
        }
        Ok(files)
    }

    fn driver(&self) -> Box<dyn Driver> {
        Box::new(driver::HaproxyDriver::default())
    }

    fn version_args(&self) -> &'static [&'static str] {
        &["-v"]
    }

    fn parse_version(&self, output: &str) -> Option<String> {
        output
            .lines()
            .find_map(|l| l.strip_prefix("HAProxy version "))
            .and_then(|v| v.split_whitespace().next())
            .map(|v| format!("HAProxy {v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_haproxy_v() {
        assert_eq!(
            Haproxy
                .parse_version("HAProxy version 2.8.25-5cf5d0683 2026/06/26 - https://haproxy.org/\n")
                .as_deref(),
            Some("HAProxy 2.8.25-5cf5d0683")
        );
    }
}

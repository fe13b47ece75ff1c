//! Traefik (chart 39.0.8, Traefik v3.6.13, Kubernetes Ingress provider): kind objects and local driver.
//!
//! kind: `traefik.ingress.kubernetes.io/router.entrypoints` and `router.tls` on the Ingress;
//! `service.sticky.cookie`, `.name`, `.maxage` on the *Service* (the provider's Service
//! annotations are serversScheme, serversTransport, passHostHeader, sticky, nativeLB and
//! nodePortLB: pkg/provider/kubernetes/ingress/annotations.go — no load-balancer strategy).
//! Entry point timeouts, `lifeCycle.graceTimeOut` and `proxyProtocol` are static arguments.
//! local: [`config`] writes the static and the dynamic (file provider) configuration; [`driver`]
//! rewrites the dynamic file, which Traefik applies without a restart.

pub mod config;
mod driver;

use std::collections::BTreeMap;

use model::{Affinity, Controller, IngressSpec, Unsupported};
use serde_json::json;

use super::{ControllerChange, ControllerImpl, Driver};
use crate::render::kind::{
    ControllerInstall, ControllerSettings, HelmCommon, RenderOptions, drain_limit, duration_value,
};
use crate::render::local::LocalContext;

#[derive(Debug)]
pub struct Traefik;

static INSTALL: ControllerInstall = ControllerInstall {
    controller: Controller::Traefik,
    namespace: "traefik",
    release: "traefik",
    workload_kind: "Deployment",
    workload: "traefik",
    container: "traefik",
    config_map: None,
    http_port: 28080,
    https_port: 28443,
};

/// Traefik arguments the testbed owns; others (from the Helm chart) are left alone.
pub const MANAGED_ARG_PREFIXES: [&str; 4] = [
    "--entryPoints.web.transport.",
    "--entryPoints.websecure.transport.",
    "--entryPoints.web.proxyProtocol.",
    "--entryPoints.websecure.proxyProtocol.",
];

impl ControllerImpl for Traefik {
    fn controller(&self) -> Controller {
        Controller::Traefik
    }

    fn install(&self) -> &'static ControllerInstall {
        &INSTALL
    }

    fn ingress_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String> {
        let key = |k: &str| format!("traefik.ingress.kubernetes.io/{k}");
        let entrypoint = if spec.tls { "websecure" } else { "web" };
        let mut a = BTreeMap::from([(key("router.entrypoints"), entrypoint.to_owned())]);
        if spec.tls {
            a.insert(key("router.tls"), "true".to_owned());
        }
        a
    }

    fn service_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        if let Affinity::Cookie(cookie) = &spec.affinity {
            let key = |k: &str| format!("traefik.ingress.kubernetes.io/service.sticky.cookie{k}");
            a.insert(key(""), "true".to_owned());
            a.insert(key(".name"), cookie.name.clone());
            if let Some(max_age) = cookie.max_age_secs {
                a.insert(key(".maxage"), max_age.to_string());
            }
        }
        a
    }

    fn settings(&self, spec: &IngressSpec) -> ControllerSettings {
        let drain = duration_value(drain_limit(spec));
        let mut args = Vec::new();
        for ep in ["web", "websecure"] {
            args.push(format!("--entryPoints.{ep}.transport.lifeCycle.graceTimeOut={drain}"));
            if let Some(idle) = spec.timeouts.idle {
                let idle = duration_value(idle);
                args.push(format!(
                    "--entryPoints.{ep}.transport.respondingTimeouts.readTimeout={idle}"
                ));
                args.push(format!(
                    "--entryPoints.{ep}.transport.respondingTimeouts.idleTimeout={idle}"
                ));
            }
            if spec.proxy_protocol {
                args.push(format!("--entryPoints.{ep}.proxyProtocol.trustedIPs=0.0.0.0/0"));
            }
        }
        ControllerSettings::StaticArgs {
            managed_prefixes: &MANAGED_ARG_PREFIXES,
            args,
        }
    }

    fn helm_values(&self, common: &HelmCommon) -> serde_json::Value {
        let drain = &common.drain;
        json!({
            // Chart v36 removed root `globalArguments` (39.0.8's values.schema.json rejects it);
            // these two keys render --global.checkNewVersion/--global.sendAnonymousUsage=false.
            "global": {"checkNewVersion": false, "sendAnonymousUsage": false},
            "ingressClass": {"enabled": true, "isDefaultClass": false, "name": Controller::Traefik.ingress_class()},
            "providers": {
                "kubernetesIngress": {"enabled": true, "publishedService": {"enabled": false}},
                "kubernetesCRD": {"enabled": false},
            },
            "ports": {
                "web": {"hostPort": INSTALL.http_port},
                "websecure": {"hostPort": INSTALL.https_port},
            },
            "service": {"type": "ClusterIP"},
            "nodeSelector": common.node_selector,
            "tolerations": common.tolerations,
            "deployment": {"replicas": 1, "terminationGracePeriodSeconds": common.grace_seconds},
            "updateStrategy": common.one_node_rollout,
            "additionalArguments": [
                format!("--entryPoints.web.transport.lifeCycle.graceTimeOut={drain}"),
                format!("--entryPoints.websecure.transport.lifeCycle.graceTimeOut={drain}"),
            ],
        })
    }

    /// Traefik never reloads. Its nearest equivalent is a dynamic-configuration change, applied in
    /// process: the deployment's router priority ([`config::CHANGED_ANNOTATION`]). Nothing is
    /// logged at the chart's log level; the provider pushes a change at once and then at most one
    /// per `providersThrottleDuration` (2 s: cmd/configuration.go); the environment waits for a
    /// marker route that rides in the same Ingress update.
    fn controller_change(&self, _spec: &IngressSpec, _opts: &RenderOptions, serial: u32) -> ControllerChange {
        ControllerChange::IngressAnnotations {
            annotations: BTreeMap::from([(
                config::CHANGED_ANNOTATION.to_owned(),
                config::changed_priority(serial + 1).to_string(),
            )]),
        }
    }

    fn local_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>, Unsupported> {
        Ok(vec![
            ("traefik.yaml".to_owned(), config::render_static(spec, ctx)?),
            (
                config::DYNAMIC_FILE.to_owned(),
                config::render_dynamic(spec, ctx, &ctx.backends.pods, 1)?,
            ),
        ])
    }

    fn driver(&self) -> Box<dyn Driver> {
        Box::new(driver::TraefikDriver::default())
    }

    fn version_args(&self) -> &'static [&'static str] {
        &["version"]
    }

    fn parse_version(&self, output: &str) -> Option<String> {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version:"))
            .map(|v| format!("Traefik {}", v.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_traefik_version() {
        assert_eq!(
            Traefik.parse_version("Version:      3.7.15\nCodename: x\n").as_deref(),
            Some("Traefik 3.7.15")
        );
    }
}

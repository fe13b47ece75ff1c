//! Envoy Gateway (envoyproxy/gateway v1.9.0, chart gateway-helm v1.9.0, Envoy 1.39.0), driven
//! through Gateway API: kind install row and Helm values, local driver.
//!
//! kind: a GatewayClass, Gateway, HTTPRoute and Envoy Gateway's policy objects instead of an
//! Ingress ([`kind`]); no controller-wide settings: every knob rides on
//! the deployment's own objects. local: [`config`] renders the xDS Envoy Gateway's translator
//! produces, as files Envoy watches; [`driver`] runs Envoy as Envoy Gateway starts it and
//! replaces those files as the control plane pushes xDS.

pub mod config;
mod driver;
pub mod kind;

use std::collections::BTreeMap;

use model::{Controller, EnvKind, IngressSpec, Unsupported};
use serde_json::json;

use super::{ControllerChange, ControllerImpl, Driver};
use crate::render::kind::{ControllerInstall, ControllerSettings, HelmCommon, RenderOptions, to_yaml_doc};
use crate::render::local::LocalContext;

#[derive(Debug)]
pub struct EnvoyGateway;

static INSTALL: ControllerInstall = ControllerInstall {
    controller: Controller::EnvoyGateway,
    namespace: "envoy-gateway-system",
    release: "eg",
    // The control plane; Envoy Gateway creates the Envoy Deployment for the Gateway itself.
    workload_kind: "Deployment",
    workload: "envoy-gateway",
    container: "envoy-gateway",
    config_map: None,
    http_port: 48080,
    https_port: 48443,
};

impl ControllerImpl for EnvoyGateway {
    fn controller(&self) -> Controller {
        Controller::EnvoyGateway
    }

    fn install(&self) -> &'static ControllerInstall {
        &INSTALL
    }

    /// Gateway API has no Ingress annotations: the knobs are fields of the Gateway API and
    /// policy objects.
    fn ingress_annotations(&self, _spec: &IngressSpec) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn service_annotations(&self, _spec: &IngressSpec) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn settings(&self, _spec: &IngressSpec) -> ControllerSettings {
        ControllerSettings::None
    }

    /// The chart's defaults but for where its pods run (the ingress-ready node, as the others).
    fn helm_values(&self, common: &HelmCommon) -> serde_json::Value {
        json!({
            "deployment": {
                "replicas": 1,
                "pod": {"nodeSelector": common.node_selector, "tolerations": common.tolerations},
            },
        })
    }

    fn routing_objects(&self, spec: &IngressSpec, opts: &RenderOptions) -> Result<Option<String>, Unsupported> {
        let exposure = if opts.sample {
            kind::Exposure::InCluster
        } else {
            kind::Exposure::HostPorts {
                http: INSTALL.http_port,
                https: INSTALL.https_port,
            }
        };
        let objects = kind::render(spec, opts, exposure).map_err(|e| e.unsupported(Controller::EnvoyGateway))?;
        Ok(Some(objects.to_yaml()))
    }

    /// A Gateway listener for another host and its HTTPRoute to the same Service. The Gateway is
    /// applied whole, with the listeners of every earlier unrelated route too (those of listener
    /// changes, applied by another field manager, stay).
    fn unrelated_routing(&self, spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> Option<(String, String)> {
        let changes: Vec<_> = (0..=serial).map(|n| kind::unrelated_route(opts, n)).collect();
        let gateway = kind::with_listeners(&kind::gateway(spec, opts), changes.iter().map(|c| c.listener.clone()));
        let route = &changes.last()?.route;
        Some((
            format!("{}---\n{}", to_yaml_doc(&gateway), to_yaml_doc(route)),
            kind::unrelated_host(opts, serial),
        ))
    }

    /// Another HTTPS listener on the Gateway's port for the new host, terminating with the new
    /// Secret, and its HTTPRoute ([`kind::listener_change`]): a new SNI filter chain on Envoy's
    /// listener. The Gateway is applied whole, with the listeners of every earlier listener change
    /// too; the kind environment applies it by a field manager of its own, so the listeners of
    /// unrelated routes stay (and the next unrelated route keeps these).
    fn listener_routing(&self, spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> Option<String> {
        let changes = (0..=serial)
            .map(|n| kind::listener_change(spec, opts, n))
            .collect::<Option<Vec<_>>>()?;
        let gateway = kind::with_listeners(&kind::gateway(spec, opts), changes.iter().map(|c| c.listener.clone()));
        let route = &changes.last()?.route;
        Some(format!("{}---\n{}", to_yaml_doc(&gateway), to_yaml_doc(route)))
    }

    /// The GatewayClass and the EnvoyProxy every Gateway's fleet starts from.
    fn cluster_objects(&self, common: &HelmCommon) -> Option<String> {
        Some(format!(
            "{}---\n{}",
            to_yaml_doc(&kind::class_envoy_proxy(common)),
            to_yaml_doc(&kind::gateway_class())
        ))
    }

    /// Envoy Gateway creates the Envoy Deployment for each Gateway in its own namespace.
    fn data_plane_pods(&self, deployment_namespace: &str) -> Option<(String, &'static str)> {
        Some((kind::data_plane_selector(deployment_namespace), "envoy"))
    }

    /// Envoy Gateway never reloads Envoy. Its nearest equivalent: a change to the Gateway's
    /// ClientTrafficPolicy (`timeout.http.idleTimeout`), which replaces the listener; Envoy drains
    /// the filter chains it replaced (envoyproxy/gateway#8889).
    fn controller_change(&self, spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> ControllerChange {
        let changed = config::policies(spec).and_then(|mut p| {
            p.client.idle_timeout = Some(config::changed_idle_timeout(serial + 1));
            kind::render_policies(&p, spec, opts, kind::Exposure::InCluster)
        });
        ControllerChange::Objects {
            yaml: changed
                .ok()
                .and_then(|o| o.client_traffic_policy)
                .map(|p| to_yaml_doc(&p))
                .unwrap_or_default(),
        }
    }

    fn local_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>, Unsupported> {
        model::capability::check(Controller::EnvoyGateway, EnvKind::Local, spec)?;
        config::render_files(spec, ctx, &config::Admin::socket(ctx))
            .map_err(|e| e.unsupported(Controller::EnvoyGateway))
    }

    fn driver(&self) -> Box<dyn Driver> {
        Box::new(driver::EnvoyDriver::default())
    }

    fn version_args(&self) -> &'static [&'static str] {
        &["--version"]
    }

    /// "envoy  version: <commit>/1.39.0/Clean/RELEASE/BoringSSL" → "Envoy 1.39.0".
    fn parse_version(&self, output: &str) -> Option<String> {
        let version = output.split("version:").nth(1)?.split_whitespace().next()?;
        let number = version.split('/').nth(1)?;
        Some(format!("Envoy {number}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listener_change_applies_the_gateway_with_every_earlier_ones_listener_and_its_route() {
        let opts = RenderOptions::new("tb-test");
        let mut spec = IngressSpec::new(1).with_tls();
        spec.host = crate::render::kind::deployment_host("tb-test");
        let yaml = EnvoyGateway.listener_routing(&spec, &opts, 1).expect("a change");
        let docs = crate::kind::parse_yaml_docs(&yaml).unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d.types.as_ref().unwrap().kind.as_str()).collect();
        assert_eq!(kinds, ["Gateway", "HTTPRoute"]);
        let gateway: kind::Gateway = serde_json::from_value(serde_json::to_value(&docs[0]).unwrap()).unwrap();
        let https: Vec<(&str, &str)> = gateway
            .spec
            .listeners
            .iter()
            .filter_map(|l| {
                Some((
                    l.hostname.as_deref()?,
                    l.tls.as_ref()?.certificate_refs[0].name.as_str(),
                ))
            })
            .collect();
        assert_eq!(
            https,
            [
                ("tb-test.testbed.local", "ws-echo-tls"),
                ("listener-0-tb-test.testbed.local", "listener-0-tls"),
                ("listener-1-tb-test.testbed.local", "listener-1-tls"),
            ]
        );
        let route: kind::HTTPRoute = serde_json::from_value(serde_json::to_value(&docs[1]).unwrap()).unwrap();
        assert_eq!(route.spec.hostnames, ["listener-1-tb-test.testbed.local"]);
        assert_eq!(
            route.spec.parent_refs[0].section_name.as_deref(),
            Some("listener-1-tb-test-testbed-local-https")
        );
        assert_eq!(
            EnvoyGateway.listener_routing(&IngressSpec::new(1), &opts, 0),
            None,
            "no TLS"
        );
    }

    #[test]
    fn version_is_read_from_envoy_version() {
        let out = "/x/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.39.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(EnvoyGateway.parse_version(out).as_deref(), Some("Envoy 1.39.0"));
        assert_eq!(EnvoyGateway.parse_version("garbage"), None);
    }
}

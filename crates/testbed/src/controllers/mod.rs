//! One module per controller: how it is rendered and driven in both environments.
//!
//! Each module implements [`ControllerImpl`]: its kind install row, Ingress and Service
//! annotations, controller-wide settings and Helm values (kind), and a [`Driver`] for its data
//! plane (local: command line, configuration files, endpoint updates, reloads, readiness). Its
//! facts and capability live in the model crate's module of the same name.
//!
//! **Invariant:** [`of`] is the only place in this crate that maps a [`Controller`] to code;
//! nothing else matches on a controller (a tidy test enforces it).

pub mod envoy_gateway;
pub mod haproxy;
pub mod nginx;
pub mod traefik;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;
use model::{Controller, IngressSpec, Unsupported};
use probe::ProbeOptions;

use crate::local::Result;
use crate::ready::WaitFor;
use crate::render::kind::{ControllerInstall, ControllerSettings, HelmCommon, RenderOptions};
use crate::render::local::LocalContext;

/// The registry: the one place that maps a controller to its module.
pub fn of(controller: Controller) -> &'static dyn ControllerImpl {
    match controller {
        Controller::Nginx => &nginx::Nginx,
        Controller::Traefik => &traefik::Traefik,
        Controller::Haproxy => &haproxy::Haproxy,
        Controller::EnvoyGateway => &envoy_gateway::EnvoyGateway,
    }
}

/// Everything about one controller that the environments need.
pub trait ControllerImpl: Send + Sync + fmt::Debug {
    fn controller(&self) -> Controller;

    // ---- kind ----

    /// Where the controller lives in the cluster and which host ports reach it.
    fn install(&self) -> &'static ControllerInstall;
    /// The annotations the Ingress carries for `spec`.
    fn ingress_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String>;
    /// The annotations the Service carries for `spec` (where the controller reads them there).
    fn service_annotations(&self, spec: &IngressSpec) -> BTreeMap<String, String>;
    /// Controller-wide settings `spec` needs; every key the testbed manages is present, so
    /// applying them resets whatever the previous test set.
    fn settings(&self, spec: &IngressSpec) -> ControllerSettings;
    /// Our overrides of the controller's Helm chart.
    fn helm_values(&self, common: &HelmCommon) -> serde_json::Value;
    /// What routes a deployment's traffic when the controller is not driven through an Ingress
    /// (Gateway API and its policies): YAML documents in apply order. `None`: an Ingress of its
    /// class with [`ControllerImpl::ingress_annotations`].
    fn routing_objects(&self, spec: &IngressSpec, opts: &RenderOptions) -> Result<Option<String>, Unsupported> {
        let _ = (spec, opts);
        Ok(None)
    }
    /// `apply_unrelated_change`'s new route when it is not another Ingress: the objects (YAML)
    /// and the host they serve.
    fn unrelated_routing(&self, spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> Option<(String, String)> {
        let _ = (spec, opts, serial);
        None
    }
    /// `apply_listener_change`'s `serial`-th change when it is not another Ingress with a `tls`
    /// section: the objects (YAML) that serve its host ([`crate::render::kind::listener_host`])
    /// on the data plane's TLS listener with the certificate in its Secret
    /// ([`crate::render::kind::listener_secret_name`], applied before them). `None` for a spec
    /// without TLS too.
    fn listener_routing(&self, spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> Option<String> {
        let _ = (spec, opts, serial);
        None
    }
    /// Objects `cargo xtask up` applies once after the chart (a GatewayClass), as YAML.
    fn cluster_objects(&self, common: &HelmCommon) -> Option<String> {
        let _ = common;
        None
    }
    /// Where its data-plane pods run when not in the install row's workload: a label selector in
    /// the install namespace and the container's name.
    fn data_plane_pods(&self, deployment_namespace: &str) -> Option<(String, &'static str)> {
        let _ = deployment_namespace;
        None
    }
    /// The `serial`-th (0-based) controller-wide change a deployment of `spec` asks for through
    /// `Deployment::apply_controller_change`: one the controller applies by reloading its data
    /// plane, where it reloads at all. Local drivers make the same change
    /// ([`Driver::apply_controller_change`]).
    fn controller_change(&self, spec: &IngressSpec, opts: &RenderOptions, serial: u32) -> ControllerChange;

    // ---- local ----

    /// The configuration files its data plane starts from for `spec` in `ctx` (file name, text):
    /// what the local environment writes, and what the fuzz target feeds every spec through.
    fn local_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>, Unsupported>;
    /// A driver for one local deployment's data plane.
    fn driver(&self) -> Box<dyn Driver>;
    /// Arguments that make the data-plane binary print its version.
    fn version_args(&self) -> &'static [&'static str];
    /// The version from that output ("nginx/1.31.3", "HAProxy 2.8.25-…", "Traefik 3.6.13").
    fn parse_version(&self, output: &str) -> Option<String>;
}

/// A local data plane, driven the way its controller drives it.
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug {
    /// Starts or reserves what the data plane needs besides itself and completes the context
    /// (nginx's backend store listener). `endpoints` are the ready pods at start.
    async fn prepare(&mut self, ctx: &mut LocalContext, endpoints: &[SocketAddr]) -> Result<()> {
        let _ = (ctx, endpoints);
        Ok(())
    }
    /// The data plane's arguments (after the binary).
    fn args(&self, spec: &IngressSpec, ctx: &LocalContext) -> Vec<OsString>;
    /// Renders and writes its configuration for `ctx` (pods and extra routes filled in).
    fn write_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()>;
    /// What must hold, besides its listener, before it takes traffic and changes.
    fn ready(&self, ctx: &LocalContext) -> Vec<WaitFor>;
    /// Once it is ready: what its controller does at start besides (nginx: the first POST of the
    /// endpoints, waiting until every worker took them). `ctx` holds the ready pods.
    async fn started(&self, spec: &IngressSpec, ctx: &LocalContext, pid: u32) -> Result<()> {
        let _ = (spec, ctx, pid);
        Ok(())
    }
    /// Gives it a new endpoint set the way its controller does (never a reload) and returns once
    /// it has them. `probe` dials the data plane as a client of this deployment.
    async fn set_endpoints(&self, spec: &IngressSpec, ctx: &LocalContext, probe: &ProbeOptions) -> Result<()>;
    /// A configuration change (a new route): what its controller does with one.
    async fn apply_config(&self, spec: &IngressSpec, ctx: &LocalContext, pid: u32, probe: &ProbeOptions) -> Result<()>;
    /// The next controller-wide change ([`ControllerImpl::controller_change`]), made the way its
    /// controller makes it (a reload, where it reloads); returns once the data plane runs with it.
    async fn apply_controller_change(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        pid: u32,
        probe: &ProbeOptions,
    ) -> Result<()>;
    /// Begins the data plane's shutdown as its pod's termination does
    /// ([`model::DataPlaneShutdown`]): the preStop's effect, then the signal its container gets.
    /// Returns once the signal was sent, with when the preStop part ended; the environment
    /// SIGKILLs what is left at the end of the grace period.
    async fn shutdown(&self, spec: &IngressSpec, ctx: &LocalContext, pid: u32) -> Result<ShutdownMarks>;
    /// Processes that hold connections, given the main process.
    fn workers(&self, pid: u32) -> Vec<u32>;
}

/// When a data plane's shutdown steps happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownMarks {
    /// The preStop's part ended (where the chart has one).
    pub prestop_done: Option<std::time::SystemTime>,
    /// The signal the container gets was sent.
    pub signalled: std::time::SystemTime,
}

/// What `Deployment::apply_controller_change` does in kind for one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerChange {
    /// Keys set in the controller's ConfigMap on top of the spec's settings (applied by the same
    /// field manager, so the next deploy's settings drop them again). The controller reloads its
    /// data plane for them and logs `reloaded_log` once it did.
    ConfigMap {
        data: BTreeMap<String, String>,
        reloaded_log: &'static str,
    },
    /// Annotations put on the deployment's own Ingress: a dynamic-configuration change the
    /// controller applies in process. It logs nothing at its default level, so the same patch
    /// adds a rule for a marker host, and the change counts as applied once that host answers
    /// (one Ingress update reaches the data plane as one configuration).
    IngressAnnotations { annotations: BTreeMap<String, String> },
    /// The controller's own objects re-applied with the change (Envoy Gateway: the Gateway's
    /// ClientTrafficPolicy); applied once its status accepts the new generation.
    Objects { yaml: String },
}

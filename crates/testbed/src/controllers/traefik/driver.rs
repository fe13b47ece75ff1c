//! Traefik driven locally: one process, a static file and a watched dynamic file.
//!
//! Traefik never reloads: endpoint and configuration changes are a new dynamic file, applied in
//! process (traefik v3.6.13 pkg/server/server_entrypoint_tcp.go `SwitchRouter`); existing
//! connections stay. Each write carries a generation whose marker router answers once Traefik
//! applied it.

use std::ffi::OsString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use model::IngressSpec;
use probe::ProbeOptions;

use super::config;
use crate::controllers::{Driver, ShutdownMarks};
use crate::local::READY_TIMEOUT;
use crate::local::process::signal;
use crate::local::{LocalError, Result, io_err, write_file};
use crate::ready::{self, Accept, WaitFor};
use crate::render::local::LocalContext;
use nix::sys::signal::Signal;

#[derive(Debug)]
pub(super) struct TraefikDriver {
    /// Generation of the dynamic configuration last written.
    generation: Mutex<u64>,
    /// Controller-wide changes made so far ([`config::CHANGED_ANNOTATION`]).
    changes: AtomicU32,
}

impl Default for TraefikDriver {
    fn default() -> Self {
        TraefikDriver {
            generation: Mutex::new(1),
            changes: AtomicU32::new(0),
        }
    }
}

impl TraefikDriver {
    fn next_generation(&self) -> u64 {
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        *g
    }

    fn write_dynamic(&self, spec: &IngressSpec, ctx: &LocalContext, generation: u64) -> Result<()> {
        let changes = self.changes.load(Ordering::SeqCst);
        let text = config::render_dynamic_with_changes(spec, ctx, &ctx.backends.pods, generation, changes)?;
        let dir = config::dynamic_dir(ctx);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Written beside the watched directory, then renamed in: Traefik never reads half a file.
        let tmp = ctx.runtime_dir.join(format!(".{}.tmp", config::DYNAMIC_FILE));
        write_file(&tmp, &text)?;
        let dest = dir.join(config::DYNAMIC_FILE);
        std::fs::rename(&tmp, &dest).map_err(io_err(format!("replacing {}", dest.display())))
    }

    /// Rewrites the dynamic file and waits until its generation's marker router answers.
    async fn push(&self, spec: &IngressSpec, ctx: &LocalContext, probe: &ProbeOptions) -> Result<()> {
        let generation = self.next_generation();
        self.write_dynamic(spec, ctx, generation)?;
        // The same client as the deployment's (TLS, PROXY header), asking for the marker host.
        let scheme = if probe.is_tls() { "https" } else { "http" };
        let host = config::generation_host(generation);
        let url = format!("{scheme}://{host}:{}/healthz", probe.addr.port());
        let mut marker = ProbeOptions::new(probe.addr, &url)?;
        marker.tls = probe.tls.clone();
        // Over TLS, the deployment's own host as the server name: the marker host has no
        // certificate, and Traefik routes by the Host header whatever the SNI.
        marker.sni = probe.is_tls().then(|| probe.host().to_owned());
        marker.proxy_client = probe.proxy_client;
        let applied = WaitFor::Http {
            opts: Box::new(marker.handshake_timeout(Duration::from_secs(2))),
            path: "/healthz".to_owned(),
            // The marker router exists once Traefik answers anything but its 404.
            accept: Accept::AnyBut(404),
        };
        let what = format!("Traefik to apply dynamic configuration generation {generation}");
        ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || applied.check())
            .await
            .map_err(LocalError::from)
    }
}

#[async_trait]
impl Driver for TraefikDriver {
    fn args(&self, _spec: &IngressSpec, ctx: &LocalContext) -> Vec<OsString> {
        let mut arg = OsString::from("--configFile=");
        arg.push(ctx.runtime_dir.join("traefik.yaml"));
        vec![arg]
    }

    fn write_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        write_file(
            &ctx.runtime_dir.join("traefik.yaml"),
            &config::render_static(spec, ctx)?,
        )?;
        let generation = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
        self.write_dynamic(spec, ctx, generation)
    }

    fn ready(&self, _ctx: &LocalContext) -> Vec<WaitFor> {
        Vec::new()
    }

    async fn set_endpoints(&self, spec: &IngressSpec, ctx: &LocalContext, probe: &ProbeOptions) -> Result<()> {
        self.push(spec, ctx, probe).await
    }

    async fn apply_config(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        probe: &ProbeOptions,
    ) -> Result<()> {
        self.push(spec, ctx, probe).await
    }

    /// Traefik's nearest equivalent of a reload: a new router priority in the dynamic
    /// configuration, applied in process.
    async fn apply_controller_change(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        probe: &ProbeOptions,
    ) -> Result<()> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.push(spec, ctx, probe).await
    }

    /// No preStop; the kubelet's SIGTERM reaches Traefik (PID 1).
    async fn shutdown(&self, _spec: &IngressSpec, _ctx: &LocalContext, pid: u32) -> Result<ShutdownMarks> {
        signal(pid, Signal::SIGTERM).map_err(|source| LocalError::Signal {
            what: "Traefik (SIGTERM)".to_owned(),
            source,
        })?;
        Ok(ShutdownMarks {
            prestop_done: None,
            signalled: std::time::SystemTime::now(),
        })
    }

    fn workers(&self, pid: u32) -> Vec<u32> {
        vec![pid]
    }
}

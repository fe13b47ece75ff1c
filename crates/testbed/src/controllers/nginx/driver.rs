//! nginx as ingress-nginx drives it locally: a master and workers, upstream pods resolved by name.
//!
//! ingress-nginx itself never reloads for endpoints: it POSTs them to its Lua balancer. The local
//! stand-in has no Lua; its nginx re-resolves the Service name through the harness's DNS
//! responder (`valid=1s`), so endpoint changes need no reload either. A configuration change (a new
//! server block, a ConfigMap key) re-renders nginx.conf and reloads (SIGHUP to the master, as
//! `nginx -s reload` in internal/ingress/controller/nginx.go `OnUpdate`); old workers keep their
//! connections until `worker-shutdown-timeout`.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use model::IngressSpec;
use nix::sys::signal::Signal;
use probe::ProbeOptions;

use super::config;
use crate::controllers::Driver;
use crate::local::process::{children_of, signal};
use crate::local::{DnsResponder, LocalError, READY_TIMEOUT, Result, io_err, write_file};
use crate::ready::{self, Check, WaitFor};
use crate::render::local::{LocalContext, NAMESPACE, Resolver, SERVICE};

#[derive(Debug, Default)]
pub(super) struct NginxDriver {
    /// The Service name's A records.
    dns: Option<DnsResponder>,
    /// Controller-wide changes made so far ([`config::CHANGED_KEY`]).
    changes: AtomicU32,
}

impl NginxDriver {
    /// `nginx -s reload`: SIGHUP to the master.
    fn reload(pid: u32) -> Result<()> {
        signal(pid, Signal::SIGHUP).map_err(|source| LocalError::Signal {
            what: "the nginx master (reload)".to_owned(),
            source,
        })
    }
}

/// The Service's DNS name nginx resolves.
fn service_dns_name() -> String {
    format!("{SERVICE}.{NAMESPACE}.svc.cluster.local")
}

fn ipv4s(addrs: &[SocketAddr]) -> Vec<Ipv4Addr> {
    addrs
        .iter()
        .filter_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

#[async_trait]
impl Driver for NginxDriver {
    async fn prepare(&mut self, ctx: &mut LocalContext, endpoints: &[SocketAddr]) -> Result<()> {
        let dns = DnsResponder::start(&service_dns_name(), ipv4s(endpoints))
            .await
            .map_err(io_err("starting the DNS responder"))?;
        ctx.backends.resolver = Some(Resolver {
            server: dns.addr(),
            name: service_dns_name(),
            port: endpoints.first().map_or(80, SocketAddr::port),
            valid_secs: 1,
        });
        self.dns = Some(dns);
        Ok(())
    }

    fn args(&self, ctx: &LocalContext) -> Vec<OsString> {
        vec![
            "-p".into(),
            ctx.runtime_dir.clone().into(),
            "-c".into(),
            ctx.runtime_dir.join("nginx.conf").into(),
            "-e".into(),
            "stderr".into(),
        ]
    }

    fn write_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        let changes = self.changes.load(Ordering::SeqCst);
        write_file(
            &ctx.runtime_dir.join("nginx.conf"),
            &config::render_with_changes(spec, ctx, changes)?,
        )
    }

    fn ready(&self, _ctx: &LocalContext) -> Vec<WaitFor> {
        Vec::new()
    }

    async fn set_endpoints(&self, _spec: &IngressSpec, ctx: &LocalContext, _probe: &ProbeOptions) -> Result<()> {
        let Some(dns) = &self.dns else { return Ok(()) };
        let version = dns.set(ipv4s(&ctx.backends.pods));
        // nginx re-resolves every `valid` seconds; the change is in once it fetched it.
        let limit = Duration::from_secs(5);
        if dns.wait_served(version, limit).await {
            Ok(())
        } else {
            Err(LocalError::NotReady {
                what: "nginx to re-resolve the Service name".to_owned(),
                after: limit,
                log_tail: String::new(),
            })
        }
    }

    async fn apply_config(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        self.write_config(spec, ctx)?;
        Self::reload(pid)
    }

    /// The next `keep-alive`: re-rendered and reloaded, as for any ConfigMap change. Returns once
    /// the master runs a worker that was not there before.
    async fn apply_controller_change(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.write_config(spec, ctx)?;
        let before = children_of(pid);
        Self::reload(pid)?;
        let what = format!("nginx to start new workers after a reload (workers before: {before:?})");
        ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            let now = children_of(pid);
            if now.iter().any(|p| !before.contains(p)) {
                Check::Ready(())
            } else {
                Check::NotYet(format!("workers {now:?}"))
            }
        })
        .await
        .map_err(|wait| LocalError::Wait {
            wait,
            log_tail: String::new(),
        })
    }

    fn workers(&self, pid: u32) -> Vec<u32> {
        children_of(pid)
    }
}

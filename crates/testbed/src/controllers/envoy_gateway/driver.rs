//! Envoy as Envoy Gateway runs it locally: one process, configured over file-based xDS.
//!
//! Envoy Gateway never restarts or reloads Envoy: its control plane pushes each xDS resource type
//! over one ADS stream and Envoy applies it on its own (envoyproxy/gateway v1.9.0
//! internal/xds/server, internal/xds/translator). Here each resource type is a file Envoy watches
//! and a push is a new file renamed over the old one, only where its content changed: endpoints
//! rewrite the EDS files, a new route the RDS (and CDS/EDS for its cluster), a change to the
//! listener the LDS file, which makes Envoy drain the filter chains it replaced for
//! `--drain-time-s`. The admin interface says when Envoy has taken a change.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use model::{Controller, IngressSpec};
use probe::ProbeOptions;

use super::config::{self, Admin};
use crate::controllers::{Driver, ShutdownMarks};
use crate::local::process::signal;
use crate::local::{LocalError, READY_TIMEOUT, Result, io_err, pod_client};
use crate::ready::{self, Check, WaitFor};
use crate::render::local::LocalContext;
use nix::sys::signal::Signal;

#[derive(Debug, Default)]
pub(super) struct EnvoyDriver {
    /// Envoy's admin listener (127.0.0.1, a free port).
    admin: Option<SocketAddr>,
    /// What each xDS file holds now, so only changed resources are pushed.
    written: Mutex<BTreeMap<String, String>>,
    /// Controller-wide changes made so far ([`config::changed_idle_timeout`]).
    changes: AtomicU32,
}

/// The order a push replaces files in: what a resource refers to before what refers to it
/// (endpoints, clusters, secrets, routes, then listeners), as Envoy Gateway's ADS server sends
/// them; the bootstrap only at start.
fn push_rank(file: &str) -> u8 {
    match file {
        f if f.starts_with("eds") => 0,
        config::CDS_FILE => 1,
        f if f.starts_with("sds") => 2,
        f if f.starts_with("rds") => 3,
        config::LDS_FILE => 4,
        _ => 5,
    }
}

/// The hosts of each cluster in the admin's `/clusters` text (`<cluster>::<host>::<stat>::<value>`).
fn cluster_hosts(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split("::");
        if let (Some(cluster), Some(host), Some("health_flags")) = (parts.next(), parts.next(), parts.next()) {
            out.entry(cluster.to_owned()).or_default().insert(host.to_owned());
        }
    }
    out
}

/// A counter from the admin's `/stats` text (`name: value`).
fn stat(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
}

/// The sum of every listener's `downstream_cx_active` in the admin's `/stats` text, as the
/// shutdown manager reads it.
fn active_connections(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| name.starts_with("listener.") && name.ends_with(".downstream_cx_active"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

impl EnvoyDriver {
    fn admin(&self) -> Result<SocketAddr> {
        self.admin
            .ok_or_else(|| LocalError::Setting("Envoy's admin address was never prepared".to_owned()))
    }

    async fn admin_get(&self, path: &str) -> std::result::Result<String, String> {
        let admin = self.admin().map_err(|e| e.to_string())?;
        let client = pod_client(admin, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        match probe::http_get(&client, path).await {
            Ok(r) if r.status.is_success() => Ok(r.text()),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Renames every changed file into place (a new file, then a rename: Envoy's watcher sees
    /// moves, not writes), in [`push_rank`] order. Returns the names it replaced.
    fn push(&self, ctx: &LocalContext, mut files: Vec<(String, String)>) -> Result<Vec<String>> {
        files.sort_by_key(|(name, _)| push_rank(name));
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut pushed = Vec::new();
        for (name, text) in files {
            if written.get(&name) == Some(&text) {
                continue;
            }
            let path = ctx.runtime_dir.join(&name);
            let tmp = ctx.runtime_dir.join(format!(".{name}.new"));
            std::fs::write(&tmp, &text).map_err(io_err(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, &path).map_err(io_err(format!("replacing {}", path.display())))?;
            written.insert(name.clone(), text);
            pushed.push(name);
        }
        Ok(pushed)
    }

    fn files(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<Vec<(String, String)>> {
        let admin = Admin::Tcp(self.admin()?);
        config::render_files_after(spec, ctx, &admin, self.changes.load(Ordering::SeqCst))
            .map_err(|e| LocalError::Unsupported(e.unsupported(Controller::EnvoyGateway)))
    }

    /// Waits until every route cluster's hosts are `pods`.
    async fn wait_endpoints(&self, pods: &[SocketAddr]) -> Result<()> {
        let wanted: BTreeSet<String> = pods.iter().map(SocketAddr::to_string).collect();
        let what = format!("Envoy to take endpoints {wanted:?} over EDS");
        ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            match self.admin_get("/clusters").await {
                Ok(text) => {
                    let hosts = cluster_hosts(&text);
                    let routes: Vec<_> = hosts.iter().filter(|(c, _)| c.starts_with("httproute/")).collect();
                    if !routes.is_empty() && routes.iter().all(|(_, h)| **h == wanted) {
                        Check::Ready(())
                    } else {
                        Check::NotYet(format!("{routes:?}"))
                    }
                }
                Err(e) => Check::NotYet(e),
            }
        })
        .await
        .map_err(LocalError::from)
    }
}

#[async_trait]
impl Driver for EnvoyDriver {
    async fn prepare(&mut self, _ctx: &mut LocalContext, _endpoints: &[SocketAddr]) -> Result<()> {
        // Port 0 resolved now: Envoy binds it when it starts.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("reserving Envoy's admin port"))?;
        self.admin = Some(probe.local_addr().map_err(io_err("reading Envoy's admin port"))?);
        Ok(())
    }

    fn args(&self, spec: &IngressSpec, ctx: &LocalContext) -> Vec<OsString> {
        config::args(spec, ctx)
    }

    fn write_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        let files = self.files(spec, ctx)?;
        self.push(ctx, files).map(|_| ())
    }

    fn ready(&self, _ctx: &LocalContext) -> Vec<WaitFor> {
        self.admin.map(WaitFor::Listening).into_iter().collect()
    }

    /// The endpoints as Envoy Gateway pushes them: new EDS files; the listener is untouched.
    async fn set_endpoints(&self, spec: &IngressSpec, ctx: &LocalContext, _probe: &ProbeOptions) -> Result<()> {
        let pods = &ctx.backends.pods;
        self.push(ctx, config::render_endpoints(spec, ctx, pods, &[]))?;
        self.wait_endpoints(pods).await
    }

    /// A new HTTPRoute: new route configuration, cluster and endpoints; on the HTTP port the
    /// listener's filter chain is shared, so the listener does not change.
    async fn apply_config(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        self.write_config(spec, ctx)
    }

    /// The next ClientTrafficPolicy change: a new listener; returns once Envoy replaced it.
    async fn apply_controller_change(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        const MODIFIED: &str = "listener_manager.listener_modified";
        let before = self
            .admin_get("/stats?filter=listener_manager")
            .await
            .ok()
            .and_then(|t| stat(&t, MODIFIED))
            .unwrap_or(0);
        self.changes.fetch_add(1, Ordering::SeqCst);
        let pushed = self.push(ctx, self.files(spec, ctx)?)?;
        if !pushed.iter().any(|f| f == config::LDS_FILE) {
            return Err(LocalError::Setting(format!(
                "the controller-wide change did not change the listener (pushed {pushed:?})"
            )));
        }
        let what = format!("Envoy to replace its listener ({MODIFIED} above {before})");
        ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            match self.admin_get("/stats?filter=listener_manager").await {
                Ok(text) => match stat(&text, MODIFIED) {
                    Some(n) if n > before => Check::Ready(()),
                    other => Check::NotYet(format!("{MODIFIED} = {other:?}")),
                },
                Err(e) => Check::NotYet(e),
            }
        })
        .await
        .map_err(LocalError::from)
    }

    /// The shutdown manager's preStop, then the kubelet's SIGTERM (envoyproxy/gateway v1.9.0
    /// internal/cmd/envoy/shutdown_manager.go `Shutdown`): fail the health check; every second,
    /// read the listeners' active connections; stop waiting at 0 once 10 s passed, or once the
    /// drain timeout passed; the Envoy container's preStop sees that on its next 1 s poll and
    /// returns, and Envoy gets SIGTERM, on which it closes everything at once.
    async fn shutdown(&self, spec: &IngressSpec, _ctx: &LocalContext, pid: u32) -> Result<ShutdownMarks> {
        const MIN_DRAIN: Duration = Duration::from_secs(10);
        const POLL: Duration = Duration::from_secs(1);
        let drain = config::drain_timeout(spec).unwrap_or(config::DEFAULT_DRAIN_TIME);
        let started = tokio::time::Instant::now();
        let admin = self.admin()?;
        let client = pod_client(admin, Duration::from_secs(2))?;
        let failed = probe::http_request(&client, http::Method::POST, "/healthcheck/fail", Vec::new()).await;
        if let Err(e) = failed {
            tracing::warn!(error = %e, "POST /healthcheck/fail to Envoy's admin failed");
        }
        loop {
            let elapsed = started.elapsed();
            if elapsed > drain {
                break;
            }
            let active = self
                .admin_get("/stats?filter=downstream_cx_active")
                .await
                .map(|t| active_connections(&t))
                .unwrap_or(u64::MAX);
            if elapsed >= MIN_DRAIN && active == 0 {
                break;
            }
            tokio::time::sleep(POLL).await; // the shutdown manager's own 1 s poll
        }
        // The Envoy container's preStop checks for the shutdown manager's file every second.
        let polls = started.elapsed().as_secs_f64().ceil();
        tokio::time::sleep_until(started + POLL.mul_f64(polls)).await;
        let prestop_done = std::time::SystemTime::now();
        signal(pid, Signal::SIGTERM).map_err(|source| LocalError::Signal {
            what: "Envoy (SIGTERM)".to_owned(),
            source,
        })?;
        Ok(ShutdownMarks {
            prestop_done: Some(prestop_done),
            signalled: std::time::SystemTime::now(),
        })
    }

    fn workers(&self, pid: u32) -> Vec<u32> {
        vec![pid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_hosts_are_read_per_cluster_from_the_admin_text() {
        let text = "httproute/default/ws/rule/0::observability_name::httproute/default/ws/rule/0\n\
                    httproute/default/ws/rule/0::127.0.1.1:8080::cx_active::1\n\
                    httproute/default/ws/rule/0::127.0.1.1:8080::health_flags::healthy\n\
                    httproute/default/ws/rule/0::127.0.1.2:8080::health_flags::healthy\n";
        let hosts = cluster_hosts(text);
        assert_eq!(
            hosts["httproute/default/ws/rule/0"],
            BTreeSet::from(["127.0.1.1:8080".to_owned(), "127.0.1.2:8080".to_owned()])
        );
    }

    #[test]
    fn active_connections_add_up_every_listener_but_the_admin() {
        let text = "http.admin.downstream_cx_active: 1\n\
                    listener.127.0.0.1_10080.downstream_cx_active: 2\n\
                    listener.admin.downstream_cx_active: 1\n\
                    listener.127.0.0.1_10443.downstream_cx_active: 3\n";
        // The admin's own listener counts too in Envoy's stats; the shutdown manager sums them all.
        assert_eq!(active_connections(text), 6);
    }

    #[test]
    fn stats_are_read_by_exact_name() {
        let text = "listener_manager.listener_modified: 2\nlistener_manager.listener_modified_total: 9\n";
        assert_eq!(stat(text, "listener_manager.listener_modified"), Some(2));
        assert_eq!(stat(text, "listener_manager.listener_removed"), None);
    }

    #[test]
    fn a_push_replaces_what_is_referred_to_before_what_refers_to_it() {
        let mut names = vec!["lds.yaml", "rds-0.yaml", "eds-1.yaml", "cds.yaml"];
        names.sort_by_key(|n| push_rank(n));
        assert_eq!(names, ["eds-1.yaml", "cds.yaml", "rds-0.yaml", "lds.yaml"]);
    }
}

//! nginx as ingress-nginx drives it locally: a master and workers, endpoints POSTed to its balancer.
//!
//! ingress-nginx never reloads for endpoints. Its sync loop runs behind a token bucket of
//! `--sync-rate-limit` 0.3 syncs/s, burst 1 (pkg/flags/flags.go; `flowcontrol.
//! NewTokenBucketRateLimiter(config.SyncRateLimit, 1)` in internal/ingress/controller/nginx.go,
//! `n.syncRateLimiter.Accept()` at the top of `syncIngress` in controller.go) and POSTs the backends
//! to `/configuration/backends` (nginx.go `configureBackends`); every worker copies them into its
//! balancers on a 1 s timer (rootfs/etc/nginx/lua/balancer.lua). The token bucket is the model's
//! ([`model::controllers::nginx::INFO`]`.control_loop`, run by the local environment before every
//! sync); this driver POSTs to the njs store [`config::SCRIPT`] serves, and the workers' 1 s copy
//! is the data plane's own. A configuration change (a new server block, a ConfigMap key) re-renders nginx.conf
//! and reloads (SIGHUP to the master, as `nginx -s reload` in nginx.go `OnUpdate`); old workers keep
//! their connections until `worker-shutdown-timeout`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use model::{Affinity, IngressSpec};
use nix::sys::signal::Signal;
use probe::ProbeOptions;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config;
use crate::controllers::{Driver, ShutdownMarks};
use crate::local::process::{children_of, signal};
use crate::local::{LocalError, READY_TIMEOUT, Result, io_err, write_file};
use crate::ready::{self, Check, WaitFor};
use crate::render::local::LocalContext;

/// ingress-nginx's default `session-cookie-name` (internal/ingress/annotations/sessionaffinity/main.go).
pub const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";

#[derive(Debug, Default)]
pub(super) struct NginxDriver {
    /// The backend store's internal listener.
    store: Option<SocketAddr>,
    /// Controller-wide changes made so far ([`config::CHANGED_KEY`]).
    changes: AtomicU32,
}

/// The backends as the controller POSTs them (ingress.Backend's JSON: name, endpoints,
/// sessionAffinityConfig, upstreamHashByConfig), for the one Service the testbed deploys.
pub fn backends_json(spec: &IngressSpec, pods: &[SocketAddr]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| json!({"address": p.ip().to_string(), "port": p.port().to_string()}))
        .collect();
    let mut backend = json!({
        "name": config::upstream_name(),
        "endpoints": endpoints,
        "sessionAffinityConfig": {"name": "", "mode": "", "cookieSessionAffinity": {"name": ""}},
        "upstreamHashByConfig": {},
    });
    match &spec.affinity {
        Affinity::None => {}
        Affinity::Cookie(cookie) => {
            let mut c =
                json!({"name": if cookie.name.is_empty() { DEFAULT_COOKIE_NAME } else { cookie.name.as_str() }});
            if let Some(age) = cookie.max_age_secs {
                c["maxage"] = json!(age.to_string());
            }
            backend["sessionAffinityConfig"] =
                json!({"name": "cookie", "mode": "persistent", "cookieSessionAffinity": c});
        }
        Affinity::ClientIp => {
            backend["upstreamHashByConfig"] = json!({"upstream-hash-by": "$remote_addr"});
        }
    }
    json!([backend])
}

/// One HTTP/1.1 request to the store; returns the status and body.
async fn request(store: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let what = format!("{method} {path} to nginx's backend store at {store}");
    let mut stream = TcpStream::connect(store).await.map_err(io_err(what.clone()))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io_err(what.clone()))?;
    stream.write_all(body.as_bytes()).await.map_err(io_err(what.clone()))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(io_err(what.clone()))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| LocalError::BackendStore {
            request: what.clone(),
            answer: answer.clone(),
        })?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

impl NginxDriver {
    /// `nginx -s reload`: SIGHUP to the master.
    fn reload(pid: u32) -> Result<()> {
        signal(pid, Signal::SIGHUP).map_err(|source| LocalError::Signal {
            what: "the nginx master (reload)".to_owned(),
            source,
        })
    }

    fn store(&self) -> Result<SocketAddr> {
        self.store.ok_or_else(|| LocalError::BackendStore {
            request: "a POST".to_owned(),
            answer: "the store was never prepared".to_owned(),
        })
    }

    /// A sync's POST (its turn under the rate limit was taken by the caller). Returns the store's
    /// version once it accepted it.
    async fn sync(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<u64> {
        let store = self.store()?;
        let body = backends_json(spec, &ctx.backends.pods).to_string();
        let (status, answer) = request(store, "POST", "/configuration/backends", &body).await?;
        if status != 201 {
            return Err(LocalError::BackendStore {
                request: format!("POST /configuration/backends ({status})"),
                answer,
            });
        }
        let (_, workers) = request(store, "GET", "/configuration/workers", "").await?;
        let version: Value = serde_json::from_str(&workers).unwrap_or_default();
        Ok(version["version"].as_u64().unwrap_or_default())
    }
}

#[async_trait]
impl Driver for NginxDriver {
    async fn prepare(&mut self, ctx: &mut LocalContext, _endpoints: &[SocketAddr]) -> Result<()> {
        // Port 0 resolved now: nginx binds it when it starts.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("reserving the store's port"))?;
        let addr = probe.local_addr().map_err(io_err("reading the store's port"))?;
        drop(probe);
        ctx.backends.store = Some(addr);
        self.store = Some(addr);
        Ok(())
    }

    fn args(&self, _spec: &IngressSpec, ctx: &LocalContext) -> Vec<OsString> {
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
        write_file(&ctx.runtime_dir.join(config::SCRIPT_FILE), config::SCRIPT)?;
        write_file(
            &ctx.runtime_dir.join("nginx.conf"),
            &config::render_with_changes(spec, ctx, changes)?,
        )
    }

    fn ready(&self, _ctx: &LocalContext) -> Vec<WaitFor> {
        self.store.map(WaitFor::Listening).into_iter().collect()
    }

    /// The controller's first sync, then every worker's first copy (as the controller is only
    /// ready once its balancer has backends).
    async fn started(&self, spec: &IngressSpec, ctx: &LocalContext, pid: u32) -> Result<()> {
        let version = self.sync(spec, ctx).await?;
        let store = self.store()?;
        let what = format!("every nginx worker to copy backends version {version}");
        ready::until(&what, READY_TIMEOUT, Duration::from_millis(50), || async {
            let workers = children_of(pid);
            let Ok((_, body)) = request(store, "GET", "/configuration/workers", "").await else {
                return Check::NotYet("the store did not answer".to_owned());
            };
            let seen: Value = serde_json::from_str(&body).unwrap_or_default();
            let behind: Vec<u32> = workers
                .iter()
                .copied()
                .filter(|w| seen["workers"][w.to_string()].as_u64().unwrap_or(0) < version)
                .collect();
            if !workers.is_empty() && behind.is_empty() {
                Check::Ready(())
            } else {
                Check::NotYet(format!("workers {workers:?}, behind {behind:?}: {body}"))
            }
        })
        .await
        .map_err(LocalError::from)
    }

    /// Returns once the store accepted the POST; the workers pick it up within their 1 s poll.
    async fn set_endpoints(&self, spec: &IngressSpec, ctx: &LocalContext, _probe: &ProbeOptions) -> Result<()> {
        self.sync(spec, ctx).await.map(|_| ())
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
        .map_err(LocalError::from)
    }

    /// `/wait-shutdown` makes the controller run `nginx -s quit`: SIGQUIT to the master. Workers
    /// close their listeners and keep open connections until `worker_shutdown_timeout`.
    async fn shutdown(&self, _spec: &IngressSpec, _ctx: &LocalContext, pid: u32) -> Result<ShutdownMarks> {
        signal(pid, Signal::SIGQUIT).map_err(|source| LocalError::Signal {
            what: "the nginx master (quit)".to_owned(),
            source,
        })?;
        Ok(ShutdownMarks {
            prestop_done: None,
            signalled: std::time::SystemTime::now(),
        })
    }

    fn workers(&self, pid: u32) -> Vec<u32> {
        children_of(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_carry_the_affinity_the_balancer_chooses_by() {
        let pods = [SocketAddr::from(([127, 0, 1, 1], 18080))];
        let plain = backends_json(&IngressSpec::new(1), &pods);
        assert_eq!(plain[0]["name"], "default-ws-echo-80");
        assert_eq!(
            plain[0]["endpoints"][0],
            json!({"address": "127.0.1.1", "port": "18080"})
        );
        let ip = backends_json(&IngressSpec::new(1).with_affinity(Affinity::ClientIp), &pods);
        assert_eq!(ip[0]["upstreamHashByConfig"]["upstream-hash-by"], "$remote_addr");
        let cookie = IngressSpec::new(1).with_affinity(Affinity::Cookie(model::CookieAffinity {
            name: "SESSION".to_owned(),
            max_age_secs: Some(600),
        }));
        let c = backends_json(&cookie, &pods);
        assert_eq!(c[0]["sessionAffinityConfig"]["name"], "cookie");
        assert_eq!(c[0]["sessionAffinityConfig"]["mode"], "persistent");
        assert_eq!(
            c[0]["sessionAffinityConfig"]["cookieSessionAffinity"]["name"],
            "SESSION"
        );
        assert_eq!(c[0]["sessionAffinityConfig"]["cookieSessionAffinity"]["maxage"], "600");
    }
}

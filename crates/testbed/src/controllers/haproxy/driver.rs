//! HAProxy driven as the haproxytech controller drives it: master-worker, server slots and routing
//! maps over the runtime API, reloads through the master CLI.
//!
//! haproxytech/kubernetes-ingress v3.2.6. Endpoints fill or empty a backend's server slots
//! (default 42) over the runtime API, never a reload (pkg/service/endpoints.go,
//! pkg/haproxy/api/runtime.go `SyncBackendSrvs`). A new route for an existing Service replaces the
//! routing maps' contents over the runtime API (`prepare map`, `add map @<version>`, `commit map`:
//! pkg/haproxy/maps/main.go `RefreshMaps`, pkg/haproxy/api/runtime.go `SetMapContent`), never a
//! reload. A new TLS Secret is a file in the HTTPS bind's certificates directory, added over the
//! runtime API (`new ssl cert`, `set ssl cert`, `commit ssl cert`, `add ssl crt-list`:
//! pkg/haproxy/certs/main.go `writeCert`, `updateRuntime`), no reload.
//! A controller-wide change (a `defaults` key of its ConfigMap) rewrites haproxy.cfg and
//! the map files and asks the master to reload (pkg/controller/controller.go `updateHAProxy`,
//! pkg/haproxy/process/s6-overlay.go): new workers start, old ones keep their connections until
//! `hard-stop-after`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use model::IngressSpec;
use probe::ProbeOptions;

use super::config::{self, FrontendCert, MapRows, RouteMap};
use crate::controllers::{Driver, ShutdownMarks};
use crate::local::process::{children_of, signal};
use crate::local::{LocalError, READY_TIMEOUT, Result, io_err, master_workers, runtime_api, write_file};
use crate::ready::{self, Check, WaitFor};
use crate::render::local::LocalContext;
use nix::sys::signal::Signal;

#[derive(Debug, Default)]
pub(super) struct HaproxyDriver {
    /// Which pod each server slot holds.
    slots: Mutex<Vec<Option<SocketAddr>>>,
    /// The routing maps' rows HAProxy holds now: read from the files at its last start or reload,
    /// replaced over the runtime API since.
    maps: Mutex<MapRows>,
    /// Controller-wide changes made so far ([`config::CHANGED_KEY`]).
    changes: AtomicU32,
    /// The certificate files HAProxy serves now: in the directory at its last start or reload,
    /// added over the runtime API since.
    certs: Mutex<BTreeSet<PathBuf>>,
}

impl HaproxyDriver {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<SocketAddr>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, MapRows> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn certs(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.certs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes haproxy.cfg, the map files and every certificate file, as the controller does
    /// before it starts or reloads HAProxy (its map files are written by delayed functions that
    /// run only then: pkg/haproxy/maps/main.go `RefreshMaps`, pkg/controller/controller.go
    /// `updateHAProxy`; a certificate file is written as soon as its Secret is seen and again
    /// by a delayed function: pkg/haproxy/certs/main.go `writeCert`).
    fn write_files(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        let slots = self.slots().clone();
        let changes = self.changes.load(Ordering::SeqCst);
        let maps = config::route_maps(spec, ctx);
        let dir = config::maps_dir(ctx);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        for (map, rows) in &maps {
            write_file(&config::map_path(ctx, *map), &config::map_file_text(rows))?;
        }
        let certs = config::frontend_certs(ctx);
        if !certs.is_empty() {
            let dir = config::certs_dir(ctx);
            std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        for cert in &certs {
            write_file(&cert.path, &cert_file_text(cert)?)?;
        }
        write_file(
            &ctx.runtime_dir.join("haproxy.cfg"),
            &config::render_with_changes(spec, ctx, &slots, changes)?,
        )?;
        *self.maps() = maps;
        *self.certs() = certs.into_iter().map(|c| c.path).collect();
        Ok(())
    }

    /// A new frontend certificate, as pkg/haproxy/certs/main.go `writeCert` and `updateRuntime`
    /// add one: the file is written first when it is not there (HAProxy needs a valid
    /// certificate file), then `new ssl cert`, `set ssl cert` with the file's text and
    /// `commit ssl cert`, and for a store that did not exist yet `add ssl crt-list` on the
    /// directory, so the bind serves it. An answer the controller's client would not accept
    /// fails (the controller would reload then).
    async fn add_cert(&self, ctx: &LocalContext, cert: &FrontendCert) -> Result<()> {
        let text = cert_file_text(cert)?;
        if !cert.path.exists() {
            let dir = config::certs_dir(ctx);
            std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            write_file(&cert.path, &text)?;
        }
        let socket = config::runtime_socket(ctx);
        let known = |a: &str| config::new_cert_created(a) || config::cert_already_exists(a);
        let answer = runtime_accepting(&socket, config::new_cert_command(&cert.path), known).await?;
        let set = config::set_cert_command(&cert.path, &text);
        runtime_accepting(&socket, set, config::cert_transaction_ok).await?;
        let commit = config::commit_cert_command(&cert.path);
        runtime_accepting(&socket, commit, config::cert_committed).await?;
        if config::new_cert_created(&answer) {
            let add = config::add_crt_list_command(&config::certs_dir(ctx), &cert.path);
            runtime_accepting(&socket, add, config::crt_list_added).await?;
        }
        Ok(())
    }

    /// Replaces one map's contents over the runtime API, as `SetMapContent` does: a new version,
    /// its rows, then the commit that swaps it in atomically.
    async fn set_map_content(&self, ctx: &LocalContext, map: RouteMap, rows: &[String]) -> Result<()> {
        let socket = config::runtime_socket(ctx);
        let path = config::map_path(ctx, map);
        let command = config::prepare_map_command(&path);
        let answer = runtime(&socket, &command).await?;
        let version = config::parse_prepared_version(&answer).ok_or(LocalError::RuntimeApi { command, answer })?;
        let mut commands = config::add_map_commands(version, &path, rows);
        commands.push(config::commit_map_command(version, &path));
        for command in commands {
            let answer = runtime(&socket, &command).await?;
            // Both answer with an empty line when they succeed.
            if !answer.trim().is_empty() {
                return Err(LocalError::RuntimeApi { command, answer });
            }
        }
        Ok(())
    }

    /// Asks the master to reload (master CLI `reload`, as the controller's s6-overlay process
    /// control does) and waits until it runs a worker that was not there before; a reload asked
    /// for while the master was still busy is asked for again.
    async fn reload(&self, ctx: &LocalContext) -> Result<()> {
        let socket = config::master_socket(ctx);
        let before = master_workers(&socket)
            .await
            .map_err(io_err("asking the HAProxy master for its workers"))?;
        let asked = Mutex::new(None::<Instant>);
        let what = format!("HAProxy to run a new worker after a reload (workers before: {before:?})");
        let reloaded = ready::until(&what, READY_TIMEOUT, Duration::from_millis(20), || async {
            let due = asked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|at| at.elapsed() > Duration::from_secs(3));
            if due {
                match runtime_api::send(&socket, "reload").await {
                    Ok(answer) => tracing::debug!(answer = answer.trim(), "HAProxy master reload"),
                    // The master closes the CLI connection while it re-executes.
                    Err(e) => tracing::debug!(error = %e, "HAProxy master reload"),
                }
                *asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            match master_workers(&socket).await {
                Ok(now) if now.iter().any(|pid| !before.contains(pid)) => Check::Ready(()),
                Ok(now) => Check::NotYet(format!("workers {now:?}")),
                Err(e) => Check::NotYet(e.to_string()),
            }
        })
        .await;
        reloaded.map_err(LocalError::from)
    }
}

/// A certificate file's text from the TLS files that hold its Secret's data.
fn cert_file_text(cert: &FrontendCert) -> Result<String> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())));
    Ok(config::cert_file_text(&read(&cert.tls.key)?, &read(&cert.tls.cert)?))
}

/// Sends one runtime API command and returns its answer when `accepted` accepts it, else fails
/// with it.
async fn runtime_accepting(socket: &Path, command: String, accepted: impl Fn(&str) -> bool) -> Result<String> {
    let answer = runtime(socket, &command).await?;
    if accepted(&answer) {
        Ok(answer)
    } else {
        Err(LocalError::RuntimeApi { command, answer })
    }
}

/// Sends one runtime API command.
async fn runtime(socket: &Path, command: &str) -> Result<String> {
    let answer = runtime_api::send(socket, command)
        .await
        .map_err(io_err(format!("sending {command:?} to the HAProxy runtime API")))?;
    tracing::debug!(command, answer = answer.trim(), "HAProxy runtime API");
    Ok(answer)
}

#[async_trait]
impl Driver for HaproxyDriver {
    async fn prepare(&mut self, _ctx: &mut LocalContext, endpoints: &[SocketAddr]) -> Result<()> {
        *self.slots() = endpoints.iter().copied().map(Some).collect();
        Ok(())
    }

    fn args(&self, _spec: &IngressSpec, ctx: &LocalContext) -> Vec<OsString> {
        vec![
            "-W".into(),
            "-S".into(),
            config::master_socket(ctx).into(),
            "-f".into(),
            ctx.runtime_dir.join("haproxy.cfg").into(),
        ]
    }

    fn write_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        self.write_files(spec, ctx)
    }

    /// The master serves its CLI (and takes reloads) only once its loop runs, a moment after
    /// the first worker already serves traffic.
    fn ready(&self, ctx: &LocalContext) -> Vec<WaitFor> {
        vec![WaitFor::HaproxyMaster(config::master_socket(ctx))]
    }

    async fn set_endpoints(&self, _spec: &IngressSpec, ctx: &LocalContext, _probe: &ProbeOptions) -> Result<()> {
        let commands = {
            let mut slots = self.slots();
            let wanted = slot_plan(&slots, &ctx.backends.pods, config::DEFAULT_SERVER_SLOTS);
            let mut commands = Vec::new();
            for (i, new) in wanted.iter().enumerate() {
                if slots.get(i).copied().flatten() != *new {
                    commands.extend(config::slot_commands(i as u32 + 1, *new));
                }
            }
            *slots = wanted;
            commands
        };
        let socket = config::runtime_socket(ctx);
        for command in commands {
            let answer = runtime(&socket, &command).await?;
            let refused = ["No such", "Unknown", "Require", "not found", "invalid", "Invalid"];
            if refused.iter().any(|r| answer.contains(r)) {
                return Err(LocalError::RuntimeApi { command, answer });
            }
        }
        Ok(())
    }

    /// A new route for the existing Service: a certificate of its own (another Ingress's TLS
    /// Secret) is written and added over the runtime API ([`HaproxyDriver::add_cert`]), then
    /// the maps whose rows changed get their new contents over the runtime API (unchanged maps
    /// are skipped, as `RefreshMaps` skips a map whose hash is the same). No reload; the only
    /// file written is a new certificate's.
    ///
    /// The controller does ask for a reload when a certificate changed
    /// (`instance.ReloadIf(h.CertsUpdated(), "certificates updated")` at the end of
    /// pkg/handler/https.go `Update`), but it asks too early: `writeCert` runs asynchronously
    /// (pkg/fs `Writer.Write`, a goroutine: a file write with fsync, then four runtime API round
    /// trips) and marks the certificate updated only when it is done, while the HTTPS handler is
    /// the first update handler (pkg/controller/handler.go) and runs before
    /// pkg/controller/controller.go `updateHAProxy` waits for the writes
    /// (`fs.Writer.WaitUntilWritesDone()`); `clean()` then clears the flag (`CleanCerts`). So the
    /// reload happens only if the write wins that race. Local models the usual outcome, where it
    /// loses: the certificate over the runtime API and no reload.
    async fn apply_config(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        let new_certs: Vec<FrontendCert> = {
            let held = self.certs();
            config::frontend_certs(ctx)
                .into_iter()
                .filter(|c| !held.contains(&c.path))
                .collect()
        };
        for cert in new_certs {
            self.add_cert(ctx, &cert).await?;
            self.certs().insert(cert.path);
        }
        let wanted = config::route_maps(spec, ctx);
        let changed: Vec<(RouteMap, Vec<String>)> = {
            let current = self.maps();
            wanted
                .iter()
                .filter(|(map, rows)| current.get(map) != Some(rows))
                .map(|(map, rows)| (*map, rows.clone()))
                .collect()
        };
        for (map, rows) in changed {
            self.set_map_content(ctx, map, &rows).await?;
            self.maps().insert(map, rows);
        }
        Ok(())
    }

    /// The next `timeout-queue` (a `defaults` line): the controller rewrites haproxy.cfg and
    /// reloads for it.
    async fn apply_controller_change(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.write_files(spec, ctx)?;
        self.reload(ctx).await
    }

    /// No preStop; s6-overlay's stage 3 sends HAProxy's master SIGTERM: a hard stop.
    async fn shutdown(&self, _spec: &IngressSpec, _ctx: &LocalContext, pid: u32) -> Result<ShutdownMarks> {
        signal(pid, Signal::SIGTERM).map_err(|source| LocalError::Signal {
            what: "the HAProxy master (SIGTERM)".to_owned(),
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

/// New slot contents: pods keep their slot, gone pods free theirs, new pods take the lowest free ones.
fn slot_plan(current: &[Option<SocketAddr>], endpoints: &[SocketAddr], count: u32) -> Vec<Option<SocketAddr>> {
    let count = (count as usize).max(current.len()).max(endpoints.len());
    let mut plan: Vec<Option<SocketAddr>> = (0..count)
        .map(|i| current.get(i).copied().flatten().filter(|a| endpoints.contains(a)))
        .collect();
    for ep in endpoints {
        if !plan.contains(&Some(*ep))
            && let Some(free) = plan.iter_mut().find(|s| s.is_none())
        {
            *free = Some(*ep);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::local::ExtraRoute;
    use crate::render::local::test_support::context;
    use model::Controller;
    use probe::tls::TestCa;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, n], 8080))
    }

    /// A stand-in for HAProxy's runtime API socket: records each command and answers as HAProxy
    /// 2.8.25 does (`prepare map` with a new version, the certificate commands with their
    /// success texts, everything else with an empty line); `refuse` is a command prefix it
    /// answers with an error instead.
    fn fake_runtime_api(ctx: &LocalContext, refuse: Option<&'static str>) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(config::runtime_socket(ctx)).unwrap();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Ok((mut stream, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                let mut command = String::new();
                stream.read_to_string(&mut command).await.unwrap();
                let first = command.lines().next().unwrap_or_default().to_owned();
                let file = first.split_whitespace().last().unwrap_or_default().to_owned();
                let answer = match first.split_whitespace().take(3).collect::<Vec<_>>()[..] {
                    _ if refuse.is_some_and(|r| first.starts_with(r)) => {
                        format!("Can't update {file}!\n\n")
                    }
                    ["prepare", "map", ..] => "New version created: 1\n\n".to_owned(),
                    ["new", "ssl", "cert"] => format!("New empty certificate store '{file}'!\n\n"),
                    ["set", "ssl", "cert"] => {
                        let file = first.split_whitespace().nth(3).unwrap_or_default();
                        format!("Transaction created for certificate {file}!\n\n")
                    }
                    ["commit", "ssl", "cert"] => format!("Committing {file}\nSuccess!\n\n"),
                    ["add", "ssl", "crt-list"] => {
                        let list = first.split_whitespace().nth(3).unwrap_or_default();
                        format!("Inserting certificate '{file}' in crt-list '{list}'.\nSuccess!\n\n")
                    }
                    _ => "\n".to_owned(),
                };
                stream.write_all(answer.as_bytes()).await.unwrap();
                seen.push(command);
            }
            seen
        })
    }

    #[tokio::test]
    async fn a_new_route_replaces_the_changed_maps_over_the_runtime_api() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context();
        ctx.runtime_dir = dir.path().to_owned();
        let spec = IngressSpec::new(1);
        let driver = HaproxyDriver::default();
        driver.write_config(&spec, &ctx).unwrap();
        let cfg_before = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();
        let host_file = config::map_path(&ctx, RouteMap::Host);
        let host_before = std::fs::read_to_string(&host_file).unwrap();
        assert_eq!(host_before, "echo.testbed.local\t\t\techo.testbed.local\n");

        let api = fake_runtime_api(&ctx, None);
        ctx.extra_routes.push(ExtraRoute {
            host: "unrelated-1.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: None,
        });
        let probe = ProbeOptions::new(ctx.listen, "http://echo.testbed.local/").unwrap();
        driver.apply_config(&spec, &ctx, 0, &probe).await.unwrap();
        let seen = api.await.unwrap();

        let host = host_file.display().to_string();
        let prefix = config::map_path(&ctx, RouteMap::PathPrefix).display().to_string();
        let expected = [
            format!("prepare map {host}\n"),
            format!(
                "add map @1 {host} <<\necho.testbed.local\t\t\techo.testbed.local\n\
                 unrelated-1.testbed.local\t\t\tunrelated-1.testbed.local\n\n"
            ),
            format!("commit map @1 {host}\n"),
            format!("prepare map {prefix}\n"),
            format!(
                "add map @1 {prefix} <<\necho.testbed.local/\t\t\tdefault_svc_ws-echo_http\n\
                 unrelated-1.testbed.local/\t\t\tdefault_svc_ws-echo_http\n\n"
            ),
            format!("commit map @1 {prefix}\n"),
        ];
        assert_eq!(seen, expected, "only the host and path-prefix maps change; no reload");
        // Files are written only before a start or a reload, as the controller writes them.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap(),
            cfg_before
        );
        assert_eq!(std::fs::read_to_string(&host_file).unwrap(), host_before);

        // The same routes again change no map, so nothing is sent (with no socket, sending fails).
        std::fs::remove_file(config::runtime_socket(&ctx)).unwrap();
        driver.apply_config(&spec, &ctx, 0, &probe).await.unwrap();
    }

    /// A TLS context in `dir` with the spec's certificate, and a second certificate from the
    /// same CA for `listener-1.testbed.local` (as `apply_listener_change` makes one).
    fn tls_context(dir: &Path) -> (LocalContext, TestCa, ExtraRoute) {
        let mut ctx = context();
        ctx.runtime_dir = dir.to_owned();
        let ca = TestCa::generate(&["echo.testbed.local"]).unwrap();
        ctx.tls = Some((&ca.write_to(dir).unwrap()).into());
        let files = (ca.issue(&["listener-1.testbed.local"]).unwrap())
            .write_named(dir, "listener-1")
            .unwrap();
        let route = ExtraRoute {
            host: "listener-1.testbed.local".to_owned(),
            path: "/".to_owned(),
            tls: Some((&files).into()),
        };
        (ctx, ca, route)
    }

    #[tokio::test]
    async fn a_route_with_its_own_certificate_writes_it_then_adds_it_over_the_runtime_api() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, _ca, route) = tls_context(dir.path());
        let spec = IngressSpec::new(1).with_tls();
        let driver = HaproxyDriver::default();
        driver.write_config(&spec, &ctx).unwrap();
        let main = config::certs_dir(&ctx).join("default_ws-echo-tls.pem");
        let key = std::fs::read_to_string(dir.path().join("server.key")).unwrap();
        let chain = std::fs::read_to_string(dir.path().join("server.crt")).unwrap();
        assert_eq!(std::fs::read_to_string(&main).unwrap(), format!("{key}{chain}"));
        let cfg_before = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();

        let api = fake_runtime_api(&ctx, None);
        ctx.extra_routes.push(route);
        let probe = ProbeOptions::new(ctx.listen, "https://echo.testbed.local/").unwrap();
        driver.apply_config(&spec, &ctx, 0, &probe).await.unwrap();
        let seen = api.await.unwrap();

        let file = config::certs_dir(&ctx).join("default_listener-1.pem");
        let key = std::fs::read_to_string(dir.path().join("listener-1.key")).unwrap();
        let chain = std::fs::read_to_string(dir.path().join("listener-1.crt")).unwrap();
        let text = format!("{key}{chain}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "written before the runtime API"
        );
        let certs_dir = config::certs_dir(&ctx);
        let (f, d) = (file.display(), certs_dir.display());
        assert_eq!(
            seen[..4],
            [
                format!("new ssl cert {f}\n"),
                format!("set ssl cert {f} <<\n{text}\n"),
                format!("commit ssl cert {f}\n"),
                format!("add ssl crt-list {d} {f}\n"),
            ]
        );
        // Then the maps, as for any new route; haproxy.cfg is untouched (no reload).
        assert!(seen[4].starts_with("prepare map "), "{seen:#?}");
        assert_eq!(seen.len(), 10, "{seen:#?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap(),
            cfg_before
        );

        // Held now: the same routes again send nothing (with no socket, sending fails).
        std::fs::remove_file(config::runtime_socket(&ctx)).unwrap();
        driver.apply_config(&spec, &ctx, 0, &probe).await.unwrap();
        // A reload's files hold both certificates.
        driver.write_config(&spec, &ctx).unwrap();
        assert!(main.exists() && file.exists());
    }

    #[tokio::test]
    async fn a_refused_certificate_command_fails_with_haproxys_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, _ca, route) = tls_context(dir.path());
        let spec = IngressSpec::new(1).with_tls();
        let driver = HaproxyDriver::default();
        driver.write_config(&spec, &ctx).unwrap();
        let api = fake_runtime_api(&ctx, Some("commit ssl cert"));
        ctx.extra_routes.push(route);
        let probe = ProbeOptions::new(ctx.listen, "https://echo.testbed.local/").unwrap();
        let err = driver.apply_config(&spec, &ctx, 0, &probe).await.unwrap_err();
        match err {
            LocalError::RuntimeApi { command, answer } => {
                assert!(command.starts_with("commit ssl cert "), "{command}");
                assert!(answer.starts_with("Can't update "), "{answer}");
            }
            other => panic!("expected a refused runtime API command, got {other}"),
        }
        let seen = api.await.unwrap();
        assert_eq!(seen.len(), 3, "nothing after the refused commit: {seen:#?}");
    }

    /// A backend that answers every request `200 ok` (the pod behind the Service).
    async fn ok_backend() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    /// `GET /` on `host` over TLS (SNI and Host `host`), verifying the certificate for `host`.
    async fn get_over_tls(ctx: &LocalContext, ca: &TestCa, host: &str) -> probe::Result<u16> {
        let mut opts =
            ProbeOptions::new(ctx.listen, &format!("https://{host}/"))?.handshake_timeout(Duration::from_secs(2));
        opts.tls = Some(ca.client_config().unwrap());
        Ok(probe::http_get(&opts, "/").await?.status.as_u16())
    }

    /// The real HAProxy: a host with its own certificate is served over TLS once `apply_config`
    /// returns, by the same worker (no reload); after a reload the new worker loads it from the
    /// directory.
    #[tokio::test]
    async fn real_haproxy_serves_a_new_hosts_certificate_without_a_reload() {
        let binary = crate::tools::data_plane(Controller::Haproxy).unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, ca, route) = tls_context(dir.path());
        ctx.listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let spec = IngressSpec::new(1).with_tls();
        let mut driver = HaproxyDriver::default();
        let pods = vec![ok_backend().await];
        driver.prepare(&mut ctx, &pods).await.unwrap();
        ctx.backends.pods = pods;
        driver.write_config(&spec, &ctx).unwrap();
        let log = dir.path().join("haproxy.log");
        let mut child = tokio::process::Command::new(&binary)
            .args(driver.args(&spec, &ctx))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).unwrap())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let result = async {
            for condition in [
                WaitFor::Listening(ctx.listen),
                WaitFor::HaproxyMaster(config::master_socket(&ctx)),
            ] {
                condition.wait(READY_TIMEOUT).await.unwrap();
            }
            let master = config::master_socket(&ctx);
            let workers = crate::local::master_workers(&master).await.unwrap();
            assert_eq!(get_over_tls(&ctx, &ca, "echo.testbed.local").await.unwrap(), 200);
            // Before: the only certificate is the spec's, which is not listener-1's.
            assert!(get_over_tls(&ctx, &ca, "listener-1.testbed.local").await.is_err());

            ctx.extra_routes.push(route);
            let probe = ProbeOptions::new(ctx.listen, "https://echo.testbed.local/").unwrap();
            driver.apply_config(&spec, &ctx, pid, &probe).await.unwrap();
            assert_eq!(get_over_tls(&ctx, &ca, "listener-1.testbed.local").await.unwrap(), 200);
            assert_eq!(get_over_tls(&ctx, &ca, "echo.testbed.local").await.unwrap(), 200);
            assert_eq!(
                crate::local::master_workers(&master).await.unwrap(),
                workers,
                "the same worker, no reload"
            );
            let crt_list = runtime(
                &config::runtime_socket(&ctx),
                &format!("show ssl crt-list {}", config::certs_dir(&ctx).display()),
            )
            .await
            .unwrap();
            assert!(crt_list.contains("default_listener-1.pem"), "{crt_list}");

            // A reload starts a worker that reads both certificates from the directory.
            driver.apply_controller_change(&spec, &ctx, pid, &probe).await.unwrap();
            let after = crate::local::master_workers(&master).await.unwrap();
            assert!(after.iter().any(|w| !workers.contains(w)), "{after:?}");
            assert_eq!(get_over_tls(&ctx, &ca, "listener-1.testbed.local").await.unwrap(), 200);
            assert_eq!(get_over_tls(&ctx, &ca, "echo.testbed.local").await.unwrap(), 200);
        };
        let outcome = tokio::time::timeout(Duration::from_secs(60), result).await;
        let _ = crate::local::process::signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
        outcome.unwrap_or_else(|_| {
            panic!(
                "timed out; HAProxy's log:\n{}",
                std::fs::read_to_string(dir.path().join("haproxy.err")).unwrap_or_default()
            )
        });
    }

    #[test]
    fn pods_keep_their_slots_and_new_pods_fill_the_lowest_free_slot() {
        let current = vec![Some(a(1)), Some(a(2)), Some(a(3)), None];
        let plan = slot_plan(&current, &[a(1), a(3), a(4)], 4);
        assert_eq!(plan, [Some(a(1)), Some(a(4)), Some(a(3)), None]);
    }
}

//! HAProxy driven as the haproxytech controller drives it: master-worker, server slots and routing
//! maps over the runtime API, reloads through the master CLI.
//!
//! haproxytech/kubernetes-ingress v3.2.6. Endpoints fill or empty a backend's server slots
//! (default 42) over the runtime API, never a reload (pkg/service/endpoints.go,
//! pkg/haproxy/api/runtime.go `SyncBackendSrvs`). A new route for an existing Service replaces the
//! routing maps' contents over the runtime API (`prepare map`, `add map @<version>`, `commit map`:
//! pkg/haproxy/maps/main.go `RefreshMaps`, pkg/haproxy/api/runtime.go `SetMapContent`), never a
//! reload. A controller-wide change (a `defaults` key of its ConfigMap) rewrites haproxy.cfg and
//! the map files and asks the master to reload (pkg/controller/controller.go `updateHAProxy`,
//! pkg/haproxy/process/s6-overlay.go): new workers start, old ones keep their connections until
//! `hard-stop-after`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use model::IngressSpec;
use probe::ProbeOptions;

use super::config::{self, MapRows, RouteMap};
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
}

impl HaproxyDriver {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<SocketAddr>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, MapRows> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes haproxy.cfg and the map files, as the controller does before it starts or reloads
    /// HAProxy (its map files are written by delayed functions that run only then:
    /// pkg/haproxy/maps/main.go `RefreshMaps`, pkg/controller/controller.go `updateHAProxy`).
    fn write_files(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        let slots = self.slots().clone();
        let changes = self.changes.load(Ordering::SeqCst);
        let maps = config::route_maps(spec, ctx);
        let dir = config::maps_dir(ctx);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        for (map, rows) in &maps {
            write_file(&config::map_path(ctx, *map), &config::map_file_text(rows))?;
        }
        write_file(
            &ctx.runtime_dir.join("haproxy.cfg"),
            &config::render_with_changes(spec, ctx, &slots, changes)?,
        )?;
        *self.maps() = maps;
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

/// Sends one runtime API command.
async fn runtime(socket: &std::path::Path, command: &str) -> Result<String> {
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

    /// A new route for the existing Service: the maps whose rows changed get their new contents
    /// over the runtime API (unchanged maps are skipped, as `RefreshMaps` skips a map whose hash
    /// is the same). No reload, no file written.
    async fn apply_config(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, n], 8080))
    }

    /// A stand-in for HAProxy's runtime API socket: records each command and answers as HAProxy
    /// 2.8 does (`prepare map` with a new version, everything else with an empty line).
    fn fake_runtime_api(ctx: &LocalContext) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(config::runtime_socket(ctx)).unwrap();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Ok((mut stream, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                let mut command = String::new();
                stream.read_to_string(&mut command).await.unwrap();
                let answer = if command.starts_with("prepare map") {
                    "New version created: 1\n\n"
                } else {
                    "\n"
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

        let api = fake_runtime_api(&ctx);
        ctx.extra_routes.push(ExtraRoute {
            host: "unrelated-1.testbed.local".to_owned(),
            path: "/".to_owned(),
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

    #[test]
    fn pods_keep_their_slots_and_new_pods_fill_the_lowest_free_slot() {
        let current = vec![Some(a(1)), Some(a(2)), Some(a(3)), None];
        let plan = slot_plan(&current, &[a(1), a(3), a(4)], 4);
        assert_eq!(plan, [Some(a(1)), Some(a(4)), Some(a(3)), None]);
    }
}

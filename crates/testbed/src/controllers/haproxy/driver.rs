//! HAProxy driven as the haproxytech controller drives it: master-worker, server slots over the
//! runtime API, reloads through the master CLI.
//!
//! Endpoints fill or empty a backend's server slots (default 42) over the runtime API, never a
//! reload. A configuration change rewrites haproxy.cfg and asks the master to reload: new workers
//! start, old ones keep their connections until `hard-stop-after`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use model::IngressSpec;
use probe::ProbeOptions;

use super::config;
use crate::controllers::Driver;
use crate::local::process::children_of;
use crate::local::{LocalError, Result, io_err, runtime_api, write_file};
use crate::ready::WaitFor;
use crate::render::local::LocalContext;

#[derive(Debug, Default)]
pub(super) struct HaproxyDriver {
    /// Which pod each server slot holds.
    slots: Mutex<Vec<Option<SocketAddr>>>,
}

impl HaproxyDriver {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<SocketAddr>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Driver for HaproxyDriver {
    async fn prepare(&mut self, _ctx: &mut LocalContext, endpoints: &[SocketAddr]) -> Result<()> {
        *self.slots() = endpoints.iter().copied().map(Some).collect();
        Ok(())
    }

    fn args(&self, ctx: &LocalContext) -> Vec<OsString> {
        vec![
            "-W".into(),
            "-S".into(),
            config::master_socket(ctx).into(),
            "-f".into(),
            ctx.runtime_dir.join("haproxy.cfg").into(),
        ]
    }

    fn write_config(&self, spec: &IngressSpec, ctx: &LocalContext) -> Result<()> {
        let slots = self.slots().clone();
        write_file(
            &ctx.runtime_dir.join("haproxy.cfg"),
            &config::render(spec, ctx, &slots)?,
        )
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
            let answer = runtime_api::send(&socket, &command)
                .await
                .map_err(io_err(format!("sending {command:?} to the HAProxy runtime API")))?;
            let refused = ["No such", "Unknown", "Require", "not found", "invalid", "Invalid"];
            if refused.iter().any(|r| answer.contains(r)) {
                return Err(LocalError::RuntimeApi { command, answer });
            }
            tracing::debug!(command, answer = answer.trim(), "HAProxy runtime API");
        }
        Ok(())
    }

    async fn apply_config(
        &self,
        spec: &IngressSpec,
        ctx: &LocalContext,
        _pid: u32,
        _probe: &ProbeOptions,
    ) -> Result<()> {
        self.write_config(spec, ctx)?;
        // Master-worker reload through the master CLI, as the controller does. The CLI only
        // answers once the master loop runs, unlike an early SIGUSR2.
        match runtime_api::send(&config::master_socket(ctx), "reload").await {
            Ok(answer) => tracing::debug!(answer = answer.trim(), "HAProxy master reload"),
            // The master closes the CLI connection while it re-executes.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => tracing::debug!(error = %e, "HAProxy master reload"),
            Err(e) => return Err(io_err("asking the HAProxy master to reload")(e)),
        }
        Ok(())
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

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, n], 8080))
    }

    #[test]
    fn pods_keep_their_slots_and_new_pods_fill_the_lowest_free_slot() {
        let current = vec![Some(a(1)), Some(a(2)), Some(a(3)), None];
        let plan = slot_plan(&current, &[a(1), a(3), a(4)], 4);
        assert_eq!(plan, [Some(a(1)), Some(a(4)), Some(a(3)), None]);
    }
}

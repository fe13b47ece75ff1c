//! Last-resort cleanup when the process is told to stop (SIGINT, SIGTERM, SIGHUP).
//!
//! Drop handles a normal exit and a failing (panicking) test. A signal ends the
//! process without running destructors, though, and the data planes run in
//! their own process groups (so teardown reaches their workers), where a
//! terminal's Ctrl-C does not reach them. So everything the local environment
//! starts registers here; the first registration starts a thread that waits for
//! those signals, kills what is registered, removes registered temp dirs
//! (unless `TESTBED_KEEP=1`), and exits with 128 + the signal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    /// A process group (data plane master and workers).
    Group(u32),
    /// A single process (a pod).
    Process(u32),
    /// A temp dir to remove.
    Dir(PathBuf),
}

static NEXT: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<BTreeMap<u64, Owned>> = Mutex::new(BTreeMap::new());
static WATCHER: Once = Once::new();

/// Keeps one thing registered until dropped (the owner cleans up itself then).
#[derive(Debug)]
pub(crate) struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        registry().remove(&self.0);
    }
}

pub(crate) fn process_group(pgid: u32) -> Registration {
    register(Owned::Group(pgid))
}

pub(crate) fn process(pid: u32) -> Registration {
    register(Owned::Process(pid))
}

pub(crate) fn dir(path: PathBuf) -> Registration {
    register(Owned::Dir(path))
}

fn registry() -> std::sync::MutexGuard<'static, BTreeMap<u64, Owned>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(owned: Owned) -> Registration {
    WATCHER.call_once(start_watcher);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    registry().insert(id, owned);
    Registration(id)
}

fn start_watcher() {
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!(%error, "cannot watch for SIGINT/SIGTERM; an interrupted run may leave processes behind");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("testbed-cleanup".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                clean_up_registered();
                std::process::exit(128 + signal);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the cleanup thread");
    }
}

/// Kills every registered process and group and removes registered temp dirs.
fn clean_up_registered() {
    let owned: Vec<Owned> = registry().values().cloned().collect();
    for item in &owned {
        match item {
            Owned::Group(pgid) => {
                let _ = killpg(Pid::from_raw(*pgid as i32), Signal::SIGKILL);
            }
            Owned::Process(pid) => {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            Owned::Dir(_) => {}
        }
    }
    if !crate::env::keep_requested() {
        for item in owned {
            if let Owned::Dir(path) = item {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_end_when_dropped() {
        let a = dir(PathBuf::from("/nonexistent/a"));
        let b = process(u32::MAX);
        assert!(
            registry()
                .values()
                .any(|o| *o == Owned::Dir(PathBuf::from("/nonexistent/a")))
        );
        drop(a);
        assert!(
            !registry()
                .values()
                .any(|o| *o == Owned::Dir(PathBuf::from("/nonexistent/a")))
        );
        assert!(registry().values().any(|o| *o == Owned::Process(u32::MAX)));
        drop(b);
    }
}

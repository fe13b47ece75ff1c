//! Graceful shutdown: the signal future, the phase broadcast to every connection, and connection tracking.
//!
//! Shaped like axum's `with_graceful_shutdown`: one [`Signals`] future selects Ctrl-C and
//! SIGTERM; the accept loop selects accept against the [`Phase`] watch; every connection
//! task holds a [`Guard`] (a watch receiver) and the server task waits, bounded, until
//! all guards are gone.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A signal handler could not be registered.
    #[error("installing the {signal} handler")]
    InstallHandler {
        /// Which signal.
        signal: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// Shutdown began: no new connections; existing WebSockets keep being served for the grace period.
    Stopping,
    /// Grace is over: every WebSocket gets Close 1001 and the server waits for the handshakes.
    GoingAway,
}

/// The shutdown broadcast and the connection tracker, shared by the server's tasks.
#[derive(Debug)]
pub struct Shutdown {
    phase: watch::Sender<Phase>,
    connections: watch::Sender<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A tracker in [`Phase::Serving`] with no connections.
    pub fn new() -> Self {
        Shutdown {
            phase: watch::Sender::new(Phase::Serving),
            connections: watch::Sender::new(()),
        }
    }

    /// Moves to [`Phase::Stopping`] (what SIGTERM does). Returns whether this call started it.
    pub fn begin(&self) -> bool {
        self.advance(Phase::Stopping)
    }

    /// Moves straight to [`Phase::GoingAway`] (no grace). Returns whether the phase changed.
    pub fn go_away(&self) -> bool {
        self.advance(Phase::GoingAway)
    }

    fn advance(&self, to: Phase) -> bool {
        self.phase.send_if_modified(|phase| {
            let changed = *phase < to;
            if changed {
                *phase = to;
            }
            changed
        })
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// A receiver of phase changes (for the accept loop).
    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// A guard for one connection task: its phase receiver, and its presence keeps
    /// [`Shutdown::connections_closed`] pending.
    pub fn guard(&self) -> Guard {
        Guard {
            phase: self.phase.subscribe(),
            _tracked: self.connections.subscribe(),
        }
    }

    /// How many connection guards are alive.
    pub fn connections(&self) -> usize {
        self.connections.receiver_count()
    }

    /// Resolves once no connection guard is alive.
    pub async fn connections_closed(&self) {
        self.connections.closed().await
    }

    /// Waits for every guard to go, at most `limit`; returns how many were still alive.
    pub async fn wait_connections(&self, limit: Duration) -> usize {
        match tokio::time::timeout(limit, self.connections_closed()).await {
            Ok(()) => 0,
            Err(_) => self.connections(),
        }
    }
}

/// Held by every connection task; see [`Shutdown::guard`].
#[derive(Debug)]
pub struct Guard {
    phase: watch::Receiver<Phase>,
    _tracked: watch::Receiver<()>,
}

impl Guard {
    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves when the phase reaches at least `at` (or the server is gone).
    pub async fn reached(&mut self, at: Phase) {
        // An error means the sender is gone: the server no longer exists, which counts as reached.
        let _ = self.phase.wait_for(|phase| *phase >= at).await;
    }
}

/// The process signals that start a shutdown: Ctrl-C, and SIGTERM unless ignored.
///
/// Install before the server starts listening, so a SIGTERM arriving right after the
/// "listening" log line never meets the default disposition (which would kill the process).
#[derive(Debug)]
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    ignore_sigterm: bool,
}

impl Signals {
    /// Registers the handlers. With `ignore_sigterm`, SIGTERM is caught, logged and ignored.
    pub fn install(ignore_sigterm: bool) -> Result<Self> {
        let interrupt = signal(SignalKind::interrupt()).map_err(|source| Error::InstallHandler {
            signal: "SIGINT",
            source,
        })?;
        let terminate = signal(SignalKind::terminate()).map_err(|source| Error::InstallHandler {
            signal: "SIGTERM",
            source,
        })?;
        Ok(Signals {
            interrupt,
            terminate,
            ignore_sigterm,
        })
    }

    /// Waits for the next signal that should stop the server; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => {
                    if !self.ignore_sigterm {
                        return "SIGTERM";
                    }
                    tracing::info!(signal = "SIGTERM", "ignoring signal (--ignore-sigterm)");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let shutdown = Shutdown::new();
        assert!(shutdown.begin());
        assert!(!shutdown.begin());
        assert!(shutdown.go_away());
        assert!(!shutdown.begin());
        assert_eq!(shutdown.phase(), Phase::GoingAway);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_connections_ends_when_the_last_guard_drops() {
        let shutdown = std::sync::Arc::new(Shutdown::new());
        let guard = shutdown.guard();
        assert_eq!(shutdown.wait_connections(Duration::from_millis(100)).await, 1);
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait_connections(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        assert_eq!(waiter.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn guards_see_the_phase_reached() {
        let shutdown = Shutdown::new();
        let mut guard = shutdown.guard();
        assert_eq!(guard.phase(), Phase::Serving);
        shutdown.go_away();
        tokio::time::timeout(Duration::from_secs(1), guard.reached(Phase::Stopping))
            .await
            .unwrap();
    }
}

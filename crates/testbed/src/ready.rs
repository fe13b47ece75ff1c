//! Readiness as data: what a step waits for ([`WaitFor`]), one deadline, and an error that names
//! what was awaited and the last thing seen.
//!
//! Every wait of both environments goes through [`until`]; the conditions that recur (a listener,
//! an HTTP answer through the probe's client, HAProxy's master CLI) are [`WaitFor`] values, the
//! rest are closures that say why they are not there yet.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use probe::ProbeOptions;

pub type Result<T, E = NotReady> = std::result::Result<T, E>;

/// A wait that ended without the condition.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("timed out after {after:?} waiting for {what} (last: {last})")]
    Timeout {
        what: String,
        after: Duration,
        last: String,
    },
    /// The thing waited on cannot become ready any more (a process exited).
    #[error("gave up waiting for {what}: {reason}")]
    Aborted { what: String, reason: String },
}

/// How a check went: ready with a value, not yet (and what was seen), or never.
#[derive(Debug)]
pub enum Check<T> {
    Ready(T),
    NotYet(String),
    Abort(String),
}

/// Polls `check` every `every` until it is ready, for at most `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = "nothing yet".to_owned();
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Check::Ready(value)) => return Ok(value),
            Ok(Check::NotYet(seen)) => last = seen,
            Ok(Check::Abort(reason)) => {
                return Err(NotReady::Aborted {
                    what: what.to_owned(),
                    reason,
                });
            }
            Err(_) => {}
        }
        if tokio::time::Instant::now() + every > deadline {
            return Err(NotReady::Timeout {
                what: what.to_owned(),
                after: limit,
                last,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// A condition that recurs across the harness.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// Something accepts TCP connections on this address.
    Listening(SocketAddr),
    /// `GET path` with these options (Host, TLS, PROXY header, source address) answers a status
    /// `accept` allows.
    Http {
        opts: Box<ProbeOptions>,
        path: String,
        accept: Accept,
    },
    /// HAProxy's master CLI on this socket lists at least one worker: the master loop runs and
    /// can take a reload.
    HaproxyMaster(PathBuf),
}

/// Which HTTP statuses count as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// 2xx.
    Success,
    /// Anything but this status (Traefik's 404 for a router it does not have yet).
    AnyBut(u16),
}

impl Accept {
    pub fn allows(self, status: u16) -> bool {
        match self {
            Accept::Success => (200..300).contains(&status),
            Accept::AnyBut(refused) => status != refused,
        }
    }
}

impl WaitFor {
    /// What the condition is, for messages.
    pub fn describe(&self) -> String {
        match self {
            WaitFor::Listening(addr) => format!("a listener on {addr}"),
            WaitFor::Http { opts, path, accept } => {
                let want = match accept {
                    Accept::Success => "2xx".to_owned(),
                    Accept::AnyBut(status) => format!("anything but {status}"),
                };
                format!("GET {path} on {} (Host {}) → {want}", opts.addr, opts.host())
            }
            WaitFor::HaproxyMaster(socket) => {
                format!("the HAProxy master CLI at {} to list a worker", socket.display())
            }
        }
    }

    /// One look at the condition.
    pub async fn check(&self) -> Check<()> {
        match self {
            WaitFor::Listening(addr) => match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => Check::Ready(()),
                Err(e) => Check::NotYet(e.to_string()),
            },
            WaitFor::Http { opts, path, accept } => match probe::http_get(opts, path).await {
                Ok(r) if accept.allows(r.status.as_u16()) => Check::Ready(()),
                Ok(r) => Check::NotYet(format!("status {}", r.status)),
                Err(e) => Check::NotYet(e.to_string()),
            },
            WaitFor::HaproxyMaster(socket) => match crate::local::master_workers(socket).await {
                Ok(workers) if !workers.is_empty() => Check::Ready(()),
                Ok(_) => Check::NotYet("no worker listed".to_owned()),
                Err(e) => Check::NotYet(e.to_string()),
            },
        }
    }

    /// Waits for the condition with [`until`].
    pub async fn wait(&self, limit: Duration) -> Result<()> {
        until(&self.describe(), limit, Duration::from_millis(20), || self.check()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn until_returns_the_value_once_ready() {
        let tries = AtomicU32::new(0);
        let value = until(
            "the third try",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || async {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Check::NotYet("not yet".to_owned()),
                    n => Check::Ready(n),
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(value, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_names_what_was_awaited_and_the_last_thing_seen() {
        let err = until::<(), _, _>(
            "pod p to answer",
            Duration::from_secs(1),
            Duration::from_millis(100),
            || async { Check::NotYet("status 503".to_owned()) },
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pod p to answer") && text.contains("status 503"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_still_ends_at_the_deadline() {
        let err = until::<(), _, _>(
            "a check that hangs",
            Duration::from_secs(1),
            Duration::from_millis(100),
            std::future::pending,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, NotReady::Timeout { .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn abort_ends_the_wait_at_once() {
        let err = until::<(), _, _>("pod p", Duration::from_secs(60), Duration::from_millis(100), || async {
            Check::Abort("exited with status 1".to_owned())
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("exited with status 1"), "{err}");
    }

    #[tokio::test]
    async fn listening_is_ready_once_something_accepts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        WaitFor::Listening(addr).wait(Duration::from_secs(5)).await.unwrap();
        drop(listener);
        let err = WaitFor::Listening(addr)
            .wait(Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn accept_rules() {
        assert!(Accept::Success.allows(204));
        assert!(!Accept::Success.allows(404));
        assert!(Accept::AnyBut(404).allows(502));
        assert!(!Accept::AnyBut(404).allows(404));
    }
}

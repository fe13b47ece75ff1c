//! The server: binding, the accept loop, the shutdown sequence, and the [`Running`] handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::metrics::{ErrorKind, Metrics};
use crate::session::Sessions;
use crate::shutdown::{Phase, Shutdown};
use crate::ticker::Ticker;

/// How long the server waits for WebSocket close handshakes after sending Close 1001.
pub const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// Everything the connection tasks share.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) pod: Arc<str>,
    pub(crate) metrics: Metrics,
    pub(crate) sessions: Sessions,
    pub(crate) shutdown: Shutdown,
    pub(crate) ticks: Option<Ticker>,
    pub(crate) pings: Option<Ticker>,
    pub(crate) http: http1::Builder,
    next_conn: AtomicU64,
    active: AtomicUsize,
    draining: AtomicBool,
}

impl State {
    fn new(config: Config) -> State {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new());
        http.header_read_timeout((!config.header_read_timeout.is_zero()).then_some(config.header_read_timeout));
        State {
            pod: config.pod().into(),
            metrics: Metrics::new(),
            sessions: Sessions::default(),
            shutdown: Shutdown::new(),
            ticks: Ticker::spawn(config.tick_interval),
            pings: Ticker::spawn(config.ping_interval),
            http,
            next_conn: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            config,
        }
    }

    /// A new connection id (1, 2, …).
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks the pod draining: `/readyz` answers 503 from now on.
    pub(crate) fn start_draining(&self, why: &'static str) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            self.metrics.draining.set(1);
            info!(pod = %self.pod, reason = why, "draining");
        }
    }

    /// Whether draining has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Takes one of the `--max-connections` WebSocket slots, or `None` when all are taken.
    pub(crate) fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let max = self.config.max_connections;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()?;
        self.metrics.connections_active.inc();
        Some(Slot { state: self.clone() })
    }
}

/// One WebSocket slot; released (and `websocket_connections_active` decremented) on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    state: Arc<State>,
}

impl Slot {
    pub(crate) fn state(&self) -> &Arc<State> {
        &self.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.connections_active.dec();
    }
}

/// Binds `config.listen` and serves on a spawned task until shut down.
///
/// Must be called inside a tokio runtime. The "listening" log event carries the bound
/// address (`addr`), which matters with port 0.
pub async fn spawn(config: Config) -> std::io::Result<Running> {
    let listen = config.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding {listen}: {e}")))?;
    let local_addr = listener.local_addr()?;
    let state = Arc::new(State::new(config));
    info!(
        addr = %local_addr,
        pod = %state.pod,
        tick_interval = %humantime::format_duration(state.config.tick_interval),
        ping_interval = %humantime::format_duration(state.config.ping_interval),
        shutdown_grace = %humantime::format_duration(state.config.shutdown_grace),
        drain_delay = %humantime::format_duration(state.config.drain_delay),
        max_connections = state.config.max_connections,
        max_message_size = state.config.max_message_size,
        "listening"
    );
    let task = tokio::spawn(serve(listener, state.clone()));
    Ok(Running {
        local_addr,
        state,
        task: Some(task),
    })
}

/// A server started by [`spawn`]. Dropping it without [`Running::wait`] closes every
/// connection at once (Close 1001, no grace).
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    state: Arc<State>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The pod name the server reports.
    pub fn pod(&self) -> &str {
        &self.state.pod
    }

    /// Starts the graceful shutdown, exactly as SIGTERM does: stop accepting, serve
    /// existing WebSockets for the grace period, then Close 1001 and wait for the handshakes.
    pub fn shutdown(&self) {
        if self.state.shutdown.phase() == Phase::Serving {
            let grace = humantime::format_duration(self.state.config.shutdown_grace);
            info!(pod = %self.state.pod, %grace, "shutdown started");
        }
        self.state.shutdown.begin();
    }

    /// Waits until the server has shut down (after [`Running::shutdown`]).
    pub async fn wait(mut self) -> std::io::Result<()> {
        let task = self.task.take().expect("wait consumes the only handle");
        task.await.map_err(std::io::Error::other)?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.state.shutdown.go_away();
        }
    }
}

/// The accept loop and the shutdown sequence.
async fn serve(listener: TcpListener, state: Arc<State>) -> std::io::Result<()> {
    let mut phase = state.shutdown.watch();
    loop {
        tokio::select! {
            biased;
            () = reached(&mut phase, Phase::Stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_http(state.clone(), stream, peer));
                }
                Err(error) => {
                    // Per-connection failures (ECONNABORTED) and resource exhaustion (EMFILE)
                    // are not fatal: back off briefly and keep accepting.
                    warn!(%error, "accept failed");
                    state.metrics.error(ErrorKind::Io);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    state.start_draining("shutdown");
    let grace = state.config.shutdown_grace;
    info!(pod = %state.pod, connections = state.shutdown.connections(), ?grace, "stopped accepting");
    if state.shutdown.phase() < Phase::GoingAway {
        tokio::select! {
            () = tokio::time::sleep(grace) => {}
            () = state.shutdown.connections_closed() => {}
            () = reached(&mut phase, Phase::GoingAway) => {}
        }
    }
    state.shutdown.go_away();
    let open = state.shutdown.connections();
    info!(pod = %state.pod, connections = open, "closing connections (1001 going away)");
    // Connection tasks bound their own handshake wait; the small margin lets them log.
    let left = state
        .shutdown
        .wait_connections(CLOSE_HANDSHAKE_WAIT + Duration::from_millis(250))
        .await;
    if left > 0 {
        warn!(pod = %state.pod, connections = left, "connections still open after the close wait; abandoning them");
    }
    info!(pod = %state.pod, "shut down");
    Ok(())
}

/// Resolves when the phase reaches at least `at` (or the sender is gone).
async fn reached(phase: &mut tokio::sync::watch::Receiver<Phase>, at: Phase) {
    let _ = phase.wait_for(|p| *p >= at).await;
}

/// One HTTP/1 connection (which may upgrade to a WebSocket handled by [`crate::ws`]).
async fn serve_http(state: Arc<State>, stream: TcpStream, peer: SocketAddr) {
    let mut guard = state.shutdown.guard();
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "setting TCP_NODELAY failed");
    }
    let service = service_fn({
        let state = state.clone();
        move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(crate::http::route(state, request, peer).await) }
        }
    });
    let conn = state
        .http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = guard.reached(Phase::Stopping) => {
            // Finish the request in flight, then close; give up when the grace is over.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = guard.reached(Phase::GoingAway) => return,
            }
        }
    };
    if let Err(error) = result {
        let kind = if error.is_timeout() {
            Some(ErrorKind::HeaderTimeout)
        } else if error.is_parse() || error.is_parse_too_large() {
            Some(ErrorKind::Http)
        } else if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
            None
        } else {
            Some(ErrorKind::Io)
        };
        match kind {
            Some(kind) => {
                state.metrics.error(kind);
                info!(pod = %state.pod, %peer, kind = kind.as_str(), %error, "http connection error");
            }
            None => debug!(pod = %state.pod, %peer, %error, "http connection ended early"),
        }
    }
}

//! The probe: a WebSocket client for tests that records a timeline of each connection.
//!
//! Build [`ProbeOptions`] (address to dial, URL, cookies, subprotocols, source
//! IP, PROXY header, TLS), then [`connect`] for a [`Connection`] whose
//! [`Timeline`] serializes into the report. The helpers in [`helpers`] are the
//! patterns behaviour tests repeat: hold idle, echo loops, reconnect with
//! backoff, open continuously during a rollout; [`http`] speaks plain HTTP/1.1
//! over the same dial options. [`load`] is the load generator (`testbed load`,
//! `cargo xtask bench`); [`tls`] the testbed CA the probe and the environments share.
//!
//! No kube here: this crate is what bench and the load generator build on.

pub mod connect;
pub mod connection;
pub mod cookies;
pub mod helpers;
pub mod http;
pub mod load;
pub mod options;
pub mod proxy_header;
pub mod timeline;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use connect::{ProbeStream, connect, dial};
pub use connection::{Connection, Incoming};
pub use cookies::CookieJar;
pub use helpers::{
    Attempt, AttemptOutcome, Backoff, EchoReport, HoldOutcome, OpenerHandle, OpenerReport, Reconnected, echo_loop,
    hold_idle, hold_pinging, numbered, open_continuously, open_for, reconnect_with_backoff,
};
pub use http::{HttpResponse, http_get, http_request};
pub use options::ProbeOptions;
pub use proxy_header::{ProxyHeaderError, ProxyV1, parse_proxy_v1, write_proxy_v1};
pub use timeline::{Direction, End, Event, EventKind, Handshake, Hello, MessageKind, Side, Timeline};

pub type Result<T, E = ProbeError> = std::result::Result<T, E>;

/// Where connecting failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectStage {
    Bind,
    Tcp,
    ProxyHeader,
    Tls,
    Handshake,
    Hello,
    Timeout,
}

impl fmt::Display for ConnectStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectStage::Bind => "binding the source address",
            ConnectStage::Tcp => "the TCP connect",
            ConnectStage::ProxyHeader => "writing the PROXY header",
            ConnectStage::Tls => "the TLS handshake",
            ConnectStage::Handshake => "the WebSocket upgrade",
            ConnectStage::Hello => "reading the hello frame",
            ConnectStage::Timeout => "the handshake timeout",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("parsing the probe URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("dialing {addr}: {stage} failed")]
    Dial {
        addr: SocketAddr,
        stage: ConnectStage,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("connecting to {url}: {stage} failed{}", status.map(|s| format!(" (status {s})")).unwrap_or_default())]
    Connect {
        url: String,
        stage: ConnectStage,
        /// The upgrade response's status when one arrived (e.g. 502, 503).
        status: Option<u16>,
        /// Everything recorded up to the failure.
        timeline: Box<Timeline>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("receiving: nothing arrived within {after:?}")]
    RecvTimeout { after: Duration },
    #[error("using the connection: it has ended ({end:?})")]
    Ended { end: End },
    #[error("receiving: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("HTTP {method} {url}: {stage}")]
    Http {
        method: String,
        url: String,
        stage: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what}: gave up after {attempts} attempts")]
    GaveUp {
        what: &'static str,
        attempts: u32,
        #[source]
        last: Box<ProbeError>,
    },
}

impl ProbeError {
    /// The failed upgrade's HTTP status, when the error is a handshake answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProbeError::Connect { status, .. } => *status,
            _ => None,
        }
    }

    /// The timeline recorded before a connect failure.
    pub fn timeline(&self) -> Option<&Timeline> {
        match self {
            ProbeError::Connect { timeline, .. } => Some(timeline),
            _ => None,
        }
    }
}

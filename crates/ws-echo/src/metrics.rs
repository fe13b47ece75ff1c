//! Prometheus metrics (prometheus-client): connection, message and error counters, and the draining gauge.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be written as text.
    #[error("encoding metrics as text")]
    Encode {
        /// The formatter's error.
        source: std::fmt::Error,
    },
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as counted in `websocket_errors_total{kind=…}` and named in the log event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Upgrade request without a valid `Sec-WebSocket-Key` or upgrade headers (400).
    BadUpgrade,
    /// Upgrade request with a `Sec-WebSocket-Version` other than 13 (426).
    UnsupportedVersion,
    /// Upgrade refused because `--max-connections` WebSockets are open (503).
    MaxConnections,
    /// A message or frame larger than `--max-message-size` (Close 1009).
    MessageTooBig,
    /// A text message that is not UTF-8 (Close 1007).
    InvalidUtf8,
    /// A protocol violation by the peer: unmasked frame, reserved opcode or bits, bad fragmentation (Close 1002).
    Protocol,
    /// The peer vanished without a close handshake (TCP reset or EOF mid-stream).
    Reset,
    /// The request headers did not arrive within `--header-read-timeout` (slowloris).
    HeaderTimeout,
    /// A malformed HTTP request.
    Http,
    /// Any other I/O failure on a connection.
    Io,
}

impl ErrorKind {
    /// Every kind, so each label exists (at 0) from the start.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::BadUpgrade,
        ErrorKind::UnsupportedVersion,
        ErrorKind::MaxConnections,
        ErrorKind::MessageTooBig,
        ErrorKind::InvalidUtf8,
        ErrorKind::Protocol,
        ErrorKind::Reset,
        ErrorKind::HeaderTimeout,
        ErrorKind::Http,
        ErrorKind::Io,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadUpgrade => "bad_upgrade",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::MaxConnections => "max_connections",
            ErrorKind::MessageTooBig => "message_too_big",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Reset => "reset",
            ErrorKind::HeaderTimeout => "header_timeout",
            ErrorKind::Http => "http",
            ErrorKind::Io => "io",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The server's metrics. Handles are atomics: counting never takes a lock.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `websocket_connections_active`.
    pub connections_active: Gauge,
    /// `websocket_connections_total`.
    pub connections_total: Counter,
    /// `websocket_messages_total{direction="in"}`.
    pub messages_in: Counter,
    /// `websocket_messages_total{direction="out"}`.
    pub messages_out: Counter,
    /// `ws_echo_draining` (0 or 1).
    pub draining: Gauge,
    errors: Vec<(ErrorKind, Counter)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let connections_active = Gauge::default();
        registry.register(
            "websocket_connections_active",
            "WebSocket connections currently open",
            connections_active.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "websocket_connections",
            "WebSocket connections accepted since start",
            connections_total.clone(),
        );
        let messages = Family::<DirectionLabels, Counter>::default();
        let messages_in = messages.get_or_create_owned(&DirectionLabels { direction: "in" });
        let messages_out = messages.get_or_create_owned(&DirectionLabels { direction: "out" });
        registry.register("websocket_messages", "WebSocket data messages by direction", messages);
        let errors_family = Family::<KindLabels, Counter>::default();
        let errors = ErrorKind::ALL
            .iter()
            .map(|&kind| {
                (
                    kind,
                    errors_family.get_or_create_owned(&KindLabels { kind: kind.as_str() }),
                )
            })
            .collect();
        registry.register(
            "websocket_errors",
            "Errors by kind (peer misbehaviour, limits, I/O)",
            errors_family,
        );
        let draining = Gauge::default();
        registry.register(
            "ws_echo_draining",
            "1 once draining (GET /drain or SIGTERM) has begun",
            draining.clone(),
        );
        Metrics {
            registry,
            connections_active,
            connections_total,
            messages_in,
            messages_out,
            draining,
            errors,
        }
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: ErrorKind) {
        if let Some((_, counter)) = self.errors.iter().find(|(k, _)| *k == kind) {
            counter.inc();
        }
    }

    /// The count of errors of `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors.iter().find(|(k, _)| *k == kind).map_or(0, |(_, c)| c.get())
    }

    /// The registry in OpenMetrics text format.
    pub fn encode(&self) -> Result<String> {
        let mut out = String::with_capacity(2048);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|source| Error::Encode { source })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names_and_labels() {
        let metrics = Metrics::new();
        metrics.connections_total.inc();
        metrics.messages_in.inc();
        metrics.error(ErrorKind::Protocol);
        let text = metrics.encode().unwrap();
        for line in [
            "websocket_connections_active 0",
            "websocket_connections_total 1",
            "websocket_messages_total{direction=\"in\"} 1",
            "websocket_messages_total{direction=\"out\"} 0",
            "websocket_errors_total{kind=\"protocol\"} 1",
            "websocket_errors_total{kind=\"message_too_big\"} 0",
            "ws_echo_draining 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}

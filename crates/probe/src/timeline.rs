//! The serializable record of one probe connection: dial, handshake, hello, messages, end.
//!
//! Times are milliseconds relative to the dial start (`at_ms`), plus the dial
//! start's wall-clock time (`started_unix_ms`) so lanes of many connections
//! can be drawn on one axis.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How much of a text message the timeline keeps.
pub const TEXT_PREVIEW_LEN: usize = 200;

/// One connection attempt, from dial to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub url: String,
    /// The address dialed (the ingress).
    pub dialed: SocketAddr,
    /// Our side of the TCP connection, once connected.
    pub local: Option<SocketAddr>,
    /// Wall-clock time of the dial start, milliseconds since the Unix epoch.
    pub started_unix_ms: f64,
    /// When the TCP connection was established.
    pub tcp_connected_ms: Option<f64>,
    /// When the TLS handshake finished (wss only).
    pub tls_done_ms: Option<f64>,
    /// The upgrade response (101 or a failure status), if one arrived.
    pub handshake: Option<Handshake>,
    pub hello: Option<Hello>,
    pub events: Vec<Event>,
    /// How the connection ended, once it has.
    pub end: Option<End>,
}

/// The HTTP response to the upgrade request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    pub status: u16,
    pub at_ms: f64,
    /// Response headers in order, names lowercase; repeated headers repeat.
    pub headers: Vec<(String, String)>,
    pub set_cookies: Vec<String>,
    /// The `Sec-WebSocket-Protocol` the server selected.
    pub subprotocol: Option<String>,
    /// The body of a failed handshake (lossy UTF-8, truncated).
    pub body: Option<String>,
}

impl Handshake {
    pub fn succeeded(&self) -> bool {
        self.status == 101
    }

    /// First value of a response header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// ws-echo's first frame: which pod answered and what it saw of the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub pod: String,
    /// The server's connection id (a number or string on the wire).
    #[serde(deserialize_with = "string_or_number")]
    pub conn: String,
    /// The TCP peer the pod saw (the proxy, usually).
    pub peer: String,
    pub forwarded_for: Option<String>,
    pub real_ip: Option<String>,
    pub subprotocol: Option<String>,
}

impl Hello {
    /// Parses a hello frame; `None` for anything that is not `{"type":"hello",…}`.
    pub fn parse(text: &str) -> Option<Hello> {
        #[derive(Deserialize)]
        struct Tagged {
            #[serde(rename = "type")]
            kind: String,
            #[serde(flatten)]
            hello: Hello,
        }
        let tagged: Tagged = serde_json::from_str(text).ok()?;
        (tagged.kind == "hello").then_some(tagged.hello)
    }

    /// The IP part of `peer`.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer.parse::<SocketAddr>().ok().map(|a| a.ip())
    }
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::N(n) => n.to_string(),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: f64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sent,
    Received,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Binary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Message {
        direction: Direction,
        kind: MessageKind,
        len: usize,
        /// The start of a text message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Ping {
        direction: Direction,
        len: usize,
    },
    Pong {
        direction: Direction,
        len: usize,
    },
    /// A close frame, sent or received (the connection may not have ended yet).
    Close {
        direction: Direction,
        code: Option<u16>,
        reason: String,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// We sent the first close frame.
    Client,
    /// The server (or proxy) sent the first close frame.
    Server,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum End {
    /// A close frame was exchanged; `code` is the first close frame's code.
    Closed {
        at_ms: f64,
        by: Side,
        code: Option<u16>,
        reason: String,
    },
    /// The transport ended without a close frame from the other side (reset, EOF, error).
    Abnormal { at_ms: f64, error: String },
    /// The handshake did not succeed (see [`Timeline::handshake`] for its status).
    HandshakeFailed {
        at_ms: f64,
        status: Option<u16>,
        error: String,
    },
    /// Still open when the probe stopped watching.
    StillOpen { at_ms: f64 },
}

impl End {
    pub fn at_ms(&self) -> f64 {
        match self {
            End::Closed { at_ms, .. }
            | End::Abnormal { at_ms, .. }
            | End::HandshakeFailed { at_ms, .. }
            | End::StillOpen { at_ms } => *at_ms,
        }
    }

    /// The close code, if the end was a close frame.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            End::Closed { code, .. } => *code,
            _ => None,
        }
    }
}

/// Builds a timeline against one monotonic start.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pub(crate) start: Instant,
    pub(crate) timeline: Timeline,
}

impl Timeline {
    /// An empty timeline whose dial starts now.
    pub(crate) fn starting_now(url: String, dialed: SocketAddr) -> Self {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default();
        Timeline {
            url,
            dialed,
            local: None,
            started_unix_ms,
            tcp_connected_ms: None,
            tls_done_ms: None,
            handshake: None,
            hello: None,
            events: Vec::new(),
            end: None,
        }
    }
}

impl Recorder {
    pub(crate) fn new(url: String, dialed: SocketAddr) -> Self {
        Recorder {
            start: Instant::now(),
            timeline: Timeline::starting_now(url, dialed),
        }
    }

    pub(crate) fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    pub(crate) fn push(&mut self, kind: EventKind) {
        let at_ms = self.now_ms();
        self.timeline.events.push(Event { at_ms, kind });
    }

    pub(crate) fn message(&mut self, direction: Direction, kind: MessageKind, len: usize, text: Option<&str>) {
        let text = text.map(|t| {
            let mut end = t.len().min(TEXT_PREVIEW_LEN);
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t[..end].to_owned()
        });
        self.push(EventKind::Message {
            direction,
            kind,
            len,
            text,
        });
    }

    /// Records the end once; later ends are ignored.
    pub(crate) fn end(&mut self, end: impl FnOnce(f64) -> End) {
        if self.timeline.end.is_none() {
            let at = self.now_ms();
            self.timeline.end = Some(end(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_parses_numbers_strings_and_nulls() {
        let hello = Hello::parse(
            r#"{"type":"hello","pod":"echo-0","conn":7,"peer":"127.0.2.3:5000","forwarded_for":null,"real_ip":"203.0.113.7","subprotocol":"echo.v1"}"#,
        )
        .unwrap();
        assert_eq!(hello.conn, "7");
        assert_eq!(hello.real_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(hello.forwarded_for, None);
        assert_eq!(hello.peer_ip(), Some("127.0.2.3".parse().unwrap()));
        assert_eq!(Hello::parse(r#"{"type":"tick","pod":"p","seq":1}"#), None);
        assert_eq!(Hello::parse("not json"), None);
    }

    #[test]
    fn timeline_serializes_with_tagged_events_and_end() {
        let mut rec = Recorder::new("ws://h/ws".into(), "127.0.0.1:80".parse().unwrap());
        rec.message(Direction::Sent, MessageKind::Text, 3, Some("abc"));
        rec.end(|at_ms| End::Abnormal {
            at_ms,
            error: "reset".into(),
        });
        rec.end(|at_ms| End::StillOpen { at_ms });
        let json = serde_json::to_value(&rec.timeline).unwrap();
        assert_eq!(json["events"][0]["event"], "message");
        assert_eq!(json["events"][0]["direction"], "sent");
        assert_eq!(json["end"]["end"], "abnormal");
        let back: Timeline = serde_json::from_value(json).unwrap();
        assert_eq!(back, rec.timeline);
    }
}

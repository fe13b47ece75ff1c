//! An open probe connection: send, receive with a timeout, ping, close — every step recorded.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::connect::ProbeStream;
use super::timeline::{Direction, End, EventKind, Handshake, Hello, MessageKind, Recorder, Side, Timeline};
use super::{ProbeError, Result};

/// What [`Connection::recv`] hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Bytes),
    /// A ping from the server (already answered with a pong).
    Ping(Bytes),
    Pong(Bytes),
    /// The server's close frame (our reply is sent); the next `recv` reports the end.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

impl Incoming {
    /// A ws-echo tick (`{"type":"tick",…}`).
    pub fn is_tick(&self) -> bool {
        matches!(self, Incoming::Text(t) if t.starts_with("{\"type\":\"tick\""))
    }

    /// Text or binary (not control frames).
    pub fn is_data(&self) -> bool {
        matches!(self, Incoming::Text(_) | Incoming::Binary(_))
    }
}

/// A WebSocket connection that records a [`Timeline`].
#[derive(Debug)]
pub struct Connection {
    pub(crate) ws: WebSocketStream<ProbeStream>,
    pub(crate) rec: Recorder,
    pending: VecDeque<Message>,
    close_sent: Option<Option<u16>>,
}

impl Connection {
    pub(crate) fn new(ws: WebSocketStream<ProbeStream>, rec: Recorder) -> Self {
        Connection {
            ws,
            rec,
            pending: VecDeque::new(),
            close_sent: None,
        }
    }

    pub(crate) fn push_pending(&mut self, message: Message) {
        self.pending.push_back(message);
    }

    pub fn timeline(&self) -> &Timeline {
        &self.rec.timeline
    }

    /// The timeline, marking the connection still open if it has not ended.
    pub fn into_timeline(mut self) -> Timeline {
        self.rec.end(|at_ms| End::StillOpen { at_ms });
        self.rec.timeline
    }

    pub fn handshake(&self) -> Option<&Handshake> {
        self.rec.timeline.handshake.as_ref()
    }

    pub fn hello(&self) -> Option<&Hello> {
        self.rec.timeline.hello.as_ref()
    }

    /// The pod that said hello.
    pub fn pod(&self) -> Option<&str> {
        self.hello().map(|h| h.pod.as_str())
    }

    /// The selected subprotocol from the 101 response.
    pub fn subprotocol(&self) -> Option<&str> {
        self.handshake().and_then(|h| h.subprotocol.as_deref())
    }

    /// How the connection ended, once it has.
    pub fn end(&self) -> Option<&End> {
        self.rec.timeline.end.as_ref()
    }

    /// Milliseconds since the dial started (the timeline's clock).
    pub fn elapsed_ms(&self) -> f64 {
        self.rec.now_ms()
    }

    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        let text: String = text.into();
        self.rec
            .message(Direction::Sent, MessageKind::Text, text.len(), Some(&text));
        self.send(Message::text(text)).await
    }

    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<()> {
        let data: Bytes = data.into();
        self.rec.message(Direction::Sent, MessageKind::Binary, data.len(), None);
        self.send(Message::Binary(data)).await
    }

    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        let payload: Bytes = payload.into();
        self.rec.push(EventKind::Ping {
            direction: Direction::Sent,
            len: payload.len(),
        });
        self.send(Message::Ping(payload)).await
    }

    async fn send(&mut self, message: Message) -> Result<()> {
        if let Some(end) = &self.rec.timeline.end {
            return Err(ProbeError::Ended { end: end.clone() });
        }
        match self.ws.send(message).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let end = self.fail(&e);
                Err(ProbeError::Ended { end })
            }
        }
    }

    /// Next frame from the server within `timeout`. After the end, every call answers
    /// [`ProbeError::Ended`] with how it ended.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Incoming> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(self.incoming(message));
        }
        if let Some(end) = &self.rec.timeline.end {
            return Err(ProbeError::Ended { end: end.clone() });
        }
        let next = match tokio::time::timeout(timeout, self.ws.next()).await {
            Ok(next) => next,
            Err(_) => return Err(ProbeError::RecvTimeout { after: timeout }),
        };
        match next {
            Some(Ok(message)) => {
                self.record_incoming(&message);
                let incoming = self.incoming(message);
                if let Incoming::Close { .. } = incoming {
                    // Push out our close reply now rather than on the next read.
                    let _ = self.ws.flush().await;
                }
                Ok(incoming)
            }
            Some(Err(e)) => {
                let end = self.fail(&e);
                Err(ProbeError::Ended { end })
            }
            None => {
                let end = self.fail_eof();
                Err(ProbeError::Ended { end })
            }
        }
    }

    /// Next text or binary frame, skipping control frames and ws-echo ticks.
    pub async fn recv_data(&mut self, timeout: Duration) -> Result<Incoming> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(Incoming::Close { code, reason }) => {
                    let end = self.rec.timeline.end.clone().unwrap_or(End::Closed {
                        at_ms: self.rec.now_ms(),
                        by: Side::Server,
                        code,
                        reason,
                    });
                    return Err(ProbeError::Ended { end });
                }
                Ok(m) if m.is_data() && !m.is_tick() => return Ok(m),
                Ok(_) => continue,
                Err(ProbeError::RecvTimeout { .. }) => return Err(ProbeError::RecvTimeout { after: timeout }),
                Err(e) => return Err(e),
            }
        }
    }

    /// Next text frame that is not a tick.
    pub async fn recv_text(&mut self, timeout: Duration) -> Result<String> {
        match self.recv_data(timeout).await? {
            Incoming::Text(text) => Ok(text),
            other => Err(ProbeError::Unexpected {
                expected: "a text frame",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Sends a close frame and waits (up to `timeout`) for the close handshake to finish.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<End> {
        if self.rec.timeline.end.is_none() && self.close_sent.is_none() {
            self.rec.push(EventKind::Close {
                direction: Direction::Sent,
                code: Some(code),
                reason: reason.to_owned(),
            });
            self.close_sent = Some(Some(code));
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            if let Err(e) = self.ws.send(Message::Close(Some(frame))).await {
                self.fail(&e);
            }
        }
        self.drain_until_end(Duration::from_secs(5)).await
    }

    /// Reads (recording) until the connection ends or `max` passes.
    pub(crate) async fn drain_until_end(&mut self, max: Duration) -> Result<End> {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(_) => continue,
                Err(ProbeError::Ended { end }) => return Ok(end),
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn record_incoming(&mut self, message: &Message) {
        match message {
            Message::Text(t) => self
                .rec
                .message(Direction::Received, MessageKind::Text, t.len(), Some(t.as_str())),
            Message::Binary(b) => self
                .rec
                .message(Direction::Received, MessageKind::Binary, b.len(), None),
            Message::Ping(p) => self.rec.push(EventKind::Ping {
                direction: Direction::Received,
                len: p.len(),
            }),
            Message::Pong(p) => self.rec.push(EventKind::Pong {
                direction: Direction::Received,
                len: p.len(),
            }),
            Message::Close(frame) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                let reason = frame.as_ref().map(|f| f.reason.to_string()).unwrap_or_default();
                self.rec.push(EventKind::Close {
                    direction: Direction::Received,
                    code,
                    reason: reason.clone(),
                });
                let close_sent = self.close_sent;
                self.rec.end(|at_ms| match close_sent {
                    Some(our_code) => End::Closed {
                        at_ms,
                        by: Side::Client,
                        code: our_code,
                        reason,
                    },
                    None => End::Closed {
                        at_ms,
                        by: Side::Server,
                        code,
                        reason,
                    },
                });
            }
            Message::Frame(_) => {}
        }
    }

    fn incoming(&mut self, message: Message) -> Incoming {
        match message {
            Message::Text(t) => Incoming::Text(t.to_string()),
            Message::Binary(b) => Incoming::Binary(b),
            Message::Ping(p) => Incoming::Ping(p),
            Message::Pong(p) => Incoming::Pong(p),
            Message::Close(frame) => Incoming::Close {
                code: frame.as_ref().map(|f| u16::from(f.code)),
                reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            },
            Message::Frame(_) => Incoming::Binary(Bytes::new()),
        }
    }

    /// Records an error; ends the connection unless it already ended cleanly.
    fn fail(&mut self, error: &tungstenite::Error) -> End {
        let clean = matches!(
            error,
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
        );
        if !clean {
            self.rec.push(EventKind::Error {
                message: error.to_string(),
            });
        }
        let message = error.to_string();
        self.rec.end(|at_ms| End::Abnormal { at_ms, error: message });
        self.rec.timeline.end.clone().unwrap_or(End::StillOpen { at_ms: 0.0 })
    }

    fn fail_eof(&mut self) -> End {
        self.rec.end(|at_ms| End::Abnormal {
            at_ms,
            error: "connection ended without a close frame".into(),
        });
        self.rec.timeline.end.clone().unwrap_or(End::StillOpen { at_ms: 0.0 })
    }
}

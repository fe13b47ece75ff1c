//! One WebSocket connection: hello, echo (or reverse), ticks and pings, limits, and the close handshake.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::{debug, info};

use crate::metrics::ErrorKind;
use crate::server::{CLOSE_HANDSHAKE_WAIT, Slot};
use crate::shutdown::{Guard, Phase};
use crate::ticker;

/// Read buffer per connection. tungstenite's default (128 KiB, allocated eagerly) is what
/// makes a plain tokio-tungstenite server cost ~130 KiB per idle connection. It is the
/// chunk each read fills, not a message limit: larger frames accumulate across reads.
/// 4 KiB measured 6.9 KiB RSS per idle connection (release, 10k connections) against a
/// 6 KiB budget; 2 KiB keeps small-message throughput and brings it under.
const READ_BUFFER: usize = 2 * 1024;

/// How long an error close waits for the peer to go away before dropping the socket.
const LINGER: Duration = Duration::from_secs(1);

/// What the connection does with text messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Echo unchanged.
    Echo,
    /// Echo text reversed (by characters); binary unchanged.
    Reverse,
}

/// What the upgrade request told us about the connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) forwarded_for: Option<String>,
    pub(crate) real_ip: Option<String>,
    pub(crate) subprotocol: Option<&'static str>,
    pub(crate) mode: Mode,
    pub(crate) hello: bool,
}

#[derive(Serialize)]
struct Hello<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    pod: &'a str,
    conn: u64,
    peer: String,
    forwarded_for: Option<&'a str>,
    real_ip: Option<&'a str>,
    subprotocol: Option<&'a str>,
}

#[derive(Serialize)]
struct Tick<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    pod: &'a str,
    seq: u64,
}

/// How the connection ended, for the close log event.
#[derive(Debug, Default)]
struct Ending {
    /// The close code sent or received (None: no close frame).
    code: Option<u16>,
    /// Who started the close: "client", "server" or "reset".
    by: &'static str,
    /// The error kind when the peer misbehaved or vanished.
    kind: Option<ErrorKind>,
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Serves one upgraded connection until it closes. `slot` and `guard` are released on return.
pub(crate) async fn serve(slot: Slot, mut guard: Guard, on_upgrade: OnUpgrade, info: ConnInfo) {
    let state = slot.state().clone();
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            debug!(pod = %state.pod, conn = info.id, peer = %info.peer, %error, "upgrade did not complete");
            return;
        }
    };
    let max = state.config.max_message_size;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    state.metrics.connections_total.inc();
    let opened = Instant::now();
    info!(
        pod = %state.pod,
        conn = info.id,
        peer = %info.peer,
        forwarded_for = info.forwarded_for.as_deref(),
        subprotocol = info.subprotocol,
        "websocket open"
    );

    let ending = run(&mut ws, &state, &mut guard, &info).await;

    let duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(
        pod = %state.pod,
        conn = info.id,
        peer = %info.peer,
        duration_ms,
        close_code = ending.code,
        closed_by = ending.by,
        kind = ending.kind.map(ErrorKind::as_str),
        "websocket closed"
    );
}

/// The message loop.
async fn run(ws: &mut Ws, state: &crate::server::State, guard: &mut Guard, info: &ConnInfo) -> Ending {
    let pod = &*state.pod;
    let metrics = &state.metrics;
    if info.hello {
        let hello = Hello {
            kind: "hello",
            pod,
            conn: info.id,
            peer: info.peer.to_string(),
            forwarded_for: info.forwarded_for.as_deref(),
            real_ip: info.real_ip.as_deref(),
            subprotocol: info.subprotocol,
        };
        let hello = serde_json::to_string(&hello).expect("hello serializes");
        if let Err(error) = ws.send(Message::text(hello)).await {
            return Box::pin(failed(ws, state, info, error)).await;
        }
        metrics.messages_out.inc();
    }
    let mut ticks = state.ticks.as_ref().map(ticker::Ticker::subscribe);
    let mut pings = state.pings.as_ref().map(ticker::Ticker::subscribe);
    let mut seq = 0u64;
    let mut peer_close: Option<u16> = None;
    loop {
        let sent = tokio::select! {
            biased;
            () = guard.reached(Phase::GoingAway) => return Box::pin(going_away(ws, peer_close)).await,
            message = ws.next() => match message {
                None => {
                    return Ending { code: peer_close, by: if peer_close.is_some() { "client" } else { "reset" }, kind: None };
                }
                Some(Err(error)) => return Box::pin(failed(ws, state, info, error)).await,
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite queued the reply; the next read flushes it and ends the stream.
                    peer_close = Some(frame.map_or(u16::from(CloseCode::Status), |f| f.code.into()));
                    continue;
                }
                Some(Ok(Message::Text(text))) => {
                    metrics.messages_in.inc();
                    let reply = match info.mode {
                        Mode::Echo => text,
                        Mode::Reverse => Utf8Bytes::from(text.chars().rev().collect::<String>()),
                    };
                    ws.send(Message::Text(reply)).await
                }
                Some(Ok(message @ Message::Binary(_))) => {
                    metrics.messages_in.inc();
                    ws.send(message).await
                }
                // Pongs to pings are queued by tungstenite and flushed by the next read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            },
            () = ticker::next(&mut ticks) => {
                seq += 1;
                let tick = serde_json::to_string(&Tick { kind: "tick", pod, seq }).expect("tick serializes");
                ws.send(Message::text(tick)).await
            }
            () = ticker::next(&mut pings) => {
                match ws.send(Message::Ping(Default::default())).await {
                    Ok(()) => continue,
                    Err(error) => Err(error),
                }
            }
        };
        match sent {
            Ok(()) => {
                metrics.messages_out.inc();
            }
            Err(error) => return Box::pin(failed(ws, state, info, error)).await,
        }
    }
}

/// Grace is over: Close 1001, then wait (bounded) for the peer's close reply.
async fn going_away(ws: &mut Ws, peer_close: Option<u16>) -> Ending {
    if let Some(code) = peer_close {
        // The peer already started closing; let tungstenite finish the handshake.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async { while ws.next().await.is_some() {} }).await;
        return Ending {
            code: Some(code),
            by: "client",
            kind: None,
        };
    }
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: Utf8Bytes::from_static("server shutting down"),
    };
    let handshake = async {
        ws.send(Message::Close(Some(frame))).await?;
        // Messages still in flight are read and dropped until the peer's Close arrives.
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok::<_, WsError>(())
    };
    match tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, handshake).await {
        Ok(Ok(())) | Ok(Err(_)) => {}
        Err(_) => debug!("close handshake timed out"),
    }
    Ending {
        code: Some(CloseCode::Away.into()),
        by: "server",
        kind: None,
    }
}

/// The peer broke the protocol, exceeded a limit or vanished: count it, log it, and
/// send the matching close code when the connection is still writable.
async fn failed(ws: &mut Ws, state: &crate::server::State, info: &ConnInfo, error: WsError) -> Ending {
    let (kind, code) = classify(&error);
    state.metrics.error(kind);
    // Peer misbehaviour is an expected event for this server, not a server error.
    info!(pod = %state.pod, conn = info.id, peer = %info.peer, kind = kind.as_str(), %error, "websocket error");
    let Some(code) = code else {
        return Ending {
            code: None,
            by: "reset",
            kind: Some(kind),
        };
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason(code)),
    };
    let _ = tokio::time::timeout(LINGER, ws.send(Message::Close(Some(frame)))).await;
    linger(ws.get_mut()).await;
    Ending {
        code: Some(code.into()),
        by: "server",
        kind: Some(kind),
    }
}

/// Half-closes and discards what the peer still sends, so the close frame is not lost
/// to a TCP reset caused by unread data (the lingering close nginx and Apache do).
async fn linger(io: &mut TokioIo<Upgraded>) {
    let _ = tokio::time::timeout(LINGER, async {
        io.shutdown().await?;
        let mut sink = [0u8; 1024];
        while io.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

fn classify(error: &WsError) -> (ErrorKind, Option<CloseCode>) {
    match error {
        WsError::Capacity(_) => (ErrorKind::MessageTooBig, Some(CloseCode::Size)),
        WsError::Utf8(_) => (ErrorKind::InvalidUtf8, Some(CloseCode::Invalid)),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => (ErrorKind::Reset, None),
        WsError::Protocol(_) => (ErrorKind::Protocol, Some(CloseCode::Protocol)),
        WsError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ) =>
        {
            (ErrorKind::Reset, None)
        }
        _ => (ErrorKind::Io, None),
    }
}

fn reason(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Size => "message too big",
        CloseCode::Invalid => "invalid utf-8",
        CloseCode::Protocol => "protocol error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::CapacityError;

    #[test]
    fn errors_map_to_kinds_and_close_codes() {
        let too_big = WsError::Capacity(CapacityError::MessageTooLong { size: 2, max_size: 1 });
        assert_eq!(classify(&too_big), (ErrorKind::MessageTooBig, Some(CloseCode::Size)));
        assert_eq!(
            classify(&WsError::Utf8("x".into())),
            (ErrorKind::InvalidUtf8, Some(CloseCode::Invalid))
        );
        let unmasked = WsError::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(classify(&unmasked), (ErrorKind::Protocol, Some(CloseCode::Protocol)));
        let reset = WsError::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&reset), (ErrorKind::Reset, None));
        let eof = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(classify(&eof), (ErrorKind::Reset, None));
    }
}

//! A lean WebSocket client for the load generator's hot paths.
//!
//! Round trips through the probe's tungstenite stream cost the generator a
//! full core while ws-echo on the other core sat at 75%: the generator, not
//! the server, set the figure. This client dials with the probe
//! ([`crate::dial`], so source addresses, PROXY headers and TLS all
//! apply), sends the probe's upgrade request itself (so no byte read past the
//! 101 is lost), then frames by hand: one reused write buffer, one read
//! buffer, a fresh mask per frame, no allocation per message.

use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::{LoadError, Result};
use crate::connect::{DialFailure, upgrade_request};
use crate::{ConnectStage, ProbeError, ProbeOptions, ProbeStream, dial};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Initial read buffer; grows to fit the largest frame seen. Small, because
/// the capacity run holds tens of thousands of these.
const READ_BUFFER: usize = 2048;
/// An upgrade response head longer than this is refused.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// A frame announcing more than this is refused rather than buffered.
const MAX_FRAME: u64 = 64 * 1024 * 1024;
/// The longest server frame header: 2 bytes and a 64-bit length (servers do not mask).
const MAX_HEADER: usize = 10;

/// An upgraded connection, framed by hand.
#[derive(Debug)]
pub(crate) struct WireSocket {
    stream: ProbeStream,
    /// Bytes read and not yet consumed are `rbuf[start..end]`.
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    wbuf: Vec<u8>,
    masks: MaskKeys,
    /// The opcode of a fragmented data message in progress, and its bytes so far.
    partial: Option<(u8, usize)>,
}

impl WireSocket {
    /// Dials, sends the upgrade request and checks the 101, within the handshake timeout.
    pub(crate) async fn connect(opts: &ProbeOptions) -> crate::Result<Self> {
        match tokio::time::timeout(opts.handshake_timeout, Self::connect_inner(opts)).await {
            Ok(connected) => connected,
            Err(_) => Err(ProbeError::Dial {
                addr: opts.addr,
                stage: ConnectStage::Timeout,
                source: format!("no upgrade within {:?}", opts.handshake_timeout).into(),
            }),
        }
    }

    async fn connect_inner(opts: &ProbeOptions) -> crate::Result<Self> {
        let mut stream = dial(opts).await?;
        let handshake_failed = |source: Box<dyn std::error::Error + Send + Sync>| ProbeError::Dial {
            addr: opts.addr,
            stage: ConnectStage::Handshake,
            source,
        };
        let request = upgrade_request(opts).map_err(|f: DialFailure| handshake_failed(f.source))?;
        let key = request
            .headers()
            .get(http::header::SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default();
        let head = request_head(&request);
        let sent = async {
            stream.write_all(head.as_bytes()).await?;
            stream.flush().await
        };
        sent.await.map_err(|e| handshake_failed(e.into()))?;

        let mut rbuf = vec![0u8; READ_BUFFER];
        let mut end = 0;
        let head_len = loop {
            if let Some(at) = find_head_end(&rbuf[..end]) {
                break at;
            }
            if end == MAX_RESPONSE_HEAD {
                return Err(handshake_failed(
                    format!("the upgrade response head is longer than {MAX_RESPONSE_HEAD} bytes").into(),
                ));
            }
            if end == rbuf.len() {
                rbuf.resize((rbuf.len() * 2).min(MAX_RESPONSE_HEAD), 0);
            }
            let n = stream
                .read(&mut rbuf[end..])
                .await
                .map_err(|e| handshake_failed(e.into()))?;
            if n == 0 {
                // An io::Error of its kind, so the storm mode can count it with resets.
                return Err(handshake_failed(Box::new(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection closed before the upgrade response",
                ))));
            }
            end += n;
        };
        check_upgrade_response(&rbuf[..head_len], &key).map_err(handshake_failed)?;
        Ok(WireSocket {
            stream,
            rbuf,
            start: head_len,
            end,
            wbuf: Vec::with_capacity(64),
            masks: MaskKeys::seeded(),
            partial: None,
        })
    }

    /// Sends `payload` as one binary frame and waits for its echo, answering
    /// pings and skipping text (hellos, ticks) and pongs on the way.
    pub(crate) async fn round_trip(&mut self, payload: &[u8]) -> Result<()> {
        self.send(OP_BINARY, payload).await?;
        loop {
            let Frame { fin, opcode, body } = self.next_frame().await?;
            let len = body.len();
            let done = match opcode {
                OP_TEXT | OP_BINARY if self.partial.is_some() => {
                    return Err(protocol("a new data frame arrived inside a fragmented message"));
                }
                OP_TEXT | OP_BINARY if !fin => {
                    self.partial = Some((opcode, len));
                    None
                }
                OP_TEXT | OP_BINARY => Some((opcode, len, &self.rbuf[body] == payload)),
                OP_CONTINUATION => {
                    let Some((first, so_far)) = self.partial else {
                        return Err(protocol("a continuation frame arrived outside a fragmented message"));
                    };
                    if fin {
                        self.partial = None;
                        // Fragments are only counted: the echo's bytes were never in one place.
                        Some((first, so_far + len, so_far + len == payload.len()))
                    } else {
                        self.partial = Some((first, so_far + len));
                        None
                    }
                }
                _ => {
                    self.control(opcode, body).await?;
                    None
                }
            };
            match done {
                Some((OP_BINARY, got, true)) if got == payload.len() => return Ok(()),
                Some((OP_BINARY, got, _)) if got != payload.len() => {
                    return Err(protocol(&format!(
                        "the echo of a {}-byte message came back as {got} bytes",
                        payload.len()
                    )));
                }
                Some((OP_BINARY, _, _)) => return Err(protocol("an echo came back with different bytes")),
                _ => {}
            }
        }
    }

    /// Reads until `stop` resolves, answering pings and skipping everything
    /// else; an error says how the connection ended before that.
    pub(crate) async fn hold(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(stop);
        loop {
            // `next_frame` is cancel-safe: bytes are kept as soon as a read returns.
            let frame = tokio::select! {
                () = &mut stop => return Ok(()),
                frame = self.next_frame() => frame?,
            };
            if frame.opcode >= OP_CLOSE {
                self.control(frame.opcode, frame.body).await?;
            }
        }
    }

    /// Answers a ping, ignores a pong, on a close echoes its code and ends;
    /// refuses opcodes the protocol does not define.
    async fn control(&mut self, opcode: u8, body: Range<usize>) -> Result<()> {
        match opcode {
            OP_PING => {
                let mask = self.masks.next();
                encode_frame(&mut self.wbuf, OP_PONG, &self.rbuf[body], mask);
                self.write_wbuf().await
            }
            OP_PONG => Ok(()),
            OP_CLOSE => {
                let code =
                    (body.len() >= 2).then(|| u16::from_be_bytes([self.rbuf[body.start], self.rbuf[body.start + 1]]));
                // Echo the code back as the protocol asks; the connection is over either way.
                let reply = code.map(u16::to_be_bytes);
                let _ = self.send(OP_CLOSE, reply.as_ref().map_or(&[][..], |c| &c[..])).await;
                Err(LoadError::Closed { code })
            }
            other => Err(protocol(&format!("unknown opcode {other:#x}"))),
        }
    }

    /// Sends a close frame and waits (bounded) for the server's close or the end of the stream.
    pub(crate) async fn close(mut self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            self.send(OP_CLOSE, &1000u16.to_be_bytes()).await?;
            loop {
                if self.next_frame().await?.opcode == OP_CLOSE {
                    return Ok::<_, LoadError>(());
                }
            }
        })
        .await;
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mask = self.masks.next();
        encode_frame(&mut self.wbuf, opcode, payload, mask);
        self.write_wbuf().await
    }

    async fn write_wbuf(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await.map_err(LoadError::Io)?;
        // A no-op on plain TCP; pushes the record out on TLS.
        self.stream.flush().await.map_err(LoadError::Io)
    }

    /// Reads until a whole frame is buffered, then consumes it: its payload
    /// stays at `rbuf[frame.body]` until the next call.
    async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            match parse_header(&self.rbuf[self.start..self.end])? {
                Some(h) if self.end - self.start >= h.header_len + h.len => {
                    let body = self.start + h.header_len..self.start + h.header_len + h.len;
                    self.start = body.end;
                    return Ok(Frame {
                        fin: h.fin,
                        opcode: h.opcode,
                        body,
                    });
                }
                Some(h) => self.make_room(h.header_len + h.len),
                None => self.make_room(MAX_HEADER),
            }
            let n = self
                .stream
                .read(&mut self.rbuf[self.end..])
                .await
                .map_err(LoadError::Io)?;
            if n == 0 {
                return Err(LoadError::Closed { code: None });
            }
            self.end += n;
        }
    }

    /// Ensures `rbuf[start..]` can hold `frame` bytes: compacts, then grows.
    fn make_room(&mut self, frame: usize) {
        if self.start + frame <= self.rbuf.len() {
            return;
        }
        self.rbuf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if frame > self.rbuf.len() {
            self.rbuf.resize(frame, 0);
        }
    }
}

fn protocol(reason: &str) -> LoadError {
    LoadError::Protocol {
        reason: reason.to_owned(),
    }
}

/// `GET /path HTTP/1.1` and the request's headers, as tungstenite would send them.
fn request_head<B>(request: &http::Request<B>) -> String {
    let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut head = format!("GET {target} HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(&String::from_utf8_lossy(value.as_bytes()));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The length of the response head including its blank line, once it is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// A 101 whose Sec-WebSocket-Accept answers `key`; another status is an [`UpgradeStatus`].
fn check_upgrade_response(
    head: &[u8],
    key: &[u8],
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("the upgrade response head is incomplete".into()),
        Err(e) => return Err(format!("the upgrade response does not parse: {e}").into()),
    }
    match response.code {
        Some(101) => {}
        Some(status) => return Err(Box::new(UpgradeStatus(status))),
        None => return Err("the upgrade response has no status".into()),
    }
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(derive_accept_key(key).as_bytes()) {
        return Err("the 101 response's Sec-WebSocket-Accept does not answer our key".into());
    }
    Ok(())
}

/// A frame header: flags and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    header_len: usize,
    len: usize,
}

/// The upgrade was answered with a status other than 101 (a proxy's 502,
/// 503, …); kept typed so the storm mode can count failures by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upgrade answered {0}")]
pub(crate) struct UpgradeStatus(pub(crate) u16);

/// A whole frame, consumed from the read buffer; its payload is `rbuf[body]`.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    body: Range<usize>,
}

/// Parses a server frame's header from the front of `buf`; `None` until all of it is there.
fn parse_header(buf: &[u8]) -> Result<Option<Header>> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(protocol("a frame set RSV bits, but no extension was negotiated"));
    }
    if b1 & 0x80 != 0 {
        return Err(protocol("the server masked a frame"));
    }
    let (len, ext) = match b1 & 0x7f {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => (u64::from_be_bytes(bytes.try_into().unwrap_or_default()), 8),
            None => return Ok(None),
        },
        short => (u64::from(short), 0),
    };
    if len > MAX_FRAME {
        return Err(protocol(&format!("a frame announced {len} bytes (limit {MAX_FRAME})")));
    }
    let opcode = b0 & 0x0f;
    if opcode >= 0x8 && (len > 125 || b0 & 0x80 == 0) {
        return Err(protocol("a control frame was fragmented or longer than 125 bytes"));
    }
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode,
        header_len: 2 + ext,
        len: len as usize,
    }))
}

/// Writes one masked, final client frame into `out` (cleared first).
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.clear();
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let body = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[body..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Mask keys from xorshift64*: a fresh, unpredictable-enough key per frame without a syscall.
#[derive(Debug)]
struct MaskKeys(u64);

impl MaskKeys {
    fn seeded() -> Self {
        MaskKeys(rand::random::<u64>() | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((word >> 32) as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (header, ext) = match frame[1] & 0x7f {
            126 => (4, 2),
            127 => (10, 8),
            _ => (2, 0),
        };
        let _ = ext;
        let mask = &frame[header..header + 4];
        let body = frame[header + 4..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        (frame[0] & 0x0f, body)
    }

    #[test]
    fn encoded_frames_are_masked_and_decode_to_the_payload() {
        for size in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, OP_BINARY, &payload, [1, 2, 3, 4]);
            assert_eq!(out[0], 0x80 | OP_BINARY);
            assert_ne!(out[1] & 0x80, 0, "client frames carry the mask bit");
            assert_eq!(unmask(&out), (OP_BINARY, payload), "size {size}");
        }
    }

    fn header(fin: bool, header_len: usize, len: usize) -> Header {
        Header {
            fin,
            opcode: OP_BINARY,
            header_len,
            len,
        }
    }

    #[test]
    fn headers_parse_only_once_complete() {
        assert!(parse_header(&[0x82]).unwrap().is_none());
        assert_eq!(parse_header(&[0x82, 5]).unwrap(), Some(header(true, 2, 5)));
        assert!(parse_header(&[0x02, 126, 1]).unwrap().is_none());
        assert_eq!(parse_header(&[0x02, 126, 1, 0]).unwrap(), Some(header(false, 4, 256)));
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        assert_eq!(parse_header(&long).unwrap(), Some(header(true, 10, 70_000)));
    }

    #[test]
    fn server_frames_that_break_the_protocol_are_refused() {
        let masked = parse_header(&[0x82, 0x85]).unwrap_err();
        assert!(masked.to_string().contains("masked"), "{masked}");
        let rsv = parse_header(&[0xC2, 1]).unwrap_err();
        assert!(rsv.to_string().contains("RSV"), "{rsv}");
        let fragmented_ping = parse_header(&[0x09, 0]).unwrap_err();
        assert!(fragmented_ping.to_string().contains("control"), "{fragmented_ping}");
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse_header(&huge).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn the_response_head_must_be_a_101_answering_the_key() {
        let key = b"dGhlIHNhbXBsZSBub25jZQ==";
        let good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(find_head_end(good), Some(good.len()));
        check_upgrade_response(good, key).unwrap();
        let wrong_key = check_upgrade_response(good, b"another key").unwrap_err().to_string();
        assert!(wrong_key.contains("Accept"), "{wrong_key}");
        let refused = check_upgrade_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", key).unwrap_err();
        assert_eq!(refused.to_string(), "upgrade answered 503");
        assert_eq!(refused.downcast_ref::<UpgradeStatus>(), Some(&UpgradeStatus(503)));
    }

    #[test]
    fn mask_keys_change_from_frame_to_frame() {
        let mut keys = MaskKeys::seeded();
        let first = keys.next();
        assert!((0..8).map(|_| keys.next()).all(|k| k != first));
    }
}

//! Dialing: bind a source address, TCP connect, PROXY header, TLS, then the upgrade.
//!
//! [`dial`] gives a raw byte stream (used by the HTTP helper and the load
//! generator); [`connect`] runs the WebSocket handshake on top and records
//! everything in a timeline.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::connection::Connection;
use super::options::ProbeOptions;
use super::proxy_header::write_proxy_v1;
use super::timeline::{Direction, End, EventKind, Handshake, Hello, MessageKind, Recorder};
use super::{ConnectStage, ProbeError, Result};

/// Plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum ProbeStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ProbeStream {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            ProbeStream::Plain(s) => s,
            ProbeStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for ProbeStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ProbeStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ProbeStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ProbeStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ProbeStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ProbeStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ProbeStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ProbeStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ProbeStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ProbeStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ProbeStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ProbeStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ProbeStream::Plain(s) => s.is_write_vectored(),
            ProbeStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A failure before the connection was usable, with the stage it happened in.
pub(crate) struct DialFailure {
    pub(crate) stage: ConnectStage,
    pub(crate) status: Option<u16>,
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
}

impl DialFailure {
    fn new(stage: ConnectStage, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DialFailure {
            stage,
            status: None,
            source: source.into(),
        }
    }
}

/// Source bind, TCP connect, PROXY header and TLS, recording times into `rec`.
pub(crate) async fn dial_recorded(
    opts: &ProbeOptions,
    rec: Option<&mut Recorder>,
) -> std::result::Result<ProbeStream, DialFailure> {
    let mut rec = rec;
    let socket = match opts.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| DialFailure::new(ConnectStage::Bind, e))?;
    if let Some(ip) = opts.source_ip {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| DialFailure::new(ConnectStage::Bind, e))?;
    }
    let mut tcp = socket
        .connect(opts.addr)
        .await
        .map_err(|e| DialFailure::new(ConnectStage::Tcp, e))?;
    let _ = tcp.set_nodelay(true);
    if let Some(rec) = rec.as_deref_mut() {
        rec.timeline.tcp_connected_ms = Some(rec.now_ms());
        rec.timeline.local = tcp.local_addr().ok();
    }
    if let Some(client) = opts.proxy_client {
        let header = write_proxy_v1(client, opts.addr);
        tcp.write_all(header.as_bytes())
            .await
            .map_err(|e| DialFailure::new(ConnectStage::ProxyHeader, e))?;
    }
    if !opts.is_tls() {
        return Ok(ProbeStream::Plain(tcp));
    }
    let Some(config) = opts.tls.clone() else {
        return Err(DialFailure::new(
            ConnectStage::Tls,
            "the URL is wss/https but no TLS configuration was given (ProbeOptions::tls)",
        ));
    };
    let name = rustls::pki_types::ServerName::try_from(opts.sni.clone().unwrap_or_else(|| opts.host().to_owned()))
        .map_err(|e| DialFailure::new(ConnectStage::Tls, e))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| DialFailure::new(ConnectStage::Tls, e))?;
    if let Some(rec) = rec {
        rec.timeline.tls_done_ms = Some(rec.now_ms());
    }
    Ok(ProbeStream::Tls(Box::new(tls)))
}

/// Source bind, TCP connect, PROXY header and TLS: a byte stream to speak anything over.
pub async fn dial(opts: &ProbeOptions) -> Result<ProbeStream> {
    dial_recorded(opts, None).await.map_err(|f| ProbeError::Dial {
        addr: opts.addr,
        stage: f.stage,
        source: f.source,
    })
}

/// The upgrade request: URL, Host, extra headers, cookies, subprotocols.
pub(crate) fn upgrade_request(
    opts: &ProbeOptions,
) -> std::result::Result<tungstenite::handshake::client::Request, DialFailure> {
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| DialFailure::new(ConnectStage::Handshake, e);
    let mut request = opts.url.clone().into_client_request().map_err(|e| bad(e.into()))?;
    let headers = request.headers_mut();
    for (name, value) in &opts.headers {
        let name = HeaderName::try_from(name.as_str()).map_err(|e| bad(e.into()))?;
        let value = HeaderValue::try_from(value.as_str()).map_err(|e| bad(e.into()))?;
        headers.append(name, value);
    }
    if let Some(cookie) = opts.cookies.header_value() {
        let value = HeaderValue::try_from(cookie).map_err(|e| bad(e.into()))?;
        headers.insert(http::header::COOKIE, value);
    }
    if !opts.subprotocols.is_empty() {
        let value = HeaderValue::try_from(opts.subprotocols.join(", ")).map_err(|e| bad(e.into()))?;
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(request)
}

/// Dials, upgrades and (when expected) reads the hello, all within the handshake timeout.
///
/// A failure carries the timeline recorded so far, including a failed
/// handshake's status and headers.
pub async fn connect(opts: &ProbeOptions) -> Result<Connection> {
    let mut rec = Recorder::new(opts.url.to_string(), opts.addr);
    let attempt = tokio::time::timeout(opts.handshake_timeout, connect_inner(opts, &mut rec)).await;
    let failure = match attempt {
        Ok(Ok(conn)) => return Ok(conn),
        Ok(Err(failure)) => failure,
        Err(_elapsed) => DialFailure::new(
            ConnectStage::Timeout,
            format!("no usable connection within {:?}", opts.handshake_timeout),
        ),
    };
    let error = failure.source.to_string();
    rec.push(EventKind::Error { message: error.clone() });
    let status = failure.status;
    rec.end(|at_ms| End::HandshakeFailed { at_ms, status, error });
    tracing::debug!(url = %opts.url, stage = ?failure.stage, ?status, "probe connect failed");
    Err(ProbeError::Connect {
        url: opts.url.to_string(),
        stage: failure.stage,
        status,
        timeline: Box::new(rec.timeline),
        source: failure.source,
    })
}

async fn connect_inner(opts: &ProbeOptions, rec: &mut Recorder) -> std::result::Result<Connection, DialFailure> {
    let stream = dial_recorded(opts, Some(rec)).await?;
    let request = upgrade_request(opts)?;
    let (ws, response) = match tokio_tungstenite::client_async_with_config(request, stream, Some(opts.ws_config)).await
    {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let handshake = record_response(rec, &response, response.body().as_deref());
            store_cookies(opts, &handshake);
            rec.timeline.handshake = Some(handshake);
            return Err(DialFailure {
                stage: ConnectStage::Handshake,
                status: Some(status),
                source: format!("upgrade answered {status} instead of 101").into(),
            });
        }
        Err(e) => return Err(DialFailure::new(ConnectStage::Handshake, e)),
    };
    let handshake = record_response(rec, &response, None);
    store_cookies(opts, &handshake);
    rec.timeline.handshake = Some(handshake);
    let mut conn = Connection::new(ws, rec.clone());
    if opts.expect_hello
        && let Err(failure) = conn.read_hello().await
    {
        *rec = conn.rec.clone();
        return Err(failure);
    }
    Ok(conn)
}

fn record_response<B>(rec: &Recorder, response: &http::Response<B>, body: Option<&[u8]>) -> Handshake {
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let set_cookies: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect();
    let subprotocol = headers
        .iter()
        .find(|(k, _)| k == "sec-websocket-protocol")
        .map(|(_, v)| v.clone());
    Handshake {
        status: response.status().as_u16(),
        at_ms: rec.now_ms(),
        headers,
        set_cookies,
        subprotocol,
        body: body.map(|b| String::from_utf8_lossy(&b[..b.len().min(1024)]).into_owned()),
    }
}

impl Connection {
    /// Reads the first frame; a hello is recorded, anything else is kept for `recv`.
    pub(crate) async fn read_hello(&mut self) -> std::result::Result<(), DialFailure> {
        use futures_util::StreamExt;
        let first = self.ws.next().await;
        match first {
            Some(Ok(Message::Text(text))) => {
                self.rec
                    .message(Direction::Received, MessageKind::Text, text.len(), Some(text.as_str()));
                match Hello::parse(text.as_str()) {
                    Some(hello) => self.rec.timeline.hello = Some(hello),
                    None => self.push_pending(Message::Text(text)),
                }
                Ok(())
            }
            Some(Ok(other)) => {
                self.record_incoming(&other);
                self.push_pending(other);
                Ok(())
            }
            Some(Err(e)) => Err(DialFailure::new(ConnectStage::Hello, e)),
            None => Err(DialFailure::new(
                ConnectStage::Hello,
                "connection ended before the hello frame",
            )),
        }
    }
}

/// Cookies set on the upgrade response go into the options' (shared) jar.
fn store_cookies(opts: &ProbeOptions, handshake: &Handshake) {
    for cookie in &handshake.set_cookies {
        opts.cookies.store_set_cookie(cookie);
    }
}

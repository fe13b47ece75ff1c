//! Shared helpers for ws-echo's integration tests: start a server, talk WebSocket and raw HTTP, wait with deadlines.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_echo::{Config, Running};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// A WebSocket client connection.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A test configuration: loopback, port 0, short drain/grace/header timeouts.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pod_name: Some("pod-test".into()),
        drain_delay: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

/// Installs a test log subscriber once (RUST_LOG controls it).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts an in-process server.
pub async fn start(config: Config) -> Running {
    init_logs();
    ws_echo::spawn(config).await.expect("starting ws-echo in-process")
}

/// Runs `fut` with the [`WAIT`] deadline; the error names what was awaited.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(WAIT, fut)
        .await
        .with_context(|| format!("timed out after {WAIT:?} waiting for {what}"))
}

/// Opens a WebSocket to `path` (e.g. `/ws?mode=reverse`).
pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Client> {
    let url = format!("ws://{addr}{path}");
    let (ws, _) = within("the websocket handshake", tokio_tungstenite::connect_async(&url))
        .await?
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// Opens a WebSocket and reads the hello frame.
pub async fn connect_hello(addr: SocketAddr, path: &str) -> anyhow::Result<(Client, Value)> {
    let mut ws = connect(addr, path).await?;
    let hello = next_json(&mut ws).await?;
    anyhow::ensure!(hello["type"] == "hello", "first message is not a hello: {hello}");
    Ok((ws, hello))
}

/// The next data or close message, skipping pings and pongs.
pub async fn next_message(ws: &mut Client) -> anyhow::Result<Message> {
    loop {
        let message = within("a websocket message", ws.next())
            .await?
            .context("the connection ended without a close frame")?
            .context("reading a websocket message")?;
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return Ok(message);
        }
    }
}

/// The next text message, parsed as JSON.
pub async fn next_json(ws: &mut Client) -> anyhow::Result<Value> {
    match next_message(ws).await? {
        Message::Text(text) => serde_json::from_str(&text).with_context(|| format!("parsing {text:?} as json")),
        other => bail!("expected a json text message, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns its code; data messages before it are returned too.
pub async fn close_code(ws: &mut Client) -> anyhow::Result<(u16, Vec<Message>)> {
    let mut before = Vec::new();
    loop {
        match next_message(ws).await? {
            Message::Close(Some(frame)) => return Ok((frame.code.into(), before)),
            Message::Close(None) => bail!("close frame without a code"),
            other => before.push(other),
        }
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?} is not json: {e}", self.body))
    }
}

/// Sends `method path` with extra header lines and `Connection: close`; reads the whole response.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> anyhow::Result<HttpResponse> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    if method == "POST" {
        raw.push_str("Content-Length: 0\r\n");
    }
    raw.push_str("\r\n");
    raw_request(addr, raw.as_bytes()).await
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    request(addr, "GET", path, &[]).await
}

/// Writes `raw` bytes and parses the response (read until the server closes).
pub async fn raw_request(addr: SocketAddr, raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let mut stream = within("tcp connect", TcpStream::connect(addr))
        .await?
        .context("tcp connect")?;
    stream.write_all(raw).await?;
    let mut buf = Vec::new();
    within("the http response", stream.read_to_end(&mut buf))
        .await?
        .context("reading the http response")?;
    parse_response(&buf)
}

/// Parses a complete HTTP/1.1 response (Content-Length bodies).
pub fn parse_response(buf: &[u8]) -> anyhow::Result<HttpResponse> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header end in {text:?}"))?;
    let mut lines = head.lines();
    let status_line = lines.next().context("empty response")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The value of one sample line (`name{labels} value`) in the metrics exposition.
pub async fn metric(addr: SocketAddr, sample: &str) -> anyhow::Result<f64> {
    let response = get(addr, "/metrics").await?;
    anyhow::ensure!(response.status == 200, "GET /metrics answered {}", response.status);
    response
        .body
        .lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("no sample {sample} in:\n{}", response.body))?
        .trim()
        .parse()
        .with_context(|| format!("parsing the value of {sample}"))
}

/// Polls the metric until `ok(value)` holds, within [`WAIT`].
pub async fn wait_metric(addr: SocketAddr, sample: &str, ok: impl Fn(f64) -> bool) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = metric(addr, sample).await?;
        if ok(value) {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("metric {sample} stayed at {value} for {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw TCP connection upgraded to WebSocket by hand (for frames a real client refuses to send).
pub async fn raw_upgrade(addr: SocketAddr, path: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = within("the 101 response", stream.read_u8())
            .await?
            .context("reading the 101 response")?;
        head.push(byte);
    }
    let response = parse_response(&head)?;
    anyhow::ensure!(response.status == 101, "upgrade answered {}", response.status);
    Ok(stream)
}

/// A masked client frame.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = frame_header(fin, opcode, payload.len(), true);
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// An unmasked frame (what only a server may send).
pub fn unmasked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = frame_header(fin, opcode, payload.len(), false);
    frame.extend_from_slice(payload);
    frame
}

fn frame_header(fin: bool, opcode: u8, len: usize, masked: bool) -> Vec<u8> {
    let mut header = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = u8::from(masked) << 7;
    match len {
        0..=125 => header.push(mask_bit | len as u8),
        126..=0xffff => {
            header.push(mask_bit | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(mask_bit | 127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header
}

/// Reads one (unmasked, server) frame: opcode and payload.
pub async fn read_frame(stream: &mut TcpStream) -> anyhow::Result<(u8, Vec<u8>)> {
    within("a server frame", async {
        let b0 = stream.read_u8().await?;
        let b1 = stream.read_u8().await?;
        let len = match b1 & 0x7f {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len)?];
        stream.read_exact(&mut payload).await?;
        Ok::<_, anyhow::Error>((b0 & 0x0f, payload))
    })
    .await?
}

/// Reads server frames until a close frame; returns its code.
pub async fn read_close_code(stream: &mut TcpStream) -> anyhow::Result<u16> {
    loop {
        let (opcode, payload) = read_frame(stream).await?;
        if opcode == 0x8 {
            anyhow::ensure!(payload.len() >= 2, "close frame without a code");
            return Ok(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// A running `ws-echo` process; killed on drop.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    /// Log lines after the "listening" line.
    lines: mpsc::UnboundedReceiver<String>,
}

impl Binary {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`) and waits for its "listening" line.
    pub async fn start(args: &[&str]) -> anyhow::Result<Binary> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ws-echo"))
            .args(["--listen", "127.0.0.1:0", "--pod-name", "bin-pod"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning ws-echo")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout is piped")?).lines();
        let addr = within("the \"listening\" log line", async {
            while let Some(line) = stdout.next_line().await? {
                if let Some(addr) = listening_addr(&line) {
                    return Ok(addr);
                }
            }
            anyhow::bail!("ws-echo exited before logging its address")
        })
        .await??;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let _ = tx.send(line);
            }
        });
        Ok(Binary { child, addr, lines })
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id().expect("child is running")).unwrap());
        kill(pid, signal).expect("sending a signal to ws-echo");
    }

    /// Every log line, once the process has exited and closed stdout.
    pub async fn lines_until_exit(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        let _ = within("ws-echo's stdout to close", async {
            while let Some(line) = self.lines.recv().await {
                all.push(line);
            }
        })
        .await;
        all
    }

    /// All log lines captured so far.
    pub fn drain_lines(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.lines.try_recv().ok()).collect()
    }
}

/// The address in the "listening" event, in either log format.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if let Ok(event) = serde_json::from_str::<Value>(line) {
        return (event["message"] == "listening")
            .then(|| event["addr"].as_str()?.parse().ok())
            .flatten();
    }
    if !line.contains(" listening ") {
        return None;
    }
    line.split_whitespace()
        .find_map(|token| token.strip_prefix("addr=")?.parse().ok())
}

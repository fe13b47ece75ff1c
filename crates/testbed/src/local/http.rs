//! A minimal HTTP/1.1 client for the harness's own checks: one request per
//! connection, optional source address, PROXY v1 header and TLS.
//!
//! The harness uses it to see which pod answers through the data plane
//! (`POST /session` names the pod) and to poll readiness; tests use the probe.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Where and how to send a request.
#[derive(Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub proxy_protocol: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

impl Target {
    /// A pod, dialled directly.
    pub fn direct(addr: SocketAddr) -> Self {
        Target {
            addr,
            host: addr.to_string(),
            tls: None,
            proxy_protocol: false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The `"pod"` field of a ws-echo JSON answer.
    pub fn pod(&self) -> Option<String> {
        let rest = &self.body[self.body.find("\"pod\"")? + 5..];
        let rest = &rest[rest.find('"')? + 1..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

/// Sends one request and reads the whole answer (`Connection: close`).
pub(crate) async fn request(
    target: &Target,
    source: Option<IpAddr>,
    method: &str,
    path: &str,
    timeout: Duration,
) -> io::Result<Response> {
    tokio::time::timeout(timeout, request_inner(target, source, method, path))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{method} {path} timed out")))?
}

async fn request_inner(target: &Target, source: Option<IpAddr>, method: &str, path: &str) -> io::Result<Response> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream: TcpStream = socket.connect(target.addr).await?;
    if target.proxy_protocol {
        let local = stream.local_addr()?;
        let family = if local.is_ipv4() { "TCP4" } else { "TCP6" };
        let line = format!(
            "PROXY {family} {} {} {} {}\r\n",
            local.ip(),
            target.addr.ip(),
            local.port(),
            target.addr.port()
        );
        stream.write_all(line.as_bytes()).await?;
    }
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: testbed-harness\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.host
    );
    match &target.tls {
        None => exchange(stream, &request).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, stream)
                .await?;
            exchange(tls, &request).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> io::Result<Response> {
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A peer that closes without TLS close_notify still sent its answer.
            Err(e) if !raw.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP response: {:?}", text.chars().take(80).collect::<String>()),
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_is_read_from_a_session_answer() {
        let r = Response {
            status: 200,
            body: r#"{"sid":"abc","pod":"ws-echo-x-1"}"#.to_owned(),
        };
        assert_eq!(r.pod().as_deref(), Some("ws-echo-x-1"));
        let r = Response {
            status: 200,
            body: "2a\r\n{\"sid\": \"abc\", \"pod\": \"p-2\"}\r\n0\r\n\r\n".to_owned(),
        };
        assert_eq!(r.pod().as_deref(), Some("p-2"));
    }
}

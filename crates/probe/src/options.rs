//! Probe options: where to dial, what to send in the upgrade request, and how.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::cookies::CookieJar;
use super::{ProbeError, Result};
use model::Endpoint;

/// Everything a probe connection needs. Cheap to clone; clones share the cookie jar.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The address actually dialed (the ingress), whatever the URL's host says.
    pub addr: SocketAddr,
    /// `ws://host:port/path?query` or `wss://…`; Host header and SNI come from it.
    pub url: Uri,
    pub headers: Vec<(String, String)>,
    pub cookies: CookieJar,
    pub subprotocols: Vec<String>,
    /// Local address to bind before connecting (e.g. 127.0.2.N for distinct clients).
    pub source_ip: Option<IpAddr>,
    /// Send a PROXY v1 header claiming this client address before anything else.
    pub proxy_client: Option<SocketAddr>,
    /// TLS client configuration (trusting the testbed CA); required for wss/https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The TLS server name when it is not the URL's host: a request for one host sent over a
    /// connection whose certificate is another's (a marker host under the deployment's
    /// certificate).
    pub sni: Option<String>,
    /// Bound on dial + TLS + upgrade (+ hello when expected).
    pub handshake_timeout: Duration,
    /// Wait for ws-echo's hello frame as part of connecting.
    pub expect_hello: bool,
    pub ws_config: WebSocketConfig,
}

impl ProbeOptions {
    /// Dial `addr` with the upgrade request for `url`.
    pub fn new(addr: SocketAddr, url: &str) -> Result<Self> {
        let parsed: Uri = url.parse().map_err(|e: http::uri::InvalidUri| ProbeError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if parsed.host().is_none() {
            return Err(ProbeError::BadUrl {
                url: url.to_owned(),
                reason: "no host".into(),
            });
        }
        match parsed.scheme_str() {
            Some("ws" | "wss" | "http" | "https") => {}
            other => {
                return Err(ProbeError::BadUrl {
                    url: url.to_owned(),
                    reason: format!("scheme {other:?} is not ws, wss, http or https"),
                });
            }
        }
        Ok(ProbeOptions {
            addr,
            url: parsed,
            headers: Vec::new(),
            cookies: CookieJar::new(),
            subprotocols: Vec::new(),
            source_ip: None,
            proxy_client: None,
            tls: None,
            sni: None,
            handshake_timeout: Duration::from_secs(5),
            expect_hello: true,
            ws_config: WebSocketConfig::default(),
        })
    }

    /// Options for an environment's endpoint and a path such as `/ws?mode=reverse`.
    pub fn for_endpoint(endpoint: &Endpoint, path_and_query: &str) -> Result<Self> {
        Self::new(endpoint.addr, &endpoint.ws_url(path_and_query))
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Use (share) this jar instead of the fresh one.
    pub fn cookie_jar(mut self, jar: CookieJar) -> Self {
        self.cookies = jar;
        self
    }

    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    pub fn proxy_protocol(mut self, client: SocketAddr) -> Self {
        self.proxy_client = Some(client);
        self
    }

    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    pub fn expect_hello(mut self, expect: bool) -> Self {
        self.expect_hello = expect;
        self
    }

    pub fn ws_config(mut self, config: WebSocketConfig) -> Self {
        self.ws_config = config;
        self
    }

    /// Same options with another path and query (`/ws?hello=false`).
    pub fn with_path(&self, path_and_query: &str) -> Result<Self> {
        let mut parts = self.url.clone().into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|e: http::uri::InvalidUri| ProbeError::BadUrl {
                    url: path_and_query.to_owned(),
                    reason: e.to_string(),
                })?,
        );
        let url = Uri::from_parts(parts).map_err(|e| ProbeError::BadUrl {
            url: path_and_query.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(ProbeOptions { url, ..self.clone() })
    }

    /// The URL's host (Host header without the port, and the TLS server name).
    pub fn host(&self) -> &str {
        self.url.host().unwrap_or_default()
    }

    /// `host[:port]` as the Host header carries it.
    pub fn authority(&self) -> String {
        self.url
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| self.host().to_owned())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.url.scheme_str(), Some("wss" | "https"))
    }

    pub fn path_and_query(&self) -> &str {
        self.url.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    }
}

//! Which environment runs the suite, and where a test dials the ingress.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Which environment runs the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvKind {
    /// The data-plane binaries, configured as each controller configures them, in front of
    /// ws-echo processes.
    Local,
    /// The real controllers in a kind cluster.
    Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment {given:?}: expected local or kind")]
pub struct UnknownEnv {
    pub given: String,
}

impl EnvKind {
    pub const ALL: [EnvKind; 2] = [EnvKind::Local, EnvKind::Kind];

    /// `TESTBED_ENV` (default `local`), read once per process.
    pub fn current() -> Result<Self, UnknownEnv> {
        static CURRENT: OnceLock<Result<EnvKind, UnknownEnv>> = OnceLock::new();
        CURRENT
            .get_or_init(|| match std::env::var("TESTBED_ENV") {
                Ok(v) if !v.is_empty() => v.parse(),
                _ => Ok(EnvKind::Local),
            })
            .clone()
    }

    pub fn name(self) -> &'static str {
        match self {
            EnvKind::Local => "local",
            EnvKind::Kind => "kind",
        }
    }
}

impl fmt::Display for EnvKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EnvKind {
    type Err = UnknownEnv;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EnvKind::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| UnknownEnv { given: s.to_owned() })
    }
}

/// Where a test dials the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Address the ingress listens on (always loopback here).
    pub addr: SocketAddr,
    /// Host header / SNI name the Ingress rule matches.
    pub host: String,
    /// TLS is terminated at the ingress.
    pub tls: bool,
}

impl Endpoint {
    /// `ws://host:port/path` (or `wss://`); dial [`Endpoint::addr`] with this URL.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}:{}{}", self.host, self.addr.port(), path_and_query)
    }

    pub fn http_url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.addr.port(), path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_round_trip_and_unknown_ones_are_named() {
        for env in EnvKind::ALL {
            assert_eq!(env.name().parse::<EnvKind>().unwrap(), env);
        }
        assert_eq!("minikube".parse::<EnvKind>().unwrap_err().given, "minikube");
    }

    #[test]
    fn endpoint_urls_carry_the_ingress_host_and_port() {
        let e = Endpoint {
            addr: "127.0.0.1:18080".parse().unwrap(),
            host: "echo.testbed.local".into(),
            tls: true,
        };
        assert_eq!(e.ws_url("/ws"), "wss://echo.testbed.local:18080/ws");
        assert_eq!(e.http_url("/healthz"), "https://echo.testbed.local:18080/healthz");
    }
}

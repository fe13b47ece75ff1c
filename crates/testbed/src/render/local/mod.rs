//! What every controller's local configuration renderer shares: the context of a local run.
//!
//! The renderers themselves live in each controller's module (`crate::controllers::<name>::config`).
//! Every renderer is a pure function of an [`IngressSpec`] and a
//! [`LocalContext`] (where to listen, where the runtime files live, which pods
//! exist, TLS files, unrelated routes). It first asks
//! `model::capability::check`, so a knob the controller cannot express is
//! an [`Unsupported`] answer, never a silent no-op.
//!
//! Endpoint changes never need a re-render: nginx's backend store takes them
//! as ingress-nginx's Lua side does (a POST), HAProxy's server slots are driven over
//! the runtime API, and Traefik's dynamic file is rewritten (it applies it
//! without a reload). A re-render plus reload is only what a configuration
//! change (e.g. a new route) does, as with the real controllers.

use std::net::SocketAddr;
use std::path::PathBuf;

use model::Unsupported;

pub type Result<T, E = Unsupported> = std::result::Result<T, E>;

/// The Kubernetes names the renderers use, as the controllers derive them.
pub const NAMESPACE: &str = "default";
pub const SERVICE: &str = "ws-echo";
pub const SERVICE_PORT: u16 = 80;

/// Everything about the local run a renderer needs besides the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContext {
    /// The data plane's listener.
    pub listen: SocketAddr,
    /// Directory for the pid file, sockets, temp files and logs.
    pub runtime_dir: PathBuf,
    pub backends: Backends,
    /// Present when the spec asks for TLS.
    pub tls: Option<TlsPaths>,
    /// Unrelated Ingress rules (other hosts) routed to the same Service: what
    /// `apply_unrelated_change` adds (a new Ingress for the same Service).
    pub extra_routes: Vec<ExtraRoute>,
}

/// The pods behind the Service and how the data plane learns about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// Ready pods now (HAProxy's initial slots, Traefik's servers, what nginx's store is given).
    pub pods: Vec<SocketAddr>,
    /// nginx: the internal listener of its backend store (`/configuration/backends`), so
    /// endpoint changes need no reload.
    pub store: Option<SocketAddr>,
}

impl Backends {
    pub fn new(pods: Vec<SocketAddr>) -> Self {
        Backends { pods, store: None }
    }
}

/// TLS files written by [`probe::tls::TestCa::write_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Certificate chain (server then CA).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Chain and key in one file (HAProxy `crt`).
    pub bundle: PathBuf,
}

impl From<&probe::tls::TlsFiles> for TlsPaths {
    fn from(files: &probe::tls::TlsFiles) -> Self {
        TlsPaths {
            cert: files.server_cert.clone(),
            key: files.server_key.clone(),
            bundle: files.server_bundle.clone(),
        }
    }
}

/// Another Ingress rule, unrelated to the spec's: a host and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraRoute {
    pub host: String,
    pub path: String,
    /// Its own certificate, served for its host on the same listener (another Ingress's TLS
    /// Secret; Envoy Gateway: another HTTPS listener's certificateRef). `None`: plain, or the
    /// listener's certificate when the spec has TLS.
    pub tls: Option<TlsPaths>,
}

pub(crate) use crate::render::duration_value;

#[cfg(test)]
pub(crate) mod test_support {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use super::*;

    pub fn context() -> LocalContext {
        let pods: Vec<SocketAddr> = (1..=3).map(|n| SocketAddr::from(([127, 0, 1, n], 18080))).collect();
        LocalContext {
            listen: SocketAddr::from(([127, 0, 0, 1], 18000)),
            runtime_dir: PathBuf::from("/tmp/testbed-run"),
            backends: Backends {
                pods,
                store: Some(SocketAddr::from(([127, 0, 0, 1], 18053))),
            },
            tls: None,
            extra_routes: Vec::new(),
        }
    }

    pub fn with_tls(mut ctx: LocalContext) -> LocalContext {
        ctx.tls = Some(TlsPaths {
            cert: PathBuf::from("/tmp/testbed-run/server.crt"),
            key: PathBuf::from("/tmp/testbed-run/server.key"),
            bundle: PathBuf::from("/tmp/testbed-run/server.pem"),
        });
        ctx
    }

    /// Asserts that `text` contains every one of `expected`, showing the whole config when not.
    #[track_caller]
    pub fn check(text: &str, expected: &[&str]) {
        for want in expected {
            assert!(text.contains(want), "expected {want:?} in the rendered config:\n{text}");
        }
    }

    #[track_caller]
    pub fn check_absent(text: &str, unwanted: &[&str]) {
        for no in unwanted {
            assert!(
                !text.contains(no),
                "did not expect {no:?} in the rendered config:\n{text}"
            );
        }
    }
}

//! The testbed CA and server certificate, generated at run time.
//!
//! Local proxies terminate TLS with the server certificate; in kind it goes
//! into a Secret; the probe trusts only the CA. Private keys are written with
//! mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub type Result<T, E = TlsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the client TLS configuration")]
    ClientConfig(#[source] rustls::Error),
    #[error("building the server TLS configuration")]
    ServerConfig(#[source] rustls::Error),
    #[error("reading PEM for the {what}: {reason}")]
    Pem { what: &'static str, reason: String },
}

/// A CA and one server certificate it signed, all PEM.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    ca_der: Vec<u8>,
    /// What [`TestCa::issue`] signs with: the CA's parameters and key.
    ca_params: CertificateParams,
    ca_key_pem: String,
}

/// Where [`TestCa::write_to`] put the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    /// Server certificate followed by the CA (a full chain).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Certificate and key in one file, as HAProxy's `crt` wants it.
    pub server_bundle: PathBuf,
}

impl TestCa {
    /// A fresh CA and a server certificate for `hosts` (DNS names or IP literals).
    pub fn generate(hosts: &[&str]) -> Result<Self> {
        let gen_err = |what| move |source| TlsError::Generate { what, source };

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA parameters"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ws-ingress-testbed CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params.clone(), ca_key).map_err(gen_err("CA certificate"))?;
        let (server_cert_pem, server_key_pem) = server_certificate(hosts, &ca)?;
        Ok(TestCa {
            ca_cert_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            ca_der: ca.der().to_vec(),
            ca_params,
            ca_key_pem,
        })
    }

    /// The same CA with another server certificate, for `hosts` (a second host's own
    /// certificate, as another Ingress's TLS Secret holds it).
    pub fn issue(&self, hosts: &[&str]) -> Result<Self> {
        let key = KeyPair::from_pem(&self.ca_key_pem).map_err(|source| TlsError::Generate {
            what: "CA key (reading it back)",
            source,
        })?;
        let issuer = Issuer::new(self.ca_params.clone(), key);
        let (server_cert_pem, server_key_pem) = server_certificate(hosts, &issuer)?;
        Ok(TestCa {
            server_cert_pem,
            server_key_pem,
            ..self.clone()
        })
    }

    /// Writes the PEM files into `dir` (keys 0600) and returns their paths.
    pub fn write_to(&self, dir: &Path) -> Result<TlsFiles> {
        self.write_named(dir, "server")
    }

    /// [`TestCa::write_to`] with the server files named `<stem>.crt`, `<stem>.key` and
    /// `<stem>.pem`, so that several certificates share a directory.
    pub fn write_named(&self, dir: &Path, stem: &str) -> Result<TlsFiles> {
        let files = TlsFiles {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join(format!("{stem}.crt")),
            server_key: dir.join(format!("{stem}.key")),
            server_bundle: dir.join(format!("{stem}.pem")),
        };
        let chain = format!("{}{}", self.server_cert_pem, self.ca_cert_pem);
        write_file(&files.ca_cert, &self.ca_cert_pem, 0o644)?;
        write_file(&files.server_cert, &chain, 0o644)?;
        write_file(&files.server_key, &self.server_key_pem, 0o600)?;
        write_file(&files.server_bundle, &format!("{chain}{}", self.server_key_pem), 0o600)?;
        Ok(files)
    }

    /// A rustls client configuration that trusts only this CA.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
            .map_err(TlsError::ClientConfig)?;
        client_config_trusting(roots)
    }
}

/// A rustls client configuration trusting the CA certificates in `pem` (e.g. a
/// `ca.crt` written by [`TestCa::write_to`]).
pub fn client_config_from_pem(pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Pem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(TlsError::ClientConfig)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            what: "CA certificate",
            reason: "no certificate found".into(),
        });
    }
    client_config_trusting(roots)
}

fn client_config_trusting(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ClientConfig)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl TestCa {
    /// A rustls server configuration presenting this CA's server certificate (for
    /// in-process TLS servers in tests).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: rustls::pki_types::pem::Error| TlsError::Pem {
            what: "server certificate and key",
            reason: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(format!("{}{}", self.server_cert_pem, self.ca_cert_pem).as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(bad)?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(bad)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::ServerConfig)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(TlsError::ServerConfig)?;
        Ok(Arc::new(config))
    }
}

/// A server certificate for `hosts` signed by `issuer`, and its key (PEM).
fn server_certificate(hosts: &[&str], issuer: &Issuer<'_, KeyPair>) -> Result<(String, String)> {
    let gen_err = |what| move |source| TlsError::Generate { what, source };
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(gen_err("server certificate parameters"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts.first().copied().unwrap_or("testbed"));
    let key = KeyPair::generate().map_err(gen_err("server key"))?;
    let cert = params.signed_by(&key, issuer).map_err(gen_err("server certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Runs a TLS handshake between `client` and `server` in memory, no socket: whether `server`
/// presents a certificate `client` accepts for `host` (tests of which certificate a
/// configuration serves).
pub fn handshake_in_memory(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    host: &str,
) -> std::result::Result<(), rustls::Error> {
    let general = |e: &dyn std::fmt::Display| rustls::Error::General(e.to_string());
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| general(&e))?;
    let mut c = rustls::ClientConnection::new(client, name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    // A TLS 1.3 handshake takes two flights each way; ten rounds is far more than any needs.
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).map_err(|e| general(&e))?;
        s.read_tls(&mut buf.as_slice()).map_err(|e| general(&e))?;
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).map_err(|e| general(&e))?;
        c.read_tls(&mut buf.as_slice()).map_err(|e| general(&e))?;
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General(
        "the handshake did not finish in ten rounds".into(),
    ))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let _ = fs::remove_file(path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(contents.as_bytes())
    };
    write().map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn keys_are_written_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&["echo.testbed.local", "127.0.0.1"]).unwrap();
        let files = ca.write_to(dir.path()).unwrap();
        for key in [&files.server_key, &files.server_bundle] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        assert!(
            fs::read_to_string(&files.server_cert)
                .unwrap()
                .matches("BEGIN CERTIFICATE")
                .count()
                == 2
        );
        ca.client_config().unwrap();
    }

    #[test]
    fn an_issued_certificate_is_trusted_for_its_own_host_only() {
        let ca = TestCa::generate(&["echo.testbed.local"]).unwrap();
        let other = ca.issue(&["other.testbed.local"]).unwrap();
        assert_eq!(other.ca_cert_pem, ca.ca_cert_pem);
        assert_ne!(other.server_cert_pem, ca.server_cert_pem);
        let client = ca.client_config().unwrap();
        handshake_in_memory(client.clone(), other.server_config().unwrap(), "other.testbed.local").unwrap();
        handshake_in_memory(client.clone(), ca.server_config().unwrap(), "echo.testbed.local").unwrap();
        let err = handshake_in_memory(client, other.server_config().unwrap(), "echo.testbed.local").unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn named_files_share_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&["echo.testbed.local"]).unwrap();
        let first = ca.write_to(dir.path()).unwrap();
        let second = ca
            .issue(&["other.testbed.local"])
            .unwrap()
            .write_named(dir.path(), "other")
            .unwrap();
        assert_eq!(first.ca_cert, second.ca_cert);
        assert_ne!(first.server_bundle, second.server_bundle);
        assert!(first.server_bundle.exists() && second.server_bundle.exists());
    }
}

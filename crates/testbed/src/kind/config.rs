//! The kind cluster configuration (`clusters/kind-*.yaml`), parsed into a small typed struct.
//!
//! Only the fields the testbed relies on are modelled: the node labelled `ingress-ready=true`
//! and its `extraPortMappings`, which is how the host reaches each controller.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::render::kind::install;
use model::Controller;

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading kind cluster config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing kind cluster config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("kind cluster config {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterConfig {
    pub kind: String,
    pub api_version: String,
    #[serde(default)]
    pub name: Option<String>,
    pub nodes: Vec<KindNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindNode {
    pub role: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    #[serde(default)]
    pub listen_address: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
}

impl KindClusterConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: KindClusterConfig = serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate().map_err(|problem| ConfigError::Invalid {
            path: path.to_owned(),
            problem,
        })?;
        Ok(config)
    }

    /// What the testbed needs from a cluster config; the problem as text otherwise.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.kind != "Cluster" || self.api_version != "kind.x-k8s.io/v1alpha4" {
            return Err(format!(
                "expected kind.x-k8s.io/v1alpha4 Cluster, got {} {}",
                self.api_version, self.kind
            ));
        }
        let node = self
            .ingress_node()
            .ok_or("no control-plane node labelled ingress-ready=true")?;
        match &node.image {
            Some(image) if image.starts_with("kindest/node:v") && image.contains("@sha256:") => {}
            other => {
                return Err(format!(
                    "node image must be a kindest/node tag pinned by digest, got {other:?}"
                ));
            }
        }
        let mut host_ports: Vec<u16> = node.extra_port_mappings.iter().map(|m| m.host_port).collect();
        host_ports.sort_unstable();
        host_ports.dedup();
        if host_ports.len() != node.extra_port_mappings.len() {
            return Err("extraPortMappings reuse a host port".to_owned());
        }
        for m in &node.extra_port_mappings {
            if m.listen_address.as_deref() != Some("127.0.0.1") {
                return Err(format!("host port {} must listen on 127.0.0.1 only", m.host_port));
            }
        }
        for c in Controller::ALL {
            self.host_addr(c, false)?;
            self.host_addr(c, true)?;
        }
        Ok(())
    }

    pub fn ingress_node(&self) -> Option<&KindNode> {
        self.nodes
            .iter()
            .find(|n| n.role == "control-plane" && n.labels.get("ingress-ready").map(String::as_str) == Some("true"))
    }

    /// The Kubernetes version in the node image tag (`kindest/node:v1.33.12@…` → `1.33`).
    pub fn k8s_minor(&self) -> Option<String> {
        let image = self.ingress_node()?.image.as_deref()?;
        let tag = image.strip_prefix("kindest/node:v")?.split('@').next()?;
        let mut parts = tag.split('.');
        Some(format!("{}.{}", parts.next()?, parts.next()?))
    }

    /// Where the host dials `controller` (plain HTTP or TLS): the mapping whose container port is
    /// the controller's hostPort on the node.
    pub fn host_addr(&self, controller: Controller, tls: bool) -> std::result::Result<SocketAddr, String> {
        let inst = install(controller);
        let node_port = if tls { inst.https_port } else { inst.http_port };
        let mapping = self
            .ingress_node()
            .into_iter()
            .flat_map(|n| n.extra_port_mappings.iter())
            .find(|m| m.container_port == node_port)
            .ok_or_else(|| format!("no extraPortMapping for {controller} node port {node_port}"))?;
        let ip: IpAddr = match mapping.listen_address.as_deref() {
            Some(addr) => addr.parse().map_err(|e| format!("listenAddress {addr:?}: {e}"))?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        Ok(SocketAddr::new(ip, mapping.host_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    image: kindest/node:v1.33.12@sha256:3f5c
    labels: {ingress-ready: "true"}
    extraPortMappings:
      - {containerPort: 18080, hostPort: 18080, listenAddress: 127.0.0.1}
      - {containerPort: 18443, hostPort: 18443, listenAddress: 127.0.0.1}
      - {containerPort: 28080, hostPort: 28080, listenAddress: 127.0.0.1}
      - {containerPort: 28443, hostPort: 28443, listenAddress: 127.0.0.1}
      - {containerPort: 38080, hostPort: 38080, listenAddress: 127.0.0.1}
      - {containerPort: 38443, hostPort: 38443, listenAddress: 127.0.0.1}
      - {containerPort: 48080, hostPort: 48080, listenAddress: 127.0.0.1}
      - {containerPort: 48443, hostPort: 48443, listenAddress: 127.0.0.1}
"#;

    #[test]
    fn host_addr_follows_the_port_mapping() {
        let config: KindClusterConfig = serde_yaml_ng::from_str(SAMPLE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.k8s_minor().as_deref(), Some("1.33"));
        assert_eq!(
            config.host_addr(Controller::Traefik, true).unwrap(),
            "127.0.0.1:28443".parse().unwrap()
        );
    }

    #[test]
    fn missing_mapping_or_public_listen_is_rejected() {
        let no_haproxy = SAMPLE.replace("38443, hostPort: 38443", "38444, hostPort: 38444");
        let config: KindClusterConfig = serde_yaml_ng::from_str(&no_haproxy).unwrap();
        assert!(config.validate().unwrap_err().contains("haproxy"));
        let public = SAMPLE.replacen("listenAddress: 127.0.0.1", "listenAddress: 0.0.0.0", 1);
        let config: KindClusterConfig = serde_yaml_ng::from_str(&public).unwrap();
        assert!(config.validate().unwrap_err().contains("127.0.0.1"));
    }
}

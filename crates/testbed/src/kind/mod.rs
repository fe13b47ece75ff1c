//! The kind environment: real controllers in a kind cluster, driven through kube-rs.

use async_trait::async_trait;

use crate::env::{Deployment, EnvError, EnvKind, Environment, Result};
use crate::spec::{Controller, IngressSpec};

#[derive(Debug)]
pub struct KindEnv {}

impl KindEnv {
    pub async fn connect() -> Result<Self> {
        Ok(KindEnv {})
    }
}

#[async_trait]
impl Environment for KindEnv {
    fn kind(&self) -> EnvKind {
        EnvKind::Kind
    }

    async fn deploy(&self, controller: Controller, spec: &IngressSpec) -> Result<Box<dyn Deployment>> {
        crate::render::check(controller, spec)?;
        Err(EnvError::failed(
            "deploying to kind",
            "the kind environment is not built yet",
        ))
    }
}

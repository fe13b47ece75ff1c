//! The local environment: real nginx, HAProxy and Traefik binaries in front of ws-echo processes acting as pods.

use async_trait::async_trait;

use crate::env::{Deployment, EnvError, EnvKind, Environment, Result};
use crate::spec::{Controller, IngressSpec};

#[derive(Debug)]
pub struct LocalEnv {}

impl LocalEnv {
    pub fn new() -> Result<Self> {
        Ok(LocalEnv {})
    }
}

#[async_trait]
impl Environment for LocalEnv {
    fn kind(&self) -> EnvKind {
        EnvKind::Local
    }

    async fn deploy(&self, controller: Controller, spec: &IngressSpec) -> Result<Box<dyn Deployment>> {
        crate::render::check_local(controller, spec)?;
        Err(EnvError::failed(
            "deploying locally",
            "the local environment is not built yet",
        ))
    }
}

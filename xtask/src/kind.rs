//! `cargo xtask up`, `down` and `status`: the kind cluster for local debugging and e2e.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Up {}

#[derive(Debug, clap::Args)]
pub struct Down {}

#[derive(Debug, clap::Args)]
pub struct Status {}

impl Up {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask up is not built yet")
    }
}

impl Down {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask down is not built yet")
    }
}

impl Status {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask status is not built yet")
    }
}

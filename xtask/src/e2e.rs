//! `cargo xtask e2e`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct E2e {}

impl E2e {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask e2e is not built yet")
    }
}

//! `cargo xtask image`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Image {}

impl Image {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask image is not built yet")
    }
}

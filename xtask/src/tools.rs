//! `cargo xtask tools`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Tools {}

impl Tools {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask tools is not built yet")
    }
}

//! `cargo xtask report`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Report {}

impl Report {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask report is not built yet")
    }
}

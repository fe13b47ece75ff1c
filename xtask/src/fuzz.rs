//! `cargo xtask fuzz`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Fuzz {}

impl Fuzz {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask fuzz is not built yet")
    }
}

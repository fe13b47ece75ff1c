//! `cargo xtask soak`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Soak {}

impl Soak {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask soak is not built yet")
    }
}

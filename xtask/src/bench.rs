//! `cargo xtask bench`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Bench {}

impl Bench {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask bench is not built yet")
    }
}

//! `cargo xtask test`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Test {}

impl Test {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask test is not built yet")
    }
}

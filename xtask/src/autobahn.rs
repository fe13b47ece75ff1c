//! `cargo xtask autobahn`.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Autobahn {}

impl Autobahn {
    pub fn run(self, _root: &Path) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask autobahn is not built yet")
    }
}

//! `cargo xtask`: the project's build and run system. main only parses and dispatches.

mod autobahn;
mod bench;
mod charts;
mod e2e;
mod flags;
mod fuzz;
mod image;
mod kind;
mod leaks;
mod lint;
mod report;
mod soak;
mod suite;
mod test;
mod tidy;
mod tools;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let flags = flags::Xtask::parse();
    let root = project_root()?;
    std::env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match flags.command {
        flags::Command::Test(cmd) => cmd.run(&root),
        flags::Command::Tools(cmd) => cmd.run(&root),
        flags::Command::Image(cmd) => cmd.run(&root),
        flags::Command::E2e(cmd) => cmd.run(&root),
        flags::Command::Report(cmd) => cmd.run(&root),
        flags::Command::Up(cmd) => cmd.run(&root),
        flags::Command::Down(cmd) => cmd.run(&root),
        flags::Command::Status(cmd) => cmd.run(&root),
        flags::Command::Bench(cmd) => cmd.run(&root),
        flags::Command::Autobahn(cmd) => cmd.run(&root),
        flags::Command::Soak(cmd) => cmd.run(&root),
        flags::Command::Fuzz(cmd) => cmd.run(&root),
        flags::Command::Charts(cmd) => cmd.run(&root),
        flags::Command::Lint(cmd) => cmd.run(&root),
    }
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> anyhow::Result<PathBuf> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}

/// Where cargo builds: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// `$CARGO`, as cargo sets it for `cargo xtask`, falling back to `cargo`.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

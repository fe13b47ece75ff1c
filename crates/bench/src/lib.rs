//! The bench binary's library: the benchmark ([`run`]: ws-echo against anchor echo servers,
//! behind each data plane, and its capacity) and the Autobahn conformance run ([`autobahn`]),
//! sharing one process launcher ([`launch`]).
//!
//! `cargo xtask bench`, `cargo xtask autobahn` and `cargo xtask test` build the `bench` binary and
//! run it, so their weight (the load generator's result types, ws-echo's configuration) stays out
//! of xtask. This is a tool's body rather than a library others build on, so it reports errors
//! with `anyhow` as binaries do. The result model ([`result`]) and its renderers ([`render`]) are
//! pure.

pub mod autobahn;
pub mod capacity;
pub mod dataplanes;
pub mod launch;
pub mod render;
pub mod result;
pub mod run;
pub mod setup;
pub mod storm;
pub mod sys;

use std::path::{Path, PathBuf};

/// The workspace this binary was built in: where `pins.toml`, `Cargo.lock`, `docs/` and
/// `target/tools/` are.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

//! The WebSocket behaviour suite: catalogue, expectations, and the harness that records results.
//!
//! The tests themselves live in `tests/behaviours.rs`; they only build
//! `model::IngressSpec`s and measure through the probe.
//! **Invariant:** nothing here names a controller-specific knob; only the
//! renderers in `testbed::render` do.

pub mod catalogue;
pub mod harness;
mod lanes;
pub mod profile;

use std::sync::OnceLock;

pub use harness::{Ctx, run};

/// Installs a test-friendly tracing subscriber once (`RUST_LOG` filters it).
pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
    });
}

//! The WebSocket behaviour suite: the behaviours as values, expectations, and the harness that records results.
//!
//! [`catalogue::CATALOGUE`] lists every [`Behaviour`]: its name, area, the [`Feature`]s it needs,
//! the `model::IngressSpec` it asks for and its test. The values and their tests live in one
//! module per area under `behaviours/`; `tests/behaviours.rs` runs the catalogue × every
//! controller through [`harness::run`], one trial named `{behaviour}::{controller}` each.
//! **Invariant:** nothing here names a controller-specific knob; only the
//! renderers in `testbed::render` do.

mod behaviours;
pub mod catalogue;
pub mod feature;
pub mod harness;
mod lanes;
pub mod profile;

use std::sync::OnceLock;

pub use catalogue::{Area, Behaviour, CATALOGUE};
pub use feature::Feature;
pub use harness::{Ctx, Deviation, run};

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

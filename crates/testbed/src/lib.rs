//! The testbed harness: one ingress model, two environments, the probe client.
//!
//! Read [`spec`] first (what a test asks of the ingress), then [`env`] (what
//! an environment can do), then [`probe`] (how tests talk WebSocket).

mod cleanup;
pub mod env;
pub mod kind;
pub mod load;
pub mod local;
pub mod probe;
pub mod render;
pub mod spec;
pub mod tls;
pub mod tools;

pub use env::{Deployment, Endpoint, EnvKind, Environment, Pod};
pub use spec::{Affinity, Controller, CookieAffinity, IngressSpec, Unsupported};

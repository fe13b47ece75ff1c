//! The testbed harness: the two environments that deploy an ingress spec, and how each
//! controller is rendered and driven in them.
//!
//! Read `model` first (what a test asks of the ingress, which controllers exist, what each can
//! express), then [`env`] (what an environment can do), then the `probe` crate (how tests talk
//! WebSocket).

mod cleanup;
pub mod controllers;
pub mod env;
pub mod kind;
pub mod local;
pub mod ready;
pub mod render;
pub mod tools;

pub use env::{Deployment, Environment, Pod};

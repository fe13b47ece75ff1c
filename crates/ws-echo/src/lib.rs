//! ws-echo: the WebSocket echo server every behaviour test talks to through an ingress.
//!
//! Start it in-process with [`spawn`] (tests use `listen: 127.0.0.1:0`) or run the
//! `ws-echo` binary. See `Config` for every setting and its flag/env name.

pub mod config;
mod http;
pub mod metrics;
mod server;
pub mod session;
pub mod shutdown;
pub mod ticker;
mod ws;

pub use config::{Config, LogFormat};
pub use http::SUBPROTOCOL;
pub use server::{CLOSE_HANDSHAKE_WAIT, Running, spawn};

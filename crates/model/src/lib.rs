//! The light model every crate shares: what a test asks of an ingress ([`spec`]), the controllers
//! the testbed knows ([`Controller`], one module each under [`controllers`]), what each can
//! express where ([`capability`]), and the environments ([`EnvKind`], [`Endpoint`]).
//!
//! No kube, no tokio: xtask, report, bench and fuzz depend on this crate alone.

pub mod capability;
pub mod cluster;
pub mod connection_limit;
pub mod control_loop;
pub mod controller;
pub mod controllers;
pub mod env;
pub mod pins;
pub mod shutdown;
pub mod spec;

pub use connection_limit::{ConnectionLimit, ConnectionLimits};
pub use control_loop::{ControlLoop, Pacing, Sourced};
pub use controller::{Controller, ControllerInfo, RoutingApi, UnknownController};
pub use env::{Endpoint, EnvKind, UnknownEnv};
pub use shutdown::DataPlaneShutdown;
pub use spec::{
    Affinity, CookieAffinity, DataPlane, Drain, IngressSpec, PodSettings, ServiceSettings, Timeouts, Unsupported,
};

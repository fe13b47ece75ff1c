//! One module per controller: its facts and what it can express ([`crate::ControllerInfo`]).
//!
//! How each controller renders a spec and drives its data plane lives in the testbed crate's
//! module of the same name, next to the environments that need kube and processes.

pub mod envoy_gateway;
pub mod haproxy;
pub mod nginx;
pub mod traefik;

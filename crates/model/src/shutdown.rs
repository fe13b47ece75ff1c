//! How a controller's data-plane pod ends (a controller upgrade, a node drain), as data: the
//! preStop its chart gives it, what the data plane does on the signal, and how long Kubernetes
//! waits before SIGKILL, each with the upstream file it comes from. The local environment runs
//! the same sequence against the bare data plane ([`crate::ControllerInfo::shutdown`]).

use std::time::Duration;

use crate::control_loop::Sourced;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataPlaneShutdown {
    /// The chart's preStop hook for the data-plane container, and what it does.
    pub prestop: Sourced<&'static str>,
    /// What the data plane does once signalled: its listeners, its open connections, and the
    /// timer that bounds them.
    pub on_signal: Sourced<&'static str>,
    /// The pod's terminationGracePeriodSeconds as the chart renders it.
    pub grace: Sourced<Duration>,
}

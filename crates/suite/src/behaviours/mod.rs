//! The behaviours, one module per area: each holds its [`Behaviour`] values and their tests.
//!
//! A test gets a [`Ctx`](crate::Ctx) on a deployment of its behaviour's spec, measures through
//! the probe, and returns an observation word that `docs/profiles/<controller>.toml` expects.
//! [`AREAS`] lists the areas in report order; `catalogue::CATALOGUE` strings them together.

use crate::catalogue::{Area, Behaviour};

mod affinity;
mod kubernetes;
mod observability;
mod reloads;
mod support;
mod termination;
mod timeouts;
mod upgrade;

/// Every area and its behaviours, in report order.
pub(crate) const AREAS: &[(Area, &[Behaviour])] = &[
    (Area::Upgrade, upgrade::BEHAVIOURS),
    (Area::Timeouts, timeouts::BEHAVIOURS),
    (Area::Affinity, affinity::BEHAVIOURS),
    (Area::Termination, termination::BEHAVIOURS),
    (Area::Reloads, reloads::BEHAVIOURS),
    (Area::Kubernetes, kubernetes::BEHAVIOURS),
    (Area::Observability, observability::BEHAVIOURS),
];

//! The behaviour report: what one suite run measured, and how it is shown.
//!
//! Each behaviour test writes one [`model::BehaviourResult`] file; [`collect`]
//! gathers them into a [`model::Report`] (`report.json`); [`markdown`] and
//! [`html`] render it. Rendering is pure, so `cargo xtask report` can redo it
//! from `report.json` alone.

pub mod collect;
pub mod html;
pub mod markdown;
pub mod model;
mod svg;

pub use model::{BehaviourResult, Figure, Lane, LaneEnd, LaneEvent, Outcome, Report};

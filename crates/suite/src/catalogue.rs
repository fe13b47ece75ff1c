//! The catalogue: every behaviour the suite measures, as values, in report order.
//!
//! Modelled on the Gateway API conformance suite (`ConformanceTest{ShortName, Features,
//! Manifests, Test}` in a list): a behaviour is a [`Behaviour`] value holding its name, the
//! features it needs, the ingress it asks for and the test that measures it. The values live
//! in one module per area under `behaviours/`; [`CATALOGUE`] strings the areas together. What
//! each controller is expected to do lives in `docs/profiles/<controller>.toml`, not here.

use futures_util::future::BoxFuture;
use model::{Controller, IngressSpec};

use crate::behaviours;
use crate::feature::Feature;
use crate::harness::Ctx;

/// A group of behaviours, as the report shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    Upgrade,
    Timeouts,
    Affinity,
    Termination,
    Reloads,
    Kubernetes,
    Observability,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Upgrade => "upgrade",
            Area::Timeouts => "timeouts",
            Area::Affinity => "affinity",
            Area::Termination => "graceful termination",
            Area::Reloads => "reloads",
            Area::Kubernetes => "kubernetes-only",
            Area::Observability => "observability",
        }
    }
}

/// The measurement: gets a deployment of the behaviour's spec, returns the observation word that
/// `docs/profiles/<controller>.toml` expects (each test documents its vocabulary).
pub type TestFn = fn(Ctx) -> BoxFuture<'static, anyhow::Result<String>>;

/// One behaviour: everything the harness, the test binary and the report need to know about it.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Short snake_case name: the profile key, the result file, the trial name's first half.
    pub name: &'static str,
    pub area: Area,
    pub description: &'static str,
    /// What it needs from the ingress; always `Feature::of(&(spec)())` (a unit test checks).
    pub features: &'static [Feature],
    /// The ingress it asks for.
    pub spec: fn() -> IngressSpec,
    pub test: TestFn,
    /// Only a real cluster can show it; `local` reports it as not applicable, with this reason.
    pub kubernetes_only: Option<&'static str>,
    /// The controllers for which it belongs to the slow tier (minutes of waiting): their trials
    /// answer "not run" unless asked for (`cargo xtask e2e --slow` sets `TESTBED_SLOW=1`).
    pub slow: Option<fn(Controller) -> bool>,
}

impl Behaviour {
    /// Its position in [`CATALOGUE`]: the report's row order.
    ///
    /// # Panics
    /// When `self` is not an entry of [`CATALOGUE`] (a copy of one is not).
    pub fn index(&'static self) -> usize {
        CATALOGUE
            .iter()
            .position(|b| std::ptr::eq(b, self))
            .unwrap_or_else(|| panic!("{} is not an entry of the catalogue", self.name))
    }

    /// The test binary's name for this behaviour against `controller`: `{behaviour}::{controller}`.
    ///
    /// `cargo xtask e2e` selects controllers with `test(/::nginx$/)`; keep the shape.
    pub fn trial_name(&self, controller: Controller) -> String {
        format!("{}::{}", self.name, controller.name())
    }
}

const ENTRIES: usize = count(behaviours::AREAS);

static ALL: [Behaviour; ENTRIES] = concat(behaviours::AREAS);

/// Every behaviour, area by area, in report order.
pub static CATALOGUE: &[Behaviour] = &ALL;

/// Every trial of the test binary: each behaviour × each controller, in catalogue order.
pub fn trials() -> impl Iterator<Item = (&'static Behaviour, Controller)> {
    CATALOGUE
        .iter()
        .flat_map(|b| Controller::ALL.into_iter().map(move |c| (b, c)))
}

const fn count(areas: &[(Area, &[Behaviour])]) -> usize {
    let (mut n, mut a) = (0, 0);
    while a < areas.len() {
        n += areas[a].1.len();
        a += 1;
    }
    n
}

const fn concat<const N: usize>(areas: &[(Area, &[Behaviour])]) -> [Behaviour; N] {
    let mut out = [areas[0].1[0]; N];
    let (mut n, mut a) = (0, 0);
    while a < areas.len() {
        let (area, entries) = areas[a];
        let mut i = 0;
        while i < entries.len() {
            assert!(
                entries[i].area as u8 == area as u8,
                "a behaviour is listed under another area"
            );
            out[n] = entries[i];
            n += 1;
            i += 1;
        }
        a += 1;
    }
    assert!(n == N, "the catalogue's length is the sum of its areas");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = BTreeSet::new();
        for b in CATALOGUE {
            assert!(
                b.name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'_' || c.is_ascii_digit()),
                "{}",
                b.name
            );
            assert!(seen.insert(b.name), "duplicate {}", b.name);
        }
    }

    #[test]
    fn areas_come_in_report_order_and_each_entry_knows_its_place() {
        let areas: Vec<Area> = behaviours::AREAS.iter().map(|(area, _)| *area).collect();
        assert!(areas.is_sorted() && areas.windows(2).all(|w| w[0] != w[1]), "{areas:?}");
        assert!(CATALOGUE.iter().map(|b| b.area).is_sorted());
        for (i, b) in CATALOGUE.iter().enumerate() {
            assert_eq!(b.index(), i, "{}", b.name);
        }
    }

    #[test]
    fn declared_features_are_the_features_of_the_spec() {
        for b in CATALOGUE {
            assert_eq!(
                b.features,
                Feature::of(&(b.spec)()),
                "{}: `features` must list exactly what its spec asks of the ingress",
                b.name
            );
        }
    }

    /// Every behaviour has its test and runs once per controller under a distinct trial name
    /// (the test binary enumerates exactly [`trials`]); the profiles side is checked in `profile`.
    #[test]
    fn every_behaviour_is_one_trial_per_controller() {
        let names: BTreeSet<String> = trials().map(|(b, c)| b.trial_name(c)).collect();
        assert_eq!(names.len(), CATALOGUE.len() * Controller::ALL.len());
        for b in CATALOGUE {
            for c in Controller::ALL {
                let name = b.trial_name(c);
                assert!(names.contains(&name));
                assert_eq!(name.rsplit_once("::"), Some((b.name, c.name())));
            }
        }
        let (first, controller) = trials().next().unwrap();
        assert_eq!(first.trial_name(controller), "upgrade_echoes_text_and_binary::nginx");
    }
}

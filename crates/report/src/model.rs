//! The result model shared by the suite (which writes it) and the renderers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// What was measured matches the expectation.
    Pass,
    /// It does not, or the test could not measure it.
    Fail,
    /// The controller cannot express what the behaviour needs (its capability answer, which the
    /// profile expects): a finding about the controller, true in every environment it names.
    NotSupported,
    /// This environment cannot run the behaviour (a Kubernetes-only effect in `local`): says
    /// nothing about the controller.
    NotApplicable,
    /// The run did not ask for it: a slow-tier measurement (`cargo xtask e2e --slow`); the
    /// reason says what it would wait for.
    NotRun,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::NotSupported,
        Outcome::NotApplicable,
        Outcome::NotRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NotSupported => "not-supported",
            Outcome::NotApplicable => "not-applicable",
            Outcome::NotRun => "not-run",
        }
    }

    /// How a matrix cell and a summary line say it.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotSupported => "not supported",
            Outcome::NotApplicable => "n/a here",
            Outcome::NotRun => "slow tier",
        }
    }

    /// Whether the behaviour was measured (passed or failed) rather than answered without a
    /// measurement.
    pub fn measured(self) -> bool {
        matches!(self, Outcome::Pass | Outcome::Fail)
    }
}

/// How a result's figure was obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FidelityLevel {
    /// Measured against the real controller (kind).
    Real,
    /// Local, through the same mechanism the real controller uses.
    Faithful,
    /// Local, through an approximation of the controller's mechanism (the note says what differs).
    Modelled,
    /// Not declared (results written before fidelity existed).
    #[default]
    Unrated,
}

impl FidelityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            FidelityLevel::Real => "real",
            FidelityLevel::Faithful => "faithful",
            FidelityLevel::Modelled => "modelled",
            FidelityLevel::Unrated => "unrated",
        }
    }
}

/// How far a result's figure is the controller's own behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fidelity {
    pub level: FidelityLevel,
    /// What differs from the controller's mechanism, when modelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The upstream source of the controller's mechanism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One measured number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// How a connection lane ended in a timeline picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LaneEnd {
    /// A close frame with this code arrived.
    Closed { code: u16 },
    /// TCP ended without a close frame (reset, EOF, timeout of the proxy).
    Abnormal { error: String },
    /// The handshake failed (status 0 when no HTTP answer came at all).
    HandshakeFailed { status: u16 },
    /// Still open when the test stopped watching.
    Open,
}

/// A marker inside a lane (a message, a ping, a reconnect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneEvent {
    pub at_ms: f64,
    pub label: String,
}

/// One client connection in a timeline picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub label: String,
    /// Which pod answered (from the hello), if any.
    pub pod: Option<String>,
    /// Milliseconds since the test's time zero.
    pub start_ms: f64,
    pub end_ms: f64,
    pub end: LaneEnd,
    #[serde(default)]
    pub events: Vec<LaneEvent>,
}

/// A vertical marker across all lanes: "pod deleted", "SIGTERM", "reload".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub at_ms: f64,
    pub label: String,
}

/// A caveat: the real behaviour is not what a user would want.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caveat {
    pub text: String,
    /// The knob that changes it.
    pub knob: String,
}

/// One behaviour × controller in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehaviourResult {
    /// Position in the catalogue: the report's row order.
    pub index: usize,
    pub behaviour: String,
    pub area: String,
    pub description: String,
    pub controller: String,
    pub env: String,
    pub outcome: Outcome,
    /// The expected observation from the controller's profile.
    pub expected: String,
    /// What this run observed (same vocabulary as `expected`).
    pub observed: String,
    /// Where the expectation comes from (documentation page or issue).
    pub source: String,
    #[serde(default)]
    pub caveat: Option<Caveat>,
    /// How far the figure is the controller's own behaviour (faithful, modelled, real).
    #[serde(default)]
    pub fidelity: Fidelity,
    /// Why the behaviour was not measured (not supported or not applicable).
    #[serde(default, alias = "skip_reason")]
    pub reason: Option<String>,
    /// Why the test failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub figures: Vec<Figure>,
    /// The figure shown in the matrix cell.
    #[serde(default)]
    pub key_figure: Option<String>,
    #[serde(default)]
    pub lanes: Vec<Lane>,
    #[serde(default)]
    pub markers: Vec<Marker>,
    pub duration_ms: f64,
}

impl BehaviourResult {
    /// The caveat, when it applies: a behaviour not applicable here was not observed, so it has
    /// none; one the controller does not support keeps its caveat (that is the finding).
    pub fn shown_caveat(&self) -> Option<&Caveat> {
        self.caveat
            .as_ref()
            .filter(|_| !matches!(self.outcome, Outcome::NotApplicable | Outcome::NotRun))
    }

    /// The matrix cell's verdict for users: ✓ (what users want), ⚠ (the controller does what its
    /// profile says, but that is not what users want: the caveat names the knob), ✗ (the
    /// measurement contradicts the profile), or why nothing was measured.
    pub fn verdict(&self) -> &'static str {
        match (self.outcome, self.shown_caveat().is_some()) {
            (Outcome::Fail, _) => "✗",
            (Outcome::Pass, false) => "✓",
            (Outcome::Pass, true) | (Outcome::NotSupported, true) => "⚠",
            (Outcome::NotSupported, false) => "not supported",
            (Outcome::NotApplicable, _) => "n/a here",
            (Outcome::NotRun, _) => "slow tier",
        }
    }

    /// The mark a matrix cell carries for a local figure from a modelled mechanism.
    pub fn modelled_mark(&self) -> &'static str {
        if self.fidelity.level == FidelityLevel::Modelled && self.outcome.measured() {
            " ≈"
        } else {
            ""
        }
    }

    /// "faithful", "real", or "modelled: what differs (source)".
    pub fn fidelity_text(&self) -> String {
        let level = self.fidelity.level.as_str();
        match (&self.fidelity.note, &self.fidelity.source) {
            (Some(note), Some(source)) => format!("{level}: {note} ({source})"),
            (Some(note), None) => format!("{level}: {note}"),
            (None, Some(source)) => format!("{level} ({source})"),
            (None, None) => level.to_owned(),
        }
    }

    /// File name of this result inside the results directory.
    pub fn file_name(&self) -> String {
        format!("{}--{}.json", self.behaviour, self.controller)
    }
}

/// Versions of what ran, per controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunVersions {
    pub controller: String,
    pub data_plane: String,
    /// The data plane the real controller ships (when the run used another build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped: Option<String>,
    /// The controller's control loop as the local environment models it (pacing, poll, sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_loop: Option<String>,
    /// The API it was driven through: "Ingress" or "Gateway API".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// A whole run: `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub env: String,
    /// Seconds since the Unix epoch when the report was assembled.
    pub generated_at: u64,
    /// Wall-clock duration of the suite run, when known.
    #[serde(default)]
    pub wall_seconds: Option<f64>,
    /// Controller name → versions.
    pub versions: BTreeMap<String, RunVersions>,
    pub results: Vec<BehaviourResult>,
}

impl Report {
    /// Controllers in report order (as they appear in the results, nginx/traefik/haproxy first).
    pub fn controllers(&self) -> Vec<String> {
        const ORDER: [&str; 3] = ["nginx", "traefik", "haproxy"];
        let mut names: Vec<String> = self.results.iter().map(|r| r.controller.clone()).collect();
        names.sort_by_key(|n| (ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()), n.clone()));
        names.dedup();
        names
    }

    /// Behaviours in catalogue order, with their area.
    pub fn behaviours(&self) -> Vec<(String, String)> {
        let mut sorted: Vec<&BehaviourResult> = self.results.iter().collect();
        sorted.sort_by_key(|r| r.index);
        let mut seen = Vec::<(String, String)>::new();
        for r in sorted {
            if !seen.iter().any(|(b, _)| b == &r.behaviour) {
                seen.push((r.behaviour.clone(), r.area.clone()));
            }
        }
        seen
    }

    pub fn get(&self, behaviour: &str, controller: &str) -> Option<&BehaviourResult> {
        self.results
            .iter()
            .find(|r| r.behaviour == behaviour && r.controller == controller)
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// Per controller, the endpoint-removal lag a behaviour measured (figures `endpoint_removal_lag_p50`,
    /// `endpoint_removal_lag_max`, `prestop_needed`, in ms) with the result it came from: the
    /// number users need for their preStop.
    pub fn prestop_needed(&self) -> Vec<(&BehaviourResult, f64, f64, f64)> {
        let figure = |r: &BehaviourResult, name: &str| r.figures.iter().find(|f| f.name == name).map(|f| f.value);
        self.controllers()
            .iter()
            .filter_map(|c| {
                let r = self
                    .results
                    .iter()
                    .find(|r| &r.controller == c && figure(r, "prestop_needed").is_some())?;
                Some((
                    r,
                    figure(r, "endpoint_removal_lag_p50")?,
                    figure(r, "endpoint_removal_lag_max")?,
                    figure(r, "prestop_needed")?,
                ))
            })
            .collect()
    }

    /// "75 passed, 0 failed, 3 not supported by the controller, 6 not applicable here".
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} not supported by the controller, {} not applicable in this environment{}",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::NotSupported),
            self.count(Outcome::NotApplicable),
            match self.count(Outcome::NotRun) {
                0 => String::new(),
                n => format!(", {n} left to the slow tier (cargo xtask e2e --slow)"),
            }
        )
    }
}

//! Runs one behaviour against one controller and records the result.
//!
//! [`run`] takes a catalogue entry and a controller, deploys the entry's spec in the
//! environment `TESTBED_ENV` names, hands its test a [`Ctx`] to measure with, compares the
//! observation with the controller's profile, writes the result file the report is built
//! from, and returns an error when the outcome deviates, so that nextest shows the failure too.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::EnvKind;
use model::{Controller, IngressSpec};
use probe::{ProbeOptions, Timeline};
use report::model::{Caveat, Marker};
use report::{BehaviourResult, Figure, Lane, Outcome};
use testbed::Deployment;
use testbed::env::{EnvError, TerminationRecord, Versions};

use crate::catalogue::{Behaviour, TestFn};
use crate::lanes;
use crate::profile;

/// Longest a behaviour may take before it is failed (nextest kills later still).
const CASE_TIMEOUT: Duration = Duration::from_secs(150);
/// The same for the slow tier, which waits up to 5 minutes and a half for one default.
const SLOW_CASE_TIMEOUT: Duration = Duration::from_secs(400);
/// Set to `1` (by `cargo xtask e2e --slow`): run the slow tier's trials rather than answer them
/// with [`Outcome::NotRun`].
pub const SLOW_TIER_VAR: &str = "TESTBED_SLOW";
const SLOW_TIER_COMMAND: &str = "cargo xtask e2e --slow";

fn slow_tier() -> bool {
    std::env::var(SLOW_TIER_VAR).is_ok_and(|v| v == "1")
}

/// What a running test can use and record.
#[derive(Clone)]
pub struct Ctx {
    pub deployment: Arc<dyn Deployment>,
    pub controller: Controller,
    pub env: EnvKind,
    record: Arc<Mutex<Record>>,
    t0: Instant,
    t0_unix_ms: f64,
}

#[derive(Debug, Default)]
struct Record {
    figures: Vec<Figure>,
    key_figure: Option<String>,
    lanes: Vec<Lane>,
    markers: Vec<Marker>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("controller", &self.controller)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Probe options for `path_and_query` on this deployment's ingress (TLS trust included).
    pub fn probe(&self, path_and_query: &str) -> ProbeOptions {
        let endpoint = self.deployment.endpoint();
        let mut opts = ProbeOptions::for_endpoint(endpoint, path_and_query).expect("the endpoint yields a valid URL");
        if let Some(ca) = self.deployment.tls_ca() {
            opts = opts.tls(
                ca.client_config()
                    .expect("the testbed CA yields a client configuration"),
            );
        }
        opts
    }

    /// Milliseconds since the test started (the timeline's time zero).
    pub fn now_ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1000.0
    }

    pub fn figure(&self, name: &str, value: f64, unit: &str) {
        self.lock().figures.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
        });
    }

    /// The figure shown in the matrix cell.
    pub fn key_figure(&self, text: impl Into<String>) {
        self.lock().key_figure = Some(text.into());
    }

    pub fn marker(&self, label: impl Into<String>) {
        let at_ms = self.now_ms();
        self.lock().markers.push(Marker {
            at_ms,
            label: label.into(),
        });
    }

    /// Marks each recorded step of a pod's termination at the instant it happened.
    pub fn termination(&self, record: &TerminationRecord) {
        let pod = &record.pod;
        let gone = match &record.exit_status {
            Some(status) => format!("{pod} gone ({status})"),
            None => format!("{pod} gone"),
        };
        let steps = [
            (record.endpoint_removed, format!("{pod} left the endpoints")),
            (record.prestop_done, format!("{pod} preStop done")),
            (record.sigterm, format!("{pod} SIGTERM")),
            (record.sigkill, format!("{pod} SIGKILL")),
            (record.exited, gone),
        ];
        let mut record = self.lock();
        for (at, label) in steps {
            let Some(at) = at else { continue };
            let Ok(unix) = at.duration_since(UNIX_EPOCH) else {
                continue;
            };
            let at_ms = unix.as_secs_f64() * 1000.0 - self.t0_unix_ms;
            record.markers.push(Marker { at_ms, label });
        }
        record.markers.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    }

    /// Adds a connection's timeline as a lane of the report's picture.
    pub fn lane(&self, label: impl Into<String>, timeline: &Timeline) {
        let lane = lanes::from_timeline(label.into(), timeline, self.t0_unix_ms);
        self.lock().lanes.push(lane);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A behaviour whose outcome deviates from its expectation, or that could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Deviation(String);

/// Runs `behaviour` against `controller` in the environment `TESTBED_ENV` names, writes its
/// result file, and returns the outcome; `Err` when it deviates from the controller's profile
/// (the result file says how) or could not be set up (then no result file is written).
pub async fn run(behaviour: &'static Behaviour, controller: Controller) -> Result<Outcome, Deviation> {
    crate::init_tracing();
    let started = Instant::now();
    let name = behaviour.name;
    let env = EnvKind::current().map_err(|e| Deviation(e.to_string()))?;
    let profile = profile::load(controller).map_err(|e| Deviation(chain(&e)))?;
    let expectation = profile.get(name).map_err(|e| Deviation(chain(&e)))?.clone();
    let expected = expectation.observed_in(env).to_owned();

    let mut result = BehaviourResult {
        index: behaviour.index(),
        behaviour: name.to_owned(),
        area: behaviour.area.name().to_owned(),
        description: behaviour.description.to_owned(),
        controller: controller.name().to_owned(),
        env: env.name().to_owned(),
        outcome: Outcome::Fail,
        expected: expected.clone(),
        observed: String::new(),
        source: expectation.source.clone(),
        caveat: expectation
            .caveat
            .clone()
            .zip(expectation.knob.clone())
            .map(|(text, knob)| Caveat { text, knob }),
        reason: None,
        fidelity: expectation.fidelity_in(env),
        error: None,
        figures: Vec::new(),
        key_figure: None,
        lanes: Vec::new(),
        markers: Vec::new(),
        duration_ms: 0.0,
    };

    let slow = behaviour.slow.is_some_and(|applies| applies(controller));
    match (env, behaviour.kubernetes_only) {
        (EnvKind::Local, Some(reason)) => not_measured(&mut result, Outcome::NotApplicable, reason.to_owned()),
        _ if slow && !slow_tier() => not_measured(
            &mut result,
            Outcome::NotRun,
            format!("waits minutes: the slow tier measures it ({SLOW_TIER_COMMAND})"),
        ),
        _ => {
            let limit = if slow { SLOW_CASE_TIMEOUT } else { CASE_TIMEOUT };
            measure(&mut result, env, controller, &(behaviour.spec)(), behaviour.test, limit).await
        }
    }
    result.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    write_result(&result);

    match result.outcome {
        Outcome::Pass => Ok(Outcome::Pass),
        Outcome::NotSupported | Outcome::NotApplicable | Outcome::NotRun => {
            eprintln!(
                "{} {name} [{controller}, {env}]: {}",
                result.outcome.label().to_uppercase(),
                result.reason.as_deref().unwrap_or("")
            );
            Ok(result.outcome)
        }
        Outcome::Fail => Err(Deviation(format!(
            "{name} [{controller}, {env}]: expected {:?}, observed {:?}{}",
            result.expected,
            result.observed,
            result.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
        ))),
    }
}

async fn measure(
    result: &mut BehaviourResult,
    env: EnvKind,
    controller: Controller,
    spec: &IngressSpec,
    test: TestFn,
    limit: Duration,
) {
    let environment = match testbed::env::from_env().await {
        Ok(e) => e,
        Err(err) => return fail(result, format!("opening the {env} environment: {}", chain(&err))),
    };
    let deployment: Arc<dyn Deployment> = match environment.deploy(controller, spec).await {
        Ok(d) => Arc::from(d),
        Err(EnvError::Unsupported(unsupported)) => {
            result.observed = "unsupported".to_owned();
            if result.expected == "unsupported" {
                not_measured(result, Outcome::NotSupported, unsupported.to_string());
            } else {
                result.outcome = Outcome::Fail;
                result.error = Some(unsupported.to_string());
            }
            return;
        }
        Err(err) => return fail(result, format!("deploying: {}", chain(&err))),
    };
    write_versions(controller, &deployment.versions().await);

    let ctx = Ctx {
        deployment: deployment.clone(),
        controller,
        env,
        record: Arc::default(),
        t0: Instant::now(),
        t0_unix_ms: unix_ms(),
    };
    let outcome = tokio::time::timeout(limit, test(ctx.clone())).await;
    {
        let mut record = ctx.lock();
        result.figures = std::mem::take(&mut record.figures);
        result.key_figure = record.key_figure.take();
        result.lanes = std::mem::take(&mut record.lanes);
        result.markers = std::mem::take(&mut record.markers);
    }
    match outcome {
        Ok(Ok(observed)) => {
            result.outcome = if observed == result.expected {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            result.observed = observed;
        }
        Ok(Err(err)) => fail(result, format!("{err:#}")),
        Err(_) => fail(result, format!("the test did not finish within {limit:?}")),
    }
    // Tear down here (the last handle drops), so the next test starts clean.
    drop(ctx);
    drop(deployment);
}

/// Records a behaviour that was not measured, and why (`outcome` says whose limit it is).
fn not_measured(result: &mut BehaviourResult, outcome: Outcome, reason: String) {
    result.outcome = outcome;
    if result.observed.is_empty() {
        result.observed = outcome.as_str().to_owned();
    }
    result.reason = Some(reason);
}

fn fail(result: &mut BehaviourResult, error: String) {
    result.outcome = Outcome::Fail;
    if result.observed.is_empty() {
        result.observed = "error".to_owned();
    }
    result.error = Some(error);
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `TESTBED_RESULTS_DIR`, default `target/testbed/results/<env>/`.
pub fn results_dir(env: EnvKind) -> PathBuf {
    match std::env::var_os("TESTBED_RESULTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/testbed/results")
            .join(env.name()),
    }
}

fn write_result(result: &BehaviourResult) {
    let dir = results_dir(EnvKind::current().unwrap_or(EnvKind::Local));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(result).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(result.file_name()), json)
    };
    if let Err(err) = write() {
        eprintln!(
            "warning: could not write the result of {} to {}: {err}",
            result.behaviour,
            dir.display()
        );
    }
}

fn write_versions(controller: Controller, versions: &Versions) {
    let dir = results_dir(EnvKind::current().unwrap_or(EnvKind::Local)).join("versions");
    let info = controller.info();
    let run = report::model::RunVersions {
        controller: versions.controller.clone(),
        data_plane: versions.data_plane.clone(),
        shipped: Some(format!("{} ({})", info.ships, info.ships_source)),
        control_loop: Some(info.control_loop.summary()),
        api: Some(info.api.to_string()),
    };
    let _ = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            dir.join(format!("{}.json", controller.name())),
            serde_json::to_vec(&run).unwrap_or_default(),
        )
    });
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

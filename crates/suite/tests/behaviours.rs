//! The behaviour suite as trials: every catalogue entry × every controller, named `{behaviour}::{controller}`.
//!
//! A libtest-mimic harness (`harness = false`), so the catalogue is the only list of behaviours
//! and `Controller::ALL` the only list of controllers; nextest lists and runs the trials like
//! any test (`cargo nextest run -p suite -E 'test(/::haproxy$/)'`). Each trial runs on its own
//! multi-threaded tokio runtime with two workers. The environment comes from `TESTBED_ENV`
//! (default `local`).

use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use model::Controller;
use suite::Behaviour;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trials = suite::catalogue::trials()
        .map(|(behaviour, controller)| {
            Trial::test(behaviour.trial_name(controller), move || run(behaviour, controller))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn run(behaviour: &'static Behaviour, controller: Controller) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("building the tokio runtime: {e}"))?;
    runtime.block_on(suite::run(behaviour, controller))?;
    Ok(())
}

//! The command line: one subcommand per module, each a struct with a `run` method.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, install tools, test WebSocket behaviour through ingress controllers"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install what the tests need, then run every test with nextest.
    Test(crate::test::Test),
    /// Install the pinned nginx, HAProxy and Traefik binaries into target/tools/.
    Tools(crate::tools::Tools),
    /// Build the ws-echo container image (static binary, FROM scratch) with the Docker Engine API.
    Image(crate::image::Image),
    /// Run the behaviour suite across controllers and write the report.
    E2e(crate::e2e::E2e),
    /// Re-render report.md and report.html from report.json.
    Report(crate::report::Report),
    /// Create the kind cluster, install the controllers, deploy a sample echo app.
    Up(crate::kind::Up),
    /// Delete the kind cluster.
    Down(crate::kind::Down),
    /// Show the kind cluster, controllers and sample app.
    Status(crate::kind::Status),
    /// Measure ws-echo, anchor servers and proxy overhead side by side.
    Bench(crate::bench::Bench),
    /// Run the Autobahn TestSuite fuzzingclient against ws-echo and compare with the expected results.
    Autobahn(crate::autobahn::Autobahn),
    /// Run the local e2e suite N times back to back and report the flake rate per test.
    Soak(crate::soak::Soak),
    /// Run the fuzz targets briefly.
    Fuzz(crate::fuzz::Fuzz),
    /// Check our Helm values against the pinned charts: schema, unread keys, Kubernetes schemas, rollouts.
    Charts(crate::charts::Charts),
    /// Lint .github/workflows/ with actionlint and shellcheck (pinned, installed into target/tools/).
    Lint(crate::lint::Lint),
}

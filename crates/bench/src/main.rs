//! `bench`: the benchmark, its smoke run and the Autobahn conformance run. `cargo xtask bench`,
//! `cargo xtask test` and `cargo xtask autobahn` build it and run it; the binaries it starts
//! (ws-echo, `testbed load`, the anchors, `bench-dataplane`) are the ones built beside it.

use std::path::PathBuf;

use anyhow::Context;
use bench::autobahn::Autobahn;
use bench::run::Flags;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Measure ws-echo against anchor servers and behind each data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// ws-echo against anchor echo servers, behind each data plane, and its capacity.
    Run(Flags),
    /// A seconds-long run of every part, checked for its figures (`cargo xtask test`).
    Smoke {
        /// Where the results go.
        #[arg(long, default_value = "target/testbed/bench-smoke")]
        out: PathBuf,
    },
    /// The Autobahn TestSuite fuzzingclient against ws-echo, compared with docs/autobahn/expected.json.
    Autobahn(Autobahn),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = bench::workspace_root();
    let exe = std::env::current_exe().context("finding the bench binary")?;
    let bin_dir = exe.parent().context("the bench binary has no directory")?;
    match cli.command {
        Command::Run(flags) => bench::run::bench(&root, bin_dir, &flags),
        Command::Smoke { out } => bench::run::smoke(&root, bin_dir, root.join(out)),
        Command::Autobahn(autobahn) => autobahn.run(&root, bin_dir),
    }
}

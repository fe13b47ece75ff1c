//! `cargo xtask report`: re-renders report.md and report.html from report.json.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Report {
    /// The report directory (default target/testbed/report).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl Report {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let dir = self.dir.unwrap_or_else(|| report_dir(root));
        let json = dir.join("report.json");
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("reading {}: run `cargo xtask e2e` first", json.display()))?;
        let report: report::Report =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
        write_rendered(root, &dir, &report)?;
        println!("{}", report::markdown::matrix(&report));
        println!("report: {}", dir.join("report.html").display());
        Ok(())
    }
}

pub fn report_dir(root: &Path) -> PathBuf {
    root.join("target/testbed/report")
}

/// Writes report.json, report.md and report.html (with the bench section when present).
pub fn write_all(root: &Path, dir: &Path, report: &report::Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(report)?).context("writing report.json")?;
    write_rendered(root, dir, report)
}

fn write_rendered(root: &Path, dir: &Path, report: &report::Report) -> anyhow::Result<()> {
    std::fs::write(dir.join("report.md"), report::markdown::render(report)).context("writing report.md")?;
    // `cargo xtask bench` leaves an HTML fragment; the report embeds it when present.
    let bench = std::fs::read_to_string(root.join("target/testbed/bench/bench.fragment.html")).ok();
    let html = report::html::render(report, bench.as_slice());
    std::fs::write(dir.join("report.html"), html).context("writing report.html")?;
    Ok(())
}

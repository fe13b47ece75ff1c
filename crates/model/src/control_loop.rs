//! How a controller carries a change from the Kubernetes API to its data plane, as data: the
//! model the local environment runs, every parameter with the upstream file it comes from.
//!
//! A change (a pod leaving the endpoints, a new Ingress, a ConfigMap key) reaches the data plane
//! in three steps: the controller's informer sees it ([`informer_delay`], the cluster's, not the
//! controller's), the controller's own pacing lets it through ([`Pacing`]), and the data plane
//! takes it up ([`ControlLoop::data_plane_poll`] where it polls). Each controller module fills a
//! [`ControlLoop`]; the local environment applies changes through it, and the report shows it.

use std::time::Duration;

/// A value and the upstream file (repository, tag, path) it is read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: &'static str,
}

/// How a controller lets changes through to its data plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Each change is reconciled and pushed as it comes.
    Immediate,
    /// A token bucket: at most `per_second` syncs a second, `burst` at once; a sync that finds
    /// the bucket empty waits for the next token and carries every change made meanwhile.
    TokenBucket { per_second: f64, burst: u32 },
    /// Changes are gathered and applied together at the next tick of a fixed period, whatever
    /// the moment they were made.
    Period(Duration),
    /// A change is applied at once, then further ones are held for the window and the latest
    /// is applied when it ends. The data plane does this itself (Traefik is its own controller),
    /// so the local environment adds nothing for it.
    Throttle(Duration),
}

impl Pacing {
    /// The longest a change can wait in the pacing alone (a full period or window; for a token
    /// bucket, one token interval).
    pub fn worst_wait(&self) -> Duration {
        match *self {
            Pacing::Immediate => Duration::ZERO,
            Pacing::TokenBucket { per_second, .. } => Duration::from_secs_f64(1.0 / per_second),
            Pacing::Period(d) | Pacing::Throttle(d) => d,
        }
    }

    /// Whether the testbed applies this pacing (rather than the data-plane binary itself).
    pub fn applied_by_harness(&self) -> bool {
        !matches!(self, Pacing::Throttle(_))
    }
}

/// One controller's control loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlLoop {
    /// How endpoints reach the data plane (never a reload, for every controller here).
    pub endpoints: Sourced<&'static str>,
    /// What makes the controller reload its data plane, and what it applies without one.
    pub reloads_for: Sourced<&'static str>,
    /// Its pacing of changes between the informer and the data plane.
    pub pacing: Sourced<Pacing>,
    /// How often the data plane itself picks up what the controller handed it, where it polls
    /// (ingress-nginx's workers copy the backends on a 1 s timer).
    pub data_plane_poll: Option<Sourced<Duration>>,
}

impl std::fmt::Display for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pacing::Immediate => f.write_str("every change pushed as it comes"),
            Pacing::TokenBucket { per_second, burst } => {
                write!(f, "token bucket {per_second} syncs/s, burst {burst}")
            }
            Pacing::Period(d) => write!(f, "changes applied every {} s", d.as_secs_f64()),
            Pacing::Throttle(d) => write!(f, "changes throttled to one per {} s", d.as_secs_f64()),
        }
    }
}

impl ControlLoop {
    /// One line for reports: the pacing and the poll, each with its source.
    pub fn summary(&self) -> String {
        let mut line = format!("{} ({})", self.pacing.value, self.pacing.source);
        if let Some(poll) = self.data_plane_poll {
            line.push_str(&format!(
                "; data plane polls every {} s ({})",
                poll.value.as_secs_f64(),
                poll.source
            ));
        }
        line
    }

    /// The longest a change can take from the informer to the data plane in this model.
    pub fn worst_lag(&self) -> Duration {
        self.pacing.value.worst_wait() + self.data_plane_poll.map_or(Duration::ZERO, |p| p.value)
    }
}

/// The variable that sets [`informer_delay`] for the local environment, in milliseconds.
pub const INFORMER_DELAY_VAR: &str = "TESTBED_INFORMER_DELAY_MS";

/// Between an object changing in the API and a controller's informer seeing it: the cluster's
/// delay (API server, EndpointSlice controller, watch), the same for every controller. Locally
/// 0 unless `TESTBED_INFORMER_DELAY_MS` sets it; in kind it is whatever the cluster takes.
pub fn informer_delay() -> Result<Duration, String> {
    match std::env::var(INFORMER_DELAY_VAR) {
        Err(_) => Ok(Duration::ZERO),
        Ok(ms) => ms
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("{INFORMER_DELAY_VAR}={ms:?} is not a number of milliseconds: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_lag_adds_the_pacing_and_the_data_planes_poll() {
        let nginx_like = ControlLoop {
            endpoints: Sourced { value: "", source: "" },
            reloads_for: Sourced { value: "", source: "" },
            pacing: Sourced {
                value: Pacing::TokenBucket {
                    per_second: 0.3,
                    burst: 1,
                },
                source: "",
            },
            data_plane_poll: Some(Sourced {
                value: Duration::from_secs(1),
                source: "",
            }),
        };
        let lag = nginx_like.worst_lag().as_secs_f64();
        assert!((lag - 4.333).abs() < 0.01, "{lag}");
        assert_eq!(
            Pacing::Period(Duration::from_secs(5)).worst_wait(),
            Duration::from_secs(5)
        );
        assert!(!Pacing::Throttle(Duration::from_secs(2)).applied_by_harness());
    }
}

//! The controller's control loop, run locally from its model ([`model::ControlLoop`]).
//!
//! In a cluster a pod's deletion, a new pod becoming Ready or a new Ingress reaches the data
//! plane through the controller: its informer sees the change (the cluster's delay), its pacing
//! lets a sync through (ingress-nginx's token bucket, haproxytech's sync period), and the sync
//! carries every change made meanwhile. Locally the same happens here: [`Pacer::turn`] is the
//! controller's pacing, which every sync (endpoints, a route, a controller-wide change) waits
//! for; [`EndpointSync`] is the loop that carries endpoint changes, coalescing those made while
//! it waited, and records when each reached the data plane. Nothing waits for the data plane to
//! route before Kubernetes would go on.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use model::Pacing;
use tokio::sync::watch;
use tokio::time::Instant;

/// A controller's pacing of syncs.
#[derive(Debug)]
pub(crate) struct Pacer {
    pacing: Pacing,
    /// Token bucket: when the next token is there. Period: the first tick.
    next: Mutex<Instant>,
}

impl Pacer {
    /// The pacing of a controller whose data plane just started with its first sync done (that
    /// sync took ingress-nginx's token; haproxytech's ticks start with the controller).
    pub fn started(pacing: Pacing, now: Instant) -> Self {
        let next = match pacing {
            Pacing::TokenBucket { per_second, .. } => now + Duration::from_secs_f64(1.0 / per_second),
            Pacing::Immediate | Pacing::Period(_) | Pacing::Throttle(_) => now,
        };
        Pacer {
            pacing,
            next: Mutex::new(next),
        }
    }

    /// When a sync asked for at `now` may run, taking its turn.
    fn take(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        match self.pacing {
            // Burst 1 (the only burst these controllers use): the bucket holds one token at most.
            Pacing::TokenBucket { per_second, .. } => {
                let at = (*next).max(now);
                *next = at + Duration::from_secs_f64(1.0 / per_second);
                at
            }
            Pacing::Period(period) => {
                let since = now.saturating_duration_since(*next).as_secs_f64();
                let ticks = (since / period.as_secs_f64()).ceil();
                *next + period.mul_f64(ticks)
            }
            // The data-plane binary throttles itself.
            Pacing::Immediate | Pacing::Throttle(_) => now,
        }
    }

    /// Waits for this sync's turn.
    pub async fn turn(&self) {
        tokio::time::sleep_until(self.take(Instant::now())).await;
    }
}

/// What the endpoint loop has carried to the data plane: the last generation applied, when, and
/// how it went.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub generation: u64,
    pub at: SystemTime,
    pub error: Option<String>,
}

/// The endpoint half of the loop: changes are numbered as they are made; the loop task applies
/// the latest state once its turn comes and publishes the generation it carried.
#[derive(Debug)]
pub(crate) struct EndpointSync {
    wanted: watch::Sender<u64>,
    applied: watch::Sender<Applied>,
}

impl EndpointSync {
    pub fn new() -> Self {
        EndpointSync {
            wanted: watch::Sender::new(0),
            applied: watch::Sender::new(Applied {
                generation: 0,
                at: SystemTime::now(),
                error: None,
            }),
        }
    }

    /// Records that the endpoints changed; returns the change's generation.
    pub fn changed(&self) -> u64 {
        let mut generation = 0;
        self.wanted.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        generation
    }

    /// For the loop task: waits until a change is wanted that was not applied yet.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wanted.subscribe()
    }

    /// The latest generation wanted (read once the loop's turn came: it carries all of them).
    pub fn wanted(&self) -> u64 {
        *self.wanted.borrow()
    }

    pub fn publish(&self, applied: Applied) {
        self.applied.send_replace(applied);
    }

    /// Waits until `generation` reached the data plane (or `limit` passed); returns when it did.
    pub async fn applied(&self, generation: u64, limit: Duration) -> Result<SystemTime, String> {
        let mut rx = self.applied.subscribe();
        let seen = tokio::time::timeout(limit, rx.wait_for(|a| a.generation >= generation)).await;
        match seen {
            Err(_) => Err(format!(
                "endpoint change {generation} did not reach the data plane within {limit:?}"
            )),
            Ok(Err(_)) => Err("the control loop stopped".to_owned()),
            Ok(Ok(a)) => match &a.error {
                Some(e) => Err(e.clone()),
                None => Ok(a.at),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_bucket_lets_one_sync_through_then_one_per_interval() {
        let t0 = Instant::now();
        // ingress-nginx after its first sync: the next token comes 3.3 s later.
        let pacer = Pacer::started(
            Pacing::TokenBucket {
                per_second: 0.3,
                burst: 1,
            },
            t0,
        );
        let interval = Duration::from_secs_f64(1.0 / 0.3);
        assert_eq!(pacer.take(t0), t0 + interval);
        assert_eq!(pacer.take(t0), t0 + interval * 2);
        // Idle long enough, the bucket holds one token again, not more.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(pacer.take(later), later);
        assert!(pacer.take(later) > later);
    }

    #[test]
    fn a_period_applies_every_change_at_the_next_tick() {
        let t0 = Instant::now();
        let pacer = Pacer::started(Pacing::Period(Duration::from_secs(5)), t0);
        assert_eq!(pacer.take(t0 + Duration::from_millis(100)), t0 + Duration::from_secs(5));
        assert_eq!(
            pacer.take(t0 + Duration::from_millis(4900)),
            t0 + Duration::from_secs(5)
        );
        assert_eq!(
            pacer.take(t0 + Duration::from_millis(5001)),
            t0 + Duration::from_secs(10)
        );
        assert_eq!(pacer.take(t0 + Duration::from_secs(10)), t0 + Duration::from_secs(10));
    }

    #[test]
    fn a_throttle_is_left_to_the_data_plane() {
        let t0 = Instant::now();
        let pacer = Pacer::started(Pacing::Throttle(Duration::from_secs(2)), t0);
        assert_eq!(pacer.take(t0), t0);
        assert_eq!(pacer.take(t0), t0);
    }

    #[tokio::test]
    async fn waiters_learn_when_their_generation_was_applied_and_how() {
        let sync = EndpointSync::new();
        let first = sync.changed();
        let second = sync.changed();
        assert_eq!(sync.wanted(), second);
        let at = SystemTime::now();
        sync.publish(Applied {
            generation: second,
            at,
            error: None,
        });
        // One sync carried both changes.
        assert_eq!(sync.applied(first, Duration::from_secs(1)).await, Ok(at));
        let third = sync.changed();
        assert!(sync.applied(third, Duration::from_millis(50)).await.is_err());
        sync.publish(Applied {
            generation: third,
            at,
            error: Some("refused".to_owned()),
        });
        assert_eq!(
            sync.applied(third, Duration::from_secs(1)).await,
            Err("refused".to_owned())
        );
    }
}

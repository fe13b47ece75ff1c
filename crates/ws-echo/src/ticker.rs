//! One shared interval timer per server (ticks, pings): connections subscribe instead of owning timers.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// A shared ticker: one task, one interval; every subscriber sees each tick.
///
/// Connections hold only a watch receiver (a pointer and a version), so idle
/// connections carry no timer of their own. The task ends when the last receiver
/// (including the one inside the `Ticker`) is gone.
#[derive(Debug)]
pub struct Ticker {
    rx: watch::Receiver<u64>,
}

impl Ticker {
    /// Starts the ticker task, or `None` when `period` is zero (off).
    pub fn spawn(period: Duration) -> Option<Ticker> {
        if period.is_zero() {
            return None;
        }
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => { tx.send_modify(|n| *n += 1); }
                    () = tx.closed() => break,
                }
            }
        });
        Some(Ticker { rx })
    }

    /// A receiver whose next `changed()` is the next tick.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}

/// Waits for the next tick of an optional subscription; never resolves when off.
pub async fn next(rx: &mut Option<watch::Receiver<u64>>) {
    let ticked = match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => false,
    };
    if !ticked {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn subscribers_see_each_tick_once() {
        let ticker = Ticker::spawn(Duration::from_secs(5)).unwrap();
        let mut rx = Some(ticker.subscribe());
        let start = Instant::now();
        next(&mut rx).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        next(&mut rx).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_period_is_off() {
        assert!(Ticker::spawn(Duration::ZERO).is_none());
        let mut off = None;
        let waited = tokio::time::timeout(Duration::from_secs(60), next(&mut off)).await;
        assert!(waited.is_err());
    }
}

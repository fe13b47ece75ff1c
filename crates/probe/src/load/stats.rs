//! Measurement helpers: latency percentiles, process CPU time and RSS from /proc.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{LoadError, Result};

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A histogram for 1 µs .. 60 s with 3 significant figures.
pub fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(LoadError::Histogram)
}

/// Records `d` in µs, saturating at the histogram's upper bound.
pub fn record(h: &mut Histogram<u64>, d: Duration) -> Result<()> {
    let micros = (d.as_micros() as u64).clamp(1, h.high());
    h.record(micros).map_err(|source| LoadError::Record { micros, source })
}

/// This process's CPU time, to report the generator's own CPU share.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl CpuClock {
    pub fn start() -> Self {
        CpuClock {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    /// CPU time used since `start` as a percentage of one core (200 = two cores busy).
    pub fn percent(&self) -> Option<f64> {
        let used = process_cpu_time()?.checked_sub(self.cpu?)?;
        let wall = self.wall.elapsed().as_secs_f64();
        (wall > 0.0).then(|| used.as_secs_f64() / wall * 100.0)
    }
}

/// utime + stime of this process from /proc/self/stat.
pub fn process_cpu_time() -> Option<Duration> {
    cpu_time_at("/proc/self/stat")
}

/// utime + stime of process `pid` from /proc/<pid>/stat: what a server used while a load ran.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_at(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a /proc stat file (USER_HZ is 100 on Linux).
fn cpu_time_at(stat: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Resident set size of `pid` in KiB (VmRSS from /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_recorded_values() {
        let mut h = latency_histogram().unwrap();
        for us in 1..=1000 {
            record(&mut h, Duration::from_micros(us)).unwrap();
        }
        record(&mut h, Duration::from_secs(3600)).unwrap();
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1001);
        assert!((499..=501).contains(&p.p50_us), "{p:?}");
        assert!(p.max_us >= 59_000_000, "{p:?}");
    }

    #[test]
    fn own_rss_and_cpu_time_are_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(process_cpu_time().is_some());
        assert!(cpu_time(std::process::id()).is_some());
    }
}

//! What the bench reads about the machine and its processes: file limits, load average, CPU model,
//! and a server's CPU use while a load runs (through the load generator's own /proc readers).

use std::time::Instant;

use probe::load::stats::cpu_time;

/// (soft, hard) RLIMIT_NOFILE of this process, from /proc/self/limits.
pub fn nofile_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_nofile(&limits)
}

fn parse_nofile(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |s: Option<&str>| {
        s.map(|s| {
            if s == "unlimited" {
                u64::MAX
            } else {
                s.parse().unwrap_or(0)
            }
        })
    };
    Some((parse(fields.next())?, parse(fields.next())?))
}

/// Measures `pid`'s CPU share (% of one core) while `f` runs.
pub fn with_cpu<T>(pid: u32, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Option<CpuUse>)> {
    let before = cpu_time(pid);
    let start = Instant::now();
    let out = f()?;
    let wall = start.elapsed().as_secs_f64();
    let used = before.zip(cpu_time(pid)).filter(|_| wall > 0.0).map(|(b, a)| {
        let seconds = a.saturating_sub(b).as_secs_f64();
        CpuUse {
            seconds,
            percent: seconds / wall * 100.0,
        }
    });
    Ok((out, used))
}

/// CPU a process used while something ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub seconds: f64,
    /// Of one core, over the wall time.
    pub percent: f64,
}

/// The 1, 5 and 15 minute load averages, e.g. "0.52 0.61 0.70".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// CPU model, logical cores, kernel release.
pub fn machine() -> (String, usize, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    (model, cores, kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nofile_limits_parse_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 20000                files     \n";
        assert_eq!(parse_nofile(text), Some((1024, 20000)));
        assert!(nofile_limits().is_some_and(|(s, h)| s <= h));
    }

    #[test]
    fn cpu_use_is_measured_while_the_work_runs() {
        let (value, used) = with_cpu(std::process::id(), || {
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed().as_millis() < 50 {
                x = x.wrapping_add(1);
            }
            Ok(x)
        })
        .unwrap();
        assert!(value > 0);
        assert!(used.is_some_and(|u| u.percent >= 0.0), "{used:?}");
    }
}

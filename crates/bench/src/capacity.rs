//! Part 3: how many idle connections ws-echo holds at once, and what they cost in RSS.
//!
//! Every connection takes a file descriptor in the server and another in the
//! generator, and no process may open more than RLIMIT_NOFILE. When the target
//! is above what one process may open (20,000 in this sandbox, which lacks
//! CAP_SYS_RESOURCE), ws-echo runs as several processes on the server core, the
//! way several pods share a node, each with its own generator process on the
//! generator core. The figure is the servers' own count
//! (`websocket_connections_active` on /metrics), sampled while the generators
//! hold, so connections are only counted while they are open at the same time.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;

use probe::load::{IdleResult, rss_kib};

use crate::launch::{Generator, Launcher, Server};
use crate::result::{Capacity, Settings};
use crate::run::{FD_MARGIN, Paths, generator_args, idle_args, ws_echo_config};

/// The first client source address of shard `k` is 127.0.(10 + 8k).1: shards never share one.
const SOURCE_BLOCK: u32 = 8 * 256;
/// Connections per source address: below the default ephemeral range (32768–60999).
const PER_SOURCE: usize = 20_000;
/// How often the servers' connection counts are read while generators hold.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The most connections open at once across the shards, and the servers' RSS then.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Peak {
    open: u64,
    rss_kib: Option<u64>,
}

pub fn run(launcher: &Launcher, paths: &Paths, s: &Settings) -> anyhow::Result<Capacity> {
    let per_process = usize::try_from(launcher.nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_MARGIN)
        .min(s.capacity_per_process.unwrap_or(usize::MAX))
        .max(1);
    let shares = shares(s.capacity_target, per_process);
    let hold = if s.quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    eprintln!(
        "bench: capacity: {} idle connections, {} ws-echo process(es) of at most {per_process}",
        s.capacity_target,
        shares.len()
    );
    let mut servers = Vec::new();
    for (k, share) in shares.iter().enumerate() {
        let name = format!("ws-echo-capacity-{k}");
        servers.push(launcher.ws_echo(&name, &paths.ws_echo, &ws_echo_config(*share), &paths.logs)?);
    }
    let rss_before = total_rss(&servers);
    let mut generators: Vec<Generator> = Vec::new();
    for (k, (share, server)) in shares.iter().zip(&servers).enumerate() {
        let addr = server.addr()?;
        let sources = s
            .source_addresses
            .max(u32::try_from(share / PER_SOURCE + 1).unwrap_or(u32::MAX));
        let first = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 10, 1)) + SOURCE_BLOCK * k as u32);
        let url = format!("ws://{addr}/ws?hello=false");
        let args = generator_args(addr, &url, Some((sources, first)), &idle_args(*share, hold, None));
        generators.push(launcher.spawn_generator(&paths.testbed, &args)?);
    }

    // Sample until every generator has finished its hold (bounded: ramp-up plus hold plus slack).
    let deadline = Instant::now() + hold + Duration::from_secs(120);
    let mut peak = Peak::default();
    while generators.iter_mut().any(Generator::running) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the capacity generators were still running after {:?}",
            hold + Duration::from_secs(120)
        );
        let open: u64 = servers
            .iter()
            .filter_map(|srv| srv.addr.and_then(|a| active_connections(a).ok()))
            .sum();
        if open > peak.open {
            peak = Peak {
                open,
                rss_kib: total_rss(&servers),
            };
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let outs: Vec<IdleResult> = generators
        .into_iter()
        .map(Generator::finish)
        .collect::<anyhow::Result<_>>()?;
    drop(servers);

    let last_error = outs.iter().rev().find_map(|o| o.last_error.clone());
    let limited_by = if peak.open < s.capacity_target as u64 {
        last_error.or_else(|| Some("connections ended before all were open at once".to_owned()))
    } else {
        None
    };
    Ok(Capacity {
        target: s.capacity_target,
        attempted: shares.iter().sum(),
        connected: outs.iter().map(|o| o.connected).sum(),
        held: peak.open,
        generator_open_at_end: Some(outs.iter().map(|o| o.open_at_end).sum()),
        failed: outs.iter().map(|o| o.failed).sum(),
        server_processes: shares.len(),
        per_process_limit: Some(per_process),
        source_addresses: outs.iter().map(|o| o.source_addresses as u64).sum(),
        ramp_s: outs.iter().map(|o| o.ramp_s).fold(0.0, f64::max),
        server_rss_before_kib: rss_before,
        server_rss_after_kib: peak.rss_kib,
        kib_per_connection: match (rss_before, peak.rss_kib) {
            (Some(b), Some(a)) if peak.open > 0 => Some((a as f64 - b as f64) / peak.open as f64),
            _ => None,
        },
        limited_by,
    })
}

/// Splits `total` into as few near-equal shares as keep each at most `per_process`.
fn shares(total: usize, per_process: usize) -> Vec<usize> {
    let n = total.div_ceil(per_process).max(1);
    (0..n).map(|k| total / n + usize::from(k < total % n)).collect()
}

/// The sum of the servers' resident sets; `None` if any cannot be read.
fn total_rss(servers: &[Server]) -> Option<u64> {
    servers.iter().map(|s| rss_kib(s.pid)).sum()
}

/// ws-echo's own count of open WebSocket connections, from its /metrics.
fn active_connections(addr: SocketAddr) -> anyhow::Result<u64> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    gauge(&body, "websocket_connections_active")
        .with_context(|| format!("no websocket_connections_active in {addr}/metrics"))
}

/// The value of an unlabelled sample `name` in a Prometheus text exposition.
fn gauge(exposition: &str, name: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_stay_under_the_per_process_limit_and_add_up() {
        assert_eq!(shares(50_000, 19_744), vec![16_667, 16_667, 16_666]);
        assert_eq!(shares(10_000, 19_744), vec![10_000]);
        assert_eq!(shares(39_488, 19_744), vec![19_744, 19_744]);
        for (total, limit) in [(50_000, 19_744), (7, 3), (1, 1)] {
            let s = shares(total, limit);
            assert_eq!(s.iter().sum::<usize>(), total);
            assert!(s.iter().all(|&x| x <= limit), "{s:?}");
        }
    }

    #[test]
    fn the_active_gauge_is_read_from_the_exposition() {
        let text = "# HELP websocket_connections_active WebSocket connections currently open\n\
                    # TYPE websocket_connections_active gauge\n\
                    websocket_connections_active 16667\n\
                    websocket_connections_total 16670\n";
        assert_eq!(gauge(text, "websocket_connections_active"), Some(16_667));
        assert_eq!(gauge(text, "websocket_connections"), None);
        assert_eq!(gauge("", "websocket_connections_active"), None);
    }
}

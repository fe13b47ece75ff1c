//! The benchmark's results as data (what bench.json holds), and the pure arithmetic on them:
//! medians of rounds, ratios against the anchor, added proxy latency.

use probe::load::Percentiles;
use serde::{Deserialize, Serialize};

/// Everything one `cargo xtask bench` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub machine: Machine,
    pub settings: Settings,
    /// Part 1: ws-echo and the anchors, each run the same way; the first anchor is the ratio base.
    pub echo: Vec<EchoServer>,
    /// Part 2: ws-echo behind each local data plane.
    pub proxies: Vec<ProxyFigures>,
    /// Part 3: idle connections ws-echo holds.
    pub capacity: Option<Capacity>,
    /// Part 4: each data plane's memory and CPU per WebSocket, and how many one instance holds.
    #[serde(default)]
    pub dataplanes: Option<crate::dataplanes::DataPlaneCapacity>,
    /// Part 5: reconnect storms through each data plane.
    #[serde(default)]
    pub storms: Option<crate::storm::Storms>,
    /// Things the reader must know to trust the figures (no pinning, limits, failures).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// How server and generator were placed, e.g. "server on core 0, generator on core 1 (taskset)".
    pub pinning: String,
    /// The RLIMIT_NOFILE children ran with.
    pub nofile_limit: u64,
    /// /proc/loadavg's 1, 5 and 15 minute figures when the run started: above the core count,
    /// other work competed for the cores and absolute figures are low (ratios still hold better).
    #[serde(default)]
    pub load_average: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub rounds: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rtt_connections: usize,
    pub message_bytes: usize,
    pub idle_connections: usize,
    pub churn_concurrency: usize,
    pub source_addresses: u32,
    pub capacity_target: usize,
    /// `--capacity-per-process`: a cap below what RLIMIT_NOFILE allows.
    #[serde(default)]
    pub capacity_per_process: Option<usize>,
    pub quick: bool,
}

/// One echo server's figures in one round.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EchoRound {
    pub msgs_per_sec: f64,
    pub latency: Latency,
    /// Server RSS growth per open idle connection.
    pub kib_per_idle_connection: Option<f64>,
    pub idle_open: u64,
    pub handshakes_per_sec: f64,
    /// The load generator's CPU over the rtt window, % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// The server's CPU over the whole rtt run, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// The generator's CPU over the handshake run, % of one core.
    #[serde(default)]
    pub churn_generator_cpu_percent: Option<f64>,
    /// The server's CPU over the handshake run, % of one core.
    #[serde(default)]
    pub churn_server_cpu_percent: Option<f64>,
    /// Server CPU time per completed handshake (upgrade and close), µs: what a
    /// handshake costs the server even when the generator's core is the limit.
    #[serde(default)]
    pub server_cpu_us_per_handshake: Option<f64>,
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Latency {
    /// (label, value) in the order the chart draws them.
    pub fn points(&self) -> [(&'static str, f64); 4] {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p99", self.p99_us),
            ("p99.9", self.p999_us),
        ]
    }

    pub fn median_of(rounds: &[Latency]) -> Latency {
        let m = |f: fn(&Latency) -> f64| median(rounds.iter().map(f)).unwrap_or_default();
        Latency {
            p50_us: m(|l| l.p50_us),
            p90_us: m(|l| l.p90_us),
            p99_us: m(|l| l.p99_us),
            p999_us: m(|l| l.p999_us),
        }
    }
}

/// The load generator's percentiles (whole µs), as the tables and the chart take them.
impl From<Percentiles> for Latency {
    fn from(p: Percentiles) -> Self {
        Latency {
            p50_us: p.p50_us as f64,
            p90_us: p.p90_us as f64,
            p99_us: p.p99_us as f64,
            p999_us: p.p999_us as f64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoServer {
    /// Short name: "ws-echo", "tokio-tungstenite", "python-websockets".
    pub name: String,
    /// What it is, for the table: "plain tokio-tungstenite 0.30 echo (default config)".
    pub label: String,
    pub rounds: Vec<EchoRound>,
    /// Field-wise medians of `rounds`.
    pub median: EchoRound,
}

impl EchoServer {
    pub fn new(name: &str, label: String, rounds: Vec<EchoRound>) -> Self {
        let median = EchoRound::median_of(&rounds);
        EchoServer {
            name: name.to_owned(),
            label,
            rounds,
            median,
        }
    }
}

impl EchoRound {
    /// Field-wise medians; an optional field's median skips rounds that lack it.
    pub fn median_of(rounds: &[EchoRound]) -> EchoRound {
        let m = |f: fn(&EchoRound) -> f64| median(rounds.iter().map(f)).unwrap_or_default();
        let mo = |f: fn(&EchoRound) -> Option<f64>| median(rounds.iter().filter_map(f));
        let latencies: Vec<Latency> = rounds.iter().map(|r| r.latency).collect();
        EchoRound {
            msgs_per_sec: m(|r| r.msgs_per_sec),
            latency: Latency::median_of(&latencies),
            kib_per_idle_connection: mo(|r| r.kib_per_idle_connection),
            idle_open: median(rounds.iter().map(|r| r.idle_open as f64)).unwrap_or_default() as u64,
            handshakes_per_sec: m(|r| r.handshakes_per_sec),
            generator_cpu_percent: mo(|r| r.generator_cpu_percent),
            server_cpu_percent: mo(|r| r.server_cpu_percent),
            churn_generator_cpu_percent: mo(|r| r.churn_generator_cpu_percent),
            churn_server_cpu_percent: mo(|r| r.churn_server_cpu_percent),
            server_cpu_us_per_handshake: mo(|r| r.server_cpu_us_per_handshake),
        }
    }
}

/// `value / base` for the table's "× anchor" columns: how many times the anchor's figure.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Ratios {
    pub msgs_per_sec: Option<f64>,
    pub p99: Option<f64>,
    pub kib_per_idle_connection: Option<f64>,
    pub handshakes_per_sec: Option<f64>,
    pub server_cpu_per_handshake: Option<f64>,
}

impl Ratios {
    pub fn of(value: &EchoRound, base: &EchoRound) -> Ratios {
        Ratios {
            msgs_per_sec: ratio(value.msgs_per_sec, base.msgs_per_sec),
            p99: ratio(value.latency.p99_us, base.latency.p99_us),
            kib_per_idle_connection: value
                .kib_per_idle_connection
                .zip(base.kib_per_idle_connection)
                .and_then(|(v, b)| ratio(v, b)),
            handshakes_per_sec: ratio(value.handshakes_per_sec, base.handshakes_per_sec),
            server_cpu_per_handshake: value
                .server_cpu_us_per_handshake
                .zip(base.server_cpu_us_per_handshake)
                .and_then(|(v, b)| ratio(v, b)),
        }
    }
}

/// Direct to the pod and through the data plane, measured back to back.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProxyRound {
    pub direct_msgs_per_sec: f64,
    pub direct: Latency,
    pub proxied_msgs_per_sec: f64,
    pub proxied: Latency,
}

impl ProxyRound {
    pub fn added_p50_us(&self) -> f64 {
        self.proxied.p50_us - self.direct.p50_us
    }

    pub fn added_p99_us(&self) -> f64 {
        self.proxied.p99_us - self.direct.p99_us
    }

    pub fn throughput_ratio(&self) -> Option<f64> {
        ratio(self.proxied_msgs_per_sec, self.direct_msgs_per_sec)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyFigures {
    /// "nginx", "haproxy", "traefik".
    pub controller: String,
    /// The data plane's version string.
    pub data_plane: String,
    pub rounds: Vec<ProxyRound>,
    pub direct_msgs_per_sec: f64,
    pub direct: Latency,
    pub proxied_msgs_per_sec: f64,
    pub proxied: Latency,
    /// Medians of the per-round differences and ratios (each round's pair ran back to back).
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    pub throughput_ratio: Option<f64>,
}

impl ProxyFigures {
    pub fn new(controller: &str, data_plane: String, rounds: Vec<ProxyRound>) -> Self {
        let direct: Vec<Latency> = rounds.iter().map(|r| r.direct).collect();
        let proxied: Vec<Latency> = rounds.iter().map(|r| r.proxied).collect();
        ProxyFigures {
            controller: controller.to_owned(),
            data_plane,
            direct_msgs_per_sec: median(rounds.iter().map(|r| r.direct_msgs_per_sec)).unwrap_or_default(),
            direct: Latency::median_of(&direct),
            proxied_msgs_per_sec: median(rounds.iter().map(|r| r.proxied_msgs_per_sec)).unwrap_or_default(),
            proxied: Latency::median_of(&proxied),
            added_p50_us: median(rounds.iter().map(ProxyRound::added_p50_us)).unwrap_or_default(),
            added_p99_us: median(rounds.iter().map(ProxyRound::added_p99_us)).unwrap_or_default(),
            throughput_ratio: median(rounds.iter().filter_map(ProxyRound::throughput_ratio)),
            rounds,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// What the run aimed at (the flag).
    pub target: usize,
    /// Connections dialled, over all server processes.
    pub attempted: usize,
    pub connected: u64,
    /// The most open at once, by the servers' own count: the figure.
    pub held: u64,
    /// Open at the end of the generators' holds, by their count.
    #[serde(default)]
    pub generator_open_at_end: Option<u64>,
    pub failed: u64,
    /// ws-echo processes the connections were spread over (one unless RLIMIT_NOFILE forced more).
    #[serde(default = "one")]
    pub server_processes: usize,
    /// Connections one process could take under RLIMIT_NOFILE.
    #[serde(default)]
    pub per_process_limit: Option<usize>,
    pub source_addresses: u64,
    pub ramp_s: f64,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub kib_per_connection: Option<f64>,
    /// Why `attempted` is below `target`, or the last connection error.
    pub limited_by: Option<String>,
}

fn one() -> usize {
    1
}

/// The median; the mean of the middle two for an even count; `None` when empty or not finite.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `value / base`, `None` when the base is zero or either side is not finite.
pub fn ratio(value: f64, base: f64) -> Option<f64> {
    (base != 0.0 && base.is_finite() && value.is_finite()).then(|| value / base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_median(values: &[f64], expected: Option<f64>) {
        assert_eq!(median(values.iter().copied()), expected, "median of {values:?}");
    }

    #[test]
    fn median_takes_the_middle_round_whatever_the_order() {
        check_median(&[3.0, 1.0, 2.0], Some(2.0));
        check_median(&[10.0, 1000.0, 11.0], Some(11.0));
        check_median(&[4.0, 1.0, 3.0, 2.0], Some(2.5));
        check_median(&[7.0], Some(7.0));
        check_median(&[], None);
        check_median(&[f64::NAN, 5.0], Some(5.0));
    }

    #[test]
    fn ratio_refuses_a_zero_base() {
        assert_eq!(ratio(5.0, 2.0), Some(2.5));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(f64::INFINITY, 1.0), None);
    }

    fn round(msgs: f64, p99: f64, kib: Option<f64>, hs: f64) -> EchoRound {
        EchoRound {
            msgs_per_sec: msgs,
            latency: Latency {
                p50_us: p99 / 2.0,
                p90_us: p99 / 1.5,
                p99_us: p99,
                p999_us: p99 * 2.0,
            },
            kib_per_idle_connection: kib,
            idle_open: 10_000,
            handshakes_per_sec: hs,
            generator_cpu_percent: Some(50.0),
            server_cpu_percent: None,
            churn_generator_cpu_percent: None,
            churn_server_cpu_percent: None,
            server_cpu_us_per_handshake: None,
        }
    }

    #[test]
    fn echo_medians_are_taken_per_field_not_per_round() {
        let server = EchoServer::new(
            "ws-echo",
            "ws-echo".into(),
            vec![
                round(100.0, 900.0, Some(5.0), 30.0),
                round(300.0, 100.0, None, 10.0),
                round(200.0, 500.0, Some(7.0), 20.0),
            ],
        );
        assert_eq!(server.median.msgs_per_sec, 200.0);
        assert_eq!(server.median.latency.p99_us, 500.0);
        assert_eq!(server.median.latency.p999_us, 1000.0);
        assert_eq!(server.median.kib_per_idle_connection, Some(6.0));
        assert_eq!(server.median.handshakes_per_sec, 20.0);
        assert_eq!(server.median.server_cpu_percent, None);
    }

    #[test]
    fn ratios_compare_against_the_anchor() {
        let anchor = round(100.0, 1000.0, Some(130.0), 16.0);
        let echo = round(120.0, 800.0, Some(5.2), 15.2);
        let r = Ratios::of(&echo, &anchor);
        let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
        assert!(close(r.msgs_per_sec, 1.2), "{r:?}");
        assert!(close(r.p99, 0.8), "{r:?}");
        assert!(close(r.kib_per_idle_connection, 0.04), "{r:?}");
        assert!(close(r.handshakes_per_sec, 0.95), "{r:?}");
        let unmeasured = round(100.0, 1000.0, None, 16.0);
        assert_eq!(Ratios::of(&echo, &unmeasured).kib_per_idle_connection, None);
    }

    #[test]
    fn proxy_overhead_is_the_median_of_paired_rounds() {
        let lat = |p50: f64, p99: f64| Latency {
            p50_us: p50,
            p90_us: p50,
            p99_us: p99,
            p999_us: p99,
        };
        let pair = |d50, d99, dm, p50, p99, pm| ProxyRound {
            direct_msgs_per_sec: dm,
            direct: lat(d50, d99),
            proxied_msgs_per_sec: pm,
            proxied: lat(p50, p99),
        };
        let f = ProxyFigures::new(
            "nginx",
            "nginx/1.31.3".into(),
            vec![
                pair(100.0, 400.0, 1000.0, 150.0, 600.0, 500.0),
                // A noisy round: both sides slow; the pair still shows the overhead.
                pair(300.0, 900.0, 400.0, 360.0, 1200.0, 300.0),
                pair(110.0, 420.0, 1100.0, 170.0, 640.0, 440.0),
            ],
        );
        assert_eq!(f.added_p50_us, 60.0);
        assert_eq!(f.added_p99_us, 220.0);
        assert_eq!(f.throughput_ratio, Some(0.5));
        assert_eq!(f.direct.p50_us, 110.0);
        assert_eq!(f.proxied_msgs_per_sec, 440.0);
    }
}

//! Settings of the server: flags with environment-variable equivalents (clap), and their defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// Default `--listen` address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Every setting of ws-echo. The same struct is the CLI (`ws-echo --help`) and
/// the library's configuration for [`crate::spawn`].
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
#[command(
    name = "ws-echo",
    version,
    about = "WebSocket echo server that plays a pod behind an ingress controller"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is logged as `listening addr=…`).
    #[arg(long, env = "LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Name this server reports as `pod` in hello/tick messages, sessions and logs (default: the hostname).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Send `{"type":"tick",…}` on every WebSocket at this interval (`0` = off).
    #[arg(long, env = "TICK_INTERVAL", default_value = "0", value_parser = humantime::parse_duration)]
    pub tick_interval: Duration,

    /// Send a WebSocket ping on every connection at this interval (`0` = off).
    #[arg(long, env = "PING_INTERVAL", default_value = "0", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// How long `GET /drain` (the preStop hook) holds before answering 200; readiness fails from its start.
    #[arg(long, env = "DRAIN_DELAY", default_value = "15s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After SIGTERM, keep serving existing WebSockets this long before sending Close 1001.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Ignore SIGTERM (test aid: only SIGKILL stops the process; Ctrl-C still works).
    #[arg(long, env = "IGNORE_SIGTERM")]
    pub ignore_sigterm: bool,

    /// Most concurrent WebSockets; upgrades beyond it get 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Largest message (and frame) in bytes a client may send; larger ones get Close 1009.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub max_message_size: usize,

    /// Close HTTP connections whose request headers take longer than this (slowloris defence).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Log line format; the filter comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, event fields at the top level.
    Json,
    /// Human-readable `key=value` lines.
    #[default]
    Text,
}

impl Default for Config {
    /// The CLI defaults (with no environment variables set).
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("default listen address is valid"),
            pod_name: None,
            tick_interval: Duration::ZERO,
            ping_interval: Duration::ZERO,
            drain_delay: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(5),
            ignore_sigterm: false,
            max_connections: 10_000,
            max_message_size: 1 << 20,
            header_read_timeout: Duration::from_secs(10),
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// The pod name: `--pod-name`/`POD_NAME`, else the hostname, else `ws-echo`.
    pub fn pod(&self) -> String {
        if let Some(name) = self.pod_name.as_ref().filter(|n| !n.is_empty()) {
            return name.clone();
        }
        hostname().unwrap_or_else(|| "ws-echo".to_owned())
    }

    /// The command line that starts ws-echo with this configuration: `--listen` always, then every
    /// other setting that differs from [`Config::default`], each as one `--flag=value` argument
    /// (what both a `Command` and a container's `args` take). Started with these and no ws-echo
    /// environment variables, ws-echo parses back exactly `self`.
    pub fn to_args(&self) -> Vec<String> {
        let d = Config::default();
        let mut args = vec![format!("--listen={}", self.listen)];
        args.extend(self.pod_name.as_ref().map(|pod| format!("--pod-name={pod}")));
        let durations = [
            ("tick-interval", self.tick_interval, d.tick_interval),
            ("ping-interval", self.ping_interval, d.ping_interval),
            ("drain-delay", self.drain_delay, d.drain_delay),
            ("shutdown-grace", self.shutdown_grace, d.shutdown_grace),
            ("header-read-timeout", self.header_read_timeout, d.header_read_timeout),
        ];
        for (name, value, _) in durations.into_iter().filter(|(_, value, default)| value != default) {
            args.push(format!("--{name}={}", duration_arg(value)));
        }
        let sizes = [
            ("max-connections", self.max_connections, d.max_connections),
            ("max-message-size", self.max_message_size, d.max_message_size),
        ];
        for (name, value, _) in sizes.into_iter().filter(|(_, value, default)| value != default) {
            args.push(format!("--{name}={value}"));
        }
        if self.log_format != d.log_format {
            let format = clap::ValueEnum::to_possible_value(&self.log_format).expect("no variant is skipped");
            args.push(format!("--log-format={}", format.get_name()));
        }
        if self.ignore_sigterm {
            args.push("--ignore-sigterm".to_owned());
        }
        args
    }
}

/// A duration as ws-echo's flags spell it, exactly and in the largest whole unit: `3s`, `1500ms`,
/// `250us`, `7ns`; `0s` for zero. humantime (ws-echo's parser, and the load generator's) reads it
/// back unchanged, and so do Go (Traefik) and HAProxy for whole seconds and milliseconds.
pub fn duration_arg(d: Duration) -> String {
    let nanos = d.as_nanos();
    let units: [(u128, &str); 4] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us"), (1, "ns")];
    let (per, unit) = units
        .into_iter()
        .find(|(per, _)| nanos.is_multiple_of(*per))
        .expect("every count of nanoseconds is a multiple of one");
    format!("{}{unit}", nanos / per)
}

/// The machine's hostname, as Kubernetes sets it to the pod name.
fn hostname() -> Option<String> {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_file = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_env
        .or_else(from_file)
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn cli_defaults_match_default_impl() {
        let parsed = Config::try_parse_from(["ws-echo"]).unwrap();
        // Environment variables of the test process could override defaults; compare only when unset.
        if std::env::vars().all(|(k, _)| !KNOWN_ENV.contains(&k.as_str())) {
            assert_eq!(parsed, Config::default());
        }
    }

    const KNOWN_ENV: &[&str] = &[
        "LISTEN",
        "POD_NAME",
        "TICK_INTERVAL",
        "PING_INTERVAL",
        "DRAIN_DELAY",
        "SHUTDOWN_GRACE",
        "IGNORE_SIGTERM",
        "MAX_CONNECTIONS",
        "MAX_MESSAGE_SIZE",
        "HEADER_READ_TIMEOUT",
        "LOG_FORMAT",
    ];

    #[test]
    fn flags_parse_durations_and_formats() {
        let parsed = Config::try_parse_from([
            "ws-echo",
            "--listen",
            "127.0.0.1:0",
            "--pod-name",
            "pod-a",
            "--tick-interval",
            "250ms",
            "--ping-interval",
            "1s",
            "--drain-delay",
            "0",
            "--shutdown-grace",
            "2s",
            "--ignore-sigterm",
            "--max-connections",
            "3",
            "--max-message-size",
            "1024",
            "--header-read-timeout",
            "500ms",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(parsed.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(parsed.pod(), "pod-a");
        assert_eq!(parsed.tick_interval, Duration::from_millis(250));
        assert_eq!(parsed.ping_interval, Duration::from_secs(1));
        assert_eq!(parsed.drain_delay, Duration::ZERO);
        assert_eq!(parsed.shutdown_grace, Duration::from_secs(2));
        assert!(parsed.ignore_sigterm);
        assert_eq!(parsed.max_connections, 3);
        assert_eq!(parsed.max_message_size, 1024);
        assert_eq!(parsed.header_read_timeout, Duration::from_millis(500));
        assert_eq!(parsed.log_format, LogFormat::Json);
    }

    #[test]
    fn durations_are_spelled_exactly_in_the_largest_whole_unit() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(15), "15s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(2_000_250), "2000250us"),
            (Duration::from_nanos(7), "7ns"),
        ] {
            assert_eq!(duration_arg(d), want);
            assert_eq!(humantime::parse_duration(want).unwrap(), d, "{want}");
        }
    }

    #[test]
    fn to_args_parses_back_into_the_same_config() {
        let defaults = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(defaults.to_args(), ["--listen=127.0.0.1:0"]);
        let changed = Config {
            pod_name: Some("pod-a".into()),
            tick_interval: Duration::from_millis(250),
            ping_interval: Duration::from_secs(1),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_millis(2500),
            ignore_sigterm: true,
            max_connections: 3,
            max_message_size: 1024,
            header_read_timeout: Duration::from_millis(500),
            log_format: LogFormat::Json,
            ..defaults.clone()
        };
        assert_eq!(
            changed.to_args().join(" "),
            "--listen=127.0.0.1:0 --pod-name=pod-a --tick-interval=250ms --ping-interval=1s --drain-delay=0s \
             --shutdown-grace=2500ms --header-read-timeout=500ms --max-connections=3 --max-message-size=1024 \
             --log-format=json --ignore-sigterm"
        );
        if std::env::vars().all(|(k, _)| !KNOWN_ENV.contains(&k.as_str())) {
            for config in [defaults, changed] {
                let argv = std::iter::once("ws-echo".to_owned()).chain(config.to_args());
                assert_eq!(Config::try_parse_from(argv).unwrap(), config);
            }
        }
    }

    #[test]
    fn pod_falls_back_to_a_non_empty_name() {
        let config = Config {
            pod_name: Some(String::new()),
            ..Config::default()
        };
        assert!(!config.pod().is_empty());
    }
}

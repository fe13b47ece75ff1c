//! `bench-dataplane`'s arguments, its stdin control protocol, and what it reads from `/proc` and
//! the pods' `/metrics`: everything but the deployment itself, so it can be tested without one.
//!
//! The protocol: one command per line on stdin, one JSON line on stdout per line read, in order.
//! A reply is `{"command": "<name>", "ok": true, ...fields}` or
//! `{"command": "<name>", "ok": false, "error": "..."}`; see [`Command`] for each command's fields.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use model::{Controller, Drain, IngressSpec};
use serde_json::{Map, Value, json};

pub const USAGE: &str = "usage: bench-dataplane <nginx|traefik|haproxy|envoy-gateway> \
                         [--pods N] [--drain-limit SECS] [--prestop SECS] [--backend-connections N]";

/// The most pods a deployment may have: the local environment gives each pod its own
/// 127.0.1.x (254 of them), and a rollout surges new pods while the old ones drain.
pub const MAX_PODS: u32 = 127;

/// How long after the preStop a pod started with `--prestop` may take to close its WebSockets
/// before SIGKILL: ws-echo waits at most 2 s for the close handshakes after its Close 1001.
pub const CLOSE_MARGIN: Duration = Duration::from_secs(10);

/// The metric each pod's `/metrics` counts its open WebSockets with.
pub const ACTIVE_METRIC: &str = "websocket_connections_active";

/// `bench-dataplane`'s command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub controller: Controller,
    /// `--pods N`: the Deployment's replicas (default 1).
    pub pods: u32,
    /// `--drain-limit SECS`: how long a replaced data-plane process may keep the connections it
    /// holds ([`IngressSpec::with_data_plane_drain_limit`]); the controller's default otherwise.
    pub drain_limit: Option<Duration>,
    /// `--prestop SECS`: the pods' preStop, after which a terminating pod closes its WebSockets
    /// with 1001 at once ([`prestop_drain`]); [`Drain::default`] otherwise.
    pub prestop: Option<Duration>,
    /// `--backend-connections N`: [`IngressSpec::with_backend_connections`] (where the controller
    /// has such a limit; the others refuse the spec).
    pub backend_connections: Option<u32>,
}

/// Why the command line was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// `-h` / `--help`.
    Help,
    Invalid(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Help => f.write_str(USAGE),
            ArgsError::Invalid(why) => write!(f, "{why}\n{USAGE}"),
        }
    }
}

impl std::error::Error for ArgsError {}

fn invalid(why: impl Into<String>) -> ArgsError {
    ArgsError::Invalid(why.into())
}

impl Args {
    /// Parses the arguments after the program name. Options take their value as the next
    /// argument or after `=` (`--pods 3`, `--pods=3`), in any order around the controller.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, ArgsError> {
        let mut controller = None;
        let mut pods = None;
        let mut drain_limit = None;
        let mut prestop = None;
        let mut backend_connections = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(ArgsError::Help);
            }
            if !arg.starts_with('-') {
                if controller.is_some() {
                    return Err(invalid(format!("unexpected argument {arg:?}")));
                }
                controller = Some(arg.parse::<Controller>().map_err(|e| invalid(e.to_string()))?);
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let slot = match flag.as_str() {
                "--pods" => Slot::Pods(&mut pods),
                "--drain-limit" => Slot::Secs(&mut drain_limit, false),
                "--prestop" => Slot::Secs(&mut prestop, true),
                "--backend-connections" => Slot::Count(&mut backend_connections),
                _ => return Err(invalid(format!("unknown option {flag:?}"))),
            };
            let value = match inline {
                Some(value) => value,
                None => args.next().ok_or_else(|| invalid(format!("{flag} needs a value")))?,
            };
            slot.set(&flag, &value)?;
        }
        Ok(Args {
            controller: controller.ok_or_else(|| invalid("missing <controller>"))?,
            pods: pods.unwrap_or(1),
            drain_limit,
            prestop,
            backend_connections,
        })
    }

    /// The spec this deploys: `pods` replicas, the drain limit and the pods' drain as asked.
    pub fn spec(&self) -> IngressSpec {
        let mut spec = IngressSpec::new(self.pods);
        if let Some(limit) = self.drain_limit {
            spec = spec.with_data_plane_drain_limit(limit);
        }
        if let Some(prestop) = self.prestop {
            spec = spec.with_drain(prestop_drain(prestop));
        }
        if let Some(most) = self.backend_connections {
            spec = spec.with_backend_connections(most);
        }
        spec
    }
}

/// Where an option's value goes.
enum Slot<'a> {
    Pods(&'a mut Option<u32>),
    /// A whole number, 1 or more.
    Count(&'a mut Option<u32>),
    /// Seconds; whether zero is allowed.
    Secs(&'a mut Option<Duration>, bool),
}

impl Slot<'_> {
    fn set(self, flag: &str, value: &str) -> Result<(), ArgsError> {
        match self {
            Slot::Pods(slot) => {
                let n: u32 = (value.parse().ok())
                    .filter(|n| (1..=MAX_PODS).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{flag} {value:?}: expected a whole number from 1 to {MAX_PODS}"
                        ))
                    })?;
                set_once(slot, n, flag)
            }
            Slot::Count(slot) => {
                let n: u32 = (value.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(format!("{flag} {value:?}: expected a whole number, 1 or more")))?;
                set_once(slot, n, flag)
            }
            Slot::Secs(slot, zero_ok) => {
                let secs = (value.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && (*s > 0.0 || (zero_ok && *s == 0.0)))
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| {
                        let least = if zero_ok { "0 or more" } else { "more than 0" };
                        invalid(format!("{flag} {value:?}: expected seconds, {least}"))
                    })?;
                set_once(slot, secs, flag)
            }
        }
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, flag: &str) -> Result<(), ArgsError> {
    if slot.is_some() {
        return Err(invalid(format!("{flag} given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// The pods' drain for `--prestop`: preStop (`GET /drain`) holds the pod `prestop`, then SIGTERM,
/// and ws-echo sends Close 1001 on every WebSocket at once (no shutdown grace); SIGKILL only if
/// that outlasts [`CLOSE_MARGIN`].
pub fn prestop_drain(prestop: Duration) -> Drain {
    Drain {
        prestop_delay: prestop,
        shutdown_grace: Duration::ZERO,
        termination_grace: prestop + CLOSE_MARGIN,
    }
}

/// The commands stdin takes, one per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The data plane's processes now: `"main": pid, "workers": [pid, ...]` (read afresh: a
    /// reload replaces the workers).
    Pids,
    /// `Deployment::apply_controller_change`: `"after_ms"` until the data plane ran with it,
    /// `"reloads"`: whether the controller applies that change by reloading its data plane.
    Reload,
    /// `Deployment::rollout_restart`: `"after_ms"` until every old pod is gone, `"pods"` now.
    Rollout,
    /// `LocalDeployment::replace_data_plane`: the data plane's pod terminated as an upgrade does,
    /// its replacement started once it is gone. `"gone_ms"` until the old one exited,
    /// `"after_ms"` until the replacement routed to every pod, `"signal_ms"` until the old one
    /// was signalled, `"sigkill"` whether its grace period ran out, and the new `"pids"`.
    Terminate,
    /// `Deployment::apply_unrelated_change` (a new route): `"after_ms"` until it answered.
    Route,
    /// The pods' open WebSockets: `"active"` (the sum), `"per_pod": {name: n}`, and
    /// `"unreachable": {name: error}` when some pod did not answer.
    Metrics,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Pids,
        Command::Reload,
        Command::Rollout,
        Command::Terminate,
        Command::Route,
        Command::Metrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Pids => "pids",
            Command::Reload => "reload",
            Command::Rollout => "rollout",
            Command::Terminate => "terminate",
            Command::Route => "route",
            Command::Metrics => "metrics",
        }
    }

    /// The command a line asks for (surrounding whitespace ignored; no arguments).
    pub fn parse(line: &str) -> Result<Command, String> {
        let mut words = line.split_whitespace();
        let Some(word) = words.next() else {
            return Err(format!("empty command; expected one of {}", Command::names()));
        };
        let command = (Command::ALL.into_iter())
            .find(|c| c.name() == word)
            .ok_or_else(|| format!("unknown command {word:?}; expected one of {}", Command::names()))?;
        if words.next().is_some() {
            return Err(format!("{word} takes no arguments"));
        }
        Ok(command)
    }

    /// "pids, reload, rollout, terminate, route, metrics".
    pub fn names() -> String {
        Command::ALL.map(Command::name).join(", ")
    }
}

/// The `"command"` a reply to `line` carries: its first word ("" for a blank line).
pub fn command_word(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// `{"command": command, "ok": true, ...fields}` on one line. `fields` is an object (anything
/// else goes under `"value"`); its own `command` and `ok` keys are dropped.
pub fn ok_reply(command: &str, fields: Value) -> String {
    let fields = match fields {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("value".to_owned(), other)]),
    };
    let mut line = format!("{{\"command\":{},\"ok\":true", Value::from(command));
    for (key, value) in fields.iter().filter(|(k, _)| *k != "command" && *k != "ok") {
        line.push_str(&format!(",{}:{value}", Value::from(key.as_str())));
    }
    line.push('}');
    line
}

/// `{"command": command, "ok": false, "error": error}` on one line.
pub fn error_reply(command: &str, error: &str) -> String {
    format!(
        "{{\"command\":{},\"ok\":false,\"error\":{}}}",
        Value::from(command),
        Value::from(error)
    )
}

/// The sum of every sample of gauge `name` in a Prometheus text exposition (labelled or not);
/// `None` when it has none.
pub fn gauge(exposition: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match (line.find('{'), line.rfind('}')) {
            (Some(open), Some(close)) if open < close => (&line[..open], &line[close + 1..]),
            _ => match line.split_once(char::is_whitespace) {
                Some((series, rest)) => (series, rest),
                None => continue,
            },
        };
        if series != name {
            continue;
        }
        if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The fields of a `metrics` reply from each pod's `/metrics` text (or why it could not be
/// read). Fails only when no pod answered.
pub fn metrics_fields(per_pod: Vec<(String, Result<String, String>)>) -> Result<Value, String> {
    let mut counts = BTreeMap::new();
    let mut unreachable = BTreeMap::new();
    for (pod, text) in per_pod {
        match text.and_then(|t| gauge(&t, ACTIVE_METRIC).ok_or_else(|| format!("no {ACTIVE_METRIC} in /metrics"))) {
            Ok(v) => {
                counts.insert(pod, v.max(0.0).round() as u64);
            }
            Err(e) => {
                unreachable.insert(pod, e);
            }
        }
    }
    if counts.is_empty() && !unreachable.is_empty() {
        let why: Vec<String> = unreachable.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        return Err(format!("no pod answered: {}", why.join("; ")));
    }
    let mut fields = json!({ "active": counts.values().sum::<u64>(), "per_pod": counts });
    if !unreachable.is_empty() {
        fields["unreachable"] = json!(unreachable);
    }
    Ok(fields)
}

/// A process's RLIMIT_NOFILE (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The "Max open files" row of a `/proc/<pid>/limits` text.
pub fn parse_nofile(limits: &str) -> Option<Nofile> {
    let row = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    let mut values = row.split_whitespace().map(|v| match v {
        "unlimited" => Some(None),
        v => v.parse::<u64>().ok().map(Some),
    });
    Some(Nofile {
        soft: values.next()??,
        hard: values.next()??,
    })
}

/// `pid`'s RLIMIT_NOFILE from `/proc/<pid>/limits`.
pub fn read_nofile(pid: u32) -> Option<Nofile> {
    parse_nofile(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

/// Seconds as a JSON number, for the first line.
pub fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args, ArgsError> {
        Args::parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn a_controller_alone_gets_one_pod_and_the_defaults() {
        let parsed = args("nginx").unwrap();
        assert_eq!(
            parsed,
            Args {
                controller: Controller::Nginx,
                pods: 1,
                drain_limit: None,
                prestop: None,
                backend_connections: None,
            }
        );
        let spec = parsed.spec();
        assert_eq!(spec, IngressSpec::new(1));
    }

    #[test]
    fn options_go_anywhere_with_or_without_an_equals_sign() {
        let parsed = args("--pods 3 envoy-gateway --drain-limit=2.5 --prestop 0 --backend-connections=100000").unwrap();
        assert_eq!(parsed.backend_connections, Some(100_000));
        assert_eq!(parsed.spec().data_plane.backend_connections, Some(100_000));
        assert_eq!(parsed.controller, Controller::EnvoyGateway);
        assert_eq!(parsed.pods, 3);
        assert_eq!(parsed.drain_limit, Some(Duration::from_millis(2500)));
        assert_eq!(parsed.prestop, Some(Duration::ZERO));
        assert_eq!(args("ingress-nginx").unwrap().controller, Controller::Nginx);
    }

    #[test]
    fn the_spec_carries_the_replicas_drain_limit_and_prestop() {
        let spec = args("haproxy --pods 4 --drain-limit 5 --prestop 2").unwrap().spec();
        assert_eq!(spec.pods, 4);
        assert_eq!(spec.data_plane.drain_limit, Some(Duration::from_secs(5)));
        assert_eq!(spec.drain.prestop_delay, Duration::from_secs(2));
        assert_eq!(spec.drain.shutdown_grace, Duration::ZERO);
        assert_eq!(spec.drain.termination_grace, Duration::from_secs(2) + CLOSE_MARGIN);
    }

    #[test]
    fn bad_command_lines_say_why_and_show_the_usage() {
        for (line, why) in [
            ("", "missing <controller>"),
            ("--pods 2", "missing <controller>"),
            ("nginx haproxy", "unexpected argument \"haproxy\""),
            ("istio", "unknown controller \"istio\""),
            ("nginx --pods", "--pods needs a value"),
            ("nginx --pods 0", "expected a whole number from 1 to 127"),
            ("nginx --pods 128", "expected a whole number from 1 to 127"),
            ("nginx --pods two", "expected a whole number"),
            ("nginx --pods 1 --pods 2", "--pods given twice"),
            ("nginx --drain-limit 0", "expected seconds, more than 0"),
            ("nginx --drain-limit -1", "expected seconds"),
            ("nginx --prestop -1", "expected seconds, 0 or more"),
            ("nginx --prestop NaN", "expected seconds"),
            ("nginx --prestop inf", "expected seconds"),
            ("nginx --grace 3", "unknown option \"--grace\""),
            (
                "envoy-gateway --backend-connections 0",
                "expected a whole number, 1 or more",
            ),
            (
                "envoy-gateway --backend-connections many",
                "expected a whole number, 1 or more",
            ),
        ] {
            let error = args(line).expect_err(line);
            let text = error.to_string();
            assert!(text.contains(why), "{line:?}: {text}");
            assert!(text.ends_with(USAGE), "{line:?}: {text}");
        }
        assert_eq!(args("nginx --help"), Err(ArgsError::Help));
        assert_eq!(ArgsError::Help.to_string(), USAGE);
    }

    #[test]
    fn commands_are_single_words() {
        for command in Command::ALL {
            assert_eq!(Command::parse(command.name()), Ok(command));
            assert_eq!(Command::parse(&format!("  {}\r", command.name())), Ok(command));
        }
        assert!(Command::parse("").unwrap_err().starts_with("empty command"));
        assert!(Command::parse("   ").unwrap_err().starts_with("empty command"));
        let unknown = Command::parse("restart").unwrap_err();
        assert_eq!(
            unknown,
            "unknown command \"restart\"; expected one of pids, reload, rollout, terminate, route, metrics"
        );
        assert_eq!(
            Command::parse("RELOAD").unwrap_err(),
            "unknown command \"RELOAD\"; expected one of pids, reload, rollout, terminate, route, metrics"
        );
        assert_eq!(Command::parse("reload now").unwrap_err(), "reload takes no arguments");
        assert_eq!(command_word(" reload now\n"), "reload");
        assert_eq!(command_word(""), "");
    }

    #[test]
    fn replies_are_one_json_line_starting_with_command_and_ok() {
        let line = ok_reply("pids", json!({ "main": 10, "workers": [11, 12], "ok": false }));
        assert_eq!(line, r#"{"command":"pids","ok":true,"main":10,"workers":[11,12]}"#);
        assert_eq!(ok_reply("route", Value::Null), r#"{"command":"route","ok":true}"#);
        assert_eq!(ok_reply("x", json!(3)), r#"{"command":"x","ok":true,"value":3}"#);

        assert_eq!(
            error_reply("reload", "no token"),
            r#"{"command":"reload","ok":false,"error":"no token"}"#
        );
        let error = error_reply("bad \"one\"\n", "line 1\nline 2");
        assert!(!error.contains('\n'), "{error}");
        let value: Value = serde_json::from_str(&error).unwrap();
        assert_eq!(
            value,
            json!({ "command": "bad \"one\"\n", "ok": false, "error": "line 1\nline 2" })
        );
        let odd = ok_reply("a\"b", json!({ "k\"ey": "v\nw" }));
        assert!(!odd.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&odd).unwrap(),
            json!({ "command": "a\"b", "ok": true, "k\"ey": "v\nw" })
        );
    }

    const METRICS: &str = "\
# HELP websocket_connections_active Open WebSockets.
# TYPE websocket_connections_active gauge
websocket_connections_active 7
websocket_connections_active_total 99
websocket_messages_total{direction=\"in\"} 3
";

    #[test]
    fn the_gauge_is_read_from_the_exposition() {
        assert_eq!(gauge(METRICS, ACTIVE_METRIC), Some(7.0));
        assert_eq!(gauge(METRICS, "websocket_messages_total"), Some(3.0));
        assert_eq!(gauge(METRICS, "websocket_connections"), None);
        assert_eq!(gauge("", ACTIVE_METRIC), None);
        let labelled = "m{pod=\"a\"} 2\nm{pod=\"b\"} 3 1700000000\nm 1\n";
        assert_eq!(gauge(labelled, "m"), Some(6.0));
    }

    #[test]
    fn metrics_sum_the_pods_and_name_the_ones_that_did_not_answer() {
        let fields = metrics_fields(vec![
            ("a".to_owned(), Ok(METRICS.to_owned())),
            ("b".to_owned(), Ok("websocket_connections_active 0\n".to_owned())),
        ])
        .unwrap();
        assert_eq!(fields, json!({ "active": 7, "per_pod": { "a": 7, "b": 0 } }));

        let fields = metrics_fields(vec![
            ("a".to_owned(), Ok(METRICS.to_owned())),
            ("b".to_owned(), Err("connection refused".to_owned())),
            ("c".to_owned(), Ok("other 1\n".to_owned())),
        ])
        .unwrap();
        assert_eq!(
            fields,
            json!({
                "active": 7,
                "per_pod": { "a": 7 },
                "unreachable": { "b": "connection refused", "c": "no websocket_connections_active in /metrics" },
            })
        );

        let error = metrics_fields(vec![("b".to_owned(), Err("refused".to_owned()))]).unwrap_err();
        assert_eq!(error, "no pod answered: b: refused");
        assert_eq!(
            metrics_fields(Vec::new()).unwrap(),
            json!({ "active": 0, "per_pod": {} })
        );
    }

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let limits = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             63704                63704                processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
";
        assert_eq!(
            parse_nofile(limits),
            Some(Nofile {
                soft: Some(1024),
                hard: Some(524_288),
            })
        );
        assert_eq!(
            parse_nofile("Max open files            unlimited            unlimited            files\n"),
            Some(Nofile { soft: None, hard: None })
        );
        assert_eq!(parse_nofile("Max processes 1 1 processes\n"), None);
        let mine = read_nofile(std::process::id()).expect("this process's limits");
        assert!(mine.soft.is_some_and(|s| s > 0));
    }
}

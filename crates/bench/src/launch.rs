//! The one launcher of the processes the bench and the Autobahn run start: servers (ws-echo, the
//! anchors, a data plane) behind RAII guards that wait for their bound address, and the load
//! generator, pinned to their cores when the machine allows.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use model::Controller;
use serde::Deserialize;
use ws_echo::{Config, LogFormat};

use crate::sys::nofile_limits;

/// Where every server listens: a free port on 127.0.0.1, which it reports when ready.
pub const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// How every child is started: CPU pinning and file-descriptor limit as command prefixes.
#[derive(Debug, Clone)]
pub struct Launcher {
    server_prefix: Vec<String>,
    generator_prefix: Vec<String>,
    /// The RLIMIT_NOFILE children get.
    pub nofile: u64,
    /// Human-readable placement, for the report.
    pub pinning: String,
    pub notes: Vec<String>,
}

impl Launcher {
    /// Pins server to core 0 and generator to core 1 when taskset and two cores exist, and
    /// raises RLIMIT_NOFILE to `want_nofile` (or as far as this process may).
    pub fn detect(want_nofile: u64) -> Self {
        let mut notes = Vec::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = works("taskset", &["-c", "0", "true"]);
        let (mut server_prefix, mut generator_prefix, pinning) = if !taskset {
            notes.push("taskset (util-linux) is missing or refused: server and generator ran unpinned".to_owned());
            (Vec::new(), Vec::new(), "unpinned (no taskset)".to_owned())
        } else if cores < 2 {
            notes.push(format!("only {cores} core available: server and generator share it"));
            (Vec::new(), Vec::new(), "unpinned (one core)".to_owned())
        } else {
            (
                strings(&["taskset", "-c", "0"]),
                strings(&["taskset", "-c", "1"]),
                "server on core 0, load generator on core 1 (taskset)".to_owned(),
            )
        };
        let (soft, hard) = nofile_limits().unwrap_or((1024, 1024));
        let wanted = format!("--nofile={want_nofile}:{want_nofile}");
        let nofile = if works("prlimit", &[&wanted, "true"]) {
            want_nofile
        } else if works("prlimit", &[&format!("--nofile={hard}:{hard}"), "true"]) {
            if hard < want_nofile {
                notes.push(format!(
                    "RLIMIT_NOFILE: hard limit {hard} and raising it to {want_nofile} was not permitted \
                     (needs CAP_SYS_RESOURCE); every process is capped at {hard} open files"
                ));
            }
            hard
        } else {
            notes.push(format!("prlimit is missing: children keep RLIMIT_NOFILE {soft}"));
            soft
        };
        if nofile != soft {
            let arg = format!("--nofile={nofile}:{nofile}");
            for prefix in [&mut server_prefix, &mut generator_prefix] {
                prefix.extend(strings(&["prlimit", &arg]));
            }
        }
        Launcher {
            server_prefix,
            generator_prefix,
            nofile,
            pinning,
            notes,
        }
    }

    /// Starts children as they are: no pinning, this process's file limit.
    pub fn unpinned() -> Self {
        Launcher {
            server_prefix: Vec::new(),
            generator_prefix: Vec::new(),
            nofile: nofile_limits().map_or(1024, |(soft, _)| soft),
            pinning: "unpinned".to_owned(),
            notes: Vec::new(),
        }
    }

    fn command(prefix: &[String], program: &Path, args: &[String]) -> Command {
        let mut all: Vec<std::ffi::OsString> = prefix.iter().map(Into::into).collect();
        all.push(program.as_os_str().to_owned());
        all.extend(args.iter().map(Into::into));
        let mut cmd = Command::new(&all[0]);
        cmd.args(&all[1..]);
        cmd
    }

    /// Starts a server (on the server core) and waits until it prints its bound address.
    pub fn server(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Server> {
        let mut cmd = Self::command(&self.server_prefix, program, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::spawn(name, cmd, log_dir, BoundLine::Addr, false)
    }

    /// Starts ws-echo `binary` with `config` (its log format forced to JSON, whose "listening"
    /// event gives the bound address), logging only that event: per-connection logs would be
    /// measured too.
    pub fn ws_echo(&self, name: &str, binary: &Path, config: &Config, log_dir: &Path) -> anyhow::Result<Server> {
        let config = Config {
            log_format: LogFormat::Json,
            ..config.clone()
        };
        let env = [("RUST_LOG", "warn,ws_echo::server=info".to_owned())];
        self.server(name, binary, &config.to_args(), &env, log_dir)
    }

    /// Starts `bench-dataplane <controller>` (on the server core; its proxy and pod inherit it)
    /// and waits for its JSON line.
    pub fn data_plane(
        &self,
        program: &Path,
        controller: Controller,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<(Server, DataPlaneInfo)> {
        self.data_plane_with(program, controller, &[], env, log_dir)
    }

    /// [`Launcher::data_plane`] with `bench-dataplane`'s options (`--pods N`, `--drain-limit S`,
    /// `--prestop S`); [`Server::command`] then drives it.
    pub fn data_plane_with(
        &self,
        program: &Path,
        controller: Controller,
        options: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<(Server, DataPlaneInfo)> {
        let mut args = vec![controller.name().to_owned()];
        args.extend(options.iter().cloned());
        let mut cmd = Self::command(&self.server_prefix, program, &args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let server = Server::spawn(controller.name(), cmd, log_dir, BoundLine::Json, true)?;
        let info: DataPlaneInfo = serde_json::from_str(&server.ready_line)
            .with_context(|| format!("parsing bench-dataplane's line {:?}", server.ready_line))?;
        Ok((server, info))
    }

    /// Runs the load generator (on the generator core) and parses its JSON result.
    pub fn generate<T: for<'de> Deserialize<'de>>(&self, testbed: &Path, args: &[String]) -> anyhow::Result<T> {
        self.spawn_generator(testbed, args)?.finish()
    }

    /// Starts the load generator (on the generator core) without waiting for it.
    pub fn spawn_generator(&self, testbed: &Path, args: &[String]) -> anyhow::Result<Generator> {
        let mut cmd = Self::command(&self.generator_prefix, testbed, args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} {}", testbed.display(), args.join(" ")))?;
        Ok(Generator {
            child: Some(child),
            args: args.join(" "),
        })
    }
}

/// A load generator running in the background: killed (and reaped) on drop.
#[derive(Debug)]
pub struct Generator {
    child: Option<Child>,
    args: String,
}

impl Generator {
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the generator and parses its JSON result.
    pub fn finish<T: for<'de> Deserialize<'de>>(mut self) -> anyhow::Result<T> {
        let child = self.child.take().context("the generator was already collected")?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `testbed {}`", self.args))?;
        if !out.status.success() {
            bail!("`testbed {}` failed ({})", self.args, out.status);
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "parsing the JSON of `testbed {}`: {}",
                self.args,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataPlaneInfo {
    pub addr: SocketAddr,
    pub url: String,
    pub pod_addr: SocketAddr,
    pub data_plane: String,
    /// The data plane's processes at start (its main process and workers).
    #[serde(default)]
    pub data_plane_pids: Option<DataPlanePids>,
    /// Its RLIMIT_NOFILE (soft).
    #[serde(default)]
    pub data_plane_nofile: Option<u64>,
    /// Whether the controller reloads its data plane for a controller-wide change.
    #[serde(default)]
    pub reloads: Option<bool>,
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// `bench-dataplane`'s `pids` answer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct DataPlanePids {
    pub main: u32,
    #[serde(default)]
    pub workers: Vec<u32>,
}

impl DataPlanePids {
    pub fn all(&self) -> Vec<u32> {
        std::iter::once(self.main).chain(self.workers.iter().copied()).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum BoundLine {
    /// A "listening on ADDR" line, or a JSON log line with an `addr` field.
    Addr,
    /// The first line that parses as a JSON object.
    Json,
}

/// A started server: killed (and reaped) on drop; stdin closed first so a launcher can tear down.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub child: Child,
    pub pid: u32,
    pub addr: Option<SocketAddr>,
    ready_line: String,
    stdin: Option<ChildStdin>,
    /// Lines the child printed after its ready line ([`Server::command`]'s replies).
    lines: Option<mpsc::Receiver<String>>,
    log: PathBuf,
    /// Tears its own children down when stdin closes: give it time instead of killing at once.
    graceful: bool,
}

/// How long a server may take to print its address (a data plane deploys first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Server {
    fn spawn(name: &str, mut cmd: Command, log_dir: &Path, bound: BoundLine, graceful: bool) -> anyhow::Result<Server> {
        std::fs::create_dir_all(log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        let log = log_dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the child has no stdout")?;
        let mut server = Server {
            name: name.to_owned(),
            child,
            pid,
            addr: None,
            ready_line: String::new(),
            stdin,
            lines: None,
            log: log.clone(),
            graceful,
        };
        // A thread copies stdout into the log (so the pipe never fills) and hands lines over.
        let (tx, rx) = mpsc::channel::<String>();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().append(true).open(&log_path).ok();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("{name} exited ({status}) before it was ready; see {}", log.display());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {READY_TIMEOUT:?} waiting for {name} to print its address; see {}",
                    log.display()
                );
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => match bound {
                    BoundLine::Addr => {
                        if let Some(addr) = parse_bound_addr(&line) {
                            server.addr = Some(addr);
                            server.ready_line = line;
                            server.lines = Some(rx);
                            return Ok(server);
                        }
                    }
                    BoundLine::Json => {
                        if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line).is_ok() {
                            server.ready_line = line;
                            server.lines = Some(rx);
                            return Ok(server);
                        }
                    }
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().ok();
                    bail!(
                        "{name} closed its stdout ({status:?}) before it was ready; see {}",
                        log.display()
                    );
                }
            }
        }
    }

    /// Sends `command` as one line on the child's stdin (`bench-dataplane`'s control protocol)
    /// and waits up to `timeout` for its JSON reply; a reply with `"ok": false` is an error
    /// carrying the child's reason.
    pub fn command(&mut self, command: &str, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let name = self.name.clone();
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("{name}'s stdin is closed"))?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("sending {command:?} to {name}"))?;
        let rx = self
            .lines
            .as_ref()
            .with_context(|| format!("{name} takes no commands"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{name} did not answer {command:?} within {timeout:?}; see {}",
                self.log.display()
            );
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("{name} exited while answering {command:?}; see {}", self.log.display())
                }
            };
            let Ok(reply) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if reply.get("command").and_then(serde_json::Value::as_str) != command.split_whitespace().next() {
                continue;
            }
            if reply.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
                return Ok(reply);
            }
            let error = reply
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given");
            bail!("{name} could not {command}: {error}");
        }
    }

    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.addr.with_context(|| format!("{} has no bound address", self.name))
    }

    /// Closes stdin, waits up to `grace` for the process to exit, then kills it.
    pub fn stop(&mut self, grace: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!(
            "bench: {} did not exit within {grace:?} after stdin closed; killed (log: {})",
            self.name,
            self.log.display()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if self.graceful {
                self.stop(Duration::from_secs(15));
            } else {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The bound address in a server's startup line: `listening on 127.0.0.1:1234`, or a JSON
/// log event (ws-echo's `--log-format json`) whose message is "listening" and `addr` the address.
pub fn parse_bound_addr(line: &str) -> Option<SocketAddr> {
    if let Some(rest) = line.trim().strip_prefix("listening on ") {
        return rest.trim().parse().ok();
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let message = v
        .get("message")
        .or_else(|| v.get("fields").and_then(|f| f.get("message")))?;
    if message.as_str()? != "listening" {
        return None;
    }
    let addr = v.get("addr").or_else(|| v.get("fields").and_then(|f| f.get("addr")))?;
    addr.as_str()?.parse().ok()
}

fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_address_comes_from_either_startup_line() {
        assert_eq!(
            parse_bound_addr("listening on 127.0.0.1:4321"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        let json = r#"{"timestamp":"t","level":"INFO","message":"listening","addr":"127.0.0.1:999","pod":"p","target":"ws_echo::server"}"#;
        assert_eq!(parse_bound_addr(json), Some("127.0.0.1:999".parse().unwrap()));
        let nested = r#"{"level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:5"}}"#;
        assert_eq!(parse_bound_addr(nested), Some("127.0.0.1:5".parse().unwrap()));
        assert_eq!(
            parse_bound_addr(r#"{"message":"websocket open","addr":"127.0.0.1:5"}"#),
            None
        );
        assert_eq!(parse_bound_addr("starting up"), None);
    }
}

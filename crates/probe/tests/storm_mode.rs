//! The reconnect-storm mode against an in-process server that drops every
//! connection at once, then refuses new ones for a while.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use probe::ProbeOptions;
use probe::load::{self, LoadError, Ramp, ReconnectPolicy, StormConfig, StormOutcome, StormResult, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A WebSocket server that can drop every connection at once and refuse
/// upgrades for a while afterwards (alternately a 503 and a TCP reset), as a
/// data plane does while it reloads.
struct StormServer {
    addr: SocketAddr,
    /// WebSockets open now.
    live: Arc<AtomicUsize>,
    /// Bumping it drops every WebSocket open at the time.
    generation: watch::Sender<u64>,
    refuse_until: Arc<Mutex<Option<Instant>>>,
}

impl StormServer {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let server = StormServer {
            addr: listener.local_addr()?,
            live: Arc::new(AtomicUsize::new(0)),
            generation: watch::Sender::new(0),
            refuse_until: Arc::new(Mutex::new(None)),
        };
        let (live, generation, refuse_until) = (
            server.live.clone(),
            server.generation.clone(),
            server.refuse_until.clone(),
        );
        tokio::spawn(async move {
            let mut accepted = 0u64;
            while let Ok((tcp, _)) = listener.accept().await {
                accepted += 1;
                let refusing = refuse_until
                    .lock()
                    .ok()
                    .and_then(|u| *u)
                    .is_some_and(|until| Instant::now() < until);
                if refusing {
                    tokio::spawn(refuse(tcp, accepted));
                } else {
                    tokio::spawn(hold(tcp, accepted, generation.subscribe(), live.clone()));
                }
            }
        });
        Ok(server)
    }

    fn target(&self) -> Result<Target> {
        let addr = self.addr;
        Ok(Target::new(
            ProbeOptions::new(addr, &format!("ws://{addr}/ws"))?
                .expect_hello(false)
                .handshake_timeout(Duration::from_secs(5)),
        ))
    }

    /// Drops every open WebSocket at once and refuses upgrades for `refuse`.
    fn drop_all(&self, refuse: Duration) {
        if let Ok(mut until) = self.refuse_until.lock() {
            *until = Some(Instant::now() + refuse);
        }
        self.generation.send_modify(|g| *g += 1);
    }

    async fn wait_live(&self, n: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.live.load(Ordering::Relaxed) != n {
            if Instant::now() > deadline {
                bail!(
                    "{} WebSockets open after {within:?}, expected {n}",
                    self.live.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Even connections get a 503 to their upgrade, odd ones a reset.
async fn refuse(mut tcp: TcpStream, nth: u64) {
    if nth.is_multiple_of(2) {
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    } else {
        let _ = tcp.set_zero_linger();
    }
}

/// Serves one WebSocket until the generation changes; then even connections
/// get Close 1001, odd ones just lose their TCP connection.
async fn hold(tcp: TcpStream, nth: u64, mut generation: watch::Receiver<u64>, live: Arc<AtomicUsize>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    live.fetch_add(1, Ordering::Relaxed);
    let dropped = tokio::select! {
        _ = generation.changed() => true,
        () = async { while let Some(Ok(_)) = ws.next().await {} } => false,
    };
    live.fetch_sub(1, Ordering::Relaxed);
    if dropped && nth.is_multiple_of(2) {
        let away = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        let _ = ws.close(Some(away)).await;
    }
}

fn config(connections: usize, ready_file: PathBuf) -> StormConfig {
    StormConfig {
        connections,
        ramp: Ramp::default(),
        policy: ReconnectPolicy {
            initial_ms: 100,
            max_ms: 400,
            factor: 2.0,
            jitter: 0.5,
        },
        settle: Duration::from_millis(300),
        deadline: Duration::from_secs(20),
        wait: Duration::from_secs(20),
        seed: Some(7),
        ready_file: Some(ready_file),
        progress: false,
    }
}

/// Waits for the ready file and returns its contents.
async fn ready_line(path: &Path, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(line) = tokio::fs::read_to_string(path).await {
            return Ok(line);
        }
        if Instant::now() > deadline {
            bail!("{} did not appear within {within:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_storm(target: Target, config: StormConfig) -> tokio::task::JoinHandle<Result<StormResult, LoadError>> {
    tokio::spawn(async move { load::run_storm(&target, config).await })
}

async fn storm_result(storm: tokio::task::JoinHandle<Result<StormResult, LoadError>>) -> Result<StormResult> {
    let result = tokio::time::timeout(Duration::from_secs(40), storm)
        .await
        .context("the storm run did not end")??;
    Ok(result?)
}

#[tokio::test]
async fn storm_mode_reconnects_every_dropped_client_through_a_refusing_server() -> Result<()> {
    let server = StormServer::start().await?;
    let dir = tempfile::tempdir()?;
    let ready = dir.path().join("ready");
    let storm = spawn_storm(server.target()?, config(200, ready.clone()));
    assert_eq!(ready_line(&ready, Duration::from_secs(20)).await?, "ready 200\n");
    server.wait_live(200, Duration::from_secs(10)).await?;
    server.drop_all(Duration::from_millis(300));
    let r = storm_result(storm).await?;

    assert_eq!(r.mode, "storm");
    assert_eq!((r.requested, r.connected, r.failed), (200, 200, 0), "{r:#?}");
    assert_eq!(r.outcome, StormOutcome::Settled, "{r:#?}");
    assert_eq!((r.dropped, r.drops, r.reconnected), (200, 200, 200), "{r:#?}");
    assert_eq!(r.drop_causes.values().sum::<u64>(), 200, "{r:#?}");
    assert!(
        r.drop_causes.contains_key("close 1001") && r.drop_causes.contains_key("eof"),
        "{:?}",
        r.drop_causes
    );
    // Nothing can reconnect while the server refuses (300 ms from just before the drop).
    let to_99 = r.time_to_99_s.context("99 % never reconnected")?;
    let to_all = r.time_to_all_s.context("not every client reconnected")?;
    assert!(to_99 >= 0.1 && to_99 <= to_all, "{to_99} {to_all}");
    assert!(to_all < r.duration_s, "{r:#?}");

    assert!(!r.failed_handshakes.is_empty(), "{r:#?}");
    assert!(
        r.failed_handshakes.keys().all(|k| k == "503" || k == "reset"),
        "{:?}",
        r.failed_handshakes
    );
    let failures: u64 = r.failed_handshakes.values().sum();
    assert_eq!(
        r.handshake_attempts,
        failures + 200,
        "every attempt failed or reconnected"
    );
    assert!(r.peak_handshakes_per_sec >= 1 && r.peak_handshakes_per_sec <= r.handshake_attempts);
    assert!(r.peak_successful_handshakes_per_sec >= 1 && r.peak_successful_handshakes_per_sec <= 200);

    let last = r.timeline.last().context("an empty timeline")?;
    assert_eq!(last.open, 200, "the timeline ends with every client open");
    assert!((last.t_s - r.duration_s).abs() <= 0.0005, "{last:?} {}", r.duration_s);
    assert!(r.timeline.iter().any(|s| s.open == 0), "every client was down at once");
    let attempts: u64 = r.timeline.iter().map(|s| u64::from(s.attempts)).sum();
    let failed: u64 = r.timeline.iter().map(|s| u64::from(s.failures)).sum();
    assert_eq!((attempts, failed), (r.handshake_attempts, failures));
    assert_eq!(r.policy.initial_ms, 100);
    assert_eq!(r.seed, 7);
    serde_json::to_string(&r)?;
    Ok(())
}

#[tokio::test]
async fn storm_mode_follows_clients_that_drop_again_after_reconnecting() -> Result<()> {
    let server = StormServer::start().await?;
    let dir = tempfile::tempdir()?;
    let ready = dir.path().join("ready");
    let config = StormConfig {
        // Long enough that the second drop comes before the storm counts as settled.
        settle: Duration::from_secs(1),
        ..config(50, ready.clone())
    };
    let storm = spawn_storm(server.target()?, config);
    ready_line(&ready, Duration::from_secs(20)).await?;
    server.wait_live(50, Duration::from_secs(10)).await?;
    let first = Instant::now();
    server.drop_all(Duration::from_millis(200));
    // As a rollout does: the next pod goes once every client is back.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.live.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .context("the first drop did not take every connection")?;
    server.wait_live(50, Duration::from_secs(10)).await?;
    let second = Instant::now();
    server.drop_all(Duration::ZERO);
    let r = storm_result(storm).await?;

    assert_eq!(r.outcome, StormOutcome::Settled, "{r:#?}");
    assert_eq!(
        (r.connected, r.dropped, r.drops, r.reconnected),
        (50, 50, 100, 50),
        "{r:#?}"
    );
    assert_eq!(r.timeline.last().map(|s| s.open), Some(50));
    let sum = |f: fn(&load::StormSample) -> u32| r.timeline.iter().map(|s| u64::from(f(s))).sum::<u64>();
    assert_eq!((sum(|s| s.drops), sum(|s| s.reconnects)), (100, 100));
    // The recovery from the second drop is the one that counts: no client
    // reconnects sooner than 50 ms (attempt 0's shortest delay) after it.
    let to_all = r.time_to_all_s.context("not every client reconnected")?;
    assert!(to_all >= (second - first).as_secs_f64(), "{to_all} {r:#?}");
    Ok(())
}

#[tokio::test]
async fn storm_mode_fails_clearly_when_nothing_drops_within_the_wait() -> Result<()> {
    let server = StormServer::start().await?;
    let dir = tempfile::tempdir()?;
    let ready = dir.path().join("ready");
    let config = StormConfig {
        wait: Duration::from_millis(300),
        ..config(5, ready.clone())
    };
    let started = Instant::now();
    let err = load::run_storm(&server.target()?, config)
        .await
        .err()
        .context("nothing dropped, yet the storm succeeded")?;
    assert!(matches!(err, LoadError::NoDrop { .. }), "{err:?}");
    assert_eq!(err.to_string(), "no connection dropped within 0.3 s of ready");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(tokio::fs::read_to_string(&ready).await?, "ready 5\n");
    // Every client closed its connection on the way out.
    server.wait_live(0, Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test]
async fn storm_mode_fails_when_no_connection_opens() -> Result<()> {
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let target = Target::new(ProbeOptions::new(closed, &format!("ws://{closed}/ws"))?.expect_hello(false));
    let config = StormConfig {
        connections: 3,
        ..StormConfig::default()
    };
    let err = load::run_storm(&target, config)
        .await
        .err()
        .context("no connection can open")?;
    assert!(matches!(&err, LoadError::NoConnections { failed: 3, .. }), "{err:?}");
    Ok(())
}

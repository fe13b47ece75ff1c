//! What the tests of several areas share: connecting, echoing, the profiles' words for how a
//! connection ended, and the suite's termination settings.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use model::{Drain, IngressSpec, PodSettings};
use probe::{self, End, Incoming, ProbeOptions};

use crate::harness::Ctx;

/// How long a test waits for one echo.
pub(super) const RECV: Duration = Duration::from_secs(5);

pub(super) fn ticking(spec: IngressSpec, every: Duration) -> IngressSpec {
    spec.with_pod(PodSettings {
        tick_interval: Some(every),
        ..PodSettings::default()
    })
}

/// The suite's graceful-termination settings: preStop drain 3 s, grace 10 s, shutdown grace 2 s.
pub(super) fn termination() -> Drain {
    Drain::default()
}

/// A drain whose preStop outlasts every controller model's slowest endpoint removal (its pacing
/// plus its data plane's poll; haproxytech's 5 s sync period is the slowest) by a second, for the
/// behaviours whose outcome is whether the data plane let go of a pod before it stopped
/// listening. With the 3 s default that outcome would hang on where a deletion falls in a sync
/// period; `endpoint_removal_lag` measures how long each controller really needs.
pub(super) fn covering_drain() -> Drain {
    let slowest = model::Controller::ALL
        .iter()
        .map(|c| c.info().control_loop.worst_lag())
        .max()
        .unwrap_or_default();
    let prestop = Duration::from_secs((slowest + Duration::from_secs(1)).as_secs_f64().ceil() as u64);
    Drain {
        prestop_delay: prestop,
        termination_grace: prestop + Duration::from_secs(4),
        ..Drain::default()
    }
}

/// No preStop at all: SIGTERM (and the pod's listener closing) as soon as the pod is deleted.
pub(super) fn no_prestop() -> Drain {
    Drain {
        prestop_delay: Duration::ZERO,
        ..Drain::default()
    }
}

/// For tests that only need a pod gone: a short drain keeps them fast.
pub(super) fn quick_drain() -> Drain {
    Drain {
        prestop_delay: Duration::from_millis(500),
        termination_grace: Duration::from_secs(5),
        shutdown_grace: Duration::from_millis(500),
    }
}

pub(super) fn termination_prestop(ctx: &Ctx) -> Duration {
    ctx.deployment.spec().drain.prestop_delay
}

/// How a connection ended, in the profiles' vocabulary.
pub(super) fn end_word(end: &End) -> String {
    match end {
        End::Closed { code, .. } => format!("close-{}", code.unwrap_or(1005)),
        End::Abnormal { .. } => "abnormal".to_owned(),
        End::HandshakeFailed { status, .. } => format!("handshake-{}", status.unwrap_or(0)),
        End::StillOpen { .. } => "open".to_owned(),
    }
}

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A distinct client address for this test process (127.0.2.N).
pub(super) fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, n))
}

pub(super) async fn connect(ctx: &Ctx, opts: &ProbeOptions) -> anyhow::Result<probe::Connection> {
    probe::connect(opts)
        .await
        .with_context(|| format!("connecting through {}", ctx.controller))
}

pub(super) async fn pod_of(conn: &probe::Connection) -> anyhow::Result<String> {
    conn.pod().map(str::to_owned).context("the connection has no hello")
}

/// Sends `text` and waits for its echo, skipping ticks.
pub(super) async fn echo(conn: &mut probe::Connection, text: &str) -> anyhow::Result<()> {
    conn.send_text(text.to_owned()).await?;
    let deadline = Instant::now() + RECV;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_data(left).await? {
            Incoming::Text(t) if t == text => return Ok(()),
            incoming if incoming.is_tick() => continue,
            other => bail!("expected the echo of {text:?}, got {other:?}"),
        }
    }
}

/// Opens `n` connections one after another with `opts` and returns the pods that answered.
pub(super) async fn pods_reached(ctx: &Ctx, opts: &ProbeOptions, n: usize) -> anyhow::Result<Vec<String>> {
    let mut pods = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = connect(ctx, opts).await?;
        pods.push(pod_of(&conn).await?);
        conn.close(1000, "").await?;
    }
    Ok(pods)
}

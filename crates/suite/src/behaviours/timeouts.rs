//! Timeouts: what ends a quiet connection at the idle timeout, and what keeps it open.
//!
//! The four behaviours share one idle timeout and two tests; they differ in their specs (what
//! the pods send) and in whether the client pings.

use std::time::Duration;

use model::{IngressSpec, PodSettings};
use probe::{hold_idle, hold_pinging};

use super::support::{connect, end_word, secs, ticking};
use crate::catalogue::{Area, Behaviour};
use crate::feature::Feature;
use crate::harness::Ctx;

const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "idle_connection_closed_at_timeout",
        area: Area::Timeouts,
        description: "Idle timeout 3 s, no traffic either way: when and how the connection ends.",
        features: &[Feature::IdleTimeout],
        spec: || IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT),
        test: |ctx| Box::pin(hold_idle_for_three_timeouts(ctx)),
        kubernetes_only: None,
    },
    Behaviour {
        name: "server_ticks_keep_connection_alive",
        area: Area::Timeouts,
        description: "Idle timeout 3 s, server ticks every 1 s: still open after 3× the timeout.",
        features: &[Feature::IdleTimeout],
        spec: || {
            ticking(
                IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT),
                Duration::from_secs(1),
            )
        },
        test: |ctx| Box::pin(hold_idle_for_three_timeouts(ctx)),
        kubernetes_only: None,
    },
    Behaviour {
        name: "server_pings_keep_connection_alive",
        area: Area::Timeouts,
        description: "Idle timeout 3 s, server pings every 1 s and nothing else: measured.",
        features: &[Feature::IdleTimeout],
        spec: || {
            IngressSpec::new(1)
                .with_idle_timeout(IDLE_TIMEOUT)
                .with_pod(PodSettings {
                    ping_interval: Some(Duration::from_secs(1)),
                    ..PodSettings::default()
                })
        },
        test: |ctx| Box::pin(hold_idle_for_three_timeouts(ctx)),
        kubernetes_only: None,
    },
    Behaviour {
        name: "client_pings_keep_connection_alive",
        area: Area::Timeouts,
        description: "Idle timeout 3 s, client pings every 1 s and nothing else: measured.",
        features: &[Feature::IdleTimeout],
        spec: || IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT),
        test: |ctx| Box::pin(hold_pinging_for_three_timeouts(ctx)),
        kubernetes_only: None,
    },
];

/// The client sends nothing; whatever keeps the connection alive comes from the pod.
async fn hold_idle_for_three_timeouts(ctx: Ctx) -> anyhow::Result<String> {
    hold_and_observe(&ctx, false, IDLE_TIMEOUT * 3).await
}

/// The client pings every second and sends nothing else.
async fn hold_pinging_for_three_timeouts(ctx: Ctx) -> anyhow::Result<String> {
    hold_and_observe(&ctx, true, IDLE_TIMEOUT * 3).await
}

/// Holds a connection (idle, or pinging from the client) and reports how it ended.
async fn hold_and_observe(ctx: &Ctx, client_pings: bool, hold: Duration) -> anyhow::Result<String> {
    let mut conn = connect(ctx, &ctx.probe("/ws")).await?;
    let outcome = if client_pings {
        hold_pinging(&mut conn, hold, Duration::from_secs(1)).await
    } else {
        hold_idle(&mut conn, hold).await
    };
    ctx.lane("held connection", conn.timeline());
    ctx.figure("ended_after", outcome.after.as_secs_f64(), "s");
    ctx.figure("server_frames", outcome.data_frames as f64, "frames");
    ctx.figure("server_pings", outcome.pings_received as f64, "pings");
    let word = end_word(&outcome.end);
    ctx.key_figure(if outcome.still_open() {
        format!("open at {}", secs(hold))
    } else {
        format!("{word} at {}", secs(outcome.after))
    });
    // An end well before the configured timeout is its own observation.
    if !outcome.still_open() && outcome.after < IDLE_TIMEOUT.mul_f64(0.8) {
        return Ok(format!("{word}-early"));
    }
    Ok(word)
}

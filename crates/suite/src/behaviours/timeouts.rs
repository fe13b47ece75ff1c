//! Timeouts: what ends a quiet connection at the idle timeout, and what keeps it open.
//!
//! The four behaviours share one idle timeout and two tests; they differ in their specs (what
//! the pods send) and in whether the client pings.

use std::time::Duration;

use model::{Controller, IngressSpec, PodSettings};
use probe::{hold_idle, hold_pinging};

use super::support::{connect, end_word, secs, ticking};
use crate::catalogue::{Area, Behaviour};
use crate::feature::Feature;
use crate::harness::Ctx;

const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// The slow tier waits for a default idle timeout up to this long; longer ones are shown from the
/// controller's facts, not waited for.
const SLOW_TIER_LIMIT: Duration = Duration::from_secs(300);

/// Whether `controller`'s default idle timeout is one the slow tier waits for.
fn waits_for_default(controller: Controller) -> bool {
    controller
        .info()
        .default_idle
        .value
        .is_some_and(|d| d <= SLOW_TIER_LIMIT)
}

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "default_idle_timeout",
        area: Area::Timeouts,
        description: "Nothing configured, no traffic either way: whether the controller's default ends an idle \
                      WebSocket, when and how. Waited for (slow tier, `cargo xtask e2e --slow`) where the default \
                      is at most 5 minutes; longer defaults are shown with their source, not waited for.",
        features: &[],
        spec: || IngressSpec::new(1),
        test: |ctx| Box::pin(default_idle_timeout(ctx)),
        slow: Some(waits_for_default),
        kubernetes_only: None,
    },
    Behaviour {
        name: "idle_connection_closed_at_timeout",
        area: Area::Timeouts,
        description: "Idle timeout 3 s, no traffic either way: when and how the connection ends.",
        features: &[Feature::IdleTimeout],
        spec: || IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT),
        test: |ctx| Box::pin(hold_idle_for_three_timeouts(ctx)),
        slow: None,
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
        slow: None,
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
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "client_pings_keep_connection_alive",
        area: Area::Timeouts,
        description: "Idle timeout 3 s, client pings every 1 s and nothing else: measured.",
        features: &[Feature::IdleTimeout],
        spec: || IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT),
        test: |ctx| Box::pin(hold_pinging_for_three_timeouts(ctx)),
        slow: None,
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

async fn default_idle_timeout(ctx: Ctx) -> anyhow::Result<String> {
    let controller = ctx.deployment.controller();
    let default = controller.info().default_idle;
    let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
    let Some(limit) = default.value.filter(|_| waits_for_default(controller)) else {
        let what = default
            .value
            .map_or("no default idle timeout".to_owned(), |d| format!("default {}", secs(d)));
        ctx.key_figure(format!("{what} ({}): not waited for", default.source));
        return Ok("not-waited".to_owned());
    };
    ctx.marker(format!("idle; the default is {}", secs(limit)));
    let outcome = hold_idle(&mut conn, limit + Duration::from_secs(30)).await;
    ctx.lane("idle connection", conn.timeline());
    let word = end_word(&outcome.end);
    ctx.figure("ended_after", outcome.after.as_secs_f64(), "s");
    ctx.key_figure(format!("{word} at {} (default {})", secs(outcome.after), secs(limit)));
    // At the default: within 10 % of it (the data planes' timers are coarse).
    let at_default = outcome.after.abs_diff(limit) <= limit / 10;
    Ok(if word == "open" {
        "open".to_owned()
    } else if at_default {
        format!("{word}-at-default")
    } else {
        format!("{word}-at-{:.0}s", outcome.after.as_secs_f64())
    })
}

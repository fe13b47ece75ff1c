//! Graceful termination: preStop, Close 1001 through the proxy, reconnects, rolling updates,
//! message loss, and SIGKILL at the end of the grace period.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use model::{IngressSpec, PodSettings};
use probe::{self, Backoff, End, Incoming, hold_idle, open_continuously};

use super::support::{
    connect, covering_drain, end_word, no_prestop, pod_of, secs, termination, termination_prestop, ticking,
};
use crate::catalogue::{Area, Behaviour};
use crate::harness::Ctx;

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "existing_connection_survives_prestop",
        area: Area::Termination,
        description: "During preStop (drain 3 s) the client still gets echoes and ticks from the terminating pod.",
        features: &[],
        spec: || {
            ticking(
                IngressSpec::new(2).with_drain(termination()),
                Duration::from_millis(500),
            )
        },
        test: |ctx| Box::pin(existing_connection_survives_prestop(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "no_new_connections_to_terminating_pod",
        area: Area::Termination,
        description: "After deletion starts (preStop longer than every controller's modelled endpoint lag), new \
                      connections reach other pods before SIGTERM; measures how long the terminating pod still got new ones.",
        features: &[],
        spec: || IngressSpec::new(3).with_drain(covering_drain()),
        test: |ctx| Box::pin(no_new_connections_to_terminating_pod(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "server_close_1001_reaches_client",
        area: Area::Termination,
        description: "After SIGTERM + shutdown grace the client receives Close 1001 through the proxy, not an abnormal end.",
        features: &[],
        spec: || IngressSpec::new(2).with_drain(termination()),
        test: |ctx| Box::pin(server_close_1001_reaches_client(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "client_reconnects_to_new_pod",
        area: Area::Termination,
        description: "After 1001 the client reconnects to a ready pod; measures the disruption.",
        features: &[],
        spec: || IngressSpec::new(2).with_drain(termination()),
        test: |ctx| Box::pin(client_reconnects_to_new_pod(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "rolling_update_has_no_failed_handshakes",
        area: Area::Termination,
        description: "A connection every 100 ms during a rollout restart of 3 pods whose preStop outlasts every \
                      controller's modelled endpoint lag: failed handshakes counted.",
        features: &[],
        spec: || IngressSpec::new(3).with_drain(covering_drain()),
        test: |ctx| Box::pin(rolling_update_has_no_failed_handshakes(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "rolling_update_without_prestop",
        area: Area::Termination,
        description: "The same rollout with no preStop: each old pod stops listening as soon as its replacement is \
                      Ready, whatever the ingress has seen. Failed handshakes counted: what the drain buys.",
        features: &[],
        spec: || IngressSpec::new(3).with_drain(no_prestop()),
        test: |ctx| Box::pin(rolling_update_has_no_failed_handshakes(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "no_message_loss_across_rollout",
        area: Area::Termination,
        description: "A client that reconnects on close and numbers its messages loses none sent before the close frame arrived.",
        features: &[],
        spec: || IngressSpec::new(2).with_drain(termination()),
        test: |ctx| Box::pin(no_message_loss_across_rollout(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "sigkill_after_grace_ends_connection_abnormally",
        area: Area::Termination,
        description: "With --ignore-sigterm, the connection ends abnormally at the end of the grace period.",
        features: &[],
        spec: || {
            IngressSpec::new(2).with_drain(termination()).with_pod(PodSettings {
                ignore_sigterm: true,
                ..PodSettings::default()
            })
        },
        test: |ctx| Box::pin(sigkill_after_grace_ends_connection_abnormally(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "endpoint_removal_lag",
        area: Area::Termination,
        description: "Over 10 pod deletions (preStop longer than every controller's modelled lag), how long after deletion new connections still reached the deleted pod (p50, max), and from it the smallest preStop that keeps every new connection off a pod that stopped listening.",
        features: &[],
        // A preStop longer than any controller's modelled lag, so the window sees the last new
        // connection instead of cutting it off.
        spec: || IngressSpec::new(3).with_drain(covering_drain()),
        test: |ctx| Box::pin(endpoint_removal_lag(ctx)),
        slow: None,
        kubernetes_only: None,
    },
];

/// How many pods `endpoint_removal_lag` deletes, one after the other.
const LAG_DELETIONS: usize = 10;
/// How often the opener dials during each deletion's window.
const LAG_DIAL_EVERY: Duration = Duration::from_millis(50);

/// The figures of one controller's endpoint-removal lag: p50 and max over the deletions, and the
/// preStop they call for (the max, rounded up to the next 100 ms).
fn lag_figures(lags_ms: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted: Vec<f64> = lags_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p50 = *sorted.get(sorted.len().checked_sub(1)? / 2)?;
    let max = *sorted.last()?;
    let prestop = (max / 100.0).ceil() * 100.0;
    Some((p50, max, prestop))
}

async fn endpoint_removal_lag(ctx: Ctx) -> anyhow::Result<String> {
    let window = termination_prestop(&ctx);
    let replicas = ctx.deployment.spec().pods;
    let mut lags = Vec::new();
    let mut failed = 0;
    let mut terminations = Vec::new();
    for round in 1..=LAG_DELETIONS {
        // A pod the data plane routes to (the last round's replacement may not be routed yet).
        let victim = pod_of(&connect(&ctx, &ctx.probe("/ws")).await?).await?;
        ctx.marker(format!("delete {victim} ({round}/{LAG_DELETIONS})"));
        let deleted = Instant::now();
        terminations.push(ctx.deployment.delete_pod(&victim).await?);
        let offset_ms = deleted.elapsed().as_secs_f64() * 1000.0;
        let opener = open_continuously(ctx.probe("/ws"), LAG_DIAL_EVERY);
        // The window under test: the victim's preStop, while it still accepts connections.
        tokio::time::sleep(window).await;
        let report = opener.stop().await;
        failed += report.failures();
        let last = report
            .attempts
            .iter()
            .filter(|a| matches!(&a.outcome, probe::AttemptOutcome::Connected { pod: Some(p) } if *p == victim))
            .map(|a| offset_ms + a.at_ms)
            .fold(0.0_f64, f64::max);
        lags.push(last);
        // As a ReplicaSet would: back to the wanted number of Ready pods.
        ctx.deployment.scale(replicas).await?;
    }
    for termination in terminations {
        ctx.termination(&termination.wait(Duration::from_secs(30)).await?);
    }
    let (p50, max, prestop) = lag_figures(&lags).context("no deletion was measured")?;
    ctx.figure("endpoint_removal_lag_p50", p50, "ms");
    ctx.figure("endpoint_removal_lag_max", max, "ms");
    ctx.figure("prestop_needed", prestop, "ms");
    ctx.figure("deletions", lags.len() as f64, "deletions");
    ctx.figure("failed_handshakes", failed as f64, "handshakes");
    ctx.key_figure(format!(
        "p50 {p50:.0} ms, max {max:.0} ms → preStop ≥ {:.1} s",
        prestop / 1000.0
    ));
    let window_ms = window.as_secs_f64() * 1000.0;
    Ok(match (failed, max < window_ms) {
        (0, true) => "measured".to_owned(),
        (0, false) => "still-routed-at-window-end".to_owned(),
        (f, _) => format!("{f}-failed-handshakes"),
    })
}

async fn existing_connection_survives_prestop(ctx: Ctx) -> anyhow::Result<String> {
    let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
    let pod = pod_of(&conn).await?;
    ctx.marker(format!("delete {pod}"));
    let termination = ctx.deployment.delete_pod(&pod).await?;
    let prestop_ends = Instant::now() + termination_prestop(&ctx);
    let (mut echoed, mut ticks, mut sent) = (0, 0, 0);
    while Instant::now() + Duration::from_millis(400) < prestop_ends {
        sent += 1;
        conn.send_text(format!("during prestop {sent}")).await?;
        let until = Instant::now() + Duration::from_millis(400);
        while let Ok(incoming) = conn.recv(until.saturating_duration_since(Instant::now())).await {
            if incoming.is_tick() {
                ticks += 1;
            } else if matches!(&incoming, Incoming::Text(t) if t.starts_with("during prestop")) {
                echoed += 1;
            }
        }
    }
    ctx.lane(format!("connection to {pod}"), conn.timeline());
    drop(conn);
    ctx.termination(&termination.wait(Duration::from_secs(30)).await?);
    ctx.figure("echoed_during_prestop", echoed as f64, &format!("of {sent}"));
    ctx.figure("ticks_during_prestop", ticks as f64, "ticks");
    ctx.key_figure(format!("{echoed}/{sent} echoed, {ticks} ticks"));
    Ok(if echoed == sent && ticks >= 2 {
        "served"
    } else {
        "interrupted"
    }
    .to_owned())
}

async fn no_new_connections_to_terminating_pod(ctx: Ctx) -> anyhow::Result<String> {
    let victim = ctx.deployment.pods().await?.first().context("no pods")?.name.clone();
    ctx.marker(format!("delete {victim}"));
    let termination = ctx.deployment.delete_pod(&victim).await?;
    let opener = open_continuously(ctx.probe("/ws"), Duration::from_millis(100));
    tokio::time::sleep(termination_prestop(&ctx)).await; // the window under test, not a wait for a condition
    let report = opener.stop().await;
    ctx.termination(&termination.wait(Duration::from_secs(30)).await?);
    let to_victim: Vec<f64> = report
        .attempts
        .iter()
        .filter(|a| matches!(&a.outcome, probe::AttemptOutcome::Connected { pod: Some(p) } if *p == victim))
        .map(|a| a.at_ms)
        .collect();
    let last = to_victim.iter().copied().fold(0.0_f64, f64::max);
    ctx.figure(
        "new_connections_to_terminating_pod",
        to_victim.len() as f64,
        "connections",
    );
    ctx.figure("last_new_connection_after_delete", last, "ms");
    ctx.figure("failed_handshakes", report.failures() as f64, "handshakes");
    ctx.key_figure(format!("{} new after delete (last at {last:.0} ms)", to_victim.len()));
    // What matters: the data plane stops sending new connections before the
    // pod's preStop ends and SIGTERM closes its listener.
    Ok(
        match (
            report.failures(),
            last < termination_prestop(&ctx).as_secs_f64() * 1000.0,
        ) {
            (0, true) => "stopped-before-sigterm".to_owned(),
            (0, false) => "still-routed-at-sigterm".to_owned(),
            (f, _) => format!("{f}-failed-handshakes"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::lag_figures;

    #[test]
    fn lag_figures_give_median_max_and_the_prestop_rounded_up() {
        assert_eq!(lag_figures(&[120.0, 40.0, 980.0]), Some((120.0, 980.0, 1000.0)));
        assert_eq!(lag_figures(&[0.0, 0.0]), Some((0.0, 0.0, 0.0)));
        assert_eq!(lag_figures(&[1001.0]), Some((1001.0, 1001.0, 1100.0)));
        assert_eq!(lag_figures(&[]), None);
    }
}

/// Connects, deletes the pod that answered, and waits for the end of the connection.
async fn delete_and_watch(ctx: &Ctx) -> anyhow::Result<(probe::Connection, String, Duration, End)> {
    let mut conn = connect(ctx, &ctx.probe("/ws")).await?;
    let pod = pod_of(&conn).await?;
    ctx.marker(format!("delete {pod}"));
    let started = Instant::now();
    let _termination = ctx.deployment.delete_pod(&pod).await?;
    let outcome = hold_idle(&mut conn, Duration::from_secs(20)).await;
    let after = started.elapsed();
    ctx.lane(format!("connection to {pod}"), conn.timeline());
    ctx.figure("ended_after_delete", after.as_secs_f64(), "s");
    Ok((conn, pod, after, outcome.end))
}

async fn server_close_1001_reaches_client(ctx: Ctx) -> anyhow::Result<String> {
    let (_conn, _pod, after, end) = delete_and_watch(&ctx).await?;
    let word = end_word(&end);
    ctx.key_figure(format!("{word} at {}", secs(after)));
    Ok(word)
}

async fn client_reconnects_to_new_pod(ctx: Ctx) -> anyhow::Result<String> {
    let (_conn, old, _after, end) = delete_and_watch(&ctx).await?;
    let closed_at = Instant::now();
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(1),
        factor: 2.0,
        max_attempts: 20,
    };
    let again = probe::reconnect_with_backoff(&ctx.probe("/ws"), backoff).await?;
    let disruption = closed_at.elapsed();
    let new = pod_of(&again.conn).await?;
    ctx.lane(format!("reconnect to {new}"), again.conn.timeline());
    ctx.figure("disruption", disruption.as_secs_f64() * 1000.0, "ms");
    ctx.figure("attempts", again.attempts as f64, "attempts");
    ctx.key_figure(format!(
        "{} after {}: {:.0} ms, {} attempt(s)",
        new,
        end_word(&end),
        disruption.as_secs_f64() * 1000.0,
        again.attempts
    ));
    Ok(if new != old { "reconnected" } else { "same-pod" }.to_owned())
}

async fn rolling_update_has_no_failed_handshakes(ctx: Ctx) -> anyhow::Result<String> {
    let opener = open_continuously(ctx.probe("/ws"), Duration::from_millis(100));
    ctx.marker("rollout restart");
    let started = Instant::now();
    ctx.deployment.rollout_restart().await?;
    let rollout = started.elapsed();
    ctx.marker("rollout done");
    // Keep opening for two seconds after the rollout: the new pods must serve too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = opener.stop().await;
    ctx.figure("rollout_duration", rollout.as_secs_f64(), "s");
    for (i, attempt) in report
        .attempts
        .iter()
        .enumerate()
        .filter(|(i, a)| i % 5 == 0 || !matches!(a.outcome, probe::AttemptOutcome::Connected { .. }))
    {
        ctx.lane(format!("attempt {i}"), &attempt.timeline);
    }
    let failures = report.failures();
    ctx.figure("attempts", report.attempts.len() as f64, "handshakes");
    ctx.figure("failed_handshakes", failures as f64, "handshakes");
    ctx.key_figure(format!("{failures} failed of {}", report.attempts.len()));
    anyhow::ensure!(
        report.attempts.len() >= 10,
        "only {} attempts during the rollout",
        report.attempts.len()
    );
    Ok(if failures == 0 {
        "no-failures".to_owned()
    } else {
        "failed-handshakes".to_owned()
    })
}

async fn no_message_loss_across_rollout(ctx: Ctx) -> anyhow::Result<String> {
    let stats = SharedStats::default();
    let client = tokio::spawn(numbered_client(ctx.clone(), stats.clone()));
    ctx.marker("rollout restart");
    ctx.deployment.rollout_restart().await?;
    ctx.marker("rollout done");
    tokio::time::sleep(Duration::from_millis(500)).await; // let the client send on the new pods too
    client.abort();
    match client.await {
        Err(e) if e.is_cancelled() => {}
        Err(e) => bail!("the numbered client panicked: {e}"),
        Ok(result) => result?,
    }
    let stats = *stats.lock().unwrap_or_else(|p| p.into_inner());
    ctx.figure("sent", stats.sent as f64, "messages");
    ctx.figure("lost", stats.lost as f64, "messages");
    ctx.figure("crossed_the_close_frame", stats.crossed_close as f64, "messages");
    ctx.figure("reconnects", stats.reconnects as f64, "reconnects");
    ctx.figure("abnormal_ends", stats.abnormal as f64, "connections");
    ctx.key_figure(format!(
        "{} lost of {}, {} reconnects, {} crossed the close",
        stats.lost, stats.sent, stats.reconnects, stats.crossed_close
    ));
    anyhow::ensure!(stats.reconnects >= 1, "the rollout never moved the client");
    Ok(if stats.lost == 0 { "no-loss" } else { "lost-messages" }.to_owned())
}

#[derive(Debug, Clone, Copy, Default)]
struct NumberedStats {
    sent: u64,
    lost: u64,
    /// Sent while the server's close frame was on the wire (see `numbered_client`).
    crossed_close: u64,
    reconnects: u64,
    abnormal: u64,
}

type SharedStats = std::sync::Arc<std::sync::Mutex<NumberedStats>>;

fn update(stats: &SharedStats, f: impl FnOnce(&mut NumberedStats)) {
    f(&mut stats.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Sends a numbered message every 50 ms and reconnects whenever a connection ends.
///
/// A message counts as lost when it was sent before the close frame arrived
/// and never echoed, unless it crossed the close on the wire: sent less than
/// one round trip (the slowest echo seen on that connection) before the close
/// arrived, so the server had already sent its Close when it got the message
/// and RFC 6455 forbids it to answer. Those are counted apart, not hidden.
async fn numbered_client(ctx: Ctx, stats: SharedStats) -> anyhow::Result<()> {
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        factor: 2.0,
        max_attempts: 40,
    };
    let mut next = 0u64;
    let mut lane = 0;
    loop {
        let mut conn = probe::reconnect_with_backoff(&ctx.probe("/ws"), backoff).await?.conn;
        lane += 1;
        // Unechoed messages and when each was sent.
        let mut outstanding = BTreeMap::<String, Instant>::new();
        let mut slowest_echo = Duration::ZERO;
        let closed_at = loop {
            next += 1;
            let text = probe::helpers::numbered(next);
            if conn.send_text(text.clone()).await.is_err() {
                break Instant::now();
            }
            outstanding.insert(text, Instant::now());
            update(&stats, |s| s.sent += 1);
            let until = Instant::now() + Duration::from_millis(50);
            let mut ended = None;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match conn.recv(left).await {
                    Ok(Incoming::Text(t)) => {
                        if let Some(sent) = outstanding.remove(&t) {
                            slowest_echo = slowest_echo.max(sent.elapsed());
                        }
                    }
                    Ok(Incoming::Close { .. }) | Err(probe::ProbeError::Ended { .. }) => {
                        ended = Some(Instant::now());
                        break;
                    }
                    Ok(_) => {}
                    Err(probe::ProbeError::RecvTimeout { .. }) => break,
                    Err(_) => {
                        ended = Some(Instant::now());
                        break;
                    }
                }
            }
            if let Some(at) = ended {
                break at;
            }
        };
        let crossed = outstanding
            .values()
            .filter(|sent| closed_at.duration_since(**sent) < slowest_echo)
            .count() as u64;
        let lost = outstanding.len() as u64 - crossed;
        let abnormal = matches!(conn.end(), Some(End::Abnormal { .. }));
        update(&stats, |s| {
            s.lost += lost;
            s.crossed_close += crossed;
            s.reconnects += 1;
            s.abnormal += u64::from(abnormal);
        });
        ctx.lane(format!("client connection {lane}"), conn.timeline());
    }
}

async fn sigkill_after_grace_ends_connection_abnormally(ctx: Ctx) -> anyhow::Result<String> {
    let grace = ctx.deployment.spec().drain.termination_grace;
    let (_conn, _pod, after, end) = delete_and_watch(&ctx).await?;
    let word = end_word(&end);
    ctx.key_figure(format!("{word} at {} (grace {})", secs(after), secs(grace)));
    let near_grace = after >= grace.mul_f64(0.9) && after <= grace + Duration::from_secs(3);
    Ok(if near_grace {
        word
    } else {
        format!("{word}-not-at-grace")
    })
}

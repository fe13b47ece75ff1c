//! Reloads: endpoint changes (which never reload the data plane), a new route (which reloads some
//! controllers), a new TLS host on the listener (which touches the listener), a controller-wide
//! change (which reloads every controller that reloads) and the data plane's own termination.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use model::IngressSpec;
use probe::{End, open_continuously};

use super::support::{connect, echo, end_word, pod_of, quick_drain, secs};
use crate::catalogue::{Area, Behaviour};
use crate::feature::Feature;
use crate::harness::Ctx;

/// How long a replaced data-plane process may keep serving: the spec's and the test's figure.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "connection_survives_endpoint_change",
        area: Area::Reloads,
        description: "Scaling up and down leaves open connections alone.",
        features: &[],
        spec: || IngressSpec::new(2).with_drain(quick_drain()),
        test: |ctx| Box::pin(connection_survives_endpoint_change(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "scale_up_leaves_existing_connections",
        area: Area::Reloads,
        description: "10 WebSockets on one pod, then the Deployment scales 1 → 3 (what an HPA on connection \
                      count does): the open ones stay on the first pod — long-lived connections never \
                      rebalance — while new ones spread. Both shares measured.",
        features: &[],
        spec: || IngressSpec::new(1).with_drain(quick_drain()),
        test: |ctx| Box::pin(scale_up_leaves_existing_connections(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "connection_survives_route_added",
        area: Area::Reloads,
        description: "A new Ingress (another host) for the same Service is added, data-plane drain limit 5 s: \
                      whether an open connection survives, and if not when it ends.",
        features: &[Feature::DataPlaneDrainLimit],
        spec: || IngressSpec::new(1).with_data_plane_drain_limit(DRAIN_LIMIT),
        test: |ctx| Box::pin(connection_survives_route_added(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "connection_survives_listener_change",
        area: Area::Reloads,
        description: "Over TLS, another host with its own certificate joins the same port (a new Ingress with its \
                      TLS Secret; Envoy Gateway: a new HTTPS listener hostname with its certificate and route), \
                      data-plane drain limit 5 s: whether an open connection survives, and if not when it ends.",
        features: &[Feature::Tls, Feature::DataPlaneDrainLimit],
        spec: || IngressSpec::new(1).with_tls().with_data_plane_drain_limit(DRAIN_LIMIT),
        test: |ctx| Box::pin(connection_survives_listener_change(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "connection_fate_on_data_plane_termination",
        area: Area::Reloads,
        description: "The data plane's own pod is terminated (a controller upgrade), data-plane drain limit 5 s: \
                      when and how an open WebSocket ends (close frame or not), and whether new connections \
                      are refused meanwhile (refused: none accepted later than 1 s after the signal).",
        features: &[Feature::DataPlaneDrainLimit],
        spec: || IngressSpec::new(2).with_data_plane_drain_limit(DRAIN_LIMIT),
        test: |ctx| Box::pin(connection_fate_on_data_plane_termination(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "connection_fate_on_controller_reload",
        area: Area::Reloads,
        description: "A controller-wide setting the controller reloads for is changed (where it never reloads, its \
                      nearest equivalent), data-plane drain limit 5 s: whether and when an open connection ends.",
        features: &[Feature::DataPlaneDrainLimit],
        spec: || IngressSpec::new(1).with_data_plane_drain_limit(DRAIN_LIMIT),
        test: |ctx| Box::pin(connection_fate_on_controller_reload(ctx)),
        slow: None,
        kubernetes_only: None,
    },
];

async fn connection_survives_endpoint_change(ctx: Ctx) -> anyhow::Result<String> {
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(connect(&ctx, &ctx.probe("/ws")).await?);
    }
    ctx.marker("scale 2 → 4");
    ctx.deployment.scale(4).await?;
    ctx.marker("scale 4 → 2");
    ctx.deployment.scale(2).await?;
    let alive: BTreeSet<String> = ctx.deployment.pods().await?.into_iter().map(|p| p.name).collect();
    let (mut kept, mut on_survivors) = (0, 0);
    for (i, conn) in conns.iter_mut().enumerate() {
        let pod = pod_of(conn).await?;
        if alive.contains(&pod) {
            on_survivors += 1;
            if echo(conn, &format!("after scaling {i}")).await.is_ok() {
                kept += 1;
            }
        }
        ctx.lane(format!("connection to {pod}"), conn.timeline());
    }
    anyhow::ensure!(on_survivors > 0, "no connection was on a pod that survived scaling");
    ctx.key_figure(format!("{kept}/{on_survivors} kept"));
    Ok(if kept == on_survivors { "untouched" } else { "cut" }.to_owned())
}

/// New connections count as refused when none was accepted later than this after the signal.
const REFUSED_WITHIN: Duration = Duration::from_secs(1);

/// How many connections `scale_up_leaves_existing_connections` holds and then opens.
const HELD: usize = 10;
const OPENED_AFTER: usize = 30;

async fn scale_up_leaves_existing_connections(ctx: Ctx) -> anyhow::Result<String> {
    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(connect(&ctx, &ctx.probe("/ws")).await?);
    }
    let first = pod_of(&held[0]).await?;
    ctx.marker("scale 1 → 3");
    ctx.deployment.scale(3).await?;
    // The new pods are Ready; the data plane gets them in its controller's own time.
    let routed_by = Instant::now() + Duration::from_secs(30);
    let mut waited = Vec::new();
    loop {
        let conn = connect(&ctx, &ctx.probe("/ws")).await?;
        let pod = pod_of(&conn).await?;
        drop(conn);
        if pod != first {
            break;
        }
        waited.push(pod);
        anyhow::ensure!(
            Instant::now() < routed_by,
            "no new connection reached a new pod within 30 s of scaling to 3 ({} tries)",
            waited.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // pacing of the poll
    }
    let mut on_new = 0;
    let mut pods = BTreeSet::new();
    for _ in 0..OPENED_AFTER {
        let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
        let pod = pod_of(&conn).await?;
        on_new += usize::from(pod != first);
        pods.insert(pod);
        conn.close(1000, "").await?;
    }
    let mut stayed = 0;
    for (i, conn) in held.iter_mut().enumerate() {
        if pod_of(conn).await? == first && echo(conn, &format!("after scaling {i}")).await.is_ok() {
            stayed += 1;
        }
    }
    ctx.lane(format!("held connection to {first}"), held[0].timeline());
    ctx.figure("held_on_first_pod", stayed as f64, &format!("of {HELD}"));
    ctx.figure("new_on_new_pods", on_new as f64, &format!("of {OPENED_AFTER}"));
    ctx.key_figure(format!(
        "held {stayed}/{HELD} on the first pod; new {on_new}/{OPENED_AFTER} on the new pods"
    ));
    Ok(match (stayed == HELD, pods.len() >= 2) {
        (true, true) => "existing-stay-new-spread",
        (true, false) => "existing-stay-new-not-spread",
        (false, _) => "existing-moved",
    }
    .to_owned())
}

async fn connection_survives_route_added(ctx: Ctx) -> anyhow::Result<String> {
    let conn = connect(&ctx, &ctx.probe("/ws")).await?;
    ctx.marker("new Ingress (host) for the same Service");
    let changed_at = Instant::now();
    ctx.deployment.apply_unrelated_change().await?;
    fate_after_change(&ctx, conn, changed_at, "the new route").await
}

async fn connection_survives_listener_change(ctx: Ctx) -> anyhow::Result<String> {
    let conn = connect(&ctx, &ctx.probe("/ws")).await?;
    ctx.marker("new TLS host with its own certificate on the same port");
    let changed_at = Instant::now();
    ctx.deployment.apply_listener_change().await?;
    fate_after_change(&ctx, conn, changed_at, "the new TLS host").await
}

async fn connection_fate_on_data_plane_termination(ctx: Ctx) -> anyhow::Result<String> {
    let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
    ctx.marker("terminate the data plane's pod");
    let started = Instant::now();
    let termination = ctx.deployment.terminate_data_plane().await?;
    let opener = open_continuously(ctx.probe("/ws"), Duration::from_millis(100));
    let outcome = probe::hold_idle(&mut conn, DRAIN_LIMIT * 2 + Duration::from_secs(2)).await;
    let ended = started.elapsed();
    let report = opener.stop().await;
    ctx.lane("connection across the data plane's termination", conn.timeline());
    ctx.termination(&termination.wait(Duration::from_secs(60)).await?);
    let word = end_word(&outcome.end);
    let accepted = report.successes();
    let last_accepted = report
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, probe::AttemptOutcome::Connected { .. }))
        .map(|a| a.at_ms)
        .fold(0.0_f64, f64::max);
    ctx.figure("ended_after_termination", ended.as_secs_f64(), "s");
    ctx.figure(
        "new_connections_accepted",
        accepted as f64,
        &format!("of {}", report.attempts.len()),
    );
    ctx.figure("last_new_connection_accepted", last_accepted, "ms");
    // The signal reaches the data plane asynchronously: a connection accepted in the first
    // moments after it is not the data plane accepting connections while it drains.
    let refused = last_accepted < REFUSED_WITHIN.as_secs_f64() * 1000.0;
    let new = if refused { "refused" } else { "accepted" };
    ctx.key_figure(if accepted == 0 {
        format!("{word} at {}; new connections refused", secs(ended))
    } else if refused {
        format!(
            "{word} at {}; new connections refused after {last_accepted:.0} ms ({accepted}/{} accepted before)",
            secs(ended),
            report.attempts.len()
        )
    } else {
        format!(
            "{word} at {}; {accepted}/{} new connections accepted, the last at {last_accepted:.0} ms",
            secs(ended),
            report.attempts.len()
        )
    });
    Ok(format!("{word}-new-{new}"))
}

async fn connection_fate_on_controller_reload(ctx: Ctx) -> anyhow::Result<String> {
    let conn = connect(&ctx, &ctx.probe("/ws")).await?;
    ctx.marker("controller-wide setting changed");
    let changed_at = Instant::now();
    ctx.deployment.apply_controller_change().await?;
    fate_after_change(&ctx, conn, changed_at, "the change").await
}

/// Echoes over `conn` until it ends or twice the drain limit (and a second) passed since the
/// change was asked for. Words: `survived`, or `cut-<how it ended>`.
async fn fate_after_change(
    ctx: &Ctx,
    mut conn: probe::Connection,
    changed_at: Instant,
    change: &str,
) -> anyhow::Result<String> {
    let applied = changed_at.elapsed();
    ctx.figure("change_applied_after", applied.as_secs_f64(), "s");
    let watch = DRAIN_LIMIT * 2 + Duration::from_secs(1);
    let mut n = 0;
    let word = loop {
        if changed_at.elapsed() > watch {
            break "survived".to_owned();
        }
        n += 1;
        if echo(&mut conn, &format!("after {change} {n}")).await.is_err() {
            break end_word(&conn.end().cloned().unwrap_or(End::Abnormal {
                at_ms: 0.0,
                error: "echo failed".into(),
            }));
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // pacing of the echo loop
    };
    let after = changed_at.elapsed();
    ctx.lane(format!("connection across {change}"), conn.timeline());
    if word == "survived" {
        ctx.key_figure(format!("open {} after {change}", secs(after)));
        Ok(word)
    } else {
        ctx.figure("ended_after_change", after.as_secs_f64(), "s");
        ctx.key_figure(format!("{word} {} after {change}", secs(after)));
        Ok(format!("cut-{word}"))
    }
}

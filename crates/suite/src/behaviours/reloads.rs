//! Reloads: endpoint changes (which never reload the data plane) against configuration reloads.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use model::IngressSpec;
use probe::End;

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
        kubernetes_only: None,
    },
    Behaviour {
        name: "connection_fate_on_config_reload",
        area: Area::Reloads,
        description: "An unrelated route is added with the data-plane drain limit at 5 s: whether and when existing connections end.",
        features: &[Feature::DataPlaneDrainLimit],
        spec: || IngressSpec::new(1).with_data_plane_drain_limit(DRAIN_LIMIT),
        test: |ctx| Box::pin(connection_fate_on_config_reload(ctx)),
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

async fn connection_fate_on_config_reload(ctx: Ctx) -> anyhow::Result<String> {
    let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
    ctx.marker("unrelated route added");
    let reload_at = Instant::now();
    ctx.deployment.apply_unrelated_change().await?;
    let watch = DRAIN_LIMIT * 2 + Duration::from_secs(1);
    let mut n = 0;
    let word = loop {
        if reload_at.elapsed() > watch {
            break "survived".to_owned();
        }
        n += 1;
        if echo(&mut conn, &format!("after reload {n}")).await.is_err() {
            break end_word(&conn.end().cloned().unwrap_or(End::Abnormal {
                at_ms: 0.0,
                error: "echo failed".into(),
            }));
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // pacing of the echo loop
    };
    let after = reload_at.elapsed();
    ctx.lane("connection across the reload", conn.timeline());
    if word == "survived" {
        ctx.key_figure(format!("open {} after reload", secs(after)));
        Ok(word)
    } else {
        ctx.figure("ended_after_reload", after.as_secs_f64(), "s");
        ctx.key_figure(format!("{word} {} after reload", secs(after)));
        Ok(format!("cut-{word}"))
    }
}

//! Observability: the pods' own metrics agree with what the clients hold open.

use std::time::{Duration, Instant};

use model::IngressSpec;

use super::support::connect;
use crate::catalogue::{Area, Behaviour};
use crate::harness::Ctx;

pub(super) const BEHAVIOURS: &[Behaviour] = &[Behaviour {
    name: "metrics_count_active_connections",
    area: Area::Observability,
    description: "With 5 open connections, `websocket_connections_active` summed over the pods' /metrics is 5.",
    features: &[],
    spec: || IngressSpec::new(3),
    test: |ctx| Box::pin(metrics_count_active_connections(ctx)),
    slow: None,
    kubernetes_only: None,
}];

async fn metrics_count_active_connections(ctx: Ctx) -> anyhow::Result<String> {
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(connect(&ctx, &ctx.probe("/ws")).await?);
    }
    // The gauge follows the connections; poll until it settles or the deadline passes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut total = 0.0;
    while Instant::now() < deadline {
        total = 0.0;
        for pod in ctx.deployment.pods().await? {
            total += gauge(
                &ctx.deployment.pod_metrics(&pod.name).await?,
                "websocket_connections_active",
            );
        }
        if total == 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctx.figure("websocket_connections_active", total, "connections");
    ctx.key_figure(format!("sum = {total}"));
    drop(conns);
    Ok(format!("{total}"))
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

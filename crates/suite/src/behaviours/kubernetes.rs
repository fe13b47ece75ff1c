//! Kubernetes-only effects: Service settings that only a real cluster (kube-proxy,
//! EndpointSlices) gives a meaning; `local` reports them as not applicable.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use model::IngressSpec;
use probe::{self, open_continuously};

use super::support::{covering_drain, pods_reached, termination_prestop};
use crate::catalogue::{Area, Behaviour};
use crate::feature::Feature;
use crate::harness::Ctx;

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "service_session_affinity_is_bypassed",
        area: Area::Kubernetes,
        description: "Service `sessionAffinity: ClientIP` without ingress affinity: 30 connections from one client still reach ≥ 2 pods when the controller routes to pod IPs.",
        features: &[Feature::ServiceSessionAffinity],
        spec: || {
            let mut spec = IngressSpec::new(3);
            spec.service.session_affinity_client_ip = true;
            spec
        },
        test: |ctx| Box::pin(service_session_affinity_is_bypassed(ctx)),
        slow: None,
        kubernetes_only: Some(
            "Service sessionAffinity is implemented by kube-proxy, which the local environment does not have",
        ),
    },
    Behaviour {
        name: "publish_not_ready_addresses_keeps_terminating_pod_routable",
        area: Area::Kubernetes,
        description: "With `publishNotReadyAddresses: true` (preStop longer than every controller's modelled endpoint \
                      lag), whether new connections still reach a terminating pod until SIGTERM.",
        features: &[Feature::PublishNotReadyAddresses],
        spec: || {
            let mut spec = IngressSpec::new(3).with_drain(covering_drain());
            spec.service.publish_not_ready_addresses = true;
            spec
        },
        test: |ctx| Box::pin(publish_not_ready_addresses_keeps_terminating_pod_routable(ctx)),
        slow: None,
        kubernetes_only: Some("publishNotReadyAddresses is an EndpointSlice behaviour of a real cluster"),
    },
];

async fn service_session_affinity_is_bypassed(ctx: Ctx) -> anyhow::Result<String> {
    let pods: BTreeSet<String> = pods_reached(&ctx, &ctx.probe("/ws"), 30).await?.into_iter().collect();
    ctx.key_figure(format!("30 conns → {} pods", pods.len()));
    Ok(if pods.len() >= 2 { "bypassed" } else { "honoured" }.to_owned())
}

async fn publish_not_ready_addresses_keeps_terminating_pod_routable(ctx: Ctx) -> anyhow::Result<String> {
    let victim = ctx.deployment.pods().await?.first().context("no pods")?.name.clone();
    let termination = ctx.deployment.delete_pod(&victim).await?;
    let opener = open_continuously(ctx.probe("/ws"), Duration::from_millis(100));
    tokio::time::sleep(termination_prestop(&ctx)).await; // the window under test
    let report = opener.stop().await;
    ctx.termination(&termination.wait(Duration::from_secs(60)).await?);
    let last = report
        .attempts
        .iter()
        .filter(|a| matches!(&a.outcome, probe::AttemptOutcome::Connected { pod: Some(p) } if *p == victim))
        .map(|a| a.at_ms)
        .fold(0.0_f64, f64::max);
    ctx.figure("last_new_connection_to_terminating_pod", last, "ms");
    ctx.key_figure(format!("last new connection at {last:.0} ms"));
    // The endpoint stays Ready with publishNotReadyAddresses; a controller that reads only Ready
    // keeps routing to it until its listener closes, one that also reads Terminating stops.
    let window_ms = termination_prestop(&ctx).as_secs_f64() * 1000.0;
    Ok(if last + 500.0 >= window_ms {
        "still-routed-at-sigterm"
    } else {
        "stopped-before-sigterm"
    }
    .to_owned())
}

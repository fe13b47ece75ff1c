//! Affinity: spreading without it, pinning by cookie and by client address, what happens when
//! the pinned pod dies, and the long-polling failure mode that needs it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use model::{Affinity, CookieAffinity, IngressSpec};

use super::support::{connect, pod_of, pods_reached, quick_drain, source};
use crate::catalogue::{Area, Behaviour};
use crate::feature::Feature;
use crate::harness::Ctx;

fn cookie() -> Affinity {
    Affinity::Cookie(CookieAffinity::default())
}

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "no_affinity_spreads_connections",
        area: Area::Affinity,
        description: "3 pods, no affinity: 30 connections reach at least 2 pods.",
        features: &[],
        spec: || IngressSpec::new(3),
        test: |ctx| Box::pin(no_affinity_spreads_connections(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "cookie_affinity_pins_reconnects",
        area: Area::Affinity,
        description: "Cookie affinity: the cookie arrives on the 101; 10 reconnects with it reach the same pod.",
        features: &[Feature::CookieAffinity],
        spec: || IngressSpec::new(3).with_affinity(cookie()),
        test: |ctx| Box::pin(cookie_affinity_pins_reconnects(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "client_ip_affinity_pins_by_source",
        area: Area::Affinity,
        description: "Client-IP affinity: 5 source addresses × 5 reconnects; each source always reaches one pod, sources spread over ≥ 2 pods.",
        features: &[Feature::ClientIpAffinity],
        spec: || IngressSpec::new(3).with_affinity(Affinity::ClientIp),
        test: |ctx| Box::pin(client_ip_affinity_pins_by_source(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "cookie_affinity_moves_when_pod_dies",
        area: Area::Affinity,
        description: "The pinned pod is deleted; reconnecting with the old cookie reaches a live pod without error.",
        features: &[Feature::CookieAffinity],
        spec: || IngressSpec::new(3).with_affinity(cookie()).with_drain(quick_drain()),
        test: |ctx| Box::pin(cookie_affinity_moves_when_pod_dies(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "polling_session_needs_affinity",
        area: Area::Affinity,
        description: "`POST /session` then 10 `GET /session/{sid}`: all 200 with cookie affinity; without it at least one 400.",
        features: &[Feature::CookieAffinity],
        spec: || IngressSpec::new(3).with_affinity(cookie()),
        test: |ctx| Box::pin(polling_session_needs_affinity(ctx)),
        slow: None,
        kubernetes_only: None,
    },
];

async fn no_affinity_spreads_connections(ctx: Ctx) -> anyhow::Result<String> {
    let pods: BTreeSet<String> = pods_reached(&ctx, &ctx.probe("/ws"), 30).await?.into_iter().collect();
    ctx.figure("distinct_pods", pods.len() as f64, "pods");
    ctx.key_figure(format!("30 conns → {} pods", pods.len()));
    Ok(if pods.len() >= 2 { "spread" } else { "single-pod" }.to_owned())
}

async fn cookie_affinity_pins_reconnects(ctx: Ctx) -> anyhow::Result<String> {
    let jar = probe::CookieJar::new();
    let opts = ctx.probe("/ws").cookie_jar(jar.clone());
    let first = connect(&ctx, &opts).await?;
    let pinned = pod_of(&first).await?;
    let cookie_on_101 = first.handshake().is_some_and(|h| !h.set_cookies.is_empty());
    if !cookie_on_101 || jar.is_empty() {
        return Ok("no-cookie-on-101".to_owned());
    }
    let pods = pods_reached(&ctx, &opts, 10).await?;
    let same = pods.iter().filter(|p| **p == pinned).count();
    ctx.figure("reconnects_to_pinned_pod", same as f64, "of 10");
    ctx.key_figure(format!("{same}/10 to {pinned}"));
    Ok(if same == 10 { "pinned" } else { "not-pinned" }.to_owned())
}

async fn client_ip_affinity_pins_by_source(ctx: Ctx) -> anyhow::Result<String> {
    let mut by_source = BTreeMap::<IpAddr, BTreeSet<String>>::new();
    for n in 1..=5 {
        let pods = pods_reached(&ctx, &ctx.probe("/ws").source_ip(source(n)), 5).await?;
        by_source.insert(source(n), pods.into_iter().collect());
    }
    let pinned = by_source.values().all(|pods| pods.len() == 1);
    let spread: BTreeSet<&String> = by_source.values().flatten().collect();
    ctx.figure("pods_over_sources", spread.len() as f64, "pods");
    ctx.key_figure(format!("5 sources → {} pods", spread.len()));
    Ok(match (pinned, spread.len() >= 2) {
        (true, true) => "pinned-and-spread",
        (true, false) => "pinned-single-pod",
        (false, _) => "not-pinned",
    }
    .to_owned())
}

async fn cookie_affinity_moves_when_pod_dies(ctx: Ctx) -> anyhow::Result<String> {
    let jar = probe::CookieJar::new();
    let opts = ctx.probe("/ws").cookie_jar(jar.clone());
    let mut first = connect(&ctx, &opts).await?;
    let pinned = pod_of(&first).await?;
    first.close(1000, "").await?;
    ctx.marker(format!("delete {pinned}"));
    let record = ctx
        .deployment
        .delete_pod(&pinned)
        .await?
        .wait(Duration::from_secs(30))
        .await?;
    ctx.termination(&record);
    let started = Instant::now();
    let attempt = probe::connect(&opts).await;
    Ok(match attempt {
        Ok(conn) => {
            let now = pod_of(&conn).await?;
            ctx.lane("reconnect with old cookie", conn.timeline());
            ctx.key_figure(format!(
                "{pinned} → {now} in {:.0} ms",
                started.elapsed().as_secs_f64() * 1000.0
            ));
            if now == pinned {
                "still-pinned-to-dead-pod"
            } else {
                "moved"
            }
            .to_owned()
        }
        Err(err) => {
            ctx.key_figure(format!("failed: {err}"));
            format!("failed-{}", err.status().unwrap_or(0))
        }
    })
}

async fn polling_session_needs_affinity(ctx: Ctx) -> anyhow::Result<String> {
    // `sticky`: one cookie jar for the whole session, as a browser keeps it;
    // otherwise every request starts without cookies.
    let poll = |sticky: bool| {
        let jar = probe::CookieJar::new();
        let base = ctx.probe("/");
        let opts = move || {
            base.clone()
                .cookie_jar(if sticky { jar.clone() } else { probe::CookieJar::new() })
        };
        async move {
            let created = probe::http_request(&opts(), http::Method::POST, "/session", Vec::new()).await?;
            anyhow::ensure!(created.status == 200, "POST /session answered {}", created.status);
            let sid = created.json::<serde_json::Value>()?["sid"]
                .as_str()
                .context("no sid")?
                .to_owned();
            let mut statuses = Vec::new();
            for _ in 0..10 {
                statuses.push(
                    probe::http_get(&opts(), &format!("/session/{sid}"))
                        .await?
                        .status
                        .as_u16(),
                );
            }
            anyhow::Ok(statuses)
        }
    };
    let with_cookie = poll(true).await?;
    let without = poll(false).await?;
    let ok = |s: &[u16]| s.iter().filter(|s| **s == 200).count();
    ctx.figure("ok_with_cookie", ok(&with_cookie) as f64, "of 10");
    ctx.figure("ok_without_cookie", ok(&without) as f64, "of 10");
    ctx.key_figure(format!(
        "with cookie {}/10 · without {}/10",
        ok(&with_cookie),
        ok(&without)
    ));
    let all_ok = with_cookie.iter().all(|s| *s == 200);
    let some_400 = without.contains(&400);
    Ok(match (all_ok, some_400) {
        (true, true) => "sticky-needed",
        (true, false) => "no-failure-without-affinity",
        (false, _) => "failures-with-affinity",
    }
    .to_owned())
}

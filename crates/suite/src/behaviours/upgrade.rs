//! Upgrade: the handshake, echo, subprotocols, plain HTTP beside it, TLS, the client's address.

use std::net::SocketAddr;

use anyhow::Context;
use model::IngressSpec;
use probe::{self, Incoming};

use super::support::{RECV, connect, echo, pod_of, source};
use crate::catalogue::{Area, Behaviour};
use crate::feature::Feature;
use crate::harness::Ctx;

pub(super) const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        name: "upgrade_echoes_text_and_binary",
        area: Area::Upgrade,
        description: "101 Switching Protocols; the hello names a pod; text, binary and a 64 KiB message round-trip exactly.",
        features: &[],
        spec: || IngressSpec::new(1),
        test: |ctx| Box::pin(upgrade_echoes_text_and_binary(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "upgrade_negotiates_subprotocol",
        area: Area::Upgrade,
        description: "Offering `echo.v1` gets it selected, visible to the client in the 101 and in the hello.",
        features: &[],
        spec: || IngressSpec::new(1),
        test: |ctx| Box::pin(upgrade_negotiates_subprotocol(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "plain_http_served_alongside",
        area: Area::Upgrade,
        description: "`/` and `/healthz` through the same host answer 200.",
        features: &[],
        spec: || IngressSpec::new(1),
        test: |ctx| Box::pin(plain_http_served_alongside(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "wss_through_tls_termination",
        area: Area::Upgrade,
        description: "wss:// through the ingress, TLS terminated with the testbed CA's certificate.",
        features: &[Feature::Tls],
        spec: || IngressSpec::new(1).with_tls(),
        test: |ctx| Box::pin(wss_through_tls_termination(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "client_ip_forwarded",
        area: Area::Upgrade,
        description: "The hello's `forwarded_for`/`real_ip` carry the client's address.",
        features: &[],
        spec: || IngressSpec::new(1),
        test: |ctx| Box::pin(client_ip_forwarded(ctx)),
        slow: None,
        kubernetes_only: None,
    },
    Behaviour {
        name: "proxy_protocol_preserves_client_ip",
        area: Area::Upgrade,
        description: "With PROXY protocol on at the ingress, a PROXY v1 header naming 203.0.113.7 shows up as the client address.",
        features: &[Feature::ProxyProtocol],
        spec: || IngressSpec::new(1).with_proxy_protocol(),
        test: |ctx| Box::pin(proxy_protocol_preserves_client_ip(ctx)),
        slow: None,
        kubernetes_only: None,
    },
];

async fn upgrade_echoes_text_and_binary(ctx: Ctx) -> anyhow::Result<String> {
    let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
    let status = conn.handshake().map(|h| h.status).unwrap_or(0);
    let pod = pod_of(&conn).await?;
    echo(&mut conn, "hello through the ingress").await?;
    let binary: Vec<u8> = (0..=255u8).collect();
    conn.send_binary(binary.clone()).await?;
    let got_binary = matches!(conn.recv_data(RECV).await?, Incoming::Binary(b) if b[..] == binary[..]);
    let big = "x".repeat(64 * 1024);
    conn.send_text(big.clone()).await?;
    let got_big = matches!(conn.recv_data(RECV).await?, Incoming::Text(t) if t == big);
    conn.close(1000, "done").await?;
    ctx.lane("client", conn.timeline());
    ctx.key_figure(format!("101 from {pod}"));
    Ok(match (status, got_binary, got_big) {
        (101, true, true) => "echoed".to_owned(),
        (101, false, _) => "binary-mismatch".to_owned(),
        (101, _, false) => "64k-mismatch".to_owned(),
        (status, ..) => format!("status-{status}"),
    })
}

async fn upgrade_negotiates_subprotocol(ctx: Ctx) -> anyhow::Result<String> {
    let conn = connect(&ctx, &ctx.probe("/ws").subprotocol("echo.v1")).await?;
    let selected = conn.subprotocol().map(str::to_owned);
    let seen_by_pod = conn.hello().and_then(|h| h.subprotocol.clone());
    ctx.key_figure(format!("selected {}", selected.as_deref().unwrap_or("none")));
    Ok(match (selected.as_deref(), seen_by_pod.as_deref()) {
        (Some("echo.v1"), Some("echo.v1")) => "selected".to_owned(),
        (None, _) => "not-selected".to_owned(),
        (client, pod) => format!("mismatch client={client:?} pod={pod:?}"),
    })
}

async fn plain_http_served_alongside(ctx: Ctx) -> anyhow::Result<String> {
    let opts = ctx.probe("/");
    let index = probe::http_get(&opts, "/").await?;
    let health = probe::http_get(&opts, "/healthz").await?;
    ctx.key_figure(format!(
        "/ {} · /healthz {}",
        index.status.as_u16(),
        health.status.as_u16()
    ));
    Ok(format!("{}/{}", index.status.as_u16(), health.status.as_u16()))
}

async fn wss_through_tls_termination(ctx: Ctx) -> anyhow::Result<String> {
    let opts = ctx.probe("/ws");
    anyhow::ensure!(opts.is_tls(), "the deployment did not turn TLS on");
    let mut conn = connect(&ctx, &opts).await?;
    echo(&mut conn, "over tls").await?;
    ctx.key_figure("wss echo");
    Ok("echoed".to_owned())
}

async fn client_ip_forwarded(ctx: Ctx) -> anyhow::Result<String> {
    let client = source(9);
    let conn = connect(&ctx, &ctx.probe("/ws").source_ip(client)).await?;
    let hello = conn.hello().context("no hello")?;
    let has = |v: &Option<String>| v.as_deref().is_some_and(|v| v.contains(&client.to_string()));
    ctx.key_figure(format!(
        "XFF {} · X-Real-IP {}",
        hello.forwarded_for.as_deref().unwrap_or("—"),
        hello.real_ip.as_deref().unwrap_or("—")
    ));
    Ok(match (has(&hello.forwarded_for), has(&hello.real_ip)) {
        (true, true) => "both",
        (true, false) => "forwarded-for-only",
        (false, true) => "real-ip-only",
        (false, false) => "neither",
    }
    .to_owned())
}

async fn proxy_protocol_preserves_client_ip(ctx: Ctx) -> anyhow::Result<String> {
    let claimed: SocketAddr = "203.0.113.7:40001".parse()?;
    let conn = connect(&ctx, &ctx.probe("/ws").proxy_protocol(claimed)).await?;
    let hello = conn.hello().context("no hello")?;
    let seen = [&hello.forwarded_for, &hello.real_ip]
        .into_iter()
        .flatten()
        .any(|v| v.contains("203.0.113.7"));
    ctx.key_figure(format!("XFF {}", hello.forwarded_for.as_deref().unwrap_or("—")));
    Ok(if seen { "preserved" } else { "lost" }.to_owned())
}

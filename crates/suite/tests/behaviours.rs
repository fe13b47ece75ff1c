//! The behaviour catalogue as tests: one per behaviour, parameterised over controllers.
//!
//! Each test builds an `IngressSpec`, measures through the probe, and returns
//! an observation word that `docs/profiles/<controller>.toml` expects. The
//! environment comes from `TESTBED_ENV` (default `local`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use model::{Affinity, Controller, CookieAffinity, IngressSpec};
use model::{Drain, PodSettings};
use probe::{self, Backoff, End, Incoming, ProbeOptions, hold_idle, hold_pinging, open_continuously};
use rstest::rstest;
use suite::Ctx;

const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const RECV: Duration = Duration::from_secs(5);

fn cookie() -> Affinity {
    Affinity::Cookie(CookieAffinity::default())
}

fn ticking(spec: IngressSpec, every: Duration) -> IngressSpec {
    spec.with_pod(PodSettings {
        tick_interval: Some(every),
        ..PodSettings::default()
    })
}

/// How a connection ended, in the profiles' vocabulary.
fn end_word(end: &End) -> String {
    match end {
        End::Closed { code, .. } => format!("close-{}", code.unwrap_or(1005)),
        End::Abnormal { .. } => "abnormal".to_owned(),
        End::HandshakeFailed { status, .. } => format!("handshake-{}", status.unwrap_or(0)),
        End::StillOpen { .. } => "open".to_owned(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A distinct client address for this test process (127.0.2.N).
fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, n))
}

async fn connect(ctx: &Ctx, opts: &ProbeOptions) -> anyhow::Result<probe::Connection> {
    probe::connect(opts)
        .await
        .with_context(|| format!("connecting through {}", ctx.controller))
}

async fn pod_of(conn: &probe::Connection) -> anyhow::Result<String> {
    conn.pod().map(str::to_owned).context("the connection has no hello")
}

/// Sends `text` and waits for its echo, skipping ticks.
async fn echo(conn: &mut probe::Connection, text: &str) -> anyhow::Result<()> {
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

// ----------------------------------------------------------------------------- upgrade

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_echoes_text_and_binary(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "upgrade_echoes_text_and_binary",
        c,
        IngressSpec::new(1),
        |ctx| async move {
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
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_negotiates_subprotocol(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "upgrade_negotiates_subprotocol",
        c,
        IngressSpec::new(1),
        |ctx| async move {
            let conn = connect(&ctx, &ctx.probe("/ws").subprotocol("echo.v1")).await?;
            let selected = conn.subprotocol().map(str::to_owned);
            let seen_by_pod = conn.hello().and_then(|h| h.subprotocol.clone());
            ctx.key_figure(format!("selected {}", selected.as_deref().unwrap_or("none")));
            Ok(match (selected.as_deref(), seen_by_pod.as_deref()) {
                (Some("echo.v1"), Some("echo.v1")) => "selected".to_owned(),
                (None, _) => "not-selected".to_owned(),
                (client, pod) => format!("mismatch client={client:?} pod={pod:?}"),
            })
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_served_alongside(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "plain_http_served_alongside",
        c,
        IngressSpec::new(1),
        |ctx| async move {
            let opts = ctx.probe("/");
            let index = probe::http_get(&opts, "/").await?;
            let health = probe::http_get(&opts, "/healthz").await?;
            ctx.key_figure(format!(
                "/ {} · /healthz {}",
                index.status.as_u16(),
                health.status.as_u16()
            ));
            Ok(format!("{}/{}", index.status.as_u16(), health.status.as_u16()))
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_through_tls_termination(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "wss_through_tls_termination",
        c,
        IngressSpec::new(1).with_tls(),
        |ctx| async move {
            let opts = ctx.probe("/ws");
            anyhow::ensure!(opts.is_tls(), "the deployment did not turn TLS on");
            let mut conn = connect(&ctx, &opts).await?;
            echo(&mut conn, "over tls").await?;
            ctx.key_figure("wss echo");
            Ok("echoed".to_owned())
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_forwarded(#[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller) {
    suite::run("client_ip_forwarded", c, IngressSpec::new(1), |ctx| async move {
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
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_preserves_client_ip(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(1).with_proxy_protocol();
    suite::run("proxy_protocol_preserves_client_ip", c, spec, |ctx| async move {
        let claimed: SocketAddr = "203.0.113.7:40001".parse()?;
        let conn = connect(&ctx, &ctx.probe("/ws").proxy_protocol(claimed)).await?;
        let hello = conn.hello().context("no hello")?;
        let seen = [&hello.forwarded_for, &hello.real_ip]
            .into_iter()
            .flatten()
            .any(|v| v.contains("203.0.113.7"));
        ctx.key_figure(format!("XFF {}", hello.forwarded_for.as_deref().unwrap_or("—")));
        Ok(if seen { "preserved" } else { "lost" }.to_owned())
    })
    .await;
}

// ----------------------------------------------------------------------------- timeouts

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

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closed_at_timeout(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT);
    suite::run("idle_connection_closed_at_timeout", c, spec, |ctx| async move {
        hold_and_observe(&ctx, false, IDLE_TIMEOUT * 3).await
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ticks_keep_connection_alive(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = ticking(
        IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT),
        Duration::from_secs(1),
    );
    suite::run("server_ticks_keep_connection_alive", c, spec, |ctx| async move {
        hold_and_observe(&ctx, false, IDLE_TIMEOUT * 3).await
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_keep_connection_alive(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(1)
        .with_idle_timeout(IDLE_TIMEOUT)
        .with_pod(PodSettings {
            ping_interval: Some(Duration::from_secs(1)),
            ..PodSettings::default()
        });
    suite::run("server_pings_keep_connection_alive", c, spec, |ctx| async move {
        hold_and_observe(&ctx, false, IDLE_TIMEOUT * 3).await
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pings_keep_connection_alive(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(1).with_idle_timeout(IDLE_TIMEOUT);
    suite::run("client_pings_keep_connection_alive", c, spec, |ctx| async move {
        hold_and_observe(&ctx, true, IDLE_TIMEOUT * 3).await
    })
    .await;
}

// ----------------------------------------------------------------------------- affinity

/// Opens `n` connections one after another with `opts` and returns the pods that answered.
async fn pods_reached(ctx: &Ctx, opts: &ProbeOptions, n: usize) -> anyhow::Result<Vec<String>> {
    let mut pods = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = connect(ctx, opts).await?;
        pods.push(pod_of(&conn).await?);
        conn.close(1000, "").await?;
    }
    Ok(pods)
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_affinity_spreads_connections(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "no_affinity_spreads_connections",
        c,
        IngressSpec::new(3),
        |ctx| async move {
            let pods: BTreeSet<String> = pods_reached(&ctx, &ctx.probe("/ws"), 30).await?.into_iter().collect();
            ctx.figure("distinct_pods", pods.len() as f64, "pods");
            ctx.key_figure(format!("30 conns → {} pods", pods.len()));
            Ok(if pods.len() >= 2 { "spread" } else { "single-pod" }.to_owned())
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_pins_reconnects(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "cookie_affinity_pins_reconnects",
        c,
        IngressSpec::new(3).with_affinity(cookie()),
        |ctx| async move {
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
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_pins_by_source(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "client_ip_affinity_pins_by_source",
        c,
        IngressSpec::new(3).with_affinity(Affinity::ClientIp),
        |ctx| async move {
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
        },
    )
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_moves_when_pod_dies(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(3).with_affinity(cookie()).with_drain(quick_drain());
    suite::run("cookie_affinity_moves_when_pod_dies", c, spec, |ctx| async move {
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
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_session_needs_affinity(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "polling_session_needs_affinity",
        c,
        IngressSpec::new(3).with_affinity(cookie()),
        |ctx| async move {
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
        },
    )
    .await;
}

// ----------------------------------------------------------------------------- termination

/// The suite's graceful-termination settings: preStop drain 3 s, grace 10 s, shutdown grace 2 s.
fn termination() -> Drain {
    Drain::default()
}

/// For tests that only need a pod gone: a short drain keeps them fast.
fn quick_drain() -> Drain {
    Drain {
        prestop_delay: Duration::from_millis(500),
        termination_grace: Duration::from_secs(5),
        shutdown_grace: Duration::from_millis(500),
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_connection_survives_prestop(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = ticking(
        IngressSpec::new(2).with_drain(termination()),
        Duration::from_millis(500),
    );
    suite::run("existing_connection_survives_prestop", c, spec, |ctx| async move {
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
    })
    .await;
}

fn termination_prestop(ctx: &Ctx) -> Duration {
    ctx.deployment.spec().drain.prestop_delay
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_connections_to_terminating_pod(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(3).with_drain(termination());
    suite::run("no_new_connections_to_terminating_pod", c, spec, |ctx| async move {
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
    })
    .await;
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

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_1001_reaches_client(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(2).with_drain(termination());
    suite::run("server_close_1001_reaches_client", c, spec, |ctx| async move {
        let (_conn, _pod, after, end) = delete_and_watch(&ctx).await?;
        let word = end_word(&end);
        ctx.key_figure(format!("{word} at {}", secs(after)));
        Ok(word)
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_to_new_pod(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(2).with_drain(termination());
    suite::run("client_reconnects_to_new_pod", c, spec, |ctx| async move {
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
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_has_no_failed_handshakes(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    // The suite's termination settings: a 1 s preStop measured too short for nginx's
    // endpoint propagation under load (a 503 from a pod already past SIGTERM).
    let spec = IngressSpec::new(3).with_drain(termination());
    suite::run("rolling_update_has_no_failed_handshakes", c, spec, |ctx| async move {
        let opener = open_continuously(ctx.probe("/ws"), Duration::from_millis(100));
        ctx.marker("rollout restart");
        let started = Instant::now();
        ctx.deployment.rollout_restart().await?;
        let rollout = started.elapsed();
        ctx.marker("rollout done");
        // Keep opening for a second after the rollout: the new pods must serve too.
        tokio::time::sleep(Duration::from_secs(1)).await;
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
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_loss_across_rollout(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(2).with_drain(termination());
    suite::run("no_message_loss_across_rollout", c, spec, |ctx| async move {
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
    })
    .await;
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

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_grace_ends_connection_abnormally(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(2).with_drain(termination()).with_pod(PodSettings {
        ignore_sigterm: true,
        ..PodSettings::default()
    });
    suite::run(
        "sigkill_after_grace_ends_connection_abnormally",
        c,
        spec,
        |ctx| async move {
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
        },
    )
    .await;
}

// ----------------------------------------------------------------------------- reloads

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_survives_endpoint_change(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let spec = IngressSpec::new(2).with_drain(quick_drain());
    suite::run("connection_survives_endpoint_change", c, spec, |ctx| async move {
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
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_fate_on_config_reload(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let drain_limit = Duration::from_secs(5);
    let spec = IngressSpec::new(1).with_data_plane_drain_limit(drain_limit);
    suite::run("connection_fate_on_config_reload", c, spec, |ctx| async move {
        let mut conn = connect(&ctx, &ctx.probe("/ws")).await?;
        ctx.marker("unrelated route added");
        let reload_at = Instant::now();
        ctx.deployment.apply_unrelated_change().await?;
        let watch = drain_limit * 2 + Duration::from_secs(1);
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
    })
    .await;
}

// ----------------------------------------------------------------------------- kubernetes-only

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_session_affinity_is_bypassed(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let mut spec = IngressSpec::new(3);
    spec.service.session_affinity_client_ip = true;
    suite::run("service_session_affinity_is_bypassed", c, spec, |ctx| async move {
        let pods: BTreeSet<String> = pods_reached(&ctx, &ctx.probe("/ws"), 30).await?.into_iter().collect();
        ctx.key_figure(format!("30 conns → {} pods", pods.len()));
        Ok(if pods.len() >= 2 { "bypassed" } else { "honoured" }.to_owned())
    })
    .await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_not_ready_addresses_keeps_terminating_pod_routable(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    let mut spec = IngressSpec::new(3).with_drain(termination());
    spec.service.publish_not_ready_addresses = true;
    suite::run(
        "publish_not_ready_addresses_keeps_terminating_pod_routable",
        c,
        spec,
        |ctx| async move {
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
            Ok(if last > 2000.0 {
                "still-routed"
            } else {
                "stopped-within-2s"
            }
            .to_owned())
        },
    )
    .await;
}

// ----------------------------------------------------------------------------- observability

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_active_connections(
    #[values(Controller::Nginx, Controller::Traefik, Controller::Haproxy)] c: Controller,
) {
    suite::run(
        "metrics_count_active_connections",
        c,
        IngressSpec::new(3),
        |ctx| async move {
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
        },
    )
    .await;
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

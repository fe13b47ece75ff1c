//! Integration tests for the probe client against in-process servers (ws-echo and small inline ones).

use std::net::SocketAddr;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use probe::tls::TestCa;
use probe::{
    self, AttemptOutcome, Backoff, ConnectStage, Direction, End, EventKind, Incoming, ProbeError, ProbeOptions, Side,
    connect,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

mod support;

const T: Duration = Duration::from_secs(5);

async fn echo_pod(pod: &str) -> Result<ws_echo::Running> {
    let config = ws_echo::Config {
        listen: "127.0.0.1:0".parse()?,
        pod_name: Some(pod.to_owned()),
        shutdown_grace: Duration::from_millis(50),
        ..ws_echo::Config::default()
    };
    ws_echo::spawn(config).await.context("starting ws-echo")
}

fn opts(addr: SocketAddr, path: &str) -> ProbeOptions {
    ProbeOptions::new(addr, &format!("ws://echo.test:{}{path}", addr.port())).expect("valid URL")
}

/// Polls `cond` until it holds or `within` passes.
async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn timeline_records_hello_messages_and_client_close() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let mut conn = connect(&opts(pod.local_addr(), "/ws")).await?;
    assert_eq!(conn.pod(), Some("pod-a"));
    assert_eq!(conn.handshake().map(|h| h.status), Some(101));

    conn.send_text("hello there").await?;
    assert_eq!(conn.recv_data(T).await?, Incoming::Text("hello there".into()));
    let big = vec![7u8; 64 * 1024];
    conn.send_binary(big.clone()).await?;
    assert_eq!(conn.recv_data(T).await?, Incoming::Binary(big.into()));
    let end = conn.close(1000, "bye").await?;
    assert!(
        matches!(
            end,
            End::Closed {
                by: Side::Client,
                code: Some(1000),
                ..
            }
        ),
        "{end:?}"
    );

    let timeline = conn.into_timeline();
    let hello = timeline.hello.as_ref().context("hello recorded")?;
    assert_eq!(hello.peer_ip(), Some("127.0.0.1".parse()?));
    let sent: Vec<_> = timeline
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Message {
                    direction: Direction::Sent,
                    ..
                }
            )
        })
        .collect();
    let received = timeline
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Message {
                    direction: Direction::Received,
                    ..
                }
            )
        })
        .count();
    assert_eq!(sent.len(), 2);
    assert_eq!(received, 3, "hello and two echoes: {:?}", timeline.events);
    assert!(timeline.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(timeline.tcp_connected_ms.is_some() && timeline.started_unix_ms > 1.6e12);
    let json = serde_json::to_value(&timeline)?;
    assert_eq!(json["hello"]["pod"], "pod-a");
    assert_eq!(json["end"]["end"], "closed");
    Ok(())
}

#[tokio::test]
async fn subprotocol_is_offered_and_the_selection_recorded() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let conn = connect(&opts(pod.local_addr(), "/ws").subprotocol("echo.v1")).await?;
    assert_eq!(conn.subprotocol(), Some("echo.v1"));
    assert_eq!(conn.hello().and_then(|h| h.subprotocol.as_deref()), Some("echo.v1"));
    Ok(())
}

#[tokio::test]
async fn cookie_jar_stores_set_cookie_from_the_101_and_sends_it_back() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // the signature tungstenite's Callback trait asks for
                let callback = |req: &Request, mut resp: Response| {
                    let cookie = req.headers().get("cookie").map(|v| v.to_str().unwrap_or("").to_owned());
                    let _ = seen_tx.send(cookie);
                    resp.headers_mut()
                        .append("set-cookie", "route=pod-b; Path=/; HttpOnly".parse().unwrap());
                    Ok(resp)
                };
                if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() {
                            break;
                        }
                    }
                }
            });
        }
    });

    let first = opts(addr, "/ws").expect_hello(false);
    let second = first.clone();
    let conn = connect(&first).await?;
    let handshake = conn.handshake().context("handshake recorded")?;
    assert_eq!(handshake.set_cookies, ["route=pod-b; Path=/; HttpOnly"]);
    assert_eq!(seen_rx.recv().await, Some(None), "first upgrade carries no cookie");
    assert_eq!(
        second.cookies.get("route").as_deref(),
        Some("pod-b"),
        "clones share the jar"
    );

    let _conn2 = connect(&second).await?;
    assert_eq!(seen_rx.recv().await, Some(Some("route=pod-b".to_owned())));
    Ok(())
}

#[tokio::test]
async fn source_ip_binding_shows_in_the_hello_peer() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    for ip in ["127.0.2.7", "127.0.2.8"] {
        let conn = connect(&opts(pod.local_addr(), "/ws").source_ip(ip.parse()?)).await?;
        let hello = conn.hello().context("hello")?;
        assert_eq!(hello.peer_ip(), Some(ip.parse()?), "{hello:?}");
        assert_eq!(conn.timeline().local.map(|a| a.ip()), Some(ip.parse()?));
    }
    Ok(())
}

#[tokio::test]
async fn proxy_header_bytes_precede_the_upgrade_exactly() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await?;
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 512];
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        anyhow::Ok(buf)
    });
    let client: SocketAddr = "203.0.113.7:40000".parse()?;
    let result = connect(
        &opts(addr, "/ws")
            .proxy_protocol(client)
            .handshake_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(result.is_err(), "the server never upgrades");
    let bytes = server.await??;
    let expected = format!(
        "PROXY TCP4 203.0.113.7 127.0.0.1 40000 {}\r\nGET /ws HTTP/1.1\r\n",
        addr.port()
    );
    assert!(
        bytes.starts_with(expected.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    let (parsed, used) = probe::parse_proxy_v1(&bytes)?;
    assert_eq!(
        parsed,
        probe::ProxyV1::Tcp {
            source: client,
            destination: addr
        }
    );
    assert_eq!(&bytes[used..used + 4], b"GET ");
    Ok(())
}

#[tokio::test]
async fn wss_works_against_a_rustls_server_with_the_testbed_ca() -> Result<()> {
    let ca = TestCa::generate(&["echo.test"])?;
    let addr = support::tls_echo_server(&ca).await?;
    let url = format!("wss://echo.test:{}/ws", addr.port());
    let trusted = ProbeOptions::new(addr, &url)?
        .expect_hello(false)
        .tls(ca.client_config()?);
    let mut conn = connect(&trusted).await?;
    conn.send_text("over tls").await?;
    assert_eq!(conn.recv_text(T).await?, "over tls");
    assert!(conn.timeline().tls_done_ms.is_some());

    let other_ca = TestCa::generate(&["echo.test"])?;
    let untrusted = ProbeOptions::new(addr, &url)?
        .expect_hello(false)
        .tls(other_ca.client_config()?);
    let err = connect(&untrusted).await.err().context("a foreign CA must fail")?;
    assert!(
        matches!(
            err,
            ProbeError::Connect {
                stage: ConnectStage::Tls,
                ..
            }
        ),
        "{err:?}"
    );
    Ok(())
}

/// A server answering every request with `status` and a fixed body.
async fn status_server(status: &'static str) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = tcp.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 5\r\nset-cookie: seen=1\r\nconnection: close\r\n\r\nbusy!"
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn failed_handshake_records_its_status_headers_and_body() -> Result<()> {
    let addr = status_server("503 Service Unavailable").await?;
    let o = opts(addr, "/ws");
    let err = connect(&o).await.err().context("503 must fail the connect")?;
    assert_eq!(err.status(), Some(503));
    let timeline = err.timeline().context("timeline on failure")?;
    let handshake = timeline.handshake.as_ref().context("handshake recorded")?;
    assert_eq!(handshake.status, 503);
    assert_eq!(handshake.body.as_deref(), Some("busy!"));
    assert_eq!(handshake.header("set-cookie"), Some("seen=1"));
    assert!(matches!(
        timeline.end,
        Some(End::HandshakeFailed { status: Some(503), .. })
    ));
    assert_eq!(o.cookies.get("seen").as_deref(), Some("1"));
    Ok(())
}

#[tokio::test]
async fn hold_idle_sees_the_server_close_1001_on_shutdown() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let mut conn = connect(&opts(pod.local_addr(), "/ws")).await?;
    let still = probe::hold_idle(&mut conn, Duration::from_millis(100)).await;
    assert!(still.still_open(), "{still:?}");
    pod.shutdown();
    let held = probe::hold_idle(&mut conn, T).await;
    assert!(
        matches!(
            held.end,
            End::Closed {
                by: Side::Server,
                code: Some(1001),
                ..
            }
        ),
        "{held:?}"
    );
    assert!(held.after < T);
    Ok(())
}

#[tokio::test]
async fn echo_loop_counts_every_numbered_echo() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let mut conn = connect(&opts(pod.local_addr(), "/ws")).await?;
    let report = probe::echo_loop(&mut conn, 10..30, Duration::ZERO, T).await;
    assert_eq!(report.sent, (10..30).collect::<Vec<_>>());
    assert_eq!(report.echoed, report.sent);
    assert!(report.unanswered().is_empty() && report.mismatched.is_empty() && report.end.is_none());
    Ok(())
}

#[tokio::test]
async fn reconnect_with_backoff_gives_up_on_a_closed_port_and_succeeds_on_an_open_one() -> Result<()> {
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?; // dropped: nothing listens
    let backoff = Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        factor: 2.0,
        max_attempts: 3,
    };
    let err = probe::reconnect_with_backoff(&opts(closed, "/ws"), backoff)
        .await
        .err()
        .context("must give up")?;
    assert!(matches!(err, ProbeError::GaveUp { attempts: 3, .. }), "{err:?}");

    let pod = echo_pod("pod-a").await?;
    let ok = probe::reconnect_with_backoff(&opts(pod.local_addr(), "/ws"), backoff).await?;
    assert_eq!((ok.attempts, ok.failures.len()), (1, 0));
    assert_eq!(ok.conn.pod(), Some("pod-a"));
    Ok(())
}

#[tokio::test]
async fn continuous_opener_counts_failures_once_the_server_is_gone() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let addr = pod.local_addr();
    let opener = probe::open_continuously(
        opts(addr, "/ws").handshake_timeout(Duration::from_secs(1)),
        Duration::from_millis(20),
    );
    wait_for("3 successful opens", T, || opener.counts().0 >= 3).await?;
    pod.shutdown();
    pod.wait().await?;
    let (ok_at_stop, _) = opener.counts();
    wait_for("3 failed opens", T, || opener.counts().1 >= 3).await?;
    let report = opener.stop().await;

    assert!(report.successes() >= ok_at_stop && report.failures() >= 3, "{report:?}");
    assert_eq!(report.by_pod().keys().collect::<Vec<_>>(), ["pod-a"]);
    let last = report.attempts.last().context("attempts recorded")?;
    assert!(
        matches!(
            last.outcome,
            AttemptOutcome::Error {
                stage: ConnectStage::Tcp,
                ..
            }
        ),
        "after shutdown the port refuses: {:?}",
        last.outcome
    );
    Ok(())
}

#[tokio::test]
async fn continuous_opener_counts_failed_handshake_statuses() -> Result<()> {
    let addr = status_server("502 Bad Gateway").await?;
    let opener = probe::open_continuously(opts(addr, "/ws"), Duration::from_millis(10));
    wait_for("2 failed handshakes", T, || opener.counts().1 >= 2).await?;
    let report = opener.stop().await;
    assert_eq!(report.successes(), 0);
    assert_eq!(report.failed_statuses().get(&502).copied(), Some(report.failures()));
    Ok(())
}

#[tokio::test]
async fn plain_http_helper_speaks_to_healthz_and_sessions() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let o = opts(pod.local_addr(), "/");
    let health = probe::http_get(&o, "/healthz").await?;
    assert_eq!(health.status, 200);
    let created = probe::http_request(&o, http::Method::POST, "/session", "").await?;
    assert_eq!(created.status, 200, "{}", created.text());
    let session: serde_json::Value = created.json()?;
    let sid = session["sid"].as_str().context("sid")?;
    let again = probe::http_get(&o, &format!("/session/{sid}")).await?;
    assert_eq!(again.status, 200);
    assert_eq!(again.json::<serde_json::Value>()?["pod"], "pod-a");
    assert_eq!(probe::http_get(&o, "/no-such-path").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn client_pings_are_answered_with_pongs() -> Result<()> {
    let pod = echo_pod("pod-a").await?;
    let mut conn = connect(&opts(pod.local_addr(), "/ws")).await?;
    let held = probe::hold_pinging(&mut conn, Duration::from_millis(120), Duration::from_millis(30)).await;
    assert!(held.still_open());
    let pongs = conn
        .timeline()
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Pong {
                    direction: Direction::Received,
                    ..
                }
            )
        })
        .count();
    assert!(pongs >= 2, "{:?}", conn.timeline().events);
    Ok(())
}

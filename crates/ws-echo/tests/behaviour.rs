//! ws-echo's documented behaviour, in-process: hello, echo, modes, ticks, pings, HTTP endpoints, drain and shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ws_echo::Config;

/// Sends `sent` and asserts the server answers exactly `expected`.
#[track_caller]
fn check_echo<'a>(ws: &'a mut Client, sent: Message, expected: Message) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        ws.send(sent.clone())
            .await
            .unwrap_or_else(|e| panic!("{caller}: sending {sent:?}: {e}"));
        let got = next_message(ws)
            .await
            .unwrap_or_else(|e| panic!("{caller}: awaiting echo of {sent:?}: {e:#}"));
        assert_eq!(got, expected, "{caller}: echo of {sent:?}");
    }
}

#[tokio::test]
async fn hello_is_the_first_frame_and_describes_the_connection() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let (_ws, hello) = connect_hello(addr, "/ws").await.unwrap();
    assert_eq!(hello["pod"], "pod-test");
    assert!(hello["conn"].as_u64().is_some(), "conn id in {hello}");
    let peer: std::net::SocketAddr = hello["peer"].as_str().unwrap().parse().unwrap();
    assert_eq!(peer.ip(), addr.ip());
    assert!(hello["forwarded_for"].is_null() && hello["real_ip"].is_null() && hello["subprotocol"].is_null());
    let (_ws2, hello2) = connect_hello(addr, "/ws").await.unwrap();
    assert_ne!(hello["conn"], hello2["conn"], "connection ids differ");
}

#[tokio::test]
async fn hello_reports_forwarding_headers() {
    let server = start(config()).await;
    let mut request = format!("ws://{}/ws", server.local_addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
    request
        .headers_mut()
        .insert("x-real-ip", "203.0.113.7".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = next_json(&mut ws).await.unwrap();
    assert_eq!(hello["forwarded_for"], "203.0.113.7, 10.0.0.1");
    assert_eq!(hello["real_ip"], "203.0.113.7");
}

#[tokio::test]
async fn text_and_binary_are_echoed_unchanged_with_the_same_opcode() {
    let server = start(config()).await;
    let (mut ws, _) = connect_hello(server.local_addr(), "/ws").await.unwrap();
    check_echo(&mut ws, Message::text("héllo wörld"), Message::text("héllo wörld")).await;
    let binary = Message::binary(vec![0u8, 1, 2, 255, 254]);
    check_echo(&mut ws, binary.clone(), binary).await;
    check_echo(&mut ws, Message::text(""), Message::text("")).await;
    let big = Message::binary(vec![7u8; 200_000]);
    check_echo(&mut ws, big.clone(), big).await;
}

#[tokio::test]
async fn reverse_mode_reverses_text_and_keeps_binary() {
    let server = start(config()).await;
    let (mut ws, _) = connect_hello(server.local_addr(), "/ws?mode=reverse").await.unwrap();
    check_echo(&mut ws, Message::text("abc→d"), Message::text("d→cba")).await;
    let binary = Message::binary(vec![1u8, 2, 3]);
    check_echo(&mut ws, binary.clone(), binary).await;
}

#[tokio::test]
async fn hello_false_is_a_pure_echo() {
    let server = start(config()).await;
    let mut ws = connect(server.local_addr(), "/ws?hello=false").await.unwrap();
    check_echo(&mut ws, Message::text("first"), Message::text("first")).await;
}

#[tokio::test]
async fn echo_v1_subprotocol_is_selected_and_others_are_not() {
    let server = start(config()).await;
    let url = format!("ws://{}/ws", server.local_addr());

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat, echo.v1".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "echo.v1");
    assert_eq!(next_json(&mut ws).await.unwrap()["subprotocol"], "echo.v1");

    let response = request_upgrade(server.local_addr(), &["Sec-WebSocket-Protocol: chat"]).await;
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-protocol"),
        None,
        "unknown subprotocols are not selected"
    );
}

/// A raw upgrade request with extra headers; returns the response head.
async fn request_upgrade(addr: std::net::SocketAddr, extra: &[&str]) -> HttpResponse {
    let mut headers = vec![
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    headers.extend_from_slice(extra);
    let mut raw = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within("response head", stream.read_u8()).await.unwrap().unwrap());
    }
    parse_response(&head).unwrap()
}

#[tokio::test]
async fn ticks_arrive_at_the_configured_interval_with_increasing_seq() {
    let interval = Duration::from_millis(150);
    let server = start(Config {
        tick_interval: interval,
        ..config()
    })
    .await;
    let (mut ws, _) = connect_hello(server.local_addr(), "/ws").await.unwrap();
    let mut arrivals = Vec::new();
    for expected_seq in 1..=4u64 {
        let tick = next_json(&mut ws).await.unwrap();
        arrivals.push(Instant::now());
        assert_eq!(tick["type"], "tick");
        assert_eq!(tick["pod"], "pod-test");
        assert_eq!(tick["seq"], expected_seq);
    }
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= interval / 2 && gap <= interval * 3,
            "tick gap {gap:?} for interval {interval:?}"
        );
    }
    // Echo still works between ticks.
    ws.send(Message::text("between ticks")).await.unwrap();
    loop {
        match next_message(&mut ws).await.unwrap() {
            Message::Text(t) if t.as_str() == "between ticks" => break,
            Message::Text(t) if t.contains("\"tick\"") => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_ticks_when_the_interval_is_zero() {
    let server = start(config()).await;
    let (mut ws, _) = connect_hello(server.local_addr(), "/ws").await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(400), ws.next()).await;
    assert!(nothing.is_err(), "unexpected message {nothing:?}");
}

#[tokio::test]
async fn server_pings_at_the_ping_interval() {
    let server = start(Config {
        ping_interval: Duration::from_millis(100),
        ..config()
    })
    .await;
    let (mut ws, _) = connect_hello(server.local_addr(), "/ws").await.unwrap();
    for _ in 0..2 {
        let message = within("a server ping", ws.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(message, Message::Ping(_)), "expected a ping, got {message:?}");
    }
}

#[tokio::test]
async fn health_is_always_ok_and_readiness_fails_once_drain_begins() {
    let server = start(Config {
        drain_delay: Duration::from_millis(400),
        ..config()
    })
    .await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").await.unwrap().status, 200);
    assert_eq!(get(addr, "/readyz").await.unwrap().status, 200);
    assert_eq!(metric(addr, "ws_echo_draining").await.unwrap(), 0.0);
    let (mut ws, _) = connect_hello(addr, "/ws").await.unwrap();

    let started = Instant::now();
    let drain = tokio::spawn(async move { get(addr, "/drain").await });
    wait_metric(addr, "ws_echo_draining", |v| v == 1.0).await.unwrap();
    assert_eq!(get(addr, "/readyz").await.unwrap().status, 503);
    assert_eq!(get(addr, "/healthz").await.unwrap().status, 200);
    // The existing WebSocket keeps working during the drain delay.
    check_echo(&mut ws, Message::text("during drain"), Message::text("during drain")).await;
    assert!(!drain.is_finished(), "drain answered before its delay");

    let answer = within("/drain", drain).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "drain answered after {:?}",
        started.elapsed()
    );
    check_echo(&mut ws, Message::text("after drain"), Message::text("after drain")).await;
}

#[tokio::test]
async fn metrics_expose_the_documented_names_and_count() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let body = get(addr, "/metrics").await.unwrap().body;
    for name in [
        "websocket_connections_active",
        "websocket_connections_total",
        "websocket_messages_total{direction=\"in\"}",
        "websocket_messages_total{direction=\"out\"}",
        "websocket_errors_total{kind=",
        "ws_echo_draining",
    ] {
        assert!(body.contains(name), "{name} missing from\n{body}");
    }
    let (mut ws, _) = connect_hello(addr, "/ws").await.unwrap();
    assert_eq!(metric(addr, "websocket_connections_active").await.unwrap(), 1.0);
    assert_eq!(metric(addr, "websocket_connections_total").await.unwrap(), 1.0);
    check_echo(&mut ws, Message::text("a"), Message::text("a")).await;
    check_echo(&mut ws, Message::text("b"), Message::text("b")).await;
    assert_eq!(
        metric(addr, "websocket_messages_total{direction=\"in\"}")
            .await
            .unwrap(),
        2.0
    );
    assert_eq!(
        metric(addr, "websocket_messages_total{direction=\"out\"}")
            .await
            .unwrap(),
        3.0,
        "hello + 2 echoes"
    );
    ws.close(None).await.unwrap();
    wait_metric(addr, "websocket_connections_active", |v| v == 0.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn sessions_are_known_only_to_the_pod_that_created_them() {
    let pod_a = start(Config {
        pod_name: Some("pod-a".into()),
        ..config()
    })
    .await;
    let pod_b = start(Config {
        pod_name: Some("pod-b".into()),
        ..config()
    })
    .await;
    let created = request(pod_a.local_addr(), "POST", "/session", &[]).await.unwrap();
    assert_eq!(created.status, 200);
    let created = created.json();
    assert_eq!(created["pod"], "pod-a");
    let sid = created["sid"].as_str().unwrap().to_owned();

    let found = get(pod_a.local_addr(), &format!("/session/{sid}")).await.unwrap();
    assert_eq!(found.status, 200);
    assert_eq!(found.json(), serde_json::json!({ "sid": sid, "pod": "pod-a" }));

    let other = get(pod_b.local_addr(), &format!("/session/{sid}")).await.unwrap();
    assert_eq!(other.status, 400);
    assert_eq!(other.json(), serde_json::json!({ "error": "unknown session" }));
}

#[tokio::test]
async fn index_page_is_html_and_unknown_paths_are_404() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let index = get(addr, "/").await.unwrap();
    assert_eq!(index.status, 200);
    assert!(index.header("content-type").unwrap().starts_with("text/html"));
    assert!(index.body.contains("<html"));
    assert_eq!(get(addr, "/nope").await.unwrap().status, 404);
    assert_eq!(get(addr, "/ws/extra").await.unwrap().status, 404);
    assert_eq!(request(addr, "DELETE", "/healthz", &[]).await.unwrap().status, 405);
}

#[tokio::test]
async fn shutdown_keeps_serving_for_the_grace_then_closes_with_1001() {
    let grace = Duration::from_millis(500);
    let server = start(Config {
        shutdown_grace: grace,
        ..config()
    })
    .await;
    let addr = server.local_addr();
    let (mut ws, _) = connect_hello(addr, "/ws").await.unwrap();

    let started = Instant::now();
    server.shutdown();
    // New connections are refused once the accept loop stops.
    let refused = within("the listener to close", async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections still accepted after shutdown");
    // Existing WebSockets are still echoed during the grace period.
    check_echo(&mut ws, Message::text("in grace"), Message::text("in grace")).await;
    assert!(started.elapsed() < grace, "test too slow to observe the grace period");

    let (code, before) = close_code(&mut ws).await.unwrap();
    assert_eq!(code, 1001);
    assert!(before.is_empty(), "unexpected messages before close: {before:?}");
    assert!(
        started.elapsed() >= grace,
        "closed after {:?}, before the grace {grace:?}",
        started.elapsed()
    );
    // Finish the close handshake (tungstenite replies), then the server exits.
    assert!(within("the end of the stream", ws.next()).await.unwrap().is_none());
    within("the server to stop", server.wait()).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_with_no_connections_finishes_without_waiting_for_grace() {
    let server = start(Config {
        shutdown_grace: Duration::from_secs(30),
        ..config()
    })
    .await;
    server.shutdown();
    within("the server to stop", server.wait()).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_waits_at_most_the_close_wait_for_clients_that_never_answer() {
    let server = start(Config {
        shutdown_grace: Duration::from_millis(100),
        ..config()
    })
    .await;
    let addr = server.local_addr();
    // A raw client that never reads nor answers the close frame.
    let _silent = raw_upgrade(addr, "/ws").await.unwrap();
    let started = Instant::now();
    server.shutdown();
    within("the server to stop", server.wait()).await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took >= ws_echo::CLOSE_HANDSHAKE_WAIT,
        "stopped after {took:?}, without waiting for the handshake"
    );
}

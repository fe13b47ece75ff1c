//! The real `ws-echo` binary: it logs its bound address, and a real SIGTERM gives Close 1001 and exit 0
//! (or is ignored with `--ignore-sigterm`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn listening_line_is_parsed_in_both_formats() {
    let text = "2026-01-01T00:00:00.000000Z  INFO ws_echo::server: listening addr=127.0.0.1:4321 pod=p";
    assert_eq!(listening_addr(text), Some("127.0.0.1:4321".parse().unwrap()));
    let json = r#"{"timestamp":"x","level":"INFO","message":"listening","addr":"127.0.0.1:4321"}"#;
    assert_eq!(listening_addr(json), Some("127.0.0.1:4321".parse().unwrap()));
    assert_eq!(listening_addr("websocket open addr=1.2.3.4:5"), None);
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_after_grace_and_exits_0() {
    let grace = Duration::from_millis(400);
    let mut server = Binary::start(&["--shutdown-grace", "400ms", "--log-format", "json"])
        .await
        .unwrap();
    let (mut ws, hello) = connect_hello(server.addr, "/ws").await.unwrap();
    assert_eq!(hello["pod"], "bin-pod");

    let started = Instant::now();
    server.signal(Signal::SIGTERM);
    ws.send(Message::text("after sigterm")).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap(), Message::text("after sigterm"));
    let (code, _) = close_code(&mut ws).await.unwrap();
    assert_eq!(code, 1001);
    assert!(
        started.elapsed() >= grace,
        "closed after {:?}, inside the grace",
        started.elapsed()
    );
    drop(ws);

    let status = within("ws-echo to exit", server.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "ws-echo exited with {status}");

    let events: Vec<Value> = server
        .lines_until_exit()
        .await
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let closed = events
        .iter()
        .find(|e| e["message"] == "websocket closed")
        .unwrap_or_else(|| panic!("no \"websocket closed\" event in {events:#?}"));
    assert_eq!(closed["close_code"], 1001);
    assert_eq!(closed["pod"], "bin-pod");
    assert_eq!(closed["conn"], hello["conn"]);
    assert_eq!(closed["peer"], hello["peer"]);
    assert!(closed["duration_ms"].as_u64().is_some(), "duration in {closed}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "websocket open" && e["conn"] == hello["conn"])
    );
}

#[tokio::test]
async fn ignore_sigterm_keeps_serving_after_sigterm() {
    let mut server = Binary::start(&["--ignore-sigterm", "--shutdown-grace", "100ms"])
        .await
        .unwrap();
    let (mut ws, _) = connect_hello(server.addr, "/ws").await.unwrap();
    server.signal(Signal::SIGTERM);
    // Well past the grace period, the process still serves everything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "ws-echo exited on SIGTERM");
    ws.send(Message::text("still echoing")).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap(), Message::text("still echoing"));
    assert_eq!(get(server.addr, "/readyz").await.unwrap().status, 200);
    assert!(
        server.drain_lines().iter().any(|l| l.contains("ignoring signal")),
        "the ignored SIGTERM is logged"
    );
    // Only SIGKILL stops it, as at the end of a pod's termination grace period.
    server.signal(Signal::SIGKILL);
    let status = within("ws-echo to die", server.child.wait()).await.unwrap().unwrap();
    assert!(!status.success());
}

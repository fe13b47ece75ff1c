//! ws-echo under bad input: malformed upgrades, oversized and invalid frames, floods, slowloris, resets.
//! Each answer is a clear status or close code, counted under `websocket_errors_total{kind}`; the server keeps serving.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use ws_echo::Config;

const MAX_MESSAGE: usize = 1024;

fn limited() -> Config {
    Config {
        max_message_size: MAX_MESSAGE,
        ..config()
    }
}

fn errors(kind: &str) -> String {
    format!("websocket_errors_total{{kind=\"{kind}\"}}")
}

/// The server still answers health checks and echoes on a new WebSocket.
async fn assert_still_serving(addr: SocketAddr) {
    assert_eq!(get(addr, "/healthz").await.unwrap().status, 200);
    let mut ws = connect(addr, "/ws?hello=false").await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap(), Message::text("still here"));
}

/// Writes `frames` on a fresh raw WebSocket and asserts the server closes with `code`,
/// counts one error of `kind`, and keeps serving.
#[track_caller]
fn check_closes_with(frames: Vec<u8>, code: u16, kind: &'static str) -> impl std::future::Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        let server = start(limited()).await;
        let addr = server.local_addr();
        let mut stream = raw_upgrade(addr, "/ws?hello=false").await.unwrap();
        stream.write_all(&frames).await.unwrap();
        let got = read_close_code(&mut stream)
            .await
            .unwrap_or_else(|e| panic!("{caller}: awaiting close: {e:#}"));
        assert_eq!(got, code, "{caller}: close code");
        wait_metric(addr, &errors(kind), |v| v == 1.0)
            .await
            .unwrap_or_else(|e| panic!("{caller}: {e:#}"));
        assert_still_serving(addr).await;
    }
}

#[tokio::test]
async fn oversized_frame_gets_close_1009() {
    check_closes_with(masked_frame(true, 0x2, &[0; MAX_MESSAGE + 1]), 1009, "message_too_big").await;
}

#[tokio::test]
async fn fragmented_message_over_the_limit_gets_close_1009() {
    let half = [b'a'; MAX_MESSAGE / 2 + 10];
    let mut frames = masked_frame(false, 0x1, &half);
    frames.extend(masked_frame(true, 0x0, &half));
    check_closes_with(frames, 1009, "message_too_big").await;
}

#[tokio::test]
async fn message_at_the_limit_is_echoed() {
    let server = start(limited()).await;
    let mut ws = connect(server.local_addr(), "/ws?hello=false").await.unwrap();
    let exact = Message::binary(vec![9u8; MAX_MESSAGE]);
    ws.send(exact.clone()).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap(), exact);
}

#[tokio::test]
async fn oversized_message_from_a_real_client_gets_close_1009() {
    let server = start(limited()).await;
    let mut ws = connect(server.local_addr(), "/ws?hello=false").await.unwrap();
    ws.send(Message::binary(vec![0u8; 64 * 1024])).await.unwrap();
    assert_eq!(close_code(&mut ws).await.unwrap().0, 1009);
}

#[tokio::test]
async fn invalid_utf8_text_gets_close_1007() {
    check_closes_with(masked_frame(true, 0x1, &[b'o', b'k', 0xff, 0xfe]), 1007, "invalid_utf8").await;
}

#[tokio::test]
async fn invalid_utf8_across_fragments_gets_close_1007() {
    // A valid first fragment, then a continuation that completes an invalid sequence.
    let mut frames = masked_frame(false, 0x1, "caf".as_bytes());
    frames.extend(masked_frame(true, 0x0, &[0xc3, 0x28]));
    check_closes_with(frames, 1007, "invalid_utf8").await;
}

#[tokio::test]
async fn unmasked_client_frame_gets_close_1002() {
    check_closes_with(unmasked_frame(true, 0x1, b"hello"), 1002, "protocol").await;
}

#[tokio::test]
async fn reserved_data_opcode_gets_close_1002() {
    check_closes_with(masked_frame(true, 0x3, b"x"), 1002, "protocol").await;
}

#[tokio::test]
async fn reserved_control_opcode_gets_close_1002() {
    check_closes_with(masked_frame(true, 0xb, b""), 1002, "protocol").await;
}

#[tokio::test]
async fn continuation_without_a_start_gets_close_1002() {
    check_closes_with(masked_frame(true, 0x0, b"orphan"), 1002, "protocol").await;
}

/// Sends an upgrade request to `/ws` with these header lines and returns the response.
async fn upgrade_with(addr: SocketAddr, headers: &[&str]) -> HttpResponse {
    request(addr, "GET", "/ws", headers).await.unwrap()
}

#[tokio::test]
async fn wrong_websocket_version_gets_426_naming_version_13() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let response = upgrade_with(
        addr,
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 8",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
    )
    .await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
    assert_eq!(metric(addr, &errors("unsupported_version")).await.unwrap(), 1.0);
}

#[tokio::test]
async fn missing_or_invalid_websocket_key_gets_400() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let base = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"];
    let missing = upgrade_with(addr, &base).await;
    assert_eq!(missing.status, 400);
    let mut invalid = base.to_vec();
    invalid.push("Sec-WebSocket-Key: not-base64-at-all");
    assert_eq!(upgrade_with(addr, &invalid).await.status, 400);
    assert_eq!(metric(addr, &errors("bad_upgrade")).await.unwrap(), 2.0);
}

#[tokio::test]
async fn plain_get_on_the_websocket_path_gets_400() {
    let server = start(config()).await;
    let response = get(server.local_addr(), "/ws").await.unwrap();
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn upgrades_beyond_max_connections_get_503_and_existing_ones_keep_working() {
    let server = start(Config {
        max_connections: 2,
        ..config()
    })
    .await;
    let addr = server.local_addr();
    let (mut first, _) = connect_hello(addr, "/ws").await.unwrap();
    let (_second, _) = connect_hello(addr, "/ws").await.unwrap();
    for _ in 0..5 {
        let refused = connect(addr, "/ws").await.expect_err("a third websocket was accepted");
        let message = format!("{refused:#}");
        assert!(message.contains("503"), "expected a 503, got {message}");
    }
    assert_eq!(metric(addr, &errors("max_connections")).await.unwrap(), 5.0);
    first.send(Message::text("unaffected")).await.unwrap();
    assert_eq!(next_message(&mut first).await.unwrap(), Message::text("unaffected"));
    // A slot frees up when a connection closes.
    first.close(None).await.unwrap();
    wait_metric(addr, "websocket_connections_active", |v| v == 1.0)
        .await
        .unwrap();
    connect_hello(addr, "/ws").await.unwrap();
}

#[tokio::test]
async fn slowloris_client_is_closed_after_the_header_read_timeout() {
    let timeout = Duration::from_millis(500);
    let server = start(Config {
        header_read_timeout: timeout,
        ..config()
    })
    .await;
    let addr = server.local_addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Trickle a header byte at a time; the server must cut us off.
    let closed_after = within("the server to close the slowloris connection", async {
        let mut sink = [0u8; 512];
        loop {
            if stream.write_all(b"X").await.is_err() {
                return started.elapsed();
            }
            let read = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut sink)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                return started.elapsed();
            }
        }
    })
    .await
    .unwrap();
    assert!(
        closed_after >= timeout,
        "closed after {closed_after:?}, before the timeout"
    );
    assert!(closed_after < timeout * 4, "closed only after {closed_after:?}");
    wait_metric(addr, &errors("header_timeout"), |v| v == 1.0)
        .await
        .unwrap();
    assert_still_serving(addr).await;
}

#[tokio::test]
async fn abrupt_reset_mid_frame_is_counted_and_the_server_keeps_serving() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let stream = raw_upgrade(addr, "/ws?hello=false").await.unwrap();
    let mut stream = stream;
    let frame = masked_frame(true, 0x2, &[1u8; 100]);
    stream.write_all(&frame[..20]).await.unwrap();
    wait_metric(addr, "websocket_connections_active", |v| v == 1.0)
        .await
        .unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream); // RST
    wait_metric(addr, &errors("reset"), |v| v == 1.0).await.unwrap();
    wait_metric(addr, "websocket_connections_active", |v| v == 0.0)
        .await
        .unwrap();
    assert_still_serving(addr).await;
}

#[tokio::test]
async fn eof_mid_frame_is_counted_as_a_reset() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut stream = raw_upgrade(addr, "/ws?hello=false").await.unwrap();
    let frame = masked_frame(true, 0x1, b"cut short");
    stream.write_all(&frame[..4]).await.unwrap();
    stream.shutdown().await.unwrap();
    wait_metric(addr, &errors("reset"), |v| v == 1.0).await.unwrap();
    assert_still_serving(addr).await;
}

#[tokio::test]
async fn garbage_instead_of_http_is_answered_and_counted() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let response = raw_request(addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n").await;
    assert_eq!(response.unwrap().status, 400);
    wait_metric(addr, &errors("http"), |v| v == 1.0).await.unwrap();
    assert_still_serving(addr).await;
}

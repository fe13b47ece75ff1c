//! The plain tokio-tungstenite anchor: an accept-loop echo server shaped like tokio-tungstenite's
//! `examples/echo-server.rs`, with the default `WebSocketConfig`, so `cargo xtask bench` can put
//! ws-echo's figures next to the "default Rust setup".
//!
//! Usage: `anchor-tungstenite-echo [ADDR]` (default `127.0.0.1:0`); prints `listening on <addr>`.

use std::io::Write;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {bound}").context("printing the bound address")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::spawn(echo(stream));
            }
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// Handshake with the default configuration, then forward every text and binary message back.
async fn echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

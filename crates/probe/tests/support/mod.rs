//! Small servers more than one test file needs.

use std::net::SocketAddr;

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use probe::tls::TestCa;
use tokio::net::TcpListener;

/// A WebSocket echo server behind TLS with a certificate from `ca`; echoes text and binary.
pub async fn tls_echo_server(ca: &TestCa) -> Result<SocketAddr> {
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

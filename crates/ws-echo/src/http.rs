//! HTTP routing: health, readiness, drain, metrics, sessions, the static page, and the WebSocket upgrade.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::info;

use crate::metrics::{self, ErrorKind};
use crate::server::State;
use crate::shutdown::Phase;
use crate::ws::{self, ConnInfo, Mode};

/// The one subprotocol the server selects when offered.
pub const SUBPROTOCOL: &str = "echo.v1";

const INDEX_HTML: &str = include_str!("index.html");

type Body = Full<Bytes>;

/// Answers one request.
pub(crate) async fn route(state: Arc<State>, mut request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (path.as_str(), &method) {
        ("/ws", &Method::GET) => upgrade(&state, &mut request, peer),
        ("/", &Method::GET | &Method::HEAD) => with_type(text(StatusCode::OK, INDEX_HTML), "text/html; charset=utf-8"),
        ("/healthz", &Method::GET | &Method::HEAD) => text(StatusCode::OK, "ok\n"),
        ("/readyz", &Method::GET | &Method::HEAD) => {
            if state.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        ("/drain", &Method::GET | &Method::POST) => {
            state.start_draining("drain request");
            tokio::time::sleep(state.config.drain_delay).await;
            info!(pod = %state.pod, delay = ?state.config.drain_delay, "drain delay over");
            text(StatusCode::OK, "drained\n")
        }
        ("/metrics", &Method::GET) => match state.metrics.encode() {
            Ok(body) => with_type(text(StatusCode::OK, body), metrics::CONTENT_TYPE),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        },
        ("/session", &Method::POST) => {
            let sid = state.sessions.create();
            json(StatusCode::OK, &serde_json::json!({ "sid": sid, "pod": &*state.pod }))
        }
        (p, &Method::GET) if p.starts_with("/session/") => {
            let sid = &p["/session/".len()..];
            if state.sessions.contains(sid) {
                json(StatusCode::OK, &serde_json::json!({ "sid": sid, "pod": &*state.pod }))
            } else {
                json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": "unknown session" }),
                )
            }
        }
        ("/ws" | "/" | "/healthz" | "/readyz" | "/drain" | "/metrics" | "/session", _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Validates a WebSocket upgrade, answers 101 and hands the connection to [`ws::serve`].
fn upgrade(state: &Arc<State>, request: &mut Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let headers = request.headers();
    let refuse = |kind: ErrorKind, status: StatusCode, why: &'static str| {
        state.metrics.error(kind);
        info!(pod = %state.pod, %peer, kind = kind.as_str(), status = status.as_u16(), reason = why, "upgrade refused");
        text(status, format!("{why}\n"))
    };
    if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket") {
        return refuse(
            ErrorKind::BadUpgrade,
            StatusCode::BAD_REQUEST,
            "expected a websocket upgrade request",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut response = refuse(
            ErrorKind::UnsupportedVersion,
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version",
        );
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k.as_bytes()))
    else {
        return refuse(
            ErrorKind::BadUpgrade,
            StatusCode::BAD_REQUEST,
            "missing or invalid Sec-WebSocket-Key",
        );
    };
    if state.shutdown.phase() != Phase::Serving {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let Some(slot) = state.try_slot() else {
        return refuse(
            ErrorKind::MaxConnections,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let subprotocol = has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL).then_some(SUBPROTOCOL);
    let query = request.uri().query().unwrap_or("");
    let info = ConnInfo {
        id: state.next_conn_id(),
        peer,
        forwarded_for: header_string(headers, "x-forwarded-for"),
        real_ip: header_string(headers, "x-real-ip"),
        subprotocol,
        mode: if query_param(query, "mode") == Some("reverse") {
            Mode::Reverse
        } else {
            Mode::Echo
        },
        hello: query_param(query, "hello") != Some("false"),
    };
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(ws::serve(slot, state.shutdown.guard(), on_upgrade, info));

    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    if let Some(protocol) = subprotocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    response
}

/// Whether any value of `name` contains `token` in its comma-separated list (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A `Sec-WebSocket-Key` must be the base64 encoding of 16 bytes (RFC 6455 §4.2.1).
fn valid_key(key: &[u8]) -> bool {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    // 16 bytes encode as 22 significant characters, the last of which has only 2 bits set, then "==".
    key.len() == 24 && key[..22].iter().all(b64) && matches!(key[21], b'A' | b'Q' | b'g' | b'w') && &key[22..] == b"=="
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    with_type(response, "text/plain; charset=utf-8")
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    with_type(text(status, value.to_string()), "application/json")
}

fn with_type(mut response: Response<Body>, content_type: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation_accepts_rfc_sample_and_rejects_malformed() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!valid_key(b"not a key at all!!!!!!=="));
        assert!(!valid_key(b""));
    }

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param("mode=reverse&hello=false", "hello"), Some("false"));
        assert_eq!(query_param("mode=reverse", "hello"), None);
        assert_eq!(query_param("", "mode"), None);
    }

    #[test]
    fn tokens_match_case_insensitively_in_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("x, echo.v1"));
        assert!(has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(has_token(&headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL));
        assert!(!has_token(&headers, header::UPGRADE, "websocket"));
    }
}

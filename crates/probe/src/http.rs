//! Plain HTTP/1.1 over the probe's dial options (Host, cookies, source IP, PROXY header, TLS).
//!
//! For `/`, `/healthz` and the `/session` endpoints through the ingress. One
//! request per connection; `Set-Cookie` goes into the options' jar.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::connect::dial;
use super::options::ProbeOptions;
use super::{ProbeError, Result};

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn http_get(opts: &ProbeOptions, path_and_query: &str) -> Result<HttpResponse> {
    http_request(opts, Method::GET, path_and_query, Bytes::new()).await
}

/// One request on a fresh connection, bounded by the options' handshake timeout.
pub async fn http_request(
    opts: &ProbeOptions,
    method: Method,
    path_and_query: &str,
    body: impl Into<Bytes>,
) -> Result<HttpResponse> {
    let url = format!("{}{}", opts.authority(), path_and_query);
    let fail = |stage: &'static str, source: Box<dyn std::error::Error + Send + Sync>| ProbeError::Http {
        method: method.to_string(),
        url: url.clone(),
        stage,
        source,
    };
    let body: Bytes = body.into();
    let work = async {
        let stream = dial(opts).await.map_err(|e| fail("dialing", e.into()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail("starting HTTP/1.1", e.into()))?;
        let driver = tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(http::header::HOST, opts.authority());
        for (name, value) in &opts.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(cookie) = opts.cookies.header_value() {
            request = request.header(http::header::COOKIE, cookie);
        }
        let request = request
            .body(Full::new(body.clone()))
            .map_err(|e| fail("building the request", e.into()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail("sending the request", e.into()))?;
        let (parts, incoming) = response.into_parts();
        let body = incoming
            .collect()
            .await
            .map_err(|e| fail("reading the body", e.into()))?
            .to_bytes();
        driver.abort();
        for cookie in parts.headers.get_all(http::header::SET_COOKIE) {
            if let Ok(cookie) = cookie.to_str() {
                opts.cookies.store_set_cookie(cookie);
            }
        }
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(opts.handshake_timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(fail(
            "waiting for the response",
            format!("no response within {:?}", opts.handshake_timeout).into(),
        )),
    }
}

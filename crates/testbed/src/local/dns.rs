//! A tiny authoritative DNS responder: the Service name's A records are the ready pods.
//!
//! nginx resolves its upstream (`server <name> resolve`) through it, the way
//! ingress-nginx's Lua balancer learns endpoints: changes need no reload.
//! Answers A queries for one name; everything else gets an empty answer or
//! NXDOMAIN. Each answer records which version of the records it served, so
//! the harness can wait until nginx has fetched a change.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Records {
    name: String,
    addrs: Vec<Ipv4Addr>,
    version: u64,
}

/// The running responder; stops when dropped.
#[derive(Debug)]
pub struct DnsResponder {
    addr: SocketAddr,
    records: Arc<Mutex<Records>>,
    served: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsResponder {
    /// Binds 127.0.0.1:0 and answers `name` with `addrs`.
    pub async fn start(name: &str, addrs: Vec<Ipv4Addr>) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let records = Arc::new(Mutex::new(Records {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            addrs,
            version: 0,
        }));
        let (served_tx, served) = watch::channel(0);
        let task = tokio::spawn(serve(socket, records.clone(), served_tx));
        Ok(DnsResponder {
            addr,
            records,
            served,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the A records; returns their version for [`DnsResponder::wait_served`].
    pub fn set(&self, addrs: Vec<Ipv4Addr>) -> u64 {
        let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        r.addrs = addrs;
        r.version += 1;
        r.version
    }

    /// Waits until an answer carrying records of at least `version` was sent.
    pub async fn wait_served(&self, version: u64, timeout: Duration) -> bool {
        let mut served = self.served.clone();
        tokio::time::timeout(timeout, served.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn serve(socket: UdpSocket, records: Arc<Mutex<Records>>, served: watch::Sender<u64>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        tracing::trace!(%peer, "DNS query");
        let answer = {
            let r = records.lock().unwrap_or_else(|e| e.into_inner());
            answer(&buf[..len], &r).map(|bytes| (bytes, r.version))
        };
        if let Some((bytes, version)) = answer
            && socket.send_to(&bytes, peer).await.is_ok()
        {
            served.send_if_modified(|v| {
                let newer = version > *v;
                if newer {
                    *v = version;
                }
                newer
            });
        }
    }
}

/// Builds the response to one query, or `None` when it is not a well-formed query.
fn answer(query: &[u8], records: &Records) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount != 1 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    query.get(..question_end)?;
    let name = labels.join(".");
    let matches = name == records.name;
    let answers: &[Ipv4Addr] = if matches && qtype == 1 { &records.addrs } else { &[] };

    let mut out = Vec::with_capacity(question_end + answers.len() * 16);
    out.extend_from_slice(&query[0..2]);
    let rd = query[2] & 0x01;
    out.push(0x84 | rd); // QR, AA
    out.push(if matches { 0 } else { 3 }); // NOERROR / NXDOMAIN
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    for ip in answers {
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        out.extend_from_slice(&1u32.to_be_bytes()); // TTL 1 s
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    fn records() -> Records {
        Records {
            name: "ws-echo.default.svc".to_owned(),
            addrs: vec![Ipv4Addr::new(127, 0, 1, 1), Ipv4Addr::new(127, 0, 1, 2)],
            version: 3,
        }
    }

    #[test]
    fn a_query_for_the_name_gets_every_record() {
        let out = answer(&query("WS-echo.default.svc", 1), &records()).unwrap();
        assert_eq!(&out[0..2], &[0x12, 0x34]);
        assert_eq!(out[3] & 0x0F, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 2);
        assert!(out.ends_with(&[127, 0, 1, 2]));
    }

    #[test]
    fn other_names_get_nxdomain_and_other_types_no_records() {
        let out = answer(&query("other.svc", 1), &records()).unwrap();
        assert_eq!(out[3] & 0x0F, 3);
        let out = answer(&query("ws-echo.default.svc", 28), &records()).unwrap();
        assert_eq!(out[3] & 0x0F, 0);
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 0);
    }

    #[tokio::test]
    async fn served_versions_are_observable() {
        let dns = DnsResponder::start("ws-echo.default.svc", vec![Ipv4Addr::LOCALHOST])
            .await
            .unwrap();
        let version = dns.set(vec![Ipv4Addr::new(127, 0, 1, 7)]);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&query("ws-echo.default.svc", 1), dns.addr())
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let (len, _) = client.recv_from(&mut buf).await.unwrap();
        assert!(buf[..len].ends_with(&[127, 0, 1, 7]));
        assert!(dns.wait_served(version, Duration::from_secs(1)).await);
        assert!(!dns.wait_served(version + 1, Duration::from_millis(50)).await);
    }
}

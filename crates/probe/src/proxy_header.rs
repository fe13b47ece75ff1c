//! PROXY protocol v1 (the text form): the header writer the probe sends and a strict parser.
//!
//! The parser is a fuzz target: it takes arbitrary bytes and answers a typed
//! error for anything that is not exactly one valid v1 header, never panicking.
//! Format (haproxy's proxy-protocol.txt, section 2.1):
//! `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, `TCP6` likewise, or
//! `PROXY UNKNOWN[ anything]\r\n`; at most 107 bytes including the CRLF.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest valid v1 header, CRLF included.
pub const MAX_V1_LEN: usize = 107;

const SIGNATURE: &[u8] = b"PROXY ";

pub type Result<T, E = ProxyHeaderError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("reading a proxy v1 header: input ends before the CRLF ({have} bytes)")]
    Incomplete { have: usize },
    #[error("reading a proxy v1 header: no CRLF within the first {MAX_V1_LEN} bytes")]
    TooLong,
    #[error("reading a proxy v1 header: it does not start with \"PROXY \"")]
    BadSignature,
    #[error("reading a proxy v1 header: a byte that is not printable ASCII at offset {offset}")]
    BadByte { offset: usize },
    #[error("reading a proxy v1 header: unknown protocol {found:?} (expected TCP4, TCP6 or UNKNOWN)")]
    BadProtocol { found: String },
    #[error("reading a proxy v1 header: expected 6 space-separated fields, found {found}")]
    FieldCount { found: usize },
    #[error("reading the {field} address of a proxy v1 header: {value:?} is not an {family} address")]
    BadAddress {
        field: &'static str,
        family: &'static str,
        value: String,
    },
    #[error("reading the {field} port of a proxy v1 header: {value:?} is not a port")]
    BadPort { field: &'static str, value: String },
}

/// A parsed v1 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyV1 {
    /// `TCP4`/`TCP6`: the client (`source`) and the address it dialed (`destination`).
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `UNKNOWN`: the receiver must use the real connection's addresses.
    Unknown,
}

/// The header bytes for a connection from `source` to `destination`.
///
/// Mixed families cannot be expressed in v1; an IPv4 address is then written
/// in its IPv4-mapped IPv6 form so the header stays valid.
pub fn write_proxy_v1(source: SocketAddr, destination: SocketAddr) -> String {
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            format!("PROXY TCP4 {s} {d} {} {}\r\n", source.port(), destination.port())
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                v6(s),
                v6(d),
                source.port(),
                destination.port()
            )
        }
    }
}

/// Parses one v1 header at the start of `input`; returns it and how many bytes it took.
pub fn parse_proxy_v1(input: &[u8]) -> Result<(ProxyV1, usize)> {
    let prefix_len = input.len().min(SIGNATURE.len());
    if input[..prefix_len] != SIGNATURE[..prefix_len] {
        return Err(ProxyHeaderError::BadSignature);
    }
    let window = &input[..input.len().min(MAX_V1_LEN)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return Err(if input.len() >= MAX_V1_LEN {
            ProxyHeaderError::TooLong
        } else {
            ProxyHeaderError::Incomplete { have: input.len() }
        });
    };
    let line = &window[..cr];
    if let Some(offset) = line.iter().position(|b| !(0x20..0x7f).contains(b)) {
        return Err(ProxyHeaderError::BadByte { offset });
    }
    // Checked above: printable ASCII only, so this cannot fail.
    let line = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::BadByte { offset: 0 })?;
    let consumed = cr + 2;
    let rest = &line[SIGNATURE.len()..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let protocol = fields.first().copied().unwrap_or_default();
    match protocol {
        "UNKNOWN" => return Ok((ProxyV1::Unknown, consumed)),
        "TCP4" | "TCP6" => {}
        other => {
            return Err(ProxyHeaderError::BadProtocol {
                found: other.to_owned(),
            });
        }
    }
    let [_, src, dst, sport, dport] = fields[..] else {
        return Err(ProxyHeaderError::FieldCount {
            found: fields.len() + 1,
        });
    };
    let v4 = protocol == "TCP4";
    let source = SocketAddr::new(parse_ip("source", src, v4)?, parse_port("source", sport)?);
    let destination = SocketAddr::new(parse_ip("destination", dst, v4)?, parse_port("destination", dport)?);
    Ok((ProxyV1::Tcp { source, destination }, consumed))
}

fn parse_ip(field: &'static str, value: &str, v4: bool) -> Result<IpAddr> {
    let parsed = if v4 {
        value.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        value.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    };
    parsed.ok_or_else(|| ProxyHeaderError::BadAddress {
        field,
        family: if v4 { "IPv4" } else { "IPv6" },
        value: value.to_owned(),
    })
}

/// Decimal, 0..=65535, no sign and no leading zero (the spec's wording).
fn parse_port(field: &'static str, value: &str) -> Result<u16> {
    let bad = || ProxyHeaderError::BadPort {
        field,
        value: value.to_owned(),
    };
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (value.len() > 1 && value.starts_with('0')) {
        return Err(bad());
    }
    value.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &[u8], expected: Result<ProxyV1>) {
        assert_eq!(
            parse_proxy_v1(input).map(|(h, _)| h),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    fn tcp(source: &str, destination: &str) -> ProxyV1 {
        ProxyV1::Tcp {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    #[test]
    fn writer_produces_the_exact_v4_line() {
        let header = write_proxy_v1("203.0.113.7:40000".parse().unwrap(), "127.0.0.1:8443".parse().unwrap());
        assert_eq!(header, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 8443\r\n");
    }

    #[test]
    fn writer_maps_mixed_families_to_tcp6() {
        let header = write_proxy_v1("203.0.113.7:1".parse().unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(header, "PROXY TCP6 ::ffff:203.0.113.7 ::1 1 80\r\n");
        check(header.as_bytes(), Ok(tcp("[::ffff:203.0.113.7]:1", "[::1]:80")));
    }

    #[test]
    fn parser_round_trips_what_the_writer_writes() {
        for (s, d) in [
            ("203.0.113.7:40000", "127.0.0.1:80"),
            ("0.0.0.0:0", "255.255.255.255:65535"),
            ("[2001:db8::1]:1", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        ] {
            let header = write_proxy_v1(s.parse().unwrap(), d.parse().unwrap());
            assert!(header.len() <= MAX_V1_LEN);
            let (parsed, used) = parse_proxy_v1(header.as_bytes()).unwrap();
            assert_eq!(parsed, tcp(s, d));
            assert_eq!(used, header.len());
        }
    }

    #[test]
    fn parser_reports_bytes_consumed_before_the_payload() {
        let input = b"PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse_proxy_v1(input), Ok((ProxyV1::Unknown, 15)));
        let input = b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n";
        assert_eq!(parse_proxy_v1(input).unwrap().0, ProxyV1::Unknown);
    }

    #[test]
    fn parser_rejects_malformed_headers_with_typed_errors() {
        use ProxyHeaderError::*;
        check(b"", Err(Incomplete { have: 0 }));
        check(b"PRO", Err(Incomplete { have: 3 }));
        check(b"PROXY TCP4 1.2.3.4", Err(Incomplete { have: 18 }));
        check(b"GET / HTTP/1.1\r\n", Err(BadSignature));
        check(&[b'P'; 200], Err(BadSignature));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend([b'1'; 120]);
        check(&long, Err(TooLong));
        check(
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            Err(BadProtocol { found: "TCP5".into() }),
        );
        check(b"PROXY \r\n", Err(BadProtocol { found: "".into() }));
        check(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Err(FieldCount { found: 5 }));
        check(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Err(FieldCount { found: 7 }));
        check(
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            Err(BadAddress {
                field: "source",
                family: "IPv4",
                value: "::1".into(),
            }),
        );
        check(
            b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
            Err(BadAddress {
                field: "destination",
                family: "IPv6",
                value: "5.6.7.8".into(),
            }),
        );
        for port in ["65536", "01", "-1", "+1", "", "1a"] {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 2\r\n");
            check(
                line.as_bytes(),
                Err(BadPort {
                    field: "source",
                    value: port.into(),
                }),
            );
        }
        check(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", Err(BadByte { offset: 30 }));
        check(
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2é\r\n".as_bytes(),
            Err(BadByte { offset: 30 }),
        );
    }

    #[test]
    fn parser_never_panics_on_prefixes_and_mutations() {
        let valid = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
        for end in 0..=valid.len() {
            let _ = parse_proxy_v1(&valid[..end]);
        }
        for i in 0..valid.len() {
            for byte in [0u8, b' ', b'\r', b'\n', b':', b'9', 0xff] {
                let mut mutated = valid.to_vec();
                mutated[i] = byte;
                let _ = parse_proxy_v1(&mutated);
            }
        }
    }
}

//! Fuzz target: the probe's PROXY protocol v1 header parser never panics, and what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probe::{ProxyV1, parse_proxy_v1, write_proxy_v1};

fuzz_target!(|data: &[u8]| {
    let Ok((header, consumed)) = parse_proxy_v1(data) else {
        return;
    };
    assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
    assert!(consumed <= 107, "a v1 header is at most 107 bytes, consumed {consumed}");
    if let ProxyV1::Tcp { source, destination } = header {
        let written = write_proxy_v1(source, destination);
        let (again, _) = parse_proxy_v1(written.as_bytes()).expect("a header we wrote parses");
        assert_eq!(again, header, "{written:?} round-trips");
    }
});

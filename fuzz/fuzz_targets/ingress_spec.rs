//! Fuzz target: any IngressSpec that deserializes can be checked and rendered for every controller without a panic.
#![no_main]

use std::net::SocketAddr;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use model::capability::check;
use model::{Controller, EnvKind, IngressSpec};
use testbed::controllers;
use testbed::render::{kind, local};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<IngressSpec>(data) else {
        return;
    };
    let ctx = context(spec.tls);
    for controller in Controller::ALL {
        if check(controller, EnvKind::Kind, &spec).is_ok() {
            if let Ok(objects) = kind::render(controller, &spec, &kind::RenderOptions::new("fuzz")) {
                let _ = objects.to_yaml();
            }
        }
        if check(controller, EnvKind::Local, &spec).is_err() {
            continue;
        }
        let _ = controllers::of(controller).local_config(&spec, &ctx);
    }
});

/// A local run's context as the harness builds it, with TLS files when the spec asks for TLS.
fn context(tls: bool) -> local::LocalContext {
    let pods: Vec<SocketAddr> = (1..=3).map(|n| SocketAddr::from(([127, 0, 1, n], 18080))).collect();
    let dir = PathBuf::from("/tmp/testbed-fuzz");
    local::LocalContext {
        listen: SocketAddr::from(([127, 0, 0, 1], 18000)),
        runtime_dir: dir.clone(),
        backends: local::Backends::new(pods),
        tls: tls.then(|| local::TlsPaths {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            bundle: dir.join("server.pem"),
        }),
        extra_routes: Vec::new(),
    }
}

//! Offline checks of the Gateway API and Envoy Gateway objects the kind environment renders
//! (`testbed::render::kind::gateway`): every object, for a matrix of specs, validates against
//! the OpenAPI schema of the CRD that serves its kind, taken from the pinned Envoy Gateway chart.
//!
//! The chart comes from `TESTBED_CHARTS_DIR` (unpacked charts, `DIR/gateway-helm/Chart.yaml`, the
//! layout `cargo xtask charts --pull` leaves; a relative DIR is taken from the workspace root, as
//! `cargo xtask test` does). gateway-helm carries its CRDs in its `crds` subchart
//! (`charts/crds/crds/`: the Gateway API bundle and Envoy Gateway's own); what helm installs as
//! CRDs — every YAML file under `crds/` of the chart and of each unpacked subchart — is read, no
//! helm needed. Without `TESTBED_CHARTS_DIR`
//! the chart tests report a skip.
//!
//! The schemas are checked as the API server would with server-side apply's strict field
//! validation: an object schema with `properties` takes no other field unless it has
//! `x-kubernetes-preserve-unknown-fields` or its own `additionalProperties`;
//! `x-kubernetes-int-or-string` takes an integer or a string; a `set` list takes no duplicates;
//! a required field with a `default` may be left out (the API server defaults it before it
//! validates); the other `x-kubernetes-*` keys are annotations. CEL rules
//! (`x-kubernetes-validations`) are not evaluated; scope and `metadata.name` are checked by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use model::{Affinity, CookieAffinity, IngressSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use testbed::controllers::envoy_gateway::kind::{
    self as eg_kind, Exposure, class_envoy_proxy, gateway_class, listener_change, render, render_policies,
    unrelated_route, with_listeners,
};
use testbed::render::kind::{HelmCommon, RenderOptions, deployment_host};

const CHART: &str = "gateway-helm";
const CHARTS_DIR_VAR: &str = "TESTBED_CHARTS_DIR";
/// The kinds the renderer writes; each must be validated at least once.
const KINDS: [&str; 6] = [
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "EnvoyProxy",
    "ClientTrafficPolicy",
    "BackendTrafficPolicy",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The unpacked gateway-helm chart, or `None` (with the reason printed) when
/// `TESTBED_CHARTS_DIR` is not set.
fn chart_dir() -> anyhow::Result<Option<PathBuf>> {
    let Some(dir) = std::env::var_os(CHARTS_DIR_VAR).filter(|d| !d.is_empty()) else {
        eprintln!(
            "SKIPPED: {CHARTS_DIR_VAR} is not set (point it at unpacked charts, DIR/{CHART}/Chart.yaml, \
             as `cargo xtask charts --pull` leaves them in target/charts)"
        );
        return Ok(None);
    };
    let chart = root().join(dir).join(CHART);
    #[derive(Deserialize)]
    struct ChartMeta {
        name: String,
        version: String,
    }
    let path = chart.join("Chart.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{CHARTS_DIR_VAR} is set but {} cannot be read", path.display()))?;
    let meta: ChartMeta = serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        meta.name == CHART,
        "{} is chart {}, not {CHART}",
        path.display(),
        meta.name
    );
    eprintln!("chart {} {} at {}", meta.name, meta.version, chart.display());
    Ok(Some(chart))
}

// ---- CRDs -----------------------------------------------------------------------------------

/// One served version of one CRD.
struct Served {
    namespaced: bool,
    validator: jsonschema::Validator,
    /// `gateway.networking.k8s.io/bundle-version` and `/channel`, where the CRD says.
    bundle: Option<String>,
    /// How many CEL rules its schema holds (not evaluated here).
    cel_rules: usize,
}

/// Served schemas by (apiVersion, kind).
type Schemas = BTreeMap<(String, String), Served>;

/// The YAML files helm installs as CRDs: everything under `<chart>/crds/`, for the chart and each
/// subchart unpacked under `<chart>/charts/` (gateway-helm's CRDs are in its `crds` subchart).
fn crd_files(chart: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    fn yaml_under(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                yaml_under(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
        Ok(())
    }
    let crds = chart.join("crds");
    if crds.is_dir() {
        yaml_under(&crds, out)?;
    }
    let subcharts = chart.join("charts");
    if subcharts.is_dir() {
        for entry in std::fs::read_dir(&subcharts).with_context(|| format!("reading {}", subcharts.display()))? {
            let path = entry?.path();
            if path.join("Chart.yaml").is_file() {
                crd_files(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "tgz") {
                bail!(
                    "{}: a packed subchart; unpack it in place to read its CRDs",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn count_cel_rules(schema: &Value) -> usize {
    match schema {
        Value::Object(o) => {
            o.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                + o.iter()
                    .filter(|(k, _)| *k != "x-kubernetes-validations")
                    .map(|(_, v)| count_cel_rules(v))
                    .sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_cel_rules).sum(),
        _ => 0,
    }
}

/// An OpenAPI v3 structural schema as the API server applies it, for a JSON Schema validator
/// (see the module comment).
fn strict(schema: &mut Value) {
    let Value::Object(node) = schema else { return };
    let preserve = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(Value::Object(props)) = node.get_mut("properties") {
        for prop in props.values_mut() {
            strict(prop);
        }
    }
    if let Some(Value::Object(props)) = node.get("properties") {
        // The API server defaults before it validates: a defaulted field is never missing.
        let defaulted: Vec<String> = props
            .iter()
            .filter(|(_, p)| p.get("default").is_some())
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(Value::Array(required)) = node.get_mut("required") {
            required.retain(|r| r.as_str().is_none_or(|r| !defaulted.iter().any(|d| d == r)));
            if required.is_empty() {
                node.remove("required");
            }
        }
        if !preserve && !node.contains_key("additionalProperties") {
            node.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !node.contains_key("type")
        && !node.contains_key("anyOf")
    {
        node.insert("anyOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
    }
    if node.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        node.insert("uniqueItems".into(), Value::Bool(true));
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child @ Value::Object(_)) = node.get_mut(key) {
            strict(child);
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(Value::Array(children)) = node.get_mut(key) {
            children.iter_mut().for_each(strict);
        }
    }
}

fn load_schemas(chart: &Path) -> anyhow::Result<Schemas> {
    let mut files = Vec::new();
    crd_files(chart, &mut files)?;
    ensure!(
        !files.is_empty(),
        "{} and its subcharts have no crds/ directory with YAML files",
        chart.display()
    );
    let mut schemas = Schemas::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for crd in documents(&text).with_context(|| format!("parsing {}", file.display()))? {
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let spec = &crd["spec"];
            let group = spec["group"].as_str().context("a CRD without spec.group")?;
            let kind = spec["names"]["kind"]
                .as_str()
                .context("a CRD without spec.names.kind")?;
            let annotations = &crd["metadata"]["annotations"];
            let bundle = annotations["gateway.networking.k8s.io/bundle-version"]
                .as_str()
                .map(|v| {
                    let channel = annotations["gateway.networking.k8s.io/channel"].as_str().unwrap_or("?");
                    format!("Gateway API {v}, {channel} channel")
                });
            for version in spec["versions"].as_array().into_iter().flatten() {
                if version["served"] != true {
                    continue;
                }
                let name = version["name"].as_str().context("a CRD version without a name")?;
                let mut schema = version["schema"]["openAPIV3Schema"].clone();
                ensure!(schema.is_object(), "{group}/{name} {kind} has no openAPIV3Schema");
                let cel_rules = count_cel_rules(&schema);
                strict(&mut schema);
                let validator = jsonschema::draft4::new(&schema)
                    .map_err(|e| anyhow::anyhow!("{group}/{name} {kind}: the schema does not compile: {e}"))?;
                schemas.insert(
                    (format!("{group}/{name}"), kind.to_owned()),
                    Served {
                        namespaced: spec["scope"] == "Namespaced",
                        validator,
                        bundle: bundle.clone(),
                        cel_rules,
                    },
                );
            }
        }
    }
    Ok(schemas)
}

/// A DNS-1123 subdomain, what the API server requires of these objects' names.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// What the API server would refuse in `obj`, one line each.
fn problems(schemas: &Schemas, obj: &Value) -> Vec<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
    let Some(served) = schemas.get(&(api_version.clone(), kind.clone())) else {
        return vec![format!("no CRD in the chart serves {api_version} {kind}")];
    };
    let mut out = Vec::new();
    let meta = &obj["metadata"];
    match (served.namespaced, meta.get("namespace").is_some()) {
        (true, false) => out.push("/metadata: a namespaced kind without a namespace".to_owned()),
        (false, true) => out.push("/metadata: a cluster-scoped kind with a namespace".to_owned()),
        _ => {}
    }
    if !meta["name"].as_str().is_some_and(is_dns_subdomain) {
        out.push(format!("/metadata/name: {} is not a DNS-1123 subdomain", meta["name"]));
    }
    out.extend(
        served
            .validator
            .iter_errors(obj)
            .map(|e| format!("{}: {e}", e.instance_path())),
    );
    out
}

// ---- What is rendered -------------------------------------------------------------------------

const HOST_PORTS: Exposure = Exposure::HostPorts {
    http: 48080,
    https: 48443,
};

fn spec_matrix(namespace: &str) -> Vec<(&'static str, IngressSpec)> {
    let base = || {
        let mut spec = IngressSpec::new(3);
        spec.host = deployment_host(namespace);
        spec
    };
    let cookie = |max_age_secs| {
        base().with_affinity(Affinity::Cookie(CookieAffinity {
            name: "TESTBED_AFFINITY".to_owned(),
            max_age_secs,
        }))
    };
    let mut path = base();
    path.path = "/ws".to_owned();
    vec![
        ("plain", base()),
        ("idle-2500ms", base().with_idle_timeout(Duration::from_millis(2500))),
        ("idle-1h", base().with_idle_timeout(Duration::from_secs(3600))),
        ("proxy-protocol", base().with_proxy_protocol()),
        ("tls", base().with_tls()),
        ("proxy-protocol-tls", base().with_proxy_protocol().with_tls()),
        ("cookie-max-age", cookie(Some(600))),
        ("session-cookie", cookie(None)),
        ("client-ip", base().with_affinity(Affinity::ClientIp)),
        (
            "client-ip-proxy-protocol-tls-idle",
            base()
                .with_affinity(Affinity::ClientIp)
                .with_proxy_protocol()
                .with_tls()
                .with_idle_timeout(Duration::from_secs(300)),
        ),
        ("drain-5s", base().with_data_plane_drain_limit(Duration::from_secs(5))),
        ("circuit-breaker-100k", base().with_backend_connections(100_000)),
        ("path-ws", path),
        (
            "everything",
            cookie(Some(60))
                .with_idle_timeout(Duration::from_secs(3))
                .with_proxy_protocol()
                .with_tls()
                .with_data_plane_drain_limit(Duration::from_millis(7500)),
        ),
    ]
}

fn to_value<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("rendered objects serialize")
}

/// Every object the renderer writes for the matrix, named `<case>/<kind>`.
fn rendered() -> anyhow::Result<Vec<(String, Value)>> {
    let namespace = "tb-envoy-gateway-1";
    let opts = RenderOptions::new(namespace);
    let mut out = vec![
        ("class/GatewayClass".to_owned(), to_value(&gateway_class())),
        (
            "class/EnvoyProxy".to_owned(),
            to_value(&class_envoy_proxy(&HelmCommon::new())),
        ),
    ];
    for (name, spec) in spec_matrix(namespace) {
        for (exposure, suffix) in [(HOST_PORTS, ""), (Exposure::InCluster, "-in-cluster")] {
            let objects = render(&spec, &opts, exposure).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let docs = documents(&objects.to_yaml())?;
            for doc in docs {
                out.push((format!("{name}{suffix}/{}", doc["kind"].as_str().unwrap_or("?")), doc));
            }
        }
        // The controller change: the same ClientTrafficPolicy with the connection idle timeout.
        let mut p = testbed::controllers::envoy_gateway::config::policies(&spec)?;
        p.client.idle_timeout = Some(testbed::controllers::envoy_gateway::config::changed_idle_timeout(1));
        let changed = render_policies(&p, &spec, &opts, HOST_PORTS)?;
        let ctp = changed.client_traffic_policy.context("a changed ClientTrafficPolicy")?;
        out.push((format!("{name}-controller-change/ClientTrafficPolicy"), to_value(&ctp)));
        // The unrelated route and the listener change, on the spec's Gateway.
        let base = eg_kind::gateway(&spec, &opts);
        let route = unrelated_route(&opts, 3);
        out.push((
            format!("{name}-unrelated-route/Gateway"),
            to_value(&with_listeners(&base, [route.listener])),
        ));
        out.push((format!("{name}-unrelated-route/HTTPRoute"), to_value(&route.route)));
        // The listener change (specs with TLS) as the kind environment applies it: the second
        // one's Gateway (the first's listener kept) and HTTPRoute.
        let envoy_gateway = testbed::controllers::of(model::Controller::EnvoyGateway);
        match envoy_gateway.listener_routing(&spec, &opts, 1) {
            Some(yaml) => {
                for doc in documents(&yaml)? {
                    out.push((
                        format!("{name}-listener-change/{}", doc["kind"].as_str().unwrap_or("?")),
                        doc,
                    ));
                }
            }
            None => ensure!(
                !spec.tls && listener_change(&spec, &opts, 1).is_none(),
                "{name}: no listener change for a spec with TLS"
            ),
        }
    }
    Ok(out)
}

// ---- Tests ------------------------------------------------------------------------------------

#[test]
fn rendered_gateway_objects_validate_against_the_pinned_charts_crds() -> anyhow::Result<()> {
    let Some(chart) = chart_dir()? else { return Ok(()) };
    let schemas = load_schemas(&chart)?;
    let objects = rendered()?;
    let mut failures = Vec::new();
    // (apiVersion, kind) → valid objects.
    let mut valid: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (name, obj) in &objects {
        let found = problems(&schemas, obj);
        if found.is_empty() {
            let key = |k: &str| obj[k].as_str().unwrap_or("?").to_owned();
            *valid.entry((key("apiVersion"), key("kind"))).or_default() += 1;
        } else {
            failures.push(format!(
                "{name}:\n  {}\n{}",
                found.join("\n  "),
                serde_yaml_ng::to_string(obj).unwrap_or_default()
            ));
        }
    }
    for (key, count) in &valid {
        let served = &schemas[key];
        eprintln!(
            "{} {}{}: {count} rendered objects valid; its {} CEL rules not evaluated",
            key.0,
            key.1,
            served.bundle.as_deref().map(|b| format!(" ({b})")).unwrap_or_default(),
            served.cel_rules
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} rendered objects break the CRDs of {}:\n{}",
            failures.len(),
            objects.len(),
            chart.display(),
            failures.join("\n")
        );
    }
    for kind in KINDS {
        ensure!(
            valid.keys().any(|(_, k)| k == kind),
            "no {kind} was rendered and validated"
        );
    }
    Ok(())
}

/// The listener changes are applied by a field manager of their own and the unrelated routes by
/// the testbed's, each with the Gateway whole: server-side apply keeps both sets of listeners
/// only because the CRD makes `spec.listeners` a list map keyed by name (an atomic list would
/// be replaced whole by the last apply).
#[test]
fn gateway_listeners_merge_by_name_under_server_side_apply() -> anyhow::Result<()> {
    let Some(chart) = chart_dir()? else { return Ok(()) };
    let mut files = Vec::new();
    crd_files(&chart, &mut files)?;
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for crd in documents(&text)? {
            let spec = &crd["spec"];
            if crd["kind"] != "CustomResourceDefinition"
                || spec["group"] != "gateway.networking.k8s.io"
                || spec["names"]["kind"] != "Gateway"
            {
                continue;
            }
            for version in spec["versions"].as_array().into_iter().flatten() {
                let listeners = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["listeners"];
                ensure!(
                    listeners["x-kubernetes-list-type"] == "map"
                        && listeners["x-kubernetes-list-map-keys"] == json!(["name"]),
                    "Gateway {}: spec.listeners is not a list map keyed by name: {}",
                    version["name"],
                    serde_json::to_string(listeners.get("x-kubernetes-list-type").unwrap_or(&Value::Null))?
                );
                checked += 1;
            }
        }
    }
    ensure!(checked > 0, "no Gateway CRD in {}", chart.display());
    Ok(())
}

/// The validation is not vacuous: what the API server refuses, it refuses too.
#[test]
fn the_crd_validation_refuses_what_the_api_server_would() -> anyhow::Result<()> {
    let Some(chart) = chart_dir()? else { return Ok(()) };
    let schemas = load_schemas(&chart)?;
    let objects: BTreeMap<String, Value> = rendered()?.into_iter().collect();
    // (what, which rendered object, how it is broken)
    type Breaking = (&'static str, &'static str, Box<dyn Fn(&mut Value)>);
    let broken: Vec<Breaking> = vec![
        (
            "a misspelt field",
            "plain/Gateway",
            Box::new(|o| o["spec"]["gatewayClass"] = json!("envoy-gateway")),
        ),
        (
            "a fractional duration",
            "idle-2500ms/ClientTrafficPolicy",
            Box::new(|o| o["spec"]["timeout"]["http"]["streamIdleTimeout"] = json!("2.5s")),
        ),
        (
            "a value outside the enum",
            "client-ip/BackendTrafficPolicy",
            Box::new(|o| o["spec"]["loadBalancer"]["consistentHash"]["type"] = json!("SourceIp")),
        ),
        (
            "a missing required field",
            "plain/EnvoyProxy",
            Box::new(|o| {
                o["spec"]["provider"]["kubernetes"]["envoyDeployment"]["patch"]
                    .as_object_mut()
                    .map(|p| p.remove("value"));
            }),
        ),
        (
            "a session persistence type Gateway API lacks",
            "session-cookie/HTTPRoute",
            Box::new(|o| o["spec"]["rules"][0]["sessionPersistence"]["type"] = json!("Sticky")),
        ),
        (
            "a namespaced GatewayClass",
            "class/GatewayClass",
            Box::new(|o| o["metadata"]["namespace"] = json!("default")),
        ),
        (
            "a listener name that is no DNS name",
            "tls/Gateway",
            Box::new(|o| o["spec"]["listeners"][1]["name"] = json!("Echo_HTTPS")),
        ),
        (
            "a string for an integer port",
            "plain/Gateway",
            Box::new(|o| o["spec"]["listeners"][0]["port"] = json!("80")),
        ),
    ];
    let mut unrefused = Vec::new();
    for (what, name, breaks) in broken {
        let mut obj = objects
            .get(name)
            .cloned()
            .with_context(|| format!("no rendered {name}"))?;
        assert!(problems(&schemas, &obj).is_empty(), "{name} is valid as rendered");
        breaks(&mut obj);
        let found = problems(&schemas, &obj);
        if found.is_empty() {
            unrefused.push(format!("{what} ({name})"));
        } else {
            eprintln!("{what} ({name}) refused: {}", found.join("; "));
        }
    }
    ensure!(unrefused.is_empty(), "not refused: {unrefused:?}");
    Ok(())
}

/// The API server's structural-schema rules as the JSON Schema validator is given them (no chart
/// needed).
#[test]
fn structural_schemas_are_made_strict_like_server_side_apply() {
    let mut schema = json!({
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "default": "x"},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "properties": {"k": {"type": "string"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "nested": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        },
    });
    strict(&mut schema);
    let v = jsonschema::draft4::new(&schema).expect("compiles");
    let ok = |i: Value| v.is_valid(&i);
    assert!(ok(json!({"a": "1"})), "a defaulted required field may be left out");
    assert!(!ok(json!({"b": "1"})), "a required field without a default may not");
    assert!(!ok(json!({"a": "1", "typo": 1})), "unknown fields are refused");
    assert!(ok(json!({"a": "1", "open": {"anything": [1]}})), "unless preserved");
    assert!(
        ok(json!({"a": "1", "labels": {"x": "y"}})),
        "maps keep their own additionalProperties"
    );
    assert!(
        !ok(json!({"a": "1", "nested": [{"m": 1}]})),
        "strict inside list items too"
    );
    assert!(ok(json!({"a": "1", "port": 80})) && ok(json!({"a": "1", "port": "http"})));
    assert!(
        !ok(json!({"a": "1", "port": true})),
        "int-or-string is an integer or a string"
    );
    assert!(!ok(json!({"a": "1", "tags": ["x", "x"]})), "a set has no duplicates");
    assert!(is_dns_subdomain("ws-echo-tb-1-testbed-local") && !is_dns_subdomain("Ws_echo"));
}

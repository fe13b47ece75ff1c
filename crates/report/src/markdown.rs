//! `report.md`: the matrix, the figures, and the caveats with the knob that fixes each.

use std::fmt::Write;

use crate::model::{Outcome, Report};

/// The behaviour × controller matrix as a Markdown table (also printed by `cargo xtask e2e`).
pub fn matrix(report: &Report) -> String {
    let controllers = report.controllers();
    let mut out = String::new();
    let _ = write!(out, "| behaviour |");
    for c in &controllers {
        let _ = write!(out, " {c} |");
    }
    let _ = write!(out, "\n|---|");
    for _ in &controllers {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    for (behaviour, _) in report.behaviours() {
        let _ = write!(out, "| `{behaviour}` |");
        for c in &controllers {
            let cell = match report.get(&behaviour, c) {
                None => "—".to_owned(),
                Some(r) => {
                    let mark = match r.outcome {
                        Outcome::Fail => format!("**{}**", r.verdict()),
                        Outcome::NotSupported if r.shown_caveat().is_some() => "⚠ not supported".to_owned(),
                        _ => r.verdict().to_owned(),
                    };
                    let modelled = r.modelled_mark();
                    match &r.key_figure {
                        Some(fig) => format!("{mark}{modelled} · {}", escape(fig)),
                        None => format!("{mark}{modelled}"),
                    }
                }
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# WebSocket behaviour through ingress controllers ({} environment)\n",
        report.env
    );
    let _ = writeln!(
        out,
        "{}{}.\n",
        report.summary(),
        report.wall_seconds.map(|s| format!(" in {s:.0} s")).unwrap_or_default()
    );
    if !report.versions.is_empty() {
        let _ = writeln!(
            out,
            "| controller | driven through | controller version | data plane that ran | what the controller ships | control loop (model) |\n|---|---|---|---|---|---|"
        );
        for (name, v) in &report.versions {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} |",
                escape(v.api.as_deref().unwrap_or("—")),
                escape(&v.controller),
                escape(&v.data_plane),
                escape(v.shipped.as_deref().unwrap_or("—")),
                escape(v.control_loop.as_deref().unwrap_or("—"))
            );
        }
        out.push('\n');
    }
    let prestop = report.prestop_needed();
    if !prestop.is_empty() {
        let _ = writeln!(
            out,
            "## The preStop your pods need\n\nHow long after a pod's deletion new connections still reached it \
             (`endpoint_removal_lag`): a preStop at least this long keeps every new connection off a pod \
             that stopped listening.\n\n| controller | lag p50 | lag max | preStop ≥ | fidelity |\n|---|---:|---:|---:|---|"
        );
        for (r, p50, max, need) in &prestop {
            let _ = writeln!(
                out,
                "| {} | {p50:.0} ms | {max:.0} ms | {:.1} s | {} |",
                r.controller,
                need / 1000.0,
                r.fidelity.level.as_str()
            );
        }
        out.push('\n');
        // A modelled figure is not the controller's own: say beside it how it differs.
        for (r, ..) in prestop.iter().filter(|(r, ..)| r.fidelity.note.is_some()) {
            let _ = writeln!(out, "- {}: {}", r.controller, escape(&r.fidelity_text()));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## Matrix\n\n✓ is what users want. ⚠ marks a caveat: the controller behaves as its profile says, \
         but that is not what users want (the Caveats section names the knob). ✗ marks a measurement \
         that contradicts the profile. \
         ≈ marks a local figure from a modelled mechanism: the details say how it differs from the \
         controller's own.\n"
    );
    out.push_str(&matrix(report));

    let caveats: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| r.shown_caveat().map(|c| (r, c)))
        .collect();
    if !caveats.is_empty() {
        let _ = writeln!(out, "\n## Caveats\n");
        for (r, c) in caveats {
            let _ = writeln!(
                out,
                "- **{}** `{}`: {} Knob: `{}`.",
                r.controller, r.behaviour, c.text, c.knob
            );
        }
    }

    let _ = writeln!(out, "\n## Details\n");
    for (behaviour, area) in report.behaviours() {
        let _ = writeln!(out, "### `{behaviour}` ({area})\n");
        if let Some(first) = report.results.iter().find(|r| r.behaviour == behaviour) {
            let _ = writeln!(out, "{}\n", first.description);
        }
        let _ = writeln!(
            out,
            "| controller | outcome | expected | observed | figures | source | fidelity |\n|---|---|---|---|---|---|---|"
        );
        for c in report.controllers() {
            let Some(r) = report.get(&behaviour, &c) else { continue };
            let figures = r
                .figures
                .iter()
                .map(|f| format!("{} = {} {}", f.name, trim_number(f.value), f.unit))
                .collect::<Vec<_>>()
                .join("; ");
            let observed = match (&r.reason, &r.error) {
                (Some(reason), _) => format!("{}: {reason}", r.outcome.label()),
                (_, Some(err)) => format!("{} ({err})", r.observed),
                _ => r.observed.clone(),
            };
            let _ = writeln!(
                out,
                "| {c} | {} | {} | {} | {} | {} | {} |",
                r.outcome.as_str(),
                escape(&r.expected),
                escape(&observed),
                escape(&figures),
                escape(&r.source),
                escape(&r.fidelity_text())
            );
        }
        out.push('\n');
    }
    out
}

pub(crate) fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BehaviourResult, Caveat, Figure};

    fn result(behaviour: &str, controller: &str, outcome: Outcome) -> BehaviourResult {
        BehaviourResult {
            index: 0,
            behaviour: behaviour.into(),
            area: "timeouts".into(),
            description: "d".into(),
            controller: controller.into(),
            env: "local".into(),
            outcome,
            expected: "closed".into(),
            observed: "closed".into(),
            source: "https://example.invalid/doc".into(),
            caveat: None,
            fidelity: Default::default(),
            reason: None,
            error: None,
            figures: vec![Figure {
                name: "ended_after".into(),
                value: 3.02,
                unit: "s".into(),
            }],
            key_figure: Some("3.0 s".into()),
            lanes: vec![],
            markers: vec![],
            duration_ms: 10.0,
        }
    }

    #[test]
    fn matrix_has_a_cell_per_controller_with_the_key_figure() {
        let mut caveated = result("idle", "haproxy", Outcome::Pass);
        caveated.caveat = Some(Caveat {
            text: "cut".into(),
            knob: "timeout tunnel".into(),
        });
        let report = Report {
            env: "local".into(),
            generated_at: 0,
            wall_seconds: Some(61.0),
            versions: Default::default(),
            results: vec![
                result("idle", "nginx", Outcome::Pass),
                caveated,
                result("idle", "traefik", Outcome::Fail),
            ],
        };
        let md = render(&report);
        assert!(md.contains("| behaviour | nginx | traefik | haproxy |"), "{md}");
        assert!(
            md.contains("| `idle` | ✓ · 3.0 s | **✗** · 3.0 s | ⚠ · 3.0 s |"),
            "{md}"
        );
        assert!(md.contains("Knob: `timeout tunnel`"), "{md}");
        assert!(
            md.contains(
                "2 passed, 1 failed, 0 not supported by the controller, 0 not applicable in this environment in 61 s"
            ),
            "{md}"
        );
    }

    #[test]
    fn the_prestop_table_leads_with_each_controllers_lag() {
        let mut lag = result("endpoint_removal_lag", "nginx", Outcome::Pass);
        lag.figures = vec![
            Figure {
                name: "endpoint_removal_lag_p50".into(),
                value: 900.0,
                unit: "ms".into(),
            },
            Figure {
                name: "endpoint_removal_lag_max".into(),
                value: 1951.0,
                unit: "ms".into(),
            },
            Figure {
                name: "prestop_needed".into(),
                value: 2000.0,
                unit: "ms".into(),
            },
        ];
        let report = Report {
            env: "local".into(),
            generated_at: 0,
            wall_seconds: None,
            versions: Default::default(),
            results: vec![lag, result("idle", "haproxy", Outcome::Pass)],
        };
        let md = render(&report);
        assert!(md.contains("| nginx | 900 ms | 1951 ms | 2.0 s | unrated |"), "{md}");
        assert!(
            md.find("The preStop your pods need") < md.find("## Matrix"),
            "the table comes first: {md}"
        );
    }

    #[test]
    fn modelled_cells_are_marked_and_explained() {
        use crate::model::{Fidelity, FidelityLevel};
        let mut modelled = result("idle", "nginx", Outcome::Pass);
        modelled.fidelity = Fidelity {
            level: FidelityLevel::Modelled,
            note: Some("endpoints through DNS instead of the Lua balancer".into()),
            source: Some("https://example.invalid/balancer.lua".into()),
        };
        let mut faithful = result("idle", "haproxy", Outcome::Pass);
        faithful.fidelity.level = FidelityLevel::Faithful;
        let report = Report {
            env: "local".into(),
            generated_at: 0,
            wall_seconds: None,
            versions: Default::default(),
            results: vec![modelled, faithful],
        };
        let md = render(&report);
        assert!(md.contains("| `idle` | ✓ ≈ · 3.0 s | ✓ · 3.0 s |"), "{md}");
        assert!(
            md.contains(
                "modelled: endpoints through DNS instead of the Lua balancer (https://example.invalid/balancer.lua)"
            ),
            "{md}"
        );
        let json = serde_json::to_string(&report.results[0]).unwrap();
        assert!(json.contains("\"fidelity\":{\"level\":\"modelled\""), "{json}");
    }

    #[test]
    fn not_supported_and_not_applicable_are_told_apart() {
        let caveat = Caveat {
            text: "no client-IP affinity on an Ingress".into(),
            knob: "sticky cookie".into(),
        };
        let mut unsupported = result("client_ip", "traefik", Outcome::NotSupported);
        unsupported.reason = Some("Traefik cannot express affinity.client_ip".into());
        unsupported.caveat = Some(caveat.clone());
        unsupported.key_figure = None;
        let mut local_only = result("client_ip", "nginx", Outcome::NotApplicable);
        local_only.reason = Some("needs kube-proxy".into());
        local_only.caveat = Some(caveat);
        local_only.key_figure = None;
        let report = Report {
            env: "local".into(),
            generated_at: 0,
            wall_seconds: None,
            versions: Default::default(),
            results: vec![local_only, unsupported],
        };
        let md = render(&report);
        assert!(md.contains("| `client_ip` | n/a here | ⚠ not supported |"), "{md}");
        assert!(md.contains("not supported: Traefik cannot express"), "{md}");
        assert!(md.contains("n/a here: needs kube-proxy"), "{md}");
        assert!(
            md.contains("0 passed, 0 failed, 1 not supported by the controller, 1 not applicable in this environment."),
            "{md}"
        );
        let json = serde_json::to_string(&report.results[1]).unwrap();
        assert!(json.contains("\"outcome\":\"not-supported\""), "{json}");
    }
}

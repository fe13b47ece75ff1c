//! `report.html`: one self-contained page (no external assets) with the matrix and SVG timelines.

use std::fmt::Write;

use crate::markdown::trim_number;
use crate::model::Report;
use crate::svg::{esc, timeline};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
.pass{background:#e6f4ea}.fail{background:#fce8e6;font-weight:bold}.not-supported{background:#fef7e0;color:#555}.not-applicable{background:#f1f3f4;color:#555}\
code{font-size:90%}figure{margin:1em 0}figcaption{font-size:90%;color:#444}.caveat{color:#b45309}";

/// Renders the report; `extra_sections` are appended HTML fragments (e.g. the benchmark tables).
pub fn render(report: &Report, extra_sections: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>WebSocket ingress report ({env})</title><style>{STYLE}</style></head><body>",
        env = esc(&report.env)
    );
    let _ = write!(
        out,
        "<h1>WebSocket behaviour through ingress controllers</h1><p>Environment <b>{}</b>: {}{}.</p>",
        esc(&report.env),
        esc(&report.summary()),
        report.wall_seconds.map(|s| format!(" in {s:.0} s")).unwrap_or_default()
    );
    if !report.versions.is_empty() {
        out.push_str(
            "<table><tr><th>controller</th><th>driven through</th><th>controller version</th><th>data plane that ran</th><th>what the controller ships</th><th>control loop (model)</th></tr>",
        );
        for (name, v) in &report.versions {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(v.api.as_deref().unwrap_or("—")),
                esc(&v.controller),
                esc(&v.data_plane),
                esc(v.shipped.as_deref().unwrap_or("—")),
                esc(v.control_loop.as_deref().unwrap_or("—"))
            );
        }
        out.push_str("</table>");
    }
    let prestop = report.prestop_needed();
    if !prestop.is_empty() {
        out.push_str(
            "<h2>The preStop your pods need</h2><p>How long after a pod's deletion new connections still reached it \
             (<code>endpoint_removal_lag</code>): a preStop at least this long keeps every new connection off a pod \
             that stopped listening.</p><table><tr><th>controller</th><th>lag p50</th><th>lag max</th><th>preStop ≥</th><th>fidelity</th></tr>",
        );
        for (r, p50, max, need) in prestop {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{p50:.0} ms</td><td>{max:.0} ms</td><td>{:.1} s</td><td title=\"{}\">{}</td></tr>",
                esc(&r.controller),
                need / 1000.0,
                esc(&r.fidelity_text()),
                r.fidelity.level.as_str()
            );
        }
        out.push_str("</table>");
    }
    let controllers = report.controllers();
    out.push_str("<h2>Matrix</h2><table><tr><th>behaviour</th>");
    for c in &controllers {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr>");
    for (behaviour, area) in report.behaviours() {
        let _ = write!(
            out,
            "<tr><td><a href=\"#{0}\"><code>{0}</code></a><br><small>{1}</small></td>",
            esc(&behaviour),
            esc(&area)
        );
        for c in &controllers {
            match report.get(&behaviour, c) {
                None => out.push_str("<td>—</td>"),
                Some(r) => {
                    let modelled = r.modelled_mark();
                    let _ = write!(
                        out,
                        "<td class=\"{}\" title=\"{}\">{}{modelled}<br><small>{}</small></td>",
                        r.outcome.as_str(),
                        esc(&format!("{}; {}", r.outcome.as_str(), r.fidelity_text())),
                        r.verdict(),
                        esc(r.key_figure.as_deref().unwrap_or(""))
                    );
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");

    out.push_str("<h2>Details</h2>");
    for (behaviour, area) in report.behaviours() {
        let _ = write!(
            out,
            "<h3 id=\"{0}\"><code>{0}</code> <small>({1})</small></h3>",
            esc(&behaviour),
            esc(&area)
        );
        for c in &controllers {
            let Some(r) = report.get(&behaviour, c) else { continue };
            let _ = write!(
                out,
                "<h4>{} — <span class=\"{}\">{}</span></h4><p>{}</p><table><tr><th>expected</th><td>{}</td></tr><tr><th>observed</th><td>{}</td></tr><tr><th>source</th><td>{}</td></tr>",
                esc(c),
                r.outcome.as_str(),
                r.outcome.as_str(),
                esc(&r.description),
                esc(&r.expected),
                esc(&r.observed),
                esc(&r.source)
            );
            let _ = write!(out, "<tr><th>fidelity</th><td>{}</td></tr>", esc(&r.fidelity_text()));
            if let Some(reason) = &r.reason {
                let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", r.outcome.label(), esc(reason));
            }
            if let Some(err) = &r.error {
                let _ = write!(out, "<tr><th>error</th><td>{}</td></tr>", esc(err));
            }
            if let Some(caveat) = r.shown_caveat() {
                let _ = write!(
                    out,
                    "<tr><th>caveat</th><td class=\"caveat\">{} Knob: <code>{}</code></td></tr>",
                    esc(&caveat.text),
                    esc(&caveat.knob)
                );
            }
            for f in &r.figures {
                let _ = write!(
                    out,
                    "<tr><th>{}</th><td>{} {}</td></tr>",
                    esc(&f.name),
                    trim_number(f.value),
                    esc(&f.unit)
                );
            }
            out.push_str("</table>");
            if let Some(svg) = timeline(r) {
                let _ = write!(
                    out,
                    "<figure>{svg}<figcaption>One lane per client connection, coloured by the pod that answered; numbers are close codes.</figcaption></figure>"
                );
            }
        }
    }
    for section in extra_sections {
        out.push_str(section);
    }
    out.push_str("</body></html>\n");
    out
}

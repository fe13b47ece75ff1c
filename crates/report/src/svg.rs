//! SVG timelines: one lane per client connection, coloured by pod, with close and failure markers.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::{BehaviourResult, LaneEnd};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 150.0;
const LANE_HEIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
/// Height of one marker label's row under the lanes.
const MARKER_ROW: f64 = 13.0;
/// Colour-blind-safe palette (Okabe–Ito), assigned to pods in order of appearance.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

/// The timeline picture of one result, or `None` when it recorded no lanes.
pub fn timeline(result: &BehaviourResult) -> Option<String> {
    if result.lanes.is_empty() {
        return None;
    }
    let end = result
        .lanes
        .iter()
        .map(|l| l.end_ms)
        .chain(result.markers.iter().map(|m| m.at_ms))
        .fold(1.0_f64, f64::max);
    let scale = (WIDTH - LEFT - 20.0) / end;
    let x = |ms: f64| LEFT + ms.max(0.0) * scale;
    let mut colours = BTreeMap::<String, &str>::new();
    for lane in &result.lanes {
        if let Some(pod) = &lane.pod {
            let next = PALETTE[colours.len() % PALETTE.len()];
            colours.entry(pod.clone()).or_insert(next);
        }
    }
    let legend_rows = colours.len().div_ceil(3) as f64;
    // Each marker's label gets its own row under the lanes: steps a millisecond apart
    // (preStop done, SIGTERM) would otherwise print over each other.
    let marker_rows = result.markers.len() as f64 * MARKER_ROW;
    let height = TOP + result.lanes.len() as f64 * LANE_HEIGHT + 30.0 + marker_rows + legend_rows * 16.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11" role="img" aria-label="{} timeline for {}">"#,
        esc(&result.behaviour),
        esc(&result.controller)
    );
    // Time axis: a tick every second or so.
    let step = nice_step(end);
    let mut t = 0.0;
    while t <= end {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle" fill="#666">{3}</text>"##,
            x(t),
            TOP + result.lanes.len() as f64 * LANE_HEIGHT,
            TOP - 8.0,
            format_ms(t)
        );
        t += step;
    }
    let lanes_bottom = TOP + result.lanes.len() as f64 * LANE_HEIGHT;
    for (row, m) in result.markers.iter().enumerate() {
        let label_y = lanes_bottom + 12.0 + row as f64 * MARKER_ROW;
        // Labels past the middle end at their line, so they stay inside the picture.
        let anchor = if x(m.at_ms) > WIDTH / 2.0 { "end" } else { "start" };
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2:.1}" stroke="#999" stroke-dasharray="4 3"/><text x="{0:.1}" y="{3:.1}" text-anchor="{4}" fill="#333">{5}</text>"##,
            x(m.at_ms),
            TOP - 4.0,
            label_y - 9.0,
            label_y,
            anchor,
            esc(&m.label)
        );
    }
    for (i, lane) in result.lanes.iter().enumerate() {
        let y = TOP + i as f64 * LANE_HEIGHT + LANE_HEIGHT / 2.0;
        let colour = lane
            .pod
            .as_ref()
            .and_then(|p| colours.get(p))
            .copied()
            .unwrap_or("#888");
        let _ = write!(
            svg,
            r#"<text x="4" y="{:.1}" fill="\#333">{}</text>"#,
            y + 4.0,
            esc(&lane.label)
        );
        let (x0, x1) = (x(lane.start_ms), x(lane.end_ms).max(x(lane.start_ms) + 2.0));
        let title = format!(
            "{} · pod {} · {}",
            lane.label,
            lane.pod.as_deref().unwrap_or("none"),
            end_text(&lane.end)
        );
        let _ = write!(
            svg,
            r#"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="6"><title>{}</title></line>"#,
            esc(&title)
        );
        for ev in &lane.events {
            let _ = write!(
                svg,
                r##"<circle cx="{:.1}" cy="{y:.1}" r="1.5" fill="#fff"><title>{}</title></circle>"##,
                x(ev.at_ms),
                esc(&ev.label)
            );
        }
        let _ = match &lane.end {
            LaneEnd::Closed { code } => write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="#333">{code}</text>"##,
                x1 + 3.0,
                y + 4.0
            ),
            LaneEnd::Abnormal { .. } => write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="#D55E00" font-weight="bold">✕ abnormal</text>"##,
                x1 + 3.0,
                y + 4.0
            ),
            LaneEnd::HandshakeFailed { status } => write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="#D55E00" font-weight="bold">✕ handshake {status}</text>"##,
                x0 + 3.0,
                y + 4.0
            ),
            LaneEnd::Open => Ok(()),
        };
    }
    let legend_y = TOP + result.lanes.len() as f64 * LANE_HEIGHT + 30.0 + result.markers.len() as f64 * MARKER_ROW;
    for (i, (pod, colour)) in colours.iter().enumerate() {
        let (col, row) = ((i % 3) as f64, (i / 3) as f64);
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + col * 240.0,
            legend_y + row * 16.0 - 9.0,
            LEFT + col * 240.0 + 14.0,
            legend_y + row * 16.0,
            esc(pod)
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

fn end_text(end: &LaneEnd) -> String {
    match end {
        LaneEnd::Closed { code } => format!("close {code}"),
        LaneEnd::Abnormal { error } => format!("abnormal end: {error}"),
        LaneEnd::HandshakeFailed { status } => format!("handshake failed ({status})"),
        LaneEnd::Open => "open".to_owned(),
    }
}

fn nice_step(end_ms: f64) -> f64 {
    [100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0]
        .into_iter()
        .find(|s| end_ms / s <= 12.0)
        .unwrap_or(120000.0)
}

fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        // Ticks fall on half seconds too: 1.5s, not a second "2s".
        let s = format!("{:.1}", ms / 1000.0);
        format!("{}s", s.trim_end_matches(".0"))
    } else {
        format!("{ms:.0}ms")
    }
}

pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Lane, Marker, Outcome};

    #[test]
    fn axis_labels_tell_half_seconds_apart() {
        let labels: Vec<String> = [0.0, 500.0, 1000.0, 1500.0, 2000.0, 12_000.0].map(format_ms).to_vec();
        assert_eq!(labels, ["0ms", "500ms", "1s", "1.5s", "2s", "12s"]);
    }

    #[test]
    fn lanes_are_coloured_by_pod_and_mark_failures() {
        let lane = |label: &str, pod: Option<&str>, end: LaneEnd| Lane {
            label: label.into(),
            pod: pod.map(Into::into),
            start_ms: 0.0,
            end_ms: 4000.0,
            end,
            events: vec![],
        };
        let result = BehaviourResult {
            index: 0,
            behaviour: "rolling_update".into(),
            area: "termination".into(),
            description: String::new(),
            controller: "nginx".into(),
            env: "local".into(),
            outcome: Outcome::Pass,
            expected: String::new(),
            observed: String::new(),
            source: String::new(),
            caveat: None,
            reason: None,
            fidelity: Default::default(),
            error: None,
            figures: vec![],
            key_figure: None,
            lanes: vec![
                lane("conn 1", Some("pod-a"), LaneEnd::Closed { code: 1001 }),
                lane("conn 2", Some("pod-b"), LaneEnd::Abnormal { error: "reset".into() }),
                lane("conn 3", None, LaneEnd::HandshakeFailed { status: 502 }),
            ],
            markers: vec![
                Marker {
                    at_ms: 1000.0,
                    label: "preStop done".into(),
                },
                Marker {
                    at_ms: 1000.1,
                    label: "SIGTERM <pod-a>".into(),
                },
            ],
            duration_ms: 0.0,
        };
        let svg = timeline(&result).unwrap();
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]), "{svg}");
        assert!(svg.contains(">1001<"));
        assert!(svg.contains("✕ abnormal"));
        assert!(svg.contains("✕ handshake 502"));
        assert!(svg.contains("SIGTERM &lt;pod-a&gt;"), "labels are escaped");
        let label_y = |label: &str| {
            let before = &svg[..svg.find(label).unwrap()];
            let y = &before[before.rfind(" y=\"").unwrap() + 4..];
            y[..y.find('"').unwrap()].parse::<f64>().unwrap()
        };
        assert!(
            label_y("SIGTERM") > label_y("preStop done"),
            "markers a moment apart get their own rows"
        );
    }
}

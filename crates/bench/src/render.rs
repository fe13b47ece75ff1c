//! Renders a [`BenchResult`]: markdown tables (bench.md and the terminal), a hand-written SVG chart
//! of latency percentiles per data plane, and the HTML fragment the e2e report embeds.

use std::fmt::Write;

use crate::result::{BenchResult, Latency, Ratios};

/// A table rendered both as markdown and as HTML.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    /// (header, right-aligned)
    pub columns: Vec<(String, bool)>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: &str, columns: &[(&str, bool)]) -> Self {
        Table {
            title: title.to_owned(),
            columns: columns.iter().map(|(h, r)| ((*h).to_owned(), *r)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n|", self.title);
        for (h, _) in &self.columns {
            let _ = write!(out, " {} |", md_escape(h));
        }
        out.push_str("\n|");
        for (_, right) in &self.columns {
            out.push_str(if *right { "---:|" } else { "---|" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for cell in row {
                let _ = write!(out, " {} |", md_escape(cell));
            }
            out.push('\n');
        }
        out
    }

    pub fn html(&self) -> String {
        let mut out = format!("<h3>{}</h3>\n<table>\n<thead><tr>", html_escape(&self.title));
        for (h, right) in &self.columns {
            let _ = write!(out, "<th{}>{}</th>", align(*right), html_escape(h));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for (cell, (_, right)) in row.iter().zip(&self.columns) {
                let _ = write!(out, "<td{}>{}</td>", align(*right), html_escape(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }
}

fn align(right: bool) -> &'static str {
    if right { " style=\"text-align:right\"" } else { "" }
}

/// The three tables, in the order the issue lists the parts.
pub fn tables(r: &BenchResult) -> Vec<Table> {
    let mut out = Vec::new();
    if let Some(base) = r.echo.iter().find(|s| s.name == "tokio-tungstenite").or(r.echo.first()) {
        let mut t = Table::new(
            &format!("Echo servers, side by side (× = ratio to {})", base.name),
            &[
                ("echo server", false),
                ("msgs/s", true),
                ("×", true),
                ("p99 µs", true),
                ("×", true),
                ("KiB per idle connection", true),
                ("×", true),
                ("handshakes/s", true),
                ("×", true),
            ],
        );
        for s in &r.echo {
            let m = &s.median;
            let x = Ratios::of(m, &base.median);
            t.rows.push(vec![
                s.label.clone(),
                thousands(m.msgs_per_sec),
                times(x.msgs_per_sec),
                thousands(m.latency.p99_us),
                times(x.p99),
                m.kib_per_idle_connection.map_or("-".into(), |k| format!("{k:.1}")),
                times(x.kib_per_idle_connection),
                thousands(m.handshakes_per_sec),
                times(x.handshakes_per_sec),
            ]);
        }
        out.push(t);
        let mut busy = Table::new(
            "Who was busy: CPU share of each side's core (100% = saturated)",
            &[
                ("echo server", false),
                ("round trips: generator", true),
                ("round trips: server", true),
                ("handshakes: generator", true),
                ("handshakes: server", true),
                ("server CPU µs per handshake", true),
                ("×", true),
            ],
        );
        for s in &r.echo {
            let m = &s.median;
            busy.rows.push(vec![
                s.label.clone(),
                percent(m.generator_cpu_percent),
                percent(m.server_cpu_percent),
                percent(m.churn_generator_cpu_percent),
                percent(m.churn_server_cpu_percent),
                m.server_cpu_us_per_handshake
                    .map_or("-".into(), |us| format!("{us:.1}")),
                times(Ratios::of(m, &base.median).server_cpu_per_handshake),
            ]);
        }
        out.push(busy);
    }
    if !r.proxies.is_empty() {
        let mut t = Table::new(
            "ws-echo behind each data plane (vs. the same pod dialed directly; data plane and pod share the server core)",
            &[
                ("data plane", false),
                ("msgs/s direct", true),
                ("msgs/s proxied", true),
                ("throughput ×", true),
                ("p50 µs direct", true),
                ("p50 µs proxied", true),
                ("added p50 µs", true),
                ("p99 µs direct", true),
                ("p99 µs proxied", true),
                ("added p99 µs", true),
            ],
        );
        for p in &r.proxies {
            t.rows.push(vec![
                format!("{} ({})", p.controller, p.data_plane),
                thousands(p.direct_msgs_per_sec),
                thousands(p.proxied_msgs_per_sec),
                times(p.throughput_ratio),
                thousands(p.direct.p50_us),
                thousands(p.proxied.p50_us),
                signed(p.added_p50_us),
                thousands(p.direct.p99_us),
                thousands(p.proxied.p99_us),
                signed(p.added_p99_us),
            ]);
        }
        out.push(t);
    }
    if let Some(c) = &r.capacity {
        let mut t = Table::new(
            "Capacity: idle connections ws-echo holds at once",
            &[
                ("target", false),
                ("held at once", true),
                ("failed", true),
                ("ws-echo processes", true),
                ("source addresses", true),
                ("ramp s", true),
                ("server RSS KiB", true),
                ("KiB per connection", true),
                ("short of the target because", false),
            ],
        );
        t.rows.push(vec![
            thousands(c.target as f64),
            thousands(c.held as f64),
            thousands(c.failed as f64),
            match c.per_process_limit {
                Some(limit) if c.server_processes > 1 => {
                    format!("{} (≤ {} each)", c.server_processes, thousands(limit as f64))
                }
                _ => c.server_processes.to_string(),
            },
            c.source_addresses.to_string(),
            format!("{:.1}", c.ramp_s),
            match (c.server_rss_before_kib, c.server_rss_after_kib) {
                (Some(b), Some(a)) => format!("{} → {}", thousands(b as f64), thousands(a as f64)),
                _ => "-".into(),
            },
            c.kib_per_connection.map_or("-".into(), |k| format!("{k:.1}")),
            c.limited_by.clone().unwrap_or_else(|| "-".into()),
        ]);
        out.push(t);
    }
    out
}

/// One line saying what ran where, and one saying how.
pub fn preamble(r: &BenchResult) -> [String; 2] {
    let m = &r.machine;
    let s = &r.settings;
    [
        format!(
            "Machine: {} · {} cores · Linux {} · {} · RLIMIT_NOFILE {} · load average at start {}",
            m.cpu_model, m.cores, m.kernel, m.pinning, m.nofile_limit, m.load_average
        ),
        format!(
            "Medians of {} round(s){}. Round trips: {} connections × {}-byte binary messages, {:.0} s measured after {:.1} s warm-up. \
             Idle: {} connections over {} source addresses. Handshakes: {} concurrent loops for {:.0} s.",
            s.rounds,
            if s.quick {
                " (--quick smoke run: too short to quote)"
            } else {
                ""
            },
            s.rtt_connections,
            s.message_bytes,
            s.duration_s,
            s.warmup_s,
            thousands(s.idle_connections as f64),
            s.source_addresses,
            s.churn_concurrency,
            s.duration_s,
        ),
    ]
}

pub fn markdown(r: &BenchResult) -> String {
    let mut out = String::from("## Benchmark: ws-echo vs. anchors, behind each data plane, capacity\n\n");
    for line in preamble(r) {
        let _ = writeln!(out, "{}\n", md_escape(&line));
    }
    for t in tables(r) {
        out.push_str(&t.markdown());
        out.push('\n');
    }
    if !r.proxies.is_empty() {
        out.push_str("Latency percentiles per data plane: [bench-latency.svg](bench-latency.svg)\n\n");
    }
    if let Some(d) = &r.dataplanes {
        out.push_str("## Capacity per data plane\n\n");
        out.push_str(&crate::dataplanes::markdown(d));
        out.push('\n');
    }
    if let Some(storms) = &r.storms {
        let _ = writeln!(out, "## Reconnect storms\n\n{}\n", md_escape(&storms.policy_doc));
        for t in crate::storm::tables(storms) {
            out.push_str(&t.markdown());
            out.push('\n');
        }
        out.push_str("Clients back over time: [bench-storms.svg](bench-storms.svg)\n\n");
    }
    if !r.notes.is_empty() {
        out.push_str("Notes:\n\n");
        for n in &r.notes {
            let _ = writeln!(out, "- {}", md_escape(n));
        }
    }
    out
}

/// The `<section>` the e2e report embeds: preamble, tables, chart, notes.
pub fn fragment_html(r: &BenchResult) -> String {
    let mut out = String::from(
        "<section id=\"bench\">\n<h2>Benchmark: ws-echo vs. anchors, behind each data plane, capacity</h2>\n",
    );
    for line in preamble(r) {
        let _ = writeln!(out, "<p>{}</p>", html_escape(&line));
    }
    for t in tables(r) {
        out.push_str(&t.html());
    }
    if let Some(svg) = latency_svg(r) {
        out.push_str("<h3>Latency percentiles per data plane</h3>\n");
        out.push_str(&svg);
        out.push('\n');
    }
    if let Some(d) = &r.dataplanes {
        out.push_str("<h3>Capacity per data plane</h3>\n");
        for t in crate::dataplanes::tables(d) {
            out.push_str(&t.html());
        }
        if !d.notes.is_empty() {
            out.push_str("<ul>\n");
            for n in &d.notes {
                let _ = writeln!(out, "<li>{}</li>", html_escape(n));
            }
            out.push_str("</ul>\n");
        }
    }
    if let Some(storms) = &r.storms {
        let _ = writeln!(
            out,
            "<h3>Reconnect storms</h3>\n<p>{}</p>",
            html_escape(&storms.policy_doc)
        );
        for t in crate::storm::tables(storms) {
            out.push_str(&t.html());
        }
        if let Some(svg) = crate::storm::svg(storms) {
            out.push_str(&svg);
            out.push('\n');
        }
    }
    if !r.notes.is_empty() {
        out.push_str("<ul>\n");
        for n in &r.notes {
            let _ = writeln!(out, "<li>{}</li>", html_escape(n));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
    out
}

/// The chart's series: ws-echo direct (median over every data plane's baseline), then each data plane.
pub fn latency_series(r: &BenchResult) -> Vec<(String, Latency)> {
    if r.proxies.is_empty() {
        return Vec::new();
    }
    let direct: Vec<Latency> = r.proxies.iter().map(|p| p.direct).collect();
    let mut series = vec![("direct".to_owned(), Latency::median_of(&direct))];
    series.extend(r.proxies.iter().map(|p| (p.controller.clone(), p.proxied)));
    series
}

pub fn latency_svg(r: &BenchResult) -> Option<String> {
    let series = latency_series(r);
    (!series.is_empty()).then(|| svg_chart(&series))
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;
const COLORS: [&str; 6] = ["#444444", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"];

/// Lines of latency (log scale, µs) over the percentiles, one per series, with a legend.
pub fn svg_chart(series: &[(String, Latency)]) -> String {
    let values = series
        .iter()
        .flat_map(|(_, l)| l.points().map(|(_, v)| v))
        .filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo_exp, hi_exp) = if lo > hi {
        (0, 1)
    } else {
        let lo_exp = lo.log10().floor() as i32;
        (lo_exp, (hi.log10().ceil() as i32).max(lo_exp + 1))
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| {
        let v = v.max(10f64.powi(lo_exp));
        TOP + plot_h * (1.0 - (v.log10() - f64::from(lo_exp)) / f64::from(hi_exp - lo_exp))
    };
    let labels = Latency::default().points().map(|(label, _)| label);
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / labels.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"round-trip latency percentiles per data plane\">\n"
    );
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for e in lo_exp..=hi_exp {
        let v = 10f64.powi(e);
        let yy = y(v);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            thousands(v)
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            x(i),
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">round trip, µs (log)</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (n, (name, lat)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let points: Vec<String> = lat
            .points()
            .iter()
            .enumerate()
            .map(|(i, (_, v))| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            html_escape(name),
            points.join(" ")
        );
        for (i, (label, v)) in lat.points().iter().enumerate() {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{} {label}: {} µs</title></circle>",
                x(i),
                y(*v),
                html_escape(name),
                thousands(*v)
            );
        }
        let ly = TOP + 10.0 + 18.0 * n as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            html_escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn signed(v: f64) -> String {
    if v.round() > 0.0 {
        format!("+{}", thousands(v))
    } else {
        thousands(v)
    }
}

fn times(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}×"))
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}%"))
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::*;

    fn lat(base: f64) -> Latency {
        Latency {
            p50_us: base,
            p90_us: base * 2.0,
            p99_us: base * 4.0,
            p999_us: base * 8.0,
        }
    }

    fn echo_round(msgs: f64, p99: f64, kib: Option<f64>, hs: f64) -> EchoRound {
        EchoRound {
            msgs_per_sec: msgs,
            latency: Latency {
                p99_us: p99,
                ..lat(p99 / 4.0)
            },
            kib_per_idle_connection: kib,
            idle_open: 10_000,
            handshakes_per_sec: hs,
            generator_cpu_percent: Some(61.0),
            server_cpu_percent: Some(99.0),
            churn_generator_cpu_percent: Some(98.0),
            churn_server_cpu_percent: Some(70.0),
            server_cpu_us_per_handshake: Some(45.0),
        }
    }

    fn sample() -> BenchResult {
        BenchResult {
            started_unix: 0,
            machine: Machine {
                cpu_model: "Test CPU <x86>".into(),
                cores: 2,
                kernel: "6.1.0".into(),
                pinning: "server on core 0, generator on core 1 (taskset)".into(),
                nofile_limit: 20_000,
                load_average: "0.10 0.20 0.30".into(),
            },
            settings: Settings {
                rounds: 3,
                duration_s: 10.0,
                warmup_s: 2.0,
                rtt_connections: 100,
                message_bytes: 64,
                idle_connections: 10_000,
                churn_concurrency: 50,
                source_addresses: 8,
                capacity_target: 50_000,
                capacity_per_process: None,
                quick: false,
            },
            echo: vec![
                EchoServer::new(
                    "ws-echo",
                    "ws-echo".into(),
                    vec![echo_round(130_000.0, 1000.0, Some(5.5), 15_000.0)],
                ),
                EchoServer::new(
                    "tokio-tungstenite",
                    "plain tokio-tungstenite | default".into(),
                    vec![echo_round(100_000.0, 1250.0, Some(130.5), 16_000.0)],
                ),
            ],
            proxies: vec![ProxyFigures::new(
                "nginx",
                "nginx/1.31.3".into(),
                vec![ProxyRound {
                    direct_msgs_per_sec: 100_000.0,
                    direct: lat(500.0),
                    proxied_msgs_per_sec: 50_000.0,
                    proxied: lat(900.0),
                }],
            )],
            capacity: Some(Capacity {
                target: 50_000,
                attempted: 50_000,
                connected: 49_990,
                held: 49_990,
                generator_open_at_end: Some(49_990),
                failed: 10,
                server_processes: 3,
                per_process_limit: Some(19_744),
                source_addresses: 9,
                ramp_s: 4.2,
                server_rss_before_kib: Some(10_000),
                server_rss_after_kib: Some(110_000),
                kib_per_connection: Some(5.1),
                limited_by: None,
            }),
            dataplanes: None,
            storms: None,
            notes: vec!["a <note>".into()],
        }
    }

    #[track_caller]
    fn check_contains(text: &str, needles: &[&str]) {
        for n in needles {
            assert!(text.contains(n), "missing {n:?} in:\n{text}");
        }
    }

    #[test]
    fn markdown_puts_ratios_next_to_the_anchor_figures() {
        let md = markdown(&sample());
        check_contains(
            &md,
            &[
                "| ws-echo | 130,000 | 1.30× | 1,000 | 0.80× | 5.5 | 0.04× | 15,000 | 0.94× |",
                "| ws-echo | 61% | 99% | 98% | 70% | 45.0 |",
                "| plain tokio-tungstenite \\| default | 100,000 | 1.00× |",
                "| nginx (nginx/1.31.3) | 100,000 | 50,000 | 0.50× | 500 | 900 | +400 | 2,000 | 3,600 | +1,600 |",
                "| 50,000 | 49,990 | 10 | 3 (≤ 19,744 each) | 9 | 4.2 | 10,000 → 110,000 | 5.1 | - |",
                "Test CPU <x86> · 2 cores · Linux 6.1.0",
                "load average at start 0.10 0.20 0.30",
                "- a <note>",
            ],
        );
        assert!(md.contains("|---|---:|"), "{md}");
    }

    #[test]
    fn html_fragment_is_one_escaped_section_with_the_chart() {
        let html = fragment_html(&sample());
        assert!(html.starts_with("<section id=\"bench\">"), "{html}");
        assert!(html.trim_end().ends_with("</section>"), "{html}");
        check_contains(
            &html,
            &["Test CPU &lt;x86&gt;", "<li>a &lt;note&gt;</li>", "<svg ", "</svg>"],
        );
        assert!(!html.contains("<note>"));
        assert_eq!(html.matches("<table>").count(), 4);
    }

    #[test]
    fn chart_draws_one_line_per_series_with_higher_latency_higher_up() {
        let series = vec![("direct".to_owned(), lat(100.0)), ("traefik".to_owned(), lat(300.0))];
        let svg = svg_chart(&series);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        let ys = |name: &str| -> Vec<f64> {
            let line = svg
                .lines()
                .find(|l| l.contains(&format!("data-series=\"{name}\"")))
                .unwrap_or_else(|| panic!("no line for {name}"));
            let points = line.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            points
                .split(' ')
                .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
                .collect()
        };
        let (direct, traefik) = (ys("direct"), ys("traefik"));
        // SVG y grows downwards: larger percentiles and slower paths sit higher, i.e. smaller y.
        assert!(direct.windows(2).all(|w| w[1] < w[0]), "{direct:?}");
        assert!(
            traefik.iter().zip(&direct).all(|(t, d)| t < d),
            "{traefik:?} vs {direct:?}"
        );
        assert!(
            direct
                .iter()
                .chain(&traefik)
                .all(|y| (TOP..=HEIGHT - BOTTOM).contains(y))
        );
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(126_639.4), "126,639");
        assert_eq!(thousands(-1_234_567.0), "-1,234,567");
        assert_eq!(thousands(f64::NAN), "-");
    }
}

//! The latency/throughput-over-time plot, written as SVG by hand: latency of every completed
//! operation (log scale) above, acknowledged operations per second below, fault windows shaded.

use std::fmt::Write;

use crate::history::{pair, Event, Kind};
use crate::nemesis::Window;

const W: f64 = 1000.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const LAT_TOP: f64 = 30.0;
const LAT_H: f64 = 280.0;
const TP_TOP: f64 = 350.0;
const TP_H: f64 = 120.0;
const H: f64 = 500.0;

fn family_color(f: &str) -> &'static str {
    match f {
        "kill" => "#d62728",
        "pause" => "#9467bd",
        "partition" => "#1f77b4",
        "skew" => "#8c564b",
        "member" => "#e377c2",
        "disk" => "#7f7f7f",
        _ => "#bcbd22",
    }
}

/// Renders the plot.
pub fn svg(events: &[Event], timeline: &[Window], title: &str) -> String {
    let ops = pair(events);
    let end_ns = events.iter().map(|e| e.time).max().unwrap_or(1).max(1);
    let secs = end_ns as f64 / 1e9;
    let x = |ns: u64| LEFT + (W - LEFT - RIGHT) * (ns as f64 / end_ns as f64);
    // Latency axis: 0.1 ms .. 10 s, log scale.
    let (lo, hi) = (-1.0f64, 4.0f64);
    let y_lat = |ms: f64| {
        LAT_TOP + LAT_H * (1.0 - ((ms.max(0.1).log10() - lo) / (hi - lo)).clamp(0.0, 1.0))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="13">{}</text>"#,
        escape(title)
    );
    for w in timeline {
        let (a, b) = (x(w.start), x(w.stop.unwrap_or(end_ns)));
        let c = family_color(&w.fault);
        let _ = write!(
            s,
            r#"<rect x="{a:.1}" y="{LAT_TOP}" width="{:.1}" height="{:.1}" fill="{c}" fill-opacity="0.15"><title>{}</title></rect>"#,
            (b - a).max(1.0),
            TP_TOP + TP_H - LAT_TOP,
            escape(&format!("{} {}", w.fault, w.detail))
        );
        let _ = write!(
            s,
            r#"<text x="{a:.1}" y="{:.1}" fill="{c}" font-size="9">{}</text>"#,
            LAT_TOP - 2.0,
            w.fault
        );
    }
    // Axes and grid.
    for p in lo as i32..=hi as i32 {
        let ms = 10f64.powi(p);
        let y = y_lat(ms);
        let label = if ms >= 1000.0 {
            format!("{}s", ms / 1000.0)
        } else {
            format!("{ms}ms")
        };
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="4" y="{:.1}">{label}</text>"##,
            W - RIGHT,
            y + 4.0
        );
    }
    let step = (secs / 10.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= secs {
        let xx = x((t * 1e9) as u64);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{LAT_TOP}" y2="{:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}">{t}s</text>"##,
            TP_TOP + TP_H,
            xx - 6.0,
            TP_TOP + TP_H + 14.0
        );
        t += step;
    }
    // Latency points, thinned to keep the file small.
    let done: Vec<_> = ops.iter().filter(|o| o.complete.is_some()).collect();
    let every = (done.len() / 20_000).max(1);
    for o in done.iter().step_by(every) {
        let Some(c) = o.complete else { continue };
        let ms = c.time.saturating_sub(o.invoke.time) as f64 / 1e6;
        let color = match c.kind {
            Kind::Ok => "#2ca02c",
            Kind::Fail => "#1f77b4",
            _ => "#ff7f0e",
        };
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.3" fill="{color}" fill-opacity="0.6"/>"#,
            x(c.time),
            y_lat(ms)
        );
    }
    // Throughput: acknowledged operations per second.
    let buckets = secs.ceil().max(1.0) as usize;
    let mut per_sec = vec![0u64; buckets];
    for o in &ops {
        if let Some(c) = o.complete.filter(|c| c.kind == Kind::Ok) {
            let b = ((c.time as f64 / 1e9) as usize).min(buckets - 1);
            per_sec[b] += 1;
        }
    }
    let max = per_sec.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = (W - LEFT - RIGHT) / buckets as f64;
    for (i, n) in per_sec.iter().enumerate() {
        let h = TP_H * (*n as f64 / max);
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#555"/>"##,
            LEFT + bw * i as f64,
            TP_TOP + TP_H - h,
            (bw - 1.0).max(0.5)
        );
    }
    let _ = write!(
        s,
        r#"<text x="4" y="{:.1}">{max} ok/s</text><text x="4" y="{:.1}">0</text>"#,
        TP_TOP + 8.0,
        TP_TOP + TP_H
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}">latency: ok (green), info (orange), fail (blue); below: ok ops per second</text>"##,
        LEFT,
        H - 6.0
    );
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_plot_shades_each_fault_window_and_draws_each_completed_operation() {
        let ev = |index, process, kind, time| Event {
            index,
            process,
            kind,
            f: "read".into(),
            key: None,
            value: Value::Null,
            time,
            node: None,
            error: None,
        };
        let events = vec![
            ev(0, 0, Kind::Invoke, 0),
            ev(1, 0, Kind::Ok, 2_000_000),
            ev(2, 1, Kind::Invoke, 1_000_000_000),
            ev(3, 1, Kind::Info, 3_000_000_000),
        ];
        let timeline = vec![Window {
            fault: "kill".into(),
            detail: Value::Null,
            start: 500_000_000,
            stop: Some(1_500_000_000),
        }];
        let svg = svg(&events, &timeline, "t <1>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(svg.matches("fill-opacity=\"0.15\"").count(), 1);
        assert!(svg.contains("t &lt;1&gt;"));
    }
}

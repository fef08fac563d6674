//! Inline SVG charts: a histogram and a line over days with threshold lines. Drawn on the
//! server, so the dashboard needs no script and no network.

use std::fmt::Write;

use super::html::escape;

const W: f64 = 320.0;
const H: f64 = 120.0;
const PAD: f64 = 24.0;

/// Bars for `(lower, upper, count)` bins with the range written under them, or, when
/// `categories` names each bar, with its name under it.
pub fn histogram(feature: &str, bins: &[(f64, f64, u64)], categories: &[String]) -> String {
    let max = bins.iter().map(|b| b.2).max().unwrap_or(0).max(1) as f64;
    let width = (W - 2.0 * PAD) / bins.len().max(1) as f64;
    let mut out = format!(
        "<svg class=\"histogram\" role=\"img\" aria-label=\"histogram of {f}\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\"><title>histogram of {f}</title>",
        f = escape(feature)
    );
    for (i, (lower, upper, count)) in bins.iter().enumerate() {
        let h = (H - 2.0 * PAD) * (*count as f64) / max;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4f6bed\">\
             <title>[{lower:.4}, {upper:.4}): {count}</title></rect>",
            PAD + i as f64 * width,
            H - PAD - h,
            (width - 1.0).max(1.0)
        );
    }
    for (i, name) in categories.iter().enumerate() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
            PAD + (i as f64 + 0.5) * width,
            H - 8.0,
            escape(name)
        );
    }
    if let (true, Some(first), Some(last)) = (categories.is_empty(), bins.first(), bins.last()) {
        let _ = write!(
            out,
            "<text x=\"{PAD}\" y=\"{}\" font-size=\"10\">{:.3}</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:.3}</text>",
            H - 8.0,
            first.0,
            W - PAD,
            H - 8.0,
            last.1
        );
    }
    out.push_str("</svg>");
    out
}

/// A line of `(label, value)` points with dashed lines at the warning and drift levels.
pub fn drift_line(feature: &str, points: &[(String, f64)], warning: f64, drift: f64) -> String {
    let top = points.iter().map(|p| p.1).fold(drift * 1.25, f64::max);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (points.len().max(2) - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v / top).clamp(0.0, 1.0);
    let mut out = format!(
        "<svg class=\"drift\" role=\"img\" aria-label=\"PSI over time of {f}\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\"><title>PSI over time of {f}</title>",
        f = escape(feature)
    );
    for (level, colour, name) in [(warning, "#9a6700", "warning"), (drift, "#cf222e", "drift")] {
        let _ = write!(
            out,
            "<line x1=\"{PAD}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\" text-anchor=\"end\">{name} {level}</text>",
            W - PAD,
            W - PAD,
            y(level) - 2.0,
            y = y(level)
        );
    }
    let path: Vec<String> = points.iter().enumerate().map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.1))).collect();
    let _ =
        write!(out, "<polyline fill=\"none\" stroke=\"#4f6bed\" stroke-width=\"2\" points=\"{}\"/>", path.join(" "));
    for (i, (label, value)) in points.iter().enumerate() {
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#4f6bed\"><title>{}: PSI {value:.4}</title></circle>",
            x(i),
            y(*value),
            escape(label)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_one_mark_per_bin_and_point_and_both_thresholds() {
        let h = histogram("x<y", &[(0.0, 1.0, 3), (1.0, 2.0, 0), (2.0, 3.0, 6)], &[]);
        assert_eq!(h.matches("<rect").count(), 3);
        assert!(h.contains("x&lt;y") && h.starts_with("<svg") && h.ends_with("</svg>"));
        let l = drift_line("f", &[("d1".into(), 0.0), ("d2".into(), 0.5)], 0.1, 0.25);
        assert_eq!(l.matches("<circle").count(), 2);
        assert!(l.contains("warning 0.1") && l.contains("drift 0.25"));
        assert_eq!(histogram("empty", &[], &[]).matches("<rect").count(), 0);
        let c = histogram("city", &[(0.0, 1.0, 2), (1.0, 2.0, 1)], &["Porto".into(), "<Faro>".into()]);
        assert!(c.contains(">Porto</text>") && c.contains("&lt;Faro&gt;"));
    }
}

//! The benchmark's outputs: the table on stdout, `docs/PERFORMANCE.md` and the SVG plots of the
//! latency distributions (empirical CDFs, log-scaled time axis).

use crate::stats::{fmt_us, Series};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One target of the issue, checked against figures measured in the same run.
pub struct Target {
    /// The goal as the issue states it.
    pub goal: String,
    /// What was measured (a ratio or a figure), or why nothing was.
    pub measured: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

impl Target {
    /// A ratio target: `value / base ≤ limit`.
    pub fn ratio(goal: &str, value: f64, base: f64, limit: f64) -> Self {
        let r = value / base;
        let measured = if r <= limit {
            format!("{r:.2}×")
        } else {
            format!("{r:.2}× (missed by {:.1}×)", r / limit)
        };
        Self {
            goal: goal.into(),
            measured,
            met: Some(r <= limit),
        }
    }

    /// Not measured, with the reason.
    pub fn unmeasured(goal: &str, why: &str) -> Self {
        Self {
            goal: goal.into(),
            measured: why.into(),
            met: None,
        }
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        }
    }
}

/// A table of series: name, n, median, p99, median relative to `base` (index into `rows`).
pub fn series_table(rows: &[Series], base: Option<usize>) -> String {
    let mut s =
        String::from("| | runs | median | p99 | median vs baseline |\n|---|---:|---:|---:|---:|\n");
    for r in rows {
        let rel = match base {
            Some(b) if rows[b].median() > 0.0 => format!("{:.2}×", r.median() / rows[b].median()),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.name,
            r.us.len(),
            fmt_us(r.median()),
            fmt_us(r.p99()),
            rel
        );
    }
    s
}

/// The targets table.
pub fn targets_table(targets: &[Target]) -> String {
    let mut s = String::from("| target | measured | verdict |\n|---|---|---|\n");
    for t in targets {
        let _ = writeln!(s, "| {} | {} | {} |", t.goal, t.measured, t.verdict());
    }
    s
}

/// Writes an empirical-CDF plot of `series` to `path`.
pub fn cdf_svg(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let all = series.iter().flat_map(|s| s.us.iter().copied());
    let lo = all.clone().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = all.fold(0.0, f64::max).max(lo * 2.0);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0f64..1f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale)")
        .y_desc("fraction of runs ≤ x")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let n = s.us.len() as f64;
        let points =
            s.us.iter()
                .enumerate()
                .map(|(k, &v)| (v, (k + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

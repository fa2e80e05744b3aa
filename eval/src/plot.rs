//! The routing evaluation's PNG: quality against cost, the router's curve and every
//! baseline. Text uses an embedded DejaVu Sans, so no system fonts are needed.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::route_eval::RoutingReport;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    path: String,
    reason: String,
}

/// Draws `report` to a 1000×700 PNG at `path`.
pub fn plot_routing(report: &RoutingReport, path: &Path) -> Result<(), PlotError> {
    draw(report, path).map_err(|reason| PlotError {
        path: path.display().to_string(),
        reason,
    })
}

fn draw(report: &RoutingReport, path: &Path) -> Result<(), String> {
    // Registering twice is harmless; the font is static.
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded font does not load".to_owned())?;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;

    let b = &report.baselines;
    let costs = b
        .singles
        .iter()
        .map(|s| s.cost)
        .chain(report.curve.iter().map(|p| p.cost))
        .chain([b.oracle.cost]);
    let qualities = b
        .singles
        .iter()
        .map(|s| s.quality)
        .chain(report.curve.iter().map(|p| p.quality))
        .chain(b.knn.curve.iter().map(|p| p.quality))
        .chain([b.oracle.quality]);
    let (x0, x1) = bounds(costs);
    let (y0, y1) = bounds(qualities);
    let pad_x = (x1 - x0) * 0.05;
    let pad_y = (y1 - y0) * 0.08;
    let title = format!(
        "Quality vs cost on {} test prompts — router AIQ {:.4}, kNN {:.4}, best single {:.4}",
        report.test_prompts, report.aiq.value, b.knn.aiq.value, b.best_single.aiq
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad_x)..(x1 + pad_x), (y0 - pad_y)..(y1 + pad_y))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("mean cost per prompt (USD)")
        .y_desc("mean quality")
        .x_label_formatter(&|x| format!("{x:.5}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;

    let line = |c: &[crate::route_eval::CurvePoint]| -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = c.iter().map(|p| (p.cost, p.quality)).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    };
    chart
        .draw_series(LineSeries::new(line(&report.curve), BLUE.stroke_width(3)))
        .map_err(|x| e(&x))?
        .label("Switchyard router (policy sweep)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(line(&b.knn.curve), GREEN.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label(format!("kNN router (k={})", b.knn.k))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    let cheapest = b
        .singles
        .iter()
        .min_by(|a, c| a.cost.total_cmp(&c.cost))
        .map_or((0.0, 0.0), |s| (s.cost, s.quality));
    chart
        .draw_series(LineSeries::new(
            [cheapest, (b.strongest.cost, b.strongest.quality)],
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(|x| e(&x))?
        .label("random mixing")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    for s in &b.singles {
        chart
            .draw_series(std::iter::once(Circle::new(
                (s.cost, s.quality),
                5,
                RED.filled(),
            )))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(Text::new(
                short(&s.model),
                (s.cost, s.quality),
                ("sans-serif", 12),
            )))
            .map_err(|x| e(&x))?;
    }
    chart
        .draw_series(std::iter::once(TriangleMarker::new(
            (b.oracle.cost, b.oracle.quality),
            8,
            MAGENTA.filled(),
        )))
        .map_err(|x| e(&x))?
        .label("oracle")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, MAGENTA.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// The last path segment of a model id, for labels.
fn short(model: &str) -> String {
    model.rsplit('/').next().unwrap_or(model).to_owned()
}

/// Draws the cache evaluation's precision–recall curves (one per method) to a PNG.
pub fn plot_cache(report: &crate::cache_eval::CacheReport, path: &Path) -> Result<(), PlotError> {
    draw_cache(report, path).map_err(|reason| PlotError {
        path: path.display().to_string(),
        reason,
    })
}

fn draw_cache(report: &crate::cache_eval::CacheReport, path: &Path) -> Result<(), String> {
    use switchyard_cache::Method;
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded font does not load".to_owned())?;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let r = &report.recommended;
    let title = format!(
        "Cache hits on {} pairs: recall vs precision (recommended {} @ {:.2}: P {:.3}, R {:.3})",
        report.pairs,
        r.method.name(),
        r.threshold,
        r.precision,
        r.recall
    );
    let y0 = report
        .rows
        .iter()
        .filter(|r| r.hits > 0)
        .map(|r| r.precision)
        .fold(1.0f64, f64::min)
        .min(report.target_precision)
        - 0.02;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0f64..1.0f64, y0.max(0.0)..1.005f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("recall: share of true duplicates served from the cache")
        .y_desc("precision: share of hits that were right")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    let colours = [RED, GREEN, BLUE];
    for (m, colour) in Method::ALL.into_iter().zip(colours) {
        let mut pts: Vec<(f64, f64)> = report
            .rows
            .iter()
            .filter(|r| r.method == m && r.hits > 0)
            .map(|r| (r.recall, r.precision))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let label = match m {
            Method::Cosine => "cosine only",
            Method::Guard => "cosine + lexical guard",
            Method::Verifier => "guard + learned verifier",
        };
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .draw_series(LineSeries::new(
            [
                (0.0, report.target_precision),
                (1.0, report.target_precision),
            ],
            BLACK.mix(0.4),
        ))
        .map_err(|x| e(&x))?
        .label(format!("target precision {:.2}", report.target_precision))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .draw_series(std::iter::once(Circle::new(
            (r.recall, r.precision),
            6,
            BLACK.filled(),
        )))
        .map_err(|x| e(&x))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Draws a replay's cumulative hit rate against the number of queries to a PNG.
pub fn plot_hit_rate(points: &[(f64, f64)], path: &Path) -> Result<(), PlotError> {
    let draw = || -> Result<(), String> {
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the embedded font does not load".to_owned())?;
        let e = |x: &dyn std::fmt::Display| x.to_string();
        let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let n = points.last().map_or(1.0, |p| p.0).max(1.0);
        let top = points.iter().map(|p| p.1).fold(0.05f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Cumulative cache hit rate over the replayed queries",
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n, 0.0..top.min(1.0))
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("queries replayed")
            .y_desc("hit rate so far")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                BLUE.stroke_width(2),
            ))
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    };
    draw().map_err(|reason| PlotError {
        path: path.display().to_string(),
        reason,
    })
}

/// One line of a learning curve: a name and (requests served, value) points; a single
/// point is drawn as a horizontal reference line.
#[derive(Debug, Clone)]
pub struct CurveLine {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws the learning loop's curve: the serving router's held-out AIQ after each round,
/// with the reference routers as horizontal lines.
pub fn plot_learning(lines: &[CurveLine], title: &str, path: &Path) -> Result<(), PlotError> {
    let draw = || -> Result<(), String> {
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the embedded font does not load".to_owned())?;
        let e = |x: &dyn std::fmt::Display| x.to_string();
        let root = BitMapBackend::new(path, (1000, 650)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let all = lines.iter().flat_map(|l| l.points.iter());
        let n = all.clone().map(|p| p.0).fold(1.0f64, f64::max);
        let lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = all.map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.1).max(0.005);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, (lo - pad)..(hi + pad))
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("requests served")
            .y_desc("held-out AIQ")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        for (i, line) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = match line.points.as_slice() {
                [(_, y)] => vec![(0.0, *y), (n, *y)],
                ps => ps.to_vec(),
            };
            let width = if line.points.len() > 1 { 3 } else { 1 };
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
                .map_err(|x| e(&x))?
                .label(line.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            if line.points.len() > 1 {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|x| e(&x))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    };
    draw().map_err(|reason| PlotError {
        path: path.display().to_string(),
        reason,
    })
}

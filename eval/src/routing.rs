//! Routing metrics (issue 4, in progress): RouterBench's AIQ over a cost–quality curve and
//! RouteLLM's PGR / APGR / CPT for a strong/weak pair. Pure functions over operating points;
//! the sweep that produces the points lives with the scorer and policy.

/// One operating point of a router (or a single model): mean cost and mean quality.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    pub cost: f64,
    pub quality: f64,
}

/// The non-decreasing upper convex hull of `points`, sorted by cost: the best quality
/// reachable at each cost by mixing operating points.
pub fn nondecreasing_hull(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.cost.is_finite() && p.quality.is_finite())
        .collect();
    sorted.sort_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(b.quality.total_cmp(&a.quality))
    });
    let mut hull: Vec<Point> = Vec::new();
    for p in sorted {
        // Same cost: the first (best) one wins.
        if hull.last().is_some_and(|l| l.cost == p.cost) {
            continue;
        }
        // Pop while the last point lies on or below the line from its predecessor to p.
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            let cross = (b.cost - a.cost) * (p.quality - a.quality)
                - (b.quality - a.quality) * (p.cost - a.cost);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    // Non-decreasing: nothing after the best quality is worth its cost.
    if let Some(best) = hull
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.quality.total_cmp(&b.1.quality).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
    {
        hull.truncate(best + 1);
    }
    hull
}

/// RouterBench's Average Improvement in Quality: the area under the non-decreasing convex
/// hull of the router's points, with cost normalised to [0, 1] over `[cost_min, cost_max]`
/// (the single models' range). Below the router's cheapest point quality counts as 0;
/// beyond its best point the hull stays flat.
pub fn aiq(points: &[Point], cost_min: f64, cost_max: f64) -> f64 {
    let span = cost_max - cost_min;
    if span <= 0.0 {
        return points.iter().map(|p| p.quality).fold(0.0, f64::max);
    }
    let hull: Vec<Point> = nondecreasing_hull(points)
        .into_iter()
        .map(|p| Point {
            cost: (p.cost - cost_min) / span,
            quality: p.quality,
        })
        .collect();
    let Some(last) = hull.last().copied() else {
        return 0.0;
    };
    let mut area = 0.0;
    for w in hull.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (x0, x1) = (a.cost.clamp(0.0, 1.0), b.cost.clamp(0.0, 1.0));
        if x1 <= x0 {
            continue;
        }
        let at = |x: f64| a.quality + (b.quality - a.quality) * (x - a.cost) / (b.cost - a.cost);
        area += (x1 - x0) * (at(x0) + at(x1)) / 2.0;
    }
    area + (1.0 - last.cost.clamp(0.0, 1.0)) * last.quality
}

/// Performance Gap Recovered: where `quality` sits between the weak and strong model.
pub fn pgr(quality: f64, weak: f64, strong: f64) -> f64 {
    if (strong - weak).abs() < f64::EPSILON {
        return 0.0;
    }
    (quality - weak) / (strong - weak)
}

/// A curve of (share of calls to the strong model, PGR), sorted by share, with the
/// all-weak (0, 0) and all-strong (1, 1) ends added.
fn pgr_curve(points: &[(f64, f64)], weak: f64, strong: f64) -> Vec<(f64, f64)> {
    let mut curve: Vec<(f64, f64)> = points
        .iter()
        .map(|&(s, q)| (s.clamp(0.0, 1.0), pgr(q, weak, strong)))
        .collect();
    curve.push((0.0, 0.0));
    curve.push((1.0, 1.0));
    curve.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    curve.dedup_by(|b, a| a.0 == b.0);
    curve
}

/// Average PGR over strong-call shares 0–100% (trapezoids over the sweep's points, given
/// as (strong share, mean quality)).
pub fn apgr(points: &[(f64, f64)], weak: f64, strong: f64) -> f64 {
    pgr_curve(points, weak, strong)
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Call-Performance Threshold: the smallest strong-call share whose PGR reaches `target`
/// (e.g. 0.5 for CPT(50%)), interpolating linearly between sweep points.
pub fn cpt(points: &[(f64, f64)], weak: f64, strong: f64, target: f64) -> Option<f64> {
    let curve = pgr_curve(points, weak, strong);
    if curve[0].1 >= target {
        return Some(curve[0].0);
    }
    curve.windows(2).find_map(|w| {
        let ((s0, p0), (s1, p1)) = (w[0], w[1]);
        (p1 >= target && p1 > p0).then(|| s0 + (s1 - s0) * (target - p0) / (p1 - p0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cost: f64, quality: f64) -> Point {
        Point { cost, quality }
    }

    #[test]
    fn hull_drops_dominated_and_decreasing_points() {
        let hull = nondecreasing_hull(&[
            p(0.0, 0.5),
            p(0.5, 0.55),
            p(1.0, 0.9),
            p(2.0, 0.8),
            p(0.5, 0.4),
        ]);
        assert_eq!(hull, vec![p(0.0, 0.5), p(1.0, 0.9)]);
    }

    #[test]
    fn aiq_of_single_models_and_of_a_router() {
        // Two single models: cheap 0.5 at cost 0, expensive 0.9 at cost 1. Random mixing
        // traces the line between them: area = (0.5 + 0.9) / 2.
        let singles = [p(0.0, 0.5), p(1.0, 0.9)];
        assert!((aiq(&singles, 0.0, 1.0) - 0.7).abs() < 1e-12);
        // A router reaching 0.9 at a fifth of the cost beats it.
        let router = [p(0.0, 0.5), p(0.2, 0.9), p(1.0, 0.9)];
        let a = aiq(&router, 0.0, 1.0);
        assert!((a - (0.2 * 0.7 + 0.8 * 0.9)).abs() < 1e-12, "{a}");
        // A router that starts above the cheapest cost gets nothing below its first point.
        assert!((aiq(&[p(0.5, 0.8)], 0.0, 1.0) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn routellm_metrics() {
        assert!((pgr(0.7, 0.5, 0.9) - 0.5).abs() < 1e-12);
        // Mixing at random: PGR equals the strong share, APGR 0.5, CPT(50%) = 50%.
        let random = [(0.25, 0.6), (0.5, 0.7), (0.75, 0.8)];
        assert!((apgr(&random, 0.5, 0.9) - 0.5).abs() < 1e-12);
        assert!((cpt(&random, 0.5, 0.9, 0.5).unwrap() - 0.5).abs() < 1e-12);
        // A good router recovers 80% of the gap with 20% strong calls.
        let good = [(0.2, 0.82), (0.5, 0.88)];
        assert!(apgr(&good, 0.5, 0.9) > 0.8);
        assert!((cpt(&good, 0.5, 0.9, 0.8).unwrap() - 0.2).abs() < 1e-12);
        assert!(cpt(&[(0.3, 0.5)], 0.5, 0.9, 1.5).is_none());
    }
}

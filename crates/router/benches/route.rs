//! Scorer + policy for one prompt with 11 candidates (RouterBench's model count), after
//! the embedding: Switchyard's plain-weights path against linfa's own prediction of the
//! same kind of models, side by side, with the ratio printed.
//!
//!     cargo bench -p switchyard-router --bench route
//!
//! Goal (issue 4): ≤ 200 µs for scorer + policy with 11 candidates.

#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark fails loudly and prints its ratio"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use linfa::prelude::*;
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2};
use switchyard_core::policy::{Candidate, Constraints, Policy, decide};
use switchyard_core::pricing::PriceTable;
use switchyard_core::{EncoderInfo, TaskClass, Truncation};
use switchyard_scorer::{
    Family, PromptFeatures, QualityConfig, SCORER_FORMAT_VERSION, ScoredModel, Scorer,
    ScorerManifest, TrainingRow, Usage, fit_all,
};

const DIM: usize = 384 + switchyard_scorer::EXTRA_FEATURES;
const MODELS: usize = 11;

/// A deterministic pseudo-random stream.
fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

fn data() -> Vec<TrainingRow> {
    let mut s = 7;
    (0..1500)
        .map(|_| {
            let features: Vec<f64> = (0..DIM).map(|_| lcg(&mut s) * 0.2).collect();
            let scores = (0..MODELS)
                .map(|m| {
                    let z = features[m] * 10.0 + lcg(&mut s);
                    (format!("model-{m:02}"), f64::from(u8::from(z > 0.0)))
                })
                .collect();
            TrainingRow { features, scores }
        })
        .collect()
}

fn route(c: &mut Criterion) {
    let rows = data();
    let config = QualityConfig {
        family: Family::Logistic { alpha: 1.0 },
        ..QualityConfig::default()
    };
    let quality = fit_all(&rows, &config).expect("fits");
    let mut usage = Usage::default();
    usage.cost_usd.add(TaskClass::Chat, 0.001);
    let models: BTreeMap<String, ScoredModel> = quality
        .into_iter()
        .map(|(m, q)| {
            (
                m,
                ScoredModel {
                    quality: q,
                    usage: usage.clone(),
                },
            )
        })
        .collect();
    let manifest = ScorerManifest {
        format_version: SCORER_FORMAT_VERSION,
        encoder: EncoderInfo {
            id: "bench".into(),
            dim: 384,
            max_tokens: 256,
            weights_sha256: String::new(),
            truncation: Truncation::Head,
        },
        heads_sha256: String::new(),
        feature_dim: DIM,
        quality: config,
        models: BTreeMap::new(),
        training_data: vec![],
        metrics: serde_json::Value::Null,
        created_at: String::new(),
    };
    let scorer = Scorer::new(manifest, None, models);
    let prices = PriceTable::default();
    let prompt = PromptFeatures {
        features: rows[3].features.clone(),
        task: TaskClass::Chat,
    };
    let specs = switchyard_router::known_candidates(&scorer, &prices);
    let policy = Policy::Threshold { tau: 0.6 };
    let constraints = Constraints::default();

    // The peer: linfa's fitted models predicting the same prompt, same policy after.
    let linfa_models: Vec<(String, FittedLogisticRegression<f64, bool>)> = (0..MODELS)
        .map(|m| {
            let name = format!("model-{m:02}");
            let mut x = Array2::zeros((rows.len(), DIM));
            for (r, row) in rows.iter().enumerate() {
                for (c, v) in row.features.iter().enumerate() {
                    x[[r, c]] = *v;
                }
            }
            let y: Array1<bool> = rows.iter().map(|r| r.scores[&name] >= 0.5).collect();
            let fitted = LogisticRegression::default()
                .alpha(1.0)
                .max_iterations(200)
                .fit(&Dataset::new(x, y))
                .expect("linfa fits");
            (name, fitted)
        })
        .collect();

    let switchyard = || {
        let candidates =
            switchyard_router::predict_candidates(&scorer, black_box(&prompt), 40, None, &specs)
                .expect("scores");
        decide(&candidates, &constraints, policy).expect("decides")
    };
    let linfa = || {
        let x =
            Array2::from_shape_vec((1, DIM), black_box(&prompt.features).clone()).expect("shape");
        let candidates: Vec<Candidate> = linfa_models
            .iter()
            .map(|(m, f)| Candidate {
                model: m.clone(),
                quality: f.predict_probabilities(&x)[0],
                cost_usd: 0.001,
                context_window: None,
            })
            .collect();
        decide(&candidates, &constraints, policy).expect("decides")
    };
    c.bench_function("switchyard: scorer + policy, 11 candidates", |b| {
        b.iter(switchyard)
    });
    c.bench_function("peer linfa predict + policy, 11 candidates", |b| {
        b.iter(linfa)
    });

    // Side by side in one loop, interleaved, for the ratio.
    let (mut ours, mut peer) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..2000 {
        let t = Instant::now();
        black_box(switchyard());
        ours += t.elapsed();
        let t = Instant::now();
        black_box(linfa());
        peer += t.elapsed();
    }
    println!(
        "scorer + policy, 11 candidates: switchyard {:.1} µs, linfa predict {:.1} µs per prompt; ratio (linfa / switchyard) {:.2}x",
        ours.as_secs_f64() / 2000.0 * 1e6,
        peer.as_secs_f64() / 2000.0 * 1e6,
        peer.as_secs_f64() / ours.as_secs_f64()
    );
}

criterion_group!(benches, route);
criterion_main!(benches);

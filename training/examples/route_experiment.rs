//! A first end-to-end look at learned routing (issue 4, in progress): train the scorer on
//! the train+validation split of a routing-record file, sweep the threshold policy on the
//! held-out split, and compare AIQ with the single models.
//!
//!     cargo run --release -p switchyard-training --example route_experiment -- RECORDS.jsonl [CACHE_DIR]

#![expect(clippy::print_stdout, reason = "an experiment's output is its result")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::ProgressBar;
use switchyard_core::policy::{Candidate, Constraints, Policy, decide};
use switchyard_core::{DeviceSpec, read_records};
use switchyard_embed::heads::ClassifierHeads;
use switchyard_embed::{ModelSource, SentenceEncoder};
use switchyard_eval::routing::{Point, aiq};
use switchyard_scorer::{QualityScorer, ScorerConfig, TrainingRow, features};
use switchyard_training::cache::EmbeddingCache;
use switchyard_training::data::{Split, embed_all, split_of};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let records_path = PathBuf::from(
        args.get(1)
            .context("usage: route_experiment RECORDS.jsonl [CACHE_DIR]")?,
    );
    let cache_dir = PathBuf::from(args.get(2).map_or(".cache/embeddings", String::as_str));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let encoder = SentenceEncoder::load(
        &ModelSource::Dir(root.join("models/all-MiniLM-L6-v2")),
        DeviceSpec::Cpu,
    )?;
    let heads = ClassifierHeads::load(&root.join("models/classifier"), encoder.info())?;
    let records: Vec<_> = read_records(&records_path)?
        .into_iter()
        .filter(|r| !r.outcomes.is_empty())
        .collect();
    let texts: Vec<&str> = records.iter().map(|r| r.text()).collect();
    let mut cache = EmbeddingCache::open(&cache_dir, encoder.info())?;
    let vectors = embed_all(&texts, &encoder, &mut cache, &ProgressBar::new(0))?;
    let classes = heads.classify(&vectors)?;

    let mut train = Vec::new();
    let mut test = Vec::new();
    for ((record, v), c) in records.iter().zip(&vectors).zip(&classes) {
        let probs: Vec<f32> = c.task_probs.iter().map(|(_, p)| *p).collect();
        let row = TrainingRow {
            features: features(v, &probs, c.difficulty, record.text().len() / 4),
            scores: record
                .outcomes
                .iter()
                .filter_map(|(m, o)| o.score.map(|s| (m.clone(), s)))
                .collect(),
        };
        if split_of(record.text()) == Split::Test {
            test.push((record, row));
        } else {
            train.push((record, row));
        }
    }
    let rows: Vec<TrainingRow> = train.iter().map(|(_, r)| r.clone()).collect();
    let scorer = QualityScorer::fit(&rows, ScorerConfig::default())?;

    // Expected cost per model: its mean cost on the training prompts.
    let mut cost_sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (record, _) in &train {
        for (m, o) in &record.outcomes {
            if let Some(c) = o.cost_usd {
                let e = cost_sum.entry(m.clone()).or_default();
                e.0 += c;
                e.1 += 1;
            }
        }
    }
    let mean_cost: BTreeMap<String, f64> = cost_sum
        .into_iter()
        .map(|(m, (s, n))| (m, s / n as f64))
        .collect();

    // Single models on the test split.
    let mut singles = Vec::new();
    for model in mean_cost.keys() {
        let (mut q, mut c, mut n) = (0.0, 0.0, 0usize);
        for (record, _) in &test {
            if let Some(o) = record.outcomes.get(model) {
                q += o.score.unwrap_or(0.0);
                c += o.cost_usd.unwrap_or(0.0);
                n += 1;
            }
        }
        let point = Point {
            cost: c / n.max(1) as f64,
            quality: q / n.max(1) as f64,
        };
        println!(
            "single {model:<40} cost {:.6} quality {:.4}",
            point.cost, point.quality
        );
        singles.push(point);
    }
    let cost_min = singles.iter().map(|p| p.cost).fold(f64::INFINITY, f64::min);
    let cost_max = singles.iter().map(|p| p.cost).fold(0.0, f64::max);

    // Threshold sweep.
    let mut curve = Vec::new();
    for step in 0..=40 {
        let tau = f64::from(step) / 40.0;
        let (mut q, mut c) = (0.0, 0.0);
        for (record, row) in &test {
            let predicted = scorer.predict(&row.features)?;
            let candidates: Vec<Candidate> = predicted
                .iter()
                .filter(|(m, _)| record.outcomes.contains_key(*m) && mean_cost.contains_key(*m))
                .map(|(m, &quality)| Candidate {
                    model: m.clone(),
                    quality,
                    cost_usd: mean_cost[m],
                    context_window: None,
                })
                .collect();
            let d = decide(
                &candidates,
                &Constraints::default(),
                Policy::Threshold { tau },
            )?;
            let o = &record.outcomes[&d.chosen];
            q += o.score.unwrap_or(0.0);
            c += o.cost_usd.unwrap_or(0.0);
        }
        let n = test.len().max(1) as f64;
        curve.push(Point {
            cost: c / n,
            quality: q / n,
        });
    }
    let best_single = singles
        .iter()
        .map(|p| aiq(&[*p], cost_min, cost_max))
        .fold(0.0, f64::max);
    println!("test prompts {}, train prompts {}", test.len(), train.len());
    println!(
        "AIQ router (threshold sweep) {:.4}",
        aiq(&curve, cost_min, cost_max)
    );
    println!(
        "AIQ single models' hull       {:.4}",
        aiq(&singles, cost_min, cost_max)
    );
    println!("AIQ best single model         {best_single:.4}");
    Ok(())
}

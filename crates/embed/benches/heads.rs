//! Cost of the classifier heads on top of the embedding: one prompt's task + difficulty
//! prediction, next to the embedding itself for scale.
//!
//!     cargo bench -p switchyard-embed --bench heads
//!
//! Uses the committed heads in models/classifier and the fetched encoder.

#![allow(clippy::expect_used, reason = "a benchmark fails loudly")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_core::DeviceSpec;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_embed::{ModelSource, SentenceEncoder};

/// This package's directory: from cargo at run time (the checkout being tested), falling back
/// to the one it was compiled in. A test binary reused from a build in another checkout (a
/// shared CARGO_TARGET_DIR) would otherwise look for the models in that other checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

fn heads(c: &mut Criterion) {
    let root = manifest_dir().join("../..");
    let encoder = SentenceEncoder::load(
        &ModelSource::Dir(root.join("models/all-MiniLM-L6-v2")),
        DeviceSpec::Cpu,
    )
    .expect("encoder (run bash models/fetch.sh)")
    .with_truncation(switchyard_core::ROUTING_TRUNCATION);
    let heads = ClassifierHeads::load(&root.join("models/classifier"), encoder.info())
        .expect("committed heads");
    let prompt = "How do I reset my password on the company laptop?";
    let embedding = encoder.embed(&[prompt]).expect("embeds");

    c.bench_function("heads: classify one embedding", |b| {
        b.iter(|| heads.classify(black_box(&embedding)).expect("classifies"))
    });
    c.bench_function("encoder: embed one ~14-token prompt", |b| {
        b.iter(|| encoder.embed(black_box(&[prompt])).expect("embeds"))
    });
}

criterion_group!(benches, heads);
criterion_main!(benches);

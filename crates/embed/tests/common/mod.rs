//! Shared test setup: the real all-MiniLM-L6-v2 weights, fetched by `bash models/fetch.sh`.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::path::PathBuf;
use std::sync::OnceLock;

use switchyard_core::DeviceSpec;
use switchyard_embed::{ModelSource, SentenceEncoder};

/// This package's directory: from cargo at run time (the checkout being tested), falling back
/// to the one it was compiled in. A test binary reused from a build in another checkout (a
/// shared CARGO_TARGET_DIR) would otherwise look for the models in that other checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

pub fn model_dir() -> PathBuf {
    let dir = manifest_dir().join("../../models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the encoder weights are missing at {}: run `bash models/fetch.sh` (the README's test \
         command does this for you)",
        dir.display()
    );
    dir
}

pub fn encoder() -> &'static SentenceEncoder {
    static ENCODER: OnceLock<SentenceEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        SentenceEncoder::load(&ModelSource::Dir(model_dir()), DeviceSpec::Cpu)
            .expect("the encoder loads")
    })
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

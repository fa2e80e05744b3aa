//! Switchyard's encoder against sentence-transformers' own output for the same model
//! (fixtures/minilm_reference.json, written by fixtures/make_reference.py).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test helpers fail loudly and report the worst cosine"
)]

mod common;

use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    inputs: Vec<ReferenceInput>,
}

#[derive(Deserialize)]
struct ReferenceInput {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    let raw = include_str!("fixtures/minilm_reference.json");
    serde_json::from_str(raw).expect("the reference fixture parses")
}

#[test]
fn matches_sentence_transformers_on_varied_inputs() {
    check_parity(common::encoder());
}

/// The same check on CUDA (candle's kernels there), for `eval/bench/encoder_cuda.sh`.
#[cfg(feature = "cuda")]
#[test]
fn matches_sentence_transformers_on_cuda() {
    use switchyard_core::DeviceSpec;
    use switchyard_embed::{ModelSource, SentenceEncoder};
    let encoder =
        SentenceEncoder::load(&ModelSource::Dir(common::model_dir()), DeviceSpec::Cuda(0))
            .expect("the encoder loads on CUDA device 0");
    assert_eq!(encoder.kernels(), "candle");
    check_parity(&encoder);
}

fn check_parity(encoder: &switchyard_embed::SentenceEncoder) {
    let reference = reference();
    assert!(reference.inputs.len() >= 40);
    assert_eq!(encoder.info().max_tokens, reference.max_seq_length);
    assert_eq!(encoder.info().dim, 384);

    let texts: Vec<&str> = reference.inputs.iter().map(|r| r.text.as_str()).collect();
    let encoded = encoder.encode(&texts).expect("encodes");
    let mut worst = (f64::MAX, "");
    for (got, want) in encoded.iter().zip(&reference.inputs) {
        assert_eq!(got.tokens, want.tokens, "token count of {:?}", want.text);
        assert_eq!(got.truncated, want.tokens == reference.max_seq_length);
        let cos = common::cosine(&got.embedding, &want.embedding);
        assert!(
            cos >= 0.9999,
            "cosine {cos:.7} < 0.9999 for {:?}",
            want.text.chars().take(60).collect::<String>()
        );
        if cos < worst.0 {
            worst = (cos, want.text.as_str());
        }
    }
    eprintln!(
        "parity: {} inputs, worst cosine {:.8}",
        reference.inputs.len(),
        worst.0
    );
}

#[test]
fn embeddings_are_unit_length() {
    let encoded = common::encoder()
        .embed(&["unit length please", "🤖"])
        .expect("encodes");
    for v in encoded {
        let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

/// Head+tail truncation (the router's) sees a long prompt's ending; plain truncation (the
/// sentence-transformers default) does not. Short prompts embed the same either way.
#[test]
fn head_tail_truncation_keeps_the_question_at_the_end() {
    use switchyard_core::{DeviceSpec, Truncation};
    use switchyard_embed::{ModelSource, SentenceEncoder};
    let prefix = "Here is an example question with its answer. ".repeat(60);
    let a = format!("{prefix}Question: what is the capital of France?");
    let b = format!("{prefix}Question: write a Python function that sorts a list.");
    let short = "A short prompt that fits easily.";

    let head = common::encoder();
    let encoded = head.encode(&[&a, &b, short]).expect("encodes");
    assert!(encoded[0].truncated && !encoded[2].truncated);
    assert_eq!(encoded[0].tokens, 256);
    assert_eq!(
        encoded[0].embedding, encoded[1].embedding,
        "the first 256 tokens are the same prefix"
    );

    let head_tail = SentenceEncoder::load(&ModelSource::Dir(common::model_dir()), DeviceSpec::Cpu)
        .expect("the encoder loads")
        .with_truncation(Truncation::HeadTail { head: 64 });
    assert_eq!(
        head_tail.info().truncation,
        Truncation::HeadTail { head: 64 }
    );
    let routed = head_tail.encode(&[&a, &b, short]).expect("encodes");
    assert_eq!(routed[0].tokens, 256);
    let cos: f32 = routed[0]
        .embedding
        .iter()
        .zip(&routed[1].embedding)
        .map(|(x, y)| x * y)
        .sum();
    assert!(cos < 0.95, "different endings must differ: cosine {cos}");
    let same: f32 = routed[2]
        .embedding
        .iter()
        .zip(&encoded[2].embedding)
        .map(|(x, y)| x * y)
        .sum();
    assert!(same > 0.99999, "short inputs are untouched: {same}");
}

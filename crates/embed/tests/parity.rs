//! Switchyard's encoder against sentence-transformers' own output for the same model
//! (fixtures/minilm_reference.json, written by fixtures/make_reference.py).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
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
    let reference = reference();
    assert!(reference.inputs.len() >= 40);
    let encoder = common::encoder();
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

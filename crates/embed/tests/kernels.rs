//! Switchyard's own CPU kernels against candle's BERT implementation, with the real
//! all-MiniLM-L6-v2 weights: every instruction set this CPU runs, inputs from 1 to 256
//! tokens, batched and one at a time. (`parity.rs` checks the default path against
//! sentence-transformers' own output.)

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

mod common;

use switchyard_core::DeviceSpec;
use switchyard_embed::{CpuKernels, Isa, LoadError, ModelSource, SentenceEncoder};

fn load(kernels: CpuKernels) -> SentenceEncoder {
    SentenceEncoder::load_with(
        &ModelSource::Dir(common::model_dir()),
        DeviceSpec::Cpu,
        kernels,
    )
    .expect("the encoder loads")
}

fn inputs() -> Vec<String> {
    let words = "routing every request to the cheapest model that answers it well is a \
                 question of quality cost latency and the shape of the traffic a user sends";
    let mut texts = vec![
        String::new(),
        "hi".to_owned(),
        "What is the capital of France?".to_owned(),
        "fn add(a: i32, b: i32) -> i32 { a + b } // ünïcödé, 漢字 and emoji 🚀".to_owned(),
    ];
    for n in [5, 17, 40, 90, 200, 400] {
        texts.push(
            words
                .split(' ')
                .cycle()
                .take(n)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    texts
}

#[test]
fn own_kernels_match_candle_on_every_instruction_set() {
    let reference = load(CpuKernels::Candle);
    assert_eq!(reference.kernels(), "candle");
    let texts = inputs();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = reference.encode(&refs).unwrap();
    for isa in Isa::supported() {
        let encoder = load(CpuKernels::Isa(isa));
        assert_eq!(encoder.kernels(), isa.to_string());
        let batched = encoder.encode(&refs).unwrap();
        let mut worst: f64 = 1.0;
        for (i, (got, want)) in batched.iter().zip(&want).enumerate() {
            assert_eq!(got.tokens, want.tokens);
            assert_eq!(got.truncated, want.truncated);
            let alone = encoder.encode(&refs[i..=i]).unwrap();
            let cos = common::cosine(&got.embedding, &want.embedding);
            assert!(cos >= 0.99999, "{isa}: cosine {cos} for input {i}");
            let same = common::cosine(&alone[0].embedding, &got.embedding);
            assert!(
                same >= 0.999_999,
                "{isa}: batched vs alone cosine {same} for input {i}"
            );
            worst = worst.min(cos);
        }
        eprintln!(
            "{isa}: {} inputs, worst cosine to candle {worst:.8}",
            want.len()
        );
    }
}

#[test]
fn the_default_is_the_widest_instruction_set_and_bad_choices_are_named() {
    assert_eq!(CpuKernels::parse("auto").unwrap(), CpuKernels::Auto);
    assert_eq!(CpuKernels::parse(" Candle ").unwrap(), CpuKernels::Candle);
    assert_eq!(
        CpuKernels::parse("portable").unwrap(),
        CpuKernels::Isa(Isa::Portable)
    );
    let err = CpuKernels::parse("sse9").unwrap_err();
    assert!(matches!(err, LoadError::Kernels { .. }));
    assert!(
        err.to_string().contains("avx512, avx2, portable or candle"),
        "{err}"
    );
    if !Isa::supported().contains(&Isa::Avx512) {
        let err = CpuKernels::parse("avx512").unwrap_err().to_string();
        assert!(err.contains("this CPU runs"), "{err}");
    }
    let encoder = load(CpuKernels::Auto);
    assert_eq!(encoder.kernels(), Isa::detect().to_string());
}

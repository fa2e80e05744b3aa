//! Batching must not change results, and the worker must batch, answer in order and push
//! back when full.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::embed::{ROUTING_TRUNCATION, Truncation};
use switchyard_core::{DeviceSpec, EmbedError, Embedder};
use switchyard_embed::{EmbedWorker, ModelSource, SentenceEncoder, WorkerConfig, clip};

fn mixed_lengths() -> Vec<String> {
    vec![
        "short".to_owned(),
        "a medium length sentence about routing requests to language models".to_owned(),
        "long ".repeat(300),
        "Wie geht es dir heute?".to_owned(),
        "🙂".to_owned(),
        "fn add(a: i32, b: i32) -> i32 { a + b }".to_owned(),
        "The quick brown fox jumps over the lazy dog. ".repeat(8),
        "?".to_owned(),
    ]
}

fn worker(config: WorkerConfig) -> EmbedWorker {
    let encoder = SentenceEncoder::load(&ModelSource::Dir(common::model_dir()), DeviceSpec::Cpu)
        .expect("the encoder loads");
    EmbedWorker::spawn(encoder, config).expect("the worker starts")
}

#[test]
fn a_mixed_batch_equals_one_at_a_time() {
    let encoder = common::encoder();
    let texts = mixed_lengths();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = encoder.embed(&refs).expect("batch encodes");
    for (text, got) in refs.iter().zip(&batched) {
        let alone = encoder.embed(&[text]).expect("single encodes");
        let cos = common::cosine(got, &alone[0]);
        assert!(cos >= 0.99999, "cosine {cos} for {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_vectors() {
    let worker = Arc::new(worker(WorkerConfig {
        max_batch: 16,
        max_wait: Duration::from_millis(5),
        queue_capacity: 64,
    }));
    let texts = mixed_lengths();
    let expected = common::encoder()
        .embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("encodes");
    let tasks: Vec<_> = texts
        .iter()
        .map(|t| {
            let worker = Arc::clone(&worker);
            let t = t.clone();
            tokio::spawn(async move { worker.embed(vec![t.clone(), t]).await })
        })
        .collect();
    for (task, want) in tasks.into_iter().zip(&expected) {
        let got = task.await.expect("task joins").expect("embeds");
        assert_eq!(got.len(), 2);
        for v in &got {
            assert!(common::cosine(v, want) >= 0.99999);
        }
    }
}

#[test]
fn sync_callers_block_for_their_result() {
    let worker = worker(WorkerConfig::default());
    let got = worker
        .embed_blocking(vec!["from a plain thread".to_owned()])
        .expect("embeds");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), worker.info().dim);
}

#[test]
fn bad_requests_are_rejected_before_the_queue() {
    let worker = worker(WorkerConfig::default());
    assert_eq!(
        worker.embed_blocking(vec!["ok".into(), "  ".into()]),
        Err(EmbedError::EmptyInput { index: 1 })
    );
    assert_eq!(worker.embed_blocking(vec![]), Err(EmbedError::NoInputs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_a_typed_error_not_unbounded_growth() {
    let worker = worker(WorkerConfig {
        max_batch: 1,
        max_wait: Duration::ZERO,
        queue_capacity: 1,
    });
    let long = "a fairly long input that keeps the worker busy for a while ".repeat(30);
    // Submitting takes microseconds and one long input takes milliseconds, so with one
    // job running and one queued, the rest must be refused.
    let futures: Vec<_> = (0..50).map(|_| worker.embed(vec![long.clone()])).collect();
    let mut accepted = 0;
    let mut refused = 0;
    for f in futures {
        match f.await {
            Ok(v) => {
                assert_eq!(v.len(), 1);
                accepted += 1;
            }
            Err(EmbedError::QueueFull { capacity }) => {
                assert_eq!(capacity, 1);
                refused += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(accepted >= 1, "accepted {accepted}");
    assert!(refused >= 1, "refused {refused}");
}

/// The tokens the model sees of `text`: its encoding cut as the encoder cuts it.
fn kept_ids(tokenizer: &tokenizers::Tokenizer, text: &str, truncation: Truncation) -> Vec<u32> {
    let e = tokenizer.encode(text, true).unwrap();
    let ids = e.get_ids();
    let content = &ids[1..ids.len() - 1]; // [CLS] … [SEP]
    let (head_end, tail_start) = truncation.keep(content.len(), 256 - 2);
    let mut kept = vec![ids[0]];
    kept.extend(&content[..head_end]);
    kept.extend(&content[tail_start..]);
    kept.push(ids[ids.len() - 1]);
    kept
}

#[test]
fn a_huge_prompt_is_clipped_before_tokenising_to_the_same_tokens() {
    let tokenizer =
        tokenizers::Tokenizer::from_file(common::model_dir().join("tokenizer.json")).unwrap();
    let words = [
        "route", "the", "prompt", "to", "a", "model", "über", "naïve", "🙂", "1234", "gateway",
        "encoder", "x",
    ];
    let mut text = String::from("Question head: what does this document say? ");
    for i in 0..60_000 {
        text.push_str(words[i * 7 % words.len()]);
        text.push(if i % 11 == 0 { '.' } else { ' ' });
    }
    text.push_str(" And at the very end: summarise it in one sentence, please.");
    assert!(text.len() > 300_000);
    for truncation in [Truncation::Head, ROUTING_TRUNCATION] {
        let clipped = clip(&text, 256, truncation);
        assert!(clipped.len() < 70_000, "{}", clipped.len());
        assert_eq!(
            kept_ids(&tokenizer, &clipped, truncation),
            kept_ids(&tokenizer, &text, truncation),
            "{truncation:?}"
        );
    }
    let short = "a short prompt";
    assert_eq!(clip(short, 256, ROUTING_TRUNCATION), short);
}

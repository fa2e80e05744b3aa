//! Training the heads end to end on a small real dataset (the committed seed prompts with
//! synthetic outcomes), with the real encoder: the artifact is written, reloads through the
//! inference path, is deterministic for a seed, and refuses another encoder.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use switchyard_core::{DeviceSpec, EncoderInfo, Outcome, RoutingRecord};
use switchyard_embed::heads::{ClassifierHeads, HeadsError};
use switchyard_embed::{ModelSource, SentenceEncoder};
use switchyard_training::classifier::TrainConfig;
use switchyard_training::train::{Phases, TrainRequest, train_classifier};

/// This package's directory: from cargo at run time (the checkout being tested), falling back
/// to the one it was compiled in. A test binary reused from a build in another checkout (a
/// shared CARGO_TARGET_DIR) would otherwise look for the models in that other checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

struct Hidden;
impl Phases for Hidden {
    fn phase(&self, _: &str) -> ProgressBar {
        ProgressBar::hidden()
    }
}

fn repo() -> PathBuf {
    manifest_dir().join("..")
}

fn encoder() -> SentenceEncoder {
    let dir = repo().join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "run `bash models/fetch.sh` first"
    );
    SentenceEncoder::load(&ModelSource::Dir(dir), DeviceSpec::Cpu).unwrap()
}

/// The seed prompts, each given two models' outcomes: longer prompts are "harder".
fn write_data(dir: &Path) -> PathBuf {
    let seeds =
        switchyard_core::read_records(&repo().join("datasets/seeds/task_seeds.jsonl")).unwrap();
    let path = dir.join("data.jsonl");
    let mut lines = String::new();
    for mut r in seeds {
        let hard = (r.text().len() as f64 / 250.0).min(1.0);
        r.outcomes.insert(
            "small".into(),
            Outcome {
                score: Some(1.0 - hard),
                ..Outcome::default()
            },
        );
        r.outcomes.insert(
            "large".into(),
            Outcome {
                score: Some(1.0 - hard / 2.0),
                ..Outcome::default()
            },
        );
        let _: &RoutingRecord = &r;
        lines.push_str(&serde_json::to_string(&r).unwrap());
        lines.push('\n');
    }
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn trains_saves_reloads_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(tmp.path());
    let encoder = encoder();
    let request = |out: &str| TrainRequest {
        data: vec![data.clone()],
        exclude_sources: vec![],
        out: tmp.path().join(out),
        cache_dir: tmp.path().join("cache"),
        config: TrainConfig {
            max_epochs: 12,
            patience: 4,
            ..TrainConfig::default()
        },
    };
    let (report, manifest) = train_classifier(&request("a"), &encoder, &Hidden).unwrap();
    assert_eq!(report.candidates.len(), 2, "linear and MLP are both tried");
    assert!(
        report.test_task_macro_f1 > 0.5,
        "3 distinct classes should separate: {report:?}"
    );
    assert_eq!(manifest.encoder, *encoder.info());
    assert_eq!(
        manifest.training_data[0].path, "data.jsonl",
        "no machine paths in manifests"
    );

    let heads = ClassifierHeads::load(&tmp.path().join("a"), encoder.info()).unwrap();
    let v = encoder
        .embed(&["Translate into French: good night"])
        .unwrap();
    let c = heads.classify(&v).unwrap();
    let total: f32 = c[0].task_probs.iter().map(|(_, p)| p).sum();
    assert!((total - 1.0).abs() < 1e-4);
    assert!((0.0..=1.0).contains(&c[0].difficulty));

    // Same seed, same data: identical weights.
    train_classifier(&request("b"), &encoder, &Hidden).unwrap();
    let a = std::fs::read(tmp.path().join("a/heads.safetensors")).unwrap();
    let b = std::fs::read(tmp.path().join("b/heads.safetensors")).unwrap();
    assert!(a == b, "training is not deterministic");
}

#[test]
fn heads_refuse_another_encoder_and_name_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(tmp.path());
    let encoder = encoder();
    let request = TrainRequest {
        data: vec![data],
        exclude_sources: vec![],
        out: tmp.path().join("heads"),
        cache_dir: tmp.path().join("cache"),
        config: TrainConfig {
            max_epochs: 2,
            ..TrainConfig::default()
        },
    };
    train_classifier(&request, &encoder, &Hidden).unwrap();
    let other = EncoderInfo {
        weights_sha256: "0".repeat(64),
        ..encoder.info().clone()
    };
    let err = ClassifierHeads::load(&tmp.path().join("heads"), &other).unwrap_err();
    assert!(matches!(err, HeadsError::EncoderMismatch { .. }));
    assert!(
        err.to_string().contains("switchyard train classifier"),
        "{err}"
    );
    let other = EncoderInfo {
        truncation: switchyard_core::Truncation::HeadTail { head: 3 },
        ..encoder.info().clone()
    };
    let err = ClassifierHeads::load(&tmp.path().join("heads"), &other).unwrap_err();
    assert!(err.to_string().contains("truncation head3tail"), "{err}");
    let err = ClassifierHeads::load(&tmp.path().join("nothing"), encoder.info()).unwrap_err();
    assert!(matches!(err, HeadsError::Missing { .. }), "{err}");
}

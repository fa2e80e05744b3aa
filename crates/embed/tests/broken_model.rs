//! A broken model folder is an error that names the file at fault, never a panic.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::path::Path;

use switchyard_core::DeviceSpec;
use switchyard_embed::{LoadError, ModelSource, SentenceEncoder};

/// A copy of the model folder in a temp dir, with the big weights file hard-linked or copied.
fn copy_model() -> tempfile::TempDir {
    let src = common::model_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    for name in [
        "config.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "model.safetensors",
    ] {
        let to = dir.path().join(name);
        if std::fs::hard_link(src.join(name), &to).is_err() {
            std::fs::copy(src.join(name), &to).expect("copy");
        }
    }
    dir
}

fn load(dir: &Path) -> LoadError {
    SentenceEncoder::load(&ModelSource::Dir(dir.to_path_buf()), DeviceSpec::Cpu)
        .expect_err("a broken model must not load")
}

#[test]
fn each_missing_file_is_named() {
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = copy_model();
        std::fs::remove_file(dir.path().join(name)).expect("remove");
        let err = load(dir.path());
        assert!(matches!(err, LoadError::MissingFile { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn truncated_weights_are_named() {
    let dir = copy_model();
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).expect("read");
    std::fs::remove_file(&weights).expect("unlink the hard link first");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = load(dir.path());
    assert!(matches!(err, LoadError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn another_architecture_is_refused_by_name() {
    let dir = copy_model();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::remove_file(&config).expect("unlink");
    let llama = text
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"llama\"")
        .replace("BertModel", "LlamaForCausalLM");
    std::fs::write(&config, llama).expect("write");
    let err = load(dir.path());
    assert!(
        matches!(err, LoadError::UnsupportedArchitecture { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("llama"),
        "{msg}"
    );
}

#[test]
fn garbage_config_and_tokenizer_are_named() {
    for name in ["config.json", "tokenizer.json"] {
        let dir = copy_model();
        let path = dir.path().join(name);
        std::fs::remove_file(&path).expect("unlink");
        std::fs::write(&path, "{ not json").expect("write");
        let err = load(dir.path());
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn a_missing_directory_says_how_to_fetch_it() {
    let err = load(Path::new("definitely/not/here"));
    assert!(matches!(err, LoadError::DirNotFound { .. }));
    assert!(err.to_string().contains("models/fetch.sh"));
}

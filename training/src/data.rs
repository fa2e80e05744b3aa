//! From routing-record files to training examples: dedupe by prompt, a deterministic
//! train/validation/test split by prompt hash, and embeddings through the cache.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use switchyard_core::{RecordError, TaskClass, read_records};
use switchyard_embed::heads::DataFile;
use switchyard_embed::{EncodeError, SentenceEncoder, sha256_file};

use crate::cache::{EmbeddingCache, text_key};

/// Which part of the data a prompt belongs to. Decided by a hash of the normalised prompt,
/// so the same prompt lands in the same split in every file, source and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    /// Early stopping and model selection.
    Validation,
    /// Held out: never seen by training.
    Test,
}

pub fn split_of(text: &str) -> Split {
    let key = text_key(&normalise(text));
    match key[0] % 10 {
        0 => Split::Test,
        1 => Split::Validation,
        _ => Split::Train,
    }
}

pub fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// One labelled prompt.
#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    /// The source family (`routerbench`, `seed`, ...): the part of `source` before `:`.
    pub family: String,
    pub text: String,
    pub task: Option<TaskClass>,
    pub difficulty: Option<f64>,
    pub split: Split,
}

/// Reads routing-record files into examples, keeping the first occurrence of each prompt.
pub fn load_examples(files: &[PathBuf]) -> Result<(Vec<Example>, Vec<DataFile>), RecordError> {
    let mut seen = HashSet::new();
    let mut examples = Vec::new();
    let mut data_files = Vec::new();
    for file in files {
        let records = read_records(file)?;
        data_files.push(DataFile {
            path: display_name(file),
            sha256: sha256_file(file).map_err(|e| RecordError::Io {
                path: file.clone(),
                source: std::io::Error::other(e.to_string()),
            })?,
            records: records.len(),
        });
        for record in records {
            let text = record.text().to_owned();
            if !seen.insert(text_key(&normalise(&text))) {
                continue;
            }
            examples.push(Example {
                family: record.source.split(':').next().unwrap_or("").to_owned(),
                split: split_of(&text),
                difficulty: record.difficulty(),
                // The router's own predictions (logged traffic) are not labels.
                task: record.task.filter(|_| !record.task_predicted),
                id: record.id,
                text,
            });
        }
    }
    Ok((examples, data_files))
}

/// The file name only: manifests must not carry machine paths.
fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Embeds every example's text, using and filling the cache; returns vectors in order.
pub fn embed_all(
    texts: &[&str],
    encoder: &SentenceEncoder,
    cache: &mut EmbeddingCache,
    progress: &ProgressBar,
) -> Result<Vec<Vec<f32>>, EmbedAllError> {
    let missing: Vec<&str> = {
        let mut seen = HashSet::new();
        texts
            .iter()
            .copied()
            .filter(|t| cache.get(t).is_none() && seen.insert(*t))
            .collect()
    };
    progress.set_length(missing.len() as u64);
    for chunk in missing.chunks(64) {
        let vectors = encoder.embed(chunk)?;
        let items: Vec<(&str, Vec<f32>)> = chunk.iter().copied().zip(vectors).collect();
        cache.insert_all(&items).map_err(EmbedAllError::Cache)?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    texts
        .iter()
        .map(|t| cache.get(t).map(<[f32]>::to_vec).ok_or(EmbedAllError::Lost))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedAllError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("cannot write the embedding cache: {0}")]
    Cache(std::io::Error),
    #[error("an embedding went missing from the cache (was it written for another encoder?)")]
    Lost,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stable_and_roughly_ten_ten_eighty() {
        assert_eq!(split_of("What is 2+2?"), split_of("  what IS   2+2? "));
        let mut counts = [0usize; 3];
        for i in 0..10_000 {
            match split_of(&format!("prompt number {i}")) {
                Split::Train => counts[0] += 1,
                Split::Validation => counts[1] += 1,
                Split::Test => counts[2] += 1,
            }
        }
        assert!((7600..8400).contains(&counts[0]), "{counts:?}");
        assert!(
            (800..1200).contains(&counts[1]) && (800..1200).contains(&counts[2]),
            "{counts:?}"
        );
    }
}

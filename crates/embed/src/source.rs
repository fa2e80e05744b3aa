//! Where a model comes from: a local directory, or a Hugging Face hub id resolved into the
//! hub's local cache. Either way the result is a [`ModelFiles`] whose files all exist.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::LoadError;

/// A model as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Dir(PathBuf),
    /// `owner/name`, fetched through the hub cache.
    Hub(String),
}

impl ModelSource {
    /// An existing path is a directory; `hf:owner/name`, or `owner/name` that is not an
    /// existing path, is a hub id; anything else is a (missing) directory.
    pub fn parse(given: &str) -> Self {
        if let Some(id) = given.strip_prefix("hf:") {
            return Self::Hub(id.to_owned());
        }
        let path = Path::new(given);
        let looks_like_hub_id = !path.exists()
            && !given.starts_with(['.', '/', '~'])
            && given.matches('/').count() == 1
            && given
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if looks_like_hub_id {
            Self::Hub(given.to_owned())
        } else {
            Self::Dir(path.to_path_buf())
        }
    }

    /// A short, stable name for logs and manifests.
    pub fn id(&self) -> String {
        match self {
            Self::Hub(id) => id.clone(),
            Self::Dir(dir) => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
        }
    }

    /// Finds (or fetches) the files of this model.
    pub fn resolve(&self) -> Result<ModelFiles, LoadError> {
        match self {
            Self::Dir(dir) => ModelFiles::in_dir(dir),
            Self::Hub(id) => hub::resolve(id),
        }
    }
}

/// The files of a BERT-family sentence encoder.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
    /// sentence-transformers' `sentence_bert_config.json` (holds `max_seq_length`), if any.
    pub sentence_config: Option<PathBuf>,
}

impl ModelFiles {
    pub fn in_dir(dir: &Path) -> Result<Self, LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::DirNotFound {
                path: dir.to_path_buf(),
            });
        }
        let required = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(LoadError::MissingFile { path })
            }
        };
        let sentence_config = Some(dir.join("sentence_bert_config.json")).filter(|p| p.is_file());
        Ok(Self {
            config: required("config.json")?,
            tokenizer: required("tokenizer.json")?,
            weights: required("model.safetensors")?,
            sentence_config,
        })
    }
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(feature = "hub")]
mod hub {
    use super::ModelFiles;
    use crate::LoadError;

    /// Resolves each file from the hub cache first (works offline once cached), then the
    /// network. Must be called from a blocking context, not from inside an async task.
    pub(super) fn resolve(id: &str) -> Result<ModelFiles, LoadError> {
        let files = ModelFiles {
            config: file(id, "config.json")?,
            tokenizer: file(id, "tokenizer.json")?,
            weights: file(id, "model.safetensors")?,
            sentence_config: file(id, "sentence_bert_config.json").ok(),
        };
        tracing::info!(model = id, weights = %files.weights.display(), "resolved model from the hub cache");
        Ok(files)
    }

    /// One file: from the hub cache when there (works offline), else the network.
    pub(super) fn file(id: &str, file: &str) -> Result<std::path::PathBuf, LoadError> {
        let err = |reason: String| LoadError::Hub {
            model_id: id.to_owned(),
            file: file.to_owned(),
            reason,
        };
        let (owner, name) = id
            .split_once('/')
            .ok_or_else(|| err("a hub id has the form owner/name".into()))?;
        let client = hf_hub::HFClientSync::new().map_err(|e| err(e.to_string()))?;
        let repo = client.model(owner, name);
        let cached = repo
            .download_file()
            .filename(file)
            .local_files_only(true)
            .send();
        match cached {
            Ok(path) => Ok(path),
            Err(_) => repo
                .download_file()
                .filename(file)
                .send()
                .map_err(|e| err(e.to_string())),
        }
    }
}

/// One file of a hub repository (`owner/name`), from the hub cache or the network: e.g. a
/// GGUF for the local model. Must be called from a blocking context.
pub fn hub_file(repo_id: &str, file: &str) -> Result<PathBuf, LoadError> {
    hub::file(repo_id, file)
}

#[cfg(not(feature = "hub"))]
mod hub {
    use super::ModelFiles;
    use crate::LoadError;

    pub(super) fn file(id: &str, _file: &str) -> Result<std::path::PathBuf, LoadError> {
        Err(LoadError::HubNotCompiled {
            model_id: id.to_owned(),
        })
    }

    pub(super) fn resolve(id: &str) -> Result<ModelFiles, LoadError> {
        Err(LoadError::HubNotCompiled {
            model_id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dirs_and_hub_ids() {
        assert_eq!(
            ModelSource::parse("sentence-transformers/all-MiniLM-L6-v2"),
            ModelSource::Hub("sentence-transformers/all-MiniLM-L6-v2".into())
        );
        assert_eq!(
            ModelSource::parse("hf:org/model"),
            ModelSource::Hub("org/model".into())
        );
        assert_eq!(
            ModelSource::parse("./models/x"),
            ModelSource::Dir("./models/x".into())
        );
        assert_eq!(
            ModelSource::parse("a/b/c"),
            ModelSource::Dir("a/b/c".into())
        );
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(ModelSource::parse(here), ModelSource::Dir(here.into()));
    }

    #[test]
    fn missing_directory_says_how_to_fetch() {
        let err = ModelFiles::in_dir(Path::new("no/such/dir")).unwrap_err();
        assert!(err.to_string().contains("models/fetch.sh"), "{err}");
    }
}

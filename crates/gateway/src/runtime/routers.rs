//! Routers between replicas: a promoted router's files go to the shared state with their
//! checksum, every replica loads the version published there (writing it to its own
//! `[state] router_dir`, so no directory is shared between machines), and a version from
//! the history can be served again (rollback).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_state::RouterArtifact;

use super::lifecycle::promote;
use super::state::AppState;
use crate::limits::{LimitError, Shared};

/// Why a rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Shared(#[from] LimitError),
    #[error(
        "router {0:?} is not in the shared state (GET /admin/router/history lists the versions kept)"
    )]
    Unknown(String),
    #[error("{0}")]
    Refused(String),
}

/// A scorer directory's files (not its subdirectories) as an artifact of `version`.
pub fn read_router(dir: &Path, version: &str) -> std::io::Result<RouterArtifact> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name {
            files.insert(name, std::fs::read(&path)?);
        }
    }
    Ok(RouterArtifact {
        version: version.to_owned(),
        files,
    })
}

/// Writes `artifact` to `root/VERSION` (through a temporary directory renamed into place,
/// so a half-written router is never loaded) and returns that directory. A version or file
/// name that is not a plain name is refused.
pub fn write_router(artifact: &RouterArtifact, root: &Path) -> std::io::Result<PathBuf> {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !plain(&artifact.version) || !artifact.files.keys().all(|n| plain(n)) {
        return Err(std::io::Error::other(format!(
            "router {:?}: not a plain version or file name",
            artifact.version
        )));
    }
    let target = root.join(&artifact.version);
    if target.is_dir() && read_router(&target, &artifact.version)?.sha256() == artifact.sha256() {
        return Ok(target);
    }
    std::fs::create_dir_all(root)?;
    let tmp = root.join(format!(".{}.{}", artifact.version, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (name, bytes) in &artifact.files {
        std::fs::write(tmp.join(name), bytes)?;
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

/// Serves the router in `dir` here, then (with shared state) publishes it for the other
/// replicas, its files included. Returns the version and whether it was published.
pub async fn promote_and_publish(
    state: &Arc<AppState>,
    dir: &Path,
    action: &str,
) -> Result<(String, Option<bool>), String> {
    let (promoting, scorer) = (state.clone(), dir.to_path_buf());
    let version = tokio::task::spawn_blocking(move || promote(&promoting, &scorer))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let Some(shared) = &state.limits.shared else {
        return Ok((version, None));
    };
    let artifact = read_router(dir, &version)
        .inspect_err(
            |e| tracing::warn!(error = %e, dir = %dir.display(), "cannot read the router's files"),
        )
        .ok();
    let published = shared
        .publish_router(&version, dir, artifact.as_ref(), action)
        .await;
    Ok((version, Some(published)))
}

/// Serves router `version` from the shared state's history again, here and (through the
/// published pointer) on every replica.
pub async fn rollback(state: &Arc<AppState>, version: &str) -> Result<String, RollbackError> {
    let shared = state
        .limits
        .shared
        .as_ref()
        .ok_or(LimitError::NoSharedState)?;
    let artifact = shared
        .router_artifact(version)
        .await
        .ok_or_else(|| RollbackError::Unknown(version.to_owned()))?;
    let dir = write_router(&artifact, shared.router_dir())
        .map_err(|e| RollbackError::Refused(format!("cannot write the router: {e}")))?;
    let (served, _) = promote_and_publish(state, &dir, "rollback")
        .await
        .map_err(RollbackError::Refused)?;
    Ok(served)
}

/// Where to load a published router from: its files from Redis, written to this replica's
/// router directory, or else the path it was published with.
async fn local_copy(shared: &Shared, version: &str, published_path: &Path) -> PathBuf {
    let Some(artifact) = shared.router_artifact(version).await else {
        return published_path.to_path_buf();
    };
    match write_router(&artifact, shared.router_dir()) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(error = %e, version, "cannot write the shared router; trying its published path");
            published_path.to_path_buf()
        }
    }
}

/// Runs beside the server with shared state: serves the router another replica promoted
/// (polled every `[state] router_poll_ms`), loaded from the shared state. A version that
/// fails to load here is not tried again until another one is published.
pub async fn follow_promotions(state: Arc<AppState>, shared: Arc<Shared>) {
    let mut refused: Option<String> = None;
    loop {
        tokio::time::sleep(
            shared
                .router_poll()
                .max(std::time::Duration::from_millis(100)),
        )
        .await;
        let Some(published) = shared.published_router().await else {
            continue;
        };
        let serving = state
            .runtime()
            .router
            .as_ref()
            .map(|r| r.version().to_owned());
        let version = published.version.as_str();
        if serving.as_deref() == Some(version) || refused.as_deref() == Some(version) {
            continue;
        }
        let dir = local_copy(&shared, version, &published.scorer).await;
        let promoting = state.clone();
        let outcome = tokio::task::spawn_blocking(move || promote(&promoting, &dir)).await;
        match outcome {
            Ok(Ok(loaded)) if loaded == version => {
                tracing::info!(version, "serving the router promoted on another replica");
            }
            Ok(Ok(loaded)) => {
                tracing::warn!(published = version, loaded = %loaded,
                    "the promoted router's files now hold another version; serving it");
                refused = Some(published.version);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, version,
                    "cannot serve the router promoted on another replica; keeping the running one");
                refused = Some(published.version);
            }
            Err(e) => tracing::error!(error = %e, "router promotion task failed"),
        }
    }
}

//! The learner's lease: with shared state, at most one learner acts (trains, promotes)
//! among those started against the same Redis; the others wait and take over when the
//! holder stops renewing. Renewed in the background every third of its lifetime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_state::{SharedState, StateError, StateOptions};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

const NAME: &str = "learner";

/// A held-or-awaited lease, kept fresh by a background task.
#[derive(Debug)]
pub struct LearnerLease {
    held: Arc<AtomicBool>,
    holder: String,
    state: SharedState,
    runtime: tokio::runtime::Runtime,
}

impl LearnerLease {
    /// Starts competing for the lease on the Redis `options` name.
    pub fn start(options: StateOptions) -> Result<Self, StateError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| StateError::Redis(e.to_string()))?;
        let state = SharedState::connect_lazy(options)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let holder = format!("learner-{}-{nanos:08x}", std::process::id());
        let held = Arc::new(AtomicBool::new(false));
        let (s, h, flag) = (state.clone(), holder.clone(), held.clone());
        runtime.spawn(async move {
            loop {
                let now = s.hold_lease(NAME, &h, LEASE_TTL).await;
                if let Err(e) = &now {
                    tracing::warn!(error = %e, "cannot renew the learner's lease (Redis); pausing");
                }
                flag.store(now.unwrap_or(false), Ordering::SeqCst);
                tokio::time::sleep(LEASE_TTL / 3).await;
            }
        });
        Ok(Self {
            held,
            holder,
            state,
            runtime,
        })
    }

    /// Whether this learner holds the lease (it may act), checking with Redis now.
    pub fn held(&self) -> bool {
        let now = self
            .runtime
            .block_on(self.state.hold_lease(NAME, &self.holder, LEASE_TTL))
            .unwrap_or(false);
        self.held.store(now, Ordering::SeqCst);
        now
    }

    /// This learner's id in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }
}

impl Drop for LearnerLease {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(self.state.release_lease(NAME, &self.holder));
    }
}

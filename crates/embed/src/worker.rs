//! The encoder on its own thread, behind a bounded queue that batches concurrent requests.
//!
//! Servers must not run a 10 ms matrix multiply on an async executor thread, and must not
//! let a burst queue without bound. Requests go into a bounded channel; the worker takes
//! the first waiting request, then every request already queued (and, if `max_wait` is
//! set, whatever arrives within it) up to `max_batch` texts, runs them as one batch and
//! answers each caller. A full queue is [`EmbedError::QueueFull`], which the gateway turns
//! into 429.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_core::{
    EmbedError, Embedder, EmbeddingFuture, EncoderInfo, Truncation, validate_inputs,
};
use tokio::sync::oneshot;

use crate::{Encoded, SentenceEncoder};

/// Batching and back-pressure settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Most texts run through the model in one batch.
    pub max_batch: usize,
    /// How long the worker waits for more requests after the first one of a batch.
    /// Zero means "take what is already queued and go", the lowest latency when idle.
    pub max_wait: Duration,
    /// Requests that may wait in the queue before callers get `QueueFull`.
    pub queue_capacity: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::ZERO,
            queue_capacity: 256,
        }
    }
}

type Answer = Result<Vec<Encoded>, EmbedError>;
type Reply = oneshot::Sender<Answer>;

struct Job {
    texts: Vec<String>,
    truncation: Truncation,
    reply: Reply,
}

/// A handle to the encoder thread. Cheap to share behind an `Arc`; dropping the last handle
/// stops the thread once the queue drains.
pub struct EmbedWorker {
    tx: Option<SyncSender<Job>>,
    info: EncoderInfo,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedWorker")
            .field("info", &self.info)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl EmbedWorker {
    /// Moves `encoder` onto a new thread named `switchyard-embed`.
    pub fn spawn(encoder: SentenceEncoder, config: WorkerConfig) -> std::io::Result<Self> {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let info = encoder.info().clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-embed".into())
            .spawn(move || run(&encoder, &rx, config))?;
        Ok(Self {
            tx: Some(tx),
            info,
            capacity,
            thread: Some(thread),
        })
    }

    /// Queues `texts` and returns a receiver for the result, or fails fast when the queue
    /// is full or the input is invalid.
    fn submit(
        &self,
        texts: Vec<String>,
        truncation: Truncation,
    ) -> Result<oneshot::Receiver<Answer>, EmbedError> {
        validate_inputs(&texts)?;
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(EmbedError::WorkerStopped)?;
        match tx.try_send(Job {
            texts,
            truncation,
            reply,
        }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(EmbedError::QueueFull {
                capacity: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(EmbedError::WorkerStopped),
        }
    }

    /// Embeds from synchronous code, blocking the calling thread. Must not be called from
    /// inside an async task (use [`Embedder::embed`] there).
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encoded = self
            .submit(texts, self.info.truncation)?
            .blocking_recv()
            .map_err(|_| EmbedError::WorkerStopped)??;
        Ok(encoded.into_iter().map(|e| e.embedding).collect())
    }

    /// Embeds with `truncation` instead of the encoder's own, with token counts.
    pub async fn encode_as(
        &self,
        texts: Vec<String>,
        truncation: Truncation,
    ) -> Result<Vec<Encoded>, EmbedError> {
        self.submit(texts, truncation)?
            .await
            .map_err(|_| EmbedError::WorkerStopped)?
    }
}

impl Embedder for EmbedWorker {
    fn info(&self) -> &EncoderInfo {
        &self.info
    }

    fn embed(&self, texts: Vec<String>) -> EmbeddingFuture {
        let submitted = self.submit(texts, self.info.truncation);
        Box::pin(async move {
            let encoded = submitted?.await.map_err(|_| EmbedError::WorkerStopped)??;
            Ok(encoded.into_iter().map(|e| e.embedding).collect())
        })
    }
}

impl Drop for EmbedWorker {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop after the queued jobs.
        self.tx.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the encoder worker thread panicked");
        }
    }
}

/// The worker loop: block for a first job, gather a batch, run it, answer, repeat.
fn run(encoder: &SentenceEncoder, rx: &Receiver<Job>, config: WorkerConfig) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut texts = jobs[0].texts.len();
        let deadline = Instant::now() + config.max_wait;
        while texts < config.max_batch {
            let next = match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => rx.recv_timeout(left),
                _ => rx.try_recv().map_err(|_| RecvTimeoutError::Timeout),
            };
            match next {
                Ok(job) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        run_batch(encoder, jobs);
    }
    tracing::debug!("encoder worker stopped: all handles dropped");
}

fn run_batch(encoder: &SentenceEncoder, jobs: Vec<Job>) {
    // Jobs asking for another truncation than the first one run as their own batch.
    let (same, other): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| j.truncation == encoder.info().truncation);
    for group in [same, other] {
        let mut group = group.into_iter().peekable();
        while let Some(truncation) = group.peek().map(|j| j.truncation) {
            let batch: Vec<Job> =
                std::iter::from_fn(|| group.next_if(|j| j.truncation == truncation)).collect();
            run_group(encoder, batch, truncation);
        }
    }
}

fn run_group(encoder: &SentenceEncoder, jobs: Vec<Job>, truncation: Truncation) {
    let all: Vec<&str> = jobs
        .iter()
        .flat_map(|j| j.texts.iter().map(String::as_str))
        .collect();
    let started = Instant::now();
    let result = encoder.encode_as(&all, truncation);
    tracing::trace!(
        requests = jobs.len(),
        texts = all.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "encoded batch"
    );
    match result {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for job in jobs {
                let mine: Vec<Encoded> = vectors.by_ref().take(job.texts.len()).collect();
                // A caller that gave up (dropped its receiver) is not an error.
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "encoder batch failed");
            for job in jobs {
                let _ = job.reply.send(Err(EmbedError::Inference(e.to_string())));
            }
        }
    }
}

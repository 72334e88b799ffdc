//! [`Committer`]: group commit over any [`Store`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};

use super::{Op, Store, StoreError};

/// Default cap on the ops of one group commit.
const DEFAULT_MAX_BATCH_OPS: usize = 10_000;
/// Default cap on the payload bytes of one group commit.
const DEFAULT_MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Group commit: many writers, one durable [`Store::commit`] per round.
///
/// A cheap-to-clone handle to a background task that owns the commit loop. Each round the task
/// takes every queued submission (at least one, then more while the round stays within
/// [`max_batch_ops`](CommitterBuilder::max_batch_ops) and
/// [`max_batch_bytes`](CommitterBuilder::max_batch_bytes)), concatenates their ops in submission
/// order, commits them as one atomic batch and then acknowledges each submitter. One fsync thus
/// serves every writer that arrived while the previous one ran.
///
/// * [`submit`](Self::submit) enqueues at once, before it returns: the commit order is the
///   order of the `submit` calls, whatever order the returned [`CommitAck`]s are awaited in.
/// * A [`CommitAck`] resolves to `Ok` only after a commit containing its ops returned `Ok`; so
///   every submission queued before it is durable too.
/// * When a commit fails, every submitter of that round gets the error and the committer is
///   poisoned: all later submissions fail at once with [`StoreError::Poisoned`]. Nothing is
///   acknowledged on top of a failed commit, so acknowledged data is never lost.
/// * The queue is unbounded; writers are paced by awaiting their acknowledgements.
///
/// The task ends when the last handle is dropped, after committing what is queued.
///
/// # Example
///
/// ```
/// use iot_dm_service::store::{Committer, MemoryStore, Op, Store, Table};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), iot_dm_service::store::StoreError> {
/// let store = MemoryStore::new();
/// let committer = Committer::builder().max_batch_ops(1_000).spawn(store.clone());
///
/// // Both are queued now, in this order; awaiting order does not matter.
/// let first = committer.submit(vec![Op::put(Table::Jobs, "job-1", "running")]);
/// let second = committer.submit(vec![Op::put(Table::Jobs, "job-1", "done")]);
/// second.await?;
/// first.await?;
///
/// assert_eq!(store.get(Table::Jobs, b"job-1").await?, Some(b"done".to_vec()));
/// let stats = committer.stats();
/// assert_eq!((stats.submissions, stats.ops), (2, 2));
/// assert!(stats.batches >= 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The commit task owns the store; handles only see it while the task runs.
    store: std::sync::Weak<dyn Store>,
    closed: std::sync::atomic::AtomicBool,
    poison: OnceLock<StoreError>,
    submissions: AtomicU64,
    batches: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    failed_batches: AtomicU64,
}

#[derive(Debug)]
struct Job {
    ops: Vec<Op>,
    bytes: usize,
    /// A close barrier: commit what came before, then release the store.
    close: bool,
    ack: oneshot::Sender<Result<(), StoreError>>,
    then: Option<OnDurable>,
}

impl Job {
    /// Runs the hook (on success only), then resolves the acknowledgement.
    fn finish(self, result: Result<(), StoreError>) {
        finish(self.ack, self.then, result);
    }
}

fn finish(
    ack: oneshot::Sender<Result<(), StoreError>>,
    then: Option<OnDurable>,
    result: Result<(), StoreError>,
) {
    if let (Some(then), Ok(())) = (then, &result) {
        (then.0)();
    }
    // A submitter that stopped waiting is not an error: its ops are durable.
    let _ = ack.send(result);
}

/// What [`Committer::submit_then`] runs once its submission is durable.
pub struct OnDurable(Box<dyn FnOnce() + Send>);

impl OnDurable {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        OnDurable(Box::new(f))
    }
}

impl std::fmt::Debug for OnDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDurable")
    }
}

/// Options for a [`Committer`].
///
/// ```
/// use iot_dm_service::store::{Committer, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let committer = Committer::builder()
///     .max_batch_ops(500)
///     .max_batch_bytes(1 << 20)
///     .spawn(MemoryStore::new());
/// assert_eq!(committer.stats().batches, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CommitterBuilder {
    max_batch_ops: usize,
    max_batch_bytes: usize,
}

impl Default for CommitterBuilder {
    fn default() -> Self {
        Self {
            max_batch_ops: DEFAULT_MAX_BATCH_OPS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

impl CommitterBuilder {
    /// The most ops one group commit takes (default 10,000). A single submission larger than
    /// this is still committed, alone.
    pub fn max_batch_ops(mut self, ops: usize) -> Self {
        self.max_batch_ops = ops.max(1);
        self
    }

    /// The most payload bytes (keys, values, range bounds) one group commit takes (default
    /// 8 MiB). A single submission larger than this is still committed, alone.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Starts the commit task on the current tokio runtime and returns its handle.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime, as [`tokio::spawn`] does.
    pub fn spawn(self, store: impl Store) -> Committer {
        let store: Arc<dyn Store> = Arc::new(store);
        let shared = Arc::new(Shared {
            store: Arc::downgrade(&store),
            closed: std::sync::atomic::AtomicBool::new(false),
            poison: OnceLock::new(),
            submissions: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
        });
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, store, Arc::clone(&shared), self));
        Committer { queue, shared }
    }
}

impl Committer {
    /// A committer with default options; see [`CommitterBuilder::spawn`].
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn new(store: impl Store) -> Self {
        Self::builder().spawn(store)
    }

    /// Options for a committer.
    pub fn builder() -> CommitterBuilder {
        CommitterBuilder::default()
    }

    /// Queues `ops` for the next group commit, now, and returns the acknowledgement to await.
    ///
    /// The ops are committed atomically together, after every earlier submission and before
    /// every later one. An empty submission is a barrier: it resolves once everything submitted
    /// before it is durable. Dropping the [`CommitAck`] does not withdraw the ops.
    ///
    /// The acknowledgement fails with [`StoreError::Poisoned`] after an earlier commit failed,
    /// with the store's own error if the commit of its round fails, and with
    /// [`StoreError::Closed`] if the commit task is gone (its runtime shut down).
    pub fn submit(&self, ops: Vec<Op>) -> CommitAck {
        if let Some(err) = self.poison_error() {
            return CommitAck::ready(Err(err));
        }
        self.enqueue(ops, false, None)
    }

    /// Like [`submit`](Self::submit), and runs `then` on the commit task once the submission
    /// is durable, before its acknowledgement resolves.
    ///
    /// Hooks run in submission order, each after every earlier submission is durable, so what
    /// they make visible (a notification, an event) leaves in the order the writes were
    /// submitted and never before they are durable. A hook never runs when the commit fails or
    /// the committer is poisoned or closed. It runs on the commit task: keep it short and
    /// never block in it (queue work elsewhere with a non-blocking send).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use iot_dm_service::store::{Committer, MemoryStore, OnDurable, Op, Table};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), iot_dm_service::store::StoreError> {
    /// let committer = Committer::new(MemoryStore::new());
    /// let seen = Arc::new(AtomicBool::new(false));
    /// let flag = seen.clone();
    /// let ack = committer.submit_then(
    ///     vec![Op::put(Table::Jobs, "job-1", "running")],
    ///     OnDurable::new(move || flag.store(true, Ordering::SeqCst)),
    /// );
    /// ack.await?;
    /// assert!(seen.load(Ordering::SeqCst));
    /// # Ok(())
    /// # }
    /// ```
    pub fn submit_then(&self, ops: Vec<Op>, then: OnDurable) -> CommitAck {
        if let Some(err) = self.poison_error() {
            return CommitAck::ready(Err(err));
        }
        self.enqueue(ops, false, Some(then))
    }

    /// Commits everything submitted before the call, then stops the commit task and releases
    /// the store (for a redb store: closes its file). Later submissions fail with
    /// [`StoreError::Closed`]. Resolves once the store is released.
    pub fn close(&self) -> CommitAck {
        self.enqueue(Vec::new(), true, None)
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    fn enqueue(&self, ops: Vec<Op>, close: bool, then: Option<OnDurable>) -> CommitAck {
        if let Some(err) = self.poison_error().filter(|_| !close) {
            return CommitAck::ready(Err(err));
        }
        if self.is_closed() {
            return CommitAck::ready(Err(closed()));
        }
        let bytes = ops.iter().map(Op::payload_len).sum();
        let (ack, rx) = oneshot::channel();
        match self.queue.send(Job {
            ops,
            bytes,
            close,
            ack,
            then,
        }) {
            Ok(()) => {
                self.shared.submissions.fetch_add(1, Ordering::Relaxed);
                CommitAck {
                    state: AckState::Waiting(rx),
                }
            }
            Err(_) => CommitAck::ready(Err(closed())),
        }
    }

    /// Resolves once everything submitted before the call is durable: an empty
    /// [`submit`](Self::submit).
    pub fn flush(&self) -> CommitAck {
        self.submit(Vec::new())
    }

    /// Whether a failed commit has poisoned the committer.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poison.get().is_some()
    }

    /// The store the committer writes to, for reads; `None` once the committer is closed.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        self.shared.store.upgrade()
    }

    /// Counters since the committer started.
    pub fn stats(&self) -> CommitterStats {
        let s = &self.shared;
        CommitterStats {
            submissions: s.submissions.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
        }
    }

    fn poison_error(&self) -> Option<StoreError> {
        self.shared.poison.get().map(poisoned)
    }
}

fn poisoned(cause: &StoreError) -> StoreError {
    StoreError::Poisoned {
        what: "committer",
        cause: Arc::new(cause.clone()),
    }
}

fn closed() -> StoreError {
    StoreError::Closed { what: "committer" }
}

/// Counters of a [`Committer`], for monitoring and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitterStats {
    /// Submissions accepted into the queue.
    pub submissions: u64,
    /// Successful store commits.
    pub batches: u64,
    /// Ops in successful commits.
    pub ops: u64,
    /// Payload bytes (keys, values, range bounds) in successful commits.
    pub bytes: u64,
    /// Failed store commits (at most one: the first poisons the committer).
    pub failed_batches: u64,
}

impl CommitterStats {
    /// The mean number of ops per successful commit (0 before the first).
    pub fn avg_batch_ops(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.ops as f64 / self.batches as f64
        }
    }
}

/// The acknowledgement of one [`Committer::submit`]: a future resolving to the outcome of the
/// commit that carried the submission.
#[derive(Debug)]
#[must_use = "the ops are queued either way, but only the acknowledgement says they are durable"]
pub struct CommitAck {
    state: AckState,
}

#[derive(Debug)]
enum AckState {
    Ready(Option<Result<(), StoreError>>),
    Waiting(oneshot::Receiver<Result<(), StoreError>>),
}

impl CommitAck {
    fn ready(result: Result<(), StoreError>) -> Self {
        CommitAck {
            state: AckState::Ready(Some(result)),
        }
    }
}

impl Future for CommitAck {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            // Polling again after completion reports a closed committer rather than panicking.
            AckState::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| Err(closed()))),
            AckState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(closed()))),
        }
    }
}

/// The commit loop: one round per iteration until every handle is gone.
async fn run(
    mut rx: mpsc::UnboundedReceiver<Job>,
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    cfg: CommitterBuilder,
) {
    let mut carry: Option<Job> = None;
    let mut closing: Option<oneshot::Sender<Result<(), StoreError>>> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        if first.close {
            closing = Some(first.ack);
            break;
        }
        if let Some(cause) = shared.poison.get() {
            reject(first, cause);
            continue;
        }

        let mut round_ops = first.ops.len();
        let mut round_bytes = first.bytes;
        let mut jobs = vec![first];
        while round_ops < cfg.max_batch_ops && round_bytes < cfg.max_batch_bytes {
            let Ok(job) = rx.try_recv() else { break };
            if job.close {
                carry = Some(job);
                break;
            }
            let ops = round_ops.saturating_add(job.ops.len());
            let bytes = round_bytes.saturating_add(job.bytes);
            if ops > cfg.max_batch_ops || bytes > cfg.max_batch_bytes {
                carry = Some(job);
                break;
            }
            round_ops = ops;
            round_bytes = bytes;
            jobs.push(job);
        }

        let mut ops = Vec::with_capacity(round_ops);
        let mut acks = Vec::with_capacity(jobs.len());
        for job in jobs {
            ops.extend(job.ops);
            acks.push((job.ack, job.then));
        }

        let result = if ops.is_empty() {
            // Only barriers: everything before them was committed in earlier rounds.
            Ok(())
        } else {
            store.commit(ops).await
        };
        match result {
            Ok(()) => {
                if round_ops > 0 {
                    shared.batches.fetch_add(1, Ordering::Relaxed);
                    shared.ops.fetch_add(as_u64(round_ops), Ordering::Relaxed);
                    shared
                        .bytes
                        .fetch_add(as_u64(round_bytes), Ordering::Relaxed);
                }
                tracing::trace!(
                    submissions = acks.len(),
                    ops = round_ops,
                    bytes = round_bytes,
                    "group commit"
                );
                for (ack, then) in acks {
                    finish(ack, then, Ok(()));
                }
            }
            Err(err) => {
                shared.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    error = %err,
                    submissions = acks.len(),
                    ops = round_ops,
                    "group commit failed; the committer refuses all further writes"
                );
                let _ = shared.poison.set(err.clone());
                for (ack, then) in acks {
                    finish(ack, then, Err(err.clone()));
                }
            }
        }
    }
    shared.closed.store(true, Ordering::SeqCst);
    drop(store);
    match closing {
        Some(ack) => {
            // later submissions, queued before `closed` was set, are refused
            rx.close();
            while let Ok(job) = rx.try_recv() {
                job.finish(Err(closed()));
            }
            let _ = ack.send(Ok(()));
            tracing::debug!("committer closed");
        }
        None => tracing::debug!("committer stopped: every handle is gone"),
    }
}

fn reject(job: Job, cause: &StoreError) {
    job.finish(Err(poisoned(cause)));
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;

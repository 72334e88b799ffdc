//! The hub's handle, its builder, and the state every part of the hub shares.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use iot_dm_core::clock::{Clock, SystemClock, Timestamp};
use iot_dm_core::twin::TwinLimits;

use super::engine::log::{self as persist, Sequencer};
use super::engine::space::SpaceGuard;
use super::engine::State;
use super::{fleet, registry, sessions, HubError, HubEvent, Telemetry};
use crate::store::{Committer, MemoryStore, Store};

/// Where the hub keeps its data.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Storage {
    /// In memory only: nothing survives the process (tests, embedding).
    Memory,
    /// The embedded durable store in one file (the default for a served hub).
    #[cfg(feature = "store-redb")]
    Redb(PathBuf),
    /// A store of your own.
    Custom(Arc<dyn Store>),
}

/// Builds a [`Hub`].
#[derive(Debug)]
pub struct HubBuilder {
    storage: Storage,
    limits: TwinLimits,
    clock: Arc<dyn Clock>,
    host_name: String,
    event_capacity: usize,
    checkpoint_interval: std::time::Duration,
    jobs: fleet::jobs::JobsConfig,
    max_configurations: usize,
    max_alert_rules: usize,
    min_free_space: u64,
    /// The event stream's retention: events and bytes.
    retention: (usize, usize),
    /// Where firmware artifacts live (next to the durable store when not set).
    artifact_dir: Option<PathBuf>,
    max_artifact_size: u64,
}

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            storage: Storage::Memory,
            limits: TwinLimits::default(),
            clock: Arc::new(SystemClock),
            host_name: "localhost".into(),
            event_capacity: 4096,
            checkpoint_interval: std::time::Duration::from_secs(1),
            jobs: fleet::jobs::JobsConfig::default(),
            max_configurations: fleet::configurations::DEFAULT_MAX,
            max_alert_rules: fleet::alerts::DEFAULT_MAX,
            min_free_space: super::engine::space::DEFAULT_MIN_FREE_SPACE,
            retention: (
                super::DEFAULT_EVENT_RETENTION,
                super::DEFAULT_EVENT_RETENTION_BYTES,
            ),
            artifact_dir: None,
            max_artifact_size: crate::artifacts::DEFAULT_MAX_ARTIFACT_SIZE,
        }
    }
}

impl HubBuilder {
    /// Keeps everything in memory (the default).
    pub fn in_memory(mut self) -> Self {
        self.storage = Storage::Memory;
        self
    }

    /// Uses the embedded durable store at `path` (created when missing).
    #[cfg(feature = "store-redb")]
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.storage = Storage::Redb(path.into());
        self
    }

    /// Uses a store of your own.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.storage = Storage::Custom(store);
        self
    }

    /// Twin limits (IoT Hub's by default).
    pub fn limits(mut self, limits: TwinLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock (the system clock by default); tests pass a manual one.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The host name devices put in their SAS tokens and MQTT user names (`localhost` by
    /// default).
    pub fn host_name(mut self, host: impl Into<String>) -> Self {
        self.host_name = host.into();
        self
    }

    /// How many events a slow event subscriber may lag behind before it misses some.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(16);
        self
    }

    /// How often logged reported patches are folded into device records (1 s by default; the
    /// log is also folded early when it grows large). Shorter means a shorter log to replay
    /// after a crash.
    pub fn checkpoint_interval(mut self, every: std::time::Duration) -> Self {
        self.checkpoint_interval = every.max(std::time::Duration::from_millis(10));
        self
    }

    /// How many jobs may be queued, scheduled or running at once
    /// ([`DEFAULT_MAX_ACTIVE_JOBS`](crate::hub::DEFAULT_MAX_ACTIVE_JOBS) by default); creating
    /// one more fails with `429004 ThrottlingMaxActiveJobCountExceeded`.
    pub fn max_active_jobs(mut self, n: usize) -> Self {
        self.jobs.max_active = n.max(1);
        self
    }

    /// How long a job that ended is kept, with its device records
    /// ([`DEFAULT_JOB_RETENTION`](crate::hub::DEFAULT_JOB_RETENTION), 30 days, by default).
    pub fn job_retention(mut self, keep: std::time::Duration) -> Self {
        self.jobs.retention = keep;
        self
    }

    /// How many automatic device configurations the hub keeps at most
    /// ([`DEFAULT_MAX_CONFIGURATIONS`](iot_dm_core::configuration::DEFAULT_MAX_CONFIGURATIONS),
    /// IoT Hub's 100, by default; at least 1); creating one more fails with `413101
    /// ConfigurationCountLimitExceeded`.
    pub fn max_configurations(mut self, n: usize) -> Self {
        self.max_configurations = n.max(1);
        self
    }

    /// How many alert rules the hub keeps at most (default 100; at least 1).
    pub fn max_alert_rules(mut self, n: usize) -> Self {
        self.max_alert_rules = n.max(1);
        self
    }

    /// The free space a write needs on the disk holding the embedded durable store
    /// ([`DEFAULT_MIN_FREE_SPACE`](crate::hub::DEFAULT_MIN_FREE_SPACE), 16 MiB, by default; 0
    /// turns the check off). Under it writes are refused with
    /// [`HubError::InsufficientStorage`] (HTTP 507) before anything changes, and succeed again
    /// once space returns; reads go on. Other stores are not checked.
    pub fn min_free_space(mut self, bytes: u64) -> Self {
        self.min_free_space = bytes;
        self
    }

    /// How many recent events the event stream keeps for readers that resume (`GET /events`
    /// with `Last-Event-ID`), by count and by bytes
    /// ([`DEFAULT_EVENT_RETENTION`](crate::hub::DEFAULT_EVENT_RETENTION) and
    /// [`DEFAULT_EVENT_RETENTION_BYTES`](crate::hub::DEFAULT_EVENT_RETENTION_BYTES) by
    /// default; the newest event is always kept). It is also how far a slow reader may fall
    /// behind before it is told it lost events.
    pub fn event_retention(mut self, max_events: usize, max_bytes: usize) -> Self {
        self.retention = (max_events.max(1), max_bytes);
        self
    }

    /// Keeps firmware artifacts in this directory (created when missing). By default they
    /// are kept next to the embedded durable store (`hub.redb` → `hub.artifacts/`), and in
    /// memory for any other store.
    pub fn artifact_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.artifact_dir = Some(dir.into());
        self
    }

    /// The largest firmware artifact accepted, in bytes
    /// ([`DEFAULT_MAX_ARTIFACT_SIZE`](crate::artifacts::DEFAULT_MAX_ARTIFACT_SIZE), 1 GiB, by
    /// default); a larger upload is refused with
    /// [`ArtifactError::TooLarge`](crate::artifacts::ArtifactError::TooLarge) (HTTP 413).
    pub fn max_artifact_size(mut self, bytes: u64) -> Self {
        self.max_artifact_size = bytes;
        self
    }

    /// Opens the store, loads every device, replays the log, and returns the hub.
    pub async fn open(self) -> Result<Hub, HubError> {
        let artifact_dir = self.artifact_dir.clone().or(match &self.storage {
            #[cfg(feature = "store-redb")]
            Storage::Redb(path) => Some(path.with_extension("artifacts")),
            _ => None,
        });
        let blobs: Arc<dyn crate::artifacts::BlobStore> = match artifact_dir {
            Some(dir) => Arc::new(crate::artifacts::FsBlobStore::open(dir).await?),
            None => Arc::new(crate::artifacts::MemoryBlobStore::new()),
        };
        let artifacts = crate::artifacts::ArtifactStore::new(blobs, self.max_artifact_size);
        #[cfg_attr(not(feature = "store-redb"), allow(unused_mut))]
        let mut space = None;
        let store: Arc<dyn Store> = match self.storage {
            Storage::Memory => Arc::new(MemoryStore::new()),
            #[cfg(feature = "store-redb")]
            Storage::Redb(path) => {
                space = Some(SpaceGuard::new(&path, self.min_free_space));
                Arc::new(open_redb(path).await?)
            }
            Storage::Custom(s) => s,
        };
        let started = std::time::Instant::now();
        let state = State::load(store.as_ref()).await?;
        let sequencer = Sequencer::default();
        let cas = registry::CaRegistry::load(store.as_ref()).await?;
        let policies = registry::load_policies(store.as_ref(), self.clock.now()).await?;
        let replayed = persist::replay(store.as_ref(), &state, &sequencer).await?;
        let (jobs, job_commands) =
            fleet::jobs::Jobs::open(store.as_ref(), self.jobs, self.clock.now()).await?;
        let (configurations, configuration_signals) =
            fleet::configurations::Configurations::open(store.as_ref(), self.max_configurations)
                .await?;
        let (alerts, alert_signals) =
            fleet::alerts::Alerts::open(store.as_ref(), self.max_alert_rules).await?;
        tracing::info!(
            devices = state.devices.len(),
            replayed,
            backend = store.backend(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "hub opened"
        );
        let committer = Committer::new(store.clone());
        let (events, _) = broadcast::channel(self.event_capacity);
        let (telemetry, _) = broadcast::channel(self.event_capacity);
        let stream = Arc::new(super::stream::ring::Ring::new(
            self.retention.0,
            self.retention.1,
            super::stream::first_id(self.clock.now()),
        ));
        let hub = Hub {
            inner: Arc::new(Inner {
                state,
                backend: store.backend(),
                closed: std::sync::atomic::AtomicBool::new(false),
                committer,
                space,
                clock: self.clock,
                limits: self.limits,
                host_name: self.host_name,
                events,
                telemetry,
                stream,
                sessions: sessions::Sessions::default(),
                sequencer,
                cas,
                policies,
                jobs,
                configurations,
                alerts,
                artifacts,
            }),
        };
        persist::spawn_checkpointer(Arc::downgrade(&hub.inner), self.checkpoint_interval);
        fleet::jobs::spawn_scheduler(&hub.inner, job_commands);
        fleet::configurations::spawn_engine(&hub.inner, configuration_signals);
        fleet::alerts::spawn_engine(&hub.inner, alert_signals);
        Ok(hub)
    }
}

#[cfg(feature = "store-redb")]
async fn open_redb(path: PathBuf) -> Result<crate::store::RedbStore, HubError> {
    Ok(crate::store::RedbStore::open(path).await?)
}

pub(crate) struct Inner {
    pub(crate) state: State,
    pub(crate) backend: &'static str,
    pub(crate) closed: std::sync::atomic::AtomicBool,
    pub(crate) committer: Committer,
    /// The free space writes need on the store's disk (the embedded durable store only).
    pub(crate) space: Option<SpaceGuard>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: TwinLimits,
    pub(crate) host_name: String,
    pub(crate) events: broadcast::Sender<HubEvent>,
    pub(crate) telemetry: broadcast::Sender<Arc<Telemetry>>,
    /// The event stream's retention ring.
    pub(crate) stream: Arc<super::stream::ring::Ring>,
    pub(crate) sessions: sessions::Sessions,
    pub(crate) sequencer: Sequencer,
    pub(crate) cas: registry::CaRegistry,
    pub(crate) policies: registry::PolicyRegistry,
    pub(crate) jobs: fleet::jobs::Jobs,
    pub(crate) configurations: fleet::configurations::Configurations,
    pub(crate) alerts: fleet::alerts::Alerts,
    /// The firmware artifact store.
    pub(crate) artifacts: crate::artifacts::ArtifactStore,
}

/// The hub. See the [module docs](self).
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("host_name", &self.inner.host_name)
            .field("devices", &self.inner.state.devices.len())
            .field("backend", &self.inner.backend)
            .finish()
    }
}

impl Hub {
    /// A builder with the defaults: in memory, IoT Hub's limits, the system clock.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The host name devices address.
    pub fn host_name(&self) -> &str {
        &self.inner.host_name
    }

    /// Subscribes to the hub's events.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// Number of device identities (planned, provisioned and retired).
    pub fn device_count(&self) -> usize {
        self.inner.state.devices.len()
    }

    /// Shuts the hub down: refuses new sessions, closes the live ones, folds the log into
    /// device records, and closes the store (a redb file is released once this returns, so
    /// the same store can be opened again). Afterwards every operation on any handle of this
    /// hub fails with [`HubError::Closed`].
    pub async fn shutdown(&self) -> Result<(), HubError> {
        use std::sync::atomic::Ordering;
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.close_all_sessions("the hub is shutting down");
        self.inner.stream.close();
        let folded = persist::checkpoint(&self.inner).await;
        self.inner.committer.close().await?;
        tracing::info!("hub shut down");
        folded.map(|_| ())
    }

    /// Whether [`Hub::shutdown`] has run.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Folds logged reported patches into device records now, and returns once that is
    /// durable (call before a planned shutdown to make the next start faster).
    pub async fn checkpoint(&self) -> Result<usize, HubError> {
        persist::checkpoint(&self.inner).await
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn emit(&self, event: HubEvent) {
        // cloned only for subscribers (none is fine)
        if self.inner.events.receiver_count() > 0 {
            let _ = self.inner.events.send(event.clone());
        }
        self.record(event);
    }
}

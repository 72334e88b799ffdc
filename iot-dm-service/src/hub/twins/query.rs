//! Twin queries over the live store, with read-your-writes: a query sees every write that was
//! acknowledged before it started.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use iot_dm_core::query::{Collection, Condition, Page, PageRequest, Query, TwinKey};
use iot_dm_core::twin::Twin;

use crate::api::QueryApi;
use crate::hub::engine::lock;
use crate::hub::error::HubError;
use crate::hub::Hub;

/// Which twins a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    /// Planned and provisioned devices.
    Live,
    /// Retired devices.
    Archive,
}

impl Hub {
    /// Snapshots of the twins in `set`, in device-id order, from `start` on. Each is taken
    /// under its entry's lock for an instant; nothing is held while the caller evaluates.
    fn snapshots<'a>(
        &'a self,
        start: Option<TwinKey>,
        set: Set,
    ) -> impl Iterator<Item = Arc<Twin>> + 'a {
        let devices = &self.inner.state.devices;
        let entries: Box<dyn Iterator<Item = _> + 'a> = match start {
            Some(k) => Box::new(devices.range(k.device_id..)),
            None => Box::new(devices.iter()),
        };
        entries.filter_map(move |e| {
            let g = lock(e.value());
            let wanted = !g.deleted
                && match set {
                    Set::Live => g.is_live(),
                    Set::Archive => !g.is_live(),
                };
            wanted.then(|| g.twin.clone())
        })
    }

    fn run(&self, sql: &str, set: Set) -> Result<Vec<Value>, HubError> {
        let query = Query::parse(sql)?;
        let twins: Vec<Arc<Twin>> = self.snapshots(None, set).collect();
        Ok(query.execute(twins.iter().map(|t| &**t))?)
    }

    fn run_page(&self, sql: &str, request: &PageRequest, set: Set) -> Result<Page, HubError> {
        let query = Query::parse(sql)?;
        let start = query.resume_key(request)?;
        Ok(query.page(self.snapshots(start, set), request)?)
    }

    /// Runs a query over the twins of planned and provisioned devices and returns every row.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use iot_dm_service::hub::{DeviceSpec, Hub};
    /// use serde_json::json;
    /// let hub = Hub::builder().open().await?;
    /// for (id, region) in [("a", "us-west"), ("b", "eu-north"), ("c", "us-west")] {
    ///     hub.create_device(DeviceSpec::new(id.parse()?).tags(json!({"region": region}))).await?;
    /// }
    /// let rows = hub.query("SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region")?;
    /// assert!(rows.contains(&json!({"region": "us-west", "n": 2})));
    /// # Ok(()) }
    /// ```
    pub fn query(&self, sql: &str) -> Result<Vec<Value>, HubError> {
        self.run(sql, Set::Live)
    }

    /// One page of a query over the live twins (page size 1 to 1000, default 100); pass the
    /// returned continuation in the next request. Paging while devices change never repeats
    /// or skips a twin that did not change.
    pub fn query_page(&self, sql: &str, request: &PageRequest) -> Result<Page, HubError> {
        self.run_page(sql, request, Set::Live)
    }

    /// Runs a query over the archived twins of retired devices.
    pub fn query_archive(&self, sql: &str) -> Result<Vec<Value>, HubError> {
        self.run(sql, Set::Archive)
    }

    /// One page of a query over the archived twins.
    pub fn query_archive_page(&self, sql: &str, request: &PageRequest) -> Result<Page, HubError> {
        self.run_page(sql, request, Set::Archive)
    }

    /// The live twins a condition (a `WHERE` clause, as jobs and configurations target with)
    /// selects, in device-id order.
    pub fn twins_matching(&self, condition: &Condition) -> Vec<Arc<Twin>> {
        self.snapshots(None, Set::Live)
            .filter(|t| condition.matches(t))
            .collect()
    }

    /// Every live twin, in device-id order (the target of a `*` job).
    pub(crate) fn live_twins(&self) -> Vec<Arc<Twin>> {
        self.snapshots(None, Set::Live).collect()
    }
}

/// Queries of the embedded hub: the synchronous inherent methods, for in-process callers.
#[async_trait]
impl QueryApi for Hub {
    /// `FROM devices.jobs` reads the jobs' device records (see the jobs wing).
    async fn query_page(&self, sql: &str, request: &PageRequest) -> Result<Page, HubError> {
        let query = Query::parse(sql)?;
        let page = if query.collection() == Collection::Jobs {
            self.query_device_jobs(&query, request).await?
        } else {
            Hub::query_page(self, sql, request)?
        };
        // shown outside the hub: only once durable (see `Inner::settled`)
        self.inner.settled().await?;
        Ok(page)
    }

    async fn query_archive_page(&self, sql: &str, request: &PageRequest) -> Result<Page, HubError> {
        let page = Hub::query_archive_page(self, sql, request)?;
        self.inner.settled().await?;
        Ok(page)
    }
}

//! [`ServiceClient::events`]: the hub's event stream (`GET /events`, Server-Sent Events) as an
//! async [`Stream`](futures_core::Stream), resumed with `Last-Event-ID` after a dropped
//! connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Method;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use iot_dm_core::events::sse::{SseFrame, SseItem, SseParser};
use iot_dm_core::events::{EventTypes, Lost, LOST};

use super::errors::{self, About};
use super::{path, ServiceClient};
use crate::HubError;

/// The first wait before reconnecting; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The largest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Items read ahead of the caller.
const AHEAD: usize = 256;

/// What to read of the stream: every type, every device, from now on, for ever, unless
/// narrowed.
///
/// ```
/// use iot_dm_service::client::EventsRequest;
/// use std::time::Duration;
/// let r = EventsRequest::new()
///     .types("twin.changed,device.connected".parse()?)
///     .devices("tags.site = 'north'")
///     .after(41)
///     .limit(100)
///     .timeout(Duration::from_secs(30));
/// assert_eq!(r.last_event_id(), Some(41));
/// # Ok::<(), iot_dm_core::events::UnknownEventType>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventsRequest {
    types: Option<EventTypes>,
    devices: Option<String>,
    after: Option<u64>,
    limit: Option<u64>,
    timeout: Option<Duration>,
}

impl EventsRequest {
    /// Every event from now on.
    pub fn new() -> EventsRequest {
        EventsRequest::default()
    }

    /// Only these types (`types=`).
    pub fn types(mut self, types: EventTypes) -> Self {
        self.types = Some(types);
        self
    }

    /// Only events about devices whose current twin matches this `WHERE` condition
    /// (`devices=`); events about no device (a job's) pass.
    pub fn devices(mut self, condition: impl Into<String>) -> Self {
        self.devices = Some(condition.into());
        self
    }

    /// Starts after this event id (`Last-Event-ID`).
    pub fn after(mut self, id: u64) -> Self {
        self.after = Some(id);
        self
    }

    /// Ends after this many items (`lost` signals included).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Ends after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The id the stream starts after, if any.
    pub fn last_event_id(&self) -> Option<u64> {
        self.after
    }
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The hub's sequence number of the event.
    pub id: u64,
    /// The type name (`twin.changed`, ...; see [`EventType`](iot_dm_core::events::EventType)).
    pub event_type: String,
    /// The JSON data: `id`, `type`, `time`, `deviceId` when about a device, and the fields of
    /// the type.
    pub data: Value,
}

impl StreamEvent {
    /// The device it is about, if any.
    pub fn device_id(&self) -> Option<&str> {
        self.data.get("deviceId").and_then(Value::as_str)
    }

    /// When the hub recorded it (RFC 3339).
    pub fn time(&self) -> Option<&str> {
        self.data.get("time").and_then(Value::as_str)
    }
}

/// What [`EventStream`] yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventItem {
    /// An event.
    Event(StreamEvent),
    /// Events were lost before the next one: resumed after an id older than the hub retains,
    /// or read too slowly.
    Lost(Lost),
}

/// The hub's event stream, from [`ServiceClient::events`]. It yields items in id order and
/// reconnects by itself when the connection drops (waiting 100 ms, doubling up to 5 s),
/// resuming after the last id it yielded, so nothing is repeated or skipped unnoticed (what
/// the hub no longer retains arrives as [`EventItem::Lost`]). A refusal (a bad parameter,
/// missing rights) is yielded as an error and ends the stream; so does a bound
/// ([`EventsRequest::limit`], [`EventsRequest::timeout`]) being reached. Dropping it closes the
/// connection.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Result<EventItem, HubError>>,
    last: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl EventStream {
    /// The next item; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<EventItem, HubError>> {
        self.rx.recv().await
    }

    /// The id of the last item read from the hub (what a reconnection resumes after).
    pub fn last_event_id(&self) -> Option<u64> {
        match self.last.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }
}

impl futures_core::Stream for EventStream {
    type Item = Result<EventItem, HubError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServiceClient {
    /// The hub's event stream (`GET /events`), resumed by itself after a dropped connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use iot_dm_service::api::prelude::*;
    /// use iot_dm_service::client::{EventItem, EventsRequest, ServiceClient};
    /// use iot_dm_service::hub::DeviceSpec;
    /// use iot_dm_service::rest::RestServer;
    /// use iot_dm_service::Hub;
    ///
    /// let hub = Hub::builder().open().await?;
    /// let server = RestServer::builder(hub.clone()).start().await?;
    /// let client = ServiceClient::builder(&hub.service_connection_string("iothubowner")?)?
    ///     .base_url(&format!("http://{}", server.local_addr()))?
    ///     .build()?;
    /// hub.create_device(DeviceSpec::new("pump-1".parse()?)).await?;
    /// let mut events = client.events(EventsRequest::new().after(0).limit(1));
    /// let first = events.next().await.expect("an item")?;
    /// // a fresh hub's numbering starts far above 0: a `lost` signal says so first
    /// assert!(matches!(first, EventItem::Lost(_)));
    /// assert!(events.next().await.is_none());
    /// server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn events(&self, request: EventsRequest) -> EventStream {
        let (tx, rx) = mpsc::channel(AHEAD);
        let last = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(follow(self.clone(), request, tx, last.clone()));
        EventStream { rx, last, task }
    }

    /// Sends `GET /events` on a new connection and returns the body of a success.
    async fn open_events(
        &self,
        request: &EventsRequest,
        after: Option<u64>,
        limit: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<Incoming, HubError> {
        let mut query = Vec::new();
        if let Some(t) = request.types {
            query.push(("types", t.to_string()));
        }
        if let Some(d) = &request.devices {
            query.push(("devices", d.clone()));
        }
        if let Some(n) = limit {
            query.push(("limit", n.to_string()));
        }
        if let Some(t) = timeout {
            // whole seconds, rounded up; the client ends the stream on time itself
            let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
            query.push(("timeout", secs.max(1).to_string()));
        }
        let mut headers = vec![("accept", "text/event-stream".to_string())];
        if let Some(id) = after {
            headers.push(("last-event-id", id.to_string()));
        }
        let http = self.request(Method::GET, &path(&["events"], &query), &headers, None)?;
        let opened = async {
            let mut sender = self.inner.target.connect().await?;
            sender.ready().await.map_err(|e| HubError::Transport {
                message: format!("the hub closed a new connection: {e}"),
            })?;
            sender
                .send_request(http)
                .await
                .map_err(|e| HubError::Transport {
                    message: format!("request to {}: {e}", self.host_name()),
                })
        };
        let budget = self.inner.request_timeout;
        let response =
            tokio::time::timeout(budget, opened)
                .await
                .map_err(|_| HubError::Transport {
                    message: format!("no answer from {} within {budget:?}", self.host_name()),
                })??;
        let (parts, body) = response.into_parts();
        if parts.status.is_success() {
            return Ok(body);
        }
        let body = Limited::new(body, MAX_ERROR_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Err(errors::from_response(
            parts.status,
            &parts.headers,
            &body,
            About::default(),
        ))
    }
}

/// Whether a failure to open the stream is worth another try.
fn retryable(e: &HubError) -> bool {
    matches!(e, HubError::Transport { .. } | HubError::Throttled { .. }) || e.http_status() >= 500
}

/// How a connection's stream ended.
enum Ended {
    /// The caller dropped the stream, or a bound was reached.
    Done,
    /// The connection ended or broke: reconnect.
    Dropped,
}

async fn follow(
    client: ServiceClient,
    request: EventsRequest,
    tx: mpsc::Sender<Result<EventItem, HubError>>,
    last: Arc<AtomicU64>,
) {
    let deadline = request.timeout.map(|t| Instant::now() + t);
    let mut delivered = 0u64;
    let mut backoff = MIN_BACKOFF;
    loop {
        let limit = request.limit.map(|l| l.saturating_sub(delivered));
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if limit == Some(0) || left.is_some_and(|t| t.is_zero()) {
            return;
        }
        let after = match last.load(Ordering::Acquire) {
            0 => request.after,
            n => Some(n),
        };
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let read = async {
            match client.open_events(&request, after, limit, left).await {
                Ok(body) => {
                    backoff = MIN_BACKOFF;
                    Ok(read(body, &tx, &last, &mut delivered, request.limit).await)
                }
                Err(e) => Err(e),
            }
        };
        let outcome = tokio::select! {
            r = read => r,
            _ = until => return,
        };
        match outcome {
            Ok(Ended::Done) => return,
            Ok(Ended::Dropped) => tracing::debug!("event stream dropped; resuming"),
            Err(e) if retryable(&e) => {
                tracing::debug!(error = %e, "event stream not opened; retrying")
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads one connection's frames into `tx`.
async fn read(
    mut body: Incoming,
    tx: &mpsc::Sender<Result<EventItem, HubError>>,
    last: &AtomicU64,
    delivered: &mut u64,
    limit: Option<u64>,
) -> Ended {
    let mut parser = SseParser::new();
    loop {
        let chunk = match body.frame().await {
            None | Some(Err(_)) => return Ended::Dropped,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let Ok(items) = parser.feed(&chunk) else {
            return Ended::Dropped;
        };
        for item in items {
            let SseItem::Frame(frame) = item else {
                continue;
            };
            let Some((id, item)) = decode(frame) else {
                continue;
            };
            last.store(id, Ordering::Release);
            if tx.send(item).await.is_err() {
                return Ended::Done;
            }
            *delivered += 1;
            if limit.is_some_and(|l| *delivered >= l) {
                return Ended::Done;
            }
        }
    }
}

/// A frame as an item, with its id; frames without an id (none the hub sends) are skipped.
fn decode(frame: SseFrame) -> Option<(u64, Result<EventItem, HubError>)> {
    let id: u64 = frame.id.as_deref()?.parse().ok()?;
    let event = frame.event.unwrap_or_default();
    let bad = |e: serde_json::Error| HubError::Transport {
        message: format!("the hub sent a {event:?} event that is not JSON: {e}"),
    };
    let item = if event == LOST {
        serde_json::from_str::<Lost>(&frame.data)
            .map(EventItem::Lost)
            .map_err(bad)
    } else {
        serde_json::from_str::<Value>(&frame.data)
            .map(|data| {
                EventItem::Event(StreamEvent {
                    id,
                    event_type: event.clone(),
                    data,
                })
            })
            .map_err(bad)
    };
    Some((id, item))
}

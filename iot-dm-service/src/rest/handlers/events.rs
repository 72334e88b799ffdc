//! `GET /events`: the hub's event stream as Server-Sent Events.
//!
//! Query parameters (each refused with a 400 naming it): `types` (comma-separated event type
//! names; every type by default), `devices` (a query `WHERE` condition over twins, evaluated on
//! the device's current twin when the event is delivered), `limit` (end after this many
//! events, `lost` signals included) and `timeout` (end after this many seconds). The
//! `Last-Event-ID` header resumes after an id. Telemetry needs `ServiceConnect`: asked for by
//! name without it, the request is refused (403); without `types`, it is left out. The stream
//! ends when the request's token expires (a client reconnects with a fresh one).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use iot_dm_core::events::sse::{write_comment, SseFrame};
use iot_dm_core::events::{EventType, EventTypes, Lost, LOST};
use iot_dm_core::query::Condition;
use iot_dm_core::wire::SasToken;

use crate::access::Rights;
use crate::hub::{Recorded, StreamItem};
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{route, twin_read, Route};
use crate::{Hub, HubError};

pub(crate) fn routes() -> Vec<Route> {
    vec![route!(GET "/events", twin_read(), events)]
}

/// The most events `limit` may ask for.
const MAX_LIMIT: u64 = 1_000_000;
/// The longest `timeout`, in seconds (a day).
const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Bytes of frames sent to the connection at once, at most (more when one frame is larger).
const CHUNK: usize = 64 * 1024;
/// Chunks queued for the connection: a reader slower than the hub is held back here and
/// then in the retention ring, where it falls behind (and is told) rather than slowing the
/// hub down.
const QUEUED_CHUNKS: usize = 4;

/// What one request asked for.
struct Ask {
    types: EventTypes,
    devices: Option<Condition>,
    limit: Option<u64>,
    timeout: Option<Duration>,
    after: Option<u64>,
    /// How long the request's token is still valid: the stream ends then.
    token_left: Option<Duration>,
}

fn number(cx: &Ctx, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
    match cx.query(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::argument(
                name,
                format!("{v:?} is not a whole number in 1..={max}"),
            )),
        },
    }
}

fn ask(cx: &Ctx) -> Result<Ask, ApiError> {
    let may_read_telemetry = cx.grant.rights.intersects(Rights::SERVICE_CONNECT);
    let types = match cx.query("types") {
        Some(list) if !list.trim().is_empty() => {
            let types: EventTypes = list.parse().map_err(|e| ApiError::argument("types", e))?;
            if types.contains(EventType::Telemetry) && !may_read_telemetry {
                return Err(ApiError::from(HubError::Forbidden {
                    message: format!(
                        "telemetry events need ServiceConnect; policy {:?} has [{}]",
                        cx.grant.policy, cx.grant.rights
                    ),
                }));
            }
            types
        }
        _ => {
            let mut all = EventTypes::none();
            for t in EventType::ALL {
                if t != EventType::Telemetry || may_read_telemetry {
                    all = all.with(t);
                }
            }
            all
        }
    };
    let devices = match cx.query("devices") {
        Some(c) if !c.trim().is_empty() => {
            Some(Condition::parse(c).map_err(|e| ApiError::argument("devices", e))?)
        }
        _ => None,
    };
    let after = match cx.header("last-event-id")? {
        None | Some("") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::argument("Last-Event-ID", format!("{v:?} is not an event id"))
        })?),
    };
    // authorized already, so the header holds a valid token
    let token_left = cx
        .header("authorization")?
        .and_then(|h| SasToken::parse(h).ok())
        .map(|t| t.expiry().since(cx.hub.now()));
    Ok(Ask {
        token_left,
        types,
        devices,
        limit: number(cx, "limit", MAX_LIMIT)?,
        timeout: number(cx, "timeout", MAX_TIMEOUT_SECS)?.map(Duration::from_secs),
        after,
    })
}

async fn events(cx: Ctx) -> Result<Reply, ApiError> {
    let ask = ask(&cx)?;
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    tokio::spawn(pump(cx, ask, tx));
    Ok(Reply::stream("text/event-stream", rx)
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no"))
}

/// Whether `r` passes the request's filters.
fn wanted(hub: &Hub, ask: &Ask, r: &Recorded) -> bool {
    if !ask.types.contains(r.event_type()) {
        return false;
    }
    match (&ask.devices, r.device_id()) {
        (None, _) | (Some(_), None) => true,
        (Some(c), Some(d)) => hub.get_twin(d.as_str()).is_ok_and(|t| c.matches(&t)),
    }
}

/// Appends the frame of an item; false when the item is filtered out.
fn frame(hub: &Hub, ask: &Ask, item: &StreamItem, out: &mut Vec<u8>) -> bool {
    let frame = match item {
        StreamItem::Event(r) => {
            if !wanted(hub, ask, r) {
                return false;
            }
            SseFrame::new(r.event_type().as_str(), r.to_json().to_string())
                .with_id(r.id.to_string())
        }
        StreamItem::Lost(l) => lost_frame(l),
    };
    if let Err(e) = frame.write_to(out) {
        // ids, type names and compact JSON hold no line break
        tracing::error!(error = %e, "event frame not written");
        return false;
    }
    true
}

fn lost_frame(l: &Lost) -> SseFrame {
    let data = serde_json::to_string(l).unwrap_or_default();
    SseFrame::new(LOST, data).with_id(l.next.saturating_sub(1).to_string())
}

/// Reads the stream for one request and sends its frames until the reader goes away, the
/// limit or timeout is reached, the hub shuts down, or the server stops.
async fn pump(cx: Ctx, ask: Ask, tx: mpsc::Sender<Bytes>) {
    let policy = cx.grant.policy.clone();
    tracing::debug!(policy, after = ?ask.after, types = %ask.types, "event stream opened");
    let mut sent = 0u64;
    let why = frames(cx, &ask, tx, &mut sent).await;
    tracing::debug!(policy, sent, why, "event stream ended");
}

/// The loop of [`pump`]; returns why it ended.
async fn frames(cx: Ctx, ask: &Ask, tx: mpsc::Sender<Bytes>, sent: &mut u64) -> &'static str {
    let hub = cx.hub;
    let mut stop = cx.streams.stop;
    let keep_alive = cx.streams.keep_alive;
    let mut cursor = hub.event_stream(ask.after);
    let deadline = match (ask.timeout, ask.token_left) {
        (Some(a), Some(b)) => Some(Instant::now() + a.min(b)),
        (a, b) => a.or(b).map(|t| Instant::now() + t),
    };
    let mut ping = Box::pin(tokio::time::sleep(keep_alive));
    let until = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until);
    // a retry hint for browsers, and the headers on their way at once
    let mut out = b"retry: 1000\n\n".to_vec();
    loop {
        if !out.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut out));
            tokio::select! {
                r = tx.send(chunk) => if r.is_err() { return "the reader left" },
                Ok(_) = stop.wait_for(|s| *s) => return "the server stopped",
                _ = &mut until => return "timeout or token expiry",
            }
            ping.as_mut()
                .reset(tokio::time::Instant::now() + keep_alive);
        }
        if ask.limit.is_some_and(|l| *sent >= l) {
            return "the limit was reached";
        }
        tokio::select! {
            item = cursor.next() => {
                let Some(item) = item else { return "the hub shut down" };
                if frame(&hub, ask, &item, &mut out) {
                    *sent += 1;
                }
                // take what else is there now, up to a chunk
                while out.len() < CHUNK && ask.limit.is_none_or(|l| *sent < l) {
                    let Some(item) = cursor.try_next() else { break };
                    if frame(&hub, ask, &item, &mut out) {
                        *sent += 1;
                    }
                }
            }
            _ = &mut ping => {
                let _ = write_comment(&mut out, "ping");
                out.push(b'\n');
                ping.as_mut().reset(tokio::time::Instant::now() + keep_alive);
            }
            Ok(_) = stop.wait_for(|s| *s) => return "the server stopped",
            _ = &mut until => return "timeout or token expiry",
            // the reader went away while the stream was idle
            _ = tx.closed() => return "the reader left",
        }
    }
}

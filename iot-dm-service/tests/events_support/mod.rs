//! A hub served on 127.0.0.1 (MQTT over plain TCP, REST over plain HTTP), tokens for its
//! policies, and a raw Server-Sent Events reader over one HTTP/1.1 connection.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::events::sse::{SseFrame, SseItem, SseParser};
use iot_dm_core::wire::ServiceConnectionString;
use iot_dm_service::access::{AccessPolicy, Rights};
use iot_dm_service::api::prelude::*;
use iot_dm_service::mqtt::Listener;
use iot_dm_service::rest::RestServerBuilder;
use iot_dm_service::{Hub, HubBuilder, HubServer};

pub const HOST: &str = "localhost";
pub const WAIT: Duration = Duration::from_secs(10);
pub const API: &str = "api-version=2021-04-12";

pub struct Env {
    pub hub: Hub,
    pub server: HubServer,
    pub rest: SocketAddr,
    pub mqtt: SocketAddr,
}

pub async fn env(
    tune: impl FnOnce(HubBuilder) -> HubBuilder,
    rest: impl FnOnce(RestServerBuilder) -> RestServerBuilder,
) -> Env {
    let hub = tune(Hub::builder().in_memory().host_name(HOST))
        .open()
        .await
        .unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tcp, any)
        .rest_listen(any)
        .rest_with(rest)
        .start()
        .await
        .unwrap();
    Env {
        rest: server.rest_addr().unwrap(),
        mqtt: server.mqtt_addr(Listener::Tcp).unwrap(),
        hub,
        server,
    }
}

/// A SAS token of `policy`, made from its connection string.
pub fn token_of(hub: &Hub, policy: &str) -> String {
    token_for(hub, policy, 3600)
}

/// A SAS token of `policy` valid for `secs` seconds.
pub fn token_for(hub: &Hub, policy: &str, secs: i64) -> String {
    let cs = hub.service_connection_string(policy).unwrap();
    let cs = ServiceConnectionString::parse(&cs).unwrap();
    let expiry = Timestamp::from_unix_secs(Timestamp::now().unix_secs() + secs);
    cs.sas_token(expiry).as_str().to_string()
}

pub fn owner(hub: &Hub) -> String {
    token_of(hub, "iothubowner")
}

/// Stores a policy with `rights` and returns a token of it.
pub async fn token_with(hub: &Hub, name: &str, rights: Rights) -> String {
    hub.put_access_policy(AccessPolicy::new(name, rights).with_rate_limit(None))
        .await
        .unwrap();
    token_of(hub, name)
}

/// One event frame: id, type, data.
#[derive(Debug, Clone)]
pub struct Ev {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

impl Ev {
    pub fn device(&self) -> &str {
        self.data["deviceId"].as_str().unwrap_or_default()
    }
}

pub fn ev(f: &SseFrame) -> Ev {
    let id = f.id.as_deref().unwrap().parse().unwrap();
    let data: Value = serde_json::from_str(&f.data).unwrap();
    let event = f.event.clone().unwrap();
    if event != "lost" {
        assert_eq!(data["id"], id, "{data}");
        assert_eq!(data["type"], event.as_str(), "{data}");
        assert!(
            data["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{data}"
        );
    }
    Ev { id, event, data }
}

/// A refused request: status and message.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub body: String,
}

/// A raw SSE reader.
pub struct Sse {
    body: Incoming,
    parser: SseParser,
    pending: VecDeque<SseItem>,
    pub ended: bool,
}

/// Opens `GET /events?{query}` (a small receive buffer when `small_buffer`).
pub async fn open_with(
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
    last_id: Option<u64>,
    small_buffer: bool,
) -> Result<Sse, Refused> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if small_buffer {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let tcp = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(format!("/events?{API}&{query}"))
        .header("host", HOST)
        .header("accept", "text/event-stream");
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    if let Some(id) = last_id {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = tokio::time::timeout(
        WAIT,
        sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = resp.status();
    if !status.is_success() {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        return Err(Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Ok(Sse {
        body: resp.into_body(),
        parser: SseParser::new(),
        pending: VecDeque::new(),
        ended: false,
    })
}

pub async fn open(addr: SocketAddr, token: &str, query: &str, last_id: Option<u64>) -> Sse {
    match open_with(addr, Some(token), query, last_id, false).await {
        Ok(s) => s,
        Err(r) => panic!("refused: {r:?}"),
    }
}

impl Sse {
    /// The next frame or comment; `None` when the body ended. Waits at most [`WAIT`].
    pub async fn item(&mut self) -> Option<SseItem> {
        loop {
            if let Some(i) = self.pending.pop_front() {
                return Some(i);
            }
            if self.ended {
                return None;
            }
            let f = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("an SSE frame within the time limit");
            match f {
                None | Some(Err(_)) => self.ended = true,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.pending.extend(self.parser.feed(&data).unwrap());
                    }
                }
            }
        }
    }

    /// The next event frame (comments skipped).
    pub async fn next(&mut self) -> Option<Ev> {
        loop {
            match self.item().await? {
                SseItem::Frame(f) => return Some(ev(&f)),
                SseItem::Comment(_) => {}
            }
        }
    }

    /// Frames until `done` holds for the frames so far.
    pub async fn until(&mut self, mut done: impl FnMut(&[Ev]) -> bool) -> Vec<Ev> {
        let mut seen = Vec::new();
        while !done(&seen) {
            match self.next().await {
                Some(e) => seen.push(e),
                None => panic!("the stream ended; seen {seen:#?}"),
            }
        }
        seen
    }
}

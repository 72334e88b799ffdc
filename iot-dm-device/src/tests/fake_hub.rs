//! A fake hub for the client tests: one device twin, IoT Hub's topics, tokio channels for
//! the link halves, and knobs to drop the link, refuse credentials, stay silent or invoke
//! methods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::{
    ConnectRefused, ConnectRequest, Credentials, DeviceFrame, Endpoint, Link, LinkClosed, LinkRx,
    LinkTx, Message, QoS,
};
use iot_dm_core::twin::{desired_notification, Twin, TwinLimits};
use iot_dm_core::wire::{device_resource_uri, SasToken, SymmetricKey};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

struct ChanTx(mpsc::Sender<DeviceFrame>);
struct ChanRx(mpsc::Receiver<Message>);

#[async_trait::async_trait]
impl LinkTx<DeviceFrame> for ChanTx {
    async fn send(&mut self, item: DeviceFrame) -> Result<(), LinkClosed> {
        self.0.send(item).await.map_err(|_| LinkClosed)
    }
}

#[async_trait::async_trait]
impl LinkRx<Message> for ChanRx {
    async fn recv(&mut self) -> Option<Message> {
        self.0.recv().await
    }
}

/// A frame the hub received, with the session (1-based) it came on.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) session: usize,
    pub(crate) frame: DeviceFrame,
}

impl Received {
    pub(crate) fn publish(&self) -> Option<&Message> {
        match &self.frame {
            DeviceFrame::Publish(m) => Some(m),
            _ => None,
        }
    }
}

struct Session {
    n: usize,
    to_device: mpsc::Sender<Message>,
    subscriptions: Vec<String>,
    task: JoinHandle<()>,
}

struct State {
    twin: Twin,
    refuse: Option<ConnectRefused>,
    silent: bool,
    connects: Vec<ConnectRequest>,
    received: Vec<Received>,
    session: Option<Session>,
    sessions_ended: usize,
    next_method_rid: u64,
    method_waiters: HashMap<String, oneshot::Sender<(i32, Bytes)>>,
}

/// The fake hub. Clones share it.
#[derive(Clone)]
pub(crate) struct FakeHub {
    state: Arc<Mutex<State>>,
}

use super::DEVICE;

pub(crate) const DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
pub(crate) const METHOD_FILTER: &str = "$iothub/methods/POST/#";

fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000)
}

fn query(topic: &str, key: &str) -> Option<String> {
    let q = topic.split_once('?')?.1;
    q.split('&')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

impl FakeHub {
    pub(crate) fn new(device: &str) -> FakeHub {
        let twin = Twin::created_at(DeviceId::new(device).unwrap(), now());
        FakeHub {
            state: Arc::new(Mutex::new(State {
                twin,
                refuse: None,
                silent: false,
                connects: Vec::new(),
                received: Vec::new(),
                session: None,
                sessions_ended: 0,
                next_method_rid: 1,
                method_waiters: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Refuse the next connections with this (None: accept).
    pub(crate) fn refuse(&self, refusal: Option<ConnectRefused>) {
        self.lock().refuse = refusal;
    }

    /// Stop answering twin requests.
    pub(crate) fn set_silent(&self, silent: bool) {
        self.lock().silent = silent;
    }

    /// Ends the current session, as the hub does when it disables a device.
    pub(crate) fn drop_link(&self) {
        let mut st = self.lock();
        if let Some(s) = st.session.take() {
            s.task.abort();
            st.sessions_ended += 1;
        }
    }

    pub(crate) fn connects(&self) -> Vec<ConnectRequest> {
        self.lock().connects.clone()
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Publishes the hub received on `session` whose topic starts with `prefix`.
    pub(crate) fn publishes(&self, session: usize, prefix: &str) -> Vec<Message> {
        self.received()
            .iter()
            .filter(|r| r.session == session)
            .filter_map(Received::publish)
            .filter(|m| m.topic.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Number of sessions that ended (dropped by the hub or closed by the device).
    pub(crate) fn sessions_ended(&self) -> usize {
        self.lock().sessions_ended
    }

    pub(crate) fn current_session(&self) -> Option<usize> {
        self.lock().session.as_ref().map(|s| s.n)
    }

    pub(crate) fn subscriptions(&self) -> Vec<String> {
        self.lock()
            .session
            .as_ref()
            .map(|s| s.subscriptions.clone())
            .unwrap_or_default()
    }

    pub(crate) fn twin(&self) -> Twin {
        self.lock().twin.clone()
    }

    /// Changes the desired properties; notifies the device if it is subscribed and `notify`.
    pub(crate) async fn set_desired_with(&self, patch: Value, notify: bool) -> u64 {
        let (version, target) = {
            let mut st = self.lock();
            let version = st
                .twin
                .patch_desired(&patch, now(), &TwinLimits::default())
                .unwrap();
            let target = st
                .session
                .as_ref()
                .filter(|s| notify && s.subscriptions.iter().any(|f| f == DESIRED_FILTER))
                .map(|s| s.to_device.clone());
            (version, target)
        };
        if let Some(tx) = target {
            let body = desired_notification(&patch, version).to_string();
            let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
            let _ = tx.send(Message::new(topic, body)).await;
        }
        version
    }

    pub(crate) async fn set_desired(&self, patch: Value) -> u64 {
        self.set_desired_with(patch, true).await
    }

    /// Sends any message to the connected device.
    pub(crate) async fn push(&self, topic: &str, body: &str) {
        let tx = self.lock().session.as_ref().map(|s| s.to_device.clone());
        let tx = tx.expect("a device is connected");
        tx.send(Message::new(topic.to_string(), body.to_string()))
            .await
            .unwrap();
    }

    /// Sends a cloud-to-device message at least once, with `ack_id`.
    pub(crate) async fn push_c2d(&self, bag: &str, body: &str, ack_id: u64) {
        let tx = self.lock().session.as_ref().map(|s| s.to_device.clone());
        let mut m = Message::new(
            format!("devices/{DEVICE}/messages/devicebound/{bag}"),
            body.to_string(),
        )
        .with_qos(QoS::AtLeastOnce);
        m.ack_id = Some(ack_id);
        tx.expect("a device is connected").send(m).await.unwrap();
    }

    /// The acks the device sent.
    pub(crate) fn acks(&self) -> Vec<u64> {
        self.received()
            .iter()
            .filter_map(|r| match r.frame {
                DeviceFrame::Ack(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Invokes a direct method and waits for the device's answer: (status, JSON payload).
    pub(crate) async fn invoke(&self, name: &str, payload: &str) -> (i32, Value) {
        let (tx, rx) = oneshot::channel();
        let (to_device, rid) = {
            let mut st = self.lock();
            let session = st.session.as_ref().expect("a device is connected");
            assert!(
                session.subscriptions.iter().any(|f| f == METHOD_FILTER),
                "device not subscribed to methods"
            );
            let to_device = session.to_device.clone();
            let rid = st.next_method_rid.to_string();
            st.next_method_rid += 1;
            st.method_waiters.insert(rid.clone(), tx);
            (to_device, rid)
        };
        let topic = format!("$iothub/methods/POST/{name}/?$rid={rid}");
        to_device
            .send(Message::new(topic, payload.to_string()))
            .await
            .unwrap();
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("device answered in time")
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// Handles one frame from session `n`; returns what to send back.
    fn handle(&self, n: usize, frame: DeviceFrame) -> Vec<Message> {
        let mut st = self.lock();
        st.received.push(Received {
            session: n,
            frame: frame.clone(),
        });
        let m = match frame {
            DeviceFrame::Subscribe(filters) => {
                if let Some(s) = st.session.as_mut().filter(|s| s.n == n) {
                    s.subscriptions.extend(filters);
                }
                return vec![];
            }
            DeviceFrame::Unsubscribe(_) | DeviceFrame::Ack(_) => return vec![],
            DeviceFrame::Publish(m) => m,
        };
        let rid = query(&m.topic, "$rid").unwrap_or_default();
        if let Some(rest) = m.topic.strip_prefix("$iothub/methods/res/") {
            let status = rest.split('/').next().unwrap().parse().unwrap();
            if let Some(w) = st.method_waiters.remove(&rid) {
                let _ = w.send((status, m.payload.clone()));
            }
            return vec![];
        }
        if st.silent {
            return vec![];
        }
        if m.topic.starts_with("$iothub/twin/GET/") {
            let body = st.twin.device_view().to_string();
            return vec![Message::new(
                format!("$iothub/twin/res/200/?$rid={rid}"),
                body,
            )];
        }
        if m.topic
            .starts_with("$iothub/twin/PATCH/properties/reported/")
        {
            let reply = match serde_json::from_slice::<Value>(&m.payload) {
                Ok(patch) => st
                    .twin
                    .patch_reported(&patch, now(), &TwinLimits::default()),
                Err(e) => {
                    let body = json!({"errorCode": 400012, "message": e.to_string()});
                    let topic = format!("$iothub/twin/res/400/?$rid={rid}");
                    return vec![Message::new(topic, body.to_string())];
                }
            };
            return vec![match reply {
                Ok(version) => Message::new(
                    format!("$iothub/twin/res/204/?$rid={rid}&$version={version}"),
                    "",
                ),
                Err(e) => Message::new(
                    format!("$iothub/twin/res/400/?$rid={rid}"),
                    json!({"errorCode": 400004, "message": e.to_string()}).to_string(),
                ),
            }];
        }
        assert!(
            m.topic.starts_with("devices/") && m.qos == QoS::AtLeastOnce,
            "unexpected publish {m:?}"
        );
        vec![]
    }
}

/// Checks a SAS token as the hub does: signed with the device key, for this device, not
/// expired.
fn check_credentials(request: &ConnectRequest) -> Result<(), ConnectRefused> {
    let refused = |reason: String| ConnectRefused::NotAuthorized { reason };
    let Credentials::Sas(token) = &request.credentials else {
        return Err(refused("only SAS tokens are accepted".into()));
    };
    let token = SasToken::parse(token).map_err(|e| refused(e.to_string()))?;
    let key = SymmetricKey::new(super::KEY).unwrap();
    token
        .verify(&key, now())
        .map_err(|e| refused(e.to_string()))?;
    token
        .check_resource(&device_resource_uri(super::HOST, &request.device_id))
        .map_err(|e| refused(e.to_string()))
}

async fn serve(
    hub: FakeHub,
    n: usize,
    mut frames: mpsc::Receiver<DeviceFrame>,
    to_device: mpsc::Sender<Message>,
) {
    while let Some(frame) = frames.recv().await {
        for m in hub.handle(n, frame) {
            if to_device.send(m).await.is_err() {
                return;
            }
        }
    }
    // The device closed its side.
    let mut st = hub.lock();
    if st.session.as_ref().is_some_and(|s| s.n == n) {
        st.session = None;
        st.sessions_ended += 1;
    }
}

#[async_trait::async_trait]
impl Endpoint for FakeHub {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, ConnectRefused> {
        let mut st = self.lock();
        st.connects.push(request.clone());
        if let Some(r) = &st.refuse {
            return Err(r.clone());
        }
        check_credentials(&request)?;
        // A new connection replaces the old one.
        if let Some(old) = st.session.take() {
            old.task.abort();
            st.sessions_ended += 1;
        }
        let n = st.connects.len();
        let (dtx, drx) = mpsc::channel(4);
        let (htx, hrx) = mpsc::channel(4);
        let task = tokio::spawn(serve(self.clone(), n, drx, htx.clone()));
        st.session = Some(Session {
            n,
            to_device: htx,
            subscriptions: Vec::new(),
            task,
        });
        Ok(Link {
            tx: Box::new(ChanTx(dtx)),
            rx: Box::new(ChanRx(hrx)),
            session_present: false,
        })
    }
}

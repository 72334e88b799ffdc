//! [`DeviceClient`], the handle applications hold, and [`DesiredUpdates`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use iot_dm_core::identity::{DeviceId, ModuleId};
use iot_dm_core::method::MethodResponse;
use iot_dm_core::wire::{topic, PropertyBag};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use iot_dm_core::clock::Clock;
use iot_dm_core::link::Credentials as LinkCredentials;

use crate::config::{DeviceClientBuilder, Options};
use crate::credentials::DeviceCredentials;
use crate::driver::ops::{Command, OpKind, Reply};
use crate::driver::Handles;
use crate::error::Error;
use crate::methods::{self, MethodRegistry};
use crate::transport::Transport;
use crate::types::{CloseReason, CloudMessage, DesiredPatch, LinkState, MethodCall, TwinState};

/// Largest telemetry payload IoT Hub accepts (256 KiB).
pub const MAX_TELEMETRY_BYTES: usize = 256 * 1024;

/// A connected device: a cheap handle to the background task that owns the session.
///
/// Clones share the session. The client runs until [`close`](Self::close) is called or every
/// clone is dropped (desired-update streams and method handlers do not keep it alive). Build
/// one with [`DeviceClient::builder`].
///
/// ```
/// # use std::sync::Arc;
/// # use iot_dm_core::link::*;
/// # // A tiny hub: one twin, answers GET and reported PATCH.
/// # struct TinyHub;
/// # #[async_trait::async_trait]
/// # impl Endpoint for TinyHub {
/// #     async fn connect(&self, _: ConnectRequest) -> Result<Link, ConnectRefused> {
/// #         let (link, mut hub) = channel(8);
/// #         tokio::spawn(async move {
/// #             let mut reported = 1;
/// #             while let Some(frame) = hub.frames.recv().await {
/// #                 let DeviceFrame::Publish(m) = frame else { continue };
/// #                 let rid = m.topic.split("$rid=").nth(1).unwrap_or_default().to_string();
/// #                 let answer = if m.topic.starts_with("$iothub/twin/GET/") {
/// #                     let body = r#"{"desired":{"fan":2,"$version":3},"reported":{"$version":1}}"#;
/// #                     Message::new(format!("$iothub/twin/res/200/?$rid={rid}"), body)
/// #                 } else if m.topic.starts_with("$iothub/twin/PATCH/properties/reported/") {
/// #                     reported += 1;
/// #                     Message::new(format!("$iothub/twin/res/204/?$rid={rid}&$version={reported}"), "")
/// #                 } else {
/// #                     continue;
/// #                 };
/// #                 if hub.messages.send(answer).await.is_err() { break }
/// #             }
/// #         });
/// #         Ok(link)
/// #     }
/// # }
/// use iot_dm_core::method::MethodResponse;
/// use iot_dm_device::{DeviceClient, DeviceCredentials, InMemoryTransport};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Arc::new(TinyHub); // any `Endpoint`, e.g. the in-process hub
/// let credentials = DeviceCredentials::from_connection_string(
///     "HostName=hub.local;DeviceId=fan-1;SharedAccessKey=aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=",
/// )?;
/// let client = DeviceClient::builder(credentials, InMemoryTransport::new(hub))
///     .operation_timeout(std::time::Duration::from_secs(10))
///     .connect()
///     .await?;
///
/// // desired properties: the stream starts with the whole document
/// let mut desired = client.desired_updates();
/// let first = desired.recv().await.expect("the client is open");
/// assert!(first.full);
/// assert_eq!(first.patch, json!({"fan": 2}));
///
/// // reported properties resolve with the new version once the hub acknowledged them
/// let version = client.update_reported(json!({"fan": 2})).await?;
/// assert_eq!(version, 2);
/// assert_eq!(client.get_twin().await?.desired_version, 3);
///
/// client.on_method("reboot", |call| async move {
///     MethodResponse { status: 200, payload: json!({"rebooting": call.payload}) }
/// });
/// client.close().await;
/// assert!(client.get_twin().await.unwrap_err().is_closed());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DeviceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cmd_tx: mpsc::UnboundedSender<Command>,
    state_rx: watch::Receiver<LinkState>,
    methods: Arc<MethodRegistry>,
    device_id: DeviceId,
    module_id: Option<ModuleId>,
    /// For the device-management patterns: timestamps and the download token.
    #[cfg_attr(not(feature = "firmware"), allow(dead_code))]
    credentials: DeviceCredentials,
    opts: Options,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("device_id", &self.inner.device_id)
            .field("module_id", &self.inner.module_id)
            .field("state", &*self.inner.state_rx.borrow())
            .field("methods", &self.inner.methods)
            .finish()
    }
}

impl DeviceClient {
    /// A builder for a device with `credentials`, reaching its hub through `transport`.
    pub fn builder(
        credentials: DeviceCredentials,
        transport: impl Transport + 'static,
    ) -> DeviceClientBuilder {
        DeviceClientBuilder::new(credentials, transport)
    }

    pub(crate) fn new(
        handles: Handles,
        methods: Arc<MethodRegistry>,
        credentials: DeviceCredentials,
        opts: Options,
    ) -> DeviceClient {
        DeviceClient {
            inner: Arc::new(Inner {
                cmd_tx: handles.cmd_tx,
                state_rx: handles.state_rx,
                methods,
                device_id: credentials.device_id().clone(),
                module_id: credentials.module_id().cloned(),
                credentials,
                opts,
            }),
        }
    }

    /// A handle that does not keep the client alive (for handlers the client itself holds).
    pub(crate) fn downgrade(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner))
    }

    /// The builder's clock (the patterns stamp their reports with it).
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.opts.clock
    }

    /// A SAS token for the device as of now (`SharedAccessSignature sr=..`), the one the
    /// device would connect with; `None` for X.509 credentials.
    #[cfg_attr(not(feature = "firmware"), allow(dead_code))]
    pub(crate) fn sas_token(&self) -> Result<Option<String>, Error> {
        let now = self.inner.opts.clock.now();
        let (request, _) = self.inner.credentials.request(now, &self.inner.opts)?;
        Ok(match request.credentials {
            LinkCredentials::Sas(token) => Some(token),
            _ => None,
        })
    }

    /// Ends the current session and opens a new one at once, as a device coming back from a
    /// reboot would (the simulated device-management hooks do this), and resolves once the
    /// new session is up. Operations in flight are sent again on the new session, as after
    /// any reconnect. While offline it waits for the reconnect under way. Fails with
    /// [`Error::Closed`] if the client closes first.
    pub async fn reconnect(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd_tx.send(Command::Reconnect(tx)).is_err() {
            return Err(self.closed());
        }
        rx.await.map_err(|_| self.closed())
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.inner.device_id
    }

    /// The module id, for module identities.
    pub fn module_id(&self) -> Option<&ModuleId> {
        self.inner.module_id.as_ref()
    }

    /// The twin as the hub has it now (desired and reported properties with their
    /// versions). While offline the request waits in the queue.
    pub async fn get_twin(&self) -> Result<TwinState, Error> {
        self.request(OpKind::GetTwin).await
    }

    /// Patches the reported properties (a JSON merge patch: `null` deletes) and resolves with
    /// the new reported `$version` once the hub acknowledged it. Errors from the hub (e.g. 400
    /// for a patch over a limit) come back as [`Error::Hub`] with the status and message.
    ///
    /// While offline the patch waits in the queue and is sent, in issue order, after the
    /// reconnect. A patch whose answer was lost with the connection is sent again (at least
    /// once; re-applying a merge patch gives the same document).
    pub async fn update_reported(&self, patch: Value) -> Result<u64, Error> {
        if !patch.is_object() {
            return Err(Error::InvalidInput {
                what: "reported patch",
                reason: format!("must be a JSON object, got {}", json_kind(&patch)),
            });
        }
        let body = serde_json::to_vec(&patch).map_err(|e| Error::InvalidInput {
            what: "reported patch",
            reason: e.to_string(),
        })?;
        let body = Bytes::from(body);
        self.request(|reply| OpKind::UpdateReported { body, reply })
            .await
    }

    /// A new stream of desired-property changes, in version order, starting with the whole
    /// desired document (`full: true`). See [`DesiredPatch`].
    pub fn desired_updates(&self) -> DesiredUpdates {
        let (tx, rx) = mpsc::unbounded_channel();
        // If the client is closed the sender is dropped here and the stream ends at once.
        let _ = self.inner.cmd_tx.send(Command::SubscribeDesired(tx));
        DesiredUpdates { rx }
    }

    /// Registers the handler for method `name` (replacing any previous one). Each call runs in
    /// its own task; the handler's [`MethodResponse`] is sent back to the hub. A handler that
    /// panics is answered with status 500.
    pub fn on_method<F, Fut>(&self, name: impl Into<String>, handler: F)
    where
        F: Fn(MethodCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = MethodResponse> + Send + 'static,
    {
        self.inner.methods.set(name.into(), methods::boxed(handler));
    }

    /// Registers the handler for methods that have no handler of their own. Without one,
    /// such methods are answered with status [`METHOD_NOT_IMPLEMENTED`](crate::METHOD_NOT_IMPLEMENTED)
    /// (501) and a JSON `message`.
    pub fn on_default_method<F, Fut>(&self, handler: F)
    where
        F: Fn(MethodCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = MethodResponse> + Send + 'static,
    {
        self.inner
            .methods
            .set_default(Some(methods::boxed(handler)));
    }

    /// Removes the handler for method `name`; returns whether there was one.
    pub fn remove_method(&self, name: &str) -> bool {
        self.inner.methods.remove(name)
    }

    /// Sends a telemetry message (QoS 1) with its application and system properties (see
    /// [`PropertyBag`]; e.g. `$.ct` for the content type). Resolves once the transport took
    /// it (over MQTT: once the hub acknowledged it with PUBACK); while offline
    /// it waits in the queue, and a message whose connection dropped before it was taken is
    /// sent again on the next one.
    pub async fn send_telemetry(
        &self,
        payload: impl Into<Bytes>,
        properties: &PropertyBag,
    ) -> Result<(), Error> {
        let payload = payload.into();
        if payload.len() > MAX_TELEMETRY_BYTES {
            return Err(Error::InvalidInput {
                what: "telemetry payload",
                reason: format!(
                    "is {} bytes, the limit is {MAX_TELEMETRY_BYTES}",
                    payload.len()
                ),
            });
        }
        let topic = topic::telemetry(
            &self.inner.device_id,
            self.inner.module_id.as_ref(),
            properties,
        );
        self.request(|reply| OpKind::Telemetry {
            topic,
            payload,
            reply,
        })
        .await
    }

    /// A new stream of cloud-to-device messages (for a module identity: messages routed to
    /// its inputs), from now on. Messages that arrive while no stream is open are dropped,
    /// so open one before they matter.
    pub fn cloud_messages(&self) -> CloudMessages {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.inner.cmd_tx.send(Command::SubscribeCloud(tx));
        CloudMessages { rx }
    }

    /// The connection state, as a watch channel: `borrow()` for the current state,
    /// `changed().await` to wait for the next.
    pub fn link_state(&self) -> watch::Receiver<LinkState> {
        self.inner.state_rx.clone()
    }

    /// Closes the client: new operations fail, queued ones are still sent while connected
    /// (for at most the operation timeout), then the session ends and every stream ends.
    /// Returns once the client is closed; closing a closed client returns at once.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd_tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> OpKind) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd_tx.send(Command::Op(make(tx))).is_err() {
            return Err(self.closed());
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.closed()),
        }
    }

    fn closed(&self) -> Error {
        let reason = match &*self.inner.state_rx.borrow() {
            LinkState::Closed { reason } => reason.clone(),
            _ => CloseReason::Requested,
        };
        Error::Closed { reason }
    }
}

/// A [`DeviceClient`] that does not keep it alive.
#[derive(Clone, Debug)]
pub(crate) struct WeakClient(std::sync::Weak<Inner>);

impl WeakClient {
    /// The client, while some handle to it is alive.
    pub(crate) fn upgrade(&self) -> Option<DeviceClient> {
        self.0.upgrade().map(|inner| DeviceClient { inner })
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Desired-property changes, from [`DeviceClient::desired_updates`].
///
/// Use [`recv`](Self::recv), or the [`Stream`](futures_core::Stream) implementation. The
/// stream ends when the client closes. It is unbounded: a consumer that stops reading keeps
/// the changes in memory rather than losing them.
#[derive(Debug)]
pub struct DesiredUpdates {
    rx: mpsc::UnboundedReceiver<DesiredPatch>,
}

impl DesiredUpdates {
    /// The next change, or `None` once the client is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<DesiredPatch> {
        self.rx.recv().await
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Option<DesiredPatch> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for DesiredUpdates {
    type Item = DesiredPatch;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DesiredPatch>> {
        self.rx.poll_recv(cx)
    }
}

/// Cloud-to-device messages, from [`DeviceClient::cloud_messages`].
///
/// Use [`recv`](Self::recv), or the [`Stream`](futures_core::Stream) implementation. The
/// stream ends when the client closes; it is unbounded, like [`DesiredUpdates`].
#[derive(Debug)]
pub struct CloudMessages {
    rx: mpsc::UnboundedReceiver<CloudMessage>,
}

impl CloudMessages {
    /// The next message, or `None` once the client is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<CloudMessage> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<CloudMessage> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for CloudMessages {
    type Item = CloudMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CloudMessage>> {
        self.rx.poll_recv(cx)
    }
}

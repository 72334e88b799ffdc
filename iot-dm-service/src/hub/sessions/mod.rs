//! Device sessions: the hub's [`Endpoint`], and the task that serves one device's link.
//!
//! One live session per device: a new connection replaces the old one. A session serves IoT
//! Hub's device topics: twin GET, reported PATCH (acknowledged in order, once durable), method
//! responses and telemetry. Desired-property changes and method requests are pushed to it. The
//! hub closes a session when its device is disabled, deleted or retired, when its keys change,
//! when its SAS token expires, when it breaks the protocol, or when it cannot keep up.

//!
//! | file | what it holds |
//! |---|---|
//! | `endpoint.rs` | the [`Endpoint`](iot_dm_core::link::Endpoint) impl: opening, replacing and closing sessions, desired notifications |
//! | `auth.rs` | device authentication: SAS tokens, X.509 thumbprints and CA chains |
//! | `session.rs` | the per-device session task |
//! | `methods.rs` | direct methods |
//! | `c2d.rs` | cloud-to-device messages |
//! | `telemetry.rs` | device-to-cloud messages |

mod auth;
pub(super) mod c2d;
mod endpoint;
mod methods;
mod session;
mod telemetry;

#[cfg(any(feature = "rest", feature = "client"))]
pub(crate) use c2d::MessageBody;
pub use c2d::{CloudMessage, DEFAULT_TTL, MAX_C2D_BODY, MAX_PENDING, MAX_TTL};
pub use telemetry::Telemetry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::Message;
use iot_dm_core::method::MethodResponse;
use iot_dm_core::wire::IdForm;

use crate::hub::engine::locked;
use crate::hub::error::HubError;
use iot_dm_core::link::Sender;

/// Messages a session may have queued towards a slow device before the hub drops it.
const OUTBOUND_CAPACITY: usize = 1024;
/// Frames a device may have queued towards the hub.
const INBOUND_CAPACITY: usize = 256;

/// What a session subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    pub(crate) twin_responses: AtomicBool,
    pub(crate) desired: AtomicBool,
    pub(crate) methods: AtomicBool,
    pub(crate) c2d: AtomicBool,
}

impl Subs {
    fn snapshot(&self) -> [bool; 4] {
        [
            self.twin_responses.load(Ordering::Relaxed),
            self.desired.load(Ordering::Relaxed),
            self.methods.load(Ordering::Relaxed),
            self.c2d.load(Ordering::Relaxed),
        ]
    }

    fn restore(&self, s: [bool; 4]) {
        self.twin_responses.store(s[0], Ordering::Relaxed);
        self.desired.store(s[1], Ordering::Relaxed);
        self.methods.store(s[2], Ordering::Relaxed);
        self.c2d.store(s[3], Ordering::Relaxed);
    }
}

/// The hub's handle on a live session.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    conn_id: u64,
    pub(crate) outbound: Sender<Message>,
    /// What the hub and the session task share (one allocation per session).
    pub(crate) shared: Arc<SessionShared>,
}

/// Per-session state shared by the hub and the session task.
#[derive(Default)]
pub(crate) struct SessionShared {
    pub(crate) subs: Subs,
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<Result<MethodResponse, HubError>>>>,
    /// Cloud-to-device messages below this sequence number went out on this session.
    pub(crate) c2d_sent: AtomicU64,
    c2d_form: Mutex<IdForm>,
    /// Why the session is to close.
    close_reason: Mutex<Option<String>>,
    /// Wakes the session task to close (one waiter: `notify_one` keeps a permit if it is
    /// not waiting yet).
    close: Notify,
}

impl SessionHandle {
    /// How the device writes its id in its cloud-to-device subscription.
    pub(crate) fn c2d_form(&self) -> IdForm {
        *locked(&self.shared.c2d_form)
    }

    pub(crate) fn close(&self, reason: &str) {
        locked(&self.shared.close_reason).get_or_insert_with(|| reason.to_string());
        self.shared.close.notify_one();
    }
}

/// Live sessions and what survives a session (subscriptions, when the device asked to keep
/// its session).
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<DeviceId, SessionHandle>>,
    kept: Mutex<HashMap<DeviceId, ([bool; 4], IdForm)>>,
    next_conn: AtomicU64,
    pub(crate) next_rid: AtomicU64,
    /// Woken whenever a session subscribes to methods (for `connectTimeoutInSeconds`).
    pub(crate) changed: tokio::sync::Notify,
}

impl Sessions {
    pub(crate) fn get(&self, id: &str) -> Option<SessionHandle> {
        locked(&self.live).get(id).cloned()
    }

    pub(crate) fn count(&self) -> usize {
        locked(&self.live).len()
    }
}

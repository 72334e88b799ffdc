//! Direct-method handlers: the registry the handles write and the driver reads.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use iot_dm_core::method::MethodResponse;
use iot_dm_core::wire::RequestId;
use serde_json::json;
use tokio::sync::mpsc;

use crate::types::MethodCall;

/// The status a device answers a method with when it has no handler for it (and no default
/// handler): 501 Not Implemented, with a body `{"message":"method \"name\" is not implemented
/// by this device"}`.
pub const METHOD_NOT_IMPLEMENTED: i32 = 501;

/// The status sent when a handler panicked.
pub(crate) const HANDLER_FAILED: i32 = 500;

/// The status sent when the request's payload is not JSON.
pub(crate) const BAD_REQUEST: i32 = 400;

pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = MethodResponse> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(MethodCall) -> HandlerFuture + Send + Sync>;

/// A handler's answer on its way back to the driver.
#[derive(Debug)]
pub(crate) struct MethodReply {
    /// The session the request came in on: an answer for an older session is dropped (its
    /// request id means nothing to the new one).
    pub(crate) epoch: u64,
    pub(crate) rid: RequestId,
    pub(crate) response: MethodResponse,
}

#[derive(Default)]
struct Handlers {
    by_name: HashMap<String, Handler>,
    default: Option<Handler>,
}

/// Method handlers by name, plus the default handler.
#[derive(Default)]
pub(crate) struct MethodRegistry {
    handlers: Mutex<Handlers>,
}

impl std::fmt::Debug for MethodRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.lock();
        let mut names: Vec<_> = h.by_name.keys().collect();
        names.sort();
        f.debug_struct("MethodRegistry")
            .field("methods", &names)
            .field("default", &h.default.is_some())
            .finish()
    }
}

impl MethodRegistry {
    fn lock(&self) -> MutexGuard<'_, Handlers> {
        // A handler panicking never holds this lock, so poisoning carries no broken state.
        self.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set(&self, name: String, handler: Handler) {
        self.lock().by_name.insert(name, handler);
    }

    pub(crate) fn set_default(&self, handler: Option<Handler>) {
        self.lock().default = handler;
    }

    pub(crate) fn remove(&self, name: &str) -> bool {
        self.lock().by_name.remove(name).is_some()
    }

    fn lookup(&self, name: &str) -> Option<Handler> {
        let h = self.lock();
        h.by_name.get(name).or(h.default.as_ref()).cloned()
    }

    /// Runs the handler for `call` in its own task; its answer comes back on `replies`. A call
    /// with no handler is answered at once (the returned response).
    pub(crate) fn dispatch(
        &self,
        call: MethodCall,
        rid: RequestId,
        epoch: u64,
        replies: &mpsc::UnboundedSender<MethodReply>,
    ) -> Option<MethodResponse> {
        let Some(handler) = self.lookup(&call.name) else {
            tracing::debug!(method = %call.name, "no handler for method");
            return Some(not_implemented(&call.name));
        };
        let name = call.name.clone();
        let replies = replies.clone();
        tokio::spawn(async move {
            // A second task isolates a panicking handler: it becomes a 500 answer.
            let response = match tokio::spawn(handler(call)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(method = %name, error = %e, "method handler failed");
                    MethodResponse {
                        status: HANDLER_FAILED,
                        payload: json!({"message": format!("method \"{name}\" handler failed")}),
                    }
                }
            };
            let _ = replies.send(MethodReply {
                epoch,
                rid,
                response,
            });
        });
        None
    }
}

pub(crate) fn not_implemented(name: &str) -> MethodResponse {
    MethodResponse {
        status: METHOD_NOT_IMPLEMENTED,
        payload: json!({"message": format!("method \"{name}\" is not implemented by this device")}),
    }
}

pub(crate) fn boxed<F, Fut>(handler: F) -> Handler
where
    F: Fn(MethodCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = MethodResponse> + Send + 'static,
{
    Arc::new(move |call| Box::pin(handler(call)) as HandlerFuture)
}

//! Commands from the handles to the driver, and the operations waiting in its queue.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Operation};
use crate::types::{CloudMessage, DesiredPatch, TwinState};

/// Where an operation's outcome goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a handle asks the driver to do.
pub(crate) enum Command {
    /// An operation for the hub.
    Op(OpKind),
    /// A new desired-patch consumer.
    SubscribeDesired(mpsc::UnboundedSender<DesiredPatch>),
    /// A new cloud-to-device message consumer.
    SubscribeCloud(mpsc::UnboundedSender<CloudMessage>),
    /// Close the client; the sender is told when it is closed.
    Close(oneshot::Sender<()>),
    /// End the current session and open a new one at once; the sender is told when the new
    /// session is up.
    Reconnect(oneshot::Sender<()>),
}

/// An operation for the hub.
pub(crate) enum OpKind {
    GetTwin(Reply<TwinState>),
    UpdateReported {
        body: Bytes,
        reply: Reply<u64>,
    },
    Telemetry {
        topic: String,
        payload: Bytes,
        reply: Reply<()>,
    },
}

/// An operation with its place in the queue.
pub(crate) struct Op {
    /// Issue order: operations are sent in this order, and re-sent in it after a reconnect.
    pub(crate) seq: u64,
    pub(crate) kind: OpKind,
}

impl Op {
    pub(crate) fn operation(&self) -> Operation {
        match self.kind {
            OpKind::GetTwin(_) => Operation::GetTwin,
            OpKind::UpdateReported { .. } => Operation::UpdateReported,
            OpKind::Telemetry { .. } => Operation::SendTelemetry,
        }
    }

    /// Whether the caller stopped waiting (its future was dropped or timed out): an operation
    /// withdrawn before it was sent is not sent.
    pub(crate) fn is_withdrawn(&self) -> bool {
        match &self.kind {
            OpKind::GetTwin(r) => r.is_closed(),
            OpKind::UpdateReported { reply, .. } => reply.is_closed(),
            OpKind::Telemetry { reply, .. } => reply.is_closed(),
        }
    }

    pub(crate) fn fail(self, e: Error) {
        // A caller that stopped waiting does not need the error.
        match self.kind {
            OpKind::GetTwin(r) => drop(r.send(Err(e))),
            OpKind::UpdateReported { reply, .. } => drop(reply.send(Err(e))),
            OpKind::Telemetry { reply, .. } => drop(reply.send(Err(e))),
        }
    }

    /// Telemetry was handed to the link.
    pub(crate) fn sent(self) {
        if let OpKind::Telemetry { reply, .. } = self.kind {
            let _ = reply.send(Ok(()));
        }
    }

    /// The hub answered a twin request: `status` and `version` from the response topic.
    pub(crate) fn answered(self, status: u16, version: Option<u64>, body: &[u8]) {
        let operation = self.operation();
        if !(200..300).contains(&status) {
            return self.fail(hub_error(operation, status, body));
        }
        match self.kind {
            OpKind::GetTwin(reply) => {
                let _ = reply.send(parse_twin(body));
            }
            OpKind::UpdateReported { reply, .. } => {
                let _ = reply.send(version.ok_or_else(|| Error::Protocol {
                    operation,
                    detail: format!("status {status} response has no $version in its topic"),
                }));
            }
            OpKind::Telemetry { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

/// Reads a twin GET body.
pub(crate) fn parse_twin(body: &[u8]) -> Result<TwinState, Error> {
    let protocol = |detail| Error::Protocol {
        operation: Operation::GetTwin,
        detail,
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| protocol(format!("twin body is not JSON: {e}")))?;
    TwinState::from_json(&value).map_err(protocol)
}

/// The error for a status `>= 300`, from a body like `{"errorCode":400004,"message":".."}`
/// (any other body is taken as the message text).
pub(crate) fn hub_error(operation: Operation, status: u16, body: &[u8]) -> Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error_code = parsed
        .as_ref()
        .and_then(|v| v.get("errorCode"))
        .and_then(Value::as_u64);
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                "(no message)".to_string()
            } else {
                text
            }
        });
    Error::Hub {
        operation,
        status,
        error_code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_errors_read_the_body() {
        let e = hub_error(
            Operation::UpdateReported,
            400,
            br#"{"errorCode":400004,"message":"nesting too deep"}"#,
        );
        assert!(matches!(
            e,
            Error::Hub { status: 400, error_code: Some(400004), ref message, .. } if message == "nesting too deep"
        ));
        let e = hub_error(Operation::GetTwin, 503, b"busy");
        assert!(matches!(e, Error::Hub { error_code: None, ref message, .. } if message == "busy"));
        let e = hub_error(Operation::GetTwin, 500, b"");
        assert!(matches!(e, Error::Hub { ref message, .. } if message == "(no message)"));
    }

    #[test]
    fn patch_answers_need_a_version() {
        let (tx, mut rx) = oneshot::channel();
        let op = Op {
            seq: 1,
            kind: OpKind::UpdateReported {
                body: Bytes::from_static(b"{}"),
                reply: tx,
            },
        };
        op.answered(204, None, b"");
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Protocol { .. }))));
        let (tx, mut rx) = oneshot::channel();
        let op = Op {
            seq: 2,
            kind: OpKind::UpdateReported {
                body: Bytes::from_static(b"{}"),
                reply: tx,
            },
        };
        op.answered(204, Some(7), b"");
        assert!(matches!(rx.try_recv(), Ok(Ok(7))));
    }

    #[test]
    fn twin_bodies_are_checked() {
        assert!(parse_twin(b"nope").is_err());
        let t = parse_twin(br#"{"desired":{"$version":2},"reported":{"$version":5}}"#).unwrap();
        assert_eq!((t.desired_version, t.reported_version), (2, 5));
    }
}

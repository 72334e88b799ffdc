//! Response bodies: whole (every route but one) or streamed from a task (`GET /events`), and
//! what a streaming handler needs of the server (when to stop, how often to send a
//! keep-alive).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, watch};

/// The keep-alive comment interval of event streams by default.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A response body.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// All of it at once.
    Full(Full<Bytes>),
    /// Chunks as a task sends them; the body ends when the task drops its sender.
    Stream(mpsc::Receiver<Bytes>),
}

impl ResponseBody {
    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::Full(Full::new(bytes))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(f) => Pin::new(f).poll_frame(cx),
            ResponseBody::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(f) => f.is_end_stream(),
            ResponseBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(f) => f.size_hint(),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// What streaming handlers get from the server.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    /// Turns `true` when the server shuts down: streams end.
    pub(crate) stop: watch::Receiver<bool>,
    /// How often an idle event stream sends a `: ping` comment.
    pub(crate) keep_alive: Duration,
}

impl Streams {
    /// For servers and tests that never stop streams early.
    #[cfg(test)]
    pub(crate) fn never() -> Streams {
        let (tx, stop) = watch::channel(false);
        // the receiver keeps its last value once the sender is gone
        drop(tx);
        Streams {
            stop,
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }
}

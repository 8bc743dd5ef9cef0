//! The body of a streaming response: RecordIO records pushed by the dispatcher, one HTTP chunk
//! each, and a notice back to the dispatcher when the client goes away.
//!
//! The stream ends when the dispatcher drops its sender (it closed the stream on purpose); when
//! hyper drops the body (the client left), `Drop` reports the closure so the core can react.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

/// Streaming response body; see the module documentation.
pub struct EventBody<C: Send + 'static> {
    rx: mpsc::UnboundedReceiver<Bytes>,
    on_close: Option<(mpsc::UnboundedSender<C>, C)>,
}

impl<C: Send + 'static> EventBody<C> {
    pub fn new(
        rx: mpsc::UnboundedReceiver<Bytes>,
        notify: mpsc::UnboundedSender<C>,
        closed: C,
    ) -> Self {
        Self { rx, on_close: Some((notify, closed)) }
    }
}

impl<C: Send + Unpin + 'static> Stream for EventBody<C> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|item| item.map(Ok))
    }
}

impl<C: Send + 'static> Drop for EventBody<C> {
    fn drop(&mut self) {
        if let Some((notify, closed)) = self.on_close.take() {
            // The dispatcher may be gone already at shutdown; then nobody needs to know.
            let _ = notify.send(closed);
        }
    }
}

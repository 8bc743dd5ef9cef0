//! The handle HTTP handlers and IO workers hold to reach a daemon's dispatcher task: it numbers
//! requests and connections and sends commands that carry their own reply channel.
//!
//! The dispatcher itself (the one owner of a state machine) lives in each daemon; this is only
//! the shared way of talking to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

/// See the module documentation.
pub struct Dispatch<C> {
    pub tx: mpsc::UnboundedSender<C>,
    ids: Arc<AtomicU64>,
}

impl<C> Clone for Dispatch<C> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), ids: self.ids.clone() }
    }
}

impl<C> Dispatch<C> {
    pub fn new(tx: mpsc::UnboundedSender<C>) -> Self {
        Self { tx, ids: Arc::new(AtomicU64::new(1)) }
    }

    /// A fresh id for a request or a connection.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends the command `make` builds around a reply channel and waits for the reply; `None`
    /// when the dispatcher is gone.
    pub async fn request<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> C) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_get_their_replies_and_ids_are_fresh() {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u32, oneshot::Sender<u32>)>();
        let dispatch = Dispatch::new(tx);
        tokio::spawn(async move {
            while let Some((n, reply)) = rx.recv().await {
                let _ = reply.send(n * 2);
            }
        });
        assert_eq!(dispatch.request(|reply| (21, reply)).await, Some(42));
        assert_ne!(dispatch.next_id(), dispatch.clone().next_id());
    }
}

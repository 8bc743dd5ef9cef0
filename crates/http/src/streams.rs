//! The open subscription streams a dispatcher writes to, by connection id, each with the
//! format its subscriber asked for.
//!
//! A stream whose body is gone is forgotten on the first failed write; the body's drop guard
//! tells the dispatcher's state machine separately.

use std::collections::HashMap;

use agora_proto::Format;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::record;

/// See the module documentation.
#[derive(Default)]
pub struct Streams {
    open: HashMap<u64, (Format, mpsc::UnboundedSender<Bytes>)>,
}

impl Streams {
    pub fn insert(&mut self, conn: u64, format: Format, tx: mpsc::UnboundedSender<Bytes>) {
        self.open.insert(conn, (format, tx));
    }

    /// Forgets a stream; dropping its sender ends the response body once it drained.
    pub fn remove(&mut self, conn: u64) {
        self.open.remove(&conn);
    }

    /// Writes one event as a RecordIO record in the stream's format.
    pub fn send<M: prost::Message + prost::Name>(&mut self, conn: u64, event: &M) {
        if let Some((format, tx)) = self.open.get(&conn)
            && tx.send(record(*format, event)).is_err()
        {
            self.open.remove(&conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::scheduler;

    #[test]
    fn sends_records_and_forgets_closed_streams() {
        let mut streams = Streams::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        streams.insert(1, Format::Json, tx);
        let mut event = scheduler::Event::default();
        event.set_type(scheduler::event::Type::Heartbeat);
        streams.send(1, &event);
        assert_eq!(rx.try_recv().ok(), Some(Bytes::from_static(b"20\n{\"type\":\"HEARTBEAT\"}")));
        drop(rx);
        streams.send(1, &event);
        assert!(streams.open.is_empty());
        streams.send(2, &event);
    }
}

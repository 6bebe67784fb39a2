//! An in-memory WebSocket for driving a [`Session`](crate::session::Session)
//! without a network: the unit tests and the fuzz targets play the client
//! on the other end. The client can also stop taking frames, as a peer that
//! stops reading does once its TCP buffers are full.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{Sink, Stream, StreamExt};
use tungstenite::Message as WsMessage;

/// The session's end.
pub(crate) struct MemorySocket {
    incoming: mpsc::UnboundedReceiver<Result<WsMessage, tungstenite::Error>>,
    outgoing: mpsc::UnboundedSender<WsMessage>,
    stalled: Arc<AtomicBool>,
}

/// The client's end.
pub(crate) struct MemoryPeer {
    pub(crate) to_session: mpsc::UnboundedSender<Result<WsMessage, tungstenite::Error>>,
    pub(crate) from_session: mpsc::UnboundedReceiver<WsMessage>,
    stalled: Arc<AtomicBool>,
}

impl MemoryPeer {
    /// From now on the session's writes never complete, like writes to a
    /// peer that stopped reading.
    // Only the unit tests stall a peer; the fuzz harness never does.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn stop_reading(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

/// A connected pair.
pub(crate) fn pair() -> (MemorySocket, MemoryPeer) {
    let (to_session, incoming) = mpsc::unbounded();
    let (outgoing, from_session) = mpsc::unbounded();
    let stalled = Arc::new(AtomicBool::new(false));
    (
        MemorySocket { incoming, outgoing, stalled: stalled.clone() },
        MemoryPeer { to_session, from_session, stalled },
    )
}

impl Stream for MemorySocket {
    type Item = Result<WsMessage, tungstenite::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_next_unpin(cx)
    }
}

impl Sink<WsMessage> for MemorySocket {
    type Error = tungstenite::Error;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A stalled peer never wakes the writer: only timeouts can end it.
        if self.stalled.load(Ordering::SeqCst) { Poll::Pending } else { Poll::Ready(Ok(())) }
    }
    fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), Self::Error> {
        self.outgoing.unbounded_send(item).map_err(|_| tungstenite::Error::ConnectionClosed)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

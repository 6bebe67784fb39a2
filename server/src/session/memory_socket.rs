//! An in-memory WebSocket for driving a [`Session`](crate::session::Session)
//! without a network: the unit tests and the fuzz targets play the client
//! on the other end. The client can also stop taking frames, as a peer that
//! stops reading does once its TCP buffers are full.
//!
//! Text frames reach it as bytes (the session frames them itself, see
//! [`frames`](super::frames)): it reads them back into messages, so the tests
//! see what a client would.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{Sink, Stream, StreamExt};
use tokio::io::AsyncWrite;
use tungstenite::Message as WsMessage;

use super::frames::Socket;

/// The session's end.
pub(crate) struct MemorySocket {
    incoming: mpsc::UnboundedReceiver<Result<WsMessage, tungstenite::Error>>,
    outgoing: mpsc::UnboundedSender<WsMessage>,
    stalled: Arc<AtomicBool>,
    /// Bytes of a text frame not complete yet.
    partial: Vec<u8>,
    /// Write calls so far: what would be system calls on a real socket.
    writes: Arc<AtomicUsize>,
}

/// The client's end.
pub(crate) struct MemoryPeer {
    pub(crate) to_session: mpsc::UnboundedSender<Result<WsMessage, tungstenite::Error>>,
    pub(crate) from_session: mpsc::UnboundedReceiver<WsMessage>,
    stalled: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
}

impl MemoryPeer {
    /// From now on the session's writes never complete, like writes to a
    /// peer that stopped reading.
    // Only the unit tests stall a peer; the fuzz harness never does.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn stop_reading(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// How many writes the session made to its byte stream so far (one per
    /// `write` or vectored write: a system call each on a real socket).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

/// A connected pair.
pub(crate) fn pair() -> (MemorySocket, MemoryPeer) {
    let (to_session, incoming) = mpsc::unbounded();
    let (outgoing, from_session) = mpsc::unbounded();
    let stalled = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let socket = MemorySocket {
        incoming,
        outgoing,
        stalled: stalled.clone(),
        partial: Vec::new(),
        writes: writes.clone(),
    };
    (socket, MemoryPeer { to_session, from_session, stalled, writes })
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

impl Socket for MemorySocket {
    fn bytes(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        self
    }
}

/// The unmasked text and binary frames [`frames`](super::frames) writes,
/// read back.
impl AsyncWrite for MemorySocket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        let this = self.get_mut();
        this.writes.fetch_add(1, Ordering::SeqCst);
        this.partial.extend_from_slice(buf);
        while let Some((binary, start, len)) = frame_bounds(&this.partial) {
            if this.partial.len() < start + len {
                break;
            }
            let payload = this.partial[start..start + len].to_vec();
            this.partial.drain(..start + len);
            let message = if binary {
                WsMessage::binary(payload)
            } else {
                WsMessage::text(String::from_utf8(payload).map_err(std::io::Error::other)?)
            };
            let sent = this.outgoing.unbounded_send(message);
            sent.map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        }
        Poll::Ready(Ok(buf.len()))
    }
    /// All the slices in one call, as a socket takes a vectored write.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let whole: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
        self.poll_write(cx, &whole)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Whether the frame at the start of `bytes` is binary, where its payload
/// begins and how long it is, once its header is complete.
fn frame_bounds(bytes: &[u8]) -> Option<(bool, usize, usize)> {
    let (&first, rest) = bytes.split_first()?;
    assert!(
        first == 0x81 || first == 0x82,
        "only final, unmasked, uncompressed text and binary frames are written raw here"
    );
    let binary = first == 0x82;
    let (&second, rest) = rest.split_first()?;
    match second {
        126 => Some((binary, 4, u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize)),
        127 => Some((binary, 10, u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) as usize)),
        len => Some((binary, 2, len as usize)),
    }
}

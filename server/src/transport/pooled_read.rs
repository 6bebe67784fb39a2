//! [`PooledRead`]: reads a connection's bytes through a buffer that belongs to
//! the worker thread, not to the connection.
//!
//! An idle connection is the common case for a hub (tens of thousands of
//! sockets, most of them silent), and a per-connection read buffer is memory
//! every one of them holds for nothing. Here a read goes to the kernel with
//! one large buffer per thread ([`POOL_BYTES`]); what the WebSocket codec
//! asked for is copied to it, and only bytes it did not take yet are kept
//! with the connection, in a spill buffer that is given back as soon as it is
//! drained. So tungstenite's own read buffer can stay small
//! (`limits.read_buffer_bytes`) without a system call per small chunk: the
//! chunks it takes after the first come from the spill.
//!
//! Writes pass straight through.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The per-thread buffer one read from the kernel fills: large enough for a
/// burst of frames in one system call.
pub(crate) const POOL_BYTES: usize = 16 * 1024;

thread_local! {
    static POOL: RefCell<Box<[u8]>> = RefCell::new(vec![0; POOL_BYTES].into_boxed_slice());
}

/// An I/O object whose reads borrow the worker's buffer; see the module docs.
#[derive(Debug)]
pub(crate) struct PooledRead<S> {
    inner: S,
    /// Bytes read from the kernel that the reader has not taken yet, from
    /// `taken` on. Empty (and unallocated) whenever nothing is pending.
    spill: Vec<u8>,
    taken: usize,
}

impl<S> PooledRead<S> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S) -> PooledRead<S> {
        PooledRead { inner, spill: Vec::new(), taken: 0 }
    }

    /// Copies pending bytes into `buf`; gives the spill back once drained.
    fn drain_spill(&mut self, buf: &mut ReadBuf<'_>) {
        let pending = &self.spill[self.taken..];
        let n = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..n]);
        self.taken += n;
        if self.taken == self.spill.len() {
            self.spill = Vec::new();
            self.taken = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PooledRead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Nothing to fill: taking bytes from the kernel now would only move
        // them into the spill.
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.spill.is_empty() {
            this.drain_spill(buf);
            return Poll::Ready(Ok(()));
        }
        // A reader that brings a buffer as large as the pool's gains nothing
        // from the detour.
        if buf.remaining() >= POOL_BYTES {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        POOL.with(|pool| {
            // Nothing below awaits or calls back into this module, so the
            // borrow cannot be taken twice on one thread.
            let mut pool = pool.borrow_mut();
            let mut chunk = ReadBuf::new(&mut pool[..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {
                    let read = chunk.filled();
                    let n = read.len().min(buf.remaining());
                    buf.put_slice(&read[..n]);
                    if n < read.len() {
                        this.spill = read[n..].to_vec();
                        this.taken = 0;
                    }
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        })
    }
}

crate::write_through::write_through!(PooledRead);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_take_one_kernel_read_and_keep_nothing_once_drained() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut reader = PooledRead::new(server);
        let sent: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        assert_eq!(reader.read(&mut []).await.unwrap(), 0);
        assert_eq!(reader.spill.capacity(), 0, "an empty read takes nothing from the socket");
        let mut chunk = [0u8; 64];
        // The first read takes everything the pipe holds into the pool; the
        // rest comes from the spill.
        let n = reader.read(&mut chunk).await.unwrap();
        got.extend_from_slice(&chunk[..n]);
        assert_eq!(n, 64);
        assert_eq!(reader.spill.len(), 1000 - 64, "what the reader did not take is kept");
        while got.len() < sent.len() {
            let n = reader.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent, "every byte, in order");
        assert_eq!(reader.spill.capacity(), 0, "a drained spill is given back");
    }

    #[tokio::test]
    async fn a_large_read_goes_straight_to_the_socket_and_end_of_stream_passes_through() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut reader = PooledRead::new(server);
        client.write_all(b"hello").await.unwrap();
        drop(client);
        let mut big = vec![0u8; POOL_BYTES];
        let n = reader.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"hello");
        assert_eq!(reader.spill.capacity(), 0);
        assert_eq!(reader.read(&mut big).await.unwrap(), 0, "end of stream");
    }
}

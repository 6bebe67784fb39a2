//! permessage-deflate on the load client's side: [`Inflate`] sits under
//! tungstenite (which has no deflate) and turns each compressed server
//! message (RSV1) into a plain frame before tungstenite reads it, keeping
//! the server's compression context between messages unless the server
//! agreed to `server_no_context_takeover` (Node's `ws` keeps it by default;
//! Switchboard never does). Every byte read from any socket is counted in
//! [`WIRE_BYTES`], so a run knows what its messages cost on the wire.
//!
//! The layer reads the server's handshake answer itself: a server may send
//! its first (compressed) message in the same segment as the answer, before
//! tungstenite hands the stream back.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Bytes read from every client socket so far.
pub static WIRE_BYTES: AtomicU64 = AtomicU64::new(0);

/// The offer a browser sends.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A client's byte stream with the server's compressed messages inflated.
pub struct Inflate<S> {
    inner: S,
    /// The handshake answer read so far, until its end (when the client
    /// offered the extension).
    head: Option<Vec<u8>>,
    /// The server answered with permessage-deflate.
    on: bool,
    /// It agreed not to take its context over from one message to the next.
    reset_each: bool,
    inflater: Option<Box<Decompress>>,
    input: Vec<u8>,
    output: Vec<u8>,
    out_at: usize,
    /// A compressed message being gathered: opcode and payload.
    message: Option<(OpCode, Vec<u8>)>,
}

impl<S> Inflate<S> {
    /// Wraps `inner`; `offered`: the client offers permessage-deflate, and
    /// the layer turns itself on if the server's answer takes it.
    pub fn new(inner: S, offered: bool) -> Inflate<S> {
        Inflate {
            inner,
            head: offered.then(Vec::new),
            on: false,
            reset_each: false,
            inflater: None,
            input: Vec::new(),
            output: Vec::new(),
            out_at: 0,
            message: None,
        }
    }

    /// Whether the server agreed to permessage-deflate.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Reads the extension the server agreed to from its answer's head.
    fn agreed(&mut self, head: &[u8]) {
        let head = String::from_utf8_lossy(head);
        let answer = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim())
        });
        let Some(answer) = answer.filter(|a| a.starts_with("permessage-deflate")) else { return };
        self.on = true;
        self.reset_each = answer.contains("server_no_context_takeover");
    }

    /// Moves whole frames from `input` to `output`, inflating compressed
    /// messages; leaves a partial frame in `input`.
    fn process(&mut self) -> io::Result<()> {
        let mut at = 0;
        loop {
            let mut cursor = Cursor::new(&self.input[at..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(io::Error::other)?
            else {
                break;
            };
            let start = at + cursor.position() as usize;
            let end = start + len as usize;
            if self.input.len() < end {
                break;
            }
            let payload = &self.input[start..end];
            let data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
            let continues = header.opcode == OpCode::Data(Data::Continue);
            if (header.rsv1 && data) || (continues && self.message.is_some()) {
                let (_, gathered) = self.message.get_or_insert_with(|| (header.opcode, Vec::new()));
                gathered.extend_from_slice(payload);
                if header.is_final {
                    let (opcode, gathered) = self.message.take().expect("gathered");
                    let plain = self.inflate(&gathered)?;
                    let header = FrameHeader { opcode, ..FrameHeader::default() };
                    header
                        .format(plain.len() as u64, &mut self.output)
                        .map_err(io::Error::other)?;
                    self.output.extend_from_slice(&plain);
                }
            } else {
                self.output.extend_from_slice(&self.input[at..end]);
            }
            at = end;
        }
        self.input.drain(..at);
        Ok(())
    }

    fn inflate(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let inflater = self.inflater.get_or_insert_with(|| Box::new(Decompress::new(false)));
        if self.reset_each {
            inflater.reset(false);
        }
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        for input in [data, &[0, 0, 0xff, 0xff][..]] {
            let start = inflater.total_in();
            loop {
                let taken = (inflater.total_in() - start) as usize;
                let status = inflater
                    .decompress_vec(&input[taken..], &mut out, FlushDecompress::Sync)
                    .map_err(io::Error::other)?;
                let done = (inflater.total_in() - start) as usize == input.len();
                if status == Status::StreamEnd || (done && out.len() < out.capacity()) {
                    break;
                }
                out.reserve(out.capacity().max(64));
            }
        }
        Ok(out)
    }
}

impl<S> Inflate<S> {
    /// Moves ready bytes into `buf` (none at the end of the stream).
    fn hand_over(&mut self, buf: &mut ReadBuf<'_>, end: bool) -> Poll<io::Result<()>> {
        if end || self.out_at == self.output.len() {
            return Poll::Ready(Ok(()));
        }
        let n = (self.output.len() - self.out_at).min(buf.remaining());
        buf.put_slice(&self.output[self.out_at..self.out_at + n]);
        self.out_at += n;
        if self.out_at == self.output.len() {
            self.output.clear();
            self.out_at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(head) = &mut this.head {
            // The handshake answer passes through as it is; what follows
            // it is frames.
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let bytes = read.filled();
            WIRE_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let before = head.len();
            head.extend_from_slice(bytes);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4) else {
                this.output.extend_from_slice(bytes);
                return this.hand_over(buf, bytes.is_empty());
            };
            let head = this.head.take().expect("reading the head");
            this.output.extend_from_slice(&head[before..end]);
            this.agreed(&head[..end]);
            if this.on {
                this.input.extend_from_slice(&head[end..]);
                this.process()?;
            } else {
                this.output.extend_from_slice(&head[end..]);
            }
            return this.hand_over(buf, false);
        }
        if this.out_at < this.output.len() {
            return this.hand_over(buf, false);
        }
        if !this.on {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            WIRE_BYTES.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_at < this.output.len() {
                return this.hand_over(buf, false);
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            WIRE_BYTES.fetch_add(read.filled().len() as u64, Ordering::Relaxed);
            this.input.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

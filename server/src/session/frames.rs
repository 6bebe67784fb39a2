//! Writing frames without copying them: [`FrameSocket`] owns the order of
//! everything a session writes.
//!
//! (Text frames, and binary messages: a message whose payload is bytes goes
//! to a connection that speaks binary as its envelope, made once per
//! delivery ([`crate::binary::Enveloped`]), a binary message of its own that
//! is never batched.)
//!
//! A frame's JSON is serialized once and shared by every recipient
//! ([`Delivery::frame`](crate::hub::Delivery)). tungstenite would copy it
//! into the connection's write buffer before each send, and that buffer
//! keeps its largest size for the connection's life (kilobytes per member of
//! a busy room). Here a text frame goes to the byte stream under the
//! framing as a header written on the stack and the shared payload, several
//! frames in one vectored write. Server frames are never masked, so the
//! header is all the framing there is (RFC 6455 §5.2).
//!
//! On a connection that negotiated permessage-deflate, a frame long enough
//! goes compressed (RSV1 set): a shared delivery's compressed form is made
//! once and kept with it ([`crate::deflate::Deflated`]), so every member
//! writes the same bytes; the connection's answers are compressed as they
//! are written, and replayed history not at all ([`Out::Replayed`]). A
//! batched message holds frames of
//! one kind: compressed ones joined inside one deflate stream
//! ([`crate::deflate::codec::JOIN`]), or plain ones joined by newlines.
//!
//! Control frames (ping, pong, close) still go through tungstenite, which
//! also answers the client's pings while reading. The two writers share one
//! byte stream, so [`FrameSocket`] keeps one rule: before tungstenite
//! writes or reads, every byte of a text frame is out, and before a text
//! frame is written, tungstenite's buffer is flushed. A frame the socket
//! took only part of keeps its remainder in [`FrameSocket`] (copied: only a
//! connection whose peer reads slowly pays for it), and is written first,
//! whatever the session does next.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tungstenite::error::ProtocolError;
use tungstenite::{Message as WsMessage, Utf8Bytes};

use crate::binary::envelope_of;
use crate::deflate::Compressor;
use crate::deflate::codec::JOIN;
use crate::hub::Delivery;

/// The most bytes a WebSocket frame header takes: the first two bytes and a
/// 64-bit length (no mask: server frames are not masked).
const HEADER_MAX: usize = 10;

/// At most this many frames go into one vectored write (two slices each,
/// well under the kernel's 1,024).
pub(super) const FRAMES_PER_WRITE: usize = 64;

/// Past this many payload bytes, a write gathers no more frames. It also
/// bounds what a slow reader's connection holds outside its queue: a write
/// the socket did not take keeps its rest (at most this, plus one frame).
const BYTES_PER_WRITE: usize = 64 * 1024;

/// A batched WebSocket message holds at most this many payload bytes,
/// unless its one frame is larger.
const BATCH_BYTES: usize = 64 * 1024;

/// What a session runs on: a stream and sink of WebSocket messages and the
/// byte stream under them ([`crate::transport::upgrade::WebSocket`] in
/// production, an in-memory socket in tests).
pub(crate) trait Socket:
    Stream<Item = Result<WsMessage, tungstenite::Error>>
    + Sink<WsMessage, Error = tungstenite::Error>
    + Unpin
    + Send
{
    /// The byte stream under the framing, for frames framed here.
    fn bytes(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send);
}

impl<T> Socket for WebSocketStream<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn bytes(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        self.get_mut()
    }
}

impl<S: Socket + ?Sized> Socket for Box<S> {
    fn bytes(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        (**self).bytes()
    }
}

/// A frame for [`FrameSocket`] to write (text, or the binary form of a
/// message with bytes).
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// The connection's own (an answer): compressed as it is written.
    Own(Utf8Bytes),
    /// A delivery other connections write too: its compressed form is
    /// shared with them.
    Shared(Arc<Delivery>),
    /// A message replayed from history: written as it is. Replays come in
    /// reconnect storms, when the hub is busiest, and compressing each for
    /// each connection would cost one compression per message per
    /// connection (about 17 µs for 2 KB at level 6, several times the write).
    Replayed(Utf8Bytes),
    /// A replayed message whose payload is bytes, in its binary form, for
    /// a connection that speaks binary: written as it is.
    ReplayedBinary(Box<[u8]>),
}

impl Out {
    /// A message replayed from history, as a connection that speaks
    /// `binary` (or not) writes it.
    pub(crate) fn replayed(frame: Utf8Bytes, binary: bool) -> Out {
        match binary.then(|| envelope_of(frame.as_str())).flatten() {
            Some(form) => Out::ReplayedBinary(form.into()),
            None => Out::Replayed(frame),
        }
    }

    /// The payload's length as the write budget counts it: the JSON's for
    /// a shared delivery, whichever form it goes in.
    fn len(&self) -> usize {
        match self {
            Out::Own(text) | Out::Replayed(text) => text.len(),
            Out::Shared(delivery) => delivery.frame.len(),
            Out::ReplayedBinary(bytes) => bytes.len(),
        }
    }
}

impl From<Utf8Bytes> for Out {
    fn from(text: Utf8Bytes) -> Out {
        Out::Own(text)
    }
}

/// How one frame goes on the wire: a text or a binary message, compressed
/// or not, and its payload.
#[derive(Clone, Copy)]
struct Form<'a> {
    deflated: bool,
    binary: bool,
    bytes: &'a [u8],
    /// The payload's length before compressing.
    raw: usize,
}

impl<'a> Form<'a> {
    /// `text` as it is.
    fn plain(text: &'a str) -> Form<'a> {
        Form { deflated: false, binary: false, bytes: text.as_bytes(), raw: text.len() }
    }

    /// A binary message's `bytes` as they are.
    fn binary(bytes: &'a [u8]) -> Form<'a> {
        Form { deflated: false, binary: true, bytes, raw: bytes.len() }
    }

    /// This form with its payload compressed to `bytes`.
    fn compressed(self, bytes: &'a [u8]) -> Form<'a> {
        Form { deflated: true, bytes, ..self }
    }
}

/// The form of `frame` uncompressed, for a connection that speaks
/// `binary` (or not): a shared message whose payload is bytes goes to it as
/// a binary message.
fn uncompressed(frame: &Out, binary: bool) -> Form<'_> {
    match frame {
        Out::Own(text) | Out::Replayed(text) => Form::plain(text.as_str()),
        Out::Shared(delivery) => match binary.then(|| delivery.enveloped.get(&delivery.frame)) {
            Some(Some(form)) => Form::binary(form),
            _ => Form::plain(delivery.frame.as_str()),
        },
        Out::ReplayedBinary(bytes) => Form::binary(bytes),
    }
}

/// The form of `frame` for a connection compressing with `compressor`;
/// `own` keeps the compressed bytes of a frame that is the connection's
/// own.
fn form<'a>(
    frame: &'a Out,
    binary: bool,
    compressor: Option<&Compressor>,
    own: &'a mut Option<Box<[u8]>>,
) -> Form<'a> {
    let plain = uncompressed(frame, binary);
    let Some(compressor) = compressor else { return plain };
    let compressed = match frame {
        Out::Shared(delivery) if plain.binary => {
            delivery.enveloped.deflated(&delivery.frame, compressor)
        }
        Out::Shared(delivery) => delivery.deflated.get(delivery.frame.as_bytes(), compressor),
        Out::Own(text) => {
            *own = compressor.deflate(text.as_bytes());
            own.as_deref()
        }
        Out::Replayed(_) | Out::ReplayedBinary(_) => None,
    };
    match compressed {
        Some(bytes) => plain.compressed(bytes),
        None => plain,
    }
}

/// Writes the header of an unmasked, final frame of `form` (text or
/// binary, RSV1 set when the payload is compressed) into `out`, for a
/// message of `len` bytes; returns the header's length.
fn frame_header(form: Form<'_>, len: usize, out: &mut [u8; HEADER_MAX]) -> usize {
    // FIN, RSV1 for a compressed message, opcode 1 (text) or 2 (binary).
    out[0] = 0x80 | if form.deflated { 0x40 } else { 0 } | if form.binary { 2 } else { 1 };
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A session's socket: text frames written straight from their shared
/// buffers, everything else through the WebSocket layer, in the order the
/// session wrote them.
pub(crate) struct FrameSocket<S> {
    inner: S,
    /// Bytes of text frames the socket has not taken yet. Empty (and
    /// unallocated) unless the peer reads slowly.
    unsent: Vec<u8>,
    /// A text frame handed to the [`Sink`], not written yet.
    held: Option<Utf8Bytes>,
    /// permessage-deflate was negotiated and frames go compressed where
    /// they gain: how, and where the savings are counted.
    deflate: Option<Arc<Compressor>>,
    /// A close frame was sent: text frames are refused, as tungstenite
    /// refuses them.
    closed: bool,
    /// Queued frames go out several to a WebSocket message, separated by
    /// newlines, inside the deflate stream when compressed (the client
    /// asked for it with `?batch=1`).
    batch: bool,
    /// A write failed partway: where the stream's frames stand is unknown,
    /// so nothing more is written.
    broken: bool,
    /// The client speaks binary (`?binary=1`): messages whose payload is
    /// bytes go to it as binary messages.
    binary: bool,
}

impl<S: Socket> FrameSocket<S> {
    /// Wraps a socket nothing was written to yet.
    pub(crate) fn new(inner: S) -> FrameSocket<S> {
        FrameSocket {
            inner,
            unsent: Vec::new(),
            held: None,
            deflate: None,
            closed: false,
            batch: false,
            broken: false,
            binary: false,
        }
    }

    /// Writes messages whose payload is bytes as binary messages from now
    /// on (the client speaks binary).
    pub(crate) fn speak_binary(&mut self) {
        self.binary = true;
    }

    /// Whether the client speaks binary.
    pub(crate) fn speaks_binary(&self) -> bool {
        self.binary
    }

    /// Compresses frames from now on (the connection negotiated
    /// permessage-deflate).
    pub(crate) fn deflate(&mut self, compressor: Arc<Compressor>) {
        self.deflate = Some(compressor);
    }

    /// Writes queued frames several to a message from now on.
    pub(crate) fn batch(&mut self) {
        self.batch = true;
    }

    /// Writes `first` (if any) and what `next` yields, up to
    /// [`FRAMES_PER_WRITE`] frames, with as few writes as the socket allows,
    /// then flushes. Pending while the socket is full; `first` is taken and
    /// `next` called only once the frames before them are out, so a write
    /// that is dropped midway loses nothing it did not take.
    ///
    /// On a connection that asked for batches (`?batch=1`), the frames go
    /// out as few WebSocket messages, separated by newlines (a server frame
    /// is compact JSON: it never holds a raw newline), a message holding
    /// compressed frames or plain ones, not both; with `first_alone`,
    /// `first` (an answer: the protocol sends answers in a message of their
    /// own) is a message by itself, still in the same write.
    pub(crate) fn poll_write_texts(
        &mut self,
        cx: &mut Context<'_>,
        first: &mut Option<Out>,
        mut next: impl FnMut() -> Option<Out>,
        first_alone: bool,
    ) -> Poll<Result<(), tungstenite::Error>> {
        ready!(self.poll_drain(cx))?;
        if first.is_some() {
            self.check_open()?;
            let mut frames: [Option<Out>; FRAMES_PER_WRITE] = std::array::from_fn(|_| None);
            let mut count = 0;
            let mut bytes = 0;
            for slot in frames.iter_mut() {
                let Some(frame) = first.take().or_else(&mut next) else { break };
                bytes += frame.len();
                *slot = Some(frame);
                count += 1;
                if bytes >= BYTES_PER_WRITE {
                    break;
                }
            }
            let frames = frames[..count].iter().flatten();
            // Only a connection that compresses pays for the forms' arrays:
            // the others lay their frames out as they are.
            let (mut own, mut forms);
            let mut headers = [[0u8; HEADER_MAX]; FRAMES_PER_WRITE];
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let (batch, binary) = (self.batch, self.binary);
            let used = match self.deflate.as_deref() {
                None => {
                    let plain = frames.map(|frame| uncompressed(frame, binary));
                    lay_out(plain, batch, &mut headers, &mut slices, first_alone)
                }
                Some(compressor) => {
                    own = std::array::from_fn::<Option<Box<[u8]>>, FRAMES_PER_WRITE, _>(|_| None);
                    forms = [Form::plain(""); FRAMES_PER_WRITE];
                    let mut before = 0;
                    for ((frame, own), slot) in frames.zip(&mut own).zip(&mut forms) {
                        *slot = form(frame, binary, Some(compressor), own);
                        before += slot.raw;
                    }
                    let forms = forms[..count].iter().copied();
                    compressor.count(before, forms.clone().map(|form| form.bytes.len()).sum());
                    lay_out(forms, batch, &mut headers, &mut slices, first_alone)
                }
            };
            self.write_or_keep(cx, &mut slices[..used])?;
            ready!(self.poll_drain(cx))?;
        }
        Pin::new(self.inner.bytes()).poll_flush(cx).map_err(tungstenite::Error::Io)
    }

    /// Writes `slices` in as few vectored writes as the socket takes now;
    /// what it does not take is kept in `unsent`, byte for byte.
    fn write_or_keep(
        &mut self,
        cx: &mut Context<'_>,
        mut slices: &mut [IoSlice<'_>],
    ) -> Result<(), tungstenite::Error> {
        let mut left: usize = slices.iter().map(|slice| slice.len()).sum();
        while left > 0 {
            match Pin::new(self.inner.bytes()).poll_write_vectored(cx, slices) {
                Poll::Ready(Ok(0)) => {
                    self.broken = true;
                    return Err(tungstenite::Error::Io(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    left -= n;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Poll::Ready(Err(err)) => {
                    self.broken = true;
                    return Err(tungstenite::Error::Io(err));
                }
                Poll::Pending => {
                    // The socket is full (a slow reader): keep the rest.
                    self.unsent.reserve(left);
                    for slice in slices.iter() {
                        self.unsent.extend_from_slice(slice);
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Writes what is owed before anything else may go out: tungstenite's
    /// buffer, the remainder of a text frame, a held text frame.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tungstenite::Error>> {
        if self.broken {
            return Poll::Ready(Err(tungstenite::Error::AlreadyClosed));
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        while !self.unsent.is_empty() {
            match ready!(Pin::new(self.inner.bytes()).poll_write(cx, &self.unsent)) {
                Ok(0) => {
                    self.broken = true;
                    return Poll::Ready(Err(
                        std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                    ));
                }
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(err) => {
                    self.broken = true;
                    return Poll::Ready(Err(tungstenite::Error::Io(err)));
                }
            }
        }
        // A drained remainder gives its buffer back: it was a slow
        // reader's, and most connections never need one.
        self.unsent = Vec::new();
        if let Some(frame) = self.held.take() {
            let frame = Out::Own(frame);
            let mut own = None;
            let form = form(&frame, self.binary, self.deflate.as_deref(), &mut own);
            if let Some(compressor) = &self.deflate {
                compressor.count(form.raw, form.bytes.len());
            }
            let mut header = [0u8; HEADER_MAX];
            let len = frame_header(form, form.bytes.len(), &mut header);
            let mut slices = [IoSlice::new(&header[..len]), IoSlice::new(form.bytes)];
            self.write_or_keep(cx, &mut slices)?;
            if !self.unsent.is_empty() {
                return self.poll_drain(cx);
            }
        }
        Poll::Ready(Ok(()))
    }

    fn check_open(&self) -> Result<(), tungstenite::Error> {
        if self.closed {
            return Err(tungstenite::Error::Protocol(ProtocolError::SendAfterClosing));
        }
        Ok(())
    }
}

/// Lays out `frames` (at most [`FRAMES_PER_WRITE`]) for one write, batched
/// or one message each; returns the number of slices used.
fn lay_out<'a>(
    frames: impl Iterator<Item = Form<'a>> + Clone,
    batch: bool,
    headers: &'a mut [[u8; HEADER_MAX]; FRAMES_PER_WRITE],
    slices: &mut [IoSlice<'a>; 2 * FRAMES_PER_WRITE],
    first_alone: bool,
) -> usize {
    if batch {
        batched(frames, headers, slices, first_alone)
    } else {
        one_each(frames, headers, slices)
    }
}

/// Lays out `frames` as one WebSocket message each: header, payload.
/// Returns the number of slices used.
fn one_each<'a>(
    frames: impl Iterator<Item = Form<'a>>,
    headers: &'a mut [[u8; HEADER_MAX]; FRAMES_PER_WRITE],
    slices: &mut [IoSlice<'a>; 2 * FRAMES_PER_WRITE],
) -> usize {
    let mut used = 0;
    for (frame, header) in frames.zip(headers.iter_mut()) {
        let len = frame_header(frame, frame.bytes.len(), header);
        slices[used] = IoSlice::new(&header[..len]);
        slices[used + 1] = IoSlice::new(frame.bytes);
        used += 2;
    }
    used
}

/// What separates two frames inside one batched message of their kind.
fn separator(deflated: bool) -> &'static [u8] {
    if deflated { &JOIN } else { b"\n" }
}

/// Lays out `frames` (at most [`FRAMES_PER_WRITE`]) as few WebSocket
/// messages: each a header, then text payloads of one kind (compressed or
/// not) or one binary payload,
/// with a [`separator`] between, of at most [`BATCH_BYTES`] unless its one
/// frame is larger; with `first_alone`, the first frame is a message by
/// itself. Returns the number of slices used (a message's first frame takes
/// a header slice where later ones take a separator: never more than two
/// per frame).
fn batched<'a>(
    frames: impl Iterator<Item = Form<'a>> + Clone,
    headers: &'a mut [[u8; HEADER_MAX]; FRAMES_PER_WRITE],
    slices: &mut [IoSlice<'a>; 2 * FRAMES_PER_WRITE],
    first_alone: bool,
) -> usize {
    // Whether `frame`, at `index` after one of kind `previous` (compressed,
    // binary), starts a message of its own after a message of `current`
    // bytes. A binary message is never batched: it holds one payload.
    let starts = |index: usize, frame: Form<'_>, previous: (bool, bool), current: usize| {
        index == 0
            || (first_alone && index == 1)
            || frame.binary
            || previous.1
            || frame.deflated != previous.0
            || current + separator(frame.deflated).len() + frame.bytes.len() > BATCH_BYTES
    };
    // Message lengths first (each header needs its message's length).
    let mut lengths = [0usize; FRAMES_PER_WRITE];
    let mut messages = 0;
    let mut previous = (false, false);
    for (index, frame) in frames.clone().enumerate() {
        let current = lengths[messages.max(1) - 1];
        if starts(index, frame, previous, current) {
            lengths[messages] = frame.bytes.len();
            messages += 1;
        } else {
            lengths[messages - 1] = current + separator(frame.deflated).len() + frame.bytes.len();
        }
        previous = (frame.deflated, frame.binary);
    }
    let mut headers = headers.iter_mut();
    let mut used = 0;
    let (mut message, mut filled) = (0, 0);
    let mut previous = (false, false);
    for (index, frame) in frames.enumerate() {
        let starts = starts(index, frame, previous, filled);
        previous = (frame.deflated, frame.binary);
        if starts {
            if used > 0 {
                message += 1;
            }
            let header = headers.next().expect("a header per message");
            let len = frame_header(frame, lengths[message], header);
            slices[used] = IoSlice::new(&header[..len]);
            used += 1;
            filled = frame.bytes.len();
        } else {
            let separator = separator(frame.deflated);
            slices[used] = IoSlice::new(separator);
            used += 1;
            filled += separator.len() + frame.bytes.len();
        }
        slices[used] = IoSlice::new(frame.bytes);
        used += 1;
    }
    used
}

impl<S: Socket> Stream for FrameSocket<S> {
    type Item = Result<WsMessage, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Reading may make tungstenite answer a ping: not in the middle of
        // a text frame.
        if !this.unsent.is_empty() || this.held.is_some() {
            match ready!(this.poll_drain(cx)) {
                Ok(()) => {}
                Err(err) => return Poll::Ready(Some(Err(err))),
            }
        }
        let next = ready!(Pin::new(&mut this.inner).poll_next(cx));
        if let Some(Ok(WsMessage::Close(_))) = next {
            // tungstenite answers it: the connection is closing.
            this.closed = true;
        }
        Poll::Ready(next)
    }
}

impl<S: Socket> Sink<WsMessage> for FrameSocket<S> {
    type Error = tungstenite::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), Self::Error> {
        let this = self.get_mut();
        match item {
            WsMessage::Text(text) => {
                this.check_open()?;
                this.held = Some(text);
                Ok(())
            }
            other => {
                if matches!(other, WsMessage::Close(_)) {
                    this.closed = true;
                }
                Pin::new(&mut this.inner).start_send(other)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(this.inner.bytes()).poll_flush(cx).map_err(tungstenite::Error::Io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        // tungstenite sends a close frame here: no text may follow it.
        this.closed = true;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tungstenite::protocol::Role;

    /// A server `FrameSocket` and a tungstenite client over an in-memory
    /// pipe of `capacity` bytes.
    async fn pair(
        capacity: usize,
    ) -> (
        FrameSocket<WebSocketStream<tokio::io::DuplexStream>>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (server, client) = tokio::io::duplex(capacity);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (FrameSocket::new(server), client)
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        let mut out = [0; HEADER_MAX];
        let text = Form::plain("");
        assert_eq!(frame_header(text, 0, &mut out), 2);
        assert_eq!(out[..2], [0x81, 0]);
        assert_eq!(frame_header(text, 125, &mut out), 2);
        assert_eq!(out[..2], [0x81, 125]);
        assert_eq!(frame_header(text, 126, &mut out), 4);
        assert_eq!(out[..4], [0x81, 126, 0, 126]);
        assert_eq!(frame_header(text, 65_535, &mut out), 4);
        assert_eq!(out[..4], [0x81, 126, 0xff, 0xff]);
        assert_eq!(frame_header(text, 65_536, &mut out), 10);
        assert_eq!(out[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frame_header(text.compressed(&[]), 5, &mut out), 2);
        assert_eq!(out[..2], [0xc1, 5], "RSV1 marks a compressed message");
        assert_eq!(frame_header(Form::binary(&[]), 5, &mut out), 2);
        assert_eq!(out[..2], [0x82, 5], "opcode 2 for a binary message");
        assert_eq!(frame_header(Form::binary(&[]).compressed(&[]), 5, &mut out), 2);
        assert_eq!(out[..2], [0xc2, 5]);
    }

    /// Frames of every length form, written through a pipe far smaller than
    /// one batch (every write is partial), mixed with frames sent through the
    /// sink and pings, arrive whole and in order; batched, several to a
    /// message.
    async fn partial_writes(batch: bool) {
        let (mut server, mut client) = pair(61).await;
        if batch {
            server.batch();
        }
        let sizes = [0usize, 1, 125, 126, 300, 65_535, 65_536, 70_000, 7];
        let payload = |n: usize, len: usize| {
            let mut text = format!("{n}:");
            while text.len() < len.max(text.len()) {
                text.push((b'a' + (text.len() % 26) as u8) as char);
            }
            text
        };
        let mut expected = Vec::new();
        let writer = async {
            let mut n = 0;
            for round in 0..3 {
                let mut batch: Vec<Utf8Bytes> = Vec::new();
                for &len in &sizes {
                    batch.push(payload(n, len).into());
                    n += 1;
                }
                expected.extend(batch.iter().map(|t| t.to_string()));
                // One call writes up to a write's worth; the rest waits for
                // the next, as queued frames wait for the next wake-up.
                let mut rest = batch.into_iter();
                while let Some(head) = rest.next() {
                    let mut first = Some(Out::from(head));
                    std::future::poll_fn(|cx| {
                        server.poll_write_texts(
                            cx,
                            &mut first,
                            || rest.next().map(Out::from),
                            false,
                        )
                    })
                    .await
                    .unwrap();
                }
                // A reply and a ping between batches go after every byte
                // of the batch.
                let reply = payload(n, 200 * round);
                n += 1;
                expected.push(reply.clone());
                server.send(WsMessage::text(reply)).await.unwrap();
                server.send(WsMessage::Ping(Default::default())).await.unwrap();
            }
            server.close().await.unwrap();
        };
        let reader = async {
            let mut messages = Vec::new();
            while let Some(message) = client.next().await {
                match message.unwrap() {
                    WsMessage::Text(text) => messages.push(text.to_string()),
                    WsMessage::Close(_) => break,
                    _ => {}
                }
            }
            ((), messages)
        };
        let ((), ((), messages)) = tokio::join!(writer, reader);
        let got: Vec<String> =
            messages.iter().flat_map(|m| m.split('\n')).map(str::to_owned).collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
        if batch {
            // Several frames to a message, none past the batch size but a
            // frame that is larger alone.
            assert!(messages.len() < expected.len(), "{} messages", messages.len());
            for message in &messages {
                assert!(message.len() <= BATCH_BYTES || !message.contains('\n'));
            }
        } else {
            assert_eq!(messages.len(), expected.len());
        }
    }

    #[tokio::test]
    async fn partial_writes_keep_frames_whole_and_in_order() {
        partial_writes(false).await;
    }

    #[tokio::test]
    async fn partial_writes_keep_batches_whole_and_in_order() {
        partial_writes(true).await;
    }

    /// Every frame a server wrote to `wire` up to its close frame: whether
    /// it was compressed (RSV1), and its text, inflated.
    fn read_frames(wire: &[u8]) -> Vec<(bool, String)> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let (first, second) = (wire[at], wire[at + 1]);
            assert_eq!(second & 0x80, 0, "server frames are not masked");
            let (len, header) = match second & 0x7f {
                126 => (u16::from_be_bytes([wire[at + 2], wire[at + 3]]) as usize, 4),
                127 => (u64::from_be_bytes(wire[at + 2..at + 10].try_into().unwrap()) as usize, 10),
                short => (short as usize, 2),
            };
            let payload = &wire[at + header..at + header + len];
            at += header + len;
            match first & 0x0f {
                8 => break,
                1 => {}
                other => panic!("unexpected opcode {other}"),
            }
            let deflated = first & 0x40 != 0;
            let text = if deflated {
                crate::deflate::codec::inflate(payload, 1 << 20).unwrap()
            } else {
                payload.to_vec()
            };
            frames.push((deflated, String::from_utf8(text).unwrap()));
        }
        frames
    }

    /// A server `FrameSocket` compressing with `compressor`, over a pipe
    /// whose far end is read raw.
    async fn deflating(
        compressor: &Arc<Compressor>,
        batch: bool,
    ) -> (FrameSocket<WebSocketStream<tokio::io::DuplexStream>>, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 20);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut server = FrameSocket::new(server);
        server.deflate(compressor.clone());
        if batch {
            server.batch();
        }
        (server, client)
    }

    #[tokio::test]
    async fn long_frames_go_compressed_once_for_every_member_and_batch_by_kind() {
        use crate::hub::{DeliveryKind, Target};
        use tokio::io::AsyncReadExt;
        let compressor = Arc::new(Compressor::new(6, 100));
        let long = |tag: &str| {
            format!(r#"{{"type":"message","tag":"{tag}","data":"{}"}}"#, "ab".repeat(300))
        };
        let shared = |text: String| {
            Out::Shared(Arc::new(Delivery::new(Target::All, text.into(), DeliveryKind::Message)))
        };
        let frames = vec![
            Out::Own(Utf8Bytes::from(r#"{"type":"ack","id":"1"}"#)),
            shared(long("one")),
            Out::Own(long("own").into()),
            shared(r#"{"type":"message","short":true}"#.to_owned()),
            shared(long("two")),
            // Replayed history goes as it is, however long.
            Out::Replayed(long("replayed").into()),
        ];
        let texts: Vec<String> = frames
            .iter()
            .map(|frame| String::from_utf8(uncompressed(frame, false).bytes.to_vec()).unwrap())
            .collect();
        let mut written = Vec::new();
        for batch in [false, true] {
            let (mut server, mut client) = deflating(&compressor, batch).await;
            let mut queue = frames.clone().into_iter();
            let mut first = queue.next();
            std::future::poll_fn(|cx| {
                server.poll_write_texts(cx, &mut first, || queue.next(), false)
            })
            .await
            .unwrap();
            // An answer through the sink, compressed as it is written.
            server.send(WsMessage::text(long("reply"))).await.unwrap();
            server.close().await.unwrap();
            drop(server);
            let mut wire = Vec::new();
            client.read_to_end(&mut wire).await.unwrap();
            let got = read_frames(&wire);
            let lines: Vec<String> =
                got.iter().flat_map(|(_, text)| text.split('\n')).map(str::to_owned).collect();
            let mut expected = texts.clone();
            expected.push(long("reply"));
            assert_eq!(lines, expected, "batch: {batch}");
            let kinds: Vec<bool> = got.iter().map(|(deflated, _)| *deflated).collect();
            if batch {
                // Messages hold one kind: the two long frames in a row share one.
                assert_eq!(kinds, [false, true, false, true, false, true]);
                assert_eq!(got[1].1.matches('\n').count(), 1);
            } else {
                assert_eq!(kinds, [false, true, true, false, true, false, true]);
            }
            written.push(wire.len());
        }
        // The two long shared frames were compressed once for both
        // connections; the long frame and the reply of each connection's own,
        // once each by each: 2 + 2 × 2.
        let totals = compressor.totals();
        assert_eq!(totals.compressed, 6);
        let (before, after) = (totals.before, totals.after);
        assert!(after * 3 < before, "{after} of {before} bytes");
        // Each connection wrote less than half its frames' plain bytes.
        assert!(written.iter().all(|&n| n < before as usize / 2 / 2), "{written:?}");
    }

    /// A write abandoned while the socket is full (the session closing a
    /// slow consumer) still leaves whole frames: the close frame follows the
    /// remainder of the last text frame.
    #[tokio::test]
    async fn a_close_after_an_abandoned_write_follows_whole_frames() {
        let (mut server, mut client) = pair(100).await;
        let big: Utf8Bytes = "x".repeat(1_000).into();
        let mut first = Some(Out::from(big.clone()));
        let mut more = std::iter::repeat_n(big, 5);
        // The pipe takes 100 bytes: the write is pending with most of its
        // frames still owed.
        let poll = std::future::poll_fn(|cx| {
            Poll::Ready(server.poll_write_texts(
                cx,
                &mut first,
                || more.next().map(Out::from),
                false,
            ))
        })
        .await;
        assert!(poll.is_pending());
        let closing = async {
            server.send(WsMessage::Close(None)).await.unwrap();
            // Text after the close is refused, as tungstenite does.
            assert!(server.send(WsMessage::text("late")).await.is_err());
        };
        let reader = async {
            let mut texts = 0;
            loop {
                match client.next().await {
                    Some(Ok(WsMessage::Text(text))) => {
                        assert_eq!(text.len(), 1_000);
                        texts += 1;
                    }
                    Some(Ok(WsMessage::Close(_))) => break texts,
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        let ((), texts) = tokio::join!(closing, reader);
        assert_eq!(texts, 6);
    }

    /// A ping that arrives while part of a text frame is owed is answered
    /// after the frame, not inside it: reading waits for the remainder.
    #[tokio::test]
    async fn a_pong_never_lands_inside_an_owed_frame() {
        let (mut server, mut client) = pair(100).await;
        let big: Utf8Bytes = "y".repeat(1_000).into();
        let mut first = Some(Out::from(big.clone()));
        let mut more = std::iter::repeat_n(big, 2);
        let poll = std::future::poll_fn(|cx| {
            Poll::Ready(server.poll_write_texts(
                cx,
                &mut first,
                || more.next().map(Out::from),
                false,
            ))
        })
        .await;
        assert!(poll.is_pending(), "the pipe took only part of the frames");
        client.send(WsMessage::Ping("p".into())).await.unwrap();
        let serving = async {
            // Reading gets the ping (tungstenite queues its pong) only once
            // every owed byte is out; the flush then sends the pong.
            match server.next().await {
                Some(Ok(WsMessage::Ping(_))) => {}
                other => panic!("expected the ping, got {other:?}"),
            }
            server.flush().await.unwrap();
        };
        let reading = async {
            let mut seen = Vec::new();
            while seen.len() < 4 {
                match client.next().await {
                    Some(Ok(WsMessage::Text(text))) => seen.push(format!("text {}", text.len())),
                    Some(Ok(WsMessage::Pong(_))) => seen.push("pong".to_owned()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            seen
        };
        let ((), seen) = tokio::join!(serving, reading);
        assert_eq!(seen, ["text 1000", "text 1000", "text 1000", "pong"]);
    }

    #[tokio::test]
    async fn a_binary_message_goes_alone_raw_or_compressed_and_text_batches_around_it() {
        use crate::hub::{DeliveryKind, Target};
        use switchboard_protocol::binary::split_envelope;
        use tokio::io::AsyncReadExt;
        let compressor = Arc::new(Compressor::new(6, 100));
        let shared = |text: String| {
            Out::Shared(Arc::new(Delivery::new(Target::All, text.into(), DeliveryKind::Message)))
        };
        let binary = |bytes: Vec<u8>| {
            let (data, encoding) = switchboard_protocol::Payload::from(bytes).into_fields();
            let message = switchboard_protocol::Message {
                encoding,
                room: Some("r".into()),
                to: None,
                from: "ann".into(),
                event: "e".into(),
                data,
                ts: 1,
                offset: None,
                binary: None,
            };
            crate::wire::encode(&switchboard_protocol::ServerFrame::Message(message)).to_string()
        };
        let short = vec![1u8, 2, 3];
        let long = vec![7u8; 2_000];
        for deflate in [false, true] {
            let (server, client) = tokio::io::duplex(1 << 20);
            let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
            let mut server = FrameSocket::new(server);
            server.batch();
            server.speak_binary();
            if deflate {
                server.deflate(compressor.clone());
            }
            let frames = vec![
                shared(r#"{"type":"message","n":1}"#.to_owned()),
                shared(binary(short.clone())),
                shared(binary(long.clone())),
                shared(r#"{"type":"message","n":2}"#.to_owned()),
                shared(r#"{"type":"message","n":3}"#.to_owned()),
                // A JSON-only replay stays text; a binary one is binary.
                Out::replayed(binary(short.clone()).into(), true),
            ];
            let mut queue = frames.into_iter();
            let mut first = queue.next();
            std::future::poll_fn(|cx| {
                server.poll_write_texts(cx, &mut first, || queue.next(), false)
            })
            .await
            .unwrap();
            drop(server);
            let mut wire = Vec::new();
            let mut client = client;
            client.read_to_end(&mut wire).await.unwrap();
            // (opcode, compressed, payload inflated)
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let (first, second) = (wire[at], wire[at + 1]);
                let (len, header) = match second {
                    126 => (u16::from_be_bytes([wire[at + 2], wire[at + 3]]) as usize, 4),
                    short => (short as usize, 2),
                };
                let payload = &wire[at + header..at + header + len];
                at += header + len;
                let deflated = first & 0x40 != 0;
                let payload = if deflated {
                    crate::deflate::codec::inflate(payload, 1 << 20).unwrap()
                } else {
                    payload.to_vec()
                };
                got.push((first & 0x0f, deflated, payload));
            }
            let opcodes: Vec<u8> = got.iter().map(|(opcode, ..)| *opcode).collect();
            assert_eq!(opcodes, [1, 2, 2, 1, 2], "deflate {deflate}");
            assert_eq!(got[3].2, b"{\"type\":\"message\",\"n\":2}\n{\"type\":\"message\",\"n\":3}");
            assert_eq!(split_envelope(&got[1].2).unwrap().1, &short[..]);
            assert_eq!(split_envelope(&got[2].2).unwrap().1, &long[..]);
            assert_eq!(split_envelope(&got[4].2).unwrap().1, &short[..]);
            // Only the long binary message is worth compressing.
            let compressed: Vec<bool> = got.iter().map(|(_, deflated, _)| *deflated).collect();
            assert_eq!(compressed, [false, false, deflate, false, false]);
        }
    }
}

//! [`Inflating`]: the read side of permessage-deflate, as a layer under
//! tungstenite's frame reader.
//!
//! tungstenite refuses any frame with RSV1 set. On a connection that
//! negotiated the extension, this layer reads the client's frames first: a
//! compressed message (RSV1 on its first frame, the payload of all its
//! fragments one deflate stream) is unmasked, gathered and inflated, then
//! handed up as one plain, final frame masked with a zero key (which unmasks
//! to itself), so tungstenite goes on checking everything else: UTF-8,
//! control frames, sizes, the closing handshake. Every other frame passes
//! through byte for byte.
//!
//! Inflating is bounded by the largest message the hub accepts, before the
//! memory is spent ([`codec::inflate_into`]); a compressed message that
//! would pass it fails the read with [`InflateError::TooLarge`] (the session
//! closes with 1009). The message is inflated straight into the bytes handed
//! up, its compressed form let go as soon as it is inflated. Between frames,
//! the layer holds nothing, waiting on the socket included: its buffers
//! exist only while a frame is partly read or not yet handed up.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::{Compressor, FramingError, InflateError, codec};

/// How much one read from the socket takes: as much as the pooled reader
/// under this layer reads at once (`transport/pooled_read.rs`), so that it
/// passes the read straight to the socket instead of keeping what a smaller
/// one would leave behind.
const CHUNK: usize = 16 * 1024;

/// The longest frame header: two bytes, a 64-bit length, a mask.
const HEADER_MAX: usize = 14;

/// A connection's byte stream with compressed client messages inflated;
/// see the module docs.
#[derive(Debug)]
pub(crate) struct Inflating<S> {
    inner: S,
    /// The largest message, inflated; 0 when the extension was not
    /// negotiated and bytes pass as they are.
    limit: usize,
    /// Where inflated messages are counted.
    counter: Option<Arc<Compressor>>,
    /// A frame being read; `None` at a frame boundary with nothing buffered.
    work: Option<Box<Work>>,
}

/// Where the frame layer stands, while it stands anywhere.
#[derive(Debug, Default)]
struct Work {
    /// Bytes read from the socket and not looked at yet, from `at` on.
    input: Vec<u8>,
    at: usize,
    /// Bytes ready for tungstenite, from `out_at` on.
    output: Vec<u8>,
    out_at: usize,
    state: State,
    /// The compressed message being gathered: its opcode and payload.
    message: Option<(OpCode, Vec<u8>)>,
}

#[derive(Debug, Default)]
enum State {
    /// The next bytes are a frame header.
    #[default]
    Header,
    /// This many payload bytes pass through.
    Pass(u64),
    /// This many payload bytes of a compressed message are still to come,
    /// masked with `mask` from `phase` on; `fin`: the message ends with them.
    Take { left: u64, mask: [u8; 4], phase: usize, fin: bool },
    /// The stream broke a rule; every read fails with this.
    Failed(InflateError),
    /// A header tungstenite will refuse (a reserved opcode): from there on
    /// every byte passes as it came, for tungstenite to fail the connection.
    Raw,
}

impl<S> Inflating<S> {
    /// Wraps `inner`; `limit` is the largest message inflated, or `None`
    /// when the extension was not negotiated.
    pub(crate) fn new(inner: S, limit: Option<usize>) -> Inflating<S> {
        Inflating { inner, limit: limit.unwrap_or(0), counter: None, work: None }
    }

    /// Counts the messages it inflates in `compressor`'s figures.
    pub(crate) fn counting(mut self, compressor: Arc<Compressor>) -> Inflating<S> {
        self.counter = Some(compressor);
        self
    }
}

/// An `io::Error` that carries `err`, for the session to find again.
fn failed(err: InflateError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// The inflate failure a read error carries, if it is one.
pub(crate) fn inflate_error(err: &io::Error) -> Option<InflateError> {
    err.get_ref()?.downcast_ref::<InflateError>().copied()
}

impl Work {
    /// Whether nothing is held: the layer may let go of it.
    fn idle(&self) -> bool {
        matches!(self.state, State::Header)
            && self.message.is_none()
            && self.at == self.input.len()
            && self.out_at == self.output.len()
    }

    /// Moves ready bytes into `buf`; whether there were any.
    fn hand_over(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.out_at < self.output.len() {
            let n = (self.output.len() - self.out_at).min(buf.remaining());
            buf.put_slice(&self.output[self.out_at..self.out_at + n]);
            self.out_at += n;
            if self.out_at == self.output.len() {
                self.output.clear();
                self.out_at = 0;
            }
            return true;
        }
        if matches!(self.state, State::Raw) && self.at < self.input.len() {
            let n = (self.input.len() - self.at).min(buf.remaining());
            buf.put_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            return true;
        }
        if let State::Pass(left) = &mut self.state {
            let available = self.input.len() - self.at;
            if *left > 0 && available > 0 {
                let n = (*left).min(available as u64).min(buf.remaining() as u64) as usize;
                buf.put_slice(&self.input[self.at..self.at + n]);
                self.at += n;
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Header;
                }
                return true;
            }
        }
        false
    }

    /// Reads a header or compressed payload from `input`; whether anything
    /// moved.
    fn step(&mut self, limit: usize, counter: Option<&Compressor>) -> Result<bool, InflateError> {
        match &mut self.state {
            State::Header => self.header(limit),
            State::Take { left, mask, phase, fin } => {
                let available = self.input.len() - self.at;
                let n = (*left).min(available as u64) as usize;
                let (_, data) = self.message.as_mut().expect("a message is being gathered");
                for &byte in &self.input[self.at..self.at + n] {
                    data.push(byte ^ mask[*phase % 4]);
                    *phase += 1;
                }
                self.at += n;
                *left -= n as u64;
                if *left > 0 {
                    return Ok(n > 0);
                }
                if *fin {
                    let (opcode, data) = self.message.take().expect("a message is being gathered");
                    self.inflate(opcode, data, limit)?;
                    if let Some(counter) = counter {
                        counter.inflated();
                    }
                }
                self.state = State::Header;
                Ok(true)
            }
            State::Pass(_) | State::Failed(_) | State::Raw => Ok(false),
        }
    }

    /// Inflates a whole compressed message into `output`, as one final
    /// frame, masked with a zero key. Its header goes in front of the
    /// inflated bytes, in room left for it, so the message is not copied.
    fn inflate(&mut self, opcode: OpCode, data: Vec<u8>, limit: usize) -> Result<(), InflateError> {
        // What is handed up ahead of the message: pass-through bytes not
        // taken yet (nothing, in practice: a step runs once they are out).
        let ahead = self.output.len();
        self.output.resize(ahead + HEADER_MAX, 0);
        codec::inflate_into(&data, limit, &mut self.output)?;
        drop(data);
        let len = self.output.len() - ahead - HEADER_MAX;
        let mut header = [0u8; HEADER_MAX];
        let used = inflated_header(&mut header, opcode, len as u64);
        let at = ahead + HEADER_MAX - used;
        self.output[at..ahead + HEADER_MAX].copy_from_slice(&header[..used]);
        if ahead == self.out_at {
            // Nothing ahead: handing up starts at the header.
            self.out_at = at;
        } else {
            // Close the gap the header did not fill.
            self.output.drain(ahead..at);
        }
        Ok(())
    }

    /// Reads one frame header, if all of it is there, and decides what
    /// becomes of the frame.
    fn header(&mut self, limit: usize) -> Result<bool, InflateError> {
        let mut cursor = Cursor::new(&self.input[self.at..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(false),
            // A reserved opcode: tungstenite fails the connection on this
            // header, so what follows is its to read, as it came.
            Err(_) => {
                self.state = State::Raw;
                return Ok(true);
            }
        };
        let header_len = cursor.position() as usize;
        let data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
        let compressed = header.rsv1 && data;
        let continues = header.opcode == OpCode::Data(Data::Continue) && self.message.is_some();
        let framing = |error| Err(InflateError::Framing(error));
        if compressed || continues {
            if compressed && self.message.is_some() {
                return framing(FramingError::Interleaved);
            }
            if continues && header.rsv1 {
                return framing(FramingError::Rsv1OnContinuation);
            }
            // This frame never reaches tungstenite as it came: check here
            // what tungstenite would.
            if header.rsv2 || header.rsv3 {
                return framing(FramingError::OtherReservedBits);
            }
            let Some(mask) = header.mask else { return framing(FramingError::Unmasked) };
            let gathered = self.message.as_ref().map_or(0, |(_, data)| data.len() as u64);
            if gathered.saturating_add(len) > limit as u64 {
                return Err(InflateError::TooLarge { limit });
            }
            // Room for the frame, but no more on a header's word than a
            // few reads' worth: the bytes must arrive for the rest.
            let room = len.min(CHUNK as u64 * 4) as usize;
            if compressed {
                self.message = Some((header.opcode, Vec::with_capacity(room)));
            } else if let Some((_, data)) = &mut self.message {
                data.reserve(room);
            }
            self.at += header_len;
            self.state = State::Take { left: len, mask, phase: 0, fin: header.is_final };
            return Ok(true);
        }
        if data && self.message.is_some() {
            return framing(FramingError::Interleaved);
        }
        // Anything else is tungstenite's to judge, as the client sent it.
        self.output.extend_from_slice(&self.input[self.at..self.at + header_len]);
        self.at += header_len;
        self.state = if len == 0 { State::Header } else { State::Pass(len) };
        Ok(true)
    }
}

/// Writes the header of a final client frame of `len` bytes with `opcode`,
/// masked with a zero key (as tungstenite expects a client's frame on a
/// server, and which unmasks to itself) into `out`; returns its length.
fn inflated_header(out: &mut [u8; HEADER_MAX], opcode: OpCode, len: u64) -> usize {
    let header =
        FrameHeader { is_final: true, opcode, mask: Some([0; 4]), ..FrameHeader::default() };
    let mut cursor = Cursor::new(&mut out[..]);
    header.format(len, &mut cursor).expect("a header fits in 14 bytes");
    cursor.position() as usize
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.limit == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(work) = &mut this.work {
                if let State::Failed(err) = work.state {
                    return Poll::Ready(Err(failed(err)));
                }
                if work.hand_over(buf) {
                    if work.idle() {
                        this.work = None;
                    }
                    return Poll::Ready(Ok(()));
                }
                match work.step(this.limit, this.counter.as_deref()) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(err) => {
                        // Let go of the buffers now: the session may linger
                        // a while over its close.
                        **work = Work { state: State::Failed(err), ..Work::default() };
                        return Poll::Ready(Err(failed(err)));
                    }
                }
                // Everything buffered is used. With nothing partly read,
                // let go of the buffers before waiting on the socket.
                if work.idle() {
                    this.work = None;
                }
            }
            let mut chunk = [0u8; CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The end of the stream; a partial frame stays unread and
                // tungstenite reports the connection reset.
                return Poll::Ready(Ok(()));
            }
            let work = this.work.get_or_insert_with(Box::default);
            work.input.drain(..work.at);
            work.at = 0;
            work.input.extend_from_slice(read.filled());
        }
    }
}

crate::write_through::write_through!(Inflating);

/// A client frame as a browser sends it: masked with `mask`, RSV1 when
/// `compressed`. For tests and the fuzzer's seeds.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn client_frame(
    fin: bool,
    compressed: bool,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        rsv1: compressed,
        opcode: OpCode::from(opcode),
        mask: Some(mask),
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    header.format(payload.len() as u64, &mut out).expect("a vector takes any header");
    out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::WebSocketStream;
    use tungstenite::Message;
    use tungstenite::error::ProtocolError;
    use tungstenite::protocol::{Role, WebSocketConfig};

    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    /// A hub-side socket over the layer, and the raw client end.
    async fn server(
        limit: usize,
    ) -> (WebSocketStream<Inflating<tokio::io::DuplexStream>>, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let config =
            WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let layer = Inflating::new(server, Some(limit)).counting(counter());
        (WebSocketStream::from_raw_socket(layer, Role::Server, Some(config)).await, client)
    }

    fn counter() -> Arc<Compressor> {
        Arc::new(Compressor::new(6, 1024))
    }

    fn compressed(text: &str) -> Vec<u8> {
        codec::deflate(text.as_bytes(), 6).unwrap().into_vec()
    }

    #[tokio::test]
    async fn compressed_and_plain_messages_arrive_as_text_in_order() {
        let (mut hub, mut client) = server(1 << 20).await;
        let big = "{\"type\":\"publish\",\"room\":\"r\"}".repeat(200);
        let data = compressed(&big);
        // Compressed in one frame; then split over three fragments with a
        // ping between; a plain message; an empty compressed one.
        let mut wire = client_frame(true, true, 1, &data, MASK);
        let third = data.len() / 3;
        wire.extend(client_frame(false, true, 1, &data[..third], MASK));
        wire.extend(client_frame(true, false, 9, b"mid", MASK));
        wire.extend(client_frame(false, false, 0, &data[third..2 * third], MASK));
        wire.extend(client_frame(true, false, 0, &data[2 * third..], MASK));
        wire.extend(client_frame(true, false, 1, b"plain", MASK));
        wire.extend(client_frame(true, true, 1, &[0x00], MASK));
        // Byte by byte, the worst split a socket can make.
        let writer = async {
            for byte in wire {
                client.write_all(&[byte]).await.unwrap();
            }
            client
        };
        let reader = async {
            let mut got = Vec::new();
            while got.len() < 5 {
                got.push(hub.next().await.unwrap().unwrap());
            }
            got
        };
        let (_client, got) = tokio::join!(writer, reader);
        assert_eq!(got[0], Message::text(big.clone()));
        assert_eq!(got[1], Message::Ping("mid".into()));
        assert_eq!(got[2], Message::text(big));
        assert_eq!(got[3], Message::text("plain"));
        assert_eq!(got[4], Message::text(""));
        let counted = hub.get_ref().counter.as_ref().unwrap().totals().inflated;
        assert_eq!(counted, 3, "three messages were inflated");
        // Waiting for the next frame, with nothing partly read, holds no
        // buffer.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), hub.next()).await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert!(hub.get_ref().work.is_none(), "nothing is held while waiting");
    }

    #[tokio::test]
    async fn a_close_inside_a_fragmented_compressed_message_is_read_at_once() {
        let (mut hub, mut client) = server(1 << 20).await;
        let data = compressed(&"y".repeat(3_000));
        let mut wire = client_frame(false, true, 1, &data[..4], MASK);
        wire.extend(client_frame(true, false, 8, &1000u16.to_be_bytes(), MASK));
        client.write_all(&wire).await.unwrap();
        assert!(matches!(hub.next().await, Some(Ok(Message::Close(_)))));
    }

    #[tokio::test]
    async fn a_large_message_is_handed_up_whole_with_its_header_in_front() {
        // Past 64 KiB: the header's longest length form.
        let text = (0..20_000).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        assert!(text.len() > 65_536);
        let (mut hub, mut client) = server(1 << 20).await;
        client.write_all(&client_frame(true, true, 1, &compressed(&text), MASK)).await.unwrap();
        assert_eq!(hub.next().await.unwrap().unwrap(), Message::text(text));
    }

    async fn refused(wire: Vec<u8>, limit: usize) -> InflateError {
        let (mut hub, mut client) = server(limit).await;
        client.write_all(&wire).await.unwrap();
        match hub.next().await {
            Some(Err(tungstenite::Error::Io(err))) => {
                inflate_error(&err).expect("an inflate error")
            }
            other => panic!("expected an inflate error, got {other:?}"),
        }
    }

    #[test]
    fn a_bomb_is_refused_as_too_large_holding_little_more_than_the_limit() {
        let zeros = vec![b'0'; 8 << 20];
        let bomb = codec::deflate(&zeros, 9).unwrap();
        let limit = 64 * 1024;
        let wire = client_frame(true, true, 1, &bomb, MASK);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // Everything this thread allocates while the layer and tungstenite
        // read the bomb: the wire, the socket, the inflater, the output.
        let counted = allocation_counter::measure(|| {
            let err = runtime.block_on(refused(wire, limit));
            assert_eq!(err, InflateError::TooLarge { limit });
        });
        // About 330 KB: the pipe, the inflater's state, the output while it
        // grows (under twice the 64 KiB limit); the 8 MiB the bomb stands
        // for never.
        assert!(counted.bytes_max < 512 * 1024, "{counted:?}");
    }

    #[test]
    fn a_message_at_the_limit_is_inflated_without_a_second_copy() {
        use tokio::io::AsyncReadExt;
        let limit = 256 * 1024;
        let text = "0".repeat(limit);
        let wire = client_frame(true, true, 1, &compressed(&text), MASK);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut read = vec![0u8; limit + 64];
        let (mut client, server) = runtime.block_on(async { tokio::io::duplex(1 << 20) });
        runtime.block_on(client.write_all(&wire)).unwrap();
        drop(client);
        let mut layer = Inflating::new(server, Some(limit));
        // The layer alone, read as tungstenite would but into one buffer
        // made beforehand: what it allocates is the message once (its
        // buffer, which grows to it) and the inflater's state.
        let counted = allocation_counter::measure(|| {
            let mut at = 0;
            runtime.block_on(async {
                loop {
                    let n = layer.read(&mut read[at..]).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    at += n;
                }
            });
            assert_eq!(at, limit + 14, "the header with a 64-bit length and a mask, and the text");
        });
        assert!(read[14..].iter().take(limit).all(|&byte| byte == b'0'));
        assert!(counted.bytes_max < (limit * 8 / 5) as u64 + 64 * 1024, "{counted:?}");
    }

    #[tokio::test]
    async fn compressed_bytes_past_the_limit_are_refused_before_inflating() {
        // Compressed bytes alone past the limit, across fragments.
        let mut wire = client_frame(false, true, 1, &[0; 40], MASK);
        wire.extend(client_frame(true, false, 0, &[0; 40], MASK));
        assert_eq!(refused(wire, 64).await, InflateError::TooLarge { limit: 64 });
    }

    #[tokio::test]
    async fn broken_framing_and_data_are_named() {
        let data = compressed(&"x".repeat(500));
        let mut rsv1_continuation = client_frame(false, true, 1, &data, MASK);
        rsv1_continuation.extend(client_frame(true, true, 0, &data, MASK));
        let mut interleaved = client_frame(false, true, 1, &data, MASK);
        interleaved.extend(client_frame(true, false, 1, b"new", MASK));
        let mut unmasked = client_frame(true, true, 1, &data, MASK);
        unmasked[1] &= 0x7f;
        unmasked.drain(2..6);
        let mut rsv2 = client_frame(true, true, 1, &data, MASK);
        rsv2[0] |= 0x20;
        let mut rsv3_continuation = client_frame(false, true, 1, &data[..2], MASK);
        let mut last = client_frame(true, false, 0, &data[2..], MASK);
        last[0] |= 0x10;
        rsv3_continuation.extend(last);
        let framing = InflateError::Framing;
        for (wire, expected) in [
            (rsv1_continuation, framing(FramingError::Rsv1OnContinuation)),
            (interleaved, framing(FramingError::Interleaved)),
            (unmasked, framing(FramingError::Unmasked)),
            (rsv2, framing(FramingError::OtherReservedBits)),
            (rsv3_continuation, framing(FramingError::OtherReservedBits)),
            (client_frame(true, true, 1, &[0xff; 16], MASK), InflateError::Corrupt),
        ] {
            assert_eq!(refused(wire, 1 << 20).await, expected);
        }
    }

    #[tokio::test]
    async fn rsv1_on_a_control_frame_is_left_to_tungstenite_and_without_the_layer_refused() {
        let (mut hub, mut client) = server(1 << 20).await;
        client.write_all(&client_frame(true, true, 9, b"p", MASK)).await.unwrap();
        assert!(matches!(hub.next().await, Some(Err(tungstenite::Error::Protocol(_)))));
        // A reserved opcode: passed on as it came, for tungstenite to refuse.
        let (mut hub, mut client) = server(1 << 20).await;
        client.write_all(&client_frame(true, false, 3, b"reserved", MASK)).await.unwrap();
        let refused = hub.next().await;
        assert!(
            matches!(
                refused,
                Some(Err(tungstenite::Error::Protocol(ProtocolError::InvalidOpcode(3))))
            ),
            "{refused:?}"
        );
        // A connection that did not negotiate it: RSV1 is a protocol error.
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut plain =
            WebSocketStream::from_raw_socket(Inflating::new(server, None), Role::Server, None)
                .await;
        let mut client = client;
        client
            .write_all(&client_frame(true, true, 1, &compressed(&"hello ".repeat(20)), MASK))
            .await
            .unwrap();
        assert!(matches!(plain.next().await, Some(Err(tungstenite::Error::Protocol(_)))));
        // Writes pass through untouched.
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut hub = WebSocketStream::from_raw_socket(
            Inflating::new(server, Some(1024)),
            Role::Server,
            None,
        )
        .await;
        let mut peer = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        hub.send(Message::text("out")).await.unwrap();
        assert_eq!(peer.next().await.unwrap().unwrap(), Message::text("out"));
    }
}

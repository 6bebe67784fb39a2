//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and
//! for the randomized tests that run the same harnesses on stable.
//!
//! [`decode_frame`] feeds arbitrary bytes to the frame decoder, and as a
//! binary message to the envelope decoder.
//! [`session`] feeds an arbitrary sequence of WebSocket messages to a real
//! [`Session`](crate::session::Session) over an in-memory socket, on a
//! paused clock (speaking binary when the input's first byte is odd), and
//! checks that it never panics, answers only with valid server frames and
//! envelopes, and ends when the input ends.
//! [`inflate_frames`] feeds arbitrary bytes, as a client's side of a
//! connection that negotiated permessage-deflate, through the hub's read
//! layer and tungstenite, and reads arbitrary text as extension offers.

use futures::StreamExt;
use switchboard_protocol::{ClientFrame, ServerFrame};
use tungstenite::Message as WsMessage;

use crate::policy::auth::Identity;
use crate::session::{Session, Start};
use crate::{AppState, Config, session::memory_socket};

/// Decodes arbitrary bytes as a client frame, and as a client's binary
/// message; must never panic. A binary message that decodes is a `publish`
/// or a `send` whose data is base64 text, as its encoding says.
pub fn decode_frame(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = ClientFrame::decode_limited(text, 32);
        let _ = serde_json::from_str::<ServerFrame>(text);
        let _ = crate::binary::envelope_of(text);
    }
    let _ = crate::binary::request_id(bytes, 32);
    if let Ok(frame) = crate::binary::request_of(bytes, 32, 1 << 16) {
        let (ClientFrame::Publish { data, encoding, .. }
        | ClientFrame::Send { data, encoding, .. }) = frame
        else {
            panic!("a binary message decoded as another frame: {frame:?}");
        };
        assert!(crate::binary::check_data(&data, encoding).is_ok() && encoding.is_some());
    }
}

/// Reads `input` as the bytes a client sent on a connection that
/// negotiated permessage-deflate (the first byte picks the message limit),
/// and as `Sec-WebSocket-Extensions` offers. Must never panic; no message
/// may pass the limit, and reading ends when the input does.
pub fn inflate_frames(input: &[u8]) {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::WebSocketStream;
    use tungstenite::protocol::{Role, WebSocketConfig};

    if let Ok(value) = axum::http::HeaderValue::from_bytes(input) {
        let _ = crate::deflate::offer::negotiate([&value]).map(|agreed| agreed.header());
    }
    let Some((&pick, bytes)) = input.split_first() else { return };
    let limit = 64 + usize::from(pick) * 64;
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let config =
            WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let layer = crate::deflate::inflating::Inflating::new(server, Some(limit));
        let mut hub = WebSocketStream::from_raw_socket(layer, Role::Server, Some(config)).await;
        let writer = async move {
            let _ = client.write_all(bytes).await;
            // The end of the input ends the stream.
            drop(client);
        };
        let reader = async move {
            while let Some(Ok(message)) = hub.next().await {
                assert!(message.len() <= limit, "a message past the limit was read");
            }
        };
        tokio::join!(writer, reader);
    });
}

/// Runs a session over `input`: messages separated by `0xff` bytes; one
/// starting with `0x00` is binary, anything else text (lossy UTF-8).
pub fn session(input: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut config = Config::default();
        config.history.default.size = 16;
        let state = AppState::new(config).expect("valid config");
        let (socket, mut peer) = memory_socket::pair();
        let session = Session::new(socket, state, Identity::trusted("fuzzer"));
        let binary = input.first().is_some_and(|first| first % 2 == 1);
        let session = if binary { session.speaking_binary() } else { session };
        let task = tokio::spawn(session.run(Start::default()));
        for chunk in input.split(|byte| *byte == 0xff).take(256) {
            let message = match chunk.split_first() {
                Some((0, rest)) => WsMessage::Binary(rest.to_vec().into()),
                _ => WsMessage::Text(String::from_utf8_lossy(chunk).into_owned().into()),
            };
            if peer.to_session.unbounded_send(Ok(message)).is_err() {
                break;
            }
        }
        peer.to_session.close_channel();
        while let Some(message) = peer.from_session.next().await {
            let text = match &message {
                WsMessage::Text(text) => text.as_str(),
                WsMessage::Binary(bytes) => {
                    assert!(binary, "a binary message to a client that did not ask for binary");
                    let (header, _) = switchboard_protocol::binary::split_envelope(bytes)
                        .expect("the session sends only valid envelopes");
                    header
                }
                _ => continue,
            };
            serde_json::from_str::<ServerFrame>(text).expect("the session sends only valid frames");
        }
        task.await.expect("the session ends without panicking");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny xorshift: deterministic randomness with no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    const SEEDS: [&str; 9] = [
        r#"{"type":"join","id":"1","room":"general"}"#,
        r#"{"type":"join","id":"7","room":"general","since":{"epoch":"x","offset":3}}"#,
        r#"{"type":"publish","id":"2","room":"general","event":"chat","data":{"a":[1,2]}}"#,
        r#"{"type":"send","id":"3","to":"fuzzer","event":"dm","data":"x"}"#,
        r#"{"type":"history","id":"4","room":"general","since":1,"limit":5}"#,
        r#"{"type":"leave","id":"5","room":"general"}"#,
        r#"{"type":"auth","id":"6","token":"e30.e30.e30"}"#,
        r#"{"type":"ping","id":"8"}"#,
        r#"{"type":"publish","id":"9","room":"general","event":"b","data":"AAE=","encoding":"base64"}"#,
    ];

    /// Binary messages for the session: `0x00`, then an envelope of a
    /// publish, a send or something else, with a few bytes.
    const BINARY_SEEDS: [&[u8]; 3] = [
        b"\0\0\0\0\x2f{\"type\":\"publish\",\"room\":\"general\",\"event\":\"b\"}\x00\x01\x02",
        b"\0\0\0\0\x32{\"type\":\"send\",\"to\":\"fuzzer\",\"event\":\"b\",\"id\":\"2\"}\x07",
        b"\0\0\0\0\x0f{\"type\":\"ping\"}",
    ];

    /// Valid frames, mutated byte by byte: enough to reach deep into the
    /// session on every run, not only the decoder's error paths.
    fn mutated(rng: &mut Rng) -> Vec<u8> {
        let mut input = Vec::new();
        // An odd first byte: the session speaks binary.
        input.push((rng.next() % 2) as u8 + b'0');
        input.push(0xff);
        for _ in 0..(rng.next() % 12 + 1) {
            let mut frame = match rng.next() % 4 {
                0 => BINARY_SEEDS[(rng.next() % BINARY_SEEDS.len() as u64) as usize].to_vec(),
                _ => SEEDS[(rng.next() % SEEDS.len() as u64) as usize].as_bytes().to_vec(),
            };
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() % frame.len() as u64) as usize;
                match rng.next() % 3 {
                    0 => frame[at] = rng.next() as u8,
                    1 => {
                        frame.remove(at);
                    }
                    _ => frame.insert(at, b"{}[]\",:\\0"[(rng.next() % 9) as usize]),
                }
            }
            input.extend_from_slice(&frame);
            input.push(0xff);
        }
        input
    }

    #[test]
    fn the_decoder_survives_random_and_mutated_input() {
        let mut rng = Rng(0x5eed);
        for _ in 0..20_000 {
            let noise: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
            decode_frame(&noise);
            decode_frame(&mutated(&mut rng));
        }
    }

    #[test]
    fn the_inflating_layer_survives_mutated_compressed_frames() {
        use crate::deflate::codec::deflate;
        use crate::deflate::inflating::client_frame;
        let mut rng = Rng(0xdef1a7e);
        for _ in 0..2_000 {
            // A few frames: compressed messages (some fragmented), plain
            // ones, pings; then a few bytes changed.
            let mut input = vec![(rng.next() % 8) as u8];
            for _ in 0..(rng.next() % 4 + 1) {
                let text = SEEDS[(rng.next() % SEEDS.len() as u64) as usize].repeat(3);
                let mask = (rng.next() as u32).to_be_bytes();
                let data = deflate(text.as_bytes(), 6).unwrap().into_vec();
                match rng.next() % 4 {
                    0 => input.extend(client_frame(true, true, 1, &data, mask)),
                    1 => {
                        let cut = (rng.next() % data.len() as u64) as usize;
                        input.extend(client_frame(false, true, 1, &data[..cut], mask));
                        input.extend(client_frame(true, false, 9, b"p", mask));
                        input.extend(client_frame(true, false, 0, &data[cut..], mask));
                    }
                    2 => input.extend(client_frame(true, false, 1, text.as_bytes(), mask)),
                    _ => input.extend(client_frame(true, false, 9, b"ping", mask)),
                }
            }
            for _ in 0..(rng.next() % 3) {
                let at = 1 + (rng.next() % (input.len() as u64 - 1)) as usize;
                input[at] = rng.next() as u8;
            }
            inflate_frames(&input);
        }
        inflate_frames(b"permessage-deflate; server_max_window_bits=9, x");
        inflate_frames(&[]);
    }

    #[test]
    fn sessions_survive_random_frame_sequences() {
        let mut rng = Rng(0xfeed);
        for _ in 0..300 {
            session(&mutated(&mut rng));
        }
        session(b"");
        session(&[0, 1, 2, 0xff, 0xff, 0xfe]);
    }
}

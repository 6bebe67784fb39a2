//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and
//! for the randomized tests that run the same harnesses on stable.
//!
//! [`decode_frame`] feeds arbitrary bytes to the frame decoder.
//! [`session`] feeds an arbitrary sequence of WebSocket messages to a real
//! [`Session`](crate::session::Session) over an in-memory socket, on a
//! paused clock, and checks that it never panics, answers only with valid
//! server frames, and ends when the input ends.

use futures::StreamExt;
use switchboard_protocol::{ClientFrame, ServerFrame};
use tungstenite::Message as WsMessage;

use crate::policy::auth::Identity;
use crate::session::{Session, Start};
use crate::{AppState, Config, session::memory_socket};

/// Decodes arbitrary bytes as a client frame; must never panic.
pub fn decode_frame(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = ClientFrame::decode_limited(text, 32);
        let _ = serde_json::from_str::<ServerFrame>(text);
    }
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
            if let WsMessage::Text(text) = message {
                serde_json::from_str::<ServerFrame>(&text)
                    .expect("the session sends only valid frames");
            }
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

    const SEEDS: [&str; 8] = [
        r#"{"type":"join","id":"1","room":"general"}"#,
        r#"{"type":"join","id":"7","room":"general","since":{"epoch":"x","offset":3}}"#,
        r#"{"type":"publish","id":"2","room":"general","event":"chat","data":{"a":[1,2]}}"#,
        r#"{"type":"send","id":"3","to":"fuzzer","event":"dm","data":"x"}"#,
        r#"{"type":"history","id":"4","room":"general","since":1,"limit":5}"#,
        r#"{"type":"leave","id":"5","room":"general"}"#,
        r#"{"type":"auth","id":"6","token":"e30.e30.e30"}"#,
        r#"{"type":"ping","id":"8"}"#,
    ];

    /// Valid frames, mutated byte by byte: enough to reach deep into the
    /// session on every run, not only the decoder's error paths.
    fn mutated(rng: &mut Rng) -> Vec<u8> {
        let mut input = Vec::new();
        for _ in 0..(rng.next() % 12 + 1) {
            let mut frame = SEEDS[(rng.next() % SEEDS.len() as u64) as usize].as_bytes().to_vec();
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
    fn sessions_survive_random_frame_sequences() {
        let mut rng = Rng(0xfeed);
        for _ in 0..300 {
            session(&mutated(&mut rng));
        }
        session(b"");
        session(&[0, 1, 2, 0xff, 0xff, 0xfe]);
    }
}

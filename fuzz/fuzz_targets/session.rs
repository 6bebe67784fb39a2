//! Arbitrary WebSocket message sequences into a live session.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_server::fuzzing::session(data);
});

//! Arbitrary bytes into the frame decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_server::fuzzing::decode_frame(data);
});

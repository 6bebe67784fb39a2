//! Arbitrary bytes as a deflating client's side of a connection, through
//! the hub's inflating read layer, and as extension offers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_server::fuzzing::inflate_frames(data);
});

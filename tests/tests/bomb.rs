//! What a decompression bomb costs the hub: a test binary of its own, so
//! that no other test moves this process's peak memory (the hub runs in it).
//! The close code and the other hostile compressed input are in
//! `hostile.rs`.

use switchboard_protocol::CloseCode;
use switchboard_tests::deflate::{self, BROWSER_OFFER};
use switchboard_tests::{RawTcp, TestServer};

#[tokio::test]
async fn three_bombs_of_64_mib_move_the_hub_peak_memory_by_less_than_16_mib() {
    let server = TestServer::start().await;
    // 64 MiB of digits in 64 KiB, well under the 512 KiB message limit.
    let bomb = deflate::bomb(64 << 20);
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
    let before = deflate::peak_memory();
    for _ in 0..3 {
        let mut raw = RawTcp::connect_with_headers(&server, "user_id=mallory", BROWSER_OFFER).await;
        assert_eq!(raw.next_frame().await.unwrap().opcode, 1, "welcome");
        raw.send_frame_rsv1(1, true, true, &bomb).await;
        assert_eq!(raw.close_code().await, CloseCode::MESSAGE_TOO_BIG.0);
    }
    // Inflating stops at the limit: the peak moves by about that, not by
    // the 64 MiB each bomb stands for.
    let grown = deflate::peak_memory() - before;
    assert!(grown < 16 << 20, "the peak grew by {grown} bytes");
    // The hub still answers.
    let mut raw = RawTcp::connect(&server, "user_id=after").await;
    assert_eq!(raw.next_frame().await.unwrap().opcode, 1, "welcome");
}

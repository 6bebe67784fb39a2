//! permessage-deflate as a test client speaks it (RFC 7692 §7.2), with
//! flate2 directly: what [`crate::RawTcp`] sends with RSV1 and reads back.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The offer every browser sends.
pub const BROWSER_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// The hub's answer to it.
pub const ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// `bytes` compressed as one message: raw deflate, sync-flushed, without
/// the flush's last four bytes.
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    compressor.compress_vec(bytes, &mut out, FlushCompress::Sync).expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "a sync flush fits");
    out.truncate(out.len() - 4);
    out
}

/// A message's payload inflated (the tail put back), unbounded: test
/// payloads only.
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut inflater = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    loop {
        let taken = inflater.total_in() as usize;
        inflater.decompress_vec(&input[taken..], &mut out, FlushDecompress::Sync).expect("inflate");
        if inflater.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// A decompression bomb: `inflated` bytes of `'0'` compressed as one
/// message (about a thousandth of the size), made a megabyte at a time so
/// that making it does not itself take the memory it stands for.
pub fn bomb(inflated: usize) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::new(9), false);
    let chunk = vec![b'0'; 1 << 20];
    let mut out = Vec::with_capacity(inflated / 500 + 1024);
    let mut left = inflated;
    while left > 0 {
        let piece = &chunk[..left.min(chunk.len())];
        let flush = if left == piece.len() { FlushCompress::Sync } else { FlushCompress::None };
        let start = compressor.total_in();
        while ((compressor.total_in() - start) as usize) < piece.len() {
            let taken = (compressor.total_in() - start) as usize;
            out.reserve(64 * 1024);
            compressor.compress_vec(&piece[taken..], &mut out, flush).expect("deflate");
        }
        left -= piece.len();
    }
    while !out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.reserve(64 * 1024);
        compressor.compress_vec(&[], &mut out, FlushCompress::Sync).expect("deflate");
    }
    out.truncate(out.len() - 4);
    out
}

/// The most memory this process has held (`VmHWM`), in bytes.
pub fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
    kib * 1024
}

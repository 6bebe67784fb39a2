//! Raw deflate as permessage-deflate uses it (RFC 7692 §7.2): one message is
//! compressed alone (no context taken over from the last), flushed with a
//! sync flush, and sent without the flush's last four bytes (`00 00 ff ff`),
//! which the receiver puts back before inflating.
//!
//! The zlib state lives with the worker thread, not with a connection or a
//! publication: compressing or inflating a message resets it and leaves it
//! for the next. An idle connection holds nothing of zlib's.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The end of a sync flush, which a message leaves off (RFC 7692 §7.2.1)
/// and the receiver appends before inflating (§7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What joins two compressed frames inside one batched message: the tail
/// the first one left off (its empty stored block, so the stream is at a
/// byte boundary again), then a stored block holding the newline that
/// separates batched frames. Each frame was compressed from an empty
/// window, so the next one's back-references never reach across the join.
pub(crate) const JOIN: [u8; 10] = [
    0x00, 0x00, 0xff, 0xff, // LEN 0, NLEN: the first frame's tail
    0x00, // a stored block (BFINAL 0, BTYPE 00), padded to the byte
    0x01, 0x00, 0xfe, 0xff, // LEN 1, NLEN
    b'\n',
];

/// Why a client's compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InflateError {
    /// It inflates past the largest message the hub accepts (close 1009).
    #[error("the message inflates past {limit} bytes")]
    TooLarge {
        /// `limits.max_message_bytes`.
        limit: usize,
    },
    /// It is not a valid deflate stream (close 1007).
    #[error("the message is not valid deflate data")]
    Corrupt,
    /// A frame breaks the extension's framing rules, such as RSV1 on a
    /// continuation frame (close 1002).
    #[error("{0}")]
    Framing(&'static str),
}

thread_local! {
    /// The thread's compressor and the level it was made for.
    static COMPRESSOR: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
    /// The thread's inflater.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// `text` compressed alone at `level` (0–9), without the flush's tail;
/// `None` when that is not smaller than `text` (then it goes as it is).
pub(crate) fn deflate(text: &[u8], level: u32) -> Option<Box<[u8]>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match &mut *cell {
            Some((made_for, compressor)) if *made_for == level => {
                compressor.reset();
                compressor
            }
            slot => &mut slot.insert((level, Compress::new(Compression::new(level), false))).1,
        };
        let mut out = Vec::with_capacity(text.len() / 2 + 64);
        let start = compressor.total_in();
        loop {
            let taken = (compressor.total_in() - start) as usize;
            let status = compressor.compress_vec(&text[taken..], &mut out, FlushCompress::Sync);
            if status.is_err() {
                // Not reachable with a valid level and a fresh stream; the
                // frame then simply goes uncompressed.
                *cell = None;
                return None;
            }
            let taken = (compressor.total_in() - start) as usize;
            // A sync flush is complete once the input is taken and the
            // output was not filled to the brim.
            if taken == text.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        // Every sync flush ends with the tail.
        debug_assert!(out.ends_with(&TAIL));
        out.truncate(out.len().saturating_sub(TAIL.len()));
        (out.len() < text.len()).then(|| out.into_boxed_slice())
    })
}

/// Inflates a message's payload (without its tail), refusing it as soon as
/// it would pass `limit` bytes: the output never grows past `limit + 1`,
/// whatever the input claims.
pub(crate) fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let inflater = match &mut *cell {
            Some(inflater) => {
                inflater.reset(false);
                inflater
            }
            slot => slot.insert(Decompress::new(false)),
        };
        let ceiling = limit.saturating_add(1);
        let mut out = Vec::with_capacity(data.len().saturating_mul(2).clamp(64, ceiling));
        for input in [data, &TAIL[..]] {
            let input_start = inflater.total_in();
            loop {
                let taken = (inflater.total_in() - input_start) as usize;
                let status = inflater
                    .decompress_vec(&input[taken..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                if out.len() > limit {
                    return Err(InflateError::TooLarge { limit });
                }
                let taken = (inflater.total_in() - input_start) as usize;
                if status == Status::StreamEnd {
                    // A final block ends the message: what follows it (the
                    // tail at least) is not inflated.
                    return Ok(out);
                }
                if out.len() == out.capacity() {
                    // Full: room for more, never past the ceiling.
                    let more = out.capacity().min(ceiling - out.len());
                    out.reserve_exact(more);
                    continue;
                }
                if taken == input.len() {
                    break;
                }
                if status == Status::BufError {
                    // No progress with input left and room to write.
                    return Err(InflateError::Corrupt);
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> String {
        let mut text = String::new();
        let mut n = 0u32;
        while text.len() < len {
            text.push_str(&format!(r#"{{"type":"message","room":"lobby","offset":{n}}}"#));
            n += 1;
        }
        text.truncate(len);
        text
    }

    #[test]
    fn a_message_inflates_back_to_itself_and_small_ones_stay_plain() {
        for len in [200, 1_000, 70_000] {
            let text = sample(len);
            let compressed = deflate(text.as_bytes(), 6).expect("JSON compresses");
            assert!(compressed.len() < text.len() / 3, "{len}: {}", compressed.len());
            assert!(!compressed.ends_with(&TAIL), "the tail is left off");
            assert_eq!(inflate(&compressed, 1 << 20).unwrap(), text.as_bytes());
        }
        // Nothing to gain: sent as it is.
        assert_eq!(deflate(b"{}", 6), None);
        // Every level works, one thread's compressor remade for each.
        for level in 0..=9 {
            let text = sample(5_000);
            if let Some(compressed) = deflate(text.as_bytes(), level) {
                assert_eq!(inflate(&compressed, 1 << 20).unwrap(), text.as_bytes());
            }
        }
    }

    #[test]
    fn frames_joined_in_one_message_inflate_with_a_newline_between() {
        let (a, b, c) = (sample(3_000), sample(2_000), sample(4_000));
        let mut message = Vec::new();
        for (index, text) in [&a, &b, &c].into_iter().enumerate() {
            if index > 0 {
                message.extend_from_slice(&JOIN);
            }
            message.extend_from_slice(&deflate(text.as_bytes(), 6).unwrap());
        }
        let inflated = inflate(&message, 1 << 20).unwrap();
        assert_eq!(String::from_utf8(inflated).unwrap(), format!("{a}\n{b}\n{c}"));
    }

    #[test]
    fn a_bomb_stops_at_the_limit_without_inflating_the_rest() {
        // 64 MiB of zeros compress to about 64 KiB.
        let zeros = vec![0u8; 64 << 20];
        let bomb = deflate(&zeros, 9).unwrap();
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let limit = 512 * 1024;
        assert_eq!(inflate(&bomb, limit), Err(InflateError::TooLarge { limit }));
        // Exactly at the limit is fine.
        let exact = deflate(&zeros[..limit], 9).unwrap();
        assert_eq!(inflate(&exact, limit).unwrap().len(), limit);
    }

    #[test]
    fn garbage_and_a_final_block_are_told_apart() {
        assert_eq!(inflate(&[0xff, 0xff, 0xff, 0xff, 0x01], 1024), Err(InflateError::Corrupt));
        // A sender may end a message with a final block (BFINAL set): what
        // it holds is the message.
        let mut finished = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(256);
        finished.compress_vec(b"hello hello hello", &mut out, FlushCompress::Finish).unwrap();
        assert_eq!(inflate(&out, 1024).unwrap(), b"hello hello hello");
        // An empty message is a lone empty stored block.
        assert_eq!(inflate(&[0x00], 1024).unwrap(), b"");
    }
}

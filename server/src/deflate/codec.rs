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

use super::error::InflateError;

/// The end of a sync flush, which a message leaves off (RFC 7692 §7.2.1)
/// and the receiver appends before inflating (§7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What joins two compressed frames inside one batched message. A frame's
/// bytes end with the header of the empty stored block its sync flush
/// wrote, whose LEN and NLEN were left off (the tail); the join gives that
/// block LEN 1 and the newline that separates batched frames as its one
/// byte, so the stream is at a byte boundary again where the next frame
/// starts. Each frame was compressed from an empty window, so the next
/// one's back-references never reach across the join.
pub(crate) const JOIN: [u8; 5] = [0x01, 0x00, 0xfe, 0xff, b'\n'];

thread_local! {
    /// The thread's compressor and the level it was made for.
    static COMPRESSOR: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
    /// The thread's inflater.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// `text` compressed alone at `level` (1–9), without the flush's tail;
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

/// Inflates a message's payload (without its tail) onto the end of `out`,
/// refusing it as soon as it would pass `limit` bytes: `out` never grows by
/// more than `limit + 1`, whatever the input claims.
pub(crate) fn inflate_into(
    data: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    INFLATER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let inflater = match &mut *cell {
            Some(inflater) => {
                inflater.reset(false);
                inflater
            }
            slot => slot.insert(Decompress::new(false)),
        };
        let start = out.len();
        let ceiling = start.saturating_add(limit).saturating_add(1);
        out.reserve(data.len().saturating_mul(2).max(64).min(limit.saturating_add(1)));
        for (input, is_tail) in [(data, false), (&TAIL[..], true)] {
            let input_start = inflater.total_in();
            loop {
                let taken = (inflater.total_in() - input_start) as usize;
                let status = inflater
                    .decompress_vec(&input[taken..], out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                if out.len() - start > limit {
                    return Err(InflateError::TooLarge { limit });
                }
                let taken = (inflater.total_in() - input_start) as usize;
                if status == Status::StreamEnd {
                    // A final block ends the message (the sender set
                    // BFINAL). After it may come only the tail, or the one
                    // byte RFC 7692 §7.2.3.4 has a sender that cannot flush
                    // add (an empty stored block's header bits: zero).
                    let rest = &input[taken..];
                    return if is_tail || rest.is_empty() || rest == [0x00] {
                        Ok(())
                    } else {
                        Err(InflateError::Corrupt)
                    };
                }
                if out.len() == out.capacity() {
                    // Full: room for more, never past the ceiling.
                    let more = (out.capacity() - start).max(64).min(ceiling - out.len());
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
        Ok(())
    })
}

/// [`inflate_into`] a vector of its own.
#[cfg(test)]
pub(crate) fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    inflate_into(data, limit, &mut out).map(|()| out)
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
        // RFC 7692 §7.2.3.4's own example: "Hello" in a final block, then
        // the one zero byte such senders add (websocket-sharp does).
        let rfc = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&rfc, 1024).unwrap(), b"Hello");
        // Anything else after a final block is not part of any message.
        let mut trailing = out.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(inflate(&trailing, 1024), Err(InflateError::Corrupt));
    }

    #[test]
    fn inflating_a_bomb_holds_at_most_the_limit() {
        let bomb = deflate(&vec![b'0'; 16 << 20], 9).unwrap();
        let limit = 256 * 1024;
        let counted = allocation_counter::measure(|| {
            let mut out = Vec::new();
            assert_eq!(inflate_into(&bomb, limit, &mut out), Err(InflateError::TooLarge { limit }));
            assert!(out.capacity() <= limit + 1, "{}", out.capacity());
        });
        // The output (while it grows, its old and new buffer at once: less
        // than twice the limit), plus the thread's inflater once: not the
        // 16 MiB the bomb stands for.
        assert!(counted.bytes_max < (2 * limit + 64 * 1024) as u64, "{counted:?}");
    }
}

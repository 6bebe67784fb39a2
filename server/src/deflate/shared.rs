//! [`Deflated`]: a shared frame's compressed form, made once.

use std::sync::OnceLock;

use super::Compressor;

/// A shared frame's compressed form: made the first time a connection that
/// negotiated the extension writes the frame, then written by all the
/// others as it is. It belongs to one frame: whoever changes the frame
/// makes a new one (a clone starts empty).
#[derive(Default)]
pub(crate) struct Deflated(OnceLock<Option<Box<[u8]>>>);

impl Deflated {
    /// The compressed form of `text` (the frame this belongs to), or `None`
    /// when it goes uncompressed.
    ///
    /// Writers on other threads that need it meanwhile wait for the first
    /// to finish compressing (microseconds for a frame of kilobytes).
    pub(crate) fn get(&self, text: &[u8], compressor: &Compressor) -> Option<&[u8]> {
        self.0.get_or_init(|| compressor.deflate(text)).as_deref()
    }
}

impl Clone for Deflated {
    /// A copy starts empty: a delivery is cloned to be changed, and its
    /// frame with it.
    fn clone(&self) -> Self {
        Deflated::default()
    }
}

impl std::fmt::Debug for Deflated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            None => f.write_str("Deflated(not yet)"),
            Some(None) => f.write_str("Deflated(uncompressed)"),
            Some(Some(bytes)) => write!(f, "Deflated({} bytes)", bytes.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_compressed_once_above_the_threshold() {
        let compressor = Compressor::new(6, 100);
        let text = "abc".repeat(100);
        let cache = Deflated::default();
        let first = cache.get(text.as_bytes(), &compressor).unwrap().as_ptr();
        let again = cache.get(text.as_bytes(), &compressor).unwrap().as_ptr();
        assert_eq!(first, again, "the same bytes, not compressed again");
        assert_eq!(compressor.totals().compressed, 1);
        assert_eq!(Deflated::default().get(&text.as_bytes()[..99], &compressor), None);
        assert_eq!(compressor.totals().compressed, 1, "under the threshold: not even tried");
        assert!(format!("{cache:?}").ends_with("bytes)"));
        compressor.count(300, 20);
        compressor.negotiated();
        let totals = compressor.totals();
        assert_eq!((totals.before, totals.after, totals.connections), (300, 20, 1));
    }
}

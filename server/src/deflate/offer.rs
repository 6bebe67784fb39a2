//! Negotiating permessage-deflate (RFC 7692 §5, §7.1) from a client's
//! `Sec-WebSocket-Extensions` offers.
//!
//! The hub always answers with `server_no_context_takeover` (so a
//! publication is compressed once and the same bytes go to every member)
//! and `client_no_context_takeover` (so a connection keeps no inflate state
//! between messages). It accepts the first offer it can honour and declines
//! the others; an offer it cannot read is declined, never an error: the
//! connection then simply goes uncompressed.

use axum::http::HeaderValue;

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// What was agreed with one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The window the client allows the hub (`server_max_window_bits`), when
    /// it named one; the answer repeats it (RFC 7692 §7.1.2.1). Below the
    /// 32 KiB (15 bits) that shared compressed frames are made for, the hub
    /// never compresses what it sends (it may always send a message
    /// uncompressed), but still inflates.
    pub(crate) server_window_bits: Option<u8>,
}

impl Agreement {
    /// Whether frames the hub sends may be compressed.
    pub(crate) fn compresses(&self) -> bool {
        self.server_window_bits.is_none_or(|bits| bits == 15)
    }

    /// The `Sec-WebSocket-Extensions` answer.
    pub(crate) fn header(&self) -> HeaderValue {
        let mut answer = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_window_bits {
            answer.push_str(&format!("; server_max_window_bits={bits}"));
        }
        HeaderValue::from_str(&answer).expect("the answer is ASCII")
    }
}

/// The first offer of permessage-deflate among `values` (every
/// `Sec-WebSocket-Extensions` header of the request) that the hub accepts.
pub(crate) fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Agreement> {
    values
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(split_offers)
        .find_map(accept)
}

/// The offers of one header value: comma-separated, commas inside quoted
/// strings left alone.
fn split_offers(value: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    value
        .split(move |c: char| {
            if c == '"' {
                quoted = !quoted;
            }
            c == ',' && !quoted
        })
        .map(str::trim)
        .filter(|offer| !offer.is_empty())
}

/// The agreement for one offer, or `None` to decline it: another
/// extension, a parameter named twice, one the RFC does not define, or a
/// value out of range (§7.1).
fn accept(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement { server_window_bits: None };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                agreement.server_window_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                // The hub inflates with any window; it asks for none.
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreement)
}

/// A window size as the RFC writes it: 8 to 15, digits only.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 2 {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(values: &[&str]) -> Option<Agreement> {
        let values: Vec<HeaderValue> =
            values.iter().map(|value| HeaderValue::from_str(value).unwrap()).collect();
        negotiate(&values)
    }

    const ANSWER: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn what_browsers_offer_is_accepted_without_context_takeover() {
        // Chromium's and Firefox's offer.
        let agreed = offered(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert!(agreed.compresses());
        assert_eq!(agreed.header(), ANSWER);
        for offer in [
            "permessage-deflate",
            "PerMessage-Deflate; Server_No_Context_Takeover",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
        ] {
            assert_eq!(offered(&[offer]).unwrap().header(), ANSWER, "{offer}");
        }
        // A window the client names is repeated in the answer (RFC 7692
        // §7.1.2.1); the full window still lets the hub compress.
        for offer in [
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=\"15\"",
        ] {
            let agreed = offered(&[offer]).unwrap();
            assert!(agreed.compresses());
            assert_eq!(agreed.header(), format!("{ANSWER}; server_max_window_bits=15"), "{offer}");
        }
    }

    #[test]
    fn a_smaller_server_window_is_agreed_but_nothing_is_compressed_for_it() {
        let agreed = offered(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert!(!agreed.compresses());
        assert_eq!(agreed.header(), format!("{ANSWER}; server_max_window_bits=10"));
    }

    #[test]
    fn offers_it_cannot_honour_are_declined_and_the_next_one_taken() {
        for offer in [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=0x0f",
            "permessage-deflate; client_max_window_bits=99",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
            "",
            ";;;",
        ] {
            assert_eq!(offered(&[offer]), None, "{offer:?}");
        }
        // The first acceptable offer wins, over values and header lines.
        let agreed = offered(&[
            "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=9",
            "permessage-deflate",
        ])
        .unwrap();
        assert_eq!(agreed.server_window_bits, Some(9));
        assert!(offered(&["foo; a=\"x,y\", permessage-deflate"]).is_some());
    }
}

//! [`Endpoint`]: the hub's WebSocket URL, checked once and completed with
//! the connection's query.
//!
//! A full URL parser would bring Unicode domain tables into the browser
//! package (about half its size); a WebSocket URL needs only its scheme, a
//! host, no fragment, and a query parameter appended. The socket itself (the
//! browser's `WebSocket`, tungstenite natively) parses the rest.

use switchboard_protocol::Position;

use crate::error::Error;

/// A `ws://` or `wss://` URL ready to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    url: String,
    /// The URL asks for binary messages (`binary=1`, the default): bytes
    /// go raw. Without it they go as base64 text.
    binary: bool,
}

impl Endpoint {
    /// Checks `url` and appends `user_id=<user>` when a user is given, and
    /// `batch=1` (several frames to a WebSocket message, which the driver
    /// splits: a browser then runs one `onmessage` per burst rather than per
    /// frame) and `binary=1` (bytes travel as binary messages, not base64
    /// text) unless the URL says otherwise.
    pub(crate) fn new(url: &str, user: Option<&str>) -> Result<Endpoint, Error> {
        let invalid = |why: &str| Err(Error::InvalidUrl(format!("{why}: `{url}`")));
        let lower = url.get(..6).unwrap_or(url).to_ascii_lowercase();
        // `get` rather than indexing: the scheme is ASCII, so these never
        // miss, and the package carries no panic path for them.
        let rest = if lower.starts_with("ws://") {
            url.get(5..)
        } else if lower.starts_with("wss://") {
            url.get(6..)
        } else {
            None
        };
        let Some(rest) = rest else {
            return invalid("the scheme must be ws:// or wss://");
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return invalid("the URL has no host");
        }
        if url.contains('#') {
            return invalid("WebSocket URLs cannot have a fragment");
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("the URL contains spaces or control characters");
        }
        let mut url = url.to_owned();
        if let Some(user) = user {
            let separator = match url.find('?') {
                None => "?",
                Some(_) if url.ends_with('?') || url.ends_with('&') => "",
                Some(_) => "&",
            };
            let user: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
            url = format!("{url}{separator}user_id={user}");
        }
        for (name, pair) in [("batch=", "batch=1"), ("binary=", "binary=1")] {
            let query = url.split_once('?').map_or("", |(_, query)| query);
            if !query.split('&').any(|given| given.starts_with(name)) {
                let separator = match url.find('?') {
                    None => "?",
                    Some(_) if url.ends_with('?') || url.ends_with('&') => "",
                    Some(_) => "&",
                };
                url = format!("{url}{separator}{pair}");
            }
        }
        let query = url.split_once('?').map_or("", |(_, query)| query);
        let binary = query.split('&').any(|pair| pair == "binary=1" || pair == "binary=true");
        Ok(Endpoint { url, binary })
    }

    /// Whether the hub sends and takes bytes raw on this URL (`binary=1`).
    pub(crate) fn binary(&self) -> bool {
        self.binary
    }

    /// The URL to open.
    pub(crate) fn as_str(&self) -> &str {
        &self.url
    }

    /// The URL to open, asking the hub to resume the inbox after `inbox`.
    pub(crate) fn resume(&self, inbox: Option<&Position>) -> String {
        let Some(inbox) = inbox else { return self.url.clone() };
        let separator = if self.url.contains('?') { "&" } else { "?" };
        let epoch: String = form_urlencoded::byte_serialize(inbox.epoch.as_bytes()).collect();
        format!("{}{separator}inbox_epoch={epoch}&inbox_offset={}", self.url, inbox.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(base: &str, user: Option<&str>) -> Result<String, Error> {
        Endpoint::new(base, user).map(|e| e.as_str().to_owned())
    }

    #[test]
    fn appends_the_user_and_asks_for_batches_and_binary() {
        let url = |base, user| url(base, user).unwrap();
        let asks = "batch=1&binary=1";
        assert_eq!(
            url("ws://h:8080/ws", Some("alice")),
            format!("ws://h:8080/ws?user_id=alice&{asks}")
        );
        assert_eq!(
            url("wss://h/ws?v=1", Some("a b&c")),
            format!("wss://h/ws?v=1&user_id=a+b%26c&{asks}")
        );
        assert_eq!(url("WS://h/ws?", Some("é")), format!("WS://h/ws?user_id=%C3%A9&{asks}"));
        assert_eq!(url("ws://h", None), format!("ws://h?{asks}"));
        assert_eq!(url("ws://h/ws?", None), format!("ws://h/ws?{asks}"));
        // An application that wants one frame per message, or text only, says so.
        assert_eq!(url("ws://h/ws?batch=0", Some("a")), "ws://h/ws?batch=0&user_id=a&binary=1");
        assert_eq!(url("ws://h/ws?binary=0", None), "ws://h/ws?binary=0&batch=1");
        assert!(Endpoint::new("ws://h/ws", None).unwrap().binary());
        assert!(!Endpoint::new("ws://h/ws?binary=0", None).unwrap().binary());
        assert!(Endpoint::new("ws://h/ws?binary=true", None).unwrap().binary());
    }

    #[test]
    fn refuses_what_is_not_a_websocket_url() {
        for bad in
            ["http://h/ws", "h:8080/ws", "ws:///ws", "ws://", "ws://h/ws#x", "ws://h /ws", ""]
        {
            assert!(matches!(url(bad, Some("u")), Err(Error::InvalidUrl(_))), "{bad:?} accepted");
        }
    }
}

//! The browser socket, on `web_sys::WebSocket`.
//!
//! The socket owns the four JS callbacks it installs and detaches them when
//! dropped (and closes the WebSocket if still open), so a reconnecting
//! client leaks nothing per connection: no `Closure::forget`.

use futures::StreamExt;
use futures::channel::mpsc;
use switchboard_protocol::CloseCode;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use super::{Incoming, OpenError};
use crate::error::Error;

/// Browsers trust what they trust: certificates are the browser's business.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {}

impl Tls {
    /// Ignored: the browser's own trust store decides.
    pub(crate) fn add_roots_pem(&mut self, _pem: Vec<u8>) {}

    /// Nothing to check in a browser.
    pub(crate) fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// What the JS callbacks report.
enum WebEvent {
    Open,
    Text(String),
    Closed { code: u16, reason: String },
    Error,
}

/// A browser WebSocket connection.
pub(crate) struct Socket {
    ws: WebSocket,
    events: mpsc::UnboundedReceiver<WebEvent>,
    /// Why a send failed, reported by the next [`Socket::next`].
    failed: Option<String>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Socket {
    /// Opens `url`. Browsers cannot set headers on a WebSocket upgrade, so
    /// `headers` must be empty here (the builder documents this).
    pub(crate) async fn open(
        url: &str,
        headers: &[(String, String)],
        _tls: &Tls,
    ) -> Result<Socket, OpenError> {
        if !headers.is_empty() {
            web_sys::console::warn_1(&wasm_bindgen::JsValue::from_str(
                "switchboard: browsers cannot send headers with a WebSocket upgrade; ignoring them",
            ));
        }
        let global = js_sys::global();
        let has_websocket = js_sys::Reflect::get(&global, &"WebSocket".into())
            .is_ok_and(|constructor| constructor.is_function());
        if !has_websocket {
            return Err(OpenError::Fatal(Error::NoWebSocket(
                "this runtime has no global WebSocket".to_owned(),
            )));
        }
        // What the constructor refuses (a malformed URL, a blocked port,
        // `ws://` from an `https://` page) it will refuse every time.
        let ws = WebSocket::new(url)
            .map_err(|e| OpenError::Fatal(Error::InvalidUrl(format!("{}: {url}", describe(&e)))))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, events) = mpsc::unbounded();

        let sender = tx.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let _ = sender.unbounded_send(WebEvent::Open);
        });
        let sender = tx.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // Text frames arrive as JS strings; binary ones are not part of protocol 1.
            if let Some(text) = event.data().as_string() {
                let _ = sender.unbounded_send(WebEvent::Text(text));
            }
        });
        let sender = tx.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let _ = sender
                .unbounded_send(WebEvent::Closed { code: event.code(), reason: event.reason() });
        });
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let _ = tx.unbounded_send(WebEvent::Error);
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        let mut socket = Socket {
            ws,
            events,
            failed: None,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        };
        loop {
            match socket.events.next().await {
                Some(WebEvent::Open) => return Ok(socket),
                // An error is always followed by a close event; wait for it.
                Some(WebEvent::Error) | Some(WebEvent::Text(_)) => continue,
                // Browsers hide the HTTP status of a refused upgrade: 1006 is all we learn.
                Some(WebEvent::Closed { code, reason }) => {
                    let reason =
                        if reason.is_empty() { "connection failed".to_owned() } else { reason };
                    return Err(OpenError::Hidden(format!("{reason} (close code {code})")));
                }
                None => return Err(OpenError::Failed("socket callbacks vanished".to_owned())),
            }
        }
    }

    /// Sends one text frame: the browser queues it. A failure surfaces
    /// from the next [`Socket::next`] as the end.
    pub(crate) fn send(&mut self, text: String) {
        if let Err(e) = self.ws.send_with_str(&text) {
            self.failed.get_or_insert_with(|| describe(&e));
        }
    }

    /// Always: the browser buffers what is sent (`bufferedAmount`) and has
    /// no event for it draining.
    pub(crate) fn has_room(&mut self) -> bool {
        true
    }

    /// The next text frame, or how the connection ended. Browsers answer
    /// pings invisibly, so there is never an [`Incoming::Alive`] here.
    pub(crate) async fn next(&mut self) -> Incoming {
        if let Some(reason) = self.failed.take() {
            return Incoming::Closed { code: None, reason };
        }
        loop {
            match self.events.next().await {
                Some(WebEvent::Text(text)) => return Incoming::Text(text),
                Some(WebEvent::Closed { code, reason }) => {
                    // 1005 (no code) and 1006 (abnormal) are not codes a peer sent.
                    let code = (code != 1005 && code != 1006).then_some(CloseCode(code));
                    let reason =
                        if reason.is_empty() { "connection closed".to_owned() } else { reason };
                    return Incoming::Closed { code, reason };
                }
                Some(WebEvent::Open | WebEvent::Error) => {}
                None => {
                    return Incoming::Closed { code: None, reason: "connection closed".to_owned() };
                }
            }
        }
    }

    /// Starts the close handshake. Browsers accept only 1000 and 3000–4999.
    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) {
        let code = if code == CloseCode::NORMAL || (3000..5000).contains(&code.0) {
            code.0
        } else {
            CloseCode::NORMAL.0
        };
        let _ = self.ws.close_with_code_and_reason(code, reason);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        if matches!(self.ws.ready_state(), WebSocket::CONNECTING | WebSocket::OPEN) {
            let _ = self.ws.close();
        }
    }
}

/// A readable message from a thrown JS value.
fn describe(error: &wasm_bindgen::JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

//! The browser socket, on `web_sys::WebSocket`.
//!
//! The socket owns the four JS callbacks it installs and detaches them when
//! dropped (and closes the WebSocket if still open), so a reconnecting
//! client leaks nothing per connection: no `Closure::forget`.

use futures::StreamExt;
use futures::channel::mpsc;
use switchboard_protocol::CloseCode;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use super::{Incoming, OpenError};
use crate::error::Error;

/// How sockets are opened in JavaScript: with the runtime's global
/// `WebSocket`, or a constructor the app passed (the `ws` package on an
/// older Node, a test double). Certificates are the runtime's business.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connector {
    /// The app's `WebSocket` constructor.
    web_socket: Option<js_sys::Function>,
}

impl Connector {
    /// Ignored: the runtime's own trust store decides.
    pub(crate) fn add_roots_pem(&mut self, _pem: Vec<u8>) {}

    /// Nothing to check in JavaScript.
    pub(crate) fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    /// The constructor to call: the app's, or the global `WebSocket`.
    fn constructor(&self) -> Option<js_sys::Function> {
        if let Some(constructor) = &self.web_socket {
            return Some(constructor.clone());
        }
        js_sys::Reflect::get(&js_sys::global(), &"WebSocket".into())
            .ok()
            .and_then(|constructor| constructor.dyn_into().ok())
    }
}

impl crate::ClientBuilder {
    /// Opens sockets with this `WebSocket` constructor instead of the
    /// runtime's global one (JavaScript only): the `ws` package on a Node.js
    /// without a global `WebSocket`, or any class with the browser's API.
    pub fn web_socket(mut self, constructor: js_sys::Function) -> Self {
        self.connector.web_socket = Some(constructor);
        self
    }
}

/// Whether this is a server-side runtime (Node.js, Deno, Bun), whose
/// `WebSocket` takes `{ headers }` as its second argument. A browser's reads
/// that argument as subprotocols, and cannot send headers at all.
fn sends_headers() -> bool {
    let global = js_sys::global();
    let has = |target: &JsValue, key: &str| {
        js_sys::Reflect::get(target, &key.into()).is_ok_and(|value| !value.is_undefined())
    };
    let versions = js_sys::Reflect::get(&global, &"process".into())
        .and_then(|process| js_sys::Reflect::get(&process, &"versions".into()))
        .unwrap_or(JsValue::UNDEFINED);
    has(&global, "Deno") || (versions.is_object() && has(&versions, "node"))
}

/// What the JS callbacks report.
enum WebEvent {
    Open,
    Text(String),
    Binary(Vec<u8>),
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
    /// Opens `url`. Node.js, Deno and Bun send `headers` with the upgrade;
    /// browsers cannot, and ignore them with a warning (the builder
    /// documents this).
    pub(crate) async fn open(
        url: &str,
        headers: &[(String, String)],
        connector: &Connector,
    ) -> Result<Socket, OpenError> {
        let Some(constructor) = connector.constructor() else {
            return Err(OpenError::Fatal(Error::NoWebSocket(
                "this runtime has no global WebSocket; pass a WebSocket constructor in the options"
                    .to_owned(),
            )));
        };
        let arguments = js_sys::Array::of1(&url.into());
        if !headers.is_empty() {
            if sends_headers() {
                let mut fields = crate::codec::js::ObjectWriter::new();
                for (name, value) in headers {
                    fields.text(name, value);
                }
                let mut init = crate::codec::js::ObjectWriter::new();
                init.raw("headers", &fields.finish());
                arguments.push(&crate::codec::js::json_to_js(&init.finish()));
            } else {
                web_sys::console::warn_1(&JsValue::from_str(
                    "switchboard: browsers cannot send headers with a WebSocket upgrade; ignoring them",
                ));
            }
        }
        // A runtime taken for a server one whose WebSocket reads the second
        // argument as subprotocols (a jsdom test, an Electron page, an older
        // Deno) throws on `{ headers }`: it gets the URL alone.
        let constructed = js_sys::Reflect::construct(&constructor, &arguments).or_else(|error| {
            if arguments.length() < 2 {
                return Err(error);
            }
            web_sys::console::warn_1(&JsValue::from_str(
                "switchboard: this runtime's WebSocket takes no headers; ignoring them",
            ));
            js_sys::Reflect::construct(&constructor, &js_sys::Array::of1(&url.into()))
        });
        // What the constructor refuses (a malformed URL, a blocked port,
        // `ws://` from an `https://` page) it will refuse every time.
        let ws: WebSocket = constructed
            .map_err(|e| OpenError::Fatal(Error::InvalidUrl(format!("{}: {url}", describe(&e)))))?
            .unchecked_into();
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, events) = mpsc::unbounded();

        let sender = tx.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let _ = sender.unbounded_send(WebEvent::Open);
        });
        let sender = tx.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // Text frames arrive as JS strings, binary ones as
            // `ArrayBuffer`s (`binaryType` is set below).
            let data = event.data();
            if let Some(text) = data.as_string() {
                let _ = sender.unbounded_send(WebEvent::Text(text));
            } else if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                let bytes = js_sys::Uint8Array::new(buffer).to_vec();
                let _ = sender.unbounded_send(WebEvent::Binary(bytes));
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
                Some(WebEvent::Error | WebEvent::Text(_) | WebEvent::Binary(_)) => continue,
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

    /// Sends one binary message, like [`Socket::send`].
    pub(crate) fn send_binary(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.ws.send_with_u8_array(&bytes) {
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
                Some(WebEvent::Binary(bytes)) => return Incoming::Binary(bytes),
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
        // Not `None`: the `ws` package emits `error` after a close during
        // the handshake, and Node ends the process on an `error` event with
        // no listener. A no-op, owned by JS from here on, keeps one.
        self.ws.set_onerror(Some(
            Closure::<dyn FnMut(Event)>::new(|_: Event| {}).into_js_value().unchecked_ref(),
        ));
        if matches!(self.ws.ready_state(), WebSocket::CONNECTING | WebSocket::OPEN) {
            let _ = self.ws.close();
        }
    }
}

/// A readable message from a thrown JS value.
fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

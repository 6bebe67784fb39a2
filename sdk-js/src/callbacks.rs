//! JavaScript callbacks registered with `client.on(event, callback)`.
//!
//! Each registration gets an SDK handler that calls the JS function, and an
//! unsubscribe function handed back to JavaScript. A callback that throws is
//! reported to the `error` callbacks as a `SwitchboardError` of kind
//! `"handler"`; it never unwinds into the client. No borrow of the registry
//! is held while JavaScript runs, so callbacks may call `on` and `off`.
//!
//! Nothing the SDK holds points back at the registry strongly: the SDK's
//! handlers (kept by the driver task) reach it through a `Weak`, and the
//! unsubscribe functions are owned by JavaScript (freed when collected) and
//! hold only a `Weak` and a key. So the registry, and every callback in it,
//! lives exactly as long as the JavaScript `Client` object: `close()` empties
//! it, and a `Client` that becomes garbage frees it, which drops the last
//! SDK handle and stops the driver. Calling an unsubscribe function twice,
//! or after `close()`, is harmless. (A callback that itself captures the
//! `Client` keeps it reachable from here, across the wasm boundary where no
//! collector sees the cycle: only `close()` releases that one.)

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::Function;
use switchboard_sdk::{Client, HandlerId};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::convert;
use crate::error::callback_error;

/// The registry of one client's JavaScript callbacks.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    inner: Rc<RefCell<Registry>>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    entries: Vec<Entry>,
    /// The SDK client the handlers are registered with, to remove them.
    client: Option<Client>,
}

struct Entry {
    key: u64,
    event: String,
    callback: Function,
    /// The SDK handler behind it; `None` for `error` callbacks, which this
    /// registry calls itself.
    handler: Option<HandlerId>,
}

impl Callbacks {
    /// The registry of `client`'s callbacks; its `error` callbacks hear what
    /// the SDK reports.
    pub(crate) fn new(client: &Client) -> Callbacks {
        let callbacks = Callbacks::default();
        callbacks.inner.borrow_mut().client = Some(client.clone());
        let weak = Rc::downgrade(&callbacks.inner);
        client.on_error(move |err| {
            if let Some(inner) = weak.upgrade() {
                report(&inner, &crate::error::to_js_error(err));
            }
        });
        callbacks
    }

    /// Registers `callback` for `event` and returns its unsubscribe function.
    pub(crate) fn on(&self, client: &Client, event: String, callback: Function) -> Function {
        let handler = match event.as_str() {
            "error" => None,
            "connecting" => {
                let call = self.caller(&event, &callback);
                Some(client.on_connecting(move |e| call(convert::connecting(e))))
            }
            "connected" => {
                let call = self.caller(&event, &callback);
                Some(client.on_connected(move |e| call(convert::connected(e))))
            }
            "disconnected" => {
                let call = self.caller(&event, &callback);
                Some(client.on_disconnected(move |e| call(convert::disconnected(e))))
            }
            "joined" => {
                let call = self.caller(&event, &callback);
                Some(client.on_joined(move |e| call(convert::joined(e))))
            }
            "left" => {
                let call = self.caller(&event, &callback);
                Some(client.on_left(move |e| call(convert::left(e))))
            }
            "reset" => {
                let call = self.caller(&event, &callback);
                Some(client.on_reset(move |e| call(convert::reset(e))))
            }
            "presence" => {
                let call = self.caller(&event, &callback);
                Some(client.on_presence(move |p| call(convert::presence(p))))
            }
            "occupancy" => {
                let call = self.caller(&event, &callback);
                Some(client.on_occupancy(move |o| call(convert::occupancy(o))))
            }
            "message" => {
                let call = self.caller(&event, &callback);
                Some(client.on_any(move |m| call(convert::message(m))))
            }
            name => {
                let call = self.caller(name, &callback);
                Some(client.on(name, move |m| call(convert::message(m))))
            }
        };
        let mut registry = self.inner.borrow_mut();
        registry.next += 1;
        let key = registry.next;
        registry.entries.push(Entry { key, event, callback, handler });
        let weak = Rc::downgrade(&self.inner);
        // Owned by JavaScript from here on, and freed when it is collected.
        let unsubscribe = Closure::<dyn FnMut() -> bool>::new(move || remove(&weak, key));
        unsubscribe.into_js_value().unchecked_into()
    }

    /// Removes the first active registration of `callback` for `event`.
    pub(crate) fn off(&self, event: &str, callback: &Function) -> bool {
        let key = self
            .inner
            .borrow()
            .entries
            .iter()
            .find(|e| e.event == event && JsValue::from(&e.callback) == JsValue::from(callback))
            .map(|e| e.key);
        key.is_some_and(|key| remove(&Rc::downgrade(&self.inner), key))
    }

    /// Removes every callback (`close()`): nothing the app registered is
    /// kept alive by a closed client.
    pub(crate) fn clear(&self) {
        let (entries, client) = {
            let mut registry = self.inner.borrow_mut();
            (std::mem::take(&mut registry.entries), registry.client.clone())
        };
        if let Some(client) = client {
            for handler in entries.into_iter().filter_map(|e| e.handler) {
                client.off(handler);
            }
        }
    }

    /// A function that calls `callback` with one argument and reports a throw.
    fn caller(&self, event: &str, callback: &Function) -> impl Fn(JsValue) + 'static {
        let weak = Rc::downgrade(&self.inner);
        let event = event.to_owned();
        let callback = callback.clone();
        move |argument| {
            if let Err(thrown) = callback.call1(&JsValue::UNDEFINED, &argument) {
                if let Some(inner) = weak.upgrade() {
                    report(&inner, &callback_error(&event, thrown));
                }
            }
        }
    }
}

fn report(inner: &Rc<RefCell<Registry>>, error: &JsValue) {
    let callbacks: Vec<Function> = inner
        .borrow()
        .entries
        .iter()
        .filter(|e| e.event == "error")
        .map(|e| e.callback.clone())
        .collect();
    for callback in callbacks {
        // An `error` callback that throws is not reported again (no loops);
        // the console is the last resort.
        if let Err(thrown) = callback.call1(&JsValue::UNDEFINED, error) {
            web_sys::console::error_2(
                &JsValue::from_str("switchboard: `error` callback threw"),
                &thrown,
            );
        }
    }
}

/// Removes a registration; returns whether it was there.
fn remove(registry: &Weak<RefCell<Registry>>, key: u64) -> bool {
    let Some(registry) = registry.upgrade() else { return false };
    let (entry, client) = {
        let mut registry = registry.borrow_mut();
        let Some(at) = registry.entries.iter().position(|e| e.key == key) else {
            return false;
        };
        (registry.entries.remove(at), registry.client.clone())
    };
    if let (Some(handler), Some(client)) = (entry.handler, client) {
        client.off(handler);
    }
    true
}

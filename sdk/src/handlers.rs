//! The event-handler registry: who to call for which message, presence
//! change or lifecycle event. Handlers are called outside the registry's lock,
//! so a handler may register or remove handlers itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use switchboard_protocol::{Message, Occupancy, Presence};

use crate::Error;
use crate::event::{Connected, Connecting, Disconnected, Joined, Left, Reset};
use crate::runtime::MaybeSend;

/// Identifies a registered handler, for [`Client::off`](crate::Client::off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

/// A callback for events of type `T`.
pub trait Handler<T: ?Sized>: Fn(&T) + MaybeSend + 'static {}
impl<T: ?Sized, F: Fn(&T) + MaybeSend + 'static> Handler<T> for F {}

type Entry<T> = (u64, Arc<dyn Handler<T>>);

/// One list of handlers.
struct List<T: ?Sized>(Vec<Entry<T>>);

impl<T: ?Sized> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T: ?Sized> List<T> {
    fn remove(&mut self, id: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| *k != id);
        self.0.len() != before
    }

    fn snapshot(&self) -> Vec<Arc<dyn Handler<T>>> {
        self.0.iter().map(|(_, h)| h.clone()).collect()
    }
}

#[derive(Default)]
struct Lists {
    next: u64,
    events: HashMap<String, List<Message>>,
    any: List<Message>,
    presence: List<Presence>,
    occupancy: List<Occupancy>,
    joined: List<Joined>,
    left: List<Left>,
    reset: List<Reset>,
    connecting: List<Connecting>,
    connected: List<Connected>,
    disconnected: List<Disconnected>,
    error: List<Error>,
}

/// Every handler of one client.
#[derive(Default)]
pub(crate) struct Handlers {
    lists: Mutex<Lists>,
}

macro_rules! lifecycle {
    ($add:ident, $emit:ident, $field:ident, $ty:ty) => {
        pub(crate) fn $add(&self, handler: impl Handler<$ty>) -> HandlerId {
            self.add(|lists, id| lists.$field.0.push((id, Arc::new(handler))))
        }

        pub(crate) fn $emit(&self, event: &$ty) {
            let handlers = self.lock().$field.snapshot();
            self.call_all(&handlers, event);
        }
    };
}

impl Handlers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, insert: impl FnOnce(&mut Lists, u64)) -> HandlerId {
        let mut lists = self.lock();
        lists.next += 1;
        let id = lists.next;
        insert(&mut lists, id);
        HandlerId(id)
    }

    pub(crate) fn on(&self, event: &str, handler: impl Handler<Message>) -> HandlerId {
        self.add(|lists, id| {
            lists.events.entry(event.to_owned()).or_default().0.push((id, Arc::new(handler)))
        })
    }

    pub(crate) fn on_any(&self, handler: impl Handler<Message>) -> HandlerId {
        self.add(|lists, id| lists.any.0.push((id, Arc::new(handler))))
    }

    lifecycle!(on_presence, emit_presence, presence, Presence);
    lifecycle!(on_occupancy, emit_occupancy, occupancy, Occupancy);
    lifecycle!(on_joined, emit_joined, joined, Joined);
    lifecycle!(on_left, emit_left, left, Left);
    lifecycle!(on_reset, emit_reset, reset, Reset);
    lifecycle!(on_connecting, emit_connecting, connecting, Connecting);
    lifecycle!(on_connected, emit_connected, connected, Connected);
    lifecycle!(on_disconnected, emit_disconnected, disconnected, Disconnected);
    lifecycle!(on_error, emit_error, error, Error);

    /// Removes a handler; returns whether it was registered.
    pub(crate) fn off(&self, id: HandlerId) -> bool {
        let mut lists = self.lock();
        let lists = &mut *lists;
        let mut removed = lists.events.values_mut().any(|list| list.remove(id.0));
        lists.events.retain(|_, list| !list.0.is_empty());
        for remove in [
            lists.any.remove(id.0),
            lists.presence.remove(id.0),
            lists.occupancy.remove(id.0),
            lists.joined.remove(id.0),
            lists.left.remove(id.0),
            lists.connecting.remove(id.0),
            lists.connected.remove(id.0),
            lists.disconnected.remove(id.0),
            lists.error.remove(id.0),
        ] {
            removed |= remove;
        }
        removed
    }

    /// Calls the handlers of the message's event, then the catch-all ones.
    pub(crate) fn emit_message(&self, message: &Message) {
        let handlers = {
            let lists = self.lock();
            let mut handlers =
                lists.events.get(&message.event).map(List::snapshot).unwrap_or_default();
            handlers.extend(lists.any.snapshot());
            handlers
        };
        self.call_all(&handlers, message);
    }

    fn call_all<T: ?Sized>(&self, handlers: &[Arc<dyn Handler<T>>], event: &T) {
        for handler in handlers {
            if let Err(panic) = call_guarded(handler.as_ref(), event) {
                let error = Error::HandlerPanicked(panic);
                let error_handlers = self.lock().error.snapshot();
                // A panicking error handler is not reported again: no loops.
                for handler in error_handlers {
                    let _ = call_guarded(handler.as_ref(), &error);
                }
            }
        }
    }
}

/// Calls a handler so that its panic cannot take the client's task down.
#[cfg(not(target_arch = "wasm32"))]
fn call_guarded<T: ?Sized>(handler: &dyn Handler<T>, event: &T) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(event))).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_owned())
    })
}

/// On wasm32 a panic aborts the module; there is nothing to catch.
#[cfg(target_arch = "wasm32")]
fn call_guarded<T: ?Sized>(handler: &dyn Handler<T>, event: &T) -> Result<(), String> {
    handler(event);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn message(event: &str) -> Message {
        Message {
            encoding: None,
            room: Some("r".into()),
            to: None,
            from: "a".into(),
            event: event.into(),
            data: serde_json::Value::Null,
            ts: 0,
            offset: None,
            binary: None,
        }
    }

    #[test]
    fn handlers_run_for_their_event_and_can_be_removed() {
        let handlers = Handlers::default();
        let chats = Arc::new(AtomicUsize::new(0));
        let all = Arc::new(AtomicUsize::new(0));
        let c = chats.clone();
        let id = handlers.on("chat", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let a = all.clone();
        handlers.on_any(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
        });
        handlers.emit_message(&message("chat"));
        handlers.emit_message(&message("other"));
        assert_eq!((chats.load(Ordering::SeqCst), all.load(Ordering::SeqCst)), (1, 2));
        assert!(handlers.off(id));
        assert!(!handlers.off(id), "removing twice reports false");
        handlers.emit_message(&message("chat"));
        assert_eq!(chats.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_handler_is_reported_and_the_rest_still_run() {
        let handlers = Handlers::default();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let ran = Arc::new(AtomicUsize::new(0));
        let e = errors.clone();
        handlers.on_error(move |err| e.lock().unwrap().push(err.clone()));
        handlers.on("chat", |_| panic!("boom"));
        let r = ran.clone();
        handlers.on("chat", move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        handlers.emit_message(&message("chat"));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(*errors.lock().unwrap(), vec![Error::HandlerPanicked("boom".into())]);
    }

    #[test]
    fn a_handler_may_remove_itself() {
        #[allow(clippy::arc_with_non_send_sync)] // handlers are not Send on wasm32
        let handlers = Arc::new(Handlers::default());
        let slot = Arc::new(Mutex::new(None));
        let (h, s) = (handlers.clone(), slot.clone());
        let id = handlers.on("chat", move |_| {
            if let Some(id) = *s.lock().unwrap() {
                h.off(id);
            }
        });
        *slot.lock().unwrap() = Some(id);
        handlers.emit_message(&message("chat"));
        assert!(!handlers.off(id), "it already removed itself");
    }
}

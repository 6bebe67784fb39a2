//! The exported `Client` class: the SDK client behind a JavaScript API in
//! camelCase, with Promises for every request.

use js_sys::{Function, Promise};
use std::future::Future;
use std::pin::Pin;
use switchboard_sdk::ConnectionState;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::callbacks::Callbacks;
use crate::convert::{strings, to_json, to_payload};
use crate::error::{js_error, to_js_error};

/// A Switchboard client: one logical connection that reconnects by itself,
/// rejoins its rooms and sends what was queued while offline.
#[wasm_bindgen]
pub struct Client {
    inner: switchboard_sdk::Client,
    callbacks: Callbacks,
}

#[wasm_bindgen]
impl Client {
    /// `new Client("ws://host:8080/ws", { userId: "alice" })`. Throws a
    /// `SwitchboardError` for a bad URL or options. Call `connect()` next.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: String,
        #[wasm_bindgen(unchecked_param_type = "ClientOptions")] options: JsValue,
    ) -> Result<Client, JsValue> {
        let options = crate::options::read(options).map_err(|err| {
            JsValue::from(js_error("invalid_options", &format!("invalid options: {err}")))
        })?;
        let inner = options
            .apply(switchboard_sdk::Client::builder(url))
            .build()
            .map_err(|err| to_js_error(&err))?;
        let callbacks = Callbacks::new(&inner);
        Ok(Client { inner, callbacks })
    }

    /// Registers `callback` for `event` and returns a function that removes it.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: String, callback: Function) -> Function {
        self.callbacks.on(&self.inner, event, callback)
    }

    /// Removes a callback registered with `on`; returns whether it was registered.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, event: String, callback: Function) -> bool {
        self.callbacks.off(&event, &callback)
    }

    /// Connects; resolves once the hub welcomes the connection.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn connect(&self) -> Promise {
        let client = self.inner.clone();
        promise(async move { client.connect().await.map(|()| JsValue::UNDEFINED) })
    }

    /// Joins a room; resolves with the users present. Rejoined after every reconnect.
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn join(&self, room: String) -> Promise {
        let client = self.inner.clone();
        promise(async move { client.join(&room).await.map(|members| strings(&members)) })
    }

    /// Leaves a room.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self, room: String) -> Promise {
        let client = self.inner.clone();
        promise(async move { client.leave(&room).await.map(|()| JsValue::UNDEFINED) })
    }

    /// Publishes `data` as `event` to everyone in `room`: any JSON value,
    /// or bytes (a `Uint8Array`, any other view of bytes, or an
    /// `ArrayBuffer`), which go as a binary message and arrive as a
    /// `Uint8Array`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn publish(
        &self,
        room: String,
        event: String,
        #[wasm_bindgen(unchecked_param_type = "Payload")] data: JsValue,
    ) -> Promise {
        self.publish_as(room, event, data, false)
    }

    /// Like `publish`, but this connection does not get the message back
    /// (the user's other tabs and devices do).
    #[wasm_bindgen(js_name = publishToOthers, unchecked_return_type = "Promise<void>")]
    pub fn publish_to_others(
        &self,
        room: String,
        event: String,
        #[wasm_bindgen(unchecked_param_type = "Payload")] data: JsValue,
    ) -> Promise {
        self.publish_as(room, event, data, true)
    }

    /// Sends `data` (JSON, or bytes as for `publish`) as `event` privately
    /// to every connection of `userId`; resolves with how many connections
    /// it reached.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn send(
        &self,
        #[wasm_bindgen(js_name = userId)] user_id: String,
        event: String,
        #[wasm_bindgen(unchecked_param_type = "Payload")] data: JsValue,
    ) -> Promise {
        let client = self.inner.clone();
        let data = to_payload(data);
        promise_js(async move {
            let data = data?;
            let reached =
                client.send_payload(&user_id, &event, data).await.map_err(|e| to_js_error(&e))?;
            Ok(JsValue::from(reached as f64))
        })
    }

    /// Calls the application's `method` on the hub with `data`; resolves
    /// with its result. Rejects with kind `server` and `code` 206 when the
    /// hub has no handler for it, and with kind `connection_lost` when the
    /// connection drops before the answer (an rpc is never sent twice).
    #[wasm_bindgen(unchecked_return_type = "Promise<Json>")]
    pub fn rpc(
        &self,
        method: String,
        #[wasm_bindgen(unchecked_param_type = "Json")] data: JsValue,
    ) -> Promise {
        let client = self.inner.clone();
        let data = to_json(data);
        promise_js(async move {
            let data = data?;
            let result = client.rpc(&method, data).await.map_err(|e| to_js_error(&e))?;
            Ok(crate::convert::data(&result))
        })
    }

    /// Reads up to `limit` stored messages of `room` after offset `since`
    /// (from the oldest kept when omitted), oldest first.
    #[wasm_bindgen(unchecked_return_type = "Promise<HistoryPage>")]
    pub fn history(&self, room: String, since: Option<f64>, limit: Option<u32>) -> Promise {
        let client = self.inner.clone();
        let since = since.map(|s| s as u64);
        promise(async move {
            client.history(&room, since, limit).await.map(|page| crate::convert::history(&page))
        })
    }

    /// Reads one page of a joined room's members (up to `limit`, default 100,
    /// at most 1000) after `cursor` (from the first when omitted).
    #[wasm_bindgen(js_name = membersPage, unchecked_return_type = "Promise<MembersPage>")]
    pub fn members_page(
        &self,
        room: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Promise {
        let client = self.inner.clone();
        promise(async move {
            let page = client.members_page(&room, cursor.as_deref(), limit).await?;
            Ok(crate::convert::members_page(&page))
        })
    }

    /// Reads every member of a joined room, page after page, in byte order.
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn members(&self, room: String) -> Promise {
        let client = self.inner.clone();
        promise(async move { client.members(&room).await.map(|members| strings(&members)) })
    }

    /// Closes the connection and stops reconnecting; `connect()` resumes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn disconnect(&self) -> Promise {
        let client = self.inner.clone();
        promise(async move {
            client.disconnect().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Closes for good; pending requests reject with kind "closed", and
    /// every callback is released (after the last `disconnected`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let client = self.inner.clone();
        let callbacks = self.callbacks.clone();
        promise(async move {
            client.close().await;
            callbacks.clear();
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `"disconnected"`, `"connecting"`, `"connected"` or `"closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "ConnectionState")]
    pub fn state(&self) -> String {
        match self.inner.state() {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Closed => "closed",
        }
        .to_owned()
    }

    /// Whether the client is connected now.
    #[wasm_bindgen(getter, js_name = isConnected)]
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }
}

/// A Promise from an SDK future; an SDK error rejects it with a `SwitchboardError`.
fn promise(
    future: impl Future<Output = Result<JsValue, switchboard_sdk::Error>> + 'static,
) -> Promise {
    let future: Pin<Box<dyn Future<Output = Result<JsValue, switchboard_sdk::Error>>>> =
        Box::pin(future);
    promise_js(async move { future.await.map_err(|err| to_js_error(&err)) })
}

/// A Promise from a future. Boxed, so that the Promise glue (the task that
/// polls the future and settles the Promise) exists once in the module
/// rather than once per method: about 3 KB gzipped.
fn promise_js(future: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let future: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(future);
    future_to_promise(future)
}

impl Client {
    /// `publish` and `publishToOthers`: one future for both, so the wasm
    /// carries one copy of it.
    fn publish_as(&self, room: String, event: String, data: JsValue, to_others: bool) -> Promise {
        let client = self.inner.clone();
        let data = to_payload(data);
        promise_js(async move {
            let data = data?;
            let published = client.publish_payload(&room, &event, data, to_others).await;
            published.map_err(|e| to_js_error(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

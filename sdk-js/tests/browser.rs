//! The JavaScript API in real headless Chromium against a live hub.
//!
//! `scripts/test.sh` starts the hub and passes its address at build time in
//! `SWITCHBOARD_TEST_URL`. Each test uses its own users and rooms, so they
//! can share that hub.

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, select};
use js_sys::{Function, Promise, Reflect};
use switchboard_js::Client;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const URL: &str = match option_env!("SWITCHBOARD_TEST_URL") {
    Some(url) => url,
    None => "ws://127.0.0.1:8080/ws",
};
const TIMEOUT: Duration = Duration::from_secs(10);

/// A unique suffix per test run, so reruns against one hub never collide.
fn unique(name: &str) -> String {
    format!("{name}-{}", js_sys::Math::random().to_bits() % 1_000_000_007)
}

fn new_client(user: &str) -> Client {
    let options = js_sys::JSON::parse(&format!(
        r#"{{"userId":"{user}","reconnect":{{"minDelayMs":20,"maxDelayMs":200}},"requestTimeoutMs":5000}}"#
    ))
    .unwrap();
    Client::new(URL.to_owned(), options).expect("client")
}

async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    let future = JsFuture::from(promise).fuse();
    let timeout = gloo_timers::future::sleep(TIMEOUT).fuse();
    futures::pin_mut!(future, timeout);
    select! {
        result = future => result,
        () = timeout => panic!("a Promise did not settle within {TIMEOUT:?}"),
    }
}

/// The payloads passed to one callback, in order.
struct Recorder {
    rx: mpsc::UnboundedReceiver<JsValue>,
    _callback: Closure<dyn FnMut(JsValue)>,
    function: Function,
}

impl Recorder {
    fn on(client: &Client, event: &str) -> Recorder {
        let (tx, rx) = mpsc::unbounded();
        let callback = Closure::<dyn FnMut(JsValue)>::new(move |value| {
            let _ = tx.unbounded_send(value);
        });
        let function = callback.as_ref().unchecked_ref::<Function>().clone();
        client.on(event.to_owned(), function.clone());
        Recorder { rx, _callback: callback, function }
    }

    async fn next(&mut self) -> JsValue {
        let next = self.rx.next().fuse();
        let timeout = gloo_timers::future::sleep(TIMEOUT).fuse();
        futures::pin_mut!(next, timeout);
        select! {
            value = next => value.expect("recorder alive"),
            () = timeout => panic!("no callback within {TIMEOUT:?}"),
        }
    }
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).unwrap()
}

fn text(value: &JsValue, key: &str) -> String {
    get(value, key).as_string().unwrap_or_else(|| panic!("`{key}` is not a string in {value:?}"))
}

#[wasm_bindgen_test]
async fn connect_join_publish_and_receive() {
    let user = unique("alice");
    let room = unique("general");
    let client = new_client(&user);
    let mut chats = Recorder::on(&client, "chat");
    wait(client.connect()).await.unwrap();
    assert_eq!(client.state(), "connected");
    let members = wait(client.join(room.clone())).await.unwrap();
    assert_eq!(js_sys::Array::from(&members).to_vec(), vec![JsValue::from_str(&user)]);

    let data = js_sys::JSON::parse(r#"{"text":"hello","n":[1,2]}"#).unwrap();
    wait(client.publish(room.clone(), "chat".into(), data)).await.unwrap();
    let message = chats.next().await;
    assert_eq!(text(&message, "from"), user);
    assert_eq!(text(&message, "room"), room);
    assert_eq!(text(&message, "event"), "chat");
    // `data` arrives as a plain object, not a Map.
    assert_eq!(
        js_sys::JSON::stringify(&get(&message, "data")).unwrap(),
        r#"{"text":"hello","n":[1,2]}"#
    );
    assert!(get(&message, "ts").as_f64().unwrap() > 1.7e12);
    wait(client.close()).await.unwrap();
    assert_eq!(client.state(), "closed");
}

#[wasm_bindgen_test]
async fn data_crosses_with_json_semantics_both_ways() {
    let user = unique("jade");
    let room = unique("json");
    let client = new_client(&user);
    let mut chats = Recorder::on(&client, "chat");
    wait(client.connect()).await.unwrap();
    wait(client.join(room.clone())).await.unwrap();

    // What `JSON.stringify` does: `toJSON` called, `undefined` and function
    // fields dropped, `NaN` written as null; key order, a `__proto__` key
    // (as data, not a prototype), whole and fractional numbers kept.
    let data = js_sys::eval(
        r#"({ zeta: 1, when: { toJSON: () => "2026-12-03" }, gone: undefined, f() {},
             nan: NaN, ["__proto__"]: { polluted: true }, neg: -2, frac: 2.5, deep: [[["x"]]] })"#,
    )
    .unwrap();
    wait(client.publish(room.clone(), "chat".into(), data)).await.unwrap();
    let message = chats.next().await;
    let received = get(&message, "data");
    assert_eq!(
        js_sys::JSON::stringify(&received).unwrap(),
        r#"{"zeta":1,"when":"2026-12-03","nan":null,"__proto__":{"polluted":true},"neg":-2,"frac":2.5,"deep":[[["x"]]]}"#
    );
    let own = js_sys::Object::keys(received.unchecked_ref::<js_sys::Object>());
    assert!(own.includes(&JsValue::from_str("__proto__"), 0), "an own data property");
    assert!(get(&JsValue::from(js_sys::Object::new()), "polluted").is_undefined());

    // What JSON cannot carry is refused, not mangled.
    for bad in ["10n", "(() => { const o = {}; o.self = o; return o; })()", "(() => 1)"] {
        let value = js_sys::eval(bad).unwrap();
        let error = wait(client.publish(room.clone(), "chat".into(), value)).await.unwrap_err();
        assert_eq!(text(&error, "kind"), "invalid_options", "{bad}");
    }
    wait(client.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn private_message_between_two_clients() {
    let (alice, bob) = (unique("alice"), unique("bob"));
    let a = new_client(&alice);
    let b = new_client(&bob);
    let mut inbox = Recorder::on(&b, "dm");
    wait(a.connect()).await.unwrap();
    wait(b.connect()).await.unwrap();
    let reached = wait(a.send(bob.clone(), "dm".into(), JsValue::from_str("psst"))).await.unwrap();
    assert_eq!(reached.as_f64(), Some(1.0));
    let message = inbox.next().await;
    assert_eq!((text(&message, "from"), text(&message, "to")), (alice, bob));
    assert_eq!(get(&message, "data").as_string().as_deref(), Some("psst"));
    wait(a.close()).await.unwrap();
    wait(b.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn errors_reject_with_a_switchboard_error_carrying_the_servers_code() {
    let client = new_client(&unique("carol"));
    wait(client.connect()).await.unwrap();
    let error = wait(client.publish(unique("not-joined"), "chat".into(), JsValue::NULL))
        .await
        .expect_err("publishing to a room not joined is refused");
    assert!(error.is_instance_of::<js_sys::Error>(), "rejects with an Error");
    assert_eq!(text(&error, "name"), "SwitchboardError");
    assert_eq!(text(&error, "kind"), "server");
    assert_eq!(get(&error, "code").as_f64(), Some(201.0));

    let error = wait(client.join(String::new())).await.expect_err("an empty room name is refused");
    assert_eq!(text(&error, "kind"), "invalid_name");

    // Data JSON cannot carry is refused before anything is sent, not mangled.
    let room = unique("json");
    wait(client.join(room.clone())).await.unwrap();
    let bigint = JsValue::from(js_sys::BigInt::from(10_i64));
    let error = wait(client.publish(room.clone(), "chat".into(), bigint))
        .await
        .expect_err("a BigInt is not JSON");
    assert_eq!(text(&error, "kind"), "invalid_options");
    assert!(text(&error, "message").contains("not JSON"), "{error:?}");
    let function = JsValue::from(js_sys::Function::new_no_args("return 1"));
    let error = wait(client.publish(room, "chat".into(), function))
        .await
        .expect_err("a function is not JSON");
    assert_eq!(text(&error, "kind"), "invalid_options");
    wait(client.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn an_rpc_the_hub_has_no_handler_for_rejects_with_its_code() {
    let client = new_client(&unique("caller"));
    wait(client.connect()).await.unwrap();
    let error = wait(client.rpc("orders.total".into(), JsValue::from(7))).await.unwrap_err();
    assert_eq!(text(&error, "kind"), "server");
    assert_eq!(get(&error, "code").as_f64(), Some(206.0));
    wait(client.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn bad_options_throw_in_the_constructor() {
    for (options, reason) in [
        (r#"{"userId":"x","reconnect":{"minDelay":5}}"#, "unknown field `minDelay`"),
        (r#"{"userId":"x","reconect":false}"#, "unknown field `reconect`"),
        (r#"{"reconnect":true}"#, "`reconnect` must be an options object or `false`"),
        (r#"{"heartbeat":{"intervalMs":1000}}"#, "missing field `timeoutMs`"),
        (r#"{"requestTimeoutMs":-5}"#, "`requestTimeoutMs` must be a non-negative integer"),
        (r#"{"fallbacks":["ws://a",3]}"#, "`fallbacks` must be a list of strings"),
        (r#"{"getToken":"not a function"}"#, "`getToken` must be a function"),
        (r#""alice""#, "options must be an object"),
    ] {
        let options = js_sys::JSON::parse(options).unwrap();
        let error = Client::new(URL.to_owned(), options).err().expect("bad options refused");
        assert_eq!(text(&error, "kind"), "invalid_options");
        assert!(text(&error, "message").contains(reason), "{}", text(&error, "message"));
    }
    // Switches and nulls are fine.
    let options = js_sys::JSON::parse(
        r#"{"userId":"x","reconnect":false,"heartbeat":false,"token":null,"offlineQueue":4}"#,
    )
    .unwrap();
    Client::new(URL.to_owned(), options).expect("valid options accepted");
}

#[wasm_bindgen_test]
async fn reconnects_after_the_server_drops_the_connection_and_rejoins() {
    let (dana, erin) = (unique("dana"), unique("erin"));
    let room = unique("lobby");
    let client = new_client(&dana);
    let mut disconnected = Recorder::on(&client, "disconnected");
    let mut connected = Recorder::on(&client, "connected");
    let mut chats = Recorder::on(&client, "chat");
    wait(client.connect()).await.unwrap();
    connected.next().await;
    wait(client.join(room.clone())).await.unwrap();

    // A 600 KiB message makes the hub close the connection with 1009.
    let huge = JsValue::from_str(&"x".repeat(600 * 1024));
    let error = wait(client.publish(room.clone(), "chat".into(), huge)).await.unwrap_err();
    assert_eq!(text(&error, "kind"), "connection_lost");
    let lost = disconnected.next().await;
    assert_eq!(get(&lost, "code").as_f64(), Some(1009.0));
    assert_eq!(get(&lost, "willReconnect").as_bool(), Some(true));
    connected.next().await;

    // Rejoined: another user's publish to the room reaches the client.
    let other = new_client(&erin);
    wait(other.connect()).await.unwrap();
    wait(other.join(room.clone())).await.unwrap();
    wait(other.publish(room.clone(), "chat".into(), JsValue::from_str("welcome back")))
        .await
        .unwrap();
    let message = chats.next().await;
    assert_eq!(text(&message, "from"), erin);
    wait(client.close()).await.unwrap();
    wait(other.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_throwing_callback_is_reported_on_error_and_unsubscribe_works() {
    let user = unique("frank");
    let client = new_client(&user);
    let mut errors = Recorder::on(&client, "error");
    let thrower = Function::new_with_args("message", "throw new Error('boom ' + message.data)");
    client.on("ping-me".into(), thrower.clone());
    let mut pings = Recorder::on(&client, "ping-me");
    wait(client.connect()).await.unwrap();

    wait(client.send(user.clone(), "ping-me".into(), JsValue::from(1))).await.unwrap();
    let error = errors.next().await;
    assert_eq!(text(&error, "kind"), "handler");
    assert!(text(&error, "message").contains("boom 1"), "{error:?}");
    assert_eq!(get(&pings.next().await, "data").as_f64(), Some(1.0), "other callbacks still run");

    assert!(client.off("ping-me".into(), thrower));
    let unsubscribe = client.on("ping-me".into(), pings.function.clone());
    unsubscribe.call0(&JsValue::UNDEFINED).unwrap();
    wait(client.send(user.clone(), "ping-me".into(), JsValue::from(2))).await.unwrap();
    // Still delivered once (the first registration); no new error.
    assert_eq!(get(&pings.next().await, "data").as_f64(), Some(2.0));
    wait(client.send(user.clone(), "ping-me".into(), JsValue::from(3))).await.unwrap();
    assert_eq!(get(&pings.next().await, "data").as_f64(), Some(3.0));
    assert!(errors.rx.try_recv().is_err(), "the thrower was removed: no more errors");
    wait(client.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn get_token_supplies_the_identity_on_a_hub_with_tokens() {
    // scripts/test.sh runs a second hub with a JWT secret and mints a token for `jsuser`.
    let (Some(url), Some(token)) =
        (option_env!("SWITCHBOARD_TEST_TOKEN_URL"), option_env!("SWITCHBOARD_TEST_TOKEN"))
    else {
        panic!(
            "build with SWITCHBOARD_TEST_TOKEN_URL and SWITCHBOARD_TEST_TOKEN (scripts/test.sh does)"
        );
    };
    let options = js_sys::Object::new();
    let get_token = Function::new_no_args(&format!("return Promise.resolve('{token}')"));
    Reflect::set(&options, &JsValue::from_str("getToken"), &get_token).unwrap();
    let client = Client::new(url.to_owned(), options.into()).expect("client");
    let mut inbox = Recorder::on(&client, "dm");
    wait(client.connect()).await.unwrap();
    wait(client.send("jsuser".into(), "dm".into(), JsValue::from(7))).await.unwrap();
    let message = inbox.next().await;
    assert_eq!(text(&message, "from"), "jsuser", "the hub named the user from the token");
    // This hub's rpc calls go to the example webhook backend, whose `time`
    // method answers with its clock.
    let time = wait(client.rpc("time".into(), JsValue::NULL)).await.unwrap();
    assert!(time.as_f64().is_some_and(|t| t > 1.0e9), "a round trip to the backend: {time:?}");
    wait(client.close()).await.unwrap();

    // Without a token the same hub refuses, and the client gives up.
    let anonymous = new_client_at(url, "nobody");
    let error =
        wait(anonymous.connect()).await.expect_err("user_id is refused by a hub with tokens");
    assert_eq!(text(&error, "kind"), "gave_up");
}

fn new_client_at(url: &str, user: &str) -> Client {
    let options = js_sys::JSON::parse(&format!(
        r#"{{"userId":"{user}","reconnect":{{"minDelayMs":20,"maxDelayMs":50,"maxAttempts":2}}}}"#
    ))
    .unwrap();
    Client::new(url.to_owned(), options).expect("client")
}

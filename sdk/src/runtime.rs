//! The executor seam: spawning, sleeping and the network's status, the only
//! things the client's logic needs from its host. Native builds use tokio;
//! the wasm32 build uses `spawn_local`, gloo-timers and the browser's
//! `online` event. This file, `transport/` and `codec/` are the only places
//! that look at `target_arch`.

use std::future::Future;
use std::time::Duration;

/// `Send + Sync` natively, where handlers run on a multi-threaded runtime;
/// nothing on wasm32, where everything runs on the page's single thread.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSend for T {}

/// `Send + Sync` natively, where handlers run on a multi-threaded runtime;
/// nothing on wasm32, where everything runs on the page's single thread.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// A boxed future: `Send` natively, where it may move between threads.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// A boxed future; on wasm32 nothing is `Send`, and nothing needs to be.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T>>>;

/// A borrowed future the driver waits on: `Send` natively. Not boxed and
/// not generic, so one wait loop serves every kind of wait.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Wait<'a> = std::pin::Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>;

/// A borrowed future the driver waits on.
#[cfg(target_arch = "wasm32")]
pub(crate) type Wait<'a> = std::pin::Pin<&'a mut (dyn Future<Output = ()> + 'a)>;

/// Whether a task can be spawned here: natively, only inside a Tokio runtime.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn can_spawn() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs a task in the background.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(task);
}

/// Waits for `duration`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Whether the network is believed to be up. Natively there is no such
/// signal, so always.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn is_online() -> bool {
    true
}

/// Resolves when the network comes back. Natively there is no such signal,
/// so never.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn online() {
    std::future::pending::<()>().await;
}

/// Resolves when the host learns the network is gone. Natively there is no
/// such signal, so never.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn offline() {
    std::future::pending::<()>().await;
}

/// In the browser every future runs on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub(crate) fn can_spawn() -> bool {
    true
}

/// Runs a task on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(task);
}

/// Waits for `duration` with a browser timer.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn sleep(duration: Duration) {
    gloo_timers::future::sleep(duration).await;
}

/// `navigator.onLine`: false when the browser knows it has no network.
/// Outside a window (a worker without one) assume online, and so where it
/// is not a boolean: Deno has a `Window` whose navigator has no `onLine`,
/// which `Navigator::on_line` would read as `false`, waiting for an `online`
/// event that never comes.
#[cfg(target_arch = "wasm32")]
pub(crate) fn is_online() -> bool {
    web_sys::window().is_none_or(|window| {
        let on_line = js_sys::Reflect::get(&window.navigator(), &"onLine".into());
        on_line.ok().and_then(|value| value.as_bool()) != Some(false)
    })
}

/// Resolves on the window's next `online` event.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn online() {
    window_event("online").await;
}

/// Resolves on the window's next `offline` event.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn offline() {
    window_event("offline").await;
}

/// Resolves on the window's next `name` event; never outside a window. The
/// listener is removed when this future completes or is dropped.
#[cfg(target_arch = "wasm32")]
async fn window_event(name: &'static str) {
    let Some(window) = web_sys::window() else {
        return std::future::pending::<()>().await;
    };
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let _listener = gloo_events::EventListener::once(&window, name, move |_| {
        let _ = tx.send(());
    });
    let _ = rx.await;
}

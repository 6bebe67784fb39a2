//! The executor seam: spawning and sleeping, the only things the client's
//! logic needs from a runtime. Native builds use tokio; the wasm32 build
//! plugs in `spawn_local` and gloo-timers here, and in `transport/`, and
//! nowhere else.

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

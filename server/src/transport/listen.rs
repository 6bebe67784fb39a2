//! The listening socket and the accept loop: [`bind`] opens the listener with
//! a backlog sized for reconnect storms, and [`serve`] serves the router on it
//! with hyper, the way `axum::serve` does, plus what it lacks: a deadline for
//! the request headers (a client that opens a socket and trickles or never
//! sends its handshake is disconnected), `TCP_NODELAY`, and the peer address
//! on every request for the per-address limits.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt;

/// Listens on `addr` with room for `backlog` connections that the kernel has
/// completed but the hub has not accepted yet (Linux caps it at
/// `net.core.somaxconn`).
///
/// `tokio::net::TcpListener::bind` asks for 1024 and the standard library's
/// for 128: fine for a web page, too short for thousands of clients that all
/// reconnect in the same second after a restart. Must be called within a
/// Tokio runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted hub must not wait for the old one's TIME_WAIT sockets.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` until `shutdown` resolves, then waits (at most `grace`) for
/// open HTTP requests to finish. Upgraded WebSockets are not waited for
/// here: their sessions end on the hub's own shutdown signal.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP connections still open after the grace period");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `count` connections to `addr` at once; how many complete within
    /// `deadline`.
    async fn connect_burst(addr: SocketAddr, count: usize, deadline: Duration) -> usize {
        let attempts = (0..count).map(|_| async move {
            tokio::time::timeout(deadline, tokio::net::TcpStream::connect(addr)).await
        });
        let results = futures::future::join_all(attempts).await;
        // Keep the sockets open until all are counted: a closed one would
        // free its slot in the queue.
        results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count()
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_usual_backlog_is_queued_by_the_kernel_until_accepted() {
        // Nothing accepts here: every connection must wait in the kernel's
        // queue. With the usual 128 the 130th SYN is dropped and its client
        // retransmits after 1 s, 3 s, ... so it never completes in time.
        let listener = bind("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let completed = connect_burst(addr, 600, Duration::from_secs(10)).await;
        assert_eq!(completed, 600, "all 600 wait in the queue");
        drop(listener);
    }

    #[tokio::test]
    async fn binding_twice_fails_and_rebinding_after_close_works() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(bind(addr, 16).is_err(), "the port is taken");
        drop(listener);
        assert!(bind(addr, 16).is_ok(), "free again once closed");
    }
}

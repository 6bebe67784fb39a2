//! [`Proxy`]: a TCP relay between a client and the hub that a test can
//! sabotage: cut every connection abruptly (a TCP reset, no WebSocket close),
//! or swallow what the hub sends (so an `ack` is lost on the way).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A relay to the hub on a loopback port.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

#[derive(Default)]
struct Shared {
    relays: Mutex<Vec<AbortHandle>>,
    swallow: AtomicBool,
    refuse: AtomicBool,
    accepted: AtomicUsize,
}

impl Proxy {
    /// Starts relaying `127.0.0.1:<free port>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let relays = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if relays.refuse.load(Ordering::SeqCst) {
                    let _ = client.set_zero_linger();
                    continue; // dropped: the connection is reset
                }
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                relays.accepted.fetch_add(1, Ordering::SeqCst);
                // A zero linger turns the close on abort into a reset.
                let _ = client.set_zero_linger();
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let task = tokio::spawn(relay(client, server, relays.clone()));
                relays.relays.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy { addr, shared, accept }
    }

    /// The WebSocket URL through this proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Resets every current connection.
    pub fn cut_all(&self) {
        for relay in self.shared.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    /// While on, bytes from the hub are read and thrown away.
    pub fn swallow_replies(&self, on: bool) {
        self.shared.swallow.store(on, Ordering::SeqCst);
    }

    /// While on, new connections are reset at once (the hub is unreachable).
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// How many connections were relayed so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !shared.swallow.load(Ordering::SeqCst)
                        && client_write.write_all(&buffer[..n]).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

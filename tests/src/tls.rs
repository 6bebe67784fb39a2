//! [`TlsFront`]: a TLS endpoint in front of a hub, as a reverse proxy
//! terminating `wss://` would be, with a certificate made when it starts.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

/// A TLS listener on a loopback port relaying to a hub.
pub struct TlsFront {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The certificate it presents (self-signed, for `127.0.0.1`), as PEM:
    /// what a client must trust.
    pub ca_pem: String,
    accept: AbortHandle,
}

impl TlsFront {
    /// Starts relaying TLS on `127.0.0.1:<free port>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TlsFront {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("make a test certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        // ring, as the SDK uses (see sdk/src/transport/native.rs).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust us aborts the handshake.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut hub) = TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut hub).await;
                });
            }
        })
        .abort_handle();
        TlsFront { addr, ca_pem: made.cert.pem(), accept }
    }

    /// The hub's WebSocket URL through this endpoint.
    pub fn wss_url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

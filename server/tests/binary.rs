//! The `switchboard` binary itself: configuration from the environment, and
//! a graceful shutdown on SIGTERM that closes connections with 1001.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `switchboard` on a free loopback port, with `env` set; its port.
fn start(env: &[(&str, &str)]) -> (std::process::Child, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .envs(env.iter().copied())
        .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchboard");
    (child, port)
}

/// A WebSocket to `url`, opened as soon as the hub listens.
async fn connect_when_listening(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => return socket,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "never accepted: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_cleanly() {
    let (mut child, port) = start(&[]);
    // Bound by the environment variable: connecting succeeds once it listens.
    let mut socket = connect_when_listening(&format!("ws://127.0.0.1:{port}/ws?user_id=ops")).await;
    let welcome = tokio::time::timeout(TIMEOUT, socket.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&welcome, Message::Text(t) if t.contains("\"welcome\"")), "{welcome:?}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = loop {
        match tokio::time::timeout(TIMEOUT, socket.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1001);
    drop(socket);

    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "switchboard exited with {exit}");
}

#[test]
fn a_contradictory_configuration_is_refused_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--heartbeat-interval-ms", "5000", "--heartbeat-timeout-ms", "100"])
        .output()
        .expect("run switchboard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("heartbeat.timeout_ms"), "{stderr}");
}

#[test]
fn a_public_bind_without_an_api_key_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--bind", "0.0.0.0:0"])
        .env_remove("SWITCHBOARD_API_KEY")
        .output()
        .expect("run switchboard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without an API key"), "{stderr}");
}

#[tokio::test]
async fn a_public_bind_with_an_api_key_serves() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--bind", &format!("0.0.0.0:{port}"), "--api-key", "k", "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchboard");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn print_config_shows_every_layer_with_secrets_masked() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--print-config", "--max-connections", "77"])
        .env("SWITCHBOARD_LIMITS__MESSAGES_PER_SEC", "42")
        .env("SWITCHBOARD_API__KEY", "do-not-print")
        .env("SWITCHBOARD_JWT_SECRET", "nor-this")
        .output()
        .expect("run switchboard");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("messages_per_sec = 42"), "{printed}");
    assert!(printed.contains("max_connections = 77"), "{printed}");
    assert!(!printed.contains("do-not-print") && !printed.contains("nor-this"), "{printed}");
    // The mode in force, not the default it overrides.
    assert!(printed.contains("insecure = false"), "{printed}");
    // What it prints is a configuration file the hub reads back.
    let back = switchboard_server::Config::from_toml(&printed).unwrap();
    assert_eq!(back.limits.messages_per_sec, 42);
}

#[test]
fn a_misspelt_variable_is_refused_naming_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env("SWITCHBOARD_LIMITS__MESAGES_PER_SEC", "5")
        .output()
        .expect("run switchboard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("limits.mesages_per_sec"), "{stderr}");
}

#[tokio::test]
async fn switchboard_token_prints_a_token_the_same_configuration_accepts() {
    let secret = ("SWITCHBOARD_AUTH__JWT_SECRET", "binary-test-secret");
    let minted = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env(secret.0, secret.1)
        .args(["token", "--user", "alice", "--ttl", "15m"])
        .output()
        .expect("run switchboard token");
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();

    let (mut child, port) = start(&[secret]);
    let mut socket =
        connect_when_listening(&format!("ws://127.0.0.1:{port}/ws?token={token}")).await;
    let welcome = tokio::time::timeout(TIMEOUT, socket.next()).await.unwrap().unwrap().unwrap();
    let welcome: serde_json::Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], "alice");
    child.kill().unwrap();
    child.wait().unwrap();

    // Without a secret there is nothing to sign with: a message, not a token.
    let refused = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_remove(secret.0)
        .args(["token", "--user", "alice"])
        .output()
        .expect("run switchboard token");
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no auth.jwt_secret is configured"));
}

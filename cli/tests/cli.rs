//! `switchboard-cli` as a terminal user runs it, against a hub on a loopback
//! port: `sub` prints what `pub` and `send` deliver, one JSON line each.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A hub in this process with `config`; its WebSocket URL.
async fn hub_with(config: switchboard_server::Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(switchboard_server::run(listener, config, std::future::pending()));
    url
}

/// A hub in this process with the defaults; its WebSocket URL.
async fn hub() -> String {
    hub_with(switchboard_server::Config::default()).await
}

fn cli(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard-cli"));
    command.env_remove("SWITCHBOARD_CLI_TOKEN").args(["--url", url]).args(args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// The next line of `lines`, within the deadline.
async fn next<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> String {
    tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("the command still running")
}

/// Runs a command to its end; fails with its stderr if it did not succeed.
async fn finish(mut command: Command) -> String {
    let output = tokio::time::timeout(TIMEOUT, command.output()).await.expect("in time").unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

struct Subscriber {
    _child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// `sub` running, once it says it has joined.
async fn subscribe(url: &str, user: &str, rooms: &[&str]) -> Subscriber {
    let mut child = cli(url, &[&["--user", user, "sub"], rooms].concat()).spawn().unwrap();
    let mut stderr: Lines<BufReader<ChildStderr>> =
        BufReader::new(child.stderr.take().unwrap()).lines();
    let said = next(&mut stderr).await;
    assert!(said.starts_with("subscribed to"), "{said}");
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    Subscriber { _child: child, stdout }
}

#[tokio::test]
async fn sub_prints_what_pub_and_send_deliver() {
    let url = hub().await;
    let mut alice = subscribe(&url, "alice", &["general", "news"]).await;

    finish(cli(&url, &["--user", "bob", "pub", "general", "chat", r#"{"text":"hi"}"#])).await;
    let line: Value = serde_json::from_str(&next(&mut alice.stdout).await).unwrap();
    assert_eq!(line["room"], "general");
    assert_eq!(line["from"], "bob");
    assert_eq!(line["event"], "chat");
    assert_eq!(line["data"], serde_json::json!({"text": "hi"}));
    assert_eq!(line["offset"], 1);

    // Text that is not JSON is sent as a string.
    finish(cli(&url, &["--user", "bob", "pub", "news", "headline", "not json"])).await;
    let line: Value = serde_json::from_str(&next(&mut alice.stdout).await).unwrap();
    assert_eq!((&line["room"], &line["data"]), (&Value::from("news"), &Value::from("not json")));

    let sent = finish(cli(&url, &["--user", "bob", "send", "alice", "dm", "42"])).await;
    let sent: Value = serde_json::from_str(sent.trim()).unwrap();
    assert_eq!(sent, serde_json::json!({"to": "alice", "reached": 1}));
    let line: Value = serde_json::from_str(&next(&mut alice.stdout).await).unwrap();
    assert_eq!(
        (&line["to"], &line["from"], &line["data"]),
        (&Value::from("alice"), &Value::from("bob"), &Value::from(42))
    );
}

#[tokio::test]
async fn a_refusal_ends_the_command_with_the_hubs_reason() {
    let mut config = switchboard_server::Config::default();
    config.permissions.send = switchboard_server::config::Access::Server;
    let url = hub_with(config).await;
    let output = cli(&url, &["--user", "bob", "send", "alice", "dm", "1"]).output();
    let output = tokio::time::timeout(TIMEOUT, output).await.unwrap().unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("switchboard-cli: ") && stderr.contains("forbidden"), "{stderr}");
}

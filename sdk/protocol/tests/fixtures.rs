//! Golden fixtures: every file under `fixtures/` decodes to the frame written
//! here and encodes back to the same JSON, so a renamed field or a changed
//! encoding fails this test before it reaches a client.

use serde_json::{Value, json};
use std::path::Path;
use switchboard_protocol::{
    Ack, ClientFrame, Encoding, ErrorCode, ErrorFrame, Message, Occupancy, Position, Presence,
    PresenceAction, ServerFrame, StreamReset, Welcome,
};

fn fixture(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).unwrap()
}

fn assert_client(path: &str, expected: ClientFrame) {
    let golden = fixture(path);
    let decoded = ClientFrame::decode(&golden.to_string()).unwrap();
    assert_eq!(decoded, expected, "{path} decodes to the expected frame");
    assert_eq!(serde_json::to_value(&expected).unwrap(), golden, "{path} encodes back");
}

fn assert_server(path: &str, expected: ServerFrame) {
    let golden = fixture(path);
    let decoded: ServerFrame = serde_json::from_value(golden.clone()).unwrap();
    assert_eq!(decoded, expected, "{path} decodes to the expected frame");
    assert_eq!(serde_json::to_value(&expected).unwrap(), golden, "{path} encodes back");
}

#[test]
fn client_frames_round_trip() {
    assert_client(
        "client/join.json",
        ClientFrame::Join { id: Some("1".into()), room: "general".into(), since: None },
    );
    assert_client(
        "client/join_since.json",
        ClientFrame::Join {
            id: Some("7".into()),
            room: "general".into(),
            since: Some(Position { epoch: "4b1d4e7f9c2a".into(), offset: 41 }),
        },
    );
    assert_client(
        "client/history.json",
        ClientFrame::History {
            id: Some("8".into()),
            room: "general".into(),
            since: Some(40),
            limit: Some(2),
        },
    );
    assert_client(
        "client/members.json",
        ClientFrame::Members {
            id: Some("10".into()),
            room: "stadium".into(),
            cursor: Some("bob".into()),
            limit: Some(2),
        },
    );
    assert_client(
        "client/leave.json",
        ClientFrame::Leave { id: Some("2".into()), room: "general".into() },
    );
    assert_client(
        "client/publish.json",
        ClientFrame::Publish {
            id: Some("3".into()),
            room: "general".into(),
            event: "chat".into(),
            data: json!({"text": "hello", "n": [1, 2.5, null, true]}),
            encoding: None,
            exclude_self: false,
        },
    );
    assert_client(
        "client/send.json",
        ClientFrame::Send {
            id: Some("4".into()),
            to: "bob".into(),
            event: "dm".into(),
            data: json!("psst"),
            encoding: None,
        },
    );
    assert_client(
        "client/rpc.json",
        ClientFrame::Rpc {
            id: Some("10".into()),
            method: "orders.total".into(),
            data: json!({"order": 7}),
        },
    );
    assert_client(
        "client/publish_bytes.json",
        ClientFrame::Publish {
            id: Some("11".into()),
            room: "files".into(),
            event: "upload".into(),
            data: json!("AAH/"),
            encoding: Some(Encoding::Base64),
            exclude_self: false,
        },
    );
    assert_client("client/ping.json", ClientFrame::Ping { id: Some("5".into()) });
    assert_client("client/ping_without_id.json", ClientFrame::Ping { id: None });
}

#[test]
fn server_frames_round_trip() {
    assert_server(
        "server/welcome.json",
        ServerFrame::Welcome(Welcome {
            session: "6f9c2a8e4b1d4e7f".into(),
            user: "alice".into(),
            protocol: switchboard_protocol::PROTOCOL_VERSION,
            heartbeat_ms: 25_000,
            inbox: None,
            recovered: None,
            rate: Some(100),
        }),
    );
    assert_server(
        "server/welcome_resumed.json",
        ServerFrame::Welcome(Welcome {
            session: "6f9c2a8e4b1d4e7f".into(),
            user: "alice".into(),
            protocol: 1,
            heartbeat_ms: 25_000,
            inbox: Some(Position { epoch: "9c2a4b1d4e7f".into(), offset: 5 }),
            recovered: Some(true),
            rate: None,
        }),
    );
    let hi = Message {
        encoding: None,
        room: Some("general".into()),
        to: None,
        from: "bob".into(),
        event: "chat".into(),
        data: json!("hi"),
        ts: 1_764_000_000_002,
        offset: Some(41),
        binary: None,
    };
    assert_server(
        "server/room_message_with_offset.json",
        ServerFrame::Message(Message { offset: Some(42), ..hi.clone() }),
    );
    assert_server(
        "server/ack_join_recovered.json",
        ServerFrame::Ack(Ack {
            id: "7".into(),
            members: Some(vec!["alice".into()]),
            epoch: Some("4b1d4e7f9c2a".into()),
            offset: Some(43),
            recovered: Some(true),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/ack_history.json",
        ServerFrame::Ack(Ack {
            id: "8".into(),
            epoch: Some("4b1d4e7f9c2a".into()),
            offset: Some(43),
            messages: Some(vec![hi]),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/ack_send_queued.json",
        ServerFrame::Ack(Ack {
            id: "9".into(),
            delivered: Some(0),
            status: Some("queued".into()),
            offset: Some(5),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/room_message.json",
        ServerFrame::Message(Message {
            encoding: None,
            room: Some("general".into()),
            to: None,
            from: "alice".into(),
            event: "chat".into(),
            data: json!({"text": "hello"}),
            ts: 1_764_000_000_000,
            offset: None,
            binary: None,
        }),
    );
    assert_server(
        "server/private_message.json",
        ServerFrame::Message(Message {
            encoding: None,
            room: None,
            to: Some("bob".into()),
            from: "alice".into(),
            event: "dm".into(),
            data: json!("psst"),
            ts: 1_764_000_000_001,
            offset: None,
            binary: None,
        }),
    );
    let bytes = Message {
        encoding: Some(Encoding::Base64),
        room: Some("files".into()),
        to: None,
        from: "alice".into(),
        event: "upload".into(),
        data: json!("AAH/"),
        ts: 1_764_000_000_003,
        offset: Some(7),
        binary: None,
    };
    assert_server("server/binary_message.json", ServerFrame::Message(bytes.clone()));
    // The text begins with the prefix the hub tells binary messages by.
    let text = serde_json::to_string(&ServerFrame::Message(bytes)).unwrap();
    assert!(text.starts_with(switchboard_protocol::binary::BINARY_MESSAGE_PREFIX), "{text}");
    for (path, action) in [
        ("server/presence_join.json", PresenceAction::Join),
        ("server/presence_leave.json", PresenceAction::Leave),
    ] {
        assert_server(
            path,
            ServerFrame::Presence(Presence { room: "general".into(), user: "bob".into(), action }),
        );
    }
    assert_server(
        "server/ack_join.json",
        ServerFrame::Ack(Ack {
            id: "1".into(),
            members: Some(vec!["alice".into(), "bob".into()]),
            member_count: Some(2),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/ack_join_large.json",
        ServerFrame::Ack(Ack {
            id: "6".into(),
            members: Some(vec!["alice".into(), "bob".into()]),
            member_count: Some(5120),
            cursor: Some("bob".into()),
            large: Some(true),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/ack_members.json",
        ServerFrame::Ack(Ack {
            id: "10".into(),
            members: Some(vec!["carol".into(), "dave".into()]),
            member_count: Some(5120),
            cursor: Some("dave".into()),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/occupancy.json",
        ServerFrame::Occupancy(Occupancy { room: "stadium".into(), count: 5120 }),
    );
    assert_server(
        "server/ack_rpc.json",
        ServerFrame::Ack(Ack {
            id: "10".into(),
            data: Some(json!({"total": 42.5, "currency": "EUR"})),
            ..Ack::default()
        }),
    );
    assert_server(
        "server/ack_send.json",
        ServerFrame::Ack(Ack { id: "4".into(), delivered: Some(2), ..Ack::default() }),
    );
    assert_server("server/ack.json", ServerFrame::Ack(Ack { id: "3".into(), ..Ack::default() }));
    assert_server(
        "server/error.json",
        ServerFrame::Error(ErrorFrame {
            id: Some("3".into()),
            code: ErrorCode::NOT_JOINED,
            message: "join room `general` before publishing to it".into(),
        }),
    );
    assert_server(
        "server/error_without_id.json",
        ServerFrame::Error(ErrorFrame {
            id: None,
            code: ErrorCode::MALFORMED,
            message: "frame is not valid JSON".into(),
        }),
    );
    assert_server("server/pong.json", ServerFrame::Pong { id: Some("5".into()) });
    assert_server(
        "server/reset.json",
        ServerFrame::Reset(StreamReset {
            room: Some("general".into()),
            epoch: "7d1e0c9a4b2f".into(),
            offset: 0,
        }),
    );
    assert_server(
        "server/reset_inbox.json",
        ServerFrame::Reset(StreamReset { room: None, epoch: "0a9b8c7d6e5f".into(), offset: 0 }),
    );
}

#[test]
fn every_fixture_file_is_covered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut count = 0;
    for dir in ["client", "server"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let entry = entry.unwrap();
            let value = fixture(&format!("{dir}/{}", entry.file_name().to_string_lossy()));
            if dir == "client" {
                ClientFrame::decode(&value.to_string()).unwrap();
            } else {
                serde_json::from_value::<ServerFrame>(value).unwrap();
            }
            count += 1;
        }
    }
    assert_eq!(count, 34, "a new fixture needs an assertion above");
}

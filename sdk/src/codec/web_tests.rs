//! The browser codec against serde's: every frame type, both ways, and the
//! same verdict on bad frames. Run with `wasm-bindgen-test-runner` (Node).

use js_sys::JSON;
use serde_json::{Value, json};
use switchboard_protocol::{
    Ack, ClientFrame, ErrorCode, ErrorFrame, Message, Occupancy, Position, Presence,
    PresenceAction, RoomInfo, RoomJoined, ServerFrame, Welcome,
};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use super::js::{Fields, value_from_js, value_to_js};
use super::web::{decode, encode};

/// Data with what JSON can hold: nesting, key order, negative and
/// fractional numbers, escapes, non-ASCII text.
fn data() -> Value {
    json!({
        "zeta": [1, -2, 2.5, 1e-7, null, true, false],
        "alpha": {"quote": "say \"hi\"\n", "text": "héllo ✓ 🎉", "empty": {}, "none": []},
        "big": 9_007_199_254_740_991_u64,
    })
}

fn message(room: Option<&str>, offset: Option<u64>) -> Message {
    Message {
        room: room.map(Into::into),
        to: room.is_none().then(|| "bob".into()),
        from: "ann".into(),
        event: "chat".into(),
        data: data(),
        ts: 1_767_225_600_000,
        offset,
    }
}

fn server_frames() -> Vec<ServerFrame> {
    let info = RoomInfo {
        name: Some("Lobby".into()),
        description: None,
        data: Some(json!({"topic": "x"})),
    };
    vec![
        ServerFrame::Welcome(Welcome {
            session: "s1".into(),
            user: "ann".into(),
            protocol: 1,
            heartbeat_ms: 25_000,
            inbox: Some(Position { epoch: "e1".into(), offset: 4 }),
            recovered: Some(true),
        }),
        ServerFrame::Welcome(Welcome {
            session: "s1".into(),
            user: "ann".into(),
            protocol: 1,
            heartbeat_ms: 0,
            inbox: None,
            recovered: None,
        }),
        ServerFrame::Message(message(Some("lobby"), Some(7))),
        ServerFrame::Message(message(None, None)),
        ServerFrame::Presence(Presence {
            room: "lobby".into(),
            user: "bob".into(),
            action: PresenceAction::Join,
        }),
        ServerFrame::Presence(Presence {
            room: "lobby".into(),
            user: "bob".into(),
            action: PresenceAction::Leave,
        }),
        ServerFrame::Occupancy(Occupancy { room: "lobby".into(), count: 5000 }),
        ServerFrame::Ack(Ack { id: "1".into(), ..Ack::default() }),
        ServerFrame::Ack(Ack {
            id: "2".into(),
            members: Some(vec!["ann".into(), "bob".into()]),
            member_count: Some(2),
            cursor: Some("bob".into()),
            large: Some(false),
            delivered: Some(3),
            status: Some("duplicate".into()),
            epoch: Some("e2".into()),
            offset: Some(9),
            recovered: Some(false),
            messages: Some(vec![message(Some("lobby"), Some(1)), message(Some("lobby"), Some(2))]),
            data: Some(data()),
            info: Some(info.clone()),
        }),
        ServerFrame::Ack(Ack { id: "3".into(), data: Some(json!(0)), ..Ack::default() }),
        ServerFrame::Error(ErrorFrame {
            id: Some("4".into()),
            code: ErrorCode::RATE_LIMITED,
            message: "slow down".into(),
        }),
        ServerFrame::Error(ErrorFrame { id: None, code: ErrorCode(65_535), message: "".into() }),
        ServerFrame::Refresh { expires_in_ms: 30_000 },
        ServerFrame::Joined(RoomJoined {
            room: "lobby".into(),
            members: Some(vec!["ann".into()]),
            member_count: Some(1),
            cursor: None,
            large: Some(true),
            epoch: "e3".into(),
            offset: 12,
            info: Some(info),
        }),
        ServerFrame::Left { room: "lobby".into() },
        ServerFrame::Pong { id: Some("5".into()) },
        ServerFrame::Pong { id: None },
    ]
}

#[wasm_bindgen_test]
fn every_server_frame_decodes_as_serde_decodes_it() {
    for frame in server_frames() {
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(decode(&text), Ok(Some(frame.clone())), "{text}");
        assert_eq!(ServerFrame::decode(&text).unwrap(), Some(frame), "{text}");
    }
}

#[wasm_bindgen_test]
fn field_order_and_unknown_fields_do_not_matter() {
    let late = r#"{"room":"r","user":"u","extra":{"new":1},"action":"join","type":"presence"}"#;
    let expected = ServerFrame::Presence(Presence {
        room: "r".into(),
        user: "u".into(),
        action: PresenceAction::Join,
    });
    assert_eq!(decode(late), Ok(Some(expected.clone())));
    assert_eq!(ServerFrame::decode(late).unwrap(), Some(expected));
    // Absent and null optional fields are the same (an rpc's `null` result
    // included: serde reads it as `None` too).
    for nulls in [r#"{"type":"pong","id":null}"#, r#"{"type":"ack","id":"1","data":null}"#] {
        assert_eq!(decode(nulls), Ok(ServerFrame::decode(nulls).unwrap()));
    }
    assert_eq!(decode(r#"{"type":"pong","id":null}"#), Ok(Some(ServerFrame::Pong { id: None })));
}

#[wasm_bindgen_test]
fn a_newer_hubs_frame_type_is_skipped() {
    let newer = r#"{"type":"telepathy","room":"r","level":9}"#;
    assert_eq!(decode(newer), Ok(None));
    assert_eq!(ServerFrame::decode(newer).unwrap(), None);
}

#[wasm_bindgen_test]
fn bad_frames_fail_in_both_codecs() {
    for text in [
        "{not json",
        "[]",
        "[1]",
        r#""welcome""#,
        "null",
        "{}",
        r#"{"room":"r"}"#,
        r#"{"type":7}"#,
        r#"{"type":"presence","room":"r"}"#,
        r#"{"type":"presence","room":"r","user":"u","action":"dance"}"#,
        r#"{"type":"presence","room":5,"user":"u","action":"join"}"#,
        r#"{"type":"occupancy","room":"r","count":-1}"#,
        r#"{"type":"occupancy","room":"r","count":1.5}"#,
        r#"{"type":"occupancy","room":"r","count":"3"}"#,
        r#"{"type":"error","code":70000,"message":"m"}"#,
        r#"{"type":"welcome","session":"s","user":"u","protocol":4294967296,"heartbeat_ms":1}"#,
        r#"{"type":"ack"}"#,
        r#"{"type":"ack","id":"1","members":"ann"}"#,
        r#"{"type":"ack","id":"1","members":["ann",3]}"#,
        r#"{"type":"ack","id":"1","messages":[1]}"#,
        r#"{"type":"ack","id":"1","info":"lobby"}"#,
        r#"{"type":"ack","id":"1","recovered":"yes"}"#,
        r#"{"type":"message","from":"a","event":"e"}"#,
        r#"{"type":"refresh"}"#,
        r#"{"type":"left"}"#,
        r#"{"type":"joined","room":"r","epoch":"e"}"#,
    ] {
        assert!(decode(text).is_err(), "the browser codec accepted {text}");
        assert!(ServerFrame::decode(text).is_err(), "serde accepted {text}");
    }
}

#[wasm_bindgen_test]
fn errors_name_the_field() {
    let error = decode(r#"{"type":"occupancy","room":"r"}"#).unwrap_err();
    assert_eq!(error, "missing field `count`");
    let error = decode(r#"{"type":"occupancy","room":"r","count":"3"}"#).unwrap_err();
    assert_eq!(error, "`count` must be a non-negative integer in range");
}

#[wasm_bindgen_test]
fn data_nested_too_deep_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"type":"message","from":"a","event":"e","ts":1,"data":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(decode(&deep).unwrap_err().contains("nested deeper than 128 levels"));
    assert!(ServerFrame::decode(&deep).is_err(), "serde_json has the same limit");
}

#[wasm_bindgen_test]
fn every_client_frame_encodes_as_serde_encodes_it() {
    let since = Position { epoch: "e1".into(), offset: 41 };
    let frames = [
        ClientFrame::Join { id: Some("1".into()), room: "lobby".into(), since: Some(since) },
        ClientFrame::Join { id: None, room: "lobby".into(), since: None },
        ClientFrame::Leave { id: Some("2".into()), room: "lobby".into() },
        ClientFrame::Publish {
            id: Some("3".into()),
            room: "lobby".into(),
            event: "chat".into(),
            data: data(),
            exclude_self: false,
        },
        ClientFrame::Publish {
            id: None,
            room: "lobby".into(),
            event: "chat".into(),
            data: Value::Null,
            exclude_self: true,
        },
        ClientFrame::Send {
            id: Some("4".into()),
            to: "bob".into(),
            event: "dm".into(),
            data: json!("hi"),
        },
        ClientFrame::History {
            id: Some("5".into()),
            room: "r".into(),
            since: Some(3),
            limit: Some(50),
        },
        ClientFrame::History { id: None, room: "r".into(), since: None, limit: None },
        ClientFrame::Members {
            id: Some("6".into()),
            room: "r".into(),
            cursor: Some("bob".into()),
            limit: Some(100),
        },
        ClientFrame::Members { id: None, room: "r".into(), cursor: None, limit: None },
        ClientFrame::Auth { id: Some("7".into()), token: "a.b.c".into() },
        ClientFrame::Rpc { id: Some("8".into()), method: "add".into(), data: json!([1, 2]) },
        ClientFrame::Ping { id: Some("9".into()) },
        ClientFrame::Ping { id: None },
    ];
    for frame in frames {
        let expected = serde_json::to_string(&frame).unwrap();
        assert_eq!(encode(&frame), expected);
        assert_eq!(ClientFrame::decode(&encode(&frame)).unwrap(), frame);
    }
}

#[wasm_bindgen_test]
fn data_round_trips_through_javascript() {
    let value = data();
    assert_eq!(value_from_js(&value_to_js(&value)), Ok(value.clone()));
    // The JavaScript object is what JSON.parse makes of serde_json's text.
    let text = JSON::stringify(&value_to_js(&value)).unwrap().as_string().unwrap();
    assert_eq!(text, serde_json::to_string(&value).unwrap());
    // Whole numbers read as integers, as serde_json reads `3`.
    assert_eq!(value_from_js(&JsValue::from_f64(3.0)).unwrap().as_u64(), Some(3));
    assert_eq!(value_from_js(&JsValue::from_f64(-3.0)).unwrap().as_i64(), Some(-3));
    assert!(value_from_js(&JsValue::from_f64(f64::NAN)).is_err());
    assert!(value_from_js(&js_sys::Function::new_no_args("")).is_err());
}

#[wasm_bindgen_test]
fn a_proto_key_stays_data() {
    let value = json!({"__proto__": {"polluted": true}});
    let object = value_to_js(&value);
    let fields = Fields::of(object.clone()).unwrap();
    assert_eq!(fields.keys(), ["__proto__"]);
    assert_eq!(JSON::stringify(&object).unwrap(), r#"{"__proto__":{"polluted":true}}"#);
    assert_eq!(value_from_js(&object), Ok(value));
}

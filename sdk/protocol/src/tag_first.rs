//! Decoding [`ServerFrame`] by reading `type` first.
//!
//! serde's derive for an internally tagged enum (`#[serde(tag = "type")]`)
//! buffers every frame into an intermediate tree before it knows which
//! variant to build. That costs time on every frame and, in the browser
//! package, tens of kilobytes of generic buffering code. The hub always
//! writes `type` as the first field, so this decoder reads it, then hands
//! the rest of the object straight to the variant's own decoder. An object
//! whose `type` comes later (a hand-written frame, another server) still
//! decodes: it is rebuilt with `type` first and decoded again, which is
//! slower but right.

use std::fmt;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::frame::{
    Ack, ErrorFrame, Message, Occupancy, Presence, RoomJoined, ServerFrame, StreamReset, Welcome,
};

/// The `type` values of [`ServerFrame`].
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Welcome,
    Message,
    Presence,
    Occupancy,
    Ack,
    Error,
    Refresh,
    Joined,
    Left,
    Reset,
    Pong,
}

/// The fields of [`ServerFrame::Refresh`].
#[derive(Deserialize)]
struct RefreshFields {
    expires_in_ms: u64,
}

/// The fields of [`ServerFrame::Left`].
#[derive(Deserialize)]
struct LeftFields {
    room: String,
}

/// The fields of [`ServerFrame::Pong`].
#[derive(Deserialize)]
struct PongFields {
    #[serde(default)]
    id: Option<String>,
}

/// The first key of a frame object: `type`, or another one (kept by name
/// for the slow path).
enum FirstKey {
    Type,
    Other(String),
}

impl<'de> Deserialize<'de> for FirstKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FirstKey, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = FirstKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<FirstKey, E> {
                Ok(if key == "type" { FirstKey::Type } else { FirstKey::Other(key.to_owned()) })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl ServerFrame {
    /// Decodes a frame from the hub; `Ok(None)` for a well-formed frame
    /// whose `type` this version does not know (a newer hub's), which a
    /// client skips: new frame types may appear in any protocol version.
    pub fn decode(text: &str) -> Result<Option<ServerFrame>, serde_json::Error> {
        match serde_json::from_str(text) {
            Ok(frame) => Ok(Some(frame)),
            Err(err) => {
                /// Just the `type` of a frame.
                #[derive(Deserialize)]
                struct Tag {
                    #[serde(rename = "type")]
                    kind: String,
                }
                match serde_json::from_str::<Tag>(text) {
                    Ok(tag) if !is_known(&tag.kind) => Ok(None),
                    _ => Err(err),
                }
            }
        }
    }
}

/// Whether `kind` is a `type` of [`ServerFrame`].
fn is_known(kind: &str) -> bool {
    let name = de::value::StrDeserializer::<de::value::Error>::new(kind);
    Kind::deserialize(name).is_ok()
}

impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ServerFrame, D::Error> {
        deserializer.deserialize_map(FrameVisitor { reordered: false })
    }
}

struct FrameVisitor {
    /// Set on the slow path's second pass, whose `type` must come first:
    /// a guard against looping if the map type ever stopped keeping order.
    reordered: bool,
}

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = ServerFrame;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a frame object with a `type` field")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServerFrame, A::Error> {
        match map.next_key::<FirstKey>()? {
            None => Err(de::Error::missing_field("type")),
            Some(FirstKey::Type) => {
                let kind: Kind = map.next_value()?;
                rest(kind, MapAccessDeserializer::new(map))
            }
            Some(FirstKey::Other(_)) if self.reordered => {
                Err(de::Error::custom("`type` must be the first field here"))
            }
            Some(FirstKey::Other(first)) => {
                let mut object = Map::new();
                object.insert(first, map.next_value::<Value>()?);
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    object.insert(key, value);
                }
                type_first_again(object)
            }
        }
    }
}

/// Decodes the fields after `type` as the variant `kind` names.
fn rest<'de, D: Deserializer<'de>>(kind: Kind, fields: D) -> Result<ServerFrame, D::Error> {
    Ok(match kind {
        Kind::Welcome => ServerFrame::Welcome(Welcome::deserialize(fields)?),
        Kind::Message => ServerFrame::Message(Message::deserialize(fields)?),
        Kind::Presence => ServerFrame::Presence(Presence::deserialize(fields)?),
        Kind::Occupancy => ServerFrame::Occupancy(Occupancy::deserialize(fields)?),
        Kind::Ack => ServerFrame::Ack(Ack::deserialize(fields)?),
        Kind::Error => ServerFrame::Error(ErrorFrame::deserialize(fields)?),
        Kind::Refresh => ServerFrame::Refresh {
            expires_in_ms: RefreshFields::deserialize(fields)?.expires_in_ms,
        },
        Kind::Joined => ServerFrame::Joined(RoomJoined::deserialize(fields)?),
        Kind::Left => ServerFrame::Left { room: LeftFields::deserialize(fields)?.room },
        Kind::Reset => ServerFrame::Reset(StreamReset::deserialize(fields)?),
        Kind::Pong => ServerFrame::Pong { id: PongFields::deserialize(fields)?.id },
    })
}

/// The slow path: moves `type` to the front and decodes the object again
/// as text. Going through text, rather than decoding from the `Value`,
/// reuses the one decoder the fast path already needs instead of a second
/// copy of every variant's decoder.
fn type_first_again<E: de::Error>(mut object: Map<String, Value>) -> Result<ServerFrame, E> {
    let kind = object.shift_remove("type").ok_or_else(|| E::missing_field("type"))?;
    let mut ordered = Map::with_capacity(object.len() + 1);
    ordered.insert("type".to_owned(), kind);
    ordered.extend(object);
    let text = serde_json::to_string(&ordered).map_err(E::custom)?;
    let mut decoder = serde_json::Deserializer::from_str(&text);
    let frame = decoder.deserialize_map(FrameVisitor { reordered: true }).map_err(E::custom)?;
    decoder.end().map_err(E::custom)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_anywhere_in_the_object_decodes_the_same() {
        let first = r#"{"type":"presence","room":"r","user":"u","action":"join"}"#;
        let last = r#"{"room":"r","user":"u","action":"join","type":"presence"}"#;
        let a: ServerFrame = serde_json::from_str(first).unwrap();
        let b: ServerFrame = serde_json::from_str(last).unwrap();
        assert_eq!(a, b);
        assert!(matches!(a, ServerFrame::Presence(_)));
    }

    #[test]
    fn inline_variants_decode() {
        let refresh: ServerFrame =
            serde_json::from_str(r#"{"type":"refresh","expires_in_ms":5}"#).unwrap();
        assert_eq!(refresh, ServerFrame::Refresh { expires_in_ms: 5 });
        let pong: ServerFrame = serde_json::from_str(r#"{"id":"7","type":"pong"}"#).unwrap();
        assert_eq!(pong, ServerFrame::Pong { id: Some("7".into()) });
        let bare: ServerFrame = serde_json::from_str(r#"{"type":"pong"}"#).unwrap();
        assert_eq!(bare, ServerFrame::Pong { id: None });
        let left: ServerFrame = serde_json::from_str(r#"{"room":"r","type":"left"}"#).unwrap();
        assert_eq!(left, ServerFrame::Left { room: "r".into() });
    }

    #[test]
    fn a_server_side_join_round_trips() {
        let joined = ServerFrame::Joined(crate::RoomJoined {
            room: "r".into(),
            members: Some(vec!["ann".into()]),
            member_count: Some(1),
            cursor: None,
            large: None,
            epoch: "e".into(),
            offset: 4,
            info: None,
        });
        let text = serde_json::to_string(&joined).unwrap();
        assert!(text.starts_with(r#"{"type":"joined","room":"r""#), "{text}");
        assert_eq!(serde_json::from_str::<ServerFrame>(&text).unwrap(), joined);
    }

    #[test]
    fn frames_of_a_newer_hub_are_skipped_and_bad_ones_still_fail() {
        let newer = r#"{"type":"telepathy","room":"r","level":9}"#;
        assert_eq!(ServerFrame::decode(newer).unwrap(), None);
        assert!(matches!(
            ServerFrame::decode(r#"{"type":"pong","id":"1"}"#),
            Ok(Some(ServerFrame::Pong { .. }))
        ));
        // A known type with wrong fields is an error, not an unknown type.
        assert!(ServerFrame::decode(r#"{"type":"presence","room":"r"}"#).is_err());
        assert!(ServerFrame::decode(r#"{"room":"r"}"#).is_err());
        assert!(ServerFrame::decode("[1]").is_err());
    }

    #[test]
    fn bad_frames_are_errors_not_guesses() {
        for text in [
            r#"{}"#,
            r#"{"room":"r"}"#,
            r#"{"type":"nonsense"}"#,
            r#"{"type":7}"#,
            r#"{"type":"presence","room":"r"}"#,
            r#"{"room":"r","type":"refresh"}"#,
            r#"[]"#,
            r#""welcome""#,
        ] {
            assert!(serde_json::from_str::<ServerFrame>(text).is_err(), "{text} decoded");
        }
    }
}

//! The hub on its own: presence per user, fan-out to members only, pages
//! of members, large rooms, allocations per fan-out.

use super::*;
use crate::hub::outbound::{self, OutboundQueue};
use tungstenite::Utf8Bytes;

fn connect(hub: &Hub, user: &str) -> (u64, OutboundQueue) {
    let key = hub.next_key();
    let (outbound, queue) = outbound::channel(key, user.into(), 16, 1 << 20);
    hub.register(Arc::new(outbound), connections::ConnectionInfo::test());
    (key, queue)
}

fn room_delivery(room: &str, text: &str) -> Delivery {
    Delivery::new(Target::Room(room.into()), Utf8Bytes::from(text), DeliveryKind::Message)
}

#[test]
fn presence_is_per_user_not_per_connection() {
    let hub = Hub::new();
    let (tab1, _q1) = connect(&hub, "alice");
    let (tab2, _q2) = connect(&hub, "alice");
    assert!(hub.join(tab1, "general", true).unwrap().announce);
    let second = hub.join(tab2, "general", true).unwrap();
    assert!(second.newly && !second.announce, "a second tab announces nothing");
    assert_eq!(second.members.members, vec!["alice".to_owned()]);
    assert!(!hub.leave(tab1, "general").announce, "alice still has a tab in the room");
    assert!(hub.leave(tab2, "general").announce);
    assert_eq!(hub.room_count(), 0, "an empty room disappears");
}

#[test]
fn rooms_deliver_to_members_only_and_count_messages() {
    let hub = Hub::new();
    let (a, mut qa) = connect(&hub, "alice");
    let (_b, mut qb) = connect(&hub, "bob");
    hub.join(a, "general", true).unwrap();
    assert_eq!(hub.deliver(room_delivery("general", "hi")), 1);
    assert_eq!(qa.try_recv().unwrap().frame, "hi");
    assert!(qb.try_recv().is_none());
    assert_eq!(hub.room("general").unwrap().messages, 1);
    assert_eq!(hub.deliver(room_delivery("nowhere", "hi")), 0);
}

#[test]
fn a_join_lists_at_most_the_cap_and_counts_the_rest() {
    let hub = Hub::with_policy(PresencePolicy { ack_members: 3, large_room: 1_000 });
    let mut queues = Vec::new();
    let mut last = None;
    for n in 0..10 {
        let (key, queue) = connect(&hub, &format!("user-{n}"));
        queues.push(queue);
        last = hub.join(key, "big", true);
    }
    let joined = last.unwrap();
    assert_eq!(joined.members.members, ["user-0", "user-1", "user-2"]);
    assert_eq!((joined.members.count, joined.members.cursor.as_deref()), (10, Some("user-2")));
    let rest = hub.members("big", Some("user-2"), 100).unwrap();
    assert_eq!(rest.members.len(), 7);
    assert_eq!(rest.cursor, None);
    assert!(hub.members("nowhere", None, 100).is_none());
    let detail = hub.room("big").unwrap();
    assert_eq!((detail.members.len(), detail.member_count), (3, 10));
}

/// Allocations made by one fan-out to a room of `members`, once each
/// member's queue has held a frame before (a queue allocates its first
/// slots on its first frame and keeps a few once drained).
fn fan_out_allocations(members: usize) -> u64 {
    let hub = Hub::with_policy(PresencePolicy { ack_members: 10, large_room: 5 });
    let mut queues = Vec::new();
    for n in 0..members {
        let (key, queue) = connect(&hub, &format!("user-{n}"));
        hub.join(key, "big", true).unwrap();
        queues.push(queue);
    }
    let delivery = Arc::new(room_delivery("big", "hello"));
    assert_eq!(hub.deliver(delivery.clone()), members);
    for queue in &mut queues {
        while queue.try_recv().is_some() {}
    }
    let counted = allocation_counter::measure(|| {
        assert_eq!(hub.deliver(delivery.clone()), members);
    });
    counted.count_total
}

#[test]
fn a_fan_out_allocates_nothing_per_recipient() {
    // The delivery is made once and shared; each recipient gets a
    // reference count and a slot in a queue that already has room.
    assert_eq!(fan_out_allocations(10), 0);
    assert_eq!(fan_out_allocations(2_000), 0);
}

/// Every text frame waiting in `queue`.
fn frames(queue: &mut OutboundQueue) -> Vec<String> {
    std::iter::from_fn(|| queue.try_recv()).map(|d| d.frame.to_string()).collect()
}

#[test]
fn a_large_room_sends_one_count_per_tick_instead_of_names() {
    let hub = Hub::with_policy(PresencePolicy { ack_members: 100, large_room: 2 });
    let (a, mut qa) = connect(&hub, "alice");
    let (b, _qb) = connect(&hub, "bob");
    assert!(hub.join(a, "hall", true).unwrap().announce);
    assert!(hub.join(b, "hall", true).unwrap().announce);
    let mut late = Vec::new();
    for user in ["carol", "dave", "erin"] {
        let (key, queue) = connect(&hub, user);
        let joined = hub.join(key, "hall", true).unwrap();
        assert!(!joined.announce && joined.large, "{user}: counted, not announced");
        late.push((key, queue));
    }
    assert_eq!(hub.send_occupancy(), 1, "three joins, one count");
    let expected = r#"{"type":"occupancy","room":"hall","count":5}"#;
    assert_eq!(frames(&mut qa), [expected]);
    assert_eq!(hub.send_occupancy(), 0, "nothing changed since");
    assert!(!hub.leave(late[0].0, "hall").announce, "a leave is counted too");
    hub.unregister(late[1].0);
    assert_eq!(hub.send_occupancy(), 1);
    assert_eq!(frames(&mut qa), [r#"{"type":"occupancy","room":"hall","count":3}"#]);
    assert!(hub.leave(b, "hall").was_member);
    assert!(hub.join(b, "hall", true).unwrap().large, "large until it empties");
}

#[test]
fn occupancy_skips_members_without_the_presence_permission_and_emptied_rooms() {
    let hub = Hub::with_policy(PresencePolicy { ack_members: 100, large_room: 1 });
    let (a, mut qa) = connect(&hub, "alice");
    let (b, mut qb) = connect(&hub, "bob");
    hub.join(a, "hall", false).unwrap();
    hub.join(b, "hall", true).unwrap();
    assert_eq!(hub.send_occupancy(), 1);
    assert!(frames(&mut qa).is_empty(), "alice may not see presence");
    assert_eq!(frames(&mut qb).len(), 1);
    hub.join(a, "gone", true).unwrap();
    hub.join(b, "gone", true).unwrap();
    hub.unregister(a);
    hub.unregister(b);
    assert_eq!(hub.send_occupancy(), 0, "an emptied room has nobody to tell");
}

#[test]
fn unregister_reports_rooms_the_user_left() {
    let hub = Hub::new();
    let (a, _qa) = connect(&hub, "alice");
    hub.join(a, "x", true).unwrap();
    hub.join(a, "y", true).unwrap();
    let departure = hub.unregister(a);
    assert!(departure.last_of_user);
    let mut left: Vec<String> = departure
        .rooms
        .into_iter()
        .filter(|(_, left)| left.announce && left.emptied)
        .map(|(r, _)| r.to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["x", "y"]);
    assert_eq!((hub.connection_count(), hub.user_count(), hub.room_count()), (0, 0, 0));
}

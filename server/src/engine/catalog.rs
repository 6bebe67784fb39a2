//! [`Catalog`]: the managed rooms, which exist whether or not anyone is in
//! them, with what the application says about each ([`RoomInfo`]).
//!
//! A room is managed when it is named in `rooms.default_rooms` (it exists
//! from the start and cannot be deleted) or created through `POST
//! /api/rooms` or [`AppState::create_room`](crate::AppState::create_room).
//! Every other room is ad hoc: it exists while it has members.
//!
//! The rules (defaults, `rooms.max_rooms`, what may be deleted) are here,
//! once; where the created rooms are kept is the engine's [`CatalogStore`]:
//! a map in memory on one node, one Redis hash that every node reads in a
//! cluster, so a room created through any node is managed on all.
//!
//! The catalog is read on every join (to put the room's info in the ack):
//! a map lookup on one node, one `HGET` in a cluster, sent while the join
//! itself goes on, so it adds no round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_protocol::RoomInfo;

use super::EngineFuture;
use crate::config::RoomsConfig;
use crate::hub::{ManagedFields, RoomDetail};
use crate::wire::now_ms;

/// A managed room.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedRoom {
    /// The room's name (its id in every frame).
    pub id: String,
    /// What the application says about it.
    pub info: RoomInfo,
    /// When it was created, in Unix milliseconds (for a default room: when
    /// this node started).
    pub created_at: u64,
    /// Whether it comes from `rooms.default_rooms` (and cannot be deleted).
    pub default: bool,
}

/// Why a managed room could not be created, read, changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The room's name breaks the protocol's naming rules.
    #[error("invalid `room`: {0}")]
    InvalidName(switchboard_protocol::NameError),
    /// A managed room of that name exists already.
    #[error("the room `{0}` exists already")]
    Exists(String),
    /// No managed room of that name.
    #[error("no managed room `{0}`")]
    NotFound(String),
    /// The room is one of `rooms.default_rooms`.
    #[error("`{0}` is one of rooms.default_rooms and cannot be deleted")]
    Default(String),
    /// `rooms.max_rooms` rooms exist already.
    #[error("at most {0} rooms (rooms.max_rooms)")]
    Full(usize),
    /// The engine's backend failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<super::EngineError> for RoomError {
    fn from(err: super::EngineError) -> Self {
        RoomError::Unavailable(err.to_string())
    }
}

/// A created room as a store keeps it: what the application said and
/// when, as JSON under the room's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(default)]
    pub(crate) info: RoomInfo,
    pub(crate) created_at: u64,
}

impl Record {
    /// The record as JSON (a record of strings and numbers always serializes).
    pub(crate) fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record read back; `None` (logged) for one this hub cannot read.
    pub(crate) fn read(id: &str, json: &str) -> Option<Record> {
        match serde_json::from_str(json) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(room = id, %err, "unreadable managed room, ignored");
                None
            }
        }
    }

    fn room(self, id: String) -> ManagedRoom {
        ManagedRoom { id, info: self.info, created_at: self.created_at, default: false }
    }
}

impl From<ManagedRoom> for ManagedFields {
    fn from(room: ManagedRoom) -> Self {
        ManagedFields {
            name: room.info.name,
            description: room.info.description,
            data: room.info.data,
            created_at: Some(room.created_at),
            default: Some(room.default),
            last_activity: None,
        }
    }
}

impl RoomDetail {
    /// A managed room nobody is in.
    pub(crate) fn empty(room: ManagedRoom) -> RoomDetail {
        RoomDetail {
            id: room.id.clone(),
            members: Vec::new(),
            member_count: 0,
            cursor: None,
            large: false,
            connections: 0,
            messages: 0,
            managed: room.into(),
        }
    }
}

/// Where an engine keeps the created rooms (not the defaults, which every
/// node knows from its configuration).
pub(crate) trait CatalogStore: Send + Sync + 'static {
    /// The record of `id`, if created.
    fn get<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Option<Record>>;
    /// Every record, in any order.
    fn all(&self) -> EngineFuture<'_, Vec<(String, Record)>>;
    /// How many there are.
    fn len(&self) -> EngineFuture<'_, usize>;
    /// Stores `record` under `id` unless one exists; false when it did.
    fn insert<'a>(&'a self, id: &'a str, record: Record) -> EngineFuture<'a, bool>;
    /// Stores `record` under `id`, replacing what was there.
    fn replace<'a>(&'a self, id: &'a str, record: Record) -> EngineFuture<'a, ()>;
    /// Removes `id`; false when it was not there.
    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, bool>;
}

/// The managed rooms of a hub.
pub(crate) struct Catalog {
    /// `rooms.default_rooms`: the same on every node, kept by each.
    defaults: BTreeMap<String, ManagedRoom>,
    store: Box<dyn CatalogStore>,
    /// `rooms.max_rooms` (0: no limit).
    max: usize,
}

impl Catalog {
    /// The catalog of a node: its default rooms, and the created ones in `store`.
    pub(crate) fn new(config: &RoomsConfig, store: Box<dyn CatalogStore>) -> Catalog {
        let started = now_ms();
        let defaults = config
            .default_rooms
            .iter()
            .map(|id| {
                let room = ManagedRoom {
                    id: id.clone(),
                    info: RoomInfo::default(),
                    created_at: started,
                    default: true,
                };
                (id.clone(), room)
            })
            .collect();
        Catalog { defaults, store, max: config.max_rooms }
    }

    /// The managed room `id`, if it is one.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<ManagedRoom>, RoomError> {
        if let Some(room) = self.defaults.get(id) {
            return Ok(Some(room.clone()));
        }
        Ok(self.store.get(id).await?.map(|record| record.room(id.to_owned())))
    }

    /// Every managed room, sorted by name.
    pub(crate) async fn all(&self) -> Result<Vec<ManagedRoom>, RoomError> {
        let mut rooms = self.defaults.clone();
        for (id, record) in self.store.all().await? {
            if !rooms.contains_key(&id) {
                rooms.insert(id.clone(), record.room(id));
            }
        }
        Ok(rooms.into_values().collect())
    }

    /// Creates a managed room; refused when it exists, or when
    /// `rooms.max_rooms` (not 0) managed rooms exist already.
    pub(crate) async fn create(&self, id: &str, info: RoomInfo) -> Result<ManagedRoom, RoomError> {
        if self.defaults.contains_key(id) {
            return Err(RoomError::Exists(id.to_owned()));
        }
        if self.max > 0 && self.store.len().await? + self.defaults.len() >= self.max {
            return Err(RoomError::Full(self.max));
        }
        let record = Record { info, created_at: now_ms() };
        if !self.store.insert(id, record.clone()).await? {
            return Err(RoomError::Exists(id.to_owned()));
        }
        Ok(record.room(id.to_owned()))
    }

    /// Replaces a managed room's info with what `change` makes of it.
    /// Read, change, write: concurrent updates of one room through two
    /// nodes keep the last one, as two PATCHes through one node do.
    pub(crate) async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut RoomInfo),
    ) -> Result<ManagedRoom, RoomError> {
        if self.defaults.contains_key(id) {
            return Err(RoomError::Default(id.to_owned()));
        }
        let mut record =
            self.store.get(id).await?.ok_or_else(|| RoomError::NotFound(id.to_owned()))?;
        change(&mut record.info);
        self.store.replace(id, record.clone()).await?;
        Ok(record.room(id.to_owned()))
    }

    /// Removes a managed room from the catalog.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), RoomError> {
        if self.defaults.contains_key(id) {
            return Err(RoomError::Default(id.to_owned()));
        }
        if self.store.remove(id).await? { Ok(()) } else { Err(RoomError::NotFound(id.to_owned())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::catalog::MemoryCatalog;

    fn config(defaults: &[&str], max: usize) -> RoomsConfig {
        RoomsConfig {
            default_rooms: defaults.iter().map(|d| d.to_string()).collect(),
            max_rooms: max,
            ..RoomsConfig::default()
        }
    }

    #[tokio::test]
    async fn managed_rooms_are_created_once_updated_and_deleted_but_defaults_stay() {
        let catalog = Catalog::new(&config(&["general"], 2), Box::new(MemoryCatalog::default()));
        let info = RoomInfo { name: Some("Team".into()), ..RoomInfo::default() };
        let team = catalog.create("team", info.clone()).await.unwrap();
        assert_eq!((team.info, team.default), (info, false));
        assert_eq!(
            catalog.create("team", RoomInfo::default()).await,
            Err(RoomError::Full(2)),
            "full before it is a duplicate"
        );
        let catalog = Catalog { max: 0, ..catalog };
        assert_eq!(
            catalog.create("team", RoomInfo::default()).await,
            Err(RoomError::Exists("team".into()))
        );
        assert_eq!(
            catalog.create("general", RoomInfo::default()).await,
            Err(RoomError::Exists("general".into()))
        );
        let updated =
            catalog.update("team", |info| info.description = Some("d".into())).await.unwrap();
        assert_eq!(
            (updated.info.name.as_deref(), updated.info.description.as_deref()),
            (Some("Team"), Some("d"))
        );
        let ids: Vec<_> =
            catalog.all().await.unwrap().into_iter().map(|r| (r.id, r.default)).collect();
        assert_eq!(ids, [("general".to_owned(), true), ("team".to_owned(), false)]);
        assert_eq!(catalog.delete("general").await, Err(RoomError::Default("general".into())));
        catalog.delete("team").await.unwrap();
        assert_eq!(catalog.delete("team").await, Err(RoomError::NotFound("team".into())));
        assert_eq!(catalog.get("team").await.unwrap(), None);
        assert!(catalog.get("general").await.unwrap().is_some_and(|r| r.default));
    }
}

//! [`Catalog`]: the managed rooms, which exist whether or not anyone is in
//! them, with what the application says about each ([`RoomInfo`]).
//!
//! A room is managed when it is named in `rooms.default_rooms` (it exists
//! from the start and cannot be deleted) or created through `POST
//! /api/rooms` or [`AppState::create_room`](crate::AppState::create_room).
//! Every other room is ad hoc: it exists while it has members. On one node
//! the catalog is a map in memory; in a cluster it is one Redis hash that
//! every node reads, so a room created through any node is managed on all.
//!
//! The catalog is read on every join (to put the room's info in the ack):
//! a map lookup under a read lock on one node, one `HGET` in a cluster,
//! sent while the join itself goes on, so it adds no round trip.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use switchboard_protocol::RoomInfo;

use crate::cluster::{Cluster, ClusterError};
use crate::config::RoomsConfig;
use crate::transport::wire::now_ms;

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

/// How a managed room is kept in Redis: JSON under its id.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    info: RoomInfo,
    created_at: u64,
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
    /// Redis failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ClusterError> for RoomError {
    fn from(err: ClusterError) -> Self {
        RoomError::Unavailable(err.to_string())
    }
}

enum Backing {
    Local(RwLock<BTreeMap<String, ManagedRoom>>),
    Cluster(Arc<Cluster>),
}

/// The managed rooms of a hub.
pub(crate) struct Catalog {
    /// `rooms.default_rooms`: the same on every node, kept by each.
    defaults: BTreeMap<String, ManagedRoom>,
    backing: Backing,
}

impl Catalog {
    /// The catalog of a node: its default rooms, and the created ones in
    /// memory or, with `cluster`, in Redis.
    pub(crate) fn new(config: &RoomsConfig, cluster: Option<Arc<Cluster>>) -> Catalog {
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
        let backing = match cluster {
            Some(cluster) => Backing::Cluster(cluster),
            None => Backing::Local(RwLock::default()),
        };
        Catalog { defaults, backing }
    }

    fn local(
        map: &RwLock<BTreeMap<String, ManagedRoom>>,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ManagedRoom>> {
        map.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The managed room `id`, if it is one.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<ManagedRoom>, RoomError> {
        if let Some(room) = self.defaults.get(id) {
            return Ok(Some(room.clone()));
        }
        match &self.backing {
            Backing::Local(map) => Ok(Catalog::local(map).get(id).cloned()),
            Backing::Cluster(cluster) => {
                let mut connection = cluster.connection();
                let key = cluster.keys.catalog();
                let record: Option<String> = cluster
                    .call(
                        "catalog",
                        redis::cmd("HGET").arg(key).arg(id).query_async(&mut connection),
                    )
                    .await?;
                Ok(record.and_then(|json| read_record(id, &json)))
            }
        }
    }

    /// Every managed room, sorted by name.
    pub(crate) async fn all(&self) -> Result<Vec<ManagedRoom>, RoomError> {
        let mut rooms = self.defaults.clone();
        match &self.backing {
            Backing::Local(map) => {
                rooms.extend(
                    Catalog::local(map).iter().map(|(id, room)| (id.clone(), room.clone())),
                );
            }
            Backing::Cluster(cluster) => {
                let mut connection = cluster.connection();
                let key = cluster.keys.catalog();
                let records: Vec<(String, String)> = cluster
                    .call("catalog", redis::cmd("HGETALL").arg(key).query_async(&mut connection))
                    .await?;
                for (id, json) in records {
                    if let Some(room) = read_record(&id, &json) {
                        rooms.entry(id).or_insert(room);
                    }
                }
            }
        }
        Ok(rooms.into_values().collect())
    }

    /// How many managed rooms there are.
    pub(crate) async fn len(&self) -> Result<usize, RoomError> {
        let created = match &self.backing {
            Backing::Local(map) => Catalog::local(map).len(),
            Backing::Cluster(cluster) => {
                let mut connection = cluster.connection();
                let key = cluster.keys.catalog();
                cluster
                    .call(
                        "catalog",
                        redis::cmd("HLEN").arg(key).query_async::<usize>(&mut connection),
                    )
                    .await?
            }
        };
        Ok(created + self.defaults.len())
    }

    /// Creates a managed room; refused when it exists, or when `max` (not
    /// 0) managed rooms exist already.
    pub(crate) async fn create(
        &self,
        id: &str,
        info: RoomInfo,
        max: usize,
    ) -> Result<ManagedRoom, RoomError> {
        if self.defaults.contains_key(id) {
            return Err(RoomError::Exists(id.to_owned()));
        }
        if max > 0 && self.len().await? >= max {
            return Err(RoomError::Full(max));
        }
        let room = ManagedRoom { id: id.to_owned(), info, created_at: now_ms(), default: false };
        match &self.backing {
            Backing::Local(map) => {
                let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
                if map.contains_key(id) {
                    return Err(RoomError::Exists(id.to_owned()));
                }
                map.insert(id.to_owned(), room.clone());
            }
            Backing::Cluster(cluster) => {
                let mut connection = cluster.connection();
                let key = cluster.keys.catalog();
                let json = record_json(&room);
                let created: bool = cluster
                    .call(
                        "catalog",
                        redis::cmd("HSETNX")
                            .arg(key)
                            .arg(id)
                            .arg(json)
                            .query_async(&mut connection),
                    )
                    .await?;
                if !created {
                    return Err(RoomError::Exists(id.to_owned()));
                }
            }
        }
        Ok(room)
    }

    /// Replaces a managed room's info with what `change` makes of it.
    pub(crate) async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut RoomInfo),
    ) -> Result<ManagedRoom, RoomError> {
        if self.defaults.contains_key(id) {
            return Err(RoomError::Default(id.to_owned()));
        }
        match &self.backing {
            Backing::Local(map) => {
                let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
                let room = map.get_mut(id).ok_or_else(|| RoomError::NotFound(id.to_owned()))?;
                change(&mut room.info);
                Ok(room.clone())
            }
            Backing::Cluster(cluster) => {
                // Read, change, write: concurrent updates of one room through
                // two nodes keep the last one, as two PATCHes through one do.
                let mut room =
                    self.get(id).await?.ok_or_else(|| RoomError::NotFound(id.to_owned()))?;
                change(&mut room.info);
                let mut connection = cluster.connection();
                let key = cluster.keys.catalog();
                cluster
                    .call::<()>(
                        "catalog",
                        redis::cmd("HSET")
                            .arg(key)
                            .arg(id)
                            .arg(record_json(&room))
                            .query_async(&mut connection),
                    )
                    .await?;
                Ok(room)
            }
        }
    }

    /// Removes a managed room from the catalog.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), RoomError> {
        if self.defaults.contains_key(id) {
            return Err(RoomError::Default(id.to_owned()));
        }
        let removed = match &self.backing {
            Backing::Local(map) => {
                map.write().unwrap_or_else(PoisonError::into_inner).remove(id).is_some()
            }
            Backing::Cluster(cluster) => {
                let mut connection = cluster.connection();
                let key = cluster.keys.catalog();
                cluster
                    .call::<u64>(
                        "catalog",
                        redis::cmd("HDEL").arg(key).arg(id).query_async(&mut connection),
                    )
                    .await?
                    > 0
            }
        };
        if removed { Ok(()) } else { Err(RoomError::NotFound(id.to_owned())) }
    }
}

fn record_json(room: &ManagedRoom) -> String {
    let record = Record { info: room.info.clone(), created_at: room.created_at };
    serde_json::to_string(&record).unwrap_or_default()
}

/// A room read back from Redis; `None` (logged) for a record this hub
/// cannot read.
fn read_record(id: &str, json: &str) -> Option<ManagedRoom> {
    match serde_json::from_str::<Record>(json) {
        Ok(record) => Some(ManagedRoom {
            id: id.to_owned(),
            info: record.info,
            created_at: record.created_at,
            default: false,
        }),
        Err(err) => {
            tracing::warn!(room = id, %err, "unreadable managed room in redis, ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(defaults: &[&str]) -> RoomsConfig {
        RoomsConfig {
            default_rooms: defaults.iter().map(|d| d.to_string()).collect(),
            ..RoomsConfig::default()
        }
    }

    #[tokio::test]
    async fn managed_rooms_are_created_once_updated_and_deleted_but_defaults_stay() {
        let catalog = Catalog::new(&config(&["general"]), None);
        let info = RoomInfo { name: Some("Team".into()), ..RoomInfo::default() };
        let team = catalog.create("team", info.clone(), 0).await.unwrap();
        assert_eq!((team.info, team.default), (info, false));
        assert_eq!(
            catalog.create("team", RoomInfo::default(), 0).await,
            Err(RoomError::Exists("team".into()))
        );
        assert_eq!(
            catalog.create("general", RoomInfo::default(), 0).await,
            Err(RoomError::Exists("general".into()))
        );
        assert_eq!(catalog.create("third", RoomInfo::default(), 2).await, Err(RoomError::Full(2)));
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

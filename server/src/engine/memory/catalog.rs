//! [`MemoryCatalog`]: a single node's created rooms, in a map.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use crate::engine::EngineFuture;
use crate::engine::catalog::{CatalogStore, Record};

/// The created rooms of a single node.
#[derive(Debug, Default)]
pub(crate) struct MemoryCatalog {
    rooms: RwLock<BTreeMap<String, Record>>,
}

impl MemoryCatalog {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Record>> {
        self.rooms.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Record>> {
        self.rooms.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> EngineFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl CatalogStore for MemoryCatalog {
    fn get<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Option<Record>> {
        ready(self.read().get(id).cloned())
    }

    fn all(&self) -> EngineFuture<'_, Vec<(String, Record)>> {
        ready(self.read().iter().map(|(id, record)| (id.clone(), record.clone())).collect())
    }

    fn len(&self) -> EngineFuture<'_, usize> {
        ready(self.read().len())
    }

    fn insert<'a>(&'a self, id: &'a str, record: Record) -> EngineFuture<'a, bool> {
        let mut rooms = self.write();
        let fresh = !rooms.contains_key(id);
        if fresh {
            rooms.insert(id.to_owned(), record);
        }
        ready(fresh)
    }

    fn replace<'a>(&'a self, id: &'a str, record: Record) -> EngineFuture<'a, ()> {
        self.write().insert(id.to_owned(), record);
        ready(())
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, bool> {
        ready(self.write().remove(id).is_some())
    }
}

//! [`RedisCatalog`]: the created rooms of a cluster, one Redis hash
//! (`<prefix>:catalog`, room → JSON record) that every node reads.

use std::sync::Arc;

use super::Redis;
use crate::engine::EngineFuture;
use crate::engine::catalog::{CatalogStore, Record};

/// The created rooms of a cluster.
pub(crate) struct RedisCatalog {
    redis: Arc<Redis>,
}

impl RedisCatalog {
    pub(crate) fn new(redis: Arc<Redis>) -> RedisCatalog {
        RedisCatalog { redis }
    }

    async fn query<T: ::redis::FromRedisValue>(
        &self,
        command: &str,
        args: &[&str],
    ) -> Result<T, crate::engine::EngineError> {
        let catalog = self.redis.keys.catalog();
        let mut cmd = ::redis::cmd(command);
        cmd.arg(&catalog).arg(args);
        let mut batch = super::shards::Batch::new();
        batch.keyed(&self.redis, &catalog, cmd);
        let (answer,): (T,) = batch.query(&self.redis, "catalog").await?;
        Ok(answer)
    }
}

impl CatalogStore for RedisCatalog {
    fn get<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Option<Record>> {
        Box::pin(async move {
            let json: Option<String> = self.query("HGET", &[id]).await?;
            Ok(json.and_then(|json| Record::read(id, &json)))
        })
    }

    fn all(&self) -> EngineFuture<'_, Vec<(String, Record)>> {
        Box::pin(async move {
            let records: Vec<(String, String)> = self.query("HGETALL", &[]).await?;
            Ok(records
                .into_iter()
                .filter_map(|(id, json)| Record::read(&id, &json).map(|record| (id, record)))
                .collect())
        })
    }

    fn len(&self) -> EngineFuture<'_, usize> {
        Box::pin(self.query("HLEN", &[]))
    }

    fn insert<'a>(&'a self, id: &'a str, record: Record) -> EngineFuture<'a, bool> {
        Box::pin(async move { self.query("HSETNX", &[id, &record.json()]).await })
    }

    fn replace<'a>(&'a self, id: &'a str, record: Record) -> EngineFuture<'a, ()> {
        Box::pin(async move { self.query("HSET", &[id, &record.json()]).await })
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, bool> {
        Box::pin(async move { Ok(self.query::<u64>("HDEL", &[id]).await? > 0) })
    }
}

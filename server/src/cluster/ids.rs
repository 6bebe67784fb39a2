//! Request ids across nodes: a `publish` or `send` retried on another node
//! (after a lost ack and a reconnect elsewhere) is answered again instead
//! of carried out twice. One key per id, claimed with `SET NX` and holding
//! the answer once there is one; it expires after `delivery.id_window_secs`.
//! (The per-user cap `delivery.max_ids_per_user` applies to a single node;
//! in Redis the window alone bounds what is kept.)

use std::time::Duration;

use tungstenite::Utf8Bytes;

use super::{Cluster, ClusterError};
use crate::hub::ids::Seen;

impl Cluster {
    /// Looks an id up, and claims it when new.
    pub(crate) async fn begin_id(
        &self,
        user: &str,
        id: &str,
        window: Duration,
    ) -> Result<Seen, ClusterError> {
        let key = self.keys.request_id(user, id);
        let mut connection = self.connection();
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&key).arg("").arg("NX").arg("PX").arg(window.as_millis() as u64);
        pipe.cmd("GET").arg(&key);
        let (claimed, answer): (Option<String>, Option<String>) =
            self.call("request id", pipe.query_async(&mut connection)).await?;
        Ok(match (claimed, answer) {
            (Some(_), _) => Seen::New,
            (None, Some(answer)) if !answer.is_empty() => Seen::Done(Utf8Bytes::from(answer)),
            (None, _) => Seen::InFlight,
        })
    }

    /// Records the answer of a claimed id, keeping its expiry.
    pub(crate) async fn finish_id(
        &self,
        user: &str,
        id: &str,
        answer: &str,
    ) -> Result<(), ClusterError> {
        let key = self.keys.request_id(user, id);
        let mut connection = self.connection();
        let set = redis::cmd("SET").arg(key).arg(answer).arg("XX").arg("KEEPTTL").to_owned();
        let _: Option<String> = self.call("request id", set.query_async(&mut connection)).await?;
        Ok(())
    }

    /// Releases a claimed id (its request failed), so a retry is carried out.
    pub(crate) async fn forget_id(&self, user: &str, id: &str) -> Result<(), ClusterError> {
        let key = self.keys.request_id(user, id);
        let mut connection = self.connection();
        let _: i64 = self
            .call("request id", redis::cmd("DEL").arg(key).query_async(&mut connection))
            .await?;
        Ok(())
    }
}

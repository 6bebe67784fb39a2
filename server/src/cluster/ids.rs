//! Request ids across nodes: a `publish` or `send` retried on another node
//! (after a lost ack and a reconnect elsewhere) is answered again instead
//! of carried out twice. One key per id, claimed with `SET NX` (an empty
//! value while in flight), then `o:<epoch>:<offset>` once the publish
//! script appended the message (in the same step), then the answer; it
//! expires after `delivery.id_window_secs`. A request whose Redis call
//! failed without an answer may still have been appended: its retry goes
//! to the publish script, which finds the `o:` record and returns the first
//! offset instead of appending again.
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
            // Appended, but its answer was never recorded: carry it out
            // again, and the publish script returns the first offset.
            (None, Some(answer)) if answer.starts_with("o:") => Seen::New,
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

    /// Releases a claimed id (its request failed), so a retry is carried
    /// out; kept when the publish script recorded it as appended after all.
    pub(crate) async fn forget_id(&self, user: &str, id: &str) -> Result<(), ClusterError> {
        let mut invocation = super::scripts::FORGET_ID.prepare_invoke();
        invocation.key(self.keys.request_id(user, id));
        let mut connection = self.connection();
        let _: i64 = self.call("request id", invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }
}

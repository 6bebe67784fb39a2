//! [`RedisBroker`]: deliveries outside any stream (presence, occupancy,
//! broadcasts to every connection) published on the cluster's channel, so
//! that every node's subscriber hands them to its hub, this node's included.
//! Stream messages do not pass here: the publish script puts them on the
//! same channel itself, in the same step that assigns their offset.

use std::sync::Arc;

use crate::broker::{Broker, BrokerError, BrokerFuture, Delivery, Target};
use crate::cluster::keys::ONLINE;
use crate::cluster::{Cluster, ClusterError};

/// A broker for a node of a cluster on Redis.
#[derive(Debug, Clone)]
pub struct RedisBroker {
    cluster: Arc<Cluster>,
}

impl RedisBroker {
    pub(crate) fn new(cluster: Arc<Cluster>) -> RedisBroker {
        RedisBroker { cluster }
    }
}

impl From<ClusterError> for BrokerError {
    fn from(err: ClusterError) -> Self {
        BrokerError::Unavailable(err.to_string())
    }
}

impl Broker for RedisBroker {
    /// Resolves with the connections the target has across the cluster
    /// (every connection for a broadcast to all, 0 for rooms).
    fn publish(&self, delivery: Delivery) -> BrokerFuture<'_> {
        Box::pin(async move {
            let cluster = &self.cluster;
            let online = cluster.keys.scope(ONLINE);
            let mut pipe = redis::pipe();
            let payload = crate::cluster::wire::encode(&delivery);
            pipe.cmd("PUBLISH").arg(cluster.keys.channel()).arg(payload).ignore();
            match &delivery.target {
                Target::All => pipe.cmd("GET").arg(format!("{online}:n")),
                Target::User(user) => pipe.cmd("HGET").arg(format!("{online}:u")).arg(&**user),
                // How many connections a room has is not needed by any caller.
                Target::Room(_) | Target::RoomExcept(_) => pipe.cmd("ECHO").arg(0),
            };
            let mut connection = cluster.connection();
            let (reached,): (Option<u64>,) =
                cluster.call("publish", pipe.query_async(&mut connection)).await?;
            Ok(reached.unwrap_or(0) as usize)
        })
    }
}

//! Asking every node at once. A survey goes out on the cluster's channel;
//! every live node (the node registry's heartbeats say which) answers on
//! the same channel, addressed to the asking node, which gathers the
//! answers until all are in or `redis.timeout_ms` has passed. A node that
//! does not answer in time is named in the result, never waited for
//! longer: an operator's listing must not hang on a dying node.
//!
//! `GET /api/connections` lists the cluster's connections this way: each
//! node answers with its own page after the cursor, and the asking node
//! merges them (see `state/connections_api.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::Redis;
use super::wire::{encode_answer, encode_survey};
use crate::Hub;
use crate::engine::EngineError;
use crate::engine::node::{ConnectionsQuery, NodePage, Surveyed, local_page};

/// The surveys this node is waiting on.
#[derive(Debug, Default)]
pub(crate) struct Surveys {
    pending: Mutex<HashMap<uuid::Uuid, Pending>>,
}

#[derive(Debug)]
struct Pending {
    /// Nodes yet to answer.
    waiting: HashSet<String>,
    pages: Vec<NodePage>,
    /// Fired once `waiting` is empty.
    done: Option<oneshot::Sender<()>>,
}

/// Removes a survey from the pending ones when dropped.
struct Open<'a> {
    surveys: &'a Surveys,
    id: uuid::Uuid,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.surveys.lock().remove(&self.id);
    }
}

impl Surveys {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, id: uuid::Uuid, waiting: HashSet<String>) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        self.lock().insert(id, Pending { waiting, pages: Vec::new(), done: Some(done) });
        finished
    }

    fn close(&self, id: &uuid::Uuid) -> Surveyed {
        let Some(pending) = self.lock().remove(id) else { return Surveyed::default() };
        let mut missing: Vec<String> = pending.waiting.into_iter().collect();
        missing.sort_unstable();
        Surveyed { pages: pending.pages, missing }
    }

    /// Records `node`'s answer to survey `id`. An answer to a survey that
    /// is over, or from a node not asked (or asked once already), is
    /// dropped.
    pub(crate) fn answer(&self, id: &uuid::Uuid, node: &str, page: NodePage) {
        let mut pending = self.lock();
        let Some(survey) = pending.get_mut(id) else { return };
        if !survey.waiting.remove(node) {
            return;
        }
        survey.pages.push(page);
        if survey.waiting.is_empty() {
            if let Some(done) = survey.done.take() {
                let _ = done.send(());
            }
        }
    }
}

/// Answers another node's survey `id`: from the subscriber, which must not
/// wait, so the page is built and sent from a task of its own.
pub(crate) fn answer(
    redis: &Arc<Redis>,
    hub: &Arc<Hub>,
    id: uuid::Uuid,
    from: String,
    query: String,
) {
    let (redis, hub) = (redis.clone(), hub.clone());
    tokio::spawn(async move {
        let Ok(query) = serde_json::from_str::<ConnectionsQuery>(&query) else {
            tracing::warn!(from, "unreadable survey on the redis channel");
            return;
        };
        let page = local_page(&hub, Some(&redis.node), &query);
        // A page of strings and numbers always serializes.
        let page = serde_json::to_string(&page).unwrap_or_default();
        let answer = encode_answer(&id, &from, &redis.node, &page);
        if let Err(err) = redis.publish("survey", answer).await {
            tracing::warn!(%err, "could not answer a survey");
        }
    });
}

/// Asks every other live node for a page of its connections; returns
/// their pages once all answered, or what arrived by `redis.timeout_ms`
/// with the silent nodes named.
pub(crate) async fn survey(
    redis: &Redis,
    query: &ConnectionsQuery,
) -> Result<Surveyed, EngineError> {
    let waiting: HashSet<String> = super::node::live_nodes(redis)
        .await?
        .into_iter()
        .filter(|node| *node != redis.node)
        .collect();
    if waiting.is_empty() {
        return Ok(Surveyed::default());
    }
    let id = uuid::Uuid::new_v4();
    let finished = redis.surveys.open(id, waiting);
    // Forgets the survey however this ends, a dropped request included.
    let _open = Open { surveys: &redis.surveys, id };
    // A query of strings and a number always serializes.
    let query = serde_json::to_string(query).unwrap_or_default();
    redis.publish("survey", encode_survey(&id, &redis.node, &query)).await?;
    let _ = tokio::time::timeout(redis.timeout, finished).await;
    Ok(redis.surveys.close(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(session: &str) -> NodePage {
        NodePage { connections: Vec::new(), cursor: Some(session.to_owned()) }
    }

    #[tokio::test]
    async fn a_survey_ends_when_every_asked_node_answered_once() {
        let surveys = Surveys::default();
        let id = uuid::Uuid::new_v4();
        let mut finished = surveys.open(id, ["a".to_owned(), "b".to_owned()].into());
        surveys.answer(&id, "a", page("1"));
        surveys.answer(&id, "a", page("again"));
        surveys.answer(&id, "stranger", page("x"));
        surveys.answer(&uuid::Uuid::new_v4(), "b", page("other survey"));
        assert!(finished.try_recv().is_err(), "b has not answered");
        surveys.answer(&id, "b", page("2"));
        assert!(finished.try_recv().is_ok());
        let surveyed = surveys.close(&id);
        assert_eq!(surveyed.pages, [page("1"), page("2")]);
        assert!(surveyed.missing.is_empty());
        surveys.answer(&id, "b", page("late"));
        assert!(surveys.lock().is_empty(), "nothing kept after the survey");
    }

    #[tokio::test]
    async fn a_survey_given_up_is_forgotten() {
        let surveys = Surveys::default();
        let id = uuid::Uuid::new_v4();
        let finished = surveys.open(id, ["a".to_owned()].into());
        drop(Open { surveys: &surveys, id });
        drop(finished);
        assert!(surveys.lock().is_empty());
        surveys.answer(&id, "a", page("late"));
        assert!(surveys.lock().is_empty());
    }

    #[tokio::test]
    async fn silent_nodes_are_named() {
        let surveys = Surveys::default();
        let id = uuid::Uuid::new_v4();
        let _finished = surveys.open(id, ["c".to_owned(), "a".to_owned(), "b".to_owned()].into());
        surveys.answer(&id, "b", page("1"));
        let surveyed = surveys.close(&id);
        assert_eq!(surveyed.missing, ["a", "c"]);
        assert_eq!(surveyed.pages.len(), 1);
    }
}

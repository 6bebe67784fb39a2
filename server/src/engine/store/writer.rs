//! [`Writer`]: a store's own thread, for stores whose calls block (the disk
//! store), so that no async worker ever waits on a file.
//!
//! The broker hands the writer a stream's step as a [`Job`]: the part that
//! reads and writes the store, which returns the part that must wait for
//! the commit (the fan-out, the answer to the caller). The writer runs the
//! jobs that queued up while it was busy one after the other in one
//! transaction (group commit: a burst of publishes or a reconnect storm
//! costs one commit per batch, not one per step), commits, then runs their
//! second parts in the same order.
//!
//! One thread runs every step, so a stream's steps happen in the order
//! they were handed over and never overlap: the writer is the streams'
//! owner for such a store, as the broker's per-stream locks are for a store
//! in memory. A job handed over runs whole even if its caller goes away
//! meanwhile (cancellation cannot split a publish from its fan-out).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

/// What runs after the batch's commit, told whether it committed.
pub(crate) type Then = Box<dyn FnOnce(bool) + Send>;

/// A step on the store's thread: its reads and writes, then (when it
/// returns one) what waits for the commit.
pub(crate) type Job = Box<dyn FnOnce() -> Option<Then> + Send>;

/// The most jobs one transaction takes: a bound on how long the first
/// caller of a batch waits for the others.
const MAX_BATCH: usize = 256;

/// A store that can put several steps in one transaction.
pub(crate) trait Batching: Send + Sync + 'static {
    /// Opens a transaction that this thread's calls to the store then use
    /// (`false` when none could be opened: each call then commits alone).
    fn begin(&self) -> bool;
    /// Commits what [`Batching::begin`] opened; whether it committed.
    fn commit(&self) -> bool;
}

/// Hands jobs to a store's thread.
#[derive(Clone)]
pub struct Writer {
    jobs: Sender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the thread of `store`; it ends once every [`Writer`] is gone
    /// and the jobs handed over are done.
    pub(crate) fn start(
        name: &str,
        store: Arc<dyn Batching>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = channel();
        let thread =
            std::thread::Builder::new().name(name.to_owned()).spawn(move || run(&*store, queue))?;
        Ok((Writer { jobs }, thread))
    }

    /// Hands `job` over; `false` when the thread has stopped.
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }
}

fn run(store: &dyn Batching, queue: Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut after = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let opened = store.begin();
        after.extend(batch.drain(..).filter_map(|job| job()));
        let committed = !opened || store.commit();
        // The fan-outs wake their connections together.
        let _wakes = crate::hub::wakes::WakeBatch::begin();
        for then in after.drain(..) {
            then(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records its transactions.
    #[derive(Default)]
    struct Log {
        commits: AtomicUsize,
        events: Mutex<Vec<String>>,
    }

    impl Batching for Log {
        fn begin(&self) -> bool {
            self.events.lock().unwrap().push("begin".into());
            true
        }
        fn commit(&self) -> bool {
            self.commits.fetch_add(1, Ordering::SeqCst);
            self.events.lock().unwrap().push("commit".into());
            true
        }
    }

    #[test]
    fn jobs_that_queue_up_share_one_commit_and_answer_after_it_in_order() {
        let log = Arc::new(Log::default());
        let (writer, thread) = Writer::start("test-writer", log.clone()).unwrap();
        // The first job holds the thread, its batch already taken, until
        // the others are queued.
        let (release, held) = channel::<()>();
        let (started, running) = channel::<()>();
        let events = |log: &Arc<Log>, what: String| log.events.lock().unwrap().push(what);
        let first = log.clone();
        assert!(writer.submit(Box::new(move || {
            started.send(()).unwrap();
            held.recv().unwrap();
            events(&first, "step 0".into());
            None
        })));
        running.recv().unwrap();
        for n in 1..=3 {
            let log = log.clone();
            assert!(writer.submit(Box::new(move || {
                events(&log, format!("step {n}"));
                let log = log.clone();
                Some(Box::new(move |committed| {
                    events(&log, format!("then {n} {committed}"));
                }) as Then)
            })));
        }
        release.send(()).unwrap();
        drop(writer);
        thread.join().unwrap();
        let events = log.events.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                "begin",
                "step 0",
                "commit",
                "begin",
                "step 1",
                "step 2",
                "step 3",
                "commit",
                "then 1 true",
                "then 2 true",
                "then 3 true"
            ]
        );
        assert_eq!(log.commits.load(Ordering::SeqCst), 2);
    }
}

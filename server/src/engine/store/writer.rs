//! [`Writer`]: group commit for a store whose calls block (the disk store).
//!
//! A caller offers its steps as [`Job`]s (the part that reads and writes
//! the store, returning the part that must follow the commit: the fan-out
//! and the answer). If nobody is writing, the caller takes the turn and
//! runs, in one transaction, every job queued so far, commits, and runs
//! their second parts; otherwise it leaves its jobs to the thread whose
//! turn it is and goes on (the broker then waits for the answer without
//! holding a worker). A burst of publishes or a reconnect storm so costs
//! one commit per batch, not one per step, and one worker at a time, not
//! all of them, ever waits on the file.
//!
//! Why no thread of the store's own: on a busy machine, waking one costs a
//! wait for a free core on every step, which throttles a publisher far more
//! than the write itself; the thread that runs a batch is one that had a
//! step to do anyway.
//!
//! Jobs run in the order they were queued, and a job queued runs whole
//! (with its second part) even if its caller went away; the broker's
//! per-stream locks keep a stream's steps from overlapping at all.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

/// What runs after the batch's commit, told whether it committed.
pub(crate) type Then = Box<dyn FnOnce(bool) + Send>;

/// A step on the store: its reads and writes, then (when it returns one)
/// what waits for the commit.
pub(crate) type Job = Box<dyn FnOnce() -> Option<Then> + Send>;

/// The most jobs one transaction takes: a bound on how long a batch holds
/// the store.
const MAX_BATCH: usize = 256;

/// The most batches one turn runs before the task holding it goes back to
/// its own work: under steady load someone else's steps would otherwise
/// keep it (and its worker) writing for ever. What is left goes to the
/// caller of [`Writer::offer`], which hands it on.
const BATCHES_PER_TURN: usize = 4;

/// A store that can put several steps in one transaction.
pub(crate) trait Batching: Send + Sync + 'static {
    /// Opens a transaction that this thread's calls to the store then use
    /// (`false` when none could be opened: each call then commits alone).
    fn begin(&self) -> bool;
    /// Commits what [`Batching::begin`] opened, unless one of its steps
    /// failed half-way (then nothing of the batch is kept); whether it
    /// committed.
    fn commit(&self) -> bool;
    /// Drops what [`Batching::begin`] opened, keeping nothing (a step
    /// panicked).
    fn abort(&self);
}

/// Runs a store's steps, many to a transaction.
pub struct Writer {
    store: Arc<dyn Batching>,
    queue: Mutex<Vec<Job>>,
    /// Held by the thread whose turn it is to write.
    turn: Mutex<()>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer for `store`.
    pub(crate) fn new(store: Arc<dyn Batching>) -> Writer {
        Writer { store, queue: Mutex::new(Vec::new()), turn: Mutex::new(()) }
    }

    /// How many jobs wait for a transaction.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Queues `job` for the next transaction, without taking the turn
    /// (for what nobody waits on, as an inbox's delivery mark).
    pub(crate) fn enqueue(&self, job: Job) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(job);
    }

    /// Queues `jobs`, in order, and runs the queue on this thread if nobody
    /// else is writing; returns at once otherwise (the thread writing runs
    /// them). `true` when jobs are left that this turn did not get to:
    /// the caller must see that someone runs them (offer nothing, later,
    /// from a task of its own).
    #[must_use = "jobs left over must be handed on"]
    pub(crate) fn offer(&self, jobs: impl IntoIterator<Item = Job>) -> bool {
        self.enqueue_all(jobs);
        match self.turn.try_lock() {
            Ok(turn) => self.drain_then_let_go(turn, BATCHES_PER_TURN),
            // A step panicked while holding the turn: it is free again.
            Err(TryLockError::Poisoned(turn)) => {
                self.drain_then_let_go(turn.into_inner(), BATCHES_PER_TURN)
            }
            Err(TryLockError::WouldBlock) => false,
        }
    }

    /// Queues `jobs` and returns once the queue is empty: run by this
    /// thread, after waiting for its turn, or by the thread writing before
    /// it. Blocks (for shutdown's flush and tests).
    pub(crate) fn run(&self, jobs: impl IntoIterator<Item = Job>) {
        self.enqueue_all(jobs);
        let turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self.drain_then_let_go(turn, usize::MAX);
    }

    fn enqueue_all(&self, jobs: impl IntoIterator<Item = Job>) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).extend(jobs);
    }

    /// Runs the queue with the turn held, at most `batches` transactions,
    /// lets the turn go, and takes it again while jobs are left: one
    /// queued after the last look at the queue and before the turn was let
    /// go found the turn taken, and its caller counts on whoever held it.
    /// `true` when the bound stopped it with jobs left.
    fn drain_then_let_go(&self, turn: MutexGuard<'_, ()>, mut batches: usize) -> bool {
        let mut turn = Some(turn);
        loop {
            if let Some(_held) = turn.take() {
                batches = self.drain(batches);
                if batches == 0 {
                    return !self.is_empty();
                }
            }
            if self.is_empty() {
                return false;
            }
            match self.turn.try_lock() {
                Ok(again) => turn = Some(again),
                Err(TryLockError::Poisoned(again)) => turn = Some(again.into_inner()),
                // Whoever holds it now drains what is left.
                Err(TryLockError::WouldBlock) => return false,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Runs the queue, a transaction per batch, until it is empty or
    /// `batches` ran; returns how many more it may run. The caller holds
    /// the turn.
    fn drain(&self, mut batches: usize) -> usize {
        while batches > 0 {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect::<Vec<_>>()
            };
            if batch.is_empty() {
                break;
            }
            batches -= 1;
            self.run_batch(batch);
        }
        batches
    }

    /// One transaction. A step that panics aborts it: every step of the
    /// batch is then told it did not commit, and the panic goes no further
    /// (the store stays usable, the turn is let go).
    fn run_batch(&self, batch: Vec<Job>) {
        let opened = self.store.begin();
        let mut after: Vec<Then> = Vec::with_capacity(batch.len());
        let mut panicked = false;
        for job in batch {
            if panicked {
                // Dropping a job drops its answer: its caller hears that
                // the store failed.
                continue;
            }
            match catch_unwind(AssertUnwindSafe(job)) {
                Ok(then) => after.extend(then),
                Err(_) => panicked = true,
            }
        }
        let committed = if panicked {
            tracing::error!("a history step panicked: its transaction is dropped");
            if opened {
                self.store.abort();
            }
            false
        } else {
            !opened || self.store.commit()
        };
        for then in after {
            if catch_unwind(AssertUnwindSafe(|| then(committed))).is_err() {
                tracing::error!("a history step panicked after its commit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;

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
        fn abort(&self) {
            self.events.lock().unwrap().push("abort".into());
        }
    }

    fn note(log: &Arc<Log>, what: String) {
        log.events.lock().unwrap().push(what);
    }

    #[test]
    fn callers_that_arrive_during_a_transaction_share_the_next_and_each_gets_its_answer() {
        let log = Arc::new(Log::default());
        let writer = Arc::new(Writer::new(log.clone()));
        // The first caller's transaction is held open until the others
        // have queued their jobs.
        let (release, held) = channel::<()>();
        let (started, running) = channel::<()>();
        let first = {
            let (writer, log) = (writer.clone(), log.clone());
            std::thread::spawn(move || {
                writer.run([Box::new(move || {
                    started.send(()).unwrap();
                    held.recv().unwrap();
                    note(&log, "step 0".into());
                    None
                }) as Job]);
            })
        };
        running.recv().unwrap();
        let (answers, answered) = channel();
        let others: Vec<_> = (1..=3)
            .map(|n| {
                let (writer, log, answers) = (writer.clone(), log.clone(), answers.clone());
                std::thread::spawn(move || {
                    let (done, result) = std::sync::mpsc::sync_channel(1);
                    writer.run([Box::new(move || {
                        note(&log, "step".into());
                        Some(Box::new(move |committed| done.send(committed).unwrap()) as Then)
                    }) as Job]);
                    // Answered by the time `run` returns.
                    answers.send((n, result.try_recv().unwrap())).unwrap();
                })
            })
            .collect();
        // Every other caller has queued its job (the queue holds them all).
        while writer.queued() < 3 {
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        first.join().unwrap();
        for other in others {
            other.join().unwrap();
        }
        drop(answers);
        let mut got: Vec<_> = answered.iter().collect();
        got.sort_unstable();
        assert_eq!(got, [(1, true), (2, true), (3, true)]);
        let events = log.events.lock().unwrap().clone();
        assert_eq!(
            events,
            ["begin", "step 0", "commit", "begin", "step", "step", "step", "commit"],
            "one transaction for the three that queued up"
        );
        assert_eq!(log.commits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn no_offered_job_is_left_behind_however_the_callers_interleave() {
        let log = Arc::new(Log::default());
        let writer = Arc::new(Writer::new(log.clone()));
        let (answers, answered) = channel();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (writer, answers) = (writer.clone(), answers.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let answers = answers.clone();
                        let job = Box::new(move || {
                            Some(Box::new(move |_| answers.send(()).unwrap()) as Then)
                        }) as Job;
                        // What a turn leaves over, the caller hands on.
                        if writer.offer([job]) {
                            writer.run([]);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(answers);
        // Every caller has returned: each job ran, by its caller or by the
        // caller that held the turn, and nothing waits in the queue.
        assert_eq!(writer.queued(), 0);
        assert_eq!(answered.try_iter().count(), 8 * 500);
    }

    #[test]
    fn a_step_that_panics_aborts_its_batch_and_the_writer_goes_on() {
        let log = Arc::new(Log::default());
        let writer = Writer::new(log.clone());
        let (answers, answered) = channel();
        let answering = |answers: std::sync::mpsc::Sender<bool>| {
            Box::new(move || {
                Some(Box::new(move |committed| answers.send(committed).unwrap()) as Then)
            }) as Job
        };
        let panicking: Job = Box::new(|| panic!("a bug in a step"));
        writer.run([answering(answers.clone()), panicking, answering(answers.clone())]);
        // The first step is told its batch did not commit; the one after the
        // panic is dropped unanswered (its caller hears the store failed).
        assert_eq!(answered.try_iter().collect::<Vec<_>>(), [false]);
        // The writer goes on: the turn is free, the next batch commits.
        assert!(!writer.offer([answering(answers)]));
        assert_eq!(answered.try_iter().collect::<Vec<_>>(), [true]);
        let events = log.events.lock().unwrap().clone();
        assert_eq!(events, ["begin", "abort", "begin", "commit"]);
    }
}

//! The relay's durable state: one SQLCipher database in the data directory,
//! owned by one storage thread.
//!
//! The event loop never touches the database (nor the blob files). It
//! hands the storage thread jobs through a channel: reads, and writes that
//! are closures over a [`Tx`]. The thread runs every write of a batch
//! inside one transaction, each in its own savepoint so that one failure
//! undoes only itself (a write whose refusals all come before its first
//! change needs none: [`Store::write_staged_checks_first`]), and commits.
//! While a commit syncs, the next batch gathers in the channel, and an
//! open batch waits a moment for more
//! (group commit that grows with load). Reads of committed state run
//! between batches; a reader's queue page runs at once, inside the open
//! batch. A write's caller is answered only once its commit is on disk; if
//! the commit fails, every write of that batch is answered with
//! [`StoreError::CommitFailed`].
//!
//! Every SQL statement of the daemon lives below this module, behind typed
//! operations: `queues`, `key_packages`, `accounts`, `directory`,
//! `identities`, `hybrid_keys`, `fences`, `meta`, `blobs`, `moderation`,
//! `recovery`, `kt`, `peers`, `outbound`. A command composes them in one
//! write closure when it needs several steps to be all-or-nothing.

pub mod accounts;
pub mod blobs;
pub mod cipher;
// The functions SQLCipher's C code calls for its page encryption.
#[allow(unsafe_code)]
mod crypto;
pub mod delivery_tokens;
pub mod directory;
pub mod fences;
pub mod hybrid_keys;
pub mod identities;
pub mod key_packages;
pub mod kt;
pub mod meta;
pub mod moderation;
pub mod outbound;
pub mod peers;
pub mod queues;
pub mod recovery;
mod schema;
mod worker;

pub mod backup;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tokio::sync::oneshot;

pub use worker::Tx;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot open the database: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: the database key is wrong, or this is not a qpc database")]
    WrongKey { path: PathBuf },
    #[error("{path}: cannot write the record of the store's settings: {source}")]
    Record { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: schema version {found} is newer than this qpc-server knows ({known}); upgrade qpc-server"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is closed (the relay is shutting down)")]
    Closed,
    #[error("database commit failed: {0}")]
    CommitFailed(String),
}

impl StoreError {
    /// Whether the disk, not the request, is at fault (full, failing, busy):
    /// the caller may retry later and nothing of the request was kept.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Closed | StoreError::CommitFailed(_) => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked | CannotOpen)
            }
            _ => false,
        }
    }
}

pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The event loop's handle on the storage thread.
pub struct Store {
    jobs: std::sync::mpsc::Sender<worker::Job>,
    thread: RefCell<Option<std::thread::JoinHandle<()>>>,
    closed: Cell<bool>,
}

/// What a test may slow down (`QPC_TEST_COMMIT_DELAY_MS`: a sleep before
/// every commit, standing in for a slow disk).
#[derive(Clone, Copy, Default)]
pub struct Options {
    pub commit_delay: std::time::Duration,
}

impl Options {
    pub fn from_env() -> Options {
        let ms = std::env::var("QPC_TEST_COMMIT_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        Options { commit_delay: std::time::Duration::from_millis(ms) }
    }
}

/// A value on its way between the event loop and the storage thread, its
/// type erased: the channels, the savepoint and the commit answer then
/// exist once in the binary instead of once per kind of read or write
/// (cross/SIZES.md section 6). Only the boxing and the unboxing are generic.
type Erased = Box<dyn Any + Send>;

fn erase<X: Send + 'static>(x: X) -> Erased {
    Box::new(x)
}

fn unerase<X: 'static>(x: Erased) -> X {
    match x.downcast::<X>() {
        Ok(x) => *x,
        Err(_) => unreachable!("the storage thread answers with the asker's own types"),
    }
}

/// What a [`Staged`] answers with, in its type only.
type Types<T, A, E> = PhantomData<fn() -> (T, A, E)>;

/// A read, its result type erased.
type ErasedRead = Box<dyn FnOnce(&Connection) -> rusqlite::Result<Erased> + Send>;

/// How a staged write ended, as its commit answers it.
enum Outcome {
    /// The write's `Ok` value, committed.
    Done(Erased),
    /// The write's own `Err` (its savepoint rolled back).
    Refused(Erased),
    /// The store's error: SQL around the write, a failed commit, closed.
    Store(StoreError),
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Outcome {
        Outcome::Store(e)
    }
}

impl Outcome {
    fn into_result<T: 'static, E: From<StoreError> + 'static>(self) -> Result<T, E> {
        match self {
            Outcome::Done(t) => Ok(unerase(t)),
            Outcome::Refused(e) => Err(unerase(e)),
            Outcome::Store(e) => Err(E::from(e)),
        }
    }
}

/// A write whose effect can be seen before it is durable: `accepted` yields
/// what the write chose to show early (or nothing if it failed), `durable`
/// its result once committed.
pub struct Staged<T, A, E> {
    accepted: oneshot::Receiver<Erased>,
    durable: oneshot::Receiver<Outcome>,
    types: Types<T, A, E>,
}

impl<T: 'static, A: 'static, E: From<StoreError> + 'static> Staged<T, A, E> {
    /// What the write showed, as soon as it ran (before its commit).
    pub async fn accepted(&mut self) -> Option<A> {
        (&mut self.accepted).await.ok().map(unerase)
    }

    /// The write's result once its commit is on disk.
    pub async fn durable(self) -> Result<T, E> {
        self.durable.await.map_or_else(|_| Err(E::from(StoreError::Closed)), Outcome::into_result)
    }

    /// What the write showed, if it has run (tests drive the batch by hand).
    #[cfg(test)]
    fn try_accepted(&mut self) -> Option<A> {
        self.accepted.try_recv().ok().map(unerase)
    }

    /// The write's result, if its commit has answered.
    #[cfg(test)]
    fn try_durable(&mut self) -> Option<Result<T, E>> {
        self.durable.try_recv().ok().map(Outcome::into_result)
    }
}

impl Store {
    /// Opens (or creates) `path`, keyed with `key` unless it is empty,
    /// brings the schema up to date and starts the storage thread.
    pub fn open(path: &Path, key: &str, options: Options) -> Result<Store, StoreError> {
        let (conn, state) = schema::open(path, key)?;
        let (jobs, queue) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("qpc-store".into())
            .spawn(move || worker::run(conn, state, queue, options))
            .map_err(StoreError::Thread)?;
        Ok(Store { jobs, thread: RefCell::new(Some(thread)), closed: Cell::new(false) })
    }

    fn send(&self, job: worker::Job) -> bool {
        !self.closed.get() && self.jobs.send(job).is_ok()
    }

    /// Runs `f` against committed state on the storage thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(f, worker::Job::Read).await
    }

    /// Runs `f` on the storage thread at once, inside the batch that is
    /// gathering if there is one: it sees what that batch accepted and has
    /// not committed yet (for a reader's own queue, which may see a message
    /// early anyway; see `store::worker` for why its sequence numbers stay
    /// safe to ack).
    pub async fn read_accepted<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(f, worker::Job::ReadAccepted).await
    }

    /// Runs file I/O `f` (a blob chunk written and synced, a range read) on
    /// the storage thread, between batches, so that the loop never waits
    /// for the disk.
    pub async fn file_io<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<std::io::Result<T>, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(worker::Job::Read(Box::new(move |_| {
            let _ = tx.send(f());
        }))) {
            return Err(StoreError::Closed);
        }
        rx.await.map_err(|_| StoreError::Closed)
    }

    async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        job: fn(worker::ReadOp) -> worker::Job,
    ) -> Result<T, StoreError> {
        self.ask_erased(Box::new(move |c| f(c).map(erase)), job).await.map(unerase)
    }

    async fn ask_erased(
        &self,
        f: ErasedRead,
        job: fn(worker::ReadOp) -> worker::Job,
    ) -> Result<Erased, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(job(Box::new(move |c| {
            let _ = tx.send(f(c).map_err(StoreError::from));
        }))) {
            return Err(StoreError::Closed);
        }
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Runs `op` in the next batch's transaction and returns its result once
    /// that transaction is committed. An `Err` from `op` rolls back only
    /// `op`'s own changes.
    pub async fn write<T, E>(&self, op: impl FnOnce(&Tx) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_staged(move |tx| op(tx).map(|t| (t, ()))).durable().await
    }

    /// Like [`Store::write`], but `op` also returns something to show before
    /// the commit is durable (a message for a recipient who is online).
    pub fn write_staged<T, A, E>(
        &self,
        op: impl FnOnce(&Tx) -> Result<(T, A), E> + Send + 'static,
    ) -> Staged<T, A, E>
    where
        T: Send + 'static,
        A: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (job, staged) = staged_job(op, true);
        // If the thread is gone, the dropped senders answer `Closed`.
        self.send(worker::Job::Write(job));
        staged
    }

    /// Like [`Store::write_staged`], for an `op` that refuses only before
    /// its first change, or calls [`Tx::guard`] before a change that a
    /// refusal may follow (see [`Tx::run`]): it runs without a
    /// savepoint of its own until then.
    pub fn write_staged_checks_first<T, A, E>(
        &self,
        op: impl FnOnce(&Tx) -> Result<(T, A), E> + Send + 'static,
    ) -> Staged<T, A, E>
    where
        T: Send + 'static,
        A: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (job, staged) = staged_job(op, false);
        self.send(worker::Job::Write(job));
        staged
    }

    /// Commits everything queued before it, marks the store as closed
    /// cleanly, checkpoints the WAL and stops the storage thread.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(worker::Job::Close(tx)) {
            let _ = rx.await;
        }
        self.closed.set(true);
        if let Some(thread) = self.thread.borrow_mut().take() {
            let _ = thread.join();
        }
    }
}

/// A database in memory with the whole schema, for the store's unit tests.
#[cfg(test)]
pub(crate) fn memory_db() -> Connection {
    schema::memory().0
}

/// The storage thread's side of [`Store::write_staged`]: runs `op` in its
/// savepoint (opened at once with `guard`, else as [`Tx::run`]
/// does), shows its early part at once, answers after the commit.
fn staged_job<T, A, E>(
    op: impl FnOnce(&Tx) -> Result<(T, A), E> + Send + 'static,
    guard: bool,
) -> (worker::WriteOp, Staged<T, A, E>)
where
    T: Send + 'static,
    A: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (job, accepted, durable) = erased_job(
        Box::new(move |tx: &Tx| match op(tx) {
            Ok((t, a)) => Ok((erase(t), erase(a))),
            Err(e) => Err(Outcome::Refused(erase(e))),
        }),
        guard,
    );
    (job, Staged { accepted, durable, types: PhantomData })
}

type ErasedOp = Box<dyn FnOnce(&Tx) -> Result<(Erased, Erased), Outcome> + Send>;

fn erased_job(
    op: ErasedOp,
    guard: bool,
) -> (worker::WriteOp, oneshot::Receiver<Erased>, oneshot::Receiver<Outcome>) {
    let (early_tx, accepted) = oneshot::channel();
    let (done_tx, durable) = oneshot::channel();
    let job: worker::WriteOp = Box::new(move |tx: Option<&Tx>| {
        let result = match tx.map(|tx| tx.run(op, guard)) {
            Some(Ok((t, a))) => {
                let _ = early_tx.send(a);
                Outcome::Done(t)
            }
            Some(Err(e)) => e,
            None => Outcome::Store(StoreError::CommitFailed("not run".into())),
        };
        Box::new(move |committed: Result<(), String>| {
            let answer = match committed {
                Ok(()) => result,
                Err(e) => Outcome::Store(StoreError::CommitFailed(e)),
            };
            let _ = done_tx.send(answer);
        })
    });
    (job, accepted, durable)
}

#[cfg(test)]
mod tests {
    use super::queues::{self, NewMessage, Quota};
    use super::worker::{run_batch, SEQ_SKIP};
    use super::*;

    type Answer = Staged<u64, u64, StoreError>;

    fn append_job(to: [u8; 32], payload: &[u8]) -> (worker::WriteOp, Answer) {
        append_job_as(to, payload, true)
    }

    /// An append in its savepoint (`guard`) or without one, as the relay's
    /// single enqueue runs (`Store::write_staged_checks_first`).
    fn append_job_as(to: [u8; 32], payload: &[u8], guard: bool) -> (worker::WriteOp, Answer) {
        let quota = Quota { queue_messages: 100, queue_bytes: 1000, store_bytes: 1000 };
        append_job_within(to, payload, guard, quota)
    }

    fn append_job_within(
        to: [u8; 32],
        payload: &[u8],
        guard: bool,
        quota: Quota,
    ) -> (worker::WriteOp, Answer) {
        let m = NewMessage {
            sender: [0; 32],
            channel_id: vec![],
            client_msg_id: None,
            payload: payload.to_vec(),
        };
        staged_job(
            move |tx: &Tx| {
                let seq = queues::append(tx, &quota, &to, &m, 1).map_err(|e| match e {
                    queues::AppendError::Sqlite(e) => StoreError::Sqlite(e),
                    other => StoreError::CommitFailed(other.to_string()),
                })?;
                Ok((seq.seq, seq.seq))
            },
            guard,
        )
    }

    fn answer(mut a: Answer) -> (Option<u64>, Result<u64, StoreError>) {
        (a.try_accepted(), a.try_durable().unwrap())
    }

    #[test]
    fn a_failed_write_rolls_back_alone_and_the_rest_commits() {
        let (c, mut state) = schema::memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        identities::insert(&c, &a, 1).unwrap();
        identities::insert(&c, &b, 1).unwrap();
        // The appends run without a savepoint, as the relay's enqueue does.
        let (one, first) = append_job_as(a, b"one", false);
        // Fails after writing: its own row must go, the others' stay.
        let (broken, second) = staged_job(
            move |tx: &Tx| {
                queues::append(
                    tx,
                    &Quota { queue_messages: 9, queue_bytes: 99, store_bytes: 99 },
                    &b,
                    &NewMessage {
                        sender: [0; 32],
                        channel_id: vec![],
                        client_msg_id: None,
                        payload: b"lost".to_vec(),
                    },
                    1,
                )
                .map_err(|e| StoreError::CommitFailed(e.to_string()))?;
                tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                Ok::<_, StoreError>((0u64, 0u64))
            },
            true,
        );
        let (three, third) = append_job_as(a, b"three", false);
        run_batch(&c, &mut state, vec![one, broken, three], std::time::Duration::ZERO).unwrap();
        assert_eq!(answer(first).1.unwrap(), 1);
        let (shown, result) = answer(second);
        assert!(shown.is_none() && matches!(result, Err(StoreError::Sqlite(_))), "{result:?}");
        let (shown, result) = answer(third);
        assert_eq!((shown, result.unwrap()), (Some(2), 2));
        assert!(queues::page(&c, &b, None, 10, 1000).unwrap().messages.is_empty());
        assert_eq!(queues::page(&c, &a, None, 10, 1000).unwrap().messages.len(), 2);
        assert_eq!(state.store_bytes, 8, "the failed write's bytes are not counted");
        assert_eq!(queues::store_bytes(&c).unwrap(), 8);
    }

    #[test]
    fn a_write_without_savepoint_refused_by_its_checks_or_guarded_rolls_back_alone() {
        let (c, mut state) = schema::memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        identities::insert(&c, &a, 1).unwrap();
        let (one, first) = append_job_as(a, b"one", false);
        // Refused by its checks (unknown recipient), before any change.
        let (unknown, second) = append_job_as(b, b"nobody", false);
        // Opens its savepoint before a change that a refusal follows.
        let (guarded, third) = staged_job(
            move |tx: &Tx| {
                tx.guard()?;
                tx.execute("DELETE FROM identities", [])?;
                Err::<(u64, u64), _>(StoreError::CommitFailed("refused after a change".into()))
            },
            false,
        );
        let (four, fourth) = append_job_as(a, b"four", false);
        run_batch(&c, &mut state, vec![one, unknown, guarded, four], std::time::Duration::ZERO).unwrap();
        assert_eq!(answer(first).1.unwrap(), 1);
        assert!(answer(second).1.is_err());
        assert!(answer(third).1.is_err());
        assert_eq!(answer(fourth).1.unwrap(), 2, "the guarded write's deletion was undone");
        assert_eq!(queues::page(&c, &a, None, 10, 1000).unwrap().messages.len(), 2);
        assert_eq!((state.store_bytes, queues::store_bytes(&c).unwrap()), (7, 7));
    }

    #[test]
    fn a_write_without_savepoint_failing_after_a_change_refuses_its_batch() {
        let (c, mut state) = schema::memory();
        let a = [1u8; 32];
        identities::insert(&c, &a, 1).unwrap();
        let (one, first) = append_job_as(a, b"one", false);
        let (broken, second) = staged_job(
            move |tx: &Tx| {
                tx.execute("DELETE FROM identities", [])?;
                tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                Ok::<_, StoreError>((0u64, 0u64))
            },
            false,
        );
        let failed = run_batch(&c, &mut state, vec![one, broken], std::time::Duration::ZERO);
        assert!(failed.is_err(), "its change cannot be undone alone: nothing commits");
        let (shown, result) = answer(first);
        assert_eq!(shown, Some(1));
        assert!(result.unwrap_err().is_unavailable());
        assert!(matches!(answer(second).1, Err(StoreError::CommitFailed(_))));
        assert!(identities::exists(&c, &a).unwrap(), "the change was rolled back with the batch");
        assert_eq!((state.store_bytes, queues::store_bytes(&c).unwrap()), (0, 0));
    }

    #[test]
    fn a_failed_commit_refuses_the_whole_batch_and_skips_the_counters() {
        let (c, mut state) = schema::memory();
        let a = [1u8; 32];
        identities::insert(&c, &a, 1).unwrap();
        // A deferred foreign key: every statement succeeds, the COMMIT fails.
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let (one, first) = append_job(a, b"one");
        let (orphan, second) = staged_job(
            |tx: &Tx| {
                tx.execute("INSERT INTO child VALUES (7)", [])?;
                Ok::<_, StoreError>((0u64, 0u64))
            },
            true,
        );
        let failed = run_batch(&c, &mut state, vec![one, orphan], std::time::Duration::ZERO);
        assert!(failed.is_err());
        let (shown, result) = answer(first);
        assert_eq!(shown, Some(1), "the append was shown before the commit");
        assert!(matches!(result, Err(StoreError::CommitFailed(_))), "{result:?}");
        assert!(result.unwrap_err().is_unavailable());
        assert!(matches!(answer(second).1, Err(StoreError::CommitFailed(_))));
        assert!(queues::page(&c, &a, None, 10, 1000).unwrap().messages.is_empty());
        assert_eq!((state.store_bytes, queues::store_bytes(&c).unwrap()), (0, 0));
        // What the run loop does next; the store keeps serving, and the seq
        // that was shown is never used again.
        worker::skip_ahead(&c, &mut state).unwrap();
        let (again, later) = append_job(a, b"again");
        run_batch(&c, &mut state, vec![again], std::time::Duration::ZERO).unwrap();
        assert_eq!(answer(later).1.unwrap(), SEQ_SKIP as u64 + 1);
    }

    #[test]
    fn a_reader_sees_the_open_batch_and_committed_reads_wait_for_its_commit() {
        let (c, mut state) = schema::memory();
        let a = [1u8; 32];
        identities::insert(&c, &a, 1).unwrap();
        let mut batch = worker::Batch::new(&c, &state);
        let (one, mut first) = append_job(a, b"one");
        assert!(batch.take(worker::Job::Write(one)).is_none());
        assert_eq!(first.try_accepted(), Some(1), "shown as soon as it ran");
        assert!(first.try_durable().is_none(), "not answered before the commit");
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let early = seen_tx.clone();
        batch.take(worker::Job::ReadAccepted(Box::new(move |c| {
            let _ = early.send(("accepted", queues::page(c, &a, None, 10, 100).unwrap().messages.len()));
        })));
        assert_eq!(seen.try_recv().ok(), Some(("accepted", 1)), "read at once, inside the open batch");
        batch.take(worker::Job::Read(Box::new(move |c| {
            let _ = seen_tx.send(("committed", queues::page(c, &a, None, 10, 100).unwrap().messages.len()));
        })));
        assert!(seen.try_recv().is_err(), "a read of committed state waits for the commit");
        batch.finish(&mut state, std::time::Duration::ZERO).unwrap();
        assert_eq!(first.try_durable().unwrap().unwrap(), 1);
        assert_eq!(seen.try_recv().ok(), Some(("committed", 1)));
    }

    const TEST_KEY: &str = "x'0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20'";

    /// An empty directory of this test process's own, for a store file.
    fn fresh_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("qpc-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_idle_thread_empties_a_large_wal_and_keeps_every_message() {
        let dir = fresh_dir("idle");
        let path = dir.join("qpc.db");
        let wal = dir.join("qpc.db-wal");
        let key = TEST_KEY;
        let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::open(&path, key, Options::default()).unwrap();
            store.write(|tx| identities::insert(tx, &[1; 32], 1).map_err(StoreError::from)).await.unwrap();
            // One commit each, so that the WAL grows past what it keeps.
            let roomy = Quota { queue_messages: 1000, queue_bytes: 1 << 20, store_bytes: 1 << 20 };
            for _ in 0..120 {
                let (job, staged) = append_job_within([1; 32], &[7; 3000], false, roomy);
                store.send(worker::Job::Write(job));
                staged.durable().await.unwrap();
            }
            assert!(wal_size() >= worker::WAL_KEEP, "the WAL holds {} bytes", wal_size());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while wal_size() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(wal_size(), 0, "idle for {:?}, the WAL is truncated", worker::IDLE_CHECKPOINT);
            let page = store.read(|c| queues::page(c, &[1; 32], None, 1000, usize::MAX)).await.unwrap();
            assert_eq!(page.messages.len(), 120);
            // Still a working store: the next write goes to a new WAL.
            let (job, staged) = append_job_within([1; 32], b"after", false, roomy);
            store.send(worker::Job::Write(job));
            assert_eq!(staged.durable().await.unwrap(), 121);
            store.close().await;
        });
        let (c, state) = schema::open(&path, key).unwrap();
        assert_eq!(state.store_bytes, 120 * 3000 + 5);
        assert_eq!(queues::page(&c, &[1; 32], None, 1000, usize::MAX).unwrap().messages.len(), 121);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_small_wal_is_left_alone_when_idle() {
        let dir = fresh_dir("small-wal");
        let (c, _) = schema::open(&dir.join("qpc.db"), TEST_KEY).unwrap();
        let wal = || std::fs::metadata(dir.join("qpc.db-wal")).unwrap().len();
        // A WAL over the limit (the migrations' pages, then commits of a
        // page or two each): emptied.
        let mut n = 0u8;
        while wal() < worker::WAL_KEEP {
            n += 1;
            identities::insert(&c, &[n; 32], 1).unwrap();
        }
        worker::idle_checkpoint(&c);
        assert_eq!(wal(), 0);
        identities::insert(&c, &[0; 32], 1).unwrap();
        let before = wal();
        assert!(before > 0 && before < worker::WAL_KEEP, "the WAL holds {before} bytes");
        worker::idle_checkpoint(&c);
        assert_eq!(wal(), before, "a WAL under {} bytes is not checkpointed", worker::WAL_KEEP);
        // In memory: no file to look at, nothing to do, no error.
        worker::idle_checkpoint(&schema::memory().0);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_thread_answers_reads_writes_and_closes_cleanly() {
        let dir = fresh_dir("test");
        let path = dir.join("qpc.db");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::open(&path, TEST_KEY, Options::default()).unwrap();
            store.write(|tx| identities::insert(tx, &[1; 32], 1).map_err(StoreError::from)).await.unwrap();
            let (job, staged) = append_job([1; 32], b"hi");
            store.send(worker::Job::Write(job));
            assert_eq!(staged.durable().await.unwrap(), 1);
            let page = store.read(|c| queues::page(c, &[1; 32], None, 10, 100)).await.unwrap();
            assert_eq!(page.messages.len(), 1);
            store.close().await;
            assert!(matches!(store.read(meta::is_open).await, Err(StoreError::Closed)));
        });
        // Closed cleanly: the next open does not skip the counters.
        let (c, state) = schema::open(&path, TEST_KEY).unwrap();
        assert_eq!((state.seq_floor, state.store_bytes), (0, 2));
        drop(c);
        // Not closed: it does.
        let (_, state) = schema::open(&path, TEST_KEY).unwrap();
        assert_eq!(state.seq_floor, SEQ_SKIP);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

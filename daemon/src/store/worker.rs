//! The storage thread: owns the connection, gathers what the event loop
//! sends into batches, runs each write as it arrives inside the batch's
//! transaction (a savepoint each), commits, and answers.
//!
//! A batch is whatever arrived while the previous commit synced, plus what
//! arrives within [`GATHER`] of its first write: commits (page encryption,
//! WAL frames, the sync) are shared by more writes. Nothing a reader does
//! waits for the gather: its queue page is read inside the open
//! transaction, and an ack is answered as soon as it has run.
//!
//! Sequence numbers shown before their commit: a write may show its result
//! to the event loop before the commit (a message handed to an online
//! recipient). If that commit then fails, or the relay dies before it, the
//! sequence numbers it used would be handed out again to other messages, and
//! an ack of one would delete a message its reader never saw. So after a
//! failed commit, and at the start after an unclean stop, every queue's
//! counter skips [`SEQ_SKIP`] ahead; one batch never appends that many.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{meta, queues, Options};

/// How far every queue's counter jumps after a commit that may have shown
/// sequence numbers and then failed. A batch takes at most `MAX_BATCH` writes of at
/// most 1000 messages each, far fewer than this.
pub const SEQ_SKIP: i64 = 1 << 22;
/// Writes in one transaction at most (the rest wait for the next batch).
const MAX_BATCH: usize = 1024;

pub type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: run inside the batch transaction, or (`None`) not run at all
/// because no transaction could begin; either way its `Finish` answers.
pub type WriteOp = Box<dyn FnOnce(Option<&Tx>) -> Finish + Send>;
pub type ReadOp = Box<dyn FnOnce(&Connection) + Send>;

pub enum Job {
    /// Against committed state: waits for the open batch's commit.
    Read(ReadOp),
    /// May see what the open batch has accepted but not yet committed (a
    /// queue page, as a waiting reader sees an early message): runs at once.
    ReadAccepted(ReadOp),
    Write(WriteOp),
    Close(oneshot::Sender<()>),
}

/// What the thread keeps in memory between batches.
pub struct State {
    /// Payload bytes queued in all queues (what the store cap limits);
    /// kept here instead of summed over every queue on each enqueue.
    pub store_bytes: u64,
    /// Where a queue that has no counter yet starts counting.
    pub seq_floor: i64,
}

/// One write's view of the batch transaction: the connection (through
/// `Deref`, so any `fn(&Connection)` of the store takes `&tx`) and the
/// in-memory totals, which follow its savepoint and the batch's commit.
pub struct Tx<'a> {
    conn: &'a Connection,
    store_bytes: Cell<u64>,
    seq_floor: i64,
    /// The running write has its savepoint open.
    guarded: Cell<bool>,
    /// A write without a savepoint failed after changing the store: the
    /// batch cannot commit without it and is rolled back whole.
    poisoned: Cell<bool>,
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl<'a> Tx<'a> {
    pub fn new(conn: &'a Connection, state: &State) -> Tx<'a> {
        Tx {
            conn,
            store_bytes: Cell::new(state.store_bytes),
            seq_floor: state.seq_floor,
            guarded: Cell::new(false),
            poisoned: Cell::new(false),
        }
    }

    pub fn store_bytes(&self) -> u64 {
        self.store_bytes.get()
    }

    pub(super) fn add_store_bytes(&self, delta: i64) {
        self.store_bytes.set(self.store_bytes.get().saturating_add_signed(delta));
    }

    pub(super) fn seq_floor(&self) -> i64 {
        self.seq_floor
    }

    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Opens the running write's savepoint, if it is not open yet: call it
    /// before a change that a refusal may still follow (in a write run
    /// without `guard` by [`Tx::run`]; a no-op in one run with it).
    pub fn guard(&self) -> rusqlite::Result<()> {
        if !self.guarded.get() {
            self.exec("SAVEPOINT op")?;
            self.guarded.set(true);
        }
        Ok(())
    }

    /// Runs `op`, with `guard` in its own savepoint: an `Err` undoes its
    /// changes (and its share of the totals) and nothing else. Without
    /// `guard` the savepoint stays closed
    /// until `op` calls [`Tx::guard`]: for a write that refuses only before
    /// its first change (its checks are reads), which then costs no
    /// savepoint and none of SQLite's sub-journal copies of the pages it
    /// touches. An `Err` with nothing changed undoes nothing; an `Err` after
    /// a change without the guard (a statement failing on the disk) cannot
    /// be undone alone, so the whole batch is rolled back and refused, as a
    /// failed commit is.
    pub(super) fn run<T, E: From<super::StoreError>>(
        &self,
        op: impl FnOnce(&Tx) -> Result<T, E>,
        guard: bool,
    ) -> Result<T, E> {
        let sql = |s: &str| self.exec(s).map_err(|e| E::from(super::StoreError::Sqlite(e)));
        if guard {
            self.guard().map_err(|e| E::from(super::StoreError::Sqlite(e)))?;
        }
        let before = self.store_bytes.get();
        let changes = self.conn.total_changes();
        let result = op(self);
        let guarded = self.guarded.replace(false);
        match (&result, guarded) {
            (Ok(_), true) => sql("RELEASE op")?,
            (Ok(_), false) => {}
            (Err(_), true) => {
                self.store_bytes.set(before);
                sql("ROLLBACK TO op")?;
                sql("RELEASE op")?;
            }
            (Err(_), false) => {
                self.store_bytes.set(before);
                if self.conn.total_changes() != changes {
                    log::error!(
                        "a write failed after changing the store, with no savepoint: its batch is refused"
                    );
                    self.poisoned.set(true);
                }
            }
        }
        result
    }
}

/// How long an open batch waits for more writes once the channel is empty
/// (the loop may be in the middle of handing over a burst): bounds what
/// the gather adds to a durable answer. Reads of accepted state and acks
/// that arrive meanwhile are run and answered at once.
pub const GATHER: Duration = Duration::from_millis(2);
/// Writes after which a batch commits without waiting out [`GATHER`].
const GATHER_ENOUGH: usize = 256;

/// How long the thread has nothing to do before it looks at the WAL's size.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);
/// A WAL file at least this large when the thread goes idle is copied into
/// the database and cut to nothing ([`idle_checkpoint`]). SQLite's own
/// checkpoint (every 256 pages, during a burst) reuses the file from its
/// start and leaves it at its high-water mark, up to `journal_size_limit`
/// (1 MiB): on a router's flash that is space a burst took and never gave
/// back. Below this size the WAL is left to grow, so that a quiet relay's
/// few commits do not each cost a checkpoint (the same hot pages copied
/// again and again, two more syncs).
pub const WAL_KEEP: u64 = 256 << 10;

/// The thread's body: batches until the loop closes the store or goes away.
pub fn run(conn: Connection, mut state: State, jobs: Receiver<Job>, options: Options) {
    let mut skip_pending = false;
    let mut wrote = false;
    loop {
        let Some(first) = next_job(&conn, &jobs, &mut wrote) else {
            close(conn, skip_pending);
            return;
        };
        if skip_pending {
            skip_pending = skip_ahead(&conn, &mut state).is_err();
        }
        let mut batch = Batch::new(&conn, &state);
        let mut closing = None;
        let mut next = Some(first);
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match batch.wait_for_more(&jobs) {
                    Some(job) => job,
                    None => break,
                },
            };
            if let Some(done) = batch.take(job) {
                closing = Some(done);
                break;
            }
            if batch.full() {
                break;
            }
        }
        wrote |= batch.open.is_some();
        let committed = batch.finish(&mut state, options.commit_delay);
        if committed.is_err() {
            // Its writes may have shown sequence numbers that are now free.
            skip_pending = skip_ahead(&conn, &mut state).is_err();
        }
        if let Some(done) = closing {
            close(conn, skip_pending);
            let _ = done.send(());
            return;
        }
    }
}

/// The first job of the next batch, or `None` once the loop has gone.
/// After a batch that wrote, the thread waits [`IDLE_CHECKPOINT`] for it
/// and, if none comes, empties a large WAL first.
fn next_job(conn: &Connection, jobs: &Receiver<Job>, wrote: &mut bool) -> Option<Job> {
    if *wrote {
        match jobs.recv_timeout(IDLE_CHECKPOINT) {
            Ok(job) => return Some(job),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                *wrote = false;
                idle_checkpoint(conn);
            }
        }
    }
    jobs.recv().ok()
}

/// Copies the WAL into the database and truncates it, if it holds at least
/// [`WAL_KEEP`] bytes; nothing is lost if it fails (the WAL stays as it
/// was, and SQLite checkpoints it later).
pub(super) fn idle_checkpoint(conn: &Connection) {
    let wal = match conn.path() {
        Some(path) if !path.is_empty() => format!("{path}-wal"),
        _ => return,
    };
    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if size < WAL_KEEP {
        return;
    }
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    match result {
        Ok(0) => log::debug!("idle: the WAL ({size} bytes) was copied into the database and truncated"),
        Ok(_) => log::warn!("idle: the WAL ({size} bytes) could not be checkpointed now (busy)"),
        Err(e) => log::error!("idle: checkpointing the WAL ({size} bytes): {e}"),
    }
}

/// One batch as it gathers: the transaction opens with its first write,
/// every write runs (in its savepoint) as it arrives, reads of committed
/// state wait for the commit.
pub(super) struct Batch<'a> {
    conn: &'a Connection,
    tx: Tx<'a>,
    open: Option<std::time::Instant>,
    finishes: Vec<Finish>,
    reads: Vec<ReadOp>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(conn: &'a Connection, state: &State) -> Batch<'a> {
        Batch { conn, tx: Tx::new(conn, state), open: None, finishes: Vec::new(), reads: Vec::new() }
    }

    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ())
    }

    /// Runs or keeps `job`; a `Close` is handed back (the batch ends).
    pub(super) fn take(&mut self, job: Job) -> Option<oneshot::Sender<()>> {
        match job {
            Job::Read(r) => self.read(r),
            Job::ReadAccepted(r) => r(self.conn),
            Job::Write(w) => self.write(w),
            Job::Close(done) => return Some(done),
        }
        None
    }

    fn read(&mut self, r: ReadOp) {
        if self.open.is_some() {
            self.reads.push(r);
        } else {
            r(self.conn);
        }
    }

    fn write(&mut self, w: WriteOp) {
        if self.open.is_some() && self.conn.is_autocommit() {
            // SQLite rolled the transaction back itself (a disk error): the
            // batch is lost, and a write now would commit on its own.
            w(None)(Err("the batch's transaction was rolled back".into()));
            return;
        }
        if self.open.is_none() {
            if let Err(e) = self.exec("BEGIN IMMEDIATE") {
                log::error!("cannot begin a transaction, a write refused: {e}");
                w(None)(Err(e.to_string()));
                return;
            }
            self.open = Some(std::time::Instant::now());
        }
        self.finishes.push(w(Some(&self.tx)));
    }

    fn full(&self) -> bool {
        self.finishes.len() >= MAX_BATCH
    }

    /// The next job: whatever has arrived, or, with a transaction open and
    /// fewer than [`GATHER_ENOUGH`] writes, what arrives within [`GATHER`]
    /// of its first write. `None`: commit now.
    fn wait_for_more(&self, jobs: &Receiver<Job>) -> Option<Job> {
        if let Ok(job) = jobs.try_recv() {
            return Some(job);
        }
        let opened = self.open?;
        if self.finishes.len() >= GATHER_ENOUGH {
            return None;
        }
        let left = GATHER.checked_sub(opened.elapsed())?;
        jobs.recv_timeout(left).ok()
    }

    /// Commits (if a write opened the transaction), answers every write,
    /// then runs the reads that waited for the commit. Returns the
    /// commit's outcome.
    pub(super) fn finish(self, state: &mut State, commit_delay: Duration) -> Result<(), String> {
        let committed = if self.open.is_some() {
            if !commit_delay.is_zero() {
                std::thread::sleep(commit_delay);
            }
            let committed = if self.tx.poisoned.get() {
                Err("a write failed after changing the store".to_string())
            } else {
                self.exec("COMMIT").map_err(|e| e.to_string())
            };
            match &committed {
                Ok(()) => state.store_bytes = self.tx.store_bytes(),
                Err(e) => {
                    log::error!("commit failed, {} writes refused: {e}", self.finishes.len());
                    if let Err(e) = self.exec("ROLLBACK") {
                        log::error!("rolling back the failed commit: {e}");
                    }
                }
            }
            committed
        } else {
            Ok(())
        };
        for finish in self.finishes {
            finish(committed.clone());
        }
        for read in self.reads {
            read(self.conn);
        }
        committed
    }
}

/// Runs `writes` as one batch (the unit tests' way in): answers each once
/// committed (or failed) and returns the commit's outcome.
#[cfg(test)]
pub fn run_batch(
    conn: &Connection,
    state: &mut State,
    writes: Vec<WriteOp>,
    commit_delay: Duration,
) -> Result<(), String> {
    let mut batch = Batch::new(conn, state);
    for w in writes {
        batch.take(Job::Write(w));
    }
    batch.finish(state, commit_delay)
}

/// Moves every queue's counter (and the start of new ones) past anything
/// a failed or lost commit may have shown.
pub fn skip_ahead(conn: &Connection, state: &mut State) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    queues::skip_ahead(&tx, SEQ_SKIP)?;
    let floor = state.seq_floor + SEQ_SKIP;
    meta::set_seq_floor(&tx, floor)?;
    tx.commit()?;
    state.seq_floor = floor;
    log::info!("queue sequence numbers moved {SEQ_SKIP} ahead (after a commit that did not reach the disk)");
    Ok(())
}

fn close(conn: Connection, skip_pending: bool) {
    // A pending skip must happen at the next start: leave the store marked open.
    if !skip_pending {
        if let Err(e) = meta::set_open(&conn, false) {
            log::error!("marking the database closed: {e}");
        }
    }
    if let Err((_, e)) = conn.close() {
        log::error!("closing the database: {e}");
    }
}

//! The storage thread: owns the connection, takes what the event loop sent
//! as one batch, runs the reads, then the writes in one transaction (a
//! savepoint each), commits, and answers.
//!
//! Sequence numbers shown before their commit: a write may show its result
//! to the event loop before the commit (a message handed to an online
//! recipient). If that commit then fails, or the relay dies before it, the
//! sequence numbers it used would be handed out again to other messages, and
//! an ack of one would delete a message its reader never saw. So after a
//! failed commit, and at the start after an unclean stop, every queue's
//! counter skips [`SEQ_SKIP`] ahead; one batch never appends that many.

use std::cell::Cell;
use std::sync::mpsc::Receiver;
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
    Read(ReadOp),
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
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl<'a> Tx<'a> {
    pub fn new(conn: &'a Connection, state: &State) -> Tx<'a> {
        Tx { conn, store_bytes: Cell::new(state.store_bytes), seq_floor: state.seq_floor }
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

    /// Runs `op` in its own savepoint: an `Err` undoes its changes (and its
    /// share of the totals) and nothing else.
    pub fn in_savepoint<T, E: From<super::StoreError>>(
        &self,
        op: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<T, E> {
        let sql = |s: &str| self.exec(s).map_err(|e| E::from(super::StoreError::Sqlite(e)));
        sql("SAVEPOINT op")?;
        let before = self.store_bytes.get();
        let result = op(self);
        match &result {
            Ok(_) => sql("RELEASE op")?,
            Err(_) => {
                self.store_bytes.set(before);
                sql("ROLLBACK TO op")?;
                sql("RELEASE op")?;
            }
        }
        result
    }
}

/// The thread's body: batches until the loop closes the store or goes away.
pub fn run(conn: Connection, mut state: State, jobs: Receiver<Job>, options: Options) {
    let mut skip_pending = false;
    loop {
        let Ok(first) = jobs.recv() else {
            close(conn, skip_pending);
            return;
        };
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut closing = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Read(r) => reads.push(r),
                Job::Write(w) => writes.push(w),
                Job::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if writes.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        for read in reads {
            read(&conn);
        }
        if !writes.is_empty() {
            if skip_pending {
                skip_pending = skip_ahead(&conn, &mut state).is_err();
            }
            let committed = run_batch(&conn, &mut state, writes, options.commit_delay);
            if committed.is_err() {
                // Its writes may have shown sequence numbers that are now free.
                skip_pending = skip_ahead(&conn, &mut state).is_err();
            }
        }
        if let Some(done) = closing {
            close(conn, skip_pending);
            let _ = done.send(());
            return;
        }
    }
}

/// Runs `writes` in one transaction and answers each once it is committed
/// (or failed). Returns the commit's outcome.
pub fn run_batch(
    conn: &Connection,
    state: &mut State,
    writes: Vec<WriteOp>,
    commit_delay: Duration,
) -> Result<(), String> {
    let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ());
    if let Err(e) = exec("BEGIN IMMEDIATE") {
        log::error!("cannot begin a transaction, {} writes refused: {e}", writes.len());
        let why = e.to_string();
        for w in writes {
            w(None)(Err(why.clone()));
        }
        return Err(why);
    }
    let tx = Tx::new(conn, state);
    let finishes: Vec<Finish> = writes.into_iter().map(|w| w(Some(&tx))).collect();
    if !commit_delay.is_zero() {
        std::thread::sleep(commit_delay);
    }
    let committed = exec("COMMIT").map_err(|e| e.to_string());
    match &committed {
        Ok(()) => state.store_bytes = tx.store_bytes(),
        Err(e) => {
            log::error!("commit failed, {} writes refused: {e}", finishes.len());
            if let Err(e) = exec("ROLLBACK") {
                log::error!("rolling back the failed commit: {e}");
            }
        }
    }
    for finish in finishes {
        finish(committed.clone());
    }
    committed
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

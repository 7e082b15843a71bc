//! The relay's durable state: one SQLCipher database in the data directory.
//!
//! Owns opening (key, WAL, durability), the versioned schema, and group
//! commit: every write that arrives in one turn of the event loop runs inside
//! one transaction, each in its own savepoint so one failure does not undo
//! the others, and each caller is answered only after the commit is on disk.
//! The SQL of each command lives with the command in `cmd/`.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rusqlite::Connection;
use tokio::sync::oneshot;

pub mod blobs;
pub mod fences;
pub mod key_packages;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot open the database: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: the database key is wrong, or this is not a qpc database")]
    WrongKey { path: PathBuf },
    #[error(
        "{path}: schema version {found} is newer than this qpc-server knows ({known}); upgrade qpc-server"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is closed (the relay is shutting down)")]
    Closed,
    #[error("database commit failed: {0}")]
    CommitFailed(String),
}

/// Versioned schema; entry N migrates version N to N+1. Never edit a
/// released entry: append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: identities, accounts, key packages, hybrid keys, queues.
    "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE identities (
        identity_key BLOB PRIMARY KEY,
        created_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        opaque_record BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE account_keys (
        identity_key BLOB PRIMARY KEY,
        username TEXT NOT NULL,
        added_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX account_keys_by_user ON account_keys (username, added_at_ms);
     CREATE TABLE registration_tokens (
        token_hash BLOB PRIMARY KEY,
        created_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE key_packages (
        id INTEGER PRIMARY KEY,
        identity_key BLOB NOT NULL,
        package BLOB NOT NULL
     );
     CREATE INDEX key_packages_by_identity ON key_packages (identity_key, id);
     CREATE TABLE hybrid_keys (
        identity_key BLOB PRIMARY KEY,
        public_key BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE queue_heads (
        recipient BLOB PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        msgs INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE TABLE messages (
        recipient BLOB NOT NULL,
        seq INTEGER NOT NULL,
        sender BLOB NOT NULL,
        channel_id BLOB NOT NULL,
        client_msg_id BLOB,
        payload BLOB NOT NULL,
        enqueued_at_ms INTEGER NOT NULL,
        PRIMARY KEY (recipient, seq)
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX messages_client_id ON messages (recipient, client_msg_id)
        WHERE client_msg_id IS NOT NULL;
     CREATE INDEX messages_by_age ON messages (enqueued_at_ms);",
    // 2: commit fences per group route; last-resort KeyPackages.
    "CREATE TABLE group_fences (
        route BLOB PRIMARY KEY,
        epoch INTEGER NOT NULL,
        fence_hash BLOB NOT NULL,
        updated_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE group_commits (
        route BLOB NOT NULL,
        epoch INTEGER NOT NULL,
        client_msg_id BLOB NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (route, epoch)
     ) WITHOUT ROWID;
     ALTER TABLE key_packages ADD COLUMN last_resort INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE key_packages ADD COLUMN handed_out INTEGER NOT NULL DEFAULT 0;",
    // 3: blobs (files): metadata, chunk hashes, recipients; see store::blobs.
    "CREATE TABLE blobs (
        id BLOB PRIMARY KEY,
        owner BLOB NOT NULL,
        account TEXT NOT NULL,
        size INTEGER NOT NULL,
        chunk_size INTEGER NOT NULL,
        blob_sha256 BLOB NOT NULL,
        read_token_hash BLOB NOT NULL,
        received_chunks INTEGER NOT NULL DEFAULT 0,
        complete INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX blobs_by_account ON blobs (account, expires_at_ms);
     CREATE INDEX blobs_by_expiry ON blobs (expires_at_ms);
     CREATE TABLE blob_chunks (
        id BLOB NOT NULL,
        idx INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        PRIMARY KEY (id, idx)
     ) WITHOUT ROWID;
     CREATE TABLE blob_recipients (
        id BLOB NOT NULL,
        recipient BLOB NOT NULL,
        received INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (id, recipient)
     ) WITHOUT ROWID;",
];

type Finish = Box<dyn FnOnce(Result<(), String>)>;
type Op = Box<dyn FnOnce(&Connection) -> Finish>;

pub struct Store {
    conn: RefCell<Option<Connection>>,
    pending: RefCell<Vec<Op>>,
    flush_scheduled: Cell<bool>,
}

pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (or creates) `path`, keyed with `key` unless it is empty, and
    /// brings the schema up to date.
    pub fn open(path: &Path, key: &str) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open { path: path.into(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        if !key.is_empty() {
            conn.pragma_update(None, "key", key).map_err(open_err)?;
        }
        // The first read is where SQLCipher finds out whether the key fits.
        if conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).is_err() {
            return Err(StoreError::WrongKey { path: path.into() });
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        // FULL: a commit is on disk before the caller is answered.
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        migrate(&conn, path)?;
        Ok(Store {
            conn: RefCell::new(Some(conn)),
            pending: RefCell::default(),
            flush_scheduled: Cell::new(false),
        })
    }

    /// Runs a read against committed state.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.borrow();
        let conn = conn.as_ref().ok_or(StoreError::Closed)?;
        Ok(f(conn)?)
    }

    /// Runs `op` in the transaction of this turn of the event loop and
    /// returns its result once that transaction is committed. An `Err` from
    /// `op` rolls back only `op`'s own changes.
    pub async fn write<T, E>(
        self: &Rc<Self>,
        op: impl FnOnce(&Connection) -> Result<T, E> + 'static,
    ) -> Result<T, E>
    where
        T: 'static,
        E: From<StoreError> + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let run: Op = Box::new(move |conn| {
            let result = in_savepoint(conn, op);
            Box::new(move |committed: Result<(), String>| {
                let answer = match committed {
                    Ok(()) => result,
                    Err(e) => Err(E::from(StoreError::CommitFailed(e))),
                };
                let _ = tx.send(answer);
            })
        });
        self.pending.borrow_mut().push(run);
        if !self.flush_scheduled.replace(true) {
            let store = Rc::clone(self);
            tokio::task::spawn_local(async move {
                // Let every task woken in this turn add its write first.
                tokio::task::yield_now().await;
                store.flush();
            });
        }
        rx.await.unwrap_or_else(|_| Err(E::from(StoreError::Closed)))
    }

    /// Commits everything pending in one transaction and answers the callers.
    pub fn flush(&self) {
        self.flush_scheduled.set(false);
        let ops = std::mem::take(&mut *self.pending.borrow_mut());
        if ops.is_empty() {
            return;
        }
        let conn = self.conn.borrow();
        let Some(conn) = conn.as_ref() else {
            drop(ops); // callers see StoreError::Closed
            return;
        };
        let outcome = conn.execute_batch("BEGIN IMMEDIATE").map_err(StoreError::from).and_then(|()| {
            let finishes: Vec<Finish> = ops.into_iter().map(|op| op(conn)).collect();
            Ok(finishes)
        });
        match outcome {
            Ok(finishes) => {
                let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
                if let Err(e) = &committed {
                    log::error!("commit failed, {} writes refused: {e}", finishes.len());
                    let _ = conn.execute_batch("ROLLBACK");
                }
                for finish in finishes {
                    finish(committed.clone());
                }
            }
            Err(e) => log::error!("cannot begin a transaction: {e}"),
        }
    }

    /// Commits what is pending and closes the database (checkpointing the WAL).
    pub fn close(&self) {
        self.flush();
        if let Some(conn) = self.conn.borrow_mut().take() {
            if let Err((_, e)) = conn.close() {
                log::error!("closing the database: {e}");
            }
        }
    }
}

/// Runs `op` in a savepoint. The statements are cached: compiling them
/// again for every write was a quarter of the relay's instructions.
fn in_savepoint<T, E: From<StoreError>>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let sql = |s: &str| {
        let statements: Vec<&str> = s.split("; ").collect();
        statements
            .iter()
            .try_for_each(|one| conn.prepare_cached(one).and_then(|mut st| st.execute([])).map(|_| ()))
            .map_err(|e| E::from(StoreError::Sqlite(e)))
    };
    sql("SAVEPOINT op")?;
    let result = op(conn);
    match &result {
        Ok(_) => sql("RELEASE op")?,
        Err(_) => sql("ROLLBACK TO op; RELEASE op")?,
    }
    result
}

/// A database in memory with the whole schema, for the store's unit tests.
#[cfg(test)]
pub(crate) fn memory_db() -> Connection {
    let conn = Connection::open_in_memory().expect("an in-memory database");
    for sql in MIGRATIONS {
        conn.execute_batch(sql).expect("the migrations apply");
    }
    conn
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { path: path.into(), found, known });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        log::info!("database schema migrated to version {}", version + 1);
    }
    Ok(())
}

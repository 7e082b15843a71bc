//! Opening the database (key, WAL, durability, WAL size) and its versioned
//! schema, and what the storage thread loads once at start.

use std::path::Path;

use rusqlite::Connection;

use super::worker::{self, State};
use super::{cipher, meta, queues, StoreError};

/// Versioned schema; entry N migrates version N to N+1. Never edit a
/// released entry: append a new one.
const MIGRATIONS: &[&str] = &[
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
    // 3: sealed-sender delivery tokens (their SHA-256) per queue.
    "CREATE TABLE delivery_tokens (
        token_hash BLOB PRIMARY KEY,
        recipient BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX delivery_tokens_by_recipient ON delivery_tokens (recipient);",
    // 4: KeyPackages per ciphersuite (1: the classic one).
    "ALTER TABLE key_packages ADD COLUMN ciphersuite INTEGER NOT NULL DEFAULT 1;
     CREATE INDEX key_packages_by_suite ON key_packages (identity_key, ciphersuite, last_resort, id);",
    // 5: blobs (files): metadata, chunk hashes, recipients; see store::blobs.
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
    // 6: moderation (reports, bans) and recovery bundles; see
    // store::moderation and store::recovery.
    "CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        reporter TEXT NOT NULL,
        reported TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
     );
     CREATE INDEX reports_by_reporter ON reports (reporter);
     CREATE INDEX reports_by_reported ON reports (reported);
     CREATE TABLE bans (
        username TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE recovery_bundles (
        username TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        salt BLOB NOT NULL,
        m_cost_kib INTEGER NOT NULL,
        t_cost INTEGER NOT NULL,
        parallelism INTEGER NOT NULL,
        verifier BLOB NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        updated_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 7: key transparency: the append-only log of directory changes, the
    // revoked device keys, when each identity was last seen. Existing
    // accounts are logged by `kt::backfill` right after.
    "CREATE TABLE kt_log (
        idx INTEGER PRIMARY KEY,
        entry BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        username TEXT NOT NULL,
        kind INTEGER NOT NULL,
        identity_key BLOB
     );
     CREATE INDEX kt_log_by_user ON kt_log (username, kind, idx);
     CREATE TABLE kt_revoked (
        identity_key BLOB PRIMARY KEY,
        username TEXT NOT NULL,
        revoked_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     ALTER TABLE identities ADD COLUMN last_seen_ms INTEGER NOT NULL DEFAULT 0;",
    // 8: federation: peers, where remote identities live, the outgoing
    // queue per peer, message ids taken from peers, what was not delivered,
    // the fences of groups that live on a peer.
    "CREATE TABLE peers (
        fingerprint TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        source TEXT NOT NULL,
        added_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE remote_identities (
        identity_key BLOB PRIMARY KEY,
        peer TEXT NOT NULL,
        username TEXT NOT NULL,
        learned_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX remote_identities_by_peer ON remote_identities (peer);
     CREATE TABLE remote_fences (
        route BLOB PRIMARY KEY,
        peer TEXT NOT NULL,
        learned_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE outbound (
        id INTEGER PRIMARY KEY,
        message_id BLOB NOT NULL UNIQUE,
        peer TEXT NOT NULL,
        recipient BLOB NOT NULL,
        sender BLOB NOT NULL,
        channel_id BLOB NOT NULL,
        client_msg_id BLOB,
        payload BLOB NOT NULL,
        group_route BLOB,
        delivery_token BLOB,
        enqueued_at_ms INTEGER NOT NULL
     );
     CREATE INDEX outbound_by_peer ON outbound (peer, id);
     CREATE INDEX outbound_by_age ON outbound (enqueued_at_ms);
     CREATE UNIQUE INDEX outbound_client_id ON outbound (peer, recipient, sender, client_msg_id)
        WHERE client_msg_id IS NOT NULL;
     CREATE TABLE inbound_seen (
        peer TEXT NOT NULL,
        message_id BLOB NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (peer, message_id)
     ) WITHOUT ROWID;
     CREATE INDEX inbound_seen_by_age ON inbound_seen (at_ms);
     CREATE TABLE undelivered (
        id INTEGER PRIMARY KEY,
        sender BLOB NOT NULL,
        client_msg_id BLOB,
        recipient BLOB NOT NULL,
        peer TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
     );
     CREATE INDEX undelivered_by_sender ON undelivered (sender, id);",
    // 9: messages in a rowid table (issue 12). As a WITHOUT ROWID table its
    // rows (~350 B, over SQLite's 1/20-of-a-page rule) were also the keys of
    // its interior pages, so a leaf split rewrote three siblings and their
    // parent; now a row goes to the table's right edge, its queue position
    // to a small index. Rowid order is enqueue order, which is what expiry
    // walks, so the index by age goes.
    "CREATE TABLE messages_rowid (
        id INTEGER PRIMARY KEY,
        recipient BLOB NOT NULL,
        seq INTEGER NOT NULL,
        sender BLOB NOT NULL,
        channel_id BLOB NOT NULL,
        client_msg_id BLOB,
        payload BLOB NOT NULL,
        enqueued_at_ms INTEGER NOT NULL
     );
     INSERT INTO messages_rowid (recipient, seq, sender, channel_id, client_msg_id, payload, enqueued_at_ms)
        SELECT recipient, seq, sender, channel_id, client_msg_id, payload, enqueued_at_ms FROM messages
        ORDER BY enqueued_at_ms, recipient, seq;
     DROP TABLE messages;
     ALTER TABLE messages_rowid RENAME TO messages;
     CREATE UNIQUE INDEX messages_by_queue ON messages (recipient, seq);
     CREATE UNIQUE INDEX messages_client_id ON messages (recipient, client_msg_id)
        WHERE client_msg_id IS NOT NULL;",
];

/// The schema version that starts the key transparency log.
const KT_VERSION: i64 = 7;

/// Opens `path` for the storage thread (see [`prepare`]) and loads what the
/// thread keeps in memory, skipping the queue counters ahead if the last
/// run did not close the store cleanly.
pub fn open(path: &Path, key: &str) -> Result<(Connection, State), StoreError> {
    let open_err = |source| StoreError::Open { path: path.into(), source };
    let record = cipher::record_path(path);
    let (conn, _) = cipher::open(path, key, Some(&record), true).map_err(|e| match e {
        cipher::OpenError::WrongKey => StoreError::WrongKey { path: path.into() },
        cipher::OpenError::Sqlite(source) => open_err(source),
        cipher::OpenError::Record(source) => StoreError::Record { path: record.clone(), source },
    })?;
    prepare(&conn).map_err(open_err)?;
    migrate(&conn, path)?;
    let mut state = State { store_bytes: queues::store_bytes(&conn)?, seq_floor: meta::seq_floor(&conn)? };
    if meta::is_open(&conn)? {
        log::warn!("the relay did not stop cleanly last time; nothing answered as stored is lost");
        worker::skip_ahead(&conn, &mut state)?;
    }
    meta::set_open(&conn, true)?;
    Ok((conn, state))
}

/// Durability and flash use, for any connection (tests use in-memory ones).
pub fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the caller is answered.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The WAL is checkpointed every 256 pages (1 MiB) and then cut back to
    // 1 MiB, so it does not keep its high-water mark on flash.
    conn.pragma_update(None, "wal_autocheckpoint", 256)?;
    conn.pragma_update(None, "journal_size_limit", 1 << 20)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { path: path.into(), found, known });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        if version as i64 + 1 == KT_VERSION {
            super::kt::backfill(&tx)?;
        }
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        log::info!("database schema migrated to version {}", version + 1);
    }
    Ok(())
}

/// An in-memory database with the schema, for the store's unit tests.
#[cfg(test)]
pub fn memory() -> (Connection, State) {
    let conn = Connection::open_in_memory().unwrap();
    prepare(&conn).unwrap();
    migrate(&conn, Path::new(":memory:")).unwrap();
    let state = State { store_bytes: 0, seq_floor: 0 };
    (conn, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_migration_logs_the_accounts_a_relay_already_had() {
        let conn = Connection::open_in_memory().unwrap();
        for (version, sql) in MIGRATIONS.iter().enumerate().take(KT_VERSION as usize - 1) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version as i64 + 1).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO accounts VALUES ('bob', x'00', 5), ('alice', x'00', 1);
             INSERT INTO account_keys VALUES (zeroblob(32), 'bob', 6);",
        )
        .unwrap();
        migrate(&conn, Path::new(":memory:")).unwrap();
        let entries: Vec<qpc_proto::kt::Entry> = super::super::kt::entries(&conn, 0, 10)
            .unwrap()
            .iter()
            .map(|e| qpc_proto::kt::Entry::decode(e).unwrap())
            .collect();
        let seen: Vec<(&str, u64)> = entries.iter().map(|e| (e.username.as_str(), e.time_ms)).collect();
        assert_eq!(seen, vec![("alice", 1), ("bob", 5), ("bob", 6)]);
        assert_eq!(entries[2].key, Some([0; 32]));
        // Run again: nothing more (the migration ran once).
        migrate(&conn, Path::new(":memory:")).unwrap();
        assert_eq!(super::super::kt::size(&conn).unwrap(), 3);
    }

    #[test]
    fn the_rowid_migration_keeps_every_queue_in_order() {
        use super::super::{queues, Tx};
        let conn = Connection::open_in_memory().unwrap();
        for (version, sql) in MIGRATIONS.iter().enumerate().take(8) {
            conn.execute_batch(sql).unwrap();
            if version as i64 + 1 == KT_VERSION {
                super::super::kt::backfill(&conn).unwrap();
            }
            conn.pragma_update(None, "user_version", version as i64 + 1).unwrap();
        }
        let b = [2u8; 32];
        conn.execute_batch(
            "INSERT INTO identities (identity_key, created_at_ms) VALUES (zeroblob(32), 1);
             INSERT INTO queue_heads VALUES (zeroblob(32), 7, 2, 5);
             INSERT INTO messages VALUES (zeroblob(32), 7, x'09', x'63', x'6964', x'616263', 30),
                                         (zeroblob(32), 6, x'09', x'63', NULL, x'6465', 20),
                                         (x'0202020202020202020202020202020202020202020202020202020202020202',
                                          1, x'09', x'63', NULL, x'66', 10);",
        )
        .unwrap();
        migrate(&conn, Path::new(":memory:")).unwrap();
        let zero = [0u8; 32];
        let p = queues::page(&conn, &zero, None, 10, 1000).unwrap();
        let seen: Vec<(u64, &[u8])> = p.messages.iter().map(|e| (e.seq, e.payload.as_slice())).collect();
        assert_eq!(seen, [(6, &b"de"[..]), (7, &b"abc"[..])]);
        assert_eq!(queues::page(&conn, &b, None, 10, 1000).unwrap().messages.len(), 1);
        // The client id still makes a retry a duplicate, and the counter goes on.
        let state = super::super::worker::State { store_bytes: 5, seq_floor: 0 };
        let tx = Tx::new(&conn, &state);
        let quota = queues::Quota { queue_messages: 10, queue_bytes: 100, store_bytes: 100 };
        let m = |id: Option<&[u8]>| queues::NewMessage {
            sender: [9; 32],
            channel_id: b"c".to_vec(),
            client_msg_id: id.map(<[u8]>::to_vec),
            payload: b"x".to_vec(),
        };
        assert!(queues::append(&tx, &quota, &zero, &m(Some(b"id")), 40).unwrap().duplicate);
        assert_eq!(queues::append(&tx, &quota, &zero, &m(None), 40).unwrap().seq, 8);
        // Expiry walks the migrated rows in enqueue order.
        assert_eq!(queues::expire_before(&tx, 25).unwrap(), 2);
        assert!(queues::page(&conn, &b, None, 10, 1000).unwrap().messages.is_empty());
    }
}

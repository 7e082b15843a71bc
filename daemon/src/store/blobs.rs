//! Blob metadata: what the relay knows of each stored file (its bytes live
//! in the blob directory, see `cmd::blob`). One row per blob: owner, the
//! account its bytes count against, declared size, chunk size, blob hash,
//! the SHA-256 of its read token, how many chunks have arrived, whether it
//! is complete, and when it expires; one row per arrived chunk with its
//! SHA-256; one row per recipient it was announced to.
//!
//! Invariants: a blob's declared size counts against the caps from its
//! start, so a limit refuses before any byte is stored; a blob past its
//! expiry is treated as gone everywhere (it neither answers nor counts)
//! until the sweep deletes its row and file; chunks arrive in order, so
//! `received_chunks` is the length of the prefix the relay holds.

use rusqlite::{Connection, OptionalExtension};

/// A blob as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub id: Vec<u8>,
    pub owner: [u8; 32],
    pub size: u64,
    pub chunk_size: u32,
    pub blob_sha256: Vec<u8>,
    pub read_token_hash: Vec<u8>,
    pub received_chunks: u64,
    pub complete: bool,
    pub expires_at_ms: i64,
}

impl Blob {
    /// How many chunks the whole blob has.
    pub fn chunks(&self) -> u64 {
        chunk_count(self.size, self.chunk_size)
    }

    /// Bytes of chunk `index` (the last may be shorter).
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index.saturating_mul(u64::from(self.chunk_size));
        self.size.saturating_sub(start).min(u64::from(self.chunk_size))
    }
}

pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size.max(1)))
}

/// A blob asked for by its uploader.
pub struct NewBlob<'a> {
    pub id: &'a [u8],
    pub owner: [u8; 32],
    /// What the per-account cap counts: the username, or the identity in hex.
    pub account: &'a str,
    pub size: u64,
    pub chunk_size: u32,
    pub blob_sha256: &'a [u8],
    pub read_token_hash: &'a [u8],
    pub recipients: &'a [[u8; 32]],
    pub expires_at_ms: i64,
}

/// The caps a new blob must fit in.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub account_bytes: u64,
    pub total_bytes: u64,
}

/// Why a start was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StartRefused {
    /// Another identity holds a blob under this id.
    Taken,
    /// A blob under this id exists with another size, chunk size, hash or token.
    Mismatch,
    /// The account's blobs would pass its cap: (bytes held now, cap).
    Account { held: u64, cap: u64 },
    /// All blobs would pass the relay's cap: (bytes held now, cap).
    Total { held: u64, cap: u64 },
}

/// What a start found or made.
#[derive(Debug, PartialEq, Eq)]
pub struct Started {
    pub blob: Blob,
    /// False when an upload under this id was already there (a resume).
    pub new: bool,
}

fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

const COLUMNS: &str =
    "id, owner, size, chunk_size, blob_sha256, read_token_hash, received_chunks, complete, expires_at_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Blob> {
    let owner: Vec<u8> = r.get(1)?;
    Ok(Blob {
        id: r.get(0)?,
        owner: owner.as_slice().try_into().unwrap_or([0; 32]),
        size: from_sql(r.get(2)?),
        chunk_size: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        blob_sha256: r.get(4)?,
        read_token_hash: r.get(5)?,
        received_chunks: from_sql(r.get(6)?),
        complete: r.get(7)?,
        expires_at_ms: r.get(8)?,
    })
}

/// The live (unexpired) blob `id`.
pub fn get(c: &Connection, id: &[u8], now_ms: i64) -> rusqlite::Result<Option<Blob>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM blobs WHERE id = ?1 AND expires_at_ms > ?2"))?
        .query_row((id, now_ms), row)
        .optional()
}

fn held_bytes(c: &Connection, account: Option<&str>, now_ms: i64) -> rusqlite::Result<u64> {
    let n: i64 = match account {
        Some(a) => c
            .prepare_cached(
                "SELECT coalesce(sum(size), 0) FROM blobs WHERE account = ?1 AND expires_at_ms > ?2",
            )?
            .query_row((a, now_ms), |r| r.get(0))?,
        None => c
            .prepare_cached("SELECT coalesce(sum(size), 0) FROM blobs WHERE expires_at_ms > ?1")?
            .query_row([now_ms], |r| r.get(0))?,
    };
    Ok(from_sql(n))
}

fn add_recipients(c: &Connection, id: &[u8], recipients: &[[u8; 32]]) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO blob_recipients (id, recipient, received) VALUES (?1, ?2, 0)",
    )?;
    for r in recipients {
        insert.execute((id, &r[..]))?;
    }
    Ok(())
}

/// Starts the upload of `new`, or finds the one already under its id (a
/// resume). Caps are checked only for a new blob. An expired row under the
/// same id is replaced (its file must be removed by the caller).
pub fn start(
    c: &Connection,
    new: &NewBlob<'_>,
    caps: Caps,
    now_ms: i64,
) -> rusqlite::Result<Result<Started, StartRefused>> {
    if let Some(blob) = get(c, new.id, now_ms)? {
        if blob.owner != new.owner {
            return Ok(Err(StartRefused::Taken));
        }
        if blob.size != new.size
            || blob.chunk_size != new.chunk_size
            || blob.blob_sha256 != new.blob_sha256
            || blob.read_token_hash != new.read_token_hash
        {
            return Ok(Err(StartRefused::Mismatch));
        }
        add_recipients(c, new.id, new.recipients)?;
        return Ok(Ok(Started { blob, new: false }));
    }
    let account_held = held_bytes(c, Some(new.account), now_ms)?;
    if account_held.saturating_add(new.size) > caps.account_bytes {
        return Ok(Err(StartRefused::Account { held: account_held, cap: caps.account_bytes }));
    }
    let total_held = held_bytes(c, None, now_ms)?;
    if total_held.saturating_add(new.size) > caps.total_bytes {
        return Ok(Err(StartRefused::Total { held: total_held, cap: caps.total_bytes }));
    }
    delete(c, new.id)?;
    c.prepare_cached(
        "INSERT INTO blobs (id, owner, account, size, chunk_size, blob_sha256, read_token_hash,
                            received_chunks, complete, created_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8, ?9)",
    )?
    .execute((
        new.id,
        &new.owner[..],
        new.account,
        to_sql(new.size),
        i64::from(new.chunk_size),
        new.blob_sha256,
        new.read_token_hash,
        now_ms,
        new.expires_at_ms,
    ))?;
    add_recipients(c, new.id, new.recipients)?;
    let blob = get(c, new.id, now_ms)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(Ok(Started { blob, new: true }))
}

/// Records chunk `index` (the next one) as on disk with hash `sha256`.
pub fn add_chunk(c: &Connection, id: &[u8], index: u64, sha256: &[u8]) -> rusqlite::Result<u64> {
    c.prepare_cached("INSERT OR REPLACE INTO blob_chunks (id, idx, sha256) VALUES (?1, ?2, ?3)")?
        .execute((id, to_sql(index), sha256))?;
    let received = index.saturating_add(1);
    c.prepare_cached("UPDATE blobs SET received_chunks = ?2 WHERE id = ?1 AND received_chunks < ?2")?
        .execute((id, to_sql(received)))?;
    Ok(received)
}

/// The SHA-256 of chunk `index` as uploaded.
pub fn chunk_hash(c: &Connection, id: &[u8], index: u64) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT sha256 FROM blob_chunks WHERE id = ?1 AND idx = ?2")?
        .query_row((id, to_sql(index)), |r| r.get(0))
        .optional()
}

/// The chunk hashes in order, concatenated: what the blob hash covers.
pub fn chunk_hashes(c: &Connection, id: &[u8]) -> rusqlite::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut st = c.prepare_cached("SELECT sha256 FROM blob_chunks WHERE id = ?1 ORDER BY idx")?;
    let mut rows = st.query([id])?;
    while let Some(r) = rows.next()? {
        all.extend_from_slice(&r.get::<_, Vec<u8>>(0)?);
    }
    Ok(all)
}

/// Offers the blob to readers.
pub fn mark_complete(c: &Connection, id: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE blobs SET complete = 1 WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Records that `recipient` has the blob; true when every announced
/// recipient has it now (and at least one was announced).
pub fn mark_received(c: &Connection, id: &[u8], recipient: &[u8; 32]) -> rusqlite::Result<bool> {
    c.prepare_cached("UPDATE blob_recipients SET received = 1 WHERE id = ?1 AND recipient = ?2")?
        .execute((id, &recipient[..]))?;
    let (all, received): (i64, i64) = c
        .prepare_cached("SELECT count(*), coalesce(sum(received), 0) FROM blob_recipients WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(all > 0 && all == received)
}

/// Forgets blob `id` (its file is the caller's to remove).
pub fn delete(c: &Connection, id: &[u8]) -> rusqlite::Result<()> {
    for sql in [
        "DELETE FROM blob_chunks WHERE id = ?1",
        "DELETE FROM blob_recipients WHERE id = ?1",
        "DELETE FROM blobs WHERE id = ?1",
    ] {
        c.prepare_cached(sql)?.execute([id])?;
    }
    Ok(())
}

/// Deletes the rows of every blob expired by `now_ms`; returns their ids
/// (whose files the caller removes).
pub fn expire(c: &Connection, now_ms: i64) -> rusqlite::Result<Vec<Vec<u8>>> {
    let ids: Vec<Vec<u8>> = c
        .prepare_cached("SELECT id FROM blobs WHERE expires_at_ms <= ?1")?
        .query_map([now_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in &ids {
        delete(c, id)?;
    }
    Ok(ids)
}

/// Whether a row (live or expired) exists for `id`: a file without one is
/// an orphan.
pub fn known(c: &Connection, id: &[u8]) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM blobs WHERE id = ?1)")?.query_row([id], |r| r.get(0))
}

/// Live blobs and their declared bytes.
pub fn totals(c: &Connection, now_ms: i64) -> rusqlite::Result<(u64, u64)> {
    let (n, bytes): (i64, i64) = c
        .prepare_cached("SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE expires_at_ms > ?1")?
        .query_row([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((from_sql(n), from_sql(bytes)))
}

/// Bytes that unfinished uploads have yet to write: what the disk must keep
/// free for them.
pub fn pending_bytes(c: &Connection, now_ms: i64) -> rusqlite::Result<u64> {
    let n: i64 = c
        .prepare_cached(
            "SELECT coalesce(sum(max(size - received_chunks * chunk_size, 0)), 0) FROM blobs
             WHERE complete = 0 AND expires_at_ms > ?1",
        )?
        .query_row([now_ms], |r| r.get(0))?;
    Ok(from_sql(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::memory_db as db;

    const CAPS: Caps = Caps { account_bytes: 1000, total_bytes: 1500 };

    fn new<'a>(id: &'a [u8], owner: u8, account: &'a str, size: u64, rcpt: &'a [[u8; 32]]) -> NewBlob<'a> {
        NewBlob {
            id,
            owner: [owner; 32],
            account,
            size,
            chunk_size: 100,
            blob_sha256: &[1; 32],
            read_token_hash: &[2; 32],
            recipients: rcpt,
            expires_at_ms: 1000,
        }
    }

    #[test]
    fn caps_count_declared_bytes_and_expired_blobs_do_not_count() {
        let c = db();
        let started = start(&c, &new(b"a", 1, "alice", 600, &[]), CAPS, 10).unwrap().unwrap();
        assert!(started.new);
        assert_eq!(started.blob.chunks(), 6);
        let over = start(&c, &new(b"b", 1, "alice", 401, &[]), CAPS, 10).unwrap();
        assert_eq!(over, Err(StartRefused::Account { held: 600, cap: 1000 }));
        start(&c, &new(b"c", 2, "bob", 800, &[]), CAPS, 10).unwrap().unwrap();
        let full = start(&c, &new(b"d", 3, "carol", 200, &[]), CAPS, 10).unwrap();
        assert_eq!(full, Err(StartRefused::Total { held: 1400, cap: 1500 }));
        assert_eq!(totals(&c, 10).unwrap(), (2, 1400));
        // Past their expiry they neither answer nor count.
        assert_eq!(get(&c, b"a", 1000).unwrap(), None);
        assert_eq!(totals(&c, 1000).unwrap(), (0, 0));
        let later = NewBlob { expires_at_ms: 5000, ..new(b"d", 3, "carol", 200, &[]) };
        assert!(start(&c, &later, CAPS, 1000).unwrap().unwrap().new);
        let gone = expire(&c, 1000).unwrap();
        assert_eq!(gone.len(), 2);
        assert!(!known(&c, b"a").unwrap());
    }

    #[test]
    fn a_resume_finds_the_upload_and_strangers_cannot_take_its_id() {
        let c = db();
        start(&c, &new(b"a", 1, "alice", 250, &[]), CAPS, 10).unwrap().unwrap();
        assert_eq!(add_chunk(&c, b"a", 0, &[7; 32]).unwrap(), 1);
        let again = start(&c, &new(b"a", 1, "alice", 250, &[]), CAPS, 20).unwrap().unwrap();
        assert!(!again.new);
        assert_eq!(again.blob.received_chunks, 1);
        assert_eq!(again.blob.chunk_len(2), 50);
        assert_eq!(pending_bytes(&c, 20).unwrap(), 150);
        assert_eq!(start(&c, &new(b"a", 2, "bob", 250, &[]), CAPS, 20).unwrap(), Err(StartRefused::Taken));
        assert_eq!(
            start(&c, &new(b"a", 1, "alice", 251, &[]), CAPS, 20).unwrap(),
            Err(StartRefused::Mismatch)
        );
        assert_eq!(chunk_hash(&c, b"a", 0).unwrap(), Some(vec![7; 32]));
        assert_eq!(chunk_hash(&c, b"a", 1).unwrap(), None);
    }

    #[test]
    fn received_by_every_recipient_means_done() {
        let c = db();
        let rcpt = [[5u8; 32], [6u8; 32]];
        start(&c, &new(b"a", 1, "alice", 100, &rcpt[..1]), CAPS, 10).unwrap().unwrap();
        // A resumed start adds recipients.
        start(&c, &new(b"a", 1, "alice", 100, &rcpt), CAPS, 10).unwrap().unwrap();
        assert!(!mark_received(&c, b"a", &[9; 32]).unwrap());
        assert!(!mark_received(&c, b"a", &rcpt[0]).unwrap());
        assert!(mark_received(&c, b"a", &rcpt[1]).unwrap());
        start(&c, &new(b"b", 1, "alice", 100, &[]), CAPS, 10).unwrap().unwrap();
        assert!(!mark_received(&c, b"b", &rcpt[0]).unwrap(), "no recipients: only the lifetime ends it");
    }
}

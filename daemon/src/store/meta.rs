//! Small facts of the relay itself: its OPAQUE server setup, whether the
//! last run closed the store cleanly, where new queues start counting, and
//! the totals the status page shows.

use rusqlite::{Connection, OptionalExtension};

fn get(c: &Connection, key: &str) -> rusqlite::Result<Option<rusqlite::types::Value>> {
    c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()
}

fn set(c: &Connection, key: &str, value: impl rusqlite::ToSql) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute((key, value))?;
    Ok(())
}

fn int(v: Option<rusqlite::types::Value>) -> i64 {
    match v {
        Some(rusqlite::types::Value::Integer(n)) => n,
        _ => 0,
    }
}

/// The stored OPAQUE server setup, if one was made.
pub fn opaque_setup(c: &Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(match get(c, "opaque_setup")? {
        Some(rusqlite::types::Value::Blob(b)) => Some(b),
        _ => None,
    })
}

pub fn set_opaque_setup(c: &Connection, bytes: &[u8]) -> rusqlite::Result<()> {
    set(c, "opaque_setup", bytes)
}

/// Whether the store is marked as in use (set at open, cleared at a clean close).
pub fn is_open(c: &Connection) -> rusqlite::Result<bool> {
    Ok(int(get(c, "open")?) != 0)
}

pub fn set_open(c: &Connection, open: bool) -> rusqlite::Result<()> {
    set(c, "open", i64::from(open))
}

/// The counter a new queue starts from.
pub fn seq_floor(c: &Connection) -> rusqlite::Result<i64> {
    Ok(int(get(c, "seq_floor")?))
}

pub fn set_seq_floor(c: &Connection, floor: i64) -> rusqlite::Result<()> {
    set(c, "seq_floor", floor)
}

/// What the status page counts.
pub struct Totals {
    pub accounts: u64,
    pub identities: u64,
    pub queued_messages: u64,
    pub queued_bytes: u64,
}

pub fn totals(c: &Connection) -> rusqlite::Result<Totals> {
    c.query_row(
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM identities),
                (SELECT coalesce(sum(msgs), 0) FROM queue_heads),
                (SELECT coalesce(sum(bytes), 0) FROM queue_heads)",
        [],
        |r| {
            Ok(Totals {
                accounts: r.get(0)?,
                identities: r.get(1)?,
                queued_messages: r.get(2)?,
                queued_bytes: r.get(3)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_round_trip() {
        let (c, _) = super::super::schema::memory();
        assert_eq!(opaque_setup(&c).unwrap(), None);
        set_opaque_setup(&c, b"setup").unwrap();
        assert_eq!(opaque_setup(&c).unwrap().as_deref(), Some(&b"setup"[..]));
        assert!(!is_open(&c).unwrap());
        set_open(&c, true).unwrap();
        assert!(is_open(&c).unwrap());
        set_seq_floor(&c, 42).unwrap();
        assert_eq!(seq_floor(&c).unwrap(), 42);
        let t = totals(&c).unwrap();
        assert_eq!((t.accounts, t.identities, t.queued_messages, t.queued_bytes), (0, 0, 0, 0));
    }
}

//! Usernames to device identity keys and back (what `ResolveUser` and
//! `ResolveIdentity` answer, and who owns a key when one is bound).

use rusqlite::{Connection, OptionalExtension};

/// The account `key` is bound to, if any.
pub fn owner_of(c: &Connection, key: &[u8; 32]) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT username FROM account_keys WHERE identity_key = ?1")?
        .query_row([&key[..]], |r| r.get(0))
        .optional()
}

/// The device keys of `username`, oldest first.
pub fn keys_of(c: &Connection, username: &str) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt =
        c.prepare_cached("SELECT identity_key FROM account_keys WHERE username = ?1 ORDER BY added_at_ms")?;
    let keys = stmt.query_map([username], |r| r.get(0))?.collect();
    keys
}

/// Binds `key` to `username` as one more device, and logs it (key
/// transparency).
pub fn bind(c: &Connection, key: &[u8; 32], username: &str, now_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO account_keys (identity_key, username, added_at_ms) VALUES (?1, ?2, ?3)")?
        .execute((&key[..], username, now_ms))?;
    super::kt::record(c, qpc_proto::kt::Kind::DeviceAdded, username, Some(key), now_ms)?;
    Ok(())
}

/// Unbinds `key` (revoked; `kt::revoke` logs it).
pub(super) fn unbind(c: &Connection, key: &[u8; 32]) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM account_keys WHERE identity_key = ?1")?.execute([&key[..]])?;
    Ok(())
}

/// A device of an account: key, when it was added, when it last proved
/// itself (0: not since it was added).
pub type DeviceRow = (Vec<u8>, i64, i64);

/// The devices of `username`, oldest first.
pub fn devices_of(c: &Connection, username: &str) -> rusqlite::Result<Vec<DeviceRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT k.identity_key, k.added_at_ms, coalesce(i.last_seen_ms, 0) FROM account_keys k
         LEFT JOIN identities i ON i.identity_key = k.identity_key
         WHERE k.username = ?1 ORDER BY k.added_at_ms",
    )?;
    let rows = stmt.query_map([username], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect();
    rows
}

/// How many device keys `username` has bound.
pub fn count_keys(c: &Connection, username: &str) -> rusqlite::Result<u32> {
    c.prepare_cached("SELECT count(*) FROM account_keys WHERE username = ?1")?
        .query_row([username], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_both_ways() {
        let (c, _) = super::super::schema::memory();
        bind(&c, &[1; 32], "alice", 1).unwrap();
        bind(&c, &[2; 32], "alice", 2).unwrap();
        assert!(bind(&c, &[2; 32], "bob", 3).is_err(), "a key belongs to one account");
        assert_eq!(keys_of(&c, "alice").unwrap(), vec![vec![1; 32], vec![2; 32]]);
        assert_eq!(count_keys(&c, "alice").unwrap(), 2);
        assert_eq!(owner_of(&c, &[2; 32]).unwrap().as_deref(), Some("alice"));
        assert_eq!(owner_of(&c, &[3; 32]).unwrap(), None);
        assert!(keys_of(&c, "bob").unwrap().is_empty());
    }
}

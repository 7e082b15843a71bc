//! Identities that have used the relay (proven their key once): only they
//! can be sent to.

use rusqlite::Connection;

/// Records `key` as known (and seen now).
pub fn insert(c: &Connection, key: &[u8; 32], now_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO identities (identity_key, created_at_ms, last_seen_ms) VALUES (?1, ?2, ?2)
         ON CONFLICT (identity_key) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
    )?
    .execute((&key[..], now_ms))?;
    Ok(())
}

pub fn exists(c: &Connection, key: &[u8; 32]) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM identities WHERE identity_key = ?1)")?
        .query_row([&key[..]], |r| r.get(0))
}

/// Forgets `key` (its account is gone).
pub fn delete(c: &Connection, key: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM identities WHERE identity_key = ?1")?.execute([key])?;
    Ok(())
}

/// Identities that belong to no account (open registration).
pub fn count_unbound(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row(
        "SELECT count(*) FROM identities WHERE identity_key NOT IN (SELECT identity_key FROM account_keys)",
        [],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_is_idempotent_and_delete_forgets() {
        let (c, _) = super::super::schema::memory();
        let k = [3u8; 32];
        assert!(!exists(&c, &k).unwrap());
        insert(&c, &k, 1).unwrap();
        insert(&c, &k, 2).unwrap();
        assert!(exists(&c, &k).unwrap());
        assert_eq!(count_unbound(&c).unwrap(), 1);
        delete(&c, &k).unwrap();
        assert!(!exists(&c, &k).unwrap());
    }
}

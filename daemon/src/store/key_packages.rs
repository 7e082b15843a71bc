//! KeyPackages: a pool per identity, each handed out once and deleted, plus
//! at most one last-resort package that is handed out only when the pool is
//! empty and kept (RFC 9420 section 16.8), marked as used so that its device
//! knows to replace it.

use rusqlite::{Connection, OptionalExtension};

/// What an identity holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Pool packages (the cap counts these only).
    pub available: u32,
    pub last_resort: bool,
    pub last_resort_used: bool,
}

pub fn held(c: &Connection, identity: &[u8; 32]) -> rusqlite::Result<Held> {
    c.prepare_cached(
        "SELECT coalesce(sum(last_resort = 0), 0), coalesce(max(last_resort), 0),
                coalesce(max(last_resort AND handed_out), 0)
         FROM key_packages WHERE identity_key = ?1",
    )?
    .query_row([&identity[..]], |r| {
        Ok(Held { available: r.get(0)?, last_resort: r.get(1)?, last_resort_used: r.get(2)? })
    })
}

/// Adds a pool package; `None` when the identity already holds `cap`.
pub fn add_to_pool(
    c: &Connection,
    identity: &[u8; 32],
    package: &[u8],
    cap: u32,
) -> rusqlite::Result<Option<u32>> {
    let available = held(c, identity)?.available;
    if available >= cap {
        return Ok(None);
    }
    c.prepare_cached("INSERT INTO key_packages (identity_key, package) VALUES (?1, ?2)")?
        .execute((&identity[..], package))?;
    Ok(Some(available + 1))
}

/// Replaces the identity's last-resort package; returns the pool size.
pub fn set_last_resort(c: &Connection, identity: &[u8; 32], package: &[u8]) -> rusqlite::Result<u32> {
    c.prepare_cached("DELETE FROM key_packages WHERE identity_key = ?1 AND last_resort = 1")?
        .execute([&identity[..]])?;
    c.prepare_cached("INSERT INTO key_packages (identity_key, package, last_resort) VALUES (?1, ?2, 1)")?
        .execute((&identity[..], package))?;
    Ok(held(c, identity)?.available)
}

/// Hands out one package of `identity`: the oldest of the pool (deleted),
/// else the last-resort one (kept, marked used). The flag says which.
pub fn take(c: &Connection, identity: &[u8; 32]) -> rusqlite::Result<Option<(Vec<u8>, bool)>> {
    let pooled = c
        .prepare_cached(
            "DELETE FROM key_packages WHERE id =
               (SELECT id FROM key_packages WHERE identity_key = ?1 AND last_resort = 0 ORDER BY id LIMIT 1)
             RETURNING package",
        )?
        .query_row([&identity[..]], |r| r.get::<_, Vec<u8>>(0))
        .optional()?;
    if let Some(package) = pooled {
        return Ok(Some((package, false)));
    }
    let last = c
        .prepare_cached(
            "UPDATE key_packages SET handed_out = 1 WHERE identity_key = ?1 AND last_resort = 1 RETURNING package",
        )?
        .query_row([&identity[..]], |r| r.get::<_, Vec<u8>>(0))
        .optional()?;
    Ok(last.map(|package| (package, true)))
}

/// Removes every package of `identity` (its account is gone).
pub fn delete_all(c: &Connection, identity: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM key_packages WHERE identity_key = ?1")?.execute([identity])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::memory_db as db;

    #[test]
    fn pool_then_last_resort_which_is_kept_and_replaced() {
        let c = db();
        let me = [1u8; 32];
        assert_eq!(take(&c, &me).unwrap(), None);
        assert_eq!(add_to_pool(&c, &me, b"p1", 2).unwrap(), Some(1));
        assert_eq!(add_to_pool(&c, &me, b"p2", 2).unwrap(), Some(2));
        assert_eq!(add_to_pool(&c, &me, b"p3", 2).unwrap(), None, "the cap counts the pool");
        assert_eq!(set_last_resort(&c, &me, b"lr1").unwrap(), 2, "not counted");
        assert_eq!(held(&c, &me).unwrap(), Held { available: 2, last_resort: true, last_resort_used: false });

        assert_eq!(take(&c, &me).unwrap(), Some((b"p1".to_vec(), false)));
        assert_eq!(take(&c, &me).unwrap(), Some((b"p2".to_vec(), false)));
        for _ in 0..3 {
            assert_eq!(take(&c, &me).unwrap(), Some((b"lr1".to_vec(), true)));
        }
        assert_eq!(held(&c, &me).unwrap(), Held { available: 0, last_resort: true, last_resort_used: true });
        set_last_resort(&c, &me, b"lr2").unwrap();
        assert_eq!(held(&c, &me).unwrap(), Held { available: 0, last_resort: true, last_resort_used: false });
        assert_eq!(take(&c, &me).unwrap(), Some((b"lr2".to_vec(), true)));
        // Another identity's packages are its own.
        assert_eq!(take(&c, &[2u8; 32]).unwrap(), None);
    }
}

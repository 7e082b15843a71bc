//! Single-use MLS KeyPackages: a pool per identity, handed out oldest first,
//! each exactly once.

use rusqlite::{Connection, OptionalExtension};

pub fn count(c: &Connection, identity: &[u8; 32]) -> rusqlite::Result<u32> {
    c.prepare_cached("SELECT count(*) FROM key_packages WHERE identity_key = ?1")?
        .query_row([&identity[..]], |r| r.get(0))
}

pub fn insert(c: &Connection, identity: &[u8; 32], package: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO key_packages (identity_key, package) VALUES (?1, ?2)")?
        .execute((&identity[..], package))?;
    Ok(())
}

/// Removes and returns `identity`'s oldest KeyPackage, atomically.
pub fn take_oldest(c: &Connection, identity: &[u8; 32]) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached(
        "DELETE FROM key_packages WHERE id =
           (SELECT id FROM key_packages WHERE identity_key = ?1 ORDER BY id LIMIT 1)
         RETURNING package",
    )?
    .query_row([&identity[..]], |r| r.get(0))
    .optional()
}

pub fn delete_all(c: &Connection, identity: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM key_packages WHERE identity_key = ?1")?.execute([identity])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_package_is_handed_out_once_oldest_first() {
        let (c, _) = super::super::schema::memory();
        let me = [1u8; 32];
        insert(&c, &me, b"first").unwrap();
        insert(&c, &me, b"second").unwrap();
        assert_eq!(count(&c, &me).unwrap(), 2);
        assert_eq!(take_oldest(&c, &me).unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(take_oldest(&c, &me).unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(take_oldest(&c, &me).unwrap(), None);
        insert(&c, &me, b"third").unwrap();
        delete_all(&c, &me).unwrap();
        assert_eq!(count(&c, &me).unwrap(), 0);
    }
}

//! One opaque (post-quantum) public key per identity, replaced on upload.

use rusqlite::{Connection, OptionalExtension};

pub fn put(c: &Connection, identity: &[u8; 32], public_key: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO hybrid_keys (identity_key, public_key) VALUES (?1, ?2)")?
        .execute((&identity[..], public_key))?;
    Ok(())
}

pub fn get(c: &Connection, identity: &[u8; 32]) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT public_key FROM hybrid_keys WHERE identity_key = ?1")?
        .query_row([&identity[..]], |r| r.get(0))
        .optional()
}

pub fn delete(c: &Connection, identity: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM hybrid_keys WHERE identity_key = ?1")?.execute([identity])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_replaces() {
        let (c, _) = super::super::schema::memory();
        assert_eq!(get(&c, &[1; 32]).unwrap(), None);
        put(&c, &[1; 32], b"a").unwrap();
        put(&c, &[1; 32], b"b").unwrap();
        assert_eq!(get(&c, &[1; 32]).unwrap().as_deref(), Some(&b"b"[..]));
        delete(&c, &[1; 32]).unwrap();
        assert_eq!(get(&c, &[1; 32]).unwrap(), None);
    }
}

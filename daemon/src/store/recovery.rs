//! Recovery bundles, one per account: what the client encrypted under its
//! recovery code, the Argon2id salt and costs to derive the key again, and
//! the SHA-256 of the verifier key. Never the code, never a key.

use rusqlite::{Connection, OptionalExtension};

/// One stored bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub version: u32,
    pub salt: Vec<u8>,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub parallelism: u32,
    pub verifier: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Bundle {
    /// What it takes of the store (the quota counts this).
    pub fn stored_bytes(&self) -> u64 {
        (self.salt.len() + self.verifier.len() + self.nonce.len() + self.ciphertext.len()) as u64
    }
}

/// Stores `bundle` for `username`, replacing one already there; whether one was.
pub fn put(c: &Connection, username: &str, bundle: &Bundle, now_ms: i64) -> rusqlite::Result<bool> {
    let replaced = get(c, username)?.is_some();
    c.prepare_cached(
        "INSERT OR REPLACE INTO recovery_bundles
         (username, version, salt, m_cost_kib, t_cost, parallelism, verifier, nonce, ciphertext, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(rusqlite::params![
        username,
        bundle.version,
        bundle.salt,
        bundle.m_cost_kib,
        bundle.t_cost,
        bundle.parallelism,
        bundle.verifier,
        bundle.nonce,
        bundle.ciphertext,
        now_ms
    ])?;
    Ok(replaced)
}

/// The bundle of `username`, if one is stored.
pub fn get(c: &Connection, username: &str) -> rusqlite::Result<Option<Bundle>> {
    c.prepare_cached(
        "SELECT version, salt, m_cost_kib, t_cost, parallelism, verifier, nonce, ciphertext
         FROM recovery_bundles WHERE username = ?1",
    )?
    .query_row([username], |r| {
        Ok(Bundle {
            version: r.get(0)?,
            salt: r.get(1)?,
            m_cost_kib: r.get(2)?,
            t_cost: r.get(3)?,
            parallelism: r.get(4)?,
            verifier: r.get(5)?,
            nonce: r.get(6)?,
            ciphertext: r.get(7)?,
        })
    })
    .optional()
}

/// Deletes the bundle of `username`; whether there was one.
pub fn delete(c: &Connection, username: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM recovery_bundles WHERE username = ?1")?.execute([username])? > 0)
}

/// Bytes all bundles take, except `username`'s (which a new one replaces).
pub fn bytes_except(c: &Connection, username: &str) -> rusqlite::Result<u64> {
    c.prepare_cached(
        "SELECT coalesce(sum(length(salt) + length(verifier) + length(nonce) + length(ciphertext)), 0)
         FROM recovery_bundles WHERE username != ?1",
    )?
    .query_row([username], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(fill: u8) -> Bundle {
        Bundle {
            version: 1,
            salt: vec![fill; 16],
            m_cost_kib: 8,
            t_cost: 1,
            parallelism: 1,
            verifier: vec![fill; 32],
            nonce: vec![fill; 12],
            ciphertext: vec![fill; 100],
        }
    }

    #[test]
    fn a_bundle_is_stored_replaced_and_deleted() {
        let (c, _) = super::super::schema::memory();
        assert_eq!(get(&c, "alice").unwrap(), None);
        assert!(!put(&c, "alice", &sample(1), 1).unwrap());
        assert!(put(&c, "alice", &sample(2), 2).unwrap());
        assert_eq!(get(&c, "alice").unwrap(), Some(sample(2)));
        put(&c, "bob", &sample(3), 3).unwrap();
        assert_eq!(bytes_except(&c, "alice").unwrap(), sample(3).stored_bytes());
        assert!(delete(&c, "alice").unwrap());
        assert!(!delete(&c, "alice").unwrap());
        assert_eq!(get(&c, "alice").unwrap(), None);
    }
}

//! The key transparency log: every change to the directory, appended in the
//! transaction that makes the change (`accounts::create`, `directory::bind`,
//! `accounts::delete`, [`revoke`]), never updated or deleted. Entries are
//! stored encoded (`qpc_proto::kt::Entry`) with their leaf hash; the
//! username, kind and key are kept beside them only to find a user's
//! current entries. Also the revoked device keys, refused from then on, and
//! the relay's Ed25519 log key (in the encrypted database, so a backup
//! carries it and a restored relay signs with the same key).

use qpc_proto::kt::{self, Entry, Hash, Kind};
use rusqlite::{Connection, OptionalExtension};

use super::{directory, Tx};

/// Appends `entry`; its index in the log (from 0).
pub fn append(c: &Connection, entry: &Entry) -> rusqlite::Result<u64> {
    let bytes = entry.encode();
    let next = size(c)?;
    c.prepare_cached(
        "INSERT INTO kt_log (idx, entry, leaf_hash, username, kind, identity_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((
        next,
        &bytes,
        &kt::leaf_hash(&bytes)[..],
        &entry.username,
        entry.kind as u8,
        entry.key.as_ref().map(|k| &k[..]),
    ))?;
    Ok(next)
}

/// Appends the entry of a directory change made now.
pub fn record(
    c: &Connection,
    kind: Kind,
    username: &str,
    key: Option<&[u8; 32]>,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    append(
        c,
        &Entry { kind, time_ms: now_ms.max(0) as u64, username: username.to_string(), key: key.copied() },
    )
}

pub fn size(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT count(*) FROM kt_log")?.query_row([], |r| r.get(0))
}

/// Leaf hashes from index `from` on, in order (to extend an in-memory tree).
pub fn leaf_hashes_from(c: &Connection, from: u64) -> rusqlite::Result<Vec<Hash>> {
    let mut stmt = c.prepare_cached("SELECT leaf_hash FROM kt_log WHERE idx >= ?1 ORDER BY idx")?;
    let rows = stmt.query_map([from], |r| {
        let h: Vec<u8> = r.get(0)?;
        Ok(h.try_into().unwrap_or([0; 32]))
    })?;
    rows.collect()
}

/// Encoded entries `start .. start + count`.
pub fn entries(c: &Connection, start: u64, count: u32) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = c.prepare_cached("SELECT entry FROM kt_log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
    let rows = stmt.query_map([start, start.saturating_add(u64::from(count))], |r| r.get(0))?;
    rows.collect()
}

/// The entries that say what `username` is now: its latest "account
/// created" and, for each device key bound now, its latest "device added";
/// (index, encoded entry), in log order.
pub fn current_entries(c: &Connection, username: &str) -> rusqlite::Result<Vec<(u64, Vec<u8>)>> {
    let mut stmt = c.prepare_cached(
        "SELECT idx, entry FROM kt_log WHERE idx IN (
            SELECT max(idx) FROM kt_log WHERE username = ?1 AND kind = ?2
              AND EXISTS (SELECT 1 FROM accounts WHERE username = ?1)
            UNION
            SELECT max(l.idx) FROM kt_log l JOIN account_keys k ON k.identity_key = l.identity_key
             WHERE l.username = ?1 AND k.username = ?1 AND l.kind = ?3 GROUP BY l.identity_key)
         ORDER BY idx",
    )?;
    let rows = stmt.query_map((username, Kind::AccountCreated as u8, Kind::DeviceAdded as u8), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.collect()
}

/// When `key` was revoked and from which account, if it was.
pub fn revoked(c: &Connection, key: &[u8; 32]) -> rusqlite::Result<Option<(String, i64)>> {
    c.prepare_cached("SELECT username, revoked_at_ms FROM kt_revoked WHERE identity_key = ?1")?
        .query_row([&key[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Revokes device `key` of `username`: unbinds it, drops everything stored
/// for it (`accounts::forget_device`: queue, KeyPackages, hybrid key,
/// delivery tokens, the identity), remembers it as revoked and logs it. The
/// log index of the revocation entry.
pub fn revoke(tx: &Tx, username: &str, key: &[u8; 32], now_ms: i64) -> rusqlite::Result<u64> {
    super::accounts::forget_device(tx, &key[..])?;
    directory::unbind(tx, key)?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO kt_revoked (identity_key, username, revoked_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute((&key[..], username, now_ms))?;
    record(tx, Kind::DeviceRevoked, username, Some(key), now_ms)
}

/// Logs the accounts and device keys a relay had before it kept a log (run
/// once, by the migration that creates the log).
pub fn backfill(c: &Connection) -> rusqlite::Result<()> {
    let accounts: Vec<(String, i64)> = {
        let mut stmt =
            c.prepare("SELECT username, created_at_ms FROM accounts ORDER BY created_at_ms, username")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (username, at) in accounts {
        record(c, Kind::AccountCreated, &username, None, at)?;
        let mut stmt = c.prepare(
            "SELECT identity_key, added_at_ms FROM account_keys WHERE username = ?1 ORDER BY added_at_ms",
        )?;
        let keys: Vec<(Vec<u8>, i64)> =
            stmt.query_map([&username], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        for (key, at) in keys {
            if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
                record(c, Kind::DeviceAdded, &username, Some(&key), at)?;
            }
        }
    }
    Ok(())
}

/// The relay's log signing key (its 32-byte seed), if one was made.
pub fn log_key(c: &Connection) -> rusqlite::Result<Option<[u8; 32]>> {
    let v: Option<Vec<u8>> = c
        .prepare_cached("SELECT value FROM meta WHERE key = 'kt_log_key'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|v| v.try_into().ok()))
}

pub fn set_log_key(c: &Connection, seed: &[u8; 32]) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('kt_log_key', ?1)")?
        .execute([&seed[..]])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{accounts, schema};
    use super::*;

    fn decoded(c: &Connection) -> Vec<(Kind, String, Option<[u8; 32]>)> {
        entries(c, 0, 1000)
            .unwrap()
            .iter()
            .map(|e| {
                let e = Entry::decode(e).unwrap();
                (e.kind, e.username, e.key)
            })
            .collect()
    }

    #[test]
    fn every_directory_change_is_logged_and_current_entries_follow_the_directory() {
        let (c, state) = schema::memory();
        accounts::create(&c, "bob", b"rec", 1).unwrap();
        directory::bind(&c, &[1; 32], "bob", 2).unwrap();
        directory::bind(&c, &[2; 32], "bob", 3).unwrap();
        accounts::create(&c, "alice", b"rec", 4).unwrap();
        directory::bind(&c, &[3; 32], "alice", 5).unwrap();
        let tx = Tx::new(&c, &state);
        assert_eq!(revoke(&tx, "bob", &[1; 32], 6).unwrap(), 5);
        assert_eq!(revoked(&c, &[1; 32]).unwrap(), Some(("bob".into(), 6)));
        assert_eq!(directory::keys_of(&c, "bob").unwrap(), vec![vec![2; 32]]);
        let current: Vec<u64> = current_entries(&c, "bob").unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(current, vec![0, 2], "account created and the device still bound");
        accounts::delete(&tx, "alice").unwrap();
        assert_eq!(
            decoded(&c),
            vec![
                (Kind::AccountCreated, "bob".into(), None),
                (Kind::DeviceAdded, "bob".into(), Some([1; 32])),
                (Kind::DeviceAdded, "bob".into(), Some([2; 32])),
                (Kind::AccountCreated, "alice".into(), None),
                (Kind::DeviceAdded, "alice".into(), Some([3; 32])),
                (Kind::DeviceRevoked, "bob".into(), Some([1; 32])),
                (Kind::AccountDeleted, "alice".into(), None),
            ]
        );
        assert!(current_entries(&c, "alice").unwrap().is_empty());
        let hashes = leaf_hashes_from(&c, 0).unwrap();
        assert_eq!(hashes.len() as u64, size(&c).unwrap());
        assert_eq!(leaf_hashes_from(&c, 5).unwrap(), hashes[5..].to_vec());
        assert_eq!(entries(&c, 6, 10).unwrap().len(), 1);
    }

    #[test]
    fn the_log_key_is_kept() {
        let (c, _) = schema::memory();
        assert_eq!(log_key(&c).unwrap(), None);
        set_log_key(&c, &[7; 32]).unwrap();
        assert_eq!(log_key(&c).unwrap(), Some([7; 32]));
    }
}

//! OPAQUE accounts (the registration record only; never a password), the
//! one-time registration tokens (only their SHA-256), and deleting an
//! account with everything stored for its devices.

use rusqlite::{Connection, OptionalExtension};

use qpc_proto::kt::Kind;

use super::{
    delivery_tokens, directory, hybrid_keys, identities, key_packages, kt, moderation, queues, recovery, Tx,
};

pub fn exists(c: &Connection, username: &str) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM accounts WHERE username = ?1)")?
        .query_row([username], |r| r.get(0))
}

/// The OPAQUE registration record of `username`.
pub fn record(c: &Connection, username: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT opaque_record FROM accounts WHERE username = ?1")?
        .query_row([username], |r| r.get(0))
        .optional()
}

/// Creates the account and logs it (key transparency).
pub fn create(c: &Connection, username: &str, record: &[u8], now_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO accounts (username, opaque_record, created_at_ms) VALUES (?1, ?2, ?3)")?
        .execute((username, record, now_ms))?;
    kt::record(c, Kind::AccountCreated, username, None, now_ms)?;
    Ok(())
}

/// Replaces the OPAQUE record of `username` (a new password after recovery).
pub fn replace_record(c: &Connection, username: &str, record: &[u8]) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("UPDATE accounts SET opaque_record = ?2 WHERE username = ?1")?
        .execute((username, record))?
        > 0)
}

pub fn token_known(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM registration_tokens WHERE token_hash = ?1)")?
        .query_row([token_hash], |r| r.get(0))
}

/// Spends a one-time token; false if it was not there (used meanwhile).
pub fn spend_token(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM registration_tokens WHERE token_hash = ?1")?.execute([token_hash])? > 0)
}

pub fn add_token(c: &Connection, token_hash: &[u8], now_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO registration_tokens (token_hash, created_at_ms) VALUES (?1, ?2)")?
        .execute((token_hash, now_ms))?;
    Ok(())
}

/// What deleting an account removed.
#[derive(Debug, PartialEq, Eq)]
pub struct Deleted {
    pub keys: Vec<Vec<u8>>,
    pub messages: u64,
}

/// Removes `username`, its device keys and everything stored for them
/// (queues, KeyPackages, hybrid keys); `None` if there is no such account.
/// Messages the user sent others stay with their recipients.
pub fn delete(tx: &Tx, username: &str) -> rusqlite::Result<Option<Deleted>> {
    if !exists(tx, username)? {
        return Ok(None);
    }
    let keys = directory::keys_of(tx, username)?;
    let mut messages = 0;
    for key in &keys {
        messages += forget_device(tx, key)?;
    }
    tx.execute("DELETE FROM account_keys WHERE username = ?1", [username])?;
    tx.execute("DELETE FROM accounts WHERE username = ?1", [username])?;
    moderation::forget(tx, username)?;
    recovery::delete(tx, username)?;
    kt::record(tx, Kind::AccountDeleted, username, None, super::now_ms())?;
    Ok(Some(Deleted { keys, messages }))
}

/// Removes what is stored for one device key (its queue, KeyPackages,
/// hybrid key, delivery tokens, the identity itself), leaving its binding
/// to the account to the caller; the messages that were queued for it.
pub(super) fn forget_device(tx: &Tx, key: &[u8]) -> rusqlite::Result<u64> {
    let messages = queues::purge(tx, key)?;
    key_packages::delete_all(tx, key)?;
    hybrid_keys::delete(tx, key)?;
    if let Ok(key) = <&[u8; 32]>::try_from(key) {
        delivery_tokens::revoke(tx, key, None)?;
    }
    identities::delete(tx, key)?;
    Ok(messages)
}

/// After a recovery: every device key of `username` but `keep` is retired
/// (unbound, and everything stored for it removed), and what `keep` had
/// stored is removed too, since the device that held its private halves
/// (KeyPackages, queued MLS messages) is lost. Returns the keys retired.
pub fn retire_devices(tx: &Tx, username: &str, keep: &[u8; 32]) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut retired = Vec::new();
    for key in directory::keys_of(tx, username)? {
        match <&[u8; 32]>::try_from(&key[..]) {
            // A revocation (forgotten, unbound, logged), so the account's
            // peers and its own new device see the lost devices go.
            Ok(k) if k != keep => {
                kt::revoke(tx, username, k, super::now_ms())?;
                retired.push(key);
            }
            _ => {
                forget_device(tx, &key)?;
            }
        }
    }
    Ok(retired)
}

/// One (account, device key or none, messages queued for that key).
pub type UserRow = (String, Option<Vec<u8>>, u64);

/// One row per (account, device key): the key (none for an account without
/// one) and the messages queued for it; by username, oldest key first.
pub fn list(c: &Connection) -> rusqlite::Result<Vec<UserRow>> {
    let mut stmt = c.prepare(
        "SELECT a.username, k.identity_key, coalesce(q.msgs, 0)
         FROM accounts a
         LEFT JOIN account_keys k ON k.username = a.username
         LEFT JOIN queue_heads q ON q.recipient = k.identity_key
         ORDER BY a.username, k.added_at_ms",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect();
    rows
}

#[cfg(test)]
mod tests {
    use super::super::queues::{append, NewMessage, Quota};
    use super::*;

    #[test]
    fn tokens_are_spent_once() {
        let (c, _) = super::super::schema::memory();
        assert!(!token_known(&c, b"h").unwrap());
        add_token(&c, b"h", 1).unwrap();
        assert!(token_known(&c, b"h").unwrap());
        assert!(spend_token(&c, b"h").unwrap());
        assert!(!spend_token(&c, b"h").unwrap());
    }

    #[test]
    fn delete_removes_the_account_and_its_devices_state() {
        let (c, state) = super::super::schema::memory();
        let (k, other) = ([1u8; 32], [2u8; 32]);
        create(&c, "alice", b"rec", 1).unwrap();
        assert!(exists(&c, "alice").unwrap());
        assert_eq!(record(&c, "alice").unwrap().as_deref(), Some(&b"rec"[..]));
        directory::bind(&c, &k, "alice", 1).unwrap();
        identities::insert(&c, &k, 1).unwrap();
        identities::insert(&c, &other, 1).unwrap();
        key_packages::add_to_pool(&c, &k, key_packages::CLASSIC, b"kp", 10).unwrap();
        hybrid_keys::put(&c, &k, b"hk").unwrap();
        let tx = Tx::new(&c, &state);
        let quota = Quota { queue_messages: 10, queue_bytes: 100, store_bytes: 100 };
        let m =
            NewMessage { sender: other, channel_id: vec![], client_msg_id: None, payload: b"hi".to_vec() };
        append(&tx, &quota, &k, &m, 1).unwrap();
        append(&tx, &quota, &other, &NewMessage { sender: k, ..m }, 1).unwrap();
        assert_eq!(list(&c).unwrap(), vec![("alice".to_string(), Some(k.to_vec()), 1)]);
        assert_eq!(delete(&tx, "alice").unwrap(), Some(Deleted { keys: vec![k.to_vec()], messages: 1 }));
        assert_eq!(delete(&tx, "alice").unwrap(), None);
        assert!(!identities::exists(&c, &k).unwrap());
        assert_eq!(key_packages::held(&c, &k, key_packages::CLASSIC).unwrap().available, 0);
        assert_eq!(hybrid_keys::get(&c, &k).unwrap(), None);
        assert_eq!(tx.store_bytes(), 2, "what alice sent stays with its recipient");
        assert!(list(&c).unwrap().is_empty());
    }
}

//! Sealed-sender delivery tokens: the SHA-256 of each token a device handed
//! its contacts, and the queue it opens. The token itself is never stored.

use rusqlite::{Connection, OptionalExtension};

/// Registers `token_hash` for `recipient`'s queue; `None` when the queue
/// already has `cap` tokens. Registering one again changes nothing.
pub fn add(
    c: &Connection,
    token_hash: &[u8; 32],
    recipient: &[u8; 32],
    now_ms: i64,
    cap: u32,
) -> rusqlite::Result<Option<u32>> {
    let held = count(c, recipient)?;
    let known: bool = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM delivery_tokens WHERE token_hash = ?1 AND recipient = ?2)",
        )?
        .query_row((&token_hash[..], &recipient[..]), |r| r.get(0))?;
    if known {
        return Ok(Some(held));
    }
    if held >= cap {
        return Ok(None);
    }
    c.prepare_cached(
        "INSERT OR IGNORE INTO delivery_tokens (token_hash, recipient, created_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute((&token_hash[..], &recipient[..], now_ms))?;
    count(c, recipient).map(Some)
}

pub fn count(c: &Connection, recipient: &[u8; 32]) -> rusqlite::Result<u32> {
    c.prepare_cached("SELECT count(*) FROM delivery_tokens WHERE recipient = ?1")?
        .query_row([&recipient[..]], |r| r.get(0))
}

/// Revokes one token of `recipient` (or all of them with `None`).
pub fn revoke(c: &Connection, recipient: &[u8; 32], token_hash: Option<&[u8; 32]>) -> rusqlite::Result<u32> {
    let n = match token_hash {
        Some(hash) => c
            .prepare_cached("DELETE FROM delivery_tokens WHERE recipient = ?1 AND token_hash = ?2")?
            .execute((&recipient[..], &hash[..]))?,
        None => {
            c.prepare_cached("DELETE FROM delivery_tokens WHERE recipient = ?1")?.execute([&recipient[..]])?
        }
    };
    Ok(n as u32)
}

/// The queue a token opens, if it is registered.
pub fn recipient_of(c: &Connection, token_hash: &[u8; 32]) -> rusqlite::Result<Option<[u8; 32]>> {
    let found: Option<Vec<u8>> = c
        .prepare_cached("SELECT recipient FROM delivery_tokens WHERE token_hash = ?1")?
        .query_row([&token_hash[..]], |r| r.get(0))
        .optional()?;
    Ok(found.and_then(|k| k.try_into().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_one_queue_and_can_be_revoked() {
        let (c, _) = super::super::schema::memory();
        let (alice, bob) = ([1u8; 32], [2u8; 32]);
        assert_eq!(add(&c, &[7; 32], &alice, 1, 2).unwrap(), Some(1));
        assert_eq!(add(&c, &[7; 32], &alice, 1, 2).unwrap(), Some(1), "again: nothing new");
        assert_eq!(add(&c, &[8; 32], &alice, 1, 2).unwrap(), Some(2));
        assert_eq!(add(&c, &[9; 32], &alice, 1, 2).unwrap(), None, "the cap");
        assert_eq!(recipient_of(&c, &[7; 32]).unwrap(), Some(alice));
        // Bob cannot take over or revoke Alice's token.
        assert_eq!(add(&c, &[7; 32], &bob, 1, 2).unwrap(), Some(0));
        assert_eq!(recipient_of(&c, &[7; 32]).unwrap(), Some(alice));
        assert_eq!(revoke(&c, &bob, Some(&[7; 32])).unwrap(), 0);
        assert_eq!(revoke(&c, &alice, Some(&[7; 32])).unwrap(), 1);
        assert_eq!(recipient_of(&c, &[7; 32]).unwrap(), None);
        assert_eq!(revoke(&c, &alice, None).unwrap(), 1);
        assert_eq!(count(&c, &alice).unwrap(), 0);
    }
}

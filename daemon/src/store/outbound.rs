//! Federation delivery: the outgoing queue per peer (a message for a remote
//! recipient is stored here durably before its sender is answered, and
//! leaves only once the peer took it or gave up on it), the message ids
//! taken from peers (so a message forwarded twice is stored once), and
//! what could not be delivered (told once to the sender's device).
//!
//! Invariant: a row leaves `outbound` only by [`delivered`] (the peer took
//! it) or by moving to `undelivered` ([`fail`], [`expire_before`],
//! [`drop_peer`]), in the same transaction.

use rusqlite::{Connection, OptionalExtension};

/// One message queued for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub id: i64,
    pub message_id: Vec<u8>,
    pub recipient: [u8; 32],
    pub sender: [u8; 32],
    pub channel_id: Vec<u8>,
    pub client_msg_id: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The group's route when the message passed its fence here.
    pub group_route: Option<Vec<u8>>,
    /// A sealed delivery's token, for the recipient's relay to check.
    pub delivery_token: Option<Vec<u8>>,
}

/// What the peer's queue may hold at most.
#[derive(Clone, Copy, Debug)]
pub struct Cap {
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0} messages are queued for this peer, the limit")]
    Messages(u64),
    #[error("{0} bytes are queued for this peer, the limit")]
    Bytes(u64),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Queues `m` for `peer`; false when the same sender already queued the
/// same client message id for that recipient (a retry: nothing added).
pub fn push(c: &Connection, peer: &str, m: &Outgoing, cap: &Cap, now_ms: i64) -> Result<bool, PushError> {
    if let Some(id) = &m.client_msg_id {
        let known: bool = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbound WHERE peer = ?1 AND recipient = ?2 AND sender = ?3
                 AND client_msg_id = ?4)",
            )?
            .query_row((peer, &m.recipient[..], &m.sender[..], id), |r| r.get(0))?;
        if known {
            return Ok(false);
        }
    }
    let (msgs, bytes) = queued(c, peer)?;
    if msgs + 1 > cap.messages {
        return Err(PushError::Messages(cap.messages));
    }
    if bytes + m.payload.len() as u64 > cap.bytes {
        return Err(PushError::Bytes(cap.bytes));
    }
    c.prepare_cached(
        "INSERT INTO outbound (message_id, peer, recipient, sender, channel_id, client_msg_id, payload,
         enqueued_at_ms, group_route, delivery_token) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute((
        &m.message_id,
        peer,
        &m.recipient[..],
        &m.sender[..],
        &m.channel_id,
        &m.client_msg_id,
        &m.payload,
        now_ms,
        &m.group_route,
        &m.delivery_token,
    ))?;
    Ok(true)
}

/// Messages and payload bytes queued for `peer`.
pub fn queued(c: &Connection, peer: &str) -> rusqlite::Result<(u64, u64)> {
    c.prepare_cached("SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbound WHERE peer = ?1")?
        .query_row([peer], |r| Ok((r.get(0)?, r.get(1)?)))
}

fn key(bytes: Vec<u8>) -> [u8; 32] {
    bytes.try_into().unwrap_or([0; 32])
}

/// The oldest messages queued for `peer`, at most `limit`.
pub fn next(c: &Connection, peer: &str, limit: u32) -> rusqlite::Result<Vec<Outgoing>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, message_id, recipient, sender, channel_id, client_msg_id, payload, group_route, delivery_token FROM outbound
         WHERE peer = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map((peer, limit), |r| {
            Ok(Outgoing {
                id: r.get(0)?,
                message_id: r.get(1)?,
                recipient: key(r.get(2)?),
                sender: key(r.get(3)?),
                channel_id: r.get(4)?,
                client_msg_id: r.get(5)?,
                payload: r.get(6)?,
                group_route: r.get(7)?,
                delivery_token: r.get(8)?,
            })
        })?
        .collect();
    rows
}

/// The peer took message `id`.
pub fn delivered(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM outbound WHERE id = ?1")?.execute([id])?;
    Ok(())
}

fn move_to_undelivered(
    c: &Connection,
    filter: &str,
    arg: &dyn rusqlite::ToSql,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    c.prepare_cached(&format!(
        "INSERT INTO undelivered (sender, client_msg_id, recipient, peer, reason, at_ms)
         SELECT sender, client_msg_id, recipient, peer, ?2, ?3 FROM outbound WHERE {filter} ORDER BY id"
    ))?
    .execute((arg, reason, now_ms))?;
    let n = c.prepare_cached(&format!("DELETE FROM outbound WHERE {filter}"))?.execute([arg])?;
    Ok(n as u64)
}

/// The peer refused message `id` for good: its sender is told `reason`.
pub fn fail(c: &Connection, id: i64, reason: &str, now_ms: i64) -> rusqlite::Result<u64> {
    move_to_undelivered(c, "id = ?1", &id, reason, now_ms)
}

/// Gives up on every message queued before `cutoff_ms` (the TTL).
pub fn expire_before(c: &Connection, cutoff_ms: i64, now_ms: i64) -> rusqlite::Result<u64> {
    let n = move_to_undelivered(
        c,
        "enqueued_at_ms < ?1",
        &cutoff_ms,
        "not delivered within the relay's message TTL: the peer relay was unreachable or refused it",
        now_ms,
    )?;
    c.prepare_cached("DELETE FROM inbound_seen WHERE at_ms < ?1")?.execute([cutoff_ms])?;
    c.prepare_cached("DELETE FROM undelivered WHERE at_ms < ?1")?.execute([cutoff_ms])?;
    Ok(n)
}

/// Gives up on everything queued for a removed peer.
pub fn drop_peer(c: &Connection, peer: &str, now_ms: i64) -> rusqlite::Result<u64> {
    move_to_undelivered(c, "peer = ?1", &peer, "the relay's owner removed the peer relay", now_ms)
}

/// What could not be delivered for `sender`, oldest first, removed as it is
/// read (each is told once): (client_msg_id, recipient, peer, reason, at).
pub type Failure = (Vec<u8>, Vec<u8>, String, String, i64);

pub fn take_undelivered(c: &Connection, sender: &[u8; 32], limit: u32) -> rusqlite::Result<Vec<Failure>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, coalesce(client_msg_id, x''), recipient, peer, reason, at_ms FROM undelivered
         WHERE sender = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows: Vec<(i64, Failure)> = stmt
        .query_map((&sender[..], limit), |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, _) in &rows {
        c.prepare_cached("DELETE FROM undelivered WHERE id = ?1")?.execute([id])?;
    }
    Ok(rows.into_iter().map(|(_, f)| f).collect())
}

/// Records message `message_id` of `peer` as taken; false when it was taken
/// before (a forward repeated after a lost answer).
pub fn take_once(c: &Connection, peer: &str, message_id: &[u8], now_ms: i64) -> rusqlite::Result<bool> {
    let seen: Option<i64> = c
        .prepare_cached("SELECT at_ms FROM inbound_seen WHERE peer = ?1 AND message_id = ?2")?
        .query_row((peer, message_id), |r| r.get(0))
        .optional()?;
    if seen.is_some() {
        return Ok(false);
    }
    c.prepare_cached("INSERT INTO inbound_seen (peer, message_id, at_ms) VALUES (?1, ?2, ?3)")?
        .execute((peer, message_id, now_ms))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Cap = Cap { messages: 2, bytes: 100 };

    fn m(id: u8, client: Option<u8>) -> Outgoing {
        Outgoing {
            id: 0,
            message_id: vec![id; 16],
            recipient: [2; 32],
            sender: [1; 32],
            channel_id: vec![],
            client_msg_id: client.map(|c| vec![c; 16]),
            payload: vec![id; 10],
            group_route: None,
            delivery_token: None,
        }
    }

    #[test]
    fn queued_once_per_client_id_within_the_cap_and_left_only_when_taken_or_failed() {
        let (c, _) = super::super::schema::memory();
        assert!(push(&c, "aa", &m(1, Some(9)), &CAP, 1).unwrap());
        assert!(!push(&c, "aa", &m(2, Some(9)), &CAP, 1).unwrap(), "a retry");
        assert!(push(&c, "aa", &m(3, None), &CAP, 2).unwrap());
        assert!(matches!(push(&c, "aa", &m(4, None), &CAP, 3), Err(PushError::Messages(2))));
        assert!(matches!(
            push(&c, "bb", &Outgoing { payload: vec![0; 101], ..m(5, None) }, &CAP, 3),
            Err(PushError::Bytes(100))
        ));
        let batch = next(&c, "aa", 10).unwrap();
        assert_eq!(batch.iter().map(|o| o.message_id[0]).collect::<Vec<_>>(), vec![1, 3]);
        delivered(&c, batch[0].id).unwrap();
        assert_eq!(fail(&c, batch[1].id, "no such person", 5).unwrap(), 1);
        assert_eq!(queued(&c, "aa").unwrap(), (0, 0));
        let told = take_undelivered(&c, &[1; 32], 10).unwrap();
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].3, "no such person");
        assert!(take_undelivered(&c, &[1; 32], 10).unwrap().is_empty(), "told once");
    }

    #[test]
    fn expiry_and_a_removed_peer_tell_the_sender() {
        let (c, _) = super::super::schema::memory();
        push(&c, "aa", &m(1, None), &CAP, 10).unwrap();
        push(&c, "bb", &m(2, None), &CAP, 50).unwrap();
        assert_eq!(expire_before(&c, 20, 60).unwrap(), 1);
        assert_eq!(drop_peer(&c, "bb", 60).unwrap(), 1);
        assert_eq!(take_undelivered(&c, &[1; 32], 10).unwrap().len(), 2);
    }

    #[test]
    fn a_peer_message_id_is_taken_once() {
        let (c, _) = super::super::schema::memory();
        assert!(take_once(&c, "aa", &[1; 16], 1).unwrap());
        assert!(!take_once(&c, "aa", &[1; 16], 2).unwrap());
        assert!(take_once(&c, "bb", &[1; 16], 2).unwrap(), "ids are per peer");
    }
}

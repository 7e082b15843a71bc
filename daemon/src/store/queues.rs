//! Per-recipient message queues: append (with the quotas and the client
//! message id that makes a retry idempotent), page in sequence order,
//! delete up to a sequence number, expire by age, purge a recipient.
//!
//! Invariant: `queue_heads.msgs` / `bytes` are the count and payload bytes
//! of the recipient's rows in `messages`, and [`Tx::store_bytes`] is their
//! sum over all queues; every deletion goes through this module so that
//! they stay in step. `last_seq` only grows.

use std::collections::HashMap;

use qpc_proto::pb;
use rusqlite::{Connection, OptionalExtension};

use super::Tx;

/// The limits an append must respect.
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    pub queue_messages: u64,
    pub queue_bytes: u64,
    pub store_bytes: u64,
}

/// The sender of a sealed enqueue: stored as no sender at all (an empty
/// blob), and handed to readers as an empty `sender_key`.
pub const SEALED: [u8; 32] = [0; 32];

/// One message as the sender gave it.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub sender: [u8; 32],
    pub channel_id: Vec<u8>,
    pub client_msg_id: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("unknown recipient")]
    UnknownRecipient,
    #[error("the queue holds {0} messages, its limit")]
    QueueMessages(u64),
    #[error("the queue holds {0} bytes, its limit")]
    QueueBytes(u64),
    #[error("the store holds {0} bytes, its cap")]
    StoreFull(u64),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Where an appended message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Already stored under the same client message id: nothing was added.
    pub duplicate: bool,
    pub enqueued_at_ms: i64,
}

/// Appends `m` to `recipient`'s queue, or finds it there already.
pub fn append(
    tx: &Tx,
    quota: &Quota,
    recipient: &[u8; 32],
    m: &NewMessage,
    now_ms: i64,
) -> Result<Appended, AppendError> {
    let plan = plan(tx, quota, recipient, m, now_ms, 0)?;
    apply(tx, recipient, m, now_ms, plan)
}

/// Appends `m` to every one of `recipients` or, if any of them refuses it,
/// to none: every check runs before the first change, so the write needs
/// no savepoint for it (nor SQLite's sub-journal copies of the pages the
/// appends touch). An `Err` names the index of the recipient that refused.
/// The recipients must be distinct: a second check of the same queue would
/// not see the first append (`None` for a list that repeats one, before
/// anything is read).
pub fn append_each(
    tx: &Tx,
    quota: &Quota,
    recipients: &[[u8; 32]],
    m: &NewMessage,
    now_ms: i64,
) -> Option<Result<Vec<Appended>, (usize, AppendError)>> {
    let mut sorted = recipients.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut plans = Vec::with_capacity(recipients.len());
    let mut pending = 0;
    for (i, r) in recipients.iter().enumerate() {
        match plan(tx, quota, r, m, now_ms, pending) {
            Ok(p) => {
                if let Plan::Insert { len, .. } = p {
                    pending += len;
                }
                plans.push(p);
            }
            Err(e) => return Some(Err((i, e))),
        }
    }
    let appended = recipients
        .iter()
        .zip(plans)
        .enumerate()
        .map(|(i, (r, p))| apply(tx, r, m, now_ms, p).map_err(|e| (i, e)));
    Some(appended.collect())
}

/// What an append will do, decided by reads only.
enum Plan {
    /// Nothing to store: a retry already queued, or a revoked device's copy.
    Found(Appended),
    Insert {
        seq: i64,
        msgs: u64,
        bytes: u64,
        len: u64,
    },
}

/// Every check of an append, with `pending` bytes of appends planned in the
/// same write that the store's total does not count yet.
fn plan(
    tx: &Tx,
    quota: &Quota,
    recipient: &[u8; 32],
    m: &NewMessage,
    now_ms: i64,
    pending: u64,
) -> Result<Plan, AppendError> {
    if !super::identities::exists(tx, recipient)? {
        // A revoked device's copy (a group's commit removing it, sent to
        // every member) is accepted and dropped (shown as a duplicate, so no
        // push goes out): nobody can fetch it.
        if super::kt::revoked(tx, recipient)?.is_some() {
            return Ok(Plan::Found(Appended { seq: 0, duplicate: true, enqueued_at_ms: now_ms }));
        }
        return Err(AppendError::UnknownRecipient);
    }
    if let Some(id) = &m.client_msg_id {
        let found: Option<(u64, i64)> = tx
            .prepare_cached(BY_CLIENT_ID)?
            .query_row((&recipient[..], id), |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((seq, enqueued_at_ms)) = found {
            return Ok(Plan::Found(Appended { seq, duplicate: true, enqueued_at_ms }));
        }
    }
    let len = m.payload.len() as u64;
    let (last_seq, msgs, bytes): (i64, u64, u64) = tx
        .prepare_cached("SELECT last_seq, msgs, bytes FROM queue_heads WHERE recipient = ?1")?
        .query_row([&recipient[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .unwrap_or((tx.seq_floor(), 0, 0));
    if msgs + 1 > quota.queue_messages {
        return Err(AppendError::QueueMessages(quota.queue_messages));
    }
    if bytes + len > quota.queue_bytes {
        return Err(AppendError::QueueBytes(quota.queue_bytes));
    }
    if tx.store_bytes() + pending + len > quota.store_bytes {
        return Err(AppendError::StoreFull(quota.store_bytes));
    }
    Ok(Plan::Insert { seq: last_seq + 1, msgs, bytes, len })
}

/// Carries out a plan. Every refusal was in [`plan`]: from here on only the
/// disk can fail (see `Store::write_staged_checks_first`), the row first so
/// that its failure changes nothing.
fn apply(
    tx: &Tx,
    recipient: &[u8; 32],
    m: &NewMessage,
    now_ms: i64,
    plan: Plan,
) -> Result<Appended, AppendError> {
    let (seq, msgs, bytes, len) = match plan {
        Plan::Found(a) => return Ok(a),
        Plan::Insert { seq, msgs, bytes, len } => (seq, msgs, bytes, len),
    };
    tx.prepare_cached(
        "INSERT INTO messages (recipient, seq, sender, channel_id, client_msg_id, payload, enqueued_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute((
        &recipient[..],
        seq,
        if m.sender == SEALED { &[][..] } else { &m.sender[..] },
        &m.channel_id,
        &m.client_msg_id,
        &m.payload,
        now_ms,
    ))?;
    tx.prepare_cached(
        "INSERT INTO queue_heads (recipient, last_seq, msgs, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (recipient) DO UPDATE
         SET last_seq = excluded.last_seq, msgs = excluded.msgs, bytes = excluded.bytes",
    )?
    .execute((&recipient[..], seq, msgs + 1, bytes + len))?;
    tx.add_store_bytes(len as i64);
    Ok(Appended { seq: seq as u64, duplicate: false, enqueued_at_ms: now_ms })
}

/// A page of one queue, and the queue's last sequence number (so that a
/// reader who saw an empty page knows which number comes next).
#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<pb::Envelope>,
    pub last_seq: u64,
}

/// What a message costs in a page besides its payload.
pub fn envelope_cost(e: &pb::Envelope) -> usize {
    e.payload.len() + e.sender_key.len() + e.channel_id.len() + 32
}

/// Messages of `recipient` (in `channel` when given) in sequence order, at
/// most `limit`, and no more than `budget` bytes (but always at least one,
/// so any stored message can be read).
pub fn page(
    c: &Connection,
    recipient: &[u8; 32],
    channel: Option<&[u8]>,
    limit: u32,
    budget: usize,
) -> rusqlite::Result<Page> {
    let mut stmt = c.prepare_cached(PAGE)?;
    let rows = stmt.query_map((&recipient[..], channel, limit), |r| {
        Ok(pb::Envelope {
            seq: r.get(0)?,
            sender_key: r.get(1)?,
            channel_id: r.get(2)?,
            payload: r.get(3)?,
            enqueued_at_ms: r.get(4)?,
        })
    })?;
    let mut messages = Vec::new();
    let mut used = 0;
    for row in rows {
        let e = row?;
        used += envelope_cost(&e);
        if !messages.is_empty() && used > budget {
            break;
        }
        messages.push(e);
    }
    let last_seq = match messages.last() {
        Some(e) => e.seq,
        None => last_seq(c, recipient)?,
    };
    Ok(Page { messages, last_seq })
}

/// The last sequence number `recipient`'s queue handed out (where a new
/// queue would start counting from, if it has none).
pub fn last_seq(c: &Connection, recipient: &[u8; 32]) -> rusqlite::Result<u64> {
    let head: Option<i64> = c
        .prepare_cached("SELECT last_seq FROM queue_heads WHERE recipient = ?1")?
        .query_row([&recipient[..]], |r| r.get(0))
        .optional()?;
    Ok(match head {
        Some(seq) => seq,
        None => super::meta::seq_floor(c)?,
    } as u64)
}

/// Deletes `recipient`'s messages up to and including `up_to` (in `channel`
/// when given); returns how many.
pub fn delete_up_to(
    tx: &Tx,
    recipient: &[u8; 32],
    up_to: u64,
    channel: Option<&[u8]>,
) -> rusqlite::Result<u64> {
    // Sequence numbers live in SQLite's signed 64 bits; anything above is "all".
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached(DELETE_UP_TO)?;
    let (mut n, mut bytes) = (0u64, 0i64);
    for len in stmt.query_map((&recipient[..], up_to, channel), |r| r.get::<_, i64>(0))? {
        n += 1;
        bytes += len?;
    }
    drop(stmt);
    shrink(tx, recipient, n, bytes)?;
    Ok(n)
}

fn shrink(tx: &Tx, recipient: &[u8], n: u64, bytes: i64) -> rusqlite::Result<()> {
    if n == 0 {
        return Ok(());
    }
    tx.prepare_cached("UPDATE queue_heads SET msgs = msgs - ?2, bytes = bytes - ?3 WHERE recipient = ?1")?
        .execute((recipient, n, bytes))?;
    tx.add_store_bytes(-bytes);
    Ok(())
}

/// Deletes every message enqueued before `cutoff_ms`; returns how many.
///
/// Messages are stored in enqueue order (their rowid), so the expired ones
/// are those before the first young one: a walk from the oldest that stops
/// there, and a range deletion, with no index by age (which would be one
/// more B-tree leaf per commit). A message enqueued after the clock stepped
/// back expires with the ones ahead of it.
pub fn expire_before(tx: &Tx, cutoff_ms: i64) -> rusqlite::Result<u64> {
    let first_kept: Option<i64> =
        tx.prepare_cached(FIRST_KEPT)?.query_row([cutoff_ms], |r| r.get(0)).optional()?;
    let mut per_queue: HashMap<Vec<u8>, (u64, i64)> = HashMap::new();
    {
        let mut stmt = tx.prepare_cached(EXPIRE)?;
        let rows = stmt.query_map([first_kept.unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (recipient, len) = row?;
            let entry = per_queue.entry(recipient).or_default();
            entry.0 += 1;
            entry.1 += len;
        }
    }
    let mut total = 0;
    for (recipient, (n, bytes)) in per_queue {
        shrink(tx, &recipient, n, bytes)?;
        total += n;
    }
    Ok(total)
}

const BY_CLIENT_ID: &str =
    "SELECT seq, enqueued_at_ms FROM messages WHERE recipient = ?1 AND client_msg_id = ?2";
const PAGE: &str = "SELECT seq, sender, channel_id, payload, enqueued_at_ms FROM messages
     WHERE recipient = ?1 AND (?2 IS NULL OR channel_id = ?2)
     ORDER BY seq LIMIT ?3";
const DELETE_UP_TO: &str =
    "DELETE FROM messages WHERE recipient = ?1 AND seq <= ?2 AND (?3 IS NULL OR channel_id = ?3)
     RETURNING length(payload)";
const PURGE: &str = "DELETE FROM messages WHERE recipient = ?1";
/// The oldest message that is not yet expired (a walk in rowid order).
const FIRST_KEPT: &str = "SELECT id FROM messages WHERE enqueued_at_ms >= ?1 ORDER BY id LIMIT 1";
const EXPIRE: &str = "DELETE FROM messages WHERE id < ?1 RETURNING recipient, length(payload)";

/// Deletes `recipient`'s queue with everything in it; returns how many messages.
pub fn purge(tx: &Tx, recipient: &[u8]) -> rusqlite::Result<u64> {
    let bytes: i64 = tx
        .prepare_cached("SELECT coalesce(sum(bytes), 0) FROM queue_heads WHERE recipient = ?1")?
        .query_row([recipient], |r| r.get(0))?;
    let n = tx.prepare_cached(PURGE)?.execute([recipient])?;
    tx.prepare_cached("DELETE FROM queue_heads WHERE recipient = ?1")?.execute([recipient])?;
    tx.add_store_bytes(-bytes);
    Ok(n as u64)
}

/// Payload bytes queued in all queues (loaded once at start).
pub fn store_bytes(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row("SELECT coalesce(sum(bytes), 0) FROM queue_heads", [], |r| r.get(0))
}

/// Moves every queue's counter `by` ahead.
pub fn skip_ahead(c: &Connection, by: i64) -> rusqlite::Result<()> {
    c.execute("UPDATE queue_heads SET last_seq = last_seq + ?1", [by])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::schema::memory;
    use super::super::worker::State;
    use super::*;

    const ROOMY: Quota = Quota { queue_messages: 100, queue_bytes: 10_000, store_bytes: 20_000 };

    fn msg(payload: &[u8], id: Option<&[u8]>) -> NewMessage {
        NewMessage {
            sender: [9; 32],
            channel_id: b"ch".to_vec(),
            client_msg_id: id.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
        }
    }

    fn known(c: &Connection, keys: &[[u8; 32]]) {
        for k in keys {
            super::super::identities::insert(c, k, 1).unwrap();
        }
    }

    #[test]
    fn append_page_delete_keep_the_counters() {
        let (c, state) = memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        known(&c, &[a, b]);
        let tx = Tx::new(&c, &state);
        assert_eq!(append(&tx, &ROOMY, &a, &msg(b"one", None), 5).unwrap().seq, 1);
        assert_eq!(append(&tx, &ROOMY, &a, &msg(b"two", None), 6).unwrap().seq, 2);
        assert_eq!(append(&tx, &ROOMY, &b, &msg(b"bee", None), 7).unwrap().seq, 1);
        assert_eq!(tx.store_bytes(), 9);
        let p = page(&c, &a, None, 10, 1 << 20).unwrap();
        assert_eq!(p.messages.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>(), [b"one", b"two"]);
        assert_eq!((p.messages[0].enqueued_at_ms, p.last_seq), (5, 2));
        // The budget cuts the page, but never below one message.
        assert_eq!(page(&c, &a, None, 10, 1).unwrap().messages.len(), 1);
        assert_eq!(delete_up_to(&tx, &a, 1, None).unwrap(), 1);
        assert_eq!(delete_up_to(&tx, &a, 1, None).unwrap(), 0);
        assert_eq!(tx.store_bytes(), 6);
        let empty = page(&c, &a, Some(b"other"), 10, 100).unwrap();
        assert!(empty.messages.is_empty());
        assert_eq!(delete_up_to(&tx, &a, u64::MAX, None).unwrap(), 1);
        let p = page(&c, &a, None, 10, 100).unwrap();
        assert!(p.messages.is_empty());
        assert_eq!(p.last_seq, 2, "an empty page still names the last sequence number");
        // Counters only grow.
        assert_eq!(append(&tx, &ROOMY, &a, &msg(b"three", None), 8).unwrap().seq, 3);
        assert_eq!(store_bytes(&c).unwrap(), tx.store_bytes());
    }

    #[test]
    fn a_retried_client_id_is_stored_once() {
        let (c, state) = memory();
        let a = [1u8; 32];
        known(&c, &[a]);
        let tx = Tx::new(&c, &state);
        let first = append(&tx, &ROOMY, &a, &msg(b"x", Some(b"id")), 5).unwrap();
        let again = append(&tx, &ROOMY, &a, &msg(b"x", Some(b"id")), 9).unwrap();
        assert_eq!(again, Appended { duplicate: true, ..first });
        assert_eq!(page(&c, &a, None, 10, 100).unwrap().messages.len(), 1);
    }

    #[test]
    fn quotas_and_unknown_recipients_are_refused() {
        let (c, state) = memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        known(&c, &[a, b]);
        let tx = Tx::new(&c, &state);
        let small = Quota { queue_messages: 2, queue_bytes: 10, store_bytes: 15 };
        assert!(matches!(
            append(&tx, &small, &[7; 32], &msg(b"x", None), 1),
            Err(AppendError::UnknownRecipient)
        ));
        append(&tx, &small, &a, &msg(b"12345", None), 1).unwrap();
        assert!(matches!(
            append(&tx, &small, &a, &msg(b"123456", None), 1),
            Err(AppendError::QueueBytes(10))
        ));
        append(&tx, &small, &a, &msg(b"1", None), 1).unwrap();
        assert!(matches!(append(&tx, &small, &a, &msg(b"1", None), 1), Err(AppendError::QueueMessages(2))));
        append(&tx, &small, &b, &msg(b"12345678", None), 1).unwrap();
        assert!(matches!(append(&tx, &small, &b, &msg(b"12", None), 1), Err(AppendError::StoreFull(15))));
    }

    #[test]
    fn a_group_append_checks_every_recipient_before_the_first_change() {
        let (c, state) = memory();
        let (a, b, d) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        known(&c, &[a, b, d]);
        let tx = Tx::new(&c, &state);
        // The store has room for two copies, not three: the third refuses
        // and nothing is stored for anyone, with no savepoint to undo.
        let two = Quota { queue_messages: 10, queue_bytes: 100, store_bytes: 10 };
        let changes = c.total_changes();
        match append_each(&tx, &two, &[a, b, d], &msg(b"12345", None), 1) {
            Some(Err((2, AppendError::StoreFull(10)))) => {}
            other => panic!("expected the third recipient refused, got {other:?}"),
        }
        assert_eq!(c.total_changes(), changes, "a refused group append changed the store");
        assert_eq!((tx.store_bytes(), store_bytes(&c).unwrap()), (0, 0));
        // An unknown member: nothing stored either, and its index named.
        match append_each(&tx, &ROOMY, &[a, [7; 32]], &msg(b"x", None), 1) {
            Some(Err((1, AppendError::UnknownRecipient))) => {}
            other => panic!("expected the unknown member refused, got {other:?}"),
        }
        assert_eq!(c.total_changes(), changes);
        // A list naming a member twice is left to the caller, unread.
        assert!(append_each(&tx, &ROOMY, &[a, b, a], &msg(b"x", None), 1).is_none());
        // Room for all: each queue counts on, a retry is a duplicate.
        append(&tx, &ROOMY, &b, &msg(b"earlier", None), 1).unwrap();
        let got = append_each(&tx, &ROOMY, &[a, b, d], &msg(b"hi", Some(b"id")), 2).unwrap().unwrap();
        assert_eq!(
            got.iter().map(|x| (x.seq, x.duplicate)).collect::<Vec<_>>(),
            [(1, false), (2, false), (1, false)]
        );
        let again = append_each(&tx, &ROOMY, &[a, b, d], &msg(b"hi", Some(b"id")), 3).unwrap().unwrap();
        assert_eq!(again, got.iter().map(|x| Appended { duplicate: true, ..*x }).collect::<Vec<_>>());
        assert_eq!((tx.store_bytes(), store_bytes(&c).unwrap()), (13, 13));
    }

    #[test]
    fn expiry_and_purge_return_the_space() {
        let (c, state) = memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        known(&c, &[a, b]);
        let tx = Tx::new(&c, &state);
        append(&tx, &ROOMY, &a, &msg(b"old", None), 10).unwrap();
        append(&tx, &ROOMY, &b, &msg(b"old!", None), 10).unwrap();
        append(&tx, &ROOMY, &a, &msg(b"new", None), 100).unwrap();
        assert_eq!(expire_before(&tx, 50).unwrap(), 2);
        assert_eq!(tx.store_bytes(), 3);
        assert_eq!(store_bytes(&c).unwrap(), 3);
        assert_eq!(purge(&tx, &a).unwrap(), 1);
        assert_eq!((tx.store_bytes(), store_bytes(&c).unwrap()), (0, 0));
    }

    #[test]
    fn every_query_of_messages_searches_a_key_without_the_age_index() {
        let (c, _) = memory();
        let gone: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'messages_by_age'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(gone, 0, "migration 9 drops the index");
        for sql in [BY_CLIENT_ID, PAGE, DELETE_UP_TO, PURGE, EXPIRE] {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // Unbound parameters plan as NULLs.
            let mut rows = stmt.raw_query();
            let mut plan = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                plan.push(row.get::<_, String>(3).unwrap());
            }
            assert!(plan.iter().any(|d| d.starts_with("SEARCH messages USING")), "{sql}: {plan:?}");
            assert!(!plan.iter().any(|d| d.starts_with("SCAN messages")), "{sql}: {plan:?}");
            assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{sql}: {plan:?}");
        }
        // Expiry's walk reads the table from its oldest row and stops at the
        // first young one: in rowid order, no sort.
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {FIRST_KEPT}")).unwrap();
        let mut rows = stmt.raw_query();
        let detail: String = rows.next().unwrap().unwrap().get(3).unwrap();
        assert_eq!(detail, "SCAN messages");
        assert!(rows.next().unwrap().is_none(), "no sort");
    }

    #[test]
    fn expiry_stops_at_the_first_young_message() {
        let (c, state) = memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        known(&c, &[a, b]);
        let tx = Tx::new(&c, &state);
        for (to, at) in [(a, 10), (b, 20), (a, 100), (a, 30)] {
            append(&tx, &ROOMY, &to, &msg(b"m", None), at).unwrap();
        }
        assert_eq!(expire_before(&tx, 50).unwrap(), 2);
        let left: Vec<u64> = page(&c, &a, None, 10, 1000).unwrap().messages.iter().map(|e| e.seq).collect();
        assert_eq!(left, [2, 3], "the one behind a young message waits for it");
        assert!(page(&c, &b, None, 10, 1000).unwrap().messages.is_empty());
        assert_eq!(expire_before(&tx, 200).unwrap(), 2);
        assert_eq!((tx.store_bytes(), store_bytes(&c).unwrap()), (0, 0));
    }

    #[test]
    fn skipping_ahead_moves_old_and_new_queues() {
        let (c, _) = memory();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        known(&c, &[a, b]);
        {
            let tx = Tx::new(&c, &State { store_bytes: 0, seq_floor: 0 });
            append(&tx, &ROOMY, &a, &msg(b"x", None), 1).unwrap();
        }
        let mut state = State { store_bytes: 1, seq_floor: 0 };
        super::super::worker::skip_ahead(&c, &mut state).unwrap();
        let skip = super::super::worker::SEQ_SKIP as u64;
        assert_eq!(last_seq(&c, &b).unwrap(), skip);
        let tx = Tx::new(&c, &state);
        assert_eq!(append(&tx, &ROOMY, &a, &msg(b"y", None), 1).unwrap().seq, skip + 2);
        assert_eq!(append(&tx, &ROOMY, &b, &msg(b"z", None), 1).unwrap().seq, skip + 1);
    }
}

//! Ack (204): the caller has saved what it read; delete its messages up to
//! and including `up_to_seq` (in one channel when given). Also owns every
//! other deletion from queues (Fetch, TTL expiry), since each must keep the
//! per-queue counters that quotas read in step.

use std::rc::Rc;

use qpc_proto::pb;
use rusqlite::Connection;

use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::Relay;

pub fn delete_up_to(
    c: &Connection,
    recipient: &[u8; 32],
    up_to: u64,
    channel: Option<&[u8]>,
) -> rusqlite::Result<u64> {
    // Sequence numbers live in SQLite's signed 64 bits; anything above is "all".
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    let (n, bytes): (u64, i64) = c.query_row(
        "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages
         WHERE recipient = ?1 AND seq <= ?2 AND (?3 IS NULL OR channel_id = ?3)",
        (&recipient[..], up_to, channel),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if n == 0 {
        return Ok(0);
    }
    c.execute(
        "DELETE FROM messages WHERE recipient = ?1 AND seq <= ?2 AND (?3 IS NULL OR channel_id = ?3)",
        (&recipient[..], up_to, channel),
    )?;
    c.execute(
        "UPDATE queue_heads SET msgs = msgs - ?2, bytes = bytes - ?3 WHERE recipient = ?1",
        (&recipient[..], n, bytes),
    )?;
    Ok(n)
}

/// Deletes every message enqueued before `cutoff_ms`; returns how many.
pub fn expire_before(c: &Connection, cutoff_ms: i64) -> rusqlite::Result<u64> {
    c.execute(
        "UPDATE queue_heads SET
            msgs = msgs - (SELECT count(*) FROM messages m
                           WHERE m.recipient = queue_heads.recipient AND m.enqueued_at_ms < ?1),
            bytes = bytes - (SELECT coalesce(sum(length(payload)), 0) FROM messages m
                             WHERE m.recipient = queue_heads.recipient AND m.enqueued_at_ms < ?1)
         WHERE recipient IN (SELECT recipient FROM messages WHERE enqueued_at_ms < ?1)",
        [cutoff_ms],
    )?;
    Ok(c.execute("DELETE FROM messages WHERE enqueued_at_ms < ?1", [cutoff_ms])? as u64)
}

pub async fn ack(relay: &Rc<Relay>, me: Proven, req: pb::AckRequest) -> Result<pb::AckResponse, Refusal> {
    let removed = relay
        .store
        .write(move |c| {
            delete_up_to(c, &me.key(), req.up_to_seq, req.channel_id.as_deref()).map_err(Refusal::from)
        })
        .await?;
    relay.stats_delivered(removed as usize);
    Ok(pb::AckResponse { removed })
}

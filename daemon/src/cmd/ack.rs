//! Ack (204): the caller has saved what it read; delete its messages up to
//! and including `up_to_seq` (in one channel when given).

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
    let removed = c.execute(
        "DELETE FROM messages WHERE recipient = ?1 AND seq <= ?2 AND (?3 IS NULL OR channel_id = ?3)",
        (&recipient[..], up_to, channel),
    )?;
    Ok(removed as u64)
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

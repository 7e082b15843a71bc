//! Enqueue (200) and BatchEnqueue (205): store opaque ciphertext in the
//! recipients' queues. Answered only once durable; a client message id makes
//! a retry idempotent while the first copy is still queued.

use std::rc::Rc;

use qpc_proto::{pb, Status};
use rusqlite::{Connection, OptionalExtension};

use super::auth::Proven;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::now_ms;

/// Bound on recipients of one BatchEnqueue.
pub(crate) const MAX_RECIPIENTS: usize = 1000;
const MAX_CHANNEL_ID: usize = 255;
const MAX_CLIENT_MSG_ID: usize = 64;

/// What is stored for each recipient.
pub(crate) struct Message {
    pub(crate) sender: [u8; 32],
    pub(crate) channel_id: Vec<u8>,
    pub(crate) client_msg_id: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
}

pub(crate) fn parse(
    payload: Vec<u8>,
    channel_id: Vec<u8>,
    client_msg_id: Vec<u8>,
    me: Proven,
) -> Result<Message, Refusal> {
    if payload.is_empty() {
        return Err(Refusal::bad_request("payload is empty"));
    }
    if channel_id.len() > MAX_CHANNEL_ID {
        return Err(Refusal::bad_request(format!("channel_id is longer than {MAX_CHANNEL_ID} bytes")));
    }
    if client_msg_id.len() > MAX_CLIENT_MSG_ID {
        return Err(Refusal::bad_request(format!("client_msg_id is longer than {MAX_CLIENT_MSG_ID} bytes")));
    }
    let client_msg_id = (!client_msg_id.is_empty()).then_some(client_msg_id);
    Ok(Message { sender: me.key(), channel_id, client_msg_id, payload })
}

/// The quotas an enqueue must respect.
#[derive(Clone, Copy)]
pub(crate) struct Quota {
    queue_messages: u64,
    queue_bytes: u64,
    store_bytes: u64,
}

impl Quota {
    pub(crate) fn of(relay: &Relay) -> Quota {
        let l = &relay.limits;
        Quota {
            queue_messages: l.max_queue_messages,
            queue_bytes: l.max_queue_bytes,
            store_bytes: l.store_cap_bytes,
        }
    }

    fn check(&self, c: &Connection, recipient: &[u8; 32], len: u64) -> Result<(), Refusal> {
        let (msgs, bytes): (u64, u64) = c
            .prepare_cached("SELECT msgs, bytes FROM queue_heads WHERE recipient = ?1")?
            .query_row([&recipient[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, 0));
        let full = |what: String| Refusal::new(Status::QuotaExceeded, what);
        let who = hex::encode(&recipient[..8]);
        if msgs + 1 > self.queue_messages {
            return Err(full(format!(
                "the queue of {who} is full ({} messages, the relay's limit); it frees up as they read it",
                self.queue_messages
            )));
        }
        if bytes + len > self.queue_bytes {
            return Err(full(format!(
                "the queue of {who} is full ({} bytes, the relay's limit); it frees up as they read it",
                self.queue_bytes
            )));
        }
        let total: u64 = c
            .prepare_cached("SELECT coalesce(sum(bytes), 0) FROM queue_heads")?
            .query_row([], |r| r.get(0))?;
        if total + len > self.store_bytes {
            return Err(full(format!(
                "the relay's store is full ({} bytes queued, its cap); try again later",
                self.store_bytes
            )));
        }
        Ok(())
    }
}

/// Stores `m` for `recipient`; returns its sequence number and whether it
/// was already stored under the same client message id.
pub(crate) fn store_one(
    c: &Connection,
    quota: Quota,
    recipient: &[u8; 32],
    m: &Message,
) -> Result<(u64, bool), Refusal> {
    let known: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM identities WHERE identity_key = ?1)")?
        .query_row([&recipient[..]], |r| r.get(0))?;
    if !known {
        return Err(Refusal::new(
            Status::NotFound,
            format!("unknown recipient {}: no such identity on this relay", hex::encode(recipient)),
        ));
    }
    if let Some(id) = &m.client_msg_id {
        let seq = c
            .prepare_cached("SELECT seq FROM messages WHERE recipient = ?1 AND client_msg_id = ?2")?
            .query_row((&recipient[..], id), |r| r.get(0))
            .optional()?;
        if let Some(seq) = seq {
            return Ok((seq, true));
        }
    }
    let len = m.payload.len() as u64;
    quota.check(c, recipient, len)?;
    let seq: u64 = c
        .prepare_cached(
            "INSERT INTO queue_heads (recipient, last_seq, msgs, bytes) VALUES (?1, 1, 1, ?2)
         ON CONFLICT (recipient) DO UPDATE SET last_seq = last_seq + 1, msgs = msgs + 1, bytes = bytes + ?2
         RETURNING last_seq",
        )?
        .query_row((&recipient[..], len), |r| r.get(0))?;
    c.prepare_cached(
        "INSERT INTO messages (recipient, seq, sender, channel_id, client_msg_id, payload, enqueued_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute((
        &recipient[..],
        seq,
        &m.sender[..],
        &m.channel_id,
        &m.client_msg_id,
        &m.payload,
        now_ms(),
    ))?;
    Ok((seq, false))
}

pub async fn enqueue(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::EnqueueRequest,
) -> Result<pb::EnqueueResponse, Refusal> {
    let recipient = identity_key("recipient_key", &req.recipient_key)?;
    let m = parse(req.payload, req.channel_id, req.client_msg_id, me)?;
    let channel = m.channel_id.clone();
    let quota = Quota::of(relay);
    let (seq, duplicate) = relay.store.write(move |c| store_one(c, quota, &recipient, &m)).await?;
    if !duplicate {
        relay.stats_enqueued(1);
        relay.hub.message_stored(recipient, seq, &channel);
    }
    Ok(pb::EnqueueResponse { seq, duplicate })
}

pub async fn batch_enqueue(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::BatchEnqueueRequest,
) -> Result<pb::BatchEnqueueResponse, Refusal> {
    if req.recipient_keys.len() > MAX_RECIPIENTS {
        return Err(Refusal::new(
            Status::TooLarge,
            format!("at most {MAX_RECIPIENTS} recipients per BatchEnqueue"),
        ));
    }
    let recipients = req
        .recipient_keys
        .iter()
        .map(|k| identity_key("recipient_keys[]", k))
        .collect::<Result<Vec<_>, _>>()?;
    let m = parse(req.payload, req.channel_id, req.client_msg_id, me)?;
    let channel = m.channel_id.clone();
    let targets = recipients.clone();
    // All recipients or none: one savepoint for the whole batch.
    let quota = Quota::of(relay);
    let stored = relay
        .store
        .write(move |c| targets.iter().map(|r| store_one(c, quota, r, &m)).collect::<Result<Vec<_>, _>>())
        .await?;
    for (recipient, (seq, duplicate)) in recipients.iter().zip(&stored) {
        if !duplicate {
            relay.stats_enqueued(1);
            relay.hub.message_stored(*recipient, *seq, &channel);
        }
    }
    Ok(pb::BatchEnqueueResponse { seqs: stored.into_iter().map(|(seq, _)| seq).collect() })
}

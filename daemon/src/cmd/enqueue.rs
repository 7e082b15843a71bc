//! Enqueue (200) and BatchEnqueue (205): store opaque ciphertext in the
//! recipients' queues. Answered only once durable; a waiting recipient may
//! get the message as soon as it is accepted (see `hub`). A client message
//! id makes a retry idempotent while the first copy is still queued.
//! A recipient that lives on a peer relay (learnt by `fed`) goes to that
//! peer's outgoing queue instead, in the same write.

use std::rc::Rc;

use qpc_proto::{pb, Status};

use super::auth::Proven;
use crate::hub::{Accepted, IdentityKey};
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::queues::{self, AppendError, Appended, NewMessage, Quota};
use crate::store::{now_ms, outbound, peers, Staged, Tx};

/// Bound on recipients of one BatchEnqueue.
pub(crate) const MAX_RECIPIENTS: usize = 1000;
const MAX_CHANNEL_ID: usize = 255;
const MAX_CLIENT_MSG_ID: usize = 64;

pub(crate) fn parse(
    payload: Vec<u8>,
    channel_id: Vec<u8>,
    client_msg_id: Vec<u8>,
    me: Proven,
) -> Result<NewMessage, Refusal> {
    parse_from(payload, channel_id, client_msg_id, me.key())
}

/// As [`parse`], from `sender` ([`queues::SEALED`] for a sealed enqueue).
pub(crate) fn parse_from(
    payload: Vec<u8>,
    channel_id: Vec<u8>,
    client_msg_id: Vec<u8>,
    sender: [u8; 32],
) -> Result<NewMessage, Refusal> {
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
    Ok(NewMessage { sender, channel_id, client_msg_id, payload })
}

pub(crate) fn quota(relay: &Relay) -> Quota {
    let l = &relay.limits;
    Quota {
        queue_messages: l.max_queue_messages,
        queue_bytes: l.max_queue_bytes,
        store_bytes: l.store_cap_bytes,
    }
}

pub(crate) fn refusal(recipient: &IdentityKey, e: AppendError) -> Refusal {
    let who = hex::encode(&recipient[..8]);
    let full = |what: String| Refusal::new(Status::QuotaExceeded, what);
    match e {
        AppendError::UnknownRecipient => Refusal::new(
            Status::NotFound,
            format!("unknown recipient {}: no such identity on this relay", hex::encode(recipient)),
        ),
        AppendError::QueueMessages(n) => full(format!(
            "the queue of {who} is full ({n} messages, the relay's limit); it frees up as they read it"
        )),
        AppendError::QueueBytes(n) => full(format!(
            "the queue of {who} is full ({n} bytes, the relay's limit); it frees up as they read it"
        )),
        AppendError::StoreFull(n) => {
            full(format!("the relay's store is full ({n} bytes queued, its cap); try again later"))
        }
        AppendError::Sqlite(e) => Refusal::from(e),
    }
}

/// Appends `m` to every recipient's queue inside the caller's write: what
/// each got, and the message as accepted (for readers online now).
pub(crate) fn append_all(
    tx: &Tx,
    quota: &Quota,
    recipients: &[IdentityKey],
    m: NewMessage,
    now: i64,
) -> Result<(Vec<Appended>, Accepted), Refusal> {
    append_all_routed(tx, quota, recipients, m, now, None)
}

/// As [`append_all`], for a message that passed the fence of group `route`
/// here (a peer that gets it learns where the fence is).
pub(crate) fn append_all_routed(
    tx: &Tx,
    quota: &Quota,
    recipients: &[IdentityKey],
    m: NewMessage,
    now: i64,
    route: Option<&[u8; 32]>,
) -> Result<(Vec<Appended>, Accepted), Refusal> {
    let mut stored = Vec::with_capacity(recipients.len());
    let mut to = Vec::new();
    let mut forwarded: Vec<String> = Vec::new();
    let accepted = |m: NewMessage, to, forwarded| Accepted {
        forwarded,
        sender: m.sender,
        channel_id: m.channel_id,
        payload: m.payload,
        enqueued_at_ms: now.max(0) as u64,
        to,
    };
    if recipients.len() > 1 {
        // A group's local members, all checked before the first append: no
        // savepoint. A remote member (or a list naming one twice) takes the
        // path below, in a savepoint, as nothing has changed yet.
        match queues::append_each(tx, quota, recipients, &m, now) {
            Some(Ok(appended)) => {
                for (r, a) in recipients.iter().zip(&appended) {
                    if !a.duplicate {
                        to.push((*r, a.seq));
                    }
                }
                return Ok((appended, accepted(m, to, forwarded)));
            }
            Some(Err((i, e))) if !matches!(e, AppendError::UnknownRecipient) => {
                return Err(refusal(&recipients[i], e))
            }
            _ => {}
        }
        // A later recipient may be refused after an earlier one's append.
        tx.guard()?;
    }
    for r in recipients {
        // A local recipient first: the common case costs what it always did.
        match queues::append(tx, quota, r, &m, now) {
            Ok(a) => {
                if !a.duplicate {
                    to.push((*r, a.seq));
                }
                stored.push(a);
            }
            Err(AppendError::UnknownRecipient) => {
                let Some((peer, _)) = peers::remote_of(tx, r)? else {
                    return Err(refusal(r, AppendError::UnknownRecipient));
                };
                // The outgoing queue may refuse after its first change.
                tx.guard()?;
                let pushed = forward(tx, quota, &peer, r, &m, now, route, None)?;
                if pushed && !forwarded.contains(&peer) {
                    forwarded.push(peer);
                }
                stored.push(Appended { seq: 0, duplicate: !pushed, enqueued_at_ms: now });
            }
            Err(e) => return Err(refusal(r, e)),
        }
    }
    Ok((stored, accepted(m, to, forwarded)))
}

/// Queues `m` for `recipient` on peer relay `peer` (see `fed`), with the
/// route of the fence it passed and a sealed delivery's token; false for a
/// retry already queued.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    tx: &Tx,
    quota: &Quota,
    peer: &str,
    recipient: &IdentityKey,
    m: &NewMessage,
    now: i64,
    route: Option<&[u8; 32]>,
    delivery_token: Option<Vec<u8>>,
) -> Result<bool, Refusal> {
    let mut message_id = vec![0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut message_id);
    let out = outbound::Outgoing {
        id: 0,
        message_id,
        recipient: *recipient,
        sender: m.sender,
        channel_id: m.channel_id.clone(),
        client_msg_id: m.client_msg_id.clone(),
        payload: m.payload.clone(),
        group_route: route.map(|r| r.to_vec()),
        delivery_token,
    };
    let cap = outbound::Cap { messages: quota.queue_messages, bytes: quota.queue_bytes };
    outbound::push(tx, peer, &out, &cap, now).map_err(|e| match e {
        outbound::PushError::Sqlite(e) => Refusal::from(e),
        full => Refusal::new(
            Status::QuotaExceeded,
            format!("the outgoing queue for the peer relay of {} is full ({full}); it frees up as the peer takes them", hex::encode(&recipient[..8])),
        ),
    })
}

/// Shows what a write accepted to the readers waiting for it, waits for
/// the write to be durable, then counts it and pushes the events.
pub(crate) async fn announce<T: 'static>(
    relay: &Relay,
    mut staged: Staged<T, Vec<Accepted>, Refusal>,
) -> Result<T, Refusal> {
    let accepted = staged.accepted().await.unwrap_or_default();
    for a in &accepted {
        relay.hub.message_accepted(a);
    }
    let result = staged.durable().await?;
    for a in &accepted {
        for peer in &a.forwarded {
            relay.fed.wake(peer);
        }
        relay.stats_enqueued(a.to.len());
        for (recipient, seq) in &a.to {
            relay.hub.message_stored(*recipient, *seq, &a.channel_id);
        }
    }
    Ok(result)
}

/// Stores `m` for every recipient, all or none (one savepoint, opened by
/// `append_all` only where a refusal may follow a change: a single local
/// append refuses before its first), shows it to waiting readers once
/// accepted, and returns once durable.
async fn store(
    relay: &Rc<Relay>,
    recipients: Vec<IdentityKey>,
    m: NewMessage,
) -> Result<Vec<Appended>, Refusal> {
    let quota = quota(relay);
    let staged = relay.store.write_staged_checks_first(move |tx| {
        let (stored, accepted) = append_all(tx, &quota, &recipients, m, now_ms())?;
        Ok::<_, Refusal>((stored, vec![accepted]))
    });
    announce(relay, staged).await
}

pub async fn enqueue(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::EnqueueRequest,
) -> Result<pb::EnqueueResponse, Refusal> {
    let recipient = identity_key("recipient_key", &req.recipient_key)?;
    let m = parse(req.payload, req.channel_id, req.client_msg_id, me)?;
    let stored = store(relay, vec![recipient], m).await?;
    let Some(&Appended { seq, duplicate, .. }) = stored.first() else {
        return Err(Refusal::new(Status::Internal, "the store answered for no recipient"));
    };
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
    let stored = store(relay, recipients, m).await?;
    Ok(pb::BatchEnqueueResponse { seqs: stored.into_iter().map(|a| a.seq).collect() })
}

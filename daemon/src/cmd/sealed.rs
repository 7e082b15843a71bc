//! Sealed sender: RegisterDeliveryToken (206), RevokeDeliveryToken (207)
//! and SealedEnqueue (208). A sealed enqueue names its recipient and shows a
//! token that recipient registered; the relay stores the message with no
//! sender, logs no sender, and counts it against the recipient's quotas as
//! any other. Rate limits still apply per connection and source address.
//! A recipient on a peer relay (see `fed`): the token cannot be checked
//! here; the message goes to the peer's outgoing queue with the token and
//! still no sender, and the recipient's relay checks it.

use std::rc::Rc;

use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};

use super::auth::Proven;
use super::enqueue;
use crate::config::Registration;
use crate::hub::Accepted;
use crate::refusal::{identity_key, Refusal};
use crate::server::{Relay, Session};
use crate::store::{delivery_tokens, identities, now_ms, peers, queues};

/// Tokens one queue may have at once (one per contact group is plenty).
const MAX_TOKENS: u32 = 64;

fn bytes32(field: &str, bytes: &[u8]) -> Result<[u8; 32], Refusal> {
    bytes
        .try_into()
        .map_err(|_| Refusal::bad_request(format!("{field} must be 32 bytes, got {}", bytes.len())))
}

pub async fn register(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::RegisterDeliveryTokenRequest,
) -> Result<pb::RegisterDeliveryTokenResponse, Refusal> {
    let hash = bytes32("token_hash", &req.token_hash)?;
    let tokens = relay
        .store
        .write(move |tx| {
            delivery_tokens::add(tx, &hash, &me.key(), now_ms(), MAX_TOKENS).map_err(Refusal::from)
        })
        .await?
        .ok_or_else(|| {
            Refusal::new(
                Status::QuotaExceeded,
                format!("this queue already has {MAX_TOKENS} delivery tokens; revoke some first"),
            )
        })?;
    Ok(pb::RegisterDeliveryTokenResponse { tokens })
}

pub async fn revoke(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::RevokeDeliveryTokenRequest,
) -> Result<pb::RevokeDeliveryTokenResponse, Refusal> {
    let hash = if req.token_hash.is_empty() { None } else { Some(bytes32("token_hash", &req.token_hash)?) };
    let revoked = relay
        .store
        .write(move |tx| delivery_tokens::revoke(tx, &me.key(), hash.as_ref()).map_err(Refusal::from))
        .await?;
    Ok(pb::RevokeDeliveryTokenResponse { revoked })
}

pub async fn enqueue(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::SealedEnqueueRequest,
) -> Result<pb::SealedEnqueueResponse, Refusal> {
    // Who may connect at all is still the registration mode's say.
    if relay.registration != Registration::Open && session.proven().is_none() {
        return Err(Refusal::new(
            Status::Unauthenticated,
            "this relay takes sealed deliveries only on signed-in connections (its registration is not open)",
        ));
    }
    let recipient = identity_key("recipient_key", &req.recipient_key)?;
    let hash: [u8; 32] = Sha256::digest(bytes32("token", &req.token)?).into();
    let m = enqueue::parse_from(req.payload, req.channel_id, req.client_msg_id, queues::SEALED)?;
    let quota = enqueue::quota(relay);
    let token = req.token;
    let staged = relay.store.write_staged(move |tx| {
        let now = now_ms();
        if delivery_tokens::recipient_of(tx, &hash)?.is_none() && !identities::exists(tx, &recipient)? {
            if let Some((peer, _)) = peers::remote_of(tx, &recipient)? {
                let pushed = enqueue::forward(tx, &quota, &peer, &recipient, &m, now, None, Some(token))?;
                let stored = vec![queues::Appended { seq: 0, duplicate: !pushed, enqueued_at_ms: now }];
                let accepted = Accepted {
                    sender: m.sender,
                    channel_id: m.channel_id,
                    payload: Vec::new(),
                    enqueued_at_ms: now.max(0) as u64,
                    to: Vec::new(),
                    forwarded: if pushed { vec![peer] } else { Vec::new() },
                };
                return Ok((stored, vec![accepted]));
            }
        }
        match delivery_tokens::recipient_of(tx, &hash)? {
            Some(owner) if owner == recipient => {}
            Some(_) => {
                return Err(Refusal::new(Status::Forbidden, "this delivery token is for another queue"))
            }
            None => {
                return Err(Refusal::new(
                    Status::Forbidden,
                    "unknown or revoked delivery token: ask the recipient for a current one",
                ))
            }
        }
        let (stored, accepted) = enqueue::append_all(tx, &quota, &[recipient], m, now)?;
        Ok::<_, Refusal>((stored, vec![accepted]))
    });
    let stored = enqueue::announce(relay, staged).await?;
    let Some(first) = stored.first() else {
        return Err(Refusal::new(Status::Internal, "the store answered for no recipient"));
    };
    Ok(pb::SealedEnqueueResponse { seq: first.seq, duplicate: first.duplicate })
}

//! Federation methods. From a client of this relay: ResolveRemoteUser
//! (1200), asked of the peer the address names, and Undelivered (1201).
//! From a peer relay, over its pinned `qpc-fed` link: PeerResolveUser
//! (1250), PeerFetchKeyPackage (1251) and PeerDeliver (1252), each about
//! local identities only: a peer can neither list anyone nor reach beyond
//! this relay. PeerResolveUser carries this relay's key transparency proof
//! for the name (made by `kt` exactly as for a local device); the asking
//! relay hands it to its device unchanged, and the device checks it against
//! this relay's log key (see docs/federation.md). Remote keys that clients use with the ordinary methods are
//! forwarded by those methods (see `enqueue::append_all`,
//! `key_package::fetch`, `directory::resolve_identity`).

use std::rc::Rc;

use qpc_proto::{pb, Method, Status};
use sha2::Digest;

use super::accounts::check_username;
use super::auth::Proven;
use super::{directory, enqueue, key_package, kt};
use crate::fed::address::RemoteAddress;
use crate::fed::CallError;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::peers::{self, Peer};
use crate::store::{delivery_tokens, identities, now_ms, outbound};

/// Device keys taken from one answer of a peer at most.
const MAX_REMOTE_KEYS: usize = 64;
const MAX_MESSAGE_ID: usize = 64;

/// A failed call to `peer`, as the client sees it.
pub(crate) fn peer_refusal(peer: &Peer, e: CallError) -> Refusal {
    match e {
        CallError::Link(why) => Refusal::new(
            Status::Unavailable,
            format!("the peer relay {} cannot be reached now ({why}); try again later", peer.address()),
        ),
        CallError::Refused(status, message) => {
            Refusal::new(status, format!("the peer relay {} answered: {message}", peer.address()))
        }
    }
}

pub async fn resolve_remote_user(
    relay: &Rc<Relay>,
    req: pb::ResolveRemoteUserRequest,
) -> Result<pb::ResolveRemoteUserResponse, Refusal> {
    let address: RemoteAddress = req.address.parse().map_err(Refusal::bad_request)?;
    let peer = relay.fed.find(&address.host, address.port).ok_or_else(|| {
        Refusal::new(
            Status::NotFound,
            format!(
                "{}: this relay has no peer relay at {}{} (its owner adds peers with qpc-server peer add)",
                req.address,
                address.host,
                address.port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
        )
    })?;
    let ask = pb::PeerResolveUserRequest { username: address.username.clone(), known_size: req.known_size };
    let answer: pb::PeerResolveUserResponse =
        match relay.fed.call(relay, &peer.fingerprint, Method::PeerResolveUser, &ask).await {
            Ok(answer) => answer,
            Err(CallError::Link(why)) => {
                // The peer is away: what it told before still routes (its
                // messages wait in the outgoing queue). Without a proof: the
                // device takes only keys it verified before.
                let (fp, username) = (peer.fingerprint.clone(), address.username.clone());
                let known = relay.store.read(move |c| peers::keys_at(c, &fp, &username)).await?;
                if known.is_empty() {
                    return Err(peer_refusal(&peer, CallError::Link(why)));
                }
                return Ok(pb::ResolveRemoteUserResponse {
                    identity_keys: known,
                    address: format!("{}@{}", address.username, peer.address()),
                    proof: None,
                });
            }
            Err(e) => return Err(peer_refusal(&peer, e)),
        };
    if answer.identity_keys.is_empty() || answer.identity_keys.len() > MAX_REMOTE_KEYS {
        return Err(Refusal::new(
            Status::Unavailable,
            format!(
                "the peer relay {} answered {} keys for one person",
                peer.address(),
                answer.identity_keys.len()
            ),
        ));
    }
    let keys = answer
        .identity_keys
        .iter()
        .map(|k| identity_key("identity_keys[] from the peer", k))
        .collect::<Result<Vec<_>, _>>()?;
    let (fp, username) = (peer.fingerprint.clone(), address.username.clone());
    let stored = keys.clone();
    relay
        .store
        .write(move |tx| {
            for key in &stored {
                peers::learn(tx, key, &fp, &username, true, now_ms())?;
            }
            Ok::<_, Refusal>(())
        })
        .await?;
    // The peer's proof goes to the device as it came: signed with the
    // peer's log key, which this relay does not hold, so it cannot be made
    // to fit other keys here; the device checks it (cli `kt`).
    Ok(pb::ResolveRemoteUserResponse {
        identity_keys: answer.identity_keys,
        address: format!("{}@{}", address.username, peer.address()),
        proof: answer.proof,
    })
}

pub async fn undelivered(
    relay: &Rc<Relay>,
    me: Proven,
    _req: pb::UndeliveredRequest,
) -> Result<pb::UndeliveredResponse, Refusal> {
    let failures = relay
        .store
        .write(move |tx| outbound::take_undelivered(tx, &me.key(), 100).map_err(Refusal::from))
        .await?;
    let messages = failures
        .into_iter()
        .map(|(client_msg_id, recipient_key, peer, reason, at)| pb::UndeliveredMessage {
            client_msg_id,
            recipient_key,
            peer: relay.fed.peer(&peer).map(|p| p.address()).unwrap_or(peer),
            reason,
            at_ms: at.max(0) as u64,
        })
        .collect();
    Ok(pb::UndeliveredResponse { messages })
}

// ----- asked by a peer ------------------------------------------------------

/// The directory's answer for a local username with the key transparency
/// proof a local device would fetch for it (LogInclusion, and LogConsistency
/// from the size the device knows), both as `kt` makes them for any reader.
pub async fn peer_resolve_user(
    relay: &Rc<Relay>,
    fingerprint: &str,
    req: pb::PeerResolveUserRequest,
) -> Result<pb::PeerResolveUserResponse, Refusal> {
    check_username(&req.username)?;
    let keys =
        directory::resolve_user(relay, pb::ResolveUserRequest { username: req.username.clone() }).await?;
    let reader = kt::peer_reader(relay, fingerprint);
    let inclusion =
        kt::inclusion(relay, reader.as_deref(), pb::LogInclusionRequest { username: req.username }).await?;
    let size = inclusion.head.as_ref().map_or(0, |h| h.size);
    // Past the head (a device shown a longer, forked log before): no proof
    // can exist, and the device says so when it sees the head.
    let consistency = if req.known_size > 0 && req.known_size <= size {
        let ask = pb::LogConsistencyRequest { from_size: req.known_size, to_size: size };
        Some(kt::consistency(relay, reader.as_deref(), ask).await?)
    } else {
        None
    };
    Ok(pb::PeerResolveUserResponse {
        identity_keys: keys.identity_keys,
        proof: Some(pb::DirectoryProof {
            inclusion: Some(inclusion),
            log_key: relay.log.public_key().to_vec(),
            consistency,
        }),
    })
}

pub async fn peer_fetch_key_package(
    relay: &Rc<Relay>,
    req: pb::FetchKeyPackageRequest,
) -> Result<pb::FetchKeyPackageResponse, Refusal> {
    key_package::fetch_local(relay, req).await
}

pub async fn peer_group_commit(
    relay: &Rc<Relay>,
    fingerprint: &str,
    req: pb::PeerGroupCommitRequest,
) -> Result<pb::GroupCommitResponse, Refusal> {
    let sender = identity_key("sender_key", &req.sender_key)?;
    let commit = req.commit.ok_or_else(|| Refusal::bad_request("commit is missing"))?;
    let local = relay.store.read(move |c| identities::exists(c, &sender)).await?;
    if local {
        return Err(Refusal::new(
            Status::Forbidden,
            "the sender_key is an identity of this relay: a peer forwards only its own people's commits",
        ));
    }
    let fp = fingerprint.to_string();
    relay
        .store
        .write(move |tx| peers::learn(tx, &sender, &fp, "", false, now_ms()).map_err(Refusal::from))
        .await?;
    super::group::admit(relay, sender, commit, Some(fingerprint.to_string())).await
}

pub async fn peer_deliver(
    relay: &Rc<Relay>,
    fingerprint: &str,
    req: pb::PeerDeliverRequest,
) -> Result<pb::PeerDeliverResponse, Refusal> {
    let recipient = identity_key("recipient_key", &req.recipient_key)?;
    let sender = if req.sender_key.is_empty() {
        crate::store::queues::SEALED
    } else {
        identity_key("sender_key", &req.sender_key)?
    };
    if req.message_id.is_empty() || req.message_id.len() > MAX_MESSAGE_ID {
        return Err(Refusal::bad_request(format!("message_id must be 1 to {MAX_MESSAGE_ID} bytes")));
    }
    if !req.sender_username.is_empty() {
        check_username(&req.sender_username)?;
    }
    let m = enqueue::parse_from(req.payload, req.channel_id, req.client_msg_id, sender)?;
    let quota = enqueue::quota(relay);
    let route: Option<[u8; 32]> = match req.group_route.len() {
        0 => None,
        _ => Some(
            req.group_route
                .as_slice()
                .try_into()
                .map_err(|_| Refusal::bad_request("group_route must be 32 bytes"))?,
        ),
    };
    // A sealed delivery shows the recipient's token; only its hash is kept.
    let token_hash: Option<[u8; 32]> =
        match (sender == crate::store::queues::SEALED, req.delivery_token.len()) {
            (_, 0) => None,
            (true, 32) => Some(sha2::Sha256::digest(&req.delivery_token).into()),
            _ => {
                return Err(Refusal::bad_request(
                    "delivery_token must be 32 bytes, and only without a sender_key",
                ))
            }
        };
    let (fp, message_id, username) = (fingerprint.to_string(), req.message_id, req.sender_username);
    let staged = relay.store.write_staged(move |tx| {
        if !identities::exists(tx, &recipient)? {
            return Err(Refusal::new(
                Status::NotFound,
                format!("no identity {} on this relay", hex::encode(recipient)),
            ));
        }
        if let Some(hash) = &token_hash {
            if delivery_tokens::recipient_of(tx, hash)? != Some(recipient) {
                return Err(Refusal::new(
                    Status::Forbidden,
                    "unknown or revoked delivery token: ask the recipient for a current one",
                ));
            }
        }
        if sender != crate::store::queues::SEALED && identities::exists(tx, &sender)? {
            return Err(Refusal::new(
                Status::Forbidden,
                "the sender_key is an identity of this relay: a peer delivers only its own people's messages",
            ));
        }
        let now = now_ms();
        if !outbound::take_once(tx, &fp, &message_id, now)? {
            return Ok((true, Vec::new()));
        }
        if sender != crate::store::queues::SEALED {
            peers::learn(tx, &sender, &fp, &username, false, now)?;
        }
        if let Some(route) = &route {
            peers::learn_fence(tx, route, &fp, now)?;
        }
        let (_, accepted) = enqueue::append_all(tx, &quota, &[recipient], m, now)?;
        Ok::<_, Refusal>((false, vec![accepted]))
    });
    let duplicate = enqueue::announce(relay, staged).await?;
    crate::fed::crash_point("fed-taken");
    if token_hash.is_some() {
        log::debug!("federation: took a sealed message from peer {fingerprint:.16}");
    }
    relay.fed.count_received(fingerprint);
    Ok(pb::PeerDeliverResponse { duplicate })
}

//! GroupCommit (600): the relay orders each group's commits without reading
//! them. A commit passes only through its group's fence (see
//! `store::fences`): made in the epoch the relay holds, by someone who knows
//! that epoch's fence value. It is stored for the existing members, its
//! Welcome for the new ones, and the fence moves on, all in one savepoint:
//! everything or nothing. Any other commit for that epoch gets `conflict`,
//! and its author catches up and makes it again.
//!
//! Across relays (see `fed`): a group's fence lives on the relay where it
//! was opened. A relay that learnt the fence is on a peer (from a message
//! that passed it there) forwards its members' commits to that peer
//! (PeerGroupCommit, 1253), which admits them as its own and fans them out,
//! to the forwarding relay too for the members it does not know.

use std::rc::Rc;

use qpc_proto::{pb, Method, Status};

use super::auth::Proven;
use super::enqueue::{self, MAX_RECIPIENTS};
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::fences::{self, Attempt, Passed, Refused};
use crate::store::queues::NewMessage;
use crate::store::{identities, now_ms, peers};

fn bytes32(field: &str, bytes: &[u8]) -> Result<[u8; 32], Refusal> {
    bytes
        .try_into()
        .map_err(|_| Refusal::bad_request(format!("{field} must be 32 bytes, got {}", bytes.len())))
}

fn keys(field: &str, list: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, Refusal> {
    list.iter().map(|k| identity_key(field, k)).collect()
}

/// A parsed, self-consistent request.
struct Commit {
    route: [u8; 32],
    epoch: u64,
    fence: [u8; 32],
    next_fence_hash: [u8; 32],
    open: bool,
    members: Vec<[u8; 32]>,
    commit: NewMessage,
    newcomers: Vec<[u8; 32]>,
    welcome: Option<NewMessage>,
}

fn parse(req: pb::GroupCommitRequest, me: [u8; 32]) -> Result<Commit, Refusal> {
    let route = bytes32("group_route", &req.group_route)?;
    let next_fence_hash = bytes32("next_fence_hash", &req.next_fence_hash)?;
    let fence = if req.fence.is_empty() && req.open { [0u8; 32] } else { bytes32("fence", &req.fence)? };
    if req.client_msg_id.is_empty() {
        return Err(Refusal::bad_request(
            "client_msg_id is required for a GroupCommit (it makes a retry safe)",
        ));
    }
    let members = keys("commit_recipient_keys[]", &req.commit_recipient_keys)?;
    let newcomers = keys("welcome_recipient_keys[]", &req.welcome_recipient_keys)?;
    if members.len() + newcomers.len() > MAX_RECIPIENTS {
        return Err(Refusal::new(
            Status::TooLarge,
            format!("at most {MAX_RECIPIENTS} recipients per GroupCommit"),
        ));
    }
    if newcomers.iter().any(|n| members.contains(n)) {
        return Err(Refusal::bad_request(
            "a key is both in commit_recipient_keys and welcome_recipient_keys",
        ));
    }
    if newcomers.is_empty() != req.welcome.is_empty() {
        return Err(Refusal::bad_request(
            "welcome and welcome_recipient_keys go together: give both or neither",
        ));
    }
    // Required even when nobody else is in the group yet: it is what passes.
    let commit = enqueue::parse_from(req.commit, req.channel_id.clone(), req.client_msg_id.clone(), me)?;
    let welcome = if newcomers.is_empty() {
        None
    } else {
        Some(enqueue::parse_from(req.welcome, req.channel_id, req.client_msg_id, me)?)
    };
    Ok(Commit {
        route,
        epoch: req.epoch,
        fence,
        next_fence_hash,
        open: req.open,
        members,
        commit,
        newcomers,
        welcome,
    })
}

fn refusal(refused: Refused, epoch: u64, ttl_secs: u64) -> Refusal {
    match refused {
        Refused::Unknown => Refusal::new(
            Status::NotFound,
            format!(
                "unknown group route: the relay holds no fence for this group (never opened here, \
                 or no commit for {ttl_secs} s); send the commit with open set to start one"
            ),
        ),
        Refused::WrongEpoch { held } => Refusal::new(
            Status::Conflict,
            format!(
                "the group is at epoch {held} on the relay, this commit was made in epoch {epoch}: \
                 read the queue up to the commit that was admitted and make this one again"
            ),
        ),
        Refused::Forged => Refusal::new(
            Status::Forbidden,
            format!(
                "the fence value for epoch {epoch} does not match: only a member of the group in \
                 that epoch can commit to it"
            ),
        ),
    }
}

pub async fn commit(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::GroupCommitRequest,
) -> Result<pb::GroupCommitResponse, Refusal> {
    let route = bytes32("group_route", &req.group_route)?;
    let away = relay.store.read(move |c| peers::fence_of(c, &route)).await?;
    if let Some(peer) = away.and_then(|fp| relay.fed.peer(&fp)) {
        let forwarded = pb::PeerGroupCommitRequest { sender_key: me.key().to_vec(), commit: Some(req) };
        return relay
            .fed
            .call(relay, &peer.fingerprint, Method::PeerGroupCommit, &forwarded)
            .await
            .map_err(|e| super::federation::peer_refusal(&peer, e));
    }
    admit(relay, me.key(), req, None).await
}

/// Admits a commit by `sender` through the fence held here; `from_peer`
/// when a peer relay forwarded it (recipients this relay does not know are
/// then taken to live on that peer).
pub async fn admit(
    relay: &Rc<Relay>,
    sender: [u8; 32],
    req: pb::GroupCommitRequest,
    from_peer: Option<String>,
) -> Result<pb::GroupCommitResponse, Refusal> {
    let c = parse(req, sender)?;
    let quota = enqueue::quota(relay);
    let ttl = relay.limits.message_ttl_secs;
    let epoch = c.epoch;
    let staged = relay.store.write_staged(move |tx| {
        let now = now_ms();
        let attempt = Attempt {
            route: &c.route,
            epoch: c.epoch,
            fence: &c.fence,
            next_fence_hash: &c.next_fence_hash,
            client_msg_id: c.commit.client_msg_id.as_deref().unwrap_or_default(),
            open: c.open,
        };
        let passed = fences::pass(tx, &attempt, now)?.map_err(|r| refusal(r, epoch, ttl))?;
        let mut accepted = Vec::new();
        if let Passed::Admitted { .. } = passed {
            if let Some(fp) = &from_peer {
                for key in c.members.iter().chain(&c.newcomers) {
                    if !identities::exists(tx, key)? && peers::remote_of(tx, key)?.is_none() {
                        peers::learn(tx, key, fp, "", false, now)?;
                    }
                }
            }
            let route = Some(&c.route);
            accepted.push(enqueue::append_all_routed(tx, &quota, &c.members, c.commit, now, route)?.1);
            if let Some(welcome) = c.welcome {
                accepted.push(enqueue::append_all_routed(tx, &quota, &c.newcomers, welcome, now, route)?.1);
            }
        }
        Ok::<_, Refusal>((passed, accepted))
    });
    let passed = enqueue::announce(relay, staged).await?;
    Ok(match passed {
        Passed::Admitted { epoch } => pb::GroupCommitResponse { epoch, duplicate: false },
        Passed::Retry { epoch } => pb::GroupCommitResponse { epoch, duplicate: true },
    })
}

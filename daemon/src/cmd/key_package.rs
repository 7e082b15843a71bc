//! UploadKeyPackage (300), FetchKeyPackage (301) and KeyPackageStatus (305):
//! a pool of single-use MLS KeyPackages per identity, each fetch removing
//! exactly one, atomically, oldest first; and one last-resort KeyPackage
//! handed out (and kept) only when the pool is empty, so an offline device
//! can always be invited.

use std::rc::Rc;

use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};

use super::auth::Proven;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::{identities, key_packages, peers};

/// The ciphersuite a request names: its MLS number, 0 meaning the classic
/// one (what a client from before post-quantum groups sends). The relay
/// reads no KeyPackage: it files them under the number their uploader gave.
fn suite_of(ciphersuite: u32) -> Result<u32, Refusal> {
    match ciphersuite {
        0 => Ok(key_packages::CLASSIC),
        n if n <= u32::from(u16::MAX) => Ok(n),
        n => Err(Refusal::bad_request(format!("ciphersuite {n} is not an MLS ciphersuite number"))),
    }
}

pub async fn upload(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::UploadKeyPackageRequest,
) -> Result<pb::UploadKeyPackageResponse, Refusal> {
    if req.key_package.is_empty() {
        return Err(Refusal::bad_request("key_package is empty"));
    }
    let max = relay.limits.max_key_packages;
    let suite = suite_of(req.ciphersuite)?;
    let fingerprint = Sha256::digest(&req.key_package).to_vec();
    let available = relay
        .store
        .write(move |tx| {
            if req.last_resort {
                return Ok(key_packages::set_last_resort(tx, &me.key(), suite, &req.key_package)?);
            }
            key_packages::add_to_pool(tx, &me.key(), suite, &req.key_package, max)?.ok_or_else(|| {
                Refusal::new(
                    Status::QuotaExceeded,
                    format!(
                        "this identity already holds {max} KeyPackages of ciphersuite {suite}, the relay's \
                         limit; upload more once peers have used some"
                    ),
                )
            })
        })
        .await?;
    Ok(pb::UploadKeyPackageResponse { fingerprint, available })
}

/// A KeyPackage of a local identity, or of a remote one from its relay.
pub async fn fetch(
    relay: &Rc<Relay>,
    req: pb::FetchKeyPackageRequest,
) -> Result<pb::FetchKeyPackageResponse, Refusal> {
    let key = identity_key("identity_key", &req.identity_key)?;
    let not_here = match fetch_local(relay, req.clone()).await {
        Err(r) if r.status == Status::NotFound => r,
        local => return local,
    };
    let remote = relay
        .store
        .read(move |c| {
            Ok(if identities::exists(c, &key)? { None } else { peers::remote_of(c, &key)?.map(|(fp, _)| fp) })
        })
        .await?;
    let Some(peer) = remote.and_then(|fp| relay.fed.peer(&fp)) else { return Err(not_here) };
    relay
        .fed
        .call(relay, &peer.fingerprint, qpc_proto::Method::PeerFetchKeyPackage, &req)
        .await
        .map_err(|e| super::federation::peer_refusal(&peer, e))
}

/// A KeyPackage of a local identity only (what a peer may ask for).
pub async fn fetch_local(
    relay: &Rc<Relay>,
    req: pb::FetchKeyPackageRequest,
) -> Result<pb::FetchKeyPackageResponse, Refusal> {
    let peer = identity_key("identity_key", &req.identity_key)?;
    let suite = suite_of(req.ciphersuite)?;
    let taken =
        relay.store.write(move |tx| key_packages::take(tx, &peer, suite).map_err(Refusal::from)).await?;
    let (key_package, last_resort) = taken.ok_or_else(|| {
        Refusal::new(
            Status::NotFound,
            format!(
                "no KeyPackage of ciphersuite {suite} available for identity {}: the peer must upload \
                 a fresh one (a device of an older qpc offers only the classic ciphersuite, 1)",
                hex::encode(peer)
            ),
        )
    })?;
    Ok(pb::FetchKeyPackageResponse { key_package, last_resort })
}

pub async fn status(
    relay: &Relay,
    me: Proven,
    req: pb::KeyPackageStatusRequest,
) -> Result<pb::KeyPackageStatusResponse, Refusal> {
    let suite = suite_of(req.ciphersuite)?;
    let held = relay.store.read(move |c| key_packages::held(c, &me.key(), suite)).await?;
    Ok(pb::KeyPackageStatusResponse {
        available: held.available,
        last_resort: held.last_resort,
        last_resort_used: held.last_resort_used,
    })
}

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
use crate::store::key_packages;

pub async fn upload(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::UploadKeyPackageRequest,
) -> Result<pb::UploadKeyPackageResponse, Refusal> {
    if req.key_package.is_empty() {
        return Err(Refusal::bad_request("key_package is empty"));
    }
    let max = relay.limits.max_key_packages;
    let fingerprint = Sha256::digest(&req.key_package).to_vec();
    let available = relay
        .store
        .write(move |tx| {
            if req.last_resort {
                return Ok(key_packages::set_last_resort(tx, &me.key(), &req.key_package)?);
            }
            key_packages::add_to_pool(tx, &me.key(), &req.key_package, max)?.ok_or_else(|| {
                Refusal::new(
                    Status::QuotaExceeded,
                    format!(
                        "this identity already holds {max} KeyPackages, the relay's limit; \
                         upload more once peers have used some"
                    ),
                )
            })
        })
        .await?;
    Ok(pb::UploadKeyPackageResponse { fingerprint, available })
}

pub async fn fetch(
    relay: &Rc<Relay>,
    req: pb::FetchKeyPackageRequest,
) -> Result<pb::FetchKeyPackageResponse, Refusal> {
    let peer = identity_key("identity_key", &req.identity_key)?;
    let taken = relay.store.write(move |tx| key_packages::take(tx, &peer).map_err(Refusal::from)).await?;
    let (key_package, last_resort) = taken.ok_or_else(|| {
        Refusal::new(
            Status::NotFound,
            format!(
                "no KeyPackage available for identity {}: the peer must upload a fresh one",
                hex::encode(peer)
            ),
        )
    })?;
    Ok(pb::FetchKeyPackageResponse { key_package, last_resort })
}

pub async fn status(relay: &Relay, me: Proven) -> Result<pb::KeyPackageStatusResponse, Refusal> {
    let held = relay.store.read(move |c| key_packages::held(c, &me.key())).await?;
    Ok(pb::KeyPackageStatusResponse {
        available: held.available,
        last_resort: held.last_resort,
        last_resort_used: held.last_resort_used,
    })
}

//! UploadKeyPackage (300) and FetchKeyPackage (301): single-use MLS
//! KeyPackages. A fetch removes exactly one, atomically, oldest first.

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
            let held = key_packages::count(tx, &me.key())?;
            if held >= max {
                return Err(Refusal::new(
                    Status::QuotaExceeded,
                    format!("this identity already holds {held} KeyPackages, the relay's limit; upload more once peers have used some"),
                ));
            }
            key_packages::insert(tx, &me.key(), &req.key_package)?;
            Ok(held + 1)
        })
        .await?;
    Ok(pb::UploadKeyPackageResponse { fingerprint, available })
}

pub async fn fetch(
    relay: &Rc<Relay>,
    req: pb::FetchKeyPackageRequest,
) -> Result<pb::FetchKeyPackageResponse, Refusal> {
    let peer = identity_key("identity_key", &req.identity_key)?;
    let package =
        relay.store.write(move |tx| key_packages::take_oldest(tx, &peer).map_err(Refusal::from)).await?;
    let key_package = package.ok_or_else(|| {
        Refusal::new(
            Status::NotFound,
            format!(
                "no KeyPackage available for identity {}: the peer must upload a fresh one",
                hex::encode(peer)
            ),
        )
    })?;
    Ok(pb::FetchKeyPackageResponse { key_package })
}

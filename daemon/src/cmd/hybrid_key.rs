//! UploadHybridKey (302), FetchHybridKey (303), FetchHybridKeys (304): one
//! opaque (post-quantum) public key per identity, replaced on upload.

use std::rc::Rc;

use qpc_proto::{pb, Status};

use super::auth::Proven;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::hybrid_keys;

/// Bound on identities asked for in one FetchHybridKeys.
const MAX_BATCH: usize = 1000;

pub async fn upload(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::UploadHybridKeyRequest,
) -> Result<pb::UploadHybridKeyResponse, Refusal> {
    if req.public_key.is_empty() {
        return Err(Refusal::bad_request("public_key is empty"));
    }
    relay
        .store
        .write(move |tx| hybrid_keys::put(tx, &me.key(), &req.public_key).map_err(Refusal::from))
        .await?;
    Ok(pb::UploadHybridKeyResponse {})
}

pub async fn fetch(
    relay: &Rc<Relay>,
    req: pb::FetchHybridKeyRequest,
) -> Result<pb::FetchHybridKeyResponse, Refusal> {
    let key = identity_key("identity_key", &req.identity_key)?;
    let public_key = relay.store.read(move |c| hybrid_keys::get(c, &key)).await?.ok_or_else(|| {
        Refusal::new(Status::NotFound, format!("no hybrid key published for identity {}", hex::encode(key)))
    })?;
    Ok(pb::FetchHybridKeyResponse { public_key })
}

pub async fn fetch_many(
    relay: &Rc<Relay>,
    req: pb::FetchHybridKeysRequest,
) -> Result<pb::FetchHybridKeysResponse, Refusal> {
    if req.identity_keys.len() > MAX_BATCH {
        return Err(Refusal::new(
            Status::TooLarge,
            format!("at most {MAX_BATCH} identities per FetchHybridKeys"),
        ));
    }
    let asked = req
        .identity_keys
        .iter()
        .map(|raw| identity_key("identity_keys[]", raw))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = relay
        .store
        .read(move |c| {
            let mut keys = Vec::new();
            for key in &asked {
                if let Some(public_key) = hybrid_keys::get(c, key)? {
                    keys.push(pb::HybridKey { identity_key: key.to_vec(), public_key });
                }
            }
            Ok(keys)
        })
        .await?;
    Ok(pb::FetchHybridKeysResponse { keys })
}

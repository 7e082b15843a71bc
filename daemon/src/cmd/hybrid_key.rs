//! UploadHybridKey (302), FetchHybridKey (303), FetchHybridKeys (304): one
//! opaque (post-quantum) public key per identity, replaced on upload.

use std::rc::Rc;

use qpc_proto::{pb, Status};
use rusqlite::OptionalExtension;

use super::auth::Proven;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;

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
        .write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO hybrid_keys (identity_key, public_key) VALUES (?1, ?2)",
                (&me.key()[..], &req.public_key),
            )
            .map_err(Refusal::from)
        })
        .await?;
    Ok(pb::UploadHybridKeyResponse {})
}

fn lookup(relay: &Relay, key: &[u8; 32]) -> Result<Option<Vec<u8>>, Refusal> {
    Ok(relay.store.read(|c| {
        c.query_row("SELECT public_key FROM hybrid_keys WHERE identity_key = ?1", [&key[..]], |r| r.get(0))
            .optional()
    })?)
}

pub fn fetch(
    relay: &Rc<Relay>,
    req: pb::FetchHybridKeyRequest,
) -> Result<pb::FetchHybridKeyResponse, Refusal> {
    let key = identity_key("identity_key", &req.identity_key)?;
    let public_key = lookup(relay, &key)?.ok_or_else(|| {
        Refusal::new(Status::NotFound, format!("no hybrid key published for identity {}", hex::encode(key)))
    })?;
    Ok(pb::FetchHybridKeyResponse { public_key })
}

pub fn fetch_many(
    relay: &Rc<Relay>,
    req: pb::FetchHybridKeysRequest,
) -> Result<pb::FetchHybridKeysResponse, Refusal> {
    if req.identity_keys.len() > MAX_BATCH {
        return Err(Refusal::new(
            Status::TooLarge,
            format!("at most {MAX_BATCH} identities per FetchHybridKeys"),
        ));
    }
    let mut keys = Vec::new();
    for raw in &req.identity_keys {
        let key = identity_key("identity_keys[]", raw)?;
        if let Some(public_key) = lookup(relay, &key)? {
            keys.push(pb::HybridKey { identity_key: raw.clone(), public_key });
        }
    }
    Ok(pb::FetchHybridKeysResponse { keys })
}

//! ResolveUser (500) and ResolveIdentity (501): usernames to device identity
//! keys and back, so people can be invited and shown by name.

use std::rc::Rc;

use qpc_proto::{pb, Status};
use rusqlite::OptionalExtension;

use super::accounts::check_username;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;

pub fn resolve_user(
    relay: &Rc<Relay>,
    req: pb::ResolveUserRequest,
) -> Result<pb::ResolveUserResponse, Refusal> {
    check_username(&req.username)?;
    let identity_keys: Vec<Vec<u8>> = relay.store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT identity_key FROM account_keys WHERE username = ?1 ORDER BY added_at_ms",
        )?;
        let keys = stmt.query_map([&req.username], |r| r.get(0))?.collect();
        keys
    })?;
    if identity_keys.is_empty() {
        return Err(Refusal::new(
            Status::NotFound,
            format!("no user named {:?} on this relay", req.username),
        ));
    }
    Ok(pb::ResolveUserResponse { identity_keys })
}

pub fn resolve_identity(
    relay: &Rc<Relay>,
    req: pb::ResolveIdentityRequest,
) -> Result<pb::ResolveIdentityResponse, Refusal> {
    let key = identity_key("identity_key", &req.identity_key)?;
    let username = relay
        .store
        .read(|c| {
            c.query_row("SELECT username FROM account_keys WHERE identity_key = ?1", [&key[..]], |r| r.get(0))
                .optional()
        })?
        .unwrap_or_default();
    Ok(pb::ResolveIdentityResponse { username })
}

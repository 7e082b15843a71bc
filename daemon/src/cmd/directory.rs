//! ResolveUser (500) and ResolveIdentity (501): usernames to device identity
//! keys and back, so people can be invited and shown by name.

use std::rc::Rc;

use qpc_proto::{pb, Status};

use super::accounts::check_username;
use super::kt::{Tamper, TAMPER_KEY};
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;
use crate::store::{directory, peers};

pub async fn resolve_user(
    relay: &Rc<Relay>,
    req: pb::ResolveUserRequest,
) -> Result<pb::ResolveUserResponse, Refusal> {
    check_username(&req.username)?;
    let username = req.username.clone();
    let identity_keys = relay.store.read(move |c| directory::keys_of(c, &username)).await?;
    if identity_keys.is_empty() {
        return Err(Refusal::new(
            Status::NotFound,
            format!("no user named {:?} on this relay", req.username),
        ));
    }
    let mut identity_keys = identity_keys;
    if relay.log.tamper == Tamper::ExtraKey(req.username.clone()) {
        identity_keys.push(TAMPER_KEY.to_vec());
    }
    Ok(pb::ResolveUserResponse { identity_keys })
}

pub async fn resolve_identity(
    relay: &Rc<Relay>,
    req: pb::ResolveIdentityRequest,
) -> Result<pb::ResolveIdentityResponse, Refusal> {
    let key = identity_key("identity_key", &req.identity_key)?;
    let (local, remote) =
        relay.store.read(move |c| Ok((directory::owner_of(c, &key)?, peers::remote_of(c, &key)?))).await?;
    // A remote identity is named by its address, `bob@host:port`.
    let username = local
        .or_else(|| {
            let (fp, name) = remote?;
            let peer = relay.fed.peer(&fp)?;
            (!name.is_empty()).then(|| format!("{name}@{}", peer.address()))
        })
        .unwrap_or_default();
    Ok(pb::ResolveIdentityResponse { username })
}

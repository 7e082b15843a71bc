//! AuthChallenge (400) and AuthProve (401): the connection signs a server
//! nonce together with its TLS exporter value, so the proof holds for this
//! connection only. `Proven` can be made nowhere else, so a command that
//! takes one cannot run for a connection that has not proven its identity.

use std::rc::Rc;

use ed25519_dalek::{Signature, VerifyingKey};
use qpc_proto::{auth, pb, Status};
use rand::RngCore;

use crate::config::Registration;
use crate::refusal::{identity_key, Refusal};
use crate::server::{Relay, Session};
use crate::store::{directory, identities, now_ms};

/// An identity this connection has proven it holds the key of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proven {
    key: [u8; 32],
}

impl Proven {
    pub fn key(&self) -> [u8; 32] {
        self.key
    }
}

pub fn challenge(session: &Session) -> pb::AuthChallengeResponse {
    let mut nonce = [0u8; auth::BINDING_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    session.nonce.set(Some(nonce));
    pb::AuthChallengeResponse { nonce: nonce.to_vec() }
}

/// Checks that `signature` by `identity_key` covers this connection's
/// pending nonce and TLS binding; the nonce is spent either way.
pub fn verify_proof(
    session: &Session,
    identity_key_bytes: &[u8],
    signature: &[u8],
) -> Result<[u8; 32], Refusal> {
    let key = identity_key("identity_key", identity_key_bytes)?;
    let nonce = session.nonce.take().ok_or_else(|| {
        Refusal::bad_request("no challenge pending on this connection: call AuthChallenge first")
    })?;
    let unauthenticated =
        |why: &str| Refusal::new(Status::Unauthenticated, format!("identity proof refused: {why}"));
    let verifying = VerifyingKey::from_bytes(&key)
        .map_err(|_| unauthenticated("identity_key is not a valid Ed25519 key"))?;
    let signature =
        Signature::from_slice(signature).map_err(|_| unauthenticated("signature is not 64 bytes"))?;
    let mut binding = [0u8; auth::BINDING_LEN];
    session
        .conn
        .export_keying_material(&mut binding, auth::TLS_EXPORTER_LABEL, b"")
        .map_err(|_| Refusal::new(Status::Internal, "cannot derive the TLS binding of this connection"))?;
    verifying
        .verify_strict(&auth::proof_message(&nonce, &binding), &signature)
        .map_err(|_| unauthenticated("the signature does not verify for this identity and connection"))?;
    Ok(key)
}

/// Marks the connection as speaking for `key` (and `account`, if any).
pub async fn admit(
    relay: &Rc<Relay>,
    session: &Session,
    key: [u8; 32],
    account: Option<String>,
) -> Result<(), Refusal> {
    relay.store.write(move |tx| identities::insert(tx, &key, now_ms()).map_err(Refusal::from)).await?;
    if let Some(old) = session.proven.replace(Some(Proven { key })) {
        relay.hub.unsubscribe(old.key, &session.conn);
    }
    *session.account.borrow_mut() = account;
    relay.hub.subscribe(key, &session.conn);
    log::debug!("connection {} proved identity {}", session.conn.remote_address(), hex::encode(&key[..8]));
    Ok(())
}

pub async fn prove(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::AuthProveRequest,
) -> Result<pb::AuthProveResponse, Refusal> {
    let key = verify_proof(session, &req.identity_key, &req.signature)?;
    super::kt::refuse_revoked(relay, key).await?;
    let account = relay.store.read(move |c| directory::owner_of(c, &key)).await?;
    if account.is_none() && relay.registration != Registration::Open {
        return Err(Refusal::new(
            Status::Forbidden,
            "this relay admits registered accounts only: log in with `qpc login --username NAME`",
        ));
    }
    if let Some(account) = &account {
        relay.bans.check(account)?;
    }
    admit(relay, session, key, account).await?;
    Ok(pb::AuthProveResponse {})
}

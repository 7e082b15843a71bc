//! OPAQUE accounts (100-103). The relay keeps only the OPAQUE registration
//! record; the password never reaches it. Registering and logging in also
//! bind the connection's identity key to the account (an account holds up to
//! MAX_DEVICE_KEYS device keys), proven exactly as AuthProve proves one.

use std::rc::Rc;

use qpc_proto::opaque::opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload, ServerLogin,
    ServerLoginStartParameters, ServerRegistration,
};
use qpc_proto::opaque::Suite;
use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};

use super::auth::{admit, verify_proof};
use crate::config::Registration;
use crate::refusal::Refusal;
use crate::server::{Relay, Session};
use crate::store::{accounts, directory, kt, now_ms};

/// Device keys one account may bind.
pub const MAX_DEVICE_KEYS: u32 = 8;

/// What a started registration remembers until it finishes.
pub struct PendingRegistration {
    username: String,
    one_time_token: Option<Vec<u8>>,
    /// A new password for an account this connection recovered (see
    /// `cmd::recovery`): the record is replaced and the lost devices retired.
    recovery: bool,
}

/// Checks a username: 1 to 32 of a-z, 0-9, '.', '_', '-', starting with a
/// letter or digit.
pub fn check_username(name: &str) -> Result<(), Refusal> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > 32 || !first_ok || !name.chars().all(ok_char) {
        return Err(Refusal::bad_request(format!(
            "invalid username {name:?}: use 1 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

fn malformed(what: &str) -> Refusal {
    Refusal::bad_request(format!("malformed OPAQUE {what}"))
}

/// Constant-time equality, so the token cannot be guessed byte by byte.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn register_start(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::OpaqueRegisterStartRequest,
) -> Result<pb::OpaqueRegisterStartResponse, Refusal> {
    check_username(&req.username)?;
    if session.recovered.borrow().as_deref() == Some(req.username.as_str()) {
        relay.bans.check(&req.username)?;
        return start_registration(relay, session, req, None, true);
    }
    let one_time_token = match relay.registration {
        Registration::Open => None,
        Registration::Closed => {
            return Err(Refusal::new(
                Status::Forbidden,
                "registration is closed on this relay: ask its owner for an account",
            ))
        }
        Registration::Token => {
            let token = req.registration_token.as_bytes();
            if !relay.registration_token.is_empty() && same(token, relay.registration_token.as_bytes()) {
                None
            } else {
                let hash = Sha256::digest(token).to_vec();
                let asked = hash.clone();
                let known = relay.store.read(move |c| accounts::token_known(c, &asked)).await?;
                if token.is_empty() || !known {
                    return Err(Refusal::new(
                        Status::Forbidden,
                        "registration on this relay needs a valid registration token (--token); this one is missing, wrong or used",
                    ));
                }
                Some(hash)
            }
        }
    };
    let username = req.username.clone();
    if relay.store.read(move |c| accounts::exists(c, &username)).await? {
        return Err(Refusal::new(
            Status::Conflict,
            format!("the username {:?} is already taken", req.username),
        ));
    }
    start_registration(relay, session, req, one_time_token, false)
}

fn start_registration(
    relay: &Relay,
    session: &Session,
    req: pb::OpaqueRegisterStartRequest,
    one_time_token: Option<Vec<u8>>,
    recovery: bool,
) -> Result<pb::OpaqueRegisterStartResponse, Refusal> {
    let request = RegistrationRequest::<Suite>::deserialize(&req.registration_request)
        .map_err(|_| malformed("registration request"))?;
    let started = ServerRegistration::<Suite>::start(&relay.opaque, request, req.username.as_bytes())
        .map_err(|_| malformed("registration request"))?;
    *session.registration.borrow_mut() =
        Some(PendingRegistration { username: req.username, one_time_token, recovery });
    Ok(pb::OpaqueRegisterStartResponse { registration_response: started.message.serialize().to_vec() })
}

/// The new password of a recovered account: its OPAQUE record is replaced,
/// `key` is bound (if it is not already), and every other device key is
/// retired, with what was stored for `key` itself (its private halves went
/// with the lost device). The retired keys' connections are closed.
async fn finish_recovery(
    relay: &Rc<Relay>,
    session: &Session,
    username: String,
    record: Vec<u8>,
    key: [u8; 32],
) -> Result<pb::OpaqueRegisterFinishResponse, Refusal> {
    let account = username.clone();
    let retired = relay
        .store
        .write(move |tx| {
            if !accounts::replace_record(tx, &account, &record)? {
                return Err(Refusal::new(
                    Status::NotFound,
                    format!("no account named {account:?} on this relay"),
                ));
            }
            let bound = match directory::owner_of(tx, &key)? {
                Some(owner) if owner == account => true,
                Some(owner) => {
                    return Err(Refusal::new(
                        Status::Conflict,
                        format!("this identity key already belongs to account {owner:?}"),
                    ))
                }
                None => false,
            };
            let retired = accounts::retire_devices(tx, &account, &key)?;
            if !bound {
                directory::bind(tx, &key, &account, now_ms())?;
            }
            Ok(retired)
        })
        .await?;
    for old in &retired {
        if let Ok(old) = <[u8; 32]>::try_from(old.as_slice()) {
            relay.hub.disconnect(old, "device retired by an account recovery");
        }
    }
    session.recovered.borrow_mut().take();
    admit(relay, session, key, Some(username.clone())).await?;
    log::info!("account {username:?} recovered: new password, {} lost device keys retired", retired.len());
    Ok(pb::OpaqueRegisterFinishResponse {})
}

pub async fn register_finish(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::OpaqueRegisterFinishRequest,
) -> Result<pb::OpaqueRegisterFinishResponse, Refusal> {
    let pending = session.registration.borrow_mut().take();
    let pending = pending.filter(|p| p.username == req.username).ok_or_else(|| {
        Refusal::bad_request("no registration of this username was started on this connection")
    })?;
    let upload = RegistrationUpload::<Suite>::deserialize(&req.registration_upload)
        .map_err(|_| malformed("registration upload"))?;
    let record = ServerRegistration::<Suite>::finish(upload).serialize().to_vec();
    let key = verify_proof(session, &req.identity_key, &req.signature)?;
    if pending.recovery {
        return finish_recovery(relay, session, pending.username, record, key).await;
    }
    let username = pending.username.clone();
    relay
        .store
        .write(move |tx| {
            if accounts::exists(tx, &pending.username)? {
                return Err(Refusal::new(
                    Status::Conflict,
                    format!("the username {:?} is already taken", pending.username),
                ));
            }
            if let Some((owner, at)) = kt::revoked(tx, &key)? {
                return Err(super::kt::revoked_refusal(&owner, at));
            }
            if let Some(owner) = directory::owner_of(tx, &key)? {
                return Err(Refusal::new(
                    Status::Conflict,
                    format!("this identity key already belongs to account {owner:?}"),
                ));
            }
            if let Some(hash) = &pending.one_time_token {
                // Spent with the account, in the same transaction.
                if !accounts::spend_token(tx, hash)? {
                    return Err(Refusal::new(
                        Status::Forbidden,
                        "this registration token was used meanwhile",
                    ));
                }
            }
            accounts::create(tx, &pending.username, &record, now_ms())?;
            directory::bind(tx, &key, &pending.username, now_ms())?;
            Ok(())
        })
        .await?;
    admit(relay, session, key, Some(username.clone())).await?;
    session.password_verified.set(true);
    log::info!("account {username:?} registered");
    Ok(pb::OpaqueRegisterFinishResponse {})
}

pub async fn login_start(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::OpaqueLoginStartRequest,
) -> Result<pb::OpaqueLoginStartResponse, Refusal> {
    check_username(&req.username)?;
    let addr = session.conn.remote_address().ip();
    if let Some((wait, who)) = relay.logins.wait(&req.username, addr) {
        log::info!("login for {:?} from {addr} refused: backing off after failed attempts", req.username);
        return Err(Refusal::new(
            Status::RateLimited,
            format!("too many failed logins for {who}; retry in {} s", wait.as_secs().max(1)),
        ));
    }
    relay.bans.check(&req.username)?;
    // Counted as failed until it finishes.
    relay.logins.failed(&req.username, addr, relay.limits.max_login_failures);
    let username = req.username.clone();
    let record = relay.store.read(move |c| accounts::record(c, &username)).await?;
    let Some(record) = record else {
        log::info!("login for unknown account {:?} from {addr}", req.username);
        return Err(Refusal::new(
            Status::NotFound,
            format!("no account named {:?} on this relay", req.username),
        ));
    };
    let record = ServerRegistration::<Suite>::deserialize(&record)
        .map_err(|_| Refusal::new(Status::Internal, "the stored account record is unreadable"))?;
    let request = CredentialRequest::<Suite>::deserialize(&req.credential_request)
        .map_err(|_| malformed("credential request"))?;
    let started = ServerLogin::start(
        &mut rand::rngs::OsRng,
        &relay.opaque,
        Some(record),
        request,
        req.username.as_bytes(),
        ServerLoginStartParameters::default(),
    )
    .map_err(|_| malformed("credential request"))?;
    *session.login.borrow_mut() = Some((req.username, started.state));
    Ok(pb::OpaqueLoginStartResponse { credential_response: started.message.serialize().to_vec() })
}

pub async fn login_finish(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::OpaqueLoginFinishRequest,
) -> Result<pb::OpaqueLoginFinishResponse, Refusal> {
    let (username, state) = session
        .login
        .borrow_mut()
        .take()
        .ok_or_else(|| Refusal::bad_request("no login was started on this connection"))?;
    let finalization = CredentialFinalization::<Suite>::deserialize(&req.credential_finalization)
        .map_err(|_| malformed("credential finalization"))?;
    if state.finish(finalization).is_err() {
        return Err(Refusal::new(Status::Unauthenticated, format!("wrong password for {username:?}")));
    }
    relay.bans.check(&username)?;
    let key = verify_proof(session, &req.identity_key, &req.signature)?;
    let account = username.clone();
    relay
        .store
        .write(move |tx| match directory::owner_of(tx, &key)? {
            _ if kt::revoked(tx, &key)?.is_some() => {
                let (owner, at) = kt::revoked(tx, &key)?.unwrap_or_default();
                Err(super::kt::revoked_refusal(&owner, at))
            }
            Some(owner) if owner == account => Ok(()),
            Some(_) => Err(Refusal::new(Status::Forbidden, "this identity key belongs to another account")),
            None => {
                let held = directory::count_keys(tx, &account)?;
                if held >= MAX_DEVICE_KEYS {
                    return Err(Refusal::new(
                        Status::QuotaExceeded,
                        format!("account {account:?} already has {held} device keys, the most it may have"),
                    ));
                }
                directory::bind(tx, &key, &account, now_ms())?;
                Ok(())
            }
        })
        .await?;
    relay.logins.succeeded(&username);
    admit(relay, session, key, Some(username.clone())).await?;
    session.password_verified.set(true);
    Ok(pb::OpaqueLoginFinishResponse { username })
}

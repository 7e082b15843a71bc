//! Recovery bundles (1000-1003). A signed-in account stores one bundle the
//! client encrypted under its recovery code, with the Argon2id salt and
//! costs and the SHA-256 of the verifier key the code derives. A person who
//! lost every device asks for the salt (RecoveryStart), derives the keys and
//! shows the verifier key (RecoveryFinish); the relay compares its hash in
//! constant time and answers with the ciphertext. A wrong code counts as a
//! failed login of that account and address (the same back-off). After a
//! right one, the connection may set a new password (see
//! `accounts::register_start`), which also retires the lost devices.

use std::rc::Rc;

use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};

use super::accounts::{check_username, same};
use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::{Relay, Session};
use crate::store::{now_ms, recovery, recovery::Bundle};

/// Largest bundle ciphertext the relay keeps.
pub const MAX_BUNDLE: usize = 64 * 1024;
/// Largest Argon2id memory cost accepted (1 GiB), so a bundle cannot make a
/// recovering client run out of memory.
const MAX_M_COST_KIB: u32 = 1 << 20;

fn account_of(session: &Session) -> Result<String, Refusal> {
    session.account.borrow().clone().ok_or_else(|| {
        Refusal::new(
            Status::Forbidden,
            "a recovery bundle belongs to an account: sign in with `qpc login --username NAME` first",
        )
    })
}

fn check_bundle(req: &pb::StoreRecoveryBundleRequest) -> Result<(), Refusal> {
    let bad = |what: String| Err(Refusal::bad_request(format!("recovery bundle refused: {what}")));
    if req.ciphertext.len() > MAX_BUNDLE {
        return Err(Refusal::new(
            Status::QuotaExceeded,
            format!(
                "the recovery bundle is {} bytes; this relay keeps at most {MAX_BUNDLE} bytes per account",
                req.ciphertext.len()
            ),
        ));
    }
    if req.version == 0 {
        return bad("version must be 1 or more".into());
    }
    if !(16..=64).contains(&req.salt.len()) {
        return bad(format!("the salt must be 16 to 64 bytes, got {}", req.salt.len()));
    }
    if !(8..=MAX_M_COST_KIB).contains(&req.m_cost_kib)
        || !(1..=64).contains(&req.t_cost)
        || !(1..=16).contains(&req.parallelism)
    {
        return bad(format!(
            "Argon2id costs out of range: memory {} KiB (8 to {MAX_M_COST_KIB}), passes {} (1 to 64), lanes {} (1 to 16)",
            req.m_cost_kib, req.t_cost, req.parallelism
        ));
    }
    if req.verifier.len() != 32 {
        return bad(format!("the verifier must be a 32-byte SHA-256, got {} bytes", req.verifier.len()));
    }
    if req.nonce.len() != 12 {
        return bad(format!("the nonce must be 12 bytes, got {}", req.nonce.len()));
    }
    if req.ciphertext.is_empty() {
        return bad("the ciphertext is empty".into());
    }
    Ok(())
}

pub async fn store(
    relay: &Rc<Relay>,
    session: &Session,
    _me: Proven,
    req: pb::StoreRecoveryBundleRequest,
) -> Result<pb::StoreRecoveryBundleResponse, Refusal> {
    let account = account_of(session)?;
    check_bundle(&req)?;
    let bundle = Bundle {
        version: req.version,
        salt: req.salt,
        m_cost_kib: req.m_cost_kib,
        t_cost: req.t_cost,
        parallelism: req.parallelism,
        verifier: req.verifier,
        nonce: req.nonce,
        ciphertext: req.ciphertext,
    };
    let cap = relay.limits.store_cap_bytes;
    let user = account.clone();
    let replaced = relay
        .store
        .write(move |tx| {
            // Bundles share the store cap with the queues.
            let used = tx.store_bytes() + recovery::bytes_except(tx, &user)?;
            if used + bundle.stored_bytes() > cap {
                return Err(Refusal::new(
                    Status::QuotaExceeded,
                    format!(
                        "the relay's store is full ({used} of {cap} bytes used); the recovery bundle of {} bytes was not stored",
                        bundle.stored_bytes()
                    ),
                ));
            }
            Ok(recovery::put(tx, &user, &bundle, now_ms())?)
        })
        .await?;
    log::info!("recovery bundle of account {account:?} {}", if replaced { "replaced" } else { "stored" });
    Ok(pb::StoreRecoveryBundleResponse { replaced })
}

pub async fn delete(
    relay: &Rc<Relay>,
    session: &Session,
    _me: Proven,
) -> Result<pb::DeleteRecoveryBundleResponse, Refusal> {
    let account = account_of(session)?;
    let deleted = relay.store.write(move |tx| Ok::<_, Refusal>(recovery::delete(tx, &account)?)).await?;
    Ok(pb::DeleteRecoveryBundleResponse { deleted })
}

/// What both recovery steps check first: the name, the back-off, the ban,
/// and that there is a bundle.
async fn bundle_for(relay: &Rc<Relay>, session: &Session, username: &str) -> Result<Bundle, Refusal> {
    check_username(username)?;
    let addr = session.conn.remote_address().ip();
    if let Some((wait, who)) = relay.logins.wait(username, addr) {
        log::info!("recovery of {username:?} from {addr} refused: backing off after failed attempts");
        return Err(Refusal::new(
            Status::RateLimited,
            format!(
                "too many failed logins or recovery codes for {who}; retry in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    relay.bans.check(username)?;
    let name = username.to_string();
    relay.store.read(move |c| recovery::get(c, &name)).await?.ok_or_else(|| {
        Refusal::new(
            Status::NotFound,
            format!("no recovery bundle for {username:?} on this relay (`qpc recovery-setup` stores one)"),
        )
    })
}

pub async fn start(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::RecoveryStartRequest,
) -> Result<pb::RecoveryStartResponse, Refusal> {
    let b = bundle_for(relay, session, &req.username).await?;
    Ok(pb::RecoveryStartResponse {
        version: b.version,
        salt: b.salt,
        m_cost_kib: b.m_cost_kib,
        t_cost: b.t_cost,
        parallelism: b.parallelism,
    })
}

pub async fn finish(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::RecoveryFinishRequest,
) -> Result<pb::RecoveryFinishResponse, Refusal> {
    let b = bundle_for(relay, session, &req.username).await?;
    if req.verifier_key.len() != 32 {
        return Err(Refusal::bad_request(format!(
            "verifier_key must be 32 bytes, got {}",
            req.verifier_key.len()
        )));
    }
    let addr = session.conn.remote_address().ip();
    if !same(&Sha256::digest(&req.verifier_key), &b.verifier) {
        relay.logins.failed(&req.username, addr, relay.limits.max_login_failures);
        log::info!("wrong recovery code for {:?} from {addr}", req.username);
        return Err(Refusal::new(
            Status::Unauthenticated,
            format!("wrong recovery code for {:?}", req.username),
        ));
    }
    relay.logins.succeeded(&req.username);
    log::info!("recovery bundle of {:?} handed out to {addr} (right code)", req.username);
    *session.recovered.borrow_mut() = Some(req.username);
    Ok(pb::RecoveryFinishResponse { version: b.version, nonce: b.nonce, ciphertext: b.ciphertext })
}

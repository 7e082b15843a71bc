//! One file per command family, each `parse → apply → response`. This
//! module routes a method id to its command and enforces the one rule all
//! share: only the auth, account and recovery methods work before an
//! identity is proven, and nothing works for a banned account.

pub mod accounts;
pub mod ack;
pub mod auth;
pub mod blob;
pub mod directory;
pub mod enqueue;
pub mod federation;
pub mod fetch;
pub mod group;
pub mod hybrid_key;
pub mod key_package;
pub mod kt;
pub mod moderation;
pub mod recovery;
pub mod sealed;
pub mod signal;

use std::rc::Rc;

use prost::Message;
use qpc_proto::{Method, Status};

use crate::refusal::{decode, Refusal};
use crate::server::{Relay, Session};

fn ok<M: Message>(m: M) -> Result<Vec<u8>, Refusal> {
    Ok(m.encode_to_vec())
}

pub async fn dispatch(
    relay: &Rc<Relay>,
    session: &Session,
    method_id: u16,
    payload: &[u8],
) -> Result<Vec<u8>, Refusal> {
    let Some(method) = Method::from_u16(method_id) else {
        return Err(Refusal::new(Status::UnknownMethod, format!("unknown method id {method_id}")));
    };
    // A connection that speaks for a banned account gets nothing more.
    relay.bans.check_session(session)?;
    match method {
        Method::AuthChallenge => return ok(auth::challenge(session)),
        Method::AuthProve => return ok(auth::prove(relay, session, decode(payload)?).await?),
        Method::OpaqueRegisterStart => {
            return ok(accounts::register_start(relay, session, decode(payload)?).await?)
        }
        Method::OpaqueRegisterFinish => {
            return ok(accounts::register_finish(relay, session, decode(payload)?).await?)
        }
        Method::OpaqueLoginStart => return ok(accounts::login_start(relay, session, decode(payload)?).await?),
        Method::OpaqueLoginFinish => {
            return ok(accounts::login_finish(relay, session, decode(payload)?).await?)
        }
        Method::SealedEnqueue => return ok(sealed::enqueue(relay, session, decode(payload)?).await?),
        Method::RecoveryStart => return ok(recovery::start(relay, session, decode(payload)?).await?),
        Method::RecoveryFinish => return ok(recovery::finish(relay, session, decode(payload)?).await?),
        _ => {}
    }
    let me = session.proven().ok_or_else(|| {
        Refusal::new(
            Status::Unauthenticated,
            "this connection has not proven an identity (AuthChallenge, AuthProve)",
        )
    })?;
    match method {
        Method::Enqueue => ok(enqueue::enqueue(relay, me, decode(payload)?).await?),
        Method::BatchEnqueue => ok(enqueue::batch_enqueue(relay, me, decode(payload)?).await?),
        Method::Peek => ok(fetch::peek(relay, me, decode(payload)?).await?),
        Method::Fetch => ok(fetch::fetch(relay, me, decode(payload)?).await?),
        Method::FetchWait => ok(fetch::fetch_wait(relay, me, decode(payload)?).await?),
        Method::Ack => ok(ack::ack(relay, me, decode(payload)?).await?),
        Method::UploadKeyPackage => ok(key_package::upload(relay, me, decode(payload)?).await?),
        Method::FetchKeyPackage => ok(key_package::fetch(relay, decode(payload)?).await?),
        Method::KeyPackageStatus => ok(key_package::status(relay, me, decode(payload)?).await?),
        Method::GroupCommit => ok(group::commit(relay, me, decode(payload)?).await?),
        Method::Signal => ok(signal::signal(relay, me, decode(payload)?)?),
        Method::RegisterDeliveryToken => ok(sealed::register(relay, me, decode(payload)?).await?),
        Method::RevokeDeliveryToken => ok(sealed::revoke(relay, me, decode(payload)?).await?),
        Method::BlobUploadStart => ok(blob::upload_start(relay, session, me, decode(payload)?).await?),
        Method::BlobUploadChunk => ok(blob::upload_chunk(relay, me, decode(payload)?).await?),
        Method::BlobUploadFinish => ok(blob::upload_finish(relay, me, decode(payload)?).await?),
        Method::BlobStatus => ok(blob::status(relay, me, decode(payload)?).await?),
        Method::BlobDownload => ok(blob::download(relay, decode(payload)?).await?),
        Method::BlobReceived => ok(blob::received(relay, me, decode(payload)?).await?),
        Method::UploadHybridKey => ok(hybrid_key::upload(relay, me, decode(payload)?).await?),
        Method::FetchHybridKey => ok(hybrid_key::fetch(relay, decode(payload)?).await?),
        Method::FetchHybridKeys => ok(hybrid_key::fetch_many(relay, decode(payload)?).await?),
        Method::ResolveUser => ok(directory::resolve_user(relay, decode(payload)?).await?),
        Method::ResolveIdentity => ok(directory::resolve_identity(relay, decode(payload)?).await?),
        Method::Report => ok(moderation::report(relay, session, me, decode(payload)?).await?),
        Method::StoreRecoveryBundle => ok(recovery::store(relay, session, me, decode(payload)?).await?),
        Method::DeleteRecoveryBundle => {
            let _: qpc_proto::pb::DeleteRecoveryBundleRequest = decode(payload)?;
            ok(recovery::delete(relay, session, me).await?)
        }
        Method::LogHead => ok(kt::head(relay, session).await?),
        Method::LogInclusion => {
            ok(kt::inclusion(relay, kt::reader(session).as_deref(), decode(payload)?).await?)
        }
        Method::LogConsistency => {
            ok(kt::consistency(relay, kt::reader(session).as_deref(), decode(payload)?).await?)
        }
        Method::LogEntries => ok(kt::entries(relay, session, decode(payload)?).await?),
        Method::ListDevices => ok(kt::list_devices(relay, session).await?),
        Method::RevokeDevice => ok(kt::revoke_device(relay, session, me, decode(payload)?).await?),
        Method::ResolveRemoteUser => ok(federation::resolve_remote_user(relay, decode(payload)?).await?),
        Method::Undelivered => ok(federation::undelivered(relay, me, decode(payload)?).await?),
        Method::PeerResolveUser
        | Method::PeerFetchKeyPackage
        | Method::PeerDeliver
        | Method::PeerGroupCommit => Err(Refusal::new(
            Status::Forbidden,
            format!("{method:?} is for peer relays, over their own link (ALPN qpc-fed)"),
        )),
        Method::AuthChallenge
        | Method::AuthProve
        | Method::OpaqueRegisterStart
        | Method::OpaqueRegisterFinish
        | Method::OpaqueLoginStart
        | Method::OpaqueLoginFinish
        | Method::SealedEnqueue
        | Method::RecoveryStart
        | Method::RecoveryFinish => unreachable!("handled above"),
    }
}

/// A request from peer relay `fingerprint` over its `qpc-fed` link: only
/// the peer methods.
pub async fn dispatch_peer(
    relay: &Rc<Relay>,
    fingerprint: &str,
    method_id: u16,
    payload: &[u8],
) -> Result<Vec<u8>, Refusal> {
    match Method::from_u16(method_id) {
        Some(Method::PeerResolveUser) => {
            ok(federation::peer_resolve_user(relay, fingerprint, decode(payload)?).await?)
        }
        Some(Method::PeerFetchKeyPackage) => {
            ok(federation::peer_fetch_key_package(relay, decode(payload)?).await?)
        }
        Some(Method::PeerGroupCommit) => {
            ok(federation::peer_group_commit(relay, fingerprint, decode(payload)?).await?)
        }
        Some(Method::PeerDeliver) => {
            ok(federation::peer_deliver(relay, fingerprint, decode(payload)?).await?)
        }
        _ => Err(Refusal::new(
            Status::UnknownMethod,
            format!("method {method_id} is not a peer method (1250-1253 are)"),
        )),
    }
}

//! Key transparency (1100-1105): the latest signed tree head, inclusion
//! proofs of a username's current entries, consistency proofs, ranges of
//! entries for an audit; and a person's own devices: the list, and
//! revoking one (logged, unbound, refused from then on).
//!
//! The log itself is `store::kt`; here the relay keeps the Merkle tree's
//! levels in memory ([`Log`]), extended from the store before each answer,
//! so a root or proof costs O(log² n) hashes, and signs heads with its log
//! key. `QPC_TEST_KT_TAMPER` makes a test relay lie (see [`Tamper`]) so the
//! tests can show that clients catch it.

use std::cell::RefCell;
use std::rc::Rc;

use ed25519_dalek::SigningKey;
use qpc_proto::kt::{self, Entry, Kind, Tree, TreeHead};
use qpc_proto::{pb, Status};

use super::accounts::check_username;
use super::auth::Proven;
use crate::refusal::{identity_key, Refusal};
use crate::server::{Relay, Session};
use crate::store::{self, directory, Store, StoreError};

/// Entries one LogEntries call returns at most.
pub const MAX_ENTRIES_PER_CALL: u32 = 1000;

/// How a test relay lies (`QPC_TEST_KT_TAMPER`), never set in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// `extra-key:NAME`: ResolveUser for NAME answers one more device key,
    /// one the log never saw.
    ExtraKey(String),
    /// `fork:NAME`: the connection signed in as NAME is shown a history with
    /// one more entry at its end (a device key for an account "forked")
    /// that nobody else sees: a split view. `fork:@HOST:PORT` shows it to
    /// the peer relay added at that address (and so to every device asking
    /// through it), see [`peer_reader`].
    Fork(String),
}

/// The key a tampering relay adds.
pub const TAMPER_KEY: [u8; 32] = [0x5a; 32];

impl Tamper {
    pub fn from_env() -> Tamper {
        let v = std::env::var("QPC_TEST_KT_TAMPER").unwrap_or_default();
        let tamper = match v.split_once(':') {
            Some(("extra-key", name)) => Tamper::ExtraKey(name.into()),
            Some(("fork", name)) => Tamper::Fork(name.into()),
            _ => Tamper::None,
        };
        if tamper != Tamper::None {
            log::warn!("QPC_TEST_KT_TAMPER={v}: this relay lies about its directory (for tests only)");
        }
        tamper
    }
}

/// The relay's log key and its tree of the log, as far as it has read it.
pub struct Log {
    key: SigningKey,
    tree: RefCell<Tree>,
    pub tamper: Tamper,
}

impl Log {
    /// Loads the log key from the store, making it on first start, and reads
    /// the tree.
    pub async fn open(store: &Store) -> Result<Log, StoreError> {
        let seed = match store.read(store::kt::log_key).await? {
            Some(seed) => seed,
            None => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let seed = key.to_bytes();
                store.write(move |tx| store::kt::set_log_key(tx, &seed).map_err(StoreError::from)).await?;
                log::info!("generated the key transparency log key");
                seed
            }
        };
        let log =
            Log { key: SigningKey::from_bytes(&seed), tree: RefCell::default(), tamper: Tamper::from_env() };
        log.sync(store).await?;
        Ok(log)
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Extends the in-memory tree with what the store has committed since.
    pub async fn sync(&self, store: &Store) -> Result<u64, StoreError> {
        let have = self.tree.borrow().len() as u64;
        let new = store.read(move |c| store::kt::leaf_hashes_from(c, have)).await?;
        let mut tree = self.tree.borrow_mut();
        // Another sync may have run meanwhile: take only what is still new.
        let skip = tree.len() as u64 - have;
        for leaf in new.into_iter().skip(skip as usize) {
            tree.push(leaf);
        }
        Ok(tree.len() as u64)
    }

    /// Whether `reader` is shown a forked log (`Tamper::Fork`).
    fn forks_for(&self, reader: Option<&str>) -> bool {
        matches!((&self.tamper, reader), (Tamper::Fork(name), Some(r)) if name == r)
    }

    /// Runs `f` on the log as `reader` is shown it: the tree itself,
    /// borrowed, or under `Tamper::Fork` a copy with the fork's entry.
    fn with_view<T>(&self, reader: Option<&str>, f: impl FnOnce(&Tree) -> T) -> T {
        let tree = self.tree.borrow();
        if self.forks_for(reader) {
            let mut forked = tree.clone();
            forked.push(kt::leaf_hash(&fork_entry()));
            f(&forked)
        } else {
            f(&tree)
        }
    }

    fn head_of(&self, tree: &Tree) -> TreeHead {
        let size = tree.len();
        TreeHead::sign(&self.key, size as u64, tree.root_at(size), store::now_ms().max(0) as u64)
    }

    /// The head of the whole log now, signed (what `qpc-server log-head`
    /// and the status page show).
    pub async fn head(&self, store: &Store) -> Result<TreeHead, StoreError> {
        self.sync(store).await?;
        Ok(self.head_of(&self.tree.borrow()))
    }
}

/// The entry a forking relay shows its victim only.
fn fork_entry() -> Vec<u8> {
    Entry { kind: Kind::DeviceAdded, time_ms: 0, username: "forked".into(), key: Some(TAMPER_KEY) }.encode()
}

/// Who is reading the log, for `Tamper::Fork`: the account a connection is
/// signed in to.
pub fn reader(session: &Session) -> Option<String> {
    session.account.borrow().clone()
}

/// A peer relay reading the log on behalf of its devices: `@HOST:PORT` as
/// it was added here (no username has an '@').
pub fn peer_reader(relay: &Relay, fingerprint: &str) -> Option<String> {
    relay.fed.peer(fingerprint).map(|p| format!("@{}", p.address()))
}

pub async fn head(relay: &Rc<Relay>, session: &Session) -> Result<pb::LogHeadResponse, Refusal> {
    relay.log.sync(&relay.store).await?;
    let head = relay.log.with_view(reader(session).as_deref(), |tree| relay.log.head_of(tree));
    Ok(pb::LogHeadResponse { head: Some(head.to_pb()), log_key: relay.log.public_key().to_vec() })
}

/// LogInclusion (1101), for a local device (`reader` its account) or a
/// peer relay's (PeerResolveUser, `reader` from [`peer_reader`]).
pub async fn inclusion(
    relay: &Rc<Relay>,
    reader: Option<&str>,
    req: pb::LogInclusionRequest,
) -> Result<pb::LogInclusionResponse, Refusal> {
    check_username(&req.username)?;
    let username = req.username.clone();
    let current = relay.store.read(move |c| store::kt::current_entries(c, &username)).await?;
    if current.is_empty() {
        return Err(Refusal::new(
            Status::NotFound,
            format!("no user named {:?} on this relay", req.username),
        ));
    }
    // After the entries were read, so the tree holds all of them.
    relay.log.sync(&relay.store).await?;
    Ok(relay.log.with_view(reader, |tree| {
        let size = tree.len();
        let leaves = current
            .into_iter()
            .map(|(index, entry)| pb::LogLeaf {
                index,
                entry,
                path: kt::encode_path(&tree.inclusion_proof(index as usize, size)),
            })
            .collect();
        pb::LogInclusionResponse { head: Some(relay.log.head_of(tree).to_pb()), leaves }
    }))
}

/// LogConsistency (1102), for a local device or a peer relay's (as
/// [`inclusion`]).
pub async fn consistency(
    relay: &Rc<Relay>,
    reader: Option<&str>,
    req: pb::LogConsistencyRequest,
) -> Result<pb::LogConsistencyResponse, Refusal> {
    relay.log.sync(&relay.store).await?;
    relay.log.with_view(reader, |tree| {
        let size = tree.len() as u64;
        if req.from_size > req.to_size || req.to_size > size {
            return Err(Refusal::bad_request(format!(
                "no consistency proof from {} to {} entries: the log has {size} (from must be at most to, to at most the log's size)",
                req.from_size, req.to_size
            )));
        }
        let path = tree.consistency_proof(req.from_size as usize, req.to_size as usize);
        Ok(pb::LogConsistencyResponse { path: kt::encode_path(&path) })
    })
}

pub async fn entries(
    relay: &Rc<Relay>,
    session: &Session,
    req: pb::LogEntriesRequest,
) -> Result<pb::LogEntriesResponse, Refusal> {
    if req.count == 0 || req.count > MAX_ENTRIES_PER_CALL {
        return Err(Refusal::bad_request(format!(
            "count {} out of range: ask for 1 to {MAX_ENTRIES_PER_CALL} entries per call",
            req.count
        )));
    }
    let (start, count) = (req.start, req.count);
    let mut entries = relay.store.read(move |c| store::kt::entries(c, start, count)).await?;
    let real = relay.log.sync(&relay.store).await?;
    let reader = reader(session);
    let forked = relay.log.forks_for(reader.as_deref());
    let size = real + u64::from(forked);
    if start > size {
        return Err(Refusal::bad_request(format!(
            "start {start} is past the end of the log ({size} entries)"
        )));
    }
    if forked && real < start + u64::from(count) {
        entries.truncate((real - start.min(real)) as usize);
        entries.push(fork_entry());
    }
    Ok(pb::LogEntriesResponse { entries })
}

/// The account this connection is signed in to, or a refusal saying so.
fn account_of(session: &Session) -> Result<String, Refusal> {
    session.account.borrow().clone().ok_or_else(|| {
        Refusal::new(Status::Forbidden, "this connection is not signed in to an account (qpc login)")
    })
}

pub async fn list_devices(relay: &Rc<Relay>, session: &Session) -> Result<pb::ListDevicesResponse, Refusal> {
    let account = account_of(session)?;
    let rows = relay.store.read(move |c| directory::devices_of(c, &account)).await?;
    let devices = rows
        .into_iter()
        .map(|(identity_key, added, seen)| pb::Device {
            identity_key,
            added_at_ms: added.max(0) as u64,
            last_seen_ms: seen.max(0) as u64,
        })
        .collect();
    Ok(pb::ListDevicesResponse { devices })
}

pub async fn revoke_device(
    relay: &Rc<Relay>,
    session: &Session,
    me: Proven,
    req: pb::RevokeDeviceRequest,
) -> Result<pb::RevokeDeviceResponse, Refusal> {
    let key = identity_key("identity_key", &req.identity_key)?;
    let account = account_of(session)?;
    if !session.password_verified.get() {
        return Err(Refusal::new(
            Status::Forbidden,
            "revoking a device needs a password login on this connection (OPAQUE), not only a device key",
        ));
    }
    if key == me.key() {
        return Err(Refusal::bad_request(
            "this is the device you are revoking from: revoke it from another device of the account",
        ));
    }
    let short = hex::encode(&key[..8]);
    let who = account.clone();
    let index = relay
        .store
        .write(move |tx| {
            if directory::owner_of(tx, &key)?.as_deref() != Some(who.as_str()) {
                return Err(Refusal::new(
                    Status::NotFound,
                    format!("no device {short}… on account {who:?} (qpc devices lists them)"),
                ));
            }
            Ok(store::kt::revoke(tx, &who, &key, store::now_ms())?)
        })
        .await?;
    relay.hub.disconnect(key, "this device was revoked by another device of its account");
    log::info!("account {account:?} revoked device {}", hex::encode(&key[..8]));
    Ok(pb::RevokeDeviceResponse { log_index: index })
}

/// Refuses a device key that was revoked (for every way of proving one).
pub async fn refuse_revoked(relay: &Relay, key: [u8; 32]) -> Result<(), Refusal> {
    match relay.store.read(move |c| store::kt::revoked(c, &key)).await? {
        None => Ok(()),
        Some((username, at)) => Err(revoked_refusal(&username, at)),
    }
}

pub fn revoked_refusal(username: &str, at_ms: i64) -> Refusal {
    Refusal::new(
        Status::Forbidden,
        format!(
            "this device key was revoked from account {username:?} (at {} ms since 1970) and is refused",
            at_ms
        ),
    )
}

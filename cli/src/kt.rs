//! Key transparency on the client: every username's device keys are checked
//! against the relay's log before they are used. A directory answer must
//! match the log's current entries for that username, each proven included
//! in a tree head signed with the relay's log key; each new head must
//! extend the last one this device saw (a consistency proof), so a relay
//! that shows two people two histories is caught the next time either
//! checks. The proof checks themselves are `qpc_proto::kt`, shared with the
//! relay; [`verify_directory_answer`] is the one function any caller hands
//! an answer to.
//!
//! A person on a peer relay (`bob@host:port`) is checked the same way
//! against that relay's own log ([`KtState::check_remote`]): its proof comes
//! through our relay unchanged, its log key is pinned per relay at first
//! contact, and each of its heads must extend the last one seen from it.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use qpc_proto::kt::{self, Entry, Kind, TreeHead};
use qpc_proto::{pb, Method};
use sha2::{Digest, Sha256};

use crate::relay::{Relay, RelayError};

/// What this device keeps of the log (in its encrypted state file).
#[derive(Clone, PartialEq, Message)]
pub struct KtState {
    /// The relay's log key, pinned at first use (or from `QPC_LOG_KEY`).
    #[prost(bytes = "vec", tag = "1")]
    pub log_key: Vec<u8>,
    /// The last tree head seen and verified.
    #[prost(message, optional, tag = "2")]
    pub head: Option<pb::TreeHead>,
    /// The device keys each checked username had when last checked.
    #[prost(message, repeated, tag = "3")]
    pub devices: Vec<KnownDevices>,
    /// People marked verified, with the safety number they had then.
    #[prost(message, repeated, tag = "4")]
    pub verified: Vec<Verified>,
    /// The peer relays' logs seen (people there are in `devices` by their
    /// full address, `bob@host:port`). Empty in a state written before.
    #[prost(message, repeated, tag = "5")]
    pub remotes: Vec<RemoteLog>,
}

/// What this device keeps of one peer relay's log.
#[derive(Clone, PartialEq, Message)]
pub struct RemoteLog {
    /// The relay, `host:port` as addresses show it.
    #[prost(string, tag = "1")]
    pub relay: String,
    /// Its log key, pinned at first contact.
    #[prost(bytes = "vec", tag = "2")]
    pub log_key: Vec<u8>,
    /// The last tree head seen from it and verified.
    #[prost(message, optional, tag = "3")]
    pub head: Option<pb::TreeHead>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KnownDevices {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub keys: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Verified {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub safety_number: String,
}

/// A check that failed: the operation must not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum KtError {
    #[error("key transparency check of {username:?} FAILED: {what}; refusing to use these keys")]
    Check { username: String, what: String },
    #[error("key transparency check FAILED: {0}")]
    Log(String),
    #[error(transparent)]
    Relay(#[from] RelayError),
}

/// A device key that appeared since the last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub username: String,
    pub key: [u8; 32],
    pub added_ms: u64,
}

fn check_err(username: &str, what: impl std::fmt::Display) -> KtError {
    KtError::Check { username: username.to_string(), what: what.to_string() }
}

/// A device key the log holds for a username, and when it was added (ms).
pub type LoggedDevice = ([u8; 32], u64);

/// Checks an inclusion answer for `username` against the directory's
/// `keys`: the head's signature by `log_key`, every leaf's inclusion, that
/// the leaves are `username`'s account and exactly `keys` as devices.
/// Returns the verified head and when each key was added.
pub fn verify_directory_answer(
    username: &str,
    keys: &[[u8; 32]],
    answer: &pb::LogInclusionResponse,
    log_key: &VerifyingKey,
) -> Result<(TreeHead, Vec<LoggedDevice>), KtError> {
    let fail = |what: String| check_err(username, what);
    let head = answer.head.as_ref().ok_or_else(|| fail("the relay sent no tree head".into()))?;
    let head = TreeHead::from_pb(head).map_err(|e| fail(e.to_string()))?;
    head.verify(log_key).map_err(|e| fail(e.to_string()))?;
    let mut account = false;
    let mut logged = Vec::new();
    for leaf in &answer.leaves {
        let entry = kt::verify_leaf(leaf, &head).map_err(|e| fail(format!("entry {}: {e}", leaf.index)))?;
        if entry.username != username {
            return Err(fail(format!("entry {} is about {:?}", leaf.index, entry.username)));
        }
        match (entry.kind, entry.key) {
            (Kind::AccountCreated, _) => account = true,
            (Kind::DeviceAdded, Some(key)) => logged.push((key, entry.time_ms)),
            (kind, _) => {
                return Err(fail(format!(
                    "entry {} is a {:?} entry, not a current one",
                    leaf.index,
                    kind.name()
                )))
            }
        }
    }
    if !account {
        return Err(fail("the log has no entry creating this account".into()));
    }
    for key in keys {
        if !logged.iter().any(|(k, _)| k == key) {
            return Err(fail(format!(
                "the relay named device key {} that is not in the log (a key added behind the log's back)",
                hex::encode(key)
            )));
        }
    }
    if let Some((k, _)) = logged.iter().find(|(k, _)| !keys.contains(k)) {
        return Err(fail(format!("the log lists device key {} that the directory left out", hex::encode(k))));
    }
    Ok((head, logged))
}

fn not_shrunk(old: &TreeHead, new: &TreeHead) -> Result<(), KtError> {
    if new.size < old.size {
        // A relay may answer from an older head only if it never showed a
        // newer one; this device saw one.
        return Err(KtError::Log(format!(
            "the log shrank from {} to {} entries since this device last looked: the relay showed it a forked or rewritten history",
            old.size, new.size
        )));
    }
    Ok(())
}

/// Checks that `new` extends `old` with the relay's consistency proof.
pub async fn check_extends(relay: &Relay, old: &TreeHead, new: &TreeHead) -> Result<(), KtError> {
    not_shrunk(old, new)?;
    let proof: pb::LogConsistencyResponse = relay
        .call(Method::LogConsistency, &pb::LogConsistencyRequest { from_size: old.size, to_size: new.size })
        .await?;
    verify_extends(old, new, &proof.path)
}

/// Checks that `new` extends `old` with `path`, a consistency proof from
/// `old.size` to `new.size` (fetched by [`check_extends`], or carried in a
/// peer relay's answer).
pub fn verify_extends(old: &TreeHead, new: &TreeHead, path: &[Vec<u8>]) -> Result<(), KtError> {
    not_shrunk(old, new)?;
    let path = kt::decode_path(path).map_err(|e| KtError::Log(e.to_string()))?;
    kt::verify_consistency(old.size, new.size, &old.root, &new.root, &path).map_err(|e| {
        KtError::Log(format!(
            "{e}: the relay showed this device a log of {} entries with root {} before, and now one of {} with root {} that does not contain it",
            old.size,
            old.root_hex(),
            new.size,
            new.root_hex()
        ))
    })
}

/// The key in `pinned`, pinning `offered` when nothing is pinned yet; an
/// offered key that differs is refused. `whose` names the relay.
fn pin(pinned: &mut Vec<u8>, offered: &[u8], whose: &str) -> Result<VerifyingKey, KtError> {
    if pinned.is_empty() {
        *pinned = offered.to_vec();
    }
    if !offered.is_empty() && offered != pinned.as_slice() {
        return Err(KtError::Log(format!(
            "{whose}'s log key is {}, not the {} this device trusts",
            hex::encode(offered),
            hex::encode(&pinned)
        )));
    }
    let bytes: [u8; 32] = pinned
        .as_slice()
        .try_into()
        .map_err(|_| KtError::Log(format!("the pinned log key of {whose} is not 32 bytes")))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KtError::Log(format!("the pinned log key of {whose} is not an Ed25519 key")))
}

/// `e`, a failed check, as one about `username`.
fn about(username: &str, e: KtError) -> KtError {
    match e {
        KtError::Check { what, .. } => check_err(username, what),
        other => check_err(username, other),
    }
}

impl KtState {
    /// The pinned log key, pinning `offered` (from the relay) at first use;
    /// `QPC_LOG_KEY` (hex) pins it up front, as the invite string gives it.
    pub fn log_key(&mut self, offered: &[u8]) -> Result<VerifyingKey, KtError> {
        if self.log_key.is_empty() {
            if let Some(hex_key) = std::env::var("QPC_LOG_KEY").ok().filter(|v| !v.is_empty()) {
                self.log_key =
                    hex::decode(hex_key.trim()).map_err(|_| KtError::Log("QPC_LOG_KEY is not hex".into()))?;
            }
        }
        pin(&mut self.log_key, offered, "the relay")
    }

    fn last_head(&self) -> Result<Option<TreeHead>, KtError> {
        self.head
            .as_ref()
            .map(TreeHead::from_pb)
            .transpose()
            .map_err(|e| KtError::Log(format!("the saved tree head: {e}")))
    }

    /// Moves to `head` after checking it extends the last one.
    async fn advance(&mut self, relay: &Relay, head: TreeHead) -> Result<(), KtError> {
        if let Some(old) = self.last_head()? {
            check_extends(relay, &old, &head).await?;
            if head.size == old.size {
                return Ok(());
            }
        }
        self.head = Some(head.to_pb());
        Ok(())
    }

    /// Checks the relay's current head (signature, extends the last one).
    pub async fn refresh(&mut self, relay: &Relay) -> Result<TreeHead, KtError> {
        let r: pb::LogHeadResponse = relay.call(Method::LogHead, &pb::LogHeadRequest {}).await?;
        let key = self.log_key(&r.log_key)?;
        let head = TreeHead::from_pb(&r.head.unwrap_or_default()).map_err(|e| KtError::Log(e.to_string()))?;
        head.verify(&key).map_err(|e| KtError::Log(e.to_string()))?;
        self.advance(relay, head.clone()).await?;
        Ok(head)
    }

    /// `keys` (the directory's answer for `username`), checked against the
    /// log; the devices that appeared since the last check of `username`.
    pub async fn check(
        &mut self,
        relay: &Relay,
        username: &str,
        keys: &[[u8; 32]],
    ) -> Result<Vec<NewDevice>, KtError> {
        if self.log_key.is_empty() {
            self.refresh(relay).await?;
        }
        let key = self.log_key(&[])?;
        let answer: pb::LogInclusionResponse = relay
            .call(Method::LogInclusion, &pb::LogInclusionRequest { username: username.to_string() })
            .await
            .map_err(|e| check_err(username, format!("no inclusion proof: {e}")))?;
        let (head, logged) = verify_directory_answer(username, keys, &answer, &key)?;
        self.advance(relay, head).await.map_err(|e| check_err(username, e))?;
        Ok(self.note_devices(username, &logged))
    }

    /// The peer relay of `address` (`bob@host[:port]`) this device knows:
    /// by `host:port`, or by host alone when one relay there is known.
    fn remote(&self, address: &str) -> Option<&RemoteLog> {
        let host = address.split_once('@').map_or(address, |(_, h)| h);
        if let Some(r) = self.remotes.iter().find(|r| r.relay == host) {
            return Some(r);
        }
        let has_port = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
        let mut there =
            self.remotes.iter().filter(|r| r.relay.strip_prefix(host).is_some_and(|p| p.starts_with(':')));
        match (has_port, there.next(), there.next()) {
            (false, Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// The size of the log of `address`'s relay at the last head this
    /// device verified from it (0: none), for the request's `known_size`.
    pub fn remote_known_size(&self, address: &str) -> u64 {
        self.remote(address).and_then(|r| r.head.as_ref()).map_or(0, |h| h.size)
    }

    /// `keys`, what our relay says `address` (`bob@host:port`, in full) has,
    /// checked against `proof`, their relay's key transparency answer: the
    /// log key pinned for that relay (at first contact), the answer as
    /// [`verify_directory_answer`] checks a local one, and its head
    /// extending the last one seen from that relay (the consistency proof
    /// in `proof`, from [`KtState::remote_known_size`]). Without a proof
    /// (the peer is away and our relay told the keys it knew) only keys this
    /// device verified before for `address` pass. The devices that appeared
    /// since the last check of `address`.
    pub fn check_remote(
        &mut self,
        address: &str,
        keys: &[[u8; 32]],
        proof: Option<&pb::DirectoryProof>,
    ) -> Result<Vec<NewDevice>, KtError> {
        let (username, host) = address
            .split_once('@')
            .ok_or_else(|| check_err(address, "not the address of a remote person"))?;
        let whose = format!("the relay {host}");
        let Some(proof) = proof else {
            let known = self.devices.iter().find(|d| d.username == address);
            for key in keys {
                if !known.is_some_and(|d| d.keys.iter().any(|k| k.as_slice() == key)) {
                    return Err(check_err(
                        address,
                        format!(
                            "{whose} sent no key transparency proof (it cannot be reached now, or does not prove its directory), and device key {} is not one this device verified from its log before",
                            hex::encode(key)
                        ),
                    ));
                }
            }
            return Ok(Vec::new());
        };
        // Changed only once everything checked.
        let mut remote = self
            .remote(address)
            .filter(|r| r.relay == host)
            .cloned()
            .unwrap_or_else(|| RemoteLog { relay: host.to_string(), ..RemoteLog::default() });
        let key = pin(&mut remote.log_key, &proof.log_key, &whose).map_err(|e| about(address, e))?;
        let answer = proof
            .inclusion
            .as_ref()
            .ok_or_else(|| check_err(address, format!("{whose} sent no inclusion proof")))?;
        let (head, logged) =
            verify_directory_answer(username, keys, answer, &key).map_err(|e| about(address, e))?;
        let old = remote
            .head
            .as_ref()
            .map(TreeHead::from_pb)
            .transpose()
            .map_err(|e| check_err(address, format!("the saved tree head of {whose}: {e}")))?;
        if let Some(old) = &old {
            let path = proof.consistency.as_ref().map_or(&[][..], |c| c.path.as_slice());
            verify_extends(old, &head, path).map_err(|e| about(address, e))?;
        }
        if old.is_none_or(|old| head.size > old.size) {
            remote.head = Some(head.to_pb());
        }
        self.remotes.retain(|r| r.relay != remote.relay);
        self.remotes.push(remote);
        Ok(self.note_devices(address, &logged))
    }

    /// Records `logged` as `username`'s devices; those not known before
    /// (none at the first check of `username`).
    fn note_devices(&mut self, username: &str, logged: &[LoggedDevice]) -> Vec<NewDevice> {
        let known = self.devices.iter_mut().find(|d| d.username == username);
        let mut new = Vec::new();
        match known {
            Some(known) => {
                for (k, at) in logged {
                    if !known.keys.iter().any(|x| x.as_slice() == k) {
                        new.push(NewDevice { username: username.to_string(), key: *k, added_ms: *at });
                    }
                }
                known.keys = logged.iter().map(|(k, _)| k.to_vec()).collect();
            }
            None => self.devices.push(KnownDevices {
                username: username.to_string(),
                keys: logged.iter().map(|(k, _)| k.to_vec()).collect(),
            }),
        }
        new
    }

    /// Walks the whole log: every entry decodes, the entries hash to the
    /// current head's root, and that head extends the last one seen.
    /// Returns the head and the entries.
    pub async fn audit(&mut self, relay: &Relay) -> Result<(TreeHead, Vec<Entry>), KtError> {
        let head = self.refresh(relay).await?;
        let mut tree = kt::Tree::default();
        let mut entries = Vec::new();
        while (tree.len() as u64) < head.size {
            let want = (head.size - tree.len() as u64).min(1000) as u32;
            let r: pb::LogEntriesResponse = relay
                .call(Method::LogEntries, &pb::LogEntriesRequest { start: tree.len() as u64, count: want })
                .await?;
            if r.entries.is_empty() {
                return Err(KtError::Log(format!(
                    "the relay sent no entries from {} on, of {}",
                    tree.len(),
                    head.size
                )));
            }
            for bytes in r.entries.iter().take(want as usize) {
                let entry =
                    Entry::decode(bytes).map_err(|e| KtError::Log(format!("entry {}: {e}", tree.len())))?;
                tree.push(kt::leaf_hash(bytes));
                entries.push(entry);
            }
        }
        if tree.root_at(head.size as usize) != head.root {
            return Err(KtError::Log(format!(
                "the {} entries the relay sent do not hash to the signed root {}",
                head.size,
                head.root_hex()
            )));
        }
        Ok((head, entries))
    }

    pub fn verified_number(&self, username: &str) -> Option<&str> {
        self.verified.iter().find(|v| v.username == username).map(|v| v.safety_number.as_str())
    }

    pub fn mark_verified(&mut self, username: &str, number: &str) {
        self.verified.retain(|v| v.username != username);
        self.verified.push(Verified { username: username.into(), safety_number: number.into() });
    }
}

/// The safety number of two people: SHA-256 over both usernames and their
/// device keys (each side sorted, the two sides sorted), shown as twelve
/// groups of five digits; the same on both sides.
pub fn safety_number(a: (&str, &[[u8; 32]]), b: (&str, &[[u8; 32]])) -> String {
    let side = |(name, keys): (&str, &[[u8; 32]])| {
        let keys: BTreeSet<[u8; 32]> = keys.iter().copied().collect();
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        keys.iter().for_each(|k| bytes.extend_from_slice(k));
        bytes
    };
    let mut sides = [side(a), side(b)];
    sides.sort();
    let mut h = Sha256::new();
    h.update(b"qpc safety number v1\0");
    for s in &sides {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s);
    }
    let digest = h.finalize();
    let again = Sha256::digest(digest);
    let bytes: Vec<u8> = digest.iter().chain(again.iter()).copied().collect();
    bytes
        .chunks(5)
        .take(12)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn safety_numbers_are_symmetric_and_change_with_keys() {
        let a = [[1u8; 32], [2; 32]];
        let b = [[3u8; 32]];
        let ab = safety_number(("alice", &a), ("bob", &b));
        assert_eq!(ab, safety_number(("bob", &b), ("alice", &[[2; 32], [1; 32]])));
        assert_eq!(ab.split(' ').count(), 12);
        assert_ne!(ab, safety_number(("alice", &a), ("bob", &[[3; 32], [4; 32]])));
    }

    fn answer(key: &SigningKey, entries: &[Entry], pick: &[usize]) -> pb::LogInclusionResponse {
        let bytes: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
        let tree = kt::Tree::from_leaves(&bytes.iter().map(|b| kt::leaf_hash(b)).collect::<Vec<_>>());
        let head = TreeHead::sign(key, tree.len() as u64, tree.root_at(tree.len()), 5);
        pb::LogInclusionResponse {
            head: Some(head.to_pb()),
            leaves: pick
                .iter()
                .map(|&i| pb::LogLeaf {
                    index: i as u64,
                    entry: bytes[i].clone(),
                    path: kt::encode_path(&tree.inclusion_proof(i, tree.len())),
                })
                .collect(),
        }
    }

    /// A peer relay's proof for bob over `entries`, with a consistency
    /// proof from `known` entries.
    fn remote_proof(key: &SigningKey, entries: &[Entry], known: usize) -> pb::DirectoryProof {
        let pick: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].username == "bob").collect();
        let leaves: Vec<kt::Hash> = entries.iter().map(|e| kt::leaf_hash(&e.encode())).collect();
        pb::DirectoryProof {
            inclusion: Some(answer(key, entries, &pick)),
            log_key: key.verifying_key().to_bytes().to_vec(),
            consistency: (known > 0).then(|| pb::LogConsistencyResponse {
                path: kt::encode_path(&kt::consistency_proof(&leaves, known)),
            }),
        }
    }

    #[test]
    fn a_remote_answer_is_checked_against_that_relays_pinned_log() {
        let key = SigningKey::from_bytes(&[8; 32]);
        let e =
            |kind, user: &str, k: Option<[u8; 32]>| Entry { kind, time_ms: 1, username: user.into(), key: k };
        let mut log = vec![e(Kind::AccountCreated, "bob", None), e(Kind::DeviceAdded, "bob", Some([1; 32]))];
        let bob = "bob@friends.example.net:7000";
        let mut state = KtState::default();
        assert_eq!(state.remote_known_size(bob), 0);
        let first = remote_proof(&key, &log, 0);
        assert!(state.check_remote(bob, &[[1; 32]], Some(&first)).unwrap().is_empty(), "first contact");
        assert_eq!(state.remote_known_size(bob), 2);
        assert_eq!(state.remote_known_size("bob@friends.example.net"), 2, "by host alone");
        assert_eq!(state.remote_known_size("bob@other.example.net:7000"), 0);
        assert!(state.log_key.is_empty(), "our own relay's pin is not touched");

        // A new device, proven included and the log proven to extend.
        log.push(e(Kind::DeviceAdded, "bob", Some([2; 32])));
        let grown = remote_proof(&key, &log, 2);
        let new = state.check_remote(bob, &[[1; 32], [2; 32]], Some(&grown)).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!((new[0].username.as_str(), new[0].key), (bob, [2; 32]));

        // Our relay cannot answer for bob's: another key is refused, and so
        // is a proof without the consistency proof from what was seen.
        let forged = remote_proof(&SigningKey::from_bytes(&[9; 32]), &log, 3);
        let err = state.check_remote(bob, &[[1; 32], [2; 32]], Some(&forged)).unwrap_err().to_string();
        assert!(err.contains(bob) && err.contains("not the") && err.contains("trusts"), "{err}");
        log.push(e(Kind::DeviceAdded, "carol", Some([3; 32])));
        let unproven = remote_proof(&key, &log, 0);
        let err = state.check_remote(bob, &[[1; 32], [2; 32]], Some(&unproven)).unwrap_err().to_string();
        assert!(err.contains(bob) && err.contains("FAILED"), "{err}");
        let err = state.check_remote(bob, &[[1; 32], [2; 32], [7; 32]], Some(&remote_proof(&key, &log, 3)));
        let err = err.unwrap_err().to_string();
        assert!(err.contains(bob) && err.contains(&hex::encode([7u8; 32])), "{err}");

        // No proof (the peer is away): only keys verified before pass.
        assert!(state.check_remote(bob, &[[2; 32]], None).unwrap().is_empty());
        let err = state.check_remote(bob, &[[2; 32], [7; 32]], None).unwrap_err().to_string();
        assert!(err.contains(bob) && err.contains(&hex::encode([7u8; 32])), "{err}");
        assert!(state.check_remote("bob@nowhere:1", &[[1; 32]], None).is_err());
    }

    #[test]
    fn a_state_written_before_remote_logs_reads_with_none() {
        #[derive(Clone, PartialEq, Message)]
        struct Before {
            #[prost(bytes = "vec", tag = "1")]
            log_key: Vec<u8>,
            #[prost(message, optional, tag = "2")]
            head: Option<pb::TreeHead>,
        }
        let old = Before { log_key: vec![4; 32], head: Some(pb::TreeHead { size: 3, ..Default::default() }) };
        let state = KtState::decode(old.encode_to_vec().as_slice()).unwrap();
        assert_eq!(state.log_key, vec![4; 32]);
        assert!(state.remotes.is_empty());
    }

    #[test]
    fn a_directory_answer_must_match_the_log() {
        let key = SigningKey::from_bytes(&[8; 32]);
        let e = |kind, k: Option<[u8; 32]>| Entry { kind, time_ms: 1, username: "bob".into(), key: k };
        let log = [
            e(Kind::AccountCreated, None),
            e(Kind::DeviceAdded, Some([1; 32])),
            e(Kind::DeviceAdded, Some([2; 32])),
        ];
        let vk = key.verifying_key();
        let good = answer(&key, &log, &[0, 1, 2]);
        verify_directory_answer("bob", &[[1; 32], [2; 32]], &good, &vk).unwrap();
        let extra = verify_directory_answer("bob", &[[1; 32], [2; 32], [9; 32]], &good, &vk).unwrap_err();
        assert!(extra.to_string().contains("not in the log"), "{extra}");
        assert!(verify_directory_answer("bob", &[[1; 32]], &good, &vk).is_err(), "a logged key left out");
        assert!(verify_directory_answer("carol", &[[1; 32], [2; 32]], &good, &vk).is_err());
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let bad_sig = verify_directory_answer("bob", &[[1; 32], [2; 32]], &good, &other).unwrap_err();
        assert!(bad_sig.to_string().contains("signature"), "{bad_sig}");
        let mut flipped = good.clone();
        flipped.leaves[1].path[0][3] ^= 4;
        assert!(verify_directory_answer("bob", &[[1; 32], [2; 32]], &flipped, &vk).is_err());
        let mut garbage = good.clone();
        garbage.leaves[1].entry = vec![1, 2, 3];
        let e = verify_directory_answer("bob", &[[1; 32], [2; 32]], &garbage, &vk).unwrap_err();
        assert!(e.to_string().contains("does not decode"), "{e}");
        let mut wrong_size = good;
        wrong_size.head = Some(
            TreeHead::sign(&key, 4, TreeHead::from_pb(wrong_size.head.as_ref().unwrap()).unwrap().root, 5)
                .to_pb(),
        );
        assert!(verify_directory_answer("bob", &[[1; 32], [2; 32]], &wrong_size, &vk).is_err());
    }
}

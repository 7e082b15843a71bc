//! The MLS member: one identity's MLS (RFC 9420) state — its signing key, its
//! unused KeyPackages and the groups it belongs to. It is sans-IO: every
//! method takes bytes and returns bytes and events; the caller moves them over
//! the relay and keeps [`Member::to_bytes`] in its encrypted local state.
//!
//! Identity: a member's credential is a `BasicCredential` whose identity is its
//! 32-byte Ed25519 public key, and the leaf's MLS signature key is that same
//! key. Every leaf we accept (KeyPackages, Welcomes, commits, proposals) is
//! checked for that binding, so "identity key" always means "the key that
//! signed this member's leaf".
//!
//! Wire formats: everything this module emits is a TLS-serialised `MLSMessage`
//! (RFC 9420 §6): KeyPackages as `mls_key_package`, Welcomes as `mls_welcome`
//! (carrying the ratchet tree extension, so a Welcome alone is enough to
//! join), and commits, proposals and application messages as
//! `mls_private_message` — handshake messages are encrypted too, so the relay
//! never learns who is in a group.
//!
//! Commits are staged, not merged: a commit we make stays pending (saved with
//! the rest of the state) until the relay has admitted it through the
//! group's fence, then [`Member::merge_pending`] applies it; when the relay
//! refuses it because another member committed first, [`Member::clear_pending`]
//! drops it and the operation is made again on top of the winning commit.
//! So at most one commit per epoch ever takes effect, and groups never fork.
//!
//! Group ids: a group's MLS id is its name, a NUL and 32 random hex digits,
//! so that the routing value the relay orders commits by ([`Member::route`])
//! cannot be guessed from the name. Groups made before keep their bare name.
//!
//! Fences: [`Commit::fence`] is derived from the epoch's exporter secret, so
//! only a member of that epoch knows it; the relay holds only its SHA-256,
//! and [`Commit::next_fence_hash`] (from the new epoch's secret) replaces it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::PoisonError;

use ed25519_dalek::{Signer as _, SigningKey};
use openmls::framing::errors::{MessageDecryptionError, SecretTreeError};
use openmls::prelude::tls_codec::{DeserializeBytes as _, Serialize as _};
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, ContentType, Credential, CredentialWithKey, ExtensionType,
    GroupId, KeyPackage, KeyPackageIn, LeafNode, LeafNodeIndex, LeafNodeParameters, MlsGroup,
    MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    ProcessMessageError, ProcessedMessageContent, Proposal, ProtocolMessage, ProtocolVersion, QueuedProposal,
    SignatureScheme, StagedCommit, StagedWelcome, ValidationError, WelcomeError,
};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::OpenMlsProvider as _;
use sha2::{Digest as _, Sha256};

/// The one ciphersuite qpc speaks: X25519 key exchange, AES-128-GCM, SHA-256
/// and Ed25519 signatures, so the identity key can sign MLS leaves directly.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// How many past epochs' message keys a group keeps. The relay delivers each
/// queue in order, but a message sent just before a commit can reach a member
/// just after it; a few epochs of slack let it still decrypt.
const MAX_PAST_EPOCHS: usize = 3;

/// Longest group name, in bytes. The name is the MLS group id.
pub const MAX_GROUP_NAME_LEN: usize = 255;

/// Label of the exporter secret a group's fence value is derived from.
const FENCE_LABEL: &str = "qpc fence v1";

/// Label of the exporter secret signals are sealed with, and of their signatures.
const SIGNAL_LABEL: &str = "qpc signal v1";

/// Separates a group's name from the random part of its MLS group id.
const GROUP_ID_SEPARATOR: char = '\0';

/// Identifies the serialised state and its layout version.
const STATE_MAGIC: &[u8; 8] = b"QPCMLS\x00\x01";

/// The SHA-256 digest that ends the serialised state.
const DIGEST_LEN: usize = 32;

/// An Ed25519 public key, which is also a member's identity.
pub type IdentityKey = [u8; 32];

/// Everything that can go wrong, phrased for the person at the keyboard.
#[derive(Debug, thiserror::Error)]
pub enum MlsError {
    #[error("no group named {0}")]
    NoSuchGroup(String),
    #[error("a group named {0} already exists")]
    GroupExists(String),
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroupName { name: String, reason: &'static str },
    #[error("KeyPackage is for identity {actual}, not the requested peer {expected}")]
    WrongIdentity { expected: String, actual: String },
    #[error("identity {identity} is already a member of group {group}")]
    AlreadyMember { group: String, identity: String },
    #[error("identity {identity} is not a member of group {group}")]
    NotMember { group: String, identity: String },
    #[error("cannot remove yourself from group {0}; leave it instead")]
    CannotRemoveSelf(String),
    #[error("group {0} has no pending proposals to commit")]
    NothingToCommit(String),
    #[error("group {0} has a commit waiting for the relay; send it (or drop it) first")]
    CommitPending(String),
    #[error("group {0} has no commit of ours waiting")]
    NoCommitPending(String),
    #[error("message is for epoch {message_epoch} but the group {group} is at epoch {group_epoch}")]
    FutureEpoch { group: String, message_epoch: u64, group_epoch: u64 },
    #[error(
        "message is for epoch {message_epoch} but the group {group} is already at epoch {group_epoch} \
         (delivered twice, or too late to use)"
    )]
    StaleEpoch { group: String, message_epoch: u64, group_epoch: u64 },
    #[error("message in group {group} was already processed (delivered twice)")]
    Duplicate { group: String },
    #[error("message in group {group} was sent by this identity itself")]
    OwnMessage { group: String },
    #[error("cannot parse {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("expected {expected}, got {got}")]
    UnexpectedMessage { expected: &'static str, got: &'static str },
    #[error("invalid KeyPackage: {0}")]
    InvalidKeyPackage(String),
    #[error("invalid credential: {0}")]
    InvalidCredential(String),
    #[error(
        "this Welcome matches none of our KeyPackages (it is for another identity, \
         or its KeyPackage was already used)"
    )]
    WelcomeNotForUs,
    #[error("invalid Welcome: {0}")]
    InvalidWelcome(String),
    #[error("the saved MLS state is unusable: {0}")]
    CorruptState(String),
    #[error("the saved MLS state belongs to identity {state}, but the identity key is {key}")]
    StateIdentityMismatch { state: String, key: String },
    #[error("{action} in group {group} failed: {detail}")]
    Group { action: &'static str, group: String, detail: String },
    #[error("{action} failed: {detail}")]
    Protocol { action: &'static str, detail: String },
}

impl MlsError {
    /// True for a message that is harmless to drop: a second delivery of
    /// something already processed, or an echo of our own message. A receive
    /// loop can acknowledge such a message and move on.
    pub fn is_replay(&self) -> bool {
        matches!(self, MlsError::StaleEpoch { .. } | MlsError::Duplicate { .. } | MlsError::OwnMessage { .. })
    }
}

/// What an incoming message turned out to be, after it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A chat message from `sender`.
    Application { group: String, sender: IdentityKey, plaintext: Vec<u8> },
    /// A commit moved the group to `epoch`. With `removed_self` we are no
    /// longer a member and the group has been forgotten.
    Commit { group: String, epoch: u64, removed_self: bool },
    /// A Welcome arrived; the bytes are the whole message, for [`Member::join`].
    Welcome(Vec<u8>),
    /// A proposal was stored; it takes effect when someone commits it.
    Proposal { group: String },
}

/// The result of [`Member::add_member`]: a pending [`Commit`] that adds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// For `existing_members`; pending until merged.
    pub commit: Commit,
    /// For `new_member`.
    pub welcome: Vec<u8>,
    pub new_member: IdentityKey,
    /// Everyone who was in the group before the commit, except ourselves.
    pub existing_members: Vec<IdentityKey>,
}

/// The result of a commit we made (add, remove, update, pending
/// proposals). It is pending in our state until [`Member::merge_pending`]
/// (the relay admitted it) or [`Member::clear_pending`] (it lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The epoch the commit was made in.
    pub epoch: u64,
    /// The fence value of that epoch, which the relay checks.
    pub fence: [u8; 32],
    /// SHA-256 of the fence value of the epoch the commit moves to.
    pub next_fence_hash: [u8; 32],
    /// For `remaining` and `removed` (so that they learn they were removed).
    pub message: Vec<u8>,
    /// Members after the commit, except ourselves and those just added.
    pub remaining: Vec<IdentityKey>,
    /// Members the commit removed.
    pub removed: Vec<IdentityKey>,
    /// Members the commit added; they get `welcome`, not `commit`.
    pub added: Vec<IdentityKey>,
    /// Present when `added` is not empty.
    pub welcome: Option<Vec<u8>>,
}

impl Commit {
    /// Everyone the commit must be sent to: `remaining` and `removed`.
    pub fn recipients(&self) -> Vec<IdentityKey> {
        self.remaining.iter().chain(&self.removed).copied().collect()
    }
}

/// Signs MLS structures with the identity key itself.
struct IdentitySigner(SigningKey);

impl Signer for IdentitySigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// One identity's MLS state. See the module docs.
pub struct Member {
    signer: IdentitySigner,
    identity: IdentityKey,
    /// RustCrypto plus an in-memory key-value store that openmls writes
    /// through to on every state change; [`Member::to_bytes`] dumps it.
    provider: OpenMlsRustCrypto,
    groups: BTreeMap<String, MlsGroup>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("identity", &hex::encode(self.identity))
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Member {
    /// A member with no groups and no KeyPackages, for the identity whose
    /// Ed25519 secret key (seed) is `identity_seed`.
    pub fn new(identity_seed: [u8; 32]) -> Self {
        let signing_key = SigningKey::from_bytes(&identity_seed);
        let identity = signing_key.verifying_key().to_bytes();
        Member {
            signer: IdentitySigner(signing_key),
            identity,
            provider: OpenMlsRustCrypto::default(),
            groups: BTreeMap::new(),
        }
    }

    /// The Ed25519 public key: our identity in every group.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity
    }

    /// Everything needed to resume in another process except the identity
    /// seed: the identity's public key (to catch a state/seed mix-up), the
    /// group names, and every entry of openmls' key-value store (group
    /// states, epoch secrets, KeyPackage private keys). The bytes hold
    /// secrets: store them encrypted.
    ///
    /// Layout: magic `QPCMLS\0\1`, the 32-byte identity key, `u32` group
    /// count then each name as `u16` length + UTF-8, `u32` entry count then
    /// each entry as `u32` key length, `u32` value length, key, value; all
    /// big-endian, entries sorted by key so equal states give equal bytes;
    /// then the SHA-256 of everything before it. The digest matters:
    /// `openmls_memory_storage` panics on a stored value it cannot decode, so
    /// damaged state must be refused before openmls reads it. It does not
    /// stop deliberate tampering; the caller's authenticated encryption does.
    pub fn to_bytes(&self) -> Vec<u8> {
        let values = self.provider.storage().values.read().unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<(&Vec<u8>, &Vec<u8>)> = values.iter().collect();
        entries.sort();

        let size = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>()
            + self.groups.values().map(|g| 2 + g.group_id().as_slice().len()).sum::<usize>()
            + STATE_MAGIC.len()
            + 32
            + 8
            + DIGEST_LEN;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&self.identity);
        put_len32(&mut out, self.groups.len());
        for group in self.groups.values() {
            // A name of at most 255 bytes plus a separator and 32 hex digits.
            let id = group.group_id().as_slice();
            out.extend_from_slice(&(id.len() as u16).to_be_bytes());
            out.extend_from_slice(id);
        }
        put_len32(&mut out, entries.len());
        for (key, value) in entries {
            put_len32(&mut out, key.len());
            put_len32(&mut out, value.len());
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Resumes a member saved with [`Member::to_bytes`].
    pub fn from_bytes(identity_seed: [u8; 32], bytes: &[u8]) -> Result<Self, MlsError> {
        let member = Member::new(identity_seed);
        let mut reader = Reader { bytes };

        let magic = reader.take(STATE_MAGIC.len(), "the header")?;
        if magic[..6] != STATE_MAGIC[..6] {
            return Err(MlsError::CorruptState("it is not qpc MLS state (bad header)".into()));
        }
        if magic != STATE_MAGIC {
            return Err(MlsError::CorruptState(format!(
                "unsupported state version {} (this qpc reads version {})",
                u16::from_be_bytes([magic[6], magic[7]]),
                u16::from_be_bytes([STATE_MAGIC[6], STATE_MAGIC[7]])
            )));
        }
        if reader.bytes.len() < 32 + 8 + DIGEST_LEN {
            return Err(MlsError::CorruptState("it is truncated".into()));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if Sha256::digest(body).as_slice() != digest {
            return Err(MlsError::CorruptState("its checksum does not match (truncated or damaged)".into()));
        }
        reader.bytes = &body[STATE_MAGIC.len()..];

        let identity = reader.take(32, "the identity key")?;
        if identity != member.identity {
            return Err(MlsError::StateIdentityMismatch {
                state: hex::encode(identity),
                key: hex::encode(member.identity),
            });
        }

        let group_count = reader.len32("the group count")?;
        let mut names = Vec::new();
        for _ in 0..group_count {
            let len = reader.len16("a group name length")?;
            let raw = reader.take(len, "a group name")?;
            let name = std::str::from_utf8(raw)
                .map_err(|_| MlsError::CorruptState("a group name is not UTF-8".into()))?;
            names.push(name.to_owned());
        }

        let entry_count = reader.len32("the entry count")?;
        {
            let mut values = member.provider.storage().values.write().unwrap_or_else(PoisonError::into_inner);
            for _ in 0..entry_count {
                let key_len = reader.len32("an entry key length")?;
                let value_len = reader.len32("an entry value length")?;
                let key = reader.take(key_len, "an entry key")?.to_vec();
                let value = reader.take(value_len, "an entry value")?.to_vec();
                values.insert(key, value);
            }
        }
        if !reader.bytes.is_empty() {
            return Err(MlsError::CorruptState(format!(
                "{} unexpected bytes after the end",
                reader.bytes.len()
            )));
        }

        let mut member = member;
        for id in names {
            let name = name_of(&id).to_owned();
            let group = MlsGroup::load(member.provider.storage(), &GroupId::from_slice(id.as_bytes()))
                .map_err(|e| MlsError::CorruptState(format!("group {name}: {e}")))?
                .ok_or_else(|| MlsError::CorruptState(format!("group {name} is listed but not stored")))?;
            member.groups.insert(name, group);
        }
        Ok(member)
    }

    /// A fresh KeyPackage for the relay, as a TLS-serialised `MLSMessage`
    /// (wire format `mls_key_package`). Its private keys stay in our state
    /// until a Welcome uses them, so save the state after calling this.
    pub fn new_key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        self.key_package(false)
    }

    /// A last-resort KeyPackage (RFC 9420 section 16.8): the relay hands it
    /// out only when the pool is empty and keeps it, so it may be used by
    /// several Welcomes; its private keys stay in our state after a join.
    pub fn new_last_resort_key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        self.key_package(true)
    }

    fn key_package(&mut self, last_resort: bool) -> Result<Vec<u8>, MlsError> {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(CIPHERSUITE, &self.provider, &self.signer, self.credential_with_key())
            .map_err(|e| protocol("creating a KeyPackage", e))?;
        serialize(MlsMessageOut::from(bundle.key_package().clone()), "serialising a KeyPackage")
    }

    /// Creates a group with only ourselves in it, at epoch 0. The group id on
    /// the wire is the name's UTF-8 bytes.
    pub fn create_group(&mut self, name: &str) -> Result<(), MlsError> {
        check_group_name(name)?;
        if self.groups.contains_key(name) {
            return Err(MlsError::GroupExists(name.to_owned()));
        }
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .capabilities(capabilities())
            .use_ratchet_tree_extension(true)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .build();
        let mut random = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let id = format!("{name}{GROUP_ID_SEPARATOR}{}", hex::encode(random));
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(id.as_bytes()),
            self.credential_with_key(),
        )
        .map_err(|e| group_error("creating the group", name, e))?;
        self.groups.insert(name.to_owned(), group);
        Ok(())
    }

    /// Adds the owner of `key_package` (an `MLSMessage` or a bare KeyPackage)
    /// to `group` with a pending commit. With `expected_identity`, refuses a
    /// KeyPackage that belongs to anyone else (the relay hands out
    /// KeyPackages, so it could swap them).
    pub fn add_member(
        &mut self,
        group: &str,
        key_package: &[u8],
        expected_identity: Option<IdentityKey>,
    ) -> Result<Added, MlsError> {
        let commit = self.add_members(group, &[(key_package.to_vec(), expected_identity)])?;
        let new_member = commit.added[0];
        let welcome = commit.welcome.clone().ok_or_else(|| MlsError::Group {
            action: "adding a member",
            group: group.to_owned(),
            detail: "the commit produced no Welcome".into(),
        })?;
        Ok(Added { existing_members: commit.remaining.clone(), new_member, welcome, commit })
    }

    /// Adds the owners of several KeyPackages (every device of a person) in
    /// one pending commit, each checked as in [`Member::add_member`].
    pub fn add_members(
        &mut self,
        group: &str,
        key_packages: &[(Vec<u8>, Option<IdentityKey>)],
    ) -> Result<Commit, MlsError> {
        let before = self.members(group)?;
        let mut parsed = Vec::new();
        for (bytes, expected) in key_packages {
            let (key_package, new_member) = self.parse_key_package(bytes, *expected)?;
            if before.contains(&new_member) || parsed.iter().any(|(_, m)| *m == new_member) {
                return Err(MlsError::AlreadyMember {
                    group: group.to_owned(),
                    identity: hex::encode(new_member),
                });
            }
            parsed.push((key_package, new_member));
        }
        if parsed.is_empty() {
            return Err(MlsError::NothingToCommit(group.to_owned()));
        }
        let adds: Vec<KeyPackage> = parsed.into_iter().map(|(kp, _)| kp).collect();
        self.commit(group, "adding a member", |builder| builder.propose_adds(adds))
    }

    /// Joins the group a Welcome (an `MLSMessage`) invites us to, using the
    /// KeyPackage private keys in our state, and returns the group's name.
    /// The KeyPackage is used up even if joining fails afterwards.
    pub fn join(&mut self, welcome: &[u8]) -> Result<String, MlsError> {
        let welcome = match parse_message(welcome)?.extract() {
            MlsMessageBodyIn::Welcome(welcome) => welcome,
            other => {
                return Err(MlsError::UnexpectedMessage { expected: "a Welcome", got: body_kind(&other) })
            }
        };
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .build();
        let builder =
            StagedWelcome::build_from_welcome(&self.provider, &config, welcome).map_err(welcome_error)?;

        let group_id = builder.processed_welcome().unverified_group_info().group_id().as_slice().to_vec();
        let id = String::from_utf8(group_id).map_err(|e| {
            MlsError::InvalidWelcome(format!("the group id {} is not a name", hex::encode(e.as_bytes())))
        })?;
        let name = name_of(&id).to_owned();
        check_group_name(&name)?;
        if self.groups.contains_key(&name) {
            return Err(MlsError::GroupExists(name));
        }

        // Lifetimes are checked when a KeyPackage is added; a leaf that has
        // simply not been updated since would otherwise lock newcomers out of
        // any group older than the KeyPackage lifetime (84 days in openmls).
        let staged = builder.skip_lifetime_validation().build().map_err(welcome_error)?;
        if staged.group_context().ciphersuite() != CIPHERSUITE {
            return Err(MlsError::InvalidWelcome(format!(
                "group {name} uses ciphersuite {:?}, qpc only speaks {CIPHERSUITE:?}",
                staged.group_context().ciphersuite()
            )));
        }
        for member in staged.members() {
            bound_identity(&member.credential, &member.signature_key)
                .map_err(|e| MlsError::InvalidWelcome(format!("a member of group {name}: {e}")))?;
        }
        let group = staged.into_group(&self.provider).map_err(welcome_error)?;
        self.groups.insert(name.clone(), group);
        Ok(name)
    }

    /// Encrypts a chat message for `group`, as an `MLSMessage` to send to
    /// every other member.
    pub fn encrypt(&mut self, group: &str, plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let message = mls_group
            .create_message(&self.provider, &self.signer, plaintext)
            .map_err(|e| group_error("encrypting a message", group, e))?;
        serialize(message, "serialising a message")
    }

    /// Applies one message from our queue. Commits are merged, proposals are
    /// stored for a later commit, application messages are decrypted, and
    /// Welcomes are handed back for [`Member::join`]. A message for an epoch
    /// the group has not reached, or has left behind, is refused with
    /// [`MlsError::FutureEpoch`] or [`MlsError::StaleEpoch`] and changes
    /// nothing.
    pub fn process(&mut self, message: &[u8]) -> Result<Incoming, MlsError> {
        let protocol_message: ProtocolMessage = match parse_message(message)?.extract() {
            MlsMessageBodyIn::Welcome(_) => return Ok(Incoming::Welcome(message.to_vec())),
            MlsMessageBodyIn::PrivateMessage(m) => m.into(),
            MlsMessageBodyIn::PublicMessage(m) => m.into(),
            other => {
                return Err(MlsError::UnexpectedMessage {
                    expected: "a group message or a Welcome",
                    got: body_kind(&other),
                })
            }
        };

        let group_id = protocol_message.group_id().as_slice();
        let name = match std::str::from_utf8(group_id) {
            Ok(id) => name_of(id).to_owned(),
            Err(_) => return Err(no_group(&hex::encode(group_id))),
        };
        let mls_group = self
            .groups
            .get_mut(&name)
            .filter(|g| g.group_id().as_slice() == group_id)
            .ok_or_else(|| no_group(&name))?;

        let message_epoch = protocol_message.epoch().as_u64();
        let group_epoch = mls_group.epoch().as_u64();
        if message_epoch > group_epoch {
            return Err(MlsError::FutureEpoch { group: name, message_epoch, group_epoch });
        }
        // Application messages from a recent past epoch can still be read;
        // handshake messages are only valid in the epoch they were made for.
        if message_epoch < group_epoch && protocol_message.content_type() != ContentType::Application {
            return Err(MlsError::StaleEpoch { group: name, message_epoch, group_epoch });
        }

        let processed = match mls_group.process_message(&self.provider, protocol_message) {
            Ok(processed) => processed,
            Err(e) => return Err(process_error(e, name, message_epoch, group_epoch)),
        };
        let sender_credential = processed.credential().clone();

        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => Ok(Incoming::Application {
                group: name,
                sender: credential_identity(&sender_credential)?,
                plaintext: application.into_bytes(),
            }),
            ProcessedMessageContent::ProposalMessage(proposal) => {
                check_proposal(&proposal).map_err(|e| group_error("accepting a proposal", &name, e))?;
                mls_group
                    .store_pending_proposal(self.provider.storage(), *proposal)
                    .map_err(|e| group_error("storing a proposal", &name, e))?;
                Ok(Incoming::Proposal { group: name })
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => self.merge_commit(name, *staged),
            ProcessedMessageContent::OwnPrivateMessage | ProcessedMessageContent::OwnPendingCommit => {
                Err(MlsError::OwnMessage { group: name })
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(MlsError::Group {
                action: "processing a message",
                group: name,
                detail: "external join proposals are not accepted".into(),
            }),
            #[allow(unreachable_patterns)]
            _ => Err(MlsError::Group {
                action: "processing a message",
                group: name,
                detail: "unsupported message content".into(),
            }),
        }
    }

    /// Names of the groups we are in, sorted.
    pub fn groups(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Identity keys of every member of `group`, ourselves included, in
    /// leaf order.
    pub fn members(&self, group: &str) -> Result<Vec<IdentityKey>, MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        mls_group.members().map(|member| bound_identity(&member.credential, &member.signature_key)).collect()
    }

    /// The group's current epoch: 0 when created, +1 per commit.
    pub fn epoch(&self, group: &str) -> Result<u64, MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        Ok(mls_group.epoch().as_u64())
    }

    /// Removes `identity` from `group` and merges the commit locally. Send
    /// the commit to [`Commit::recipients`], the removed member included so
    /// that it learns it was removed. Pending proposals are committed too.
    pub fn remove_member(&mut self, group: &str, identity: IdentityKey) -> Result<Commit, MlsError> {
        self.remove_members(group, &[identity])
    }

    /// Removes several members (every device of a person) in one commit.
    pub fn remove_members(&mut self, group: &str, identities: &[IdentityKey]) -> Result<Commit, MlsError> {
        if identities.contains(&self.identity) {
            return Err(MlsError::CannotRemoveSelf(group.to_owned()));
        }
        let leaves = identities.iter().map(|id| self.leaf_of(group, *id)).collect::<Result<Vec<_>, _>>()?;
        self.commit(group, "removing a member", |builder| builder.propose_removals(leaves))
    }

    /// The members that the proposals waiting in `group` would remove.
    pub fn pending_removals(&self, group: &str) -> Result<Vec<IdentityKey>, MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        let mut removed = Vec::new();
        for queued in mls_group.pending_proposals() {
            if let Proposal::Remove(remove) = queued.proposal() {
                if let Some(member) = mls_group.member_at(remove.removed()) {
                    removed.push(bound_identity(&member.credential, &member.signature_key)?);
                }
            }
        }
        Ok(removed)
    }

    /// Replaces our leaf's encryption key (and every key on our path),
    /// healing the group after a compromise. Pending proposals are committed
    /// too.
    pub fn self_update(&mut self, group: &str) -> Result<Commit, MlsError> {
        self.commit(group, "updating our keys", |builder| {
            builder.force_self_update(true).leaf_node_parameters(LeafNodeParameters::default())
        })
    }

    /// Asks the group to remove us: returns a proposal to send to every
    /// other member. One of them must commit it (see
    /// [`Member::commit_pending_proposals`]); when that commit arrives,
    /// [`Member::process`] reports `removed_self` and forgets the group.
    pub fn leave(&mut self, group: &str) -> Result<Vec<u8>, MlsError> {
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let proposal = mls_group
            .leave_group(&self.provider, &self.signer)
            .map_err(|e| group_error("leaving", group, e))?;
        serialize(proposal, "serialising a proposal")
    }

    /// Proposes adding the owner of `key_package` without committing; send
    /// the proposal to every other member. Someone commits it later, and that
    /// commit carries the Welcome.
    pub fn propose_add(
        &mut self,
        group: &str,
        key_package: &[u8],
        expected_identity: Option<IdentityKey>,
    ) -> Result<Vec<u8>, MlsError> {
        let (key_package, new_member) = self.parse_key_package(key_package, expected_identity)?;
        if self.members(group)?.contains(&new_member) {
            return Err(MlsError::AlreadyMember {
                group: group.to_owned(),
                identity: hex::encode(new_member),
            });
        }
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let (proposal, _) = mls_group
            .propose_add_member(&self.provider, &self.signer, &key_package)
            .map_err(|e| group_error("proposing an add", group, e))?;
        serialize(proposal, "serialising a proposal")
    }

    /// Proposes removing `identity` without committing; send the proposal to
    /// every other member.
    pub fn propose_remove(&mut self, group: &str, identity: IdentityKey) -> Result<Vec<u8>, MlsError> {
        if identity == self.identity {
            return self.leave(group);
        }
        let leaf = self.leaf_of(group, identity)?;
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let (proposal, _) = mls_group
            .propose_remove_member(&self.provider, &self.signer, leaf)
            .map_err(|e| group_error("proposing a removal", group, e))?;
        serialize(proposal, "serialising a proposal")
    }

    /// Commits every proposal stored for `group` (ours and those received),
    /// merging the commit locally.
    pub fn commit_pending_proposals(&mut self, group: &str) -> Result<Commit, MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        if !mls_group.has_pending_proposals() {
            return Err(MlsError::NothingToCommit(group.to_owned()));
        }
        self.commit(group, "committing proposals", |builder| builder)
    }

    /// Drops our state for `group` without telling anyone, e.g. after
    /// [`Member::leave`] when no one will commit the removal. The other
    /// members still count us as a member until someone removes us.
    pub fn forget(&mut self, group: &str) -> Result<(), MlsError> {
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        mls_group
            .delete(self.provider.storage())
            .map_err(|e| group_error("forgetting the group", group, e))?;
        self.groups.remove(group);
        Ok(())
    }

    /// Pending proposals waiting for a commit in `group`.
    pub fn pending_proposals(&self, group: &str) -> Result<usize, MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        Ok(mls_group.pending_proposals().count())
    }

    fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.identity.to_vec()).into(),
            signature_key: self.identity.to_vec().into(),
        }
    }

    fn leaf_of(&self, group: &str, identity: IdentityKey) -> Result<LeafNodeIndex, MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        mls_group
            .members()
            .find(|member| bound_identity(&member.credential, &member.signature_key).ok() == Some(identity))
            .map(|member| member.index)
            .ok_or_else(|| MlsError::NotMember { group: group.to_owned(), identity: hex::encode(identity) })
    }

    /// Parses and verifies a KeyPackage, returning it with its identity.
    fn parse_key_package(
        &self,
        bytes: &[u8],
        expected_identity: Option<IdentityKey>,
    ) -> Result<(KeyPackage, IdentityKey), MlsError> {
        let key_package_in = match MlsMessageIn::tls_deserialize_exact_bytes(bytes) {
            Ok(message) => match message.extract() {
                MlsMessageBodyIn::KeyPackage(key_package) => key_package,
                other => {
                    return Err(MlsError::UnexpectedMessage {
                        expected: "a KeyPackage",
                        got: body_kind(&other),
                    })
                }
            },
            Err(_) => KeyPackageIn::tls_deserialize_exact_bytes(bytes)
                .map_err(|e| MlsError::Malformed { what: "a KeyPackage", detail: e.to_string() })?,
        };
        let key_package = key_package_in
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|e| MlsError::InvalidKeyPackage(e.to_string()))?;
        if key_package.ciphersuite() != CIPHERSUITE {
            return Err(MlsError::InvalidKeyPackage(format!(
                "it is for ciphersuite {:?}, qpc only speaks {CIPHERSUITE:?}",
                key_package.ciphersuite()
            )));
        }
        let identity =
            leaf_identity(key_package.leaf_node()).map_err(|e| MlsError::InvalidKeyPackage(e.to_string()))?;
        if let Some(expected) = expected_identity {
            if identity != expected {
                return Err(MlsError::WrongIdentity {
                    expected: hex::encode(expected),
                    actual: hex::encode(identity),
                });
            }
        }
        Ok((key_package, identity))
    }

    /// Builds a commit in `group` (always including the stored proposals)
    /// and leaves it pending; reports who must receive what.
    fn commit(
        &mut self,
        group: &str,
        action: &'static str,
        customise: impl for<'a> FnOnce(
            openmls::prelude::CommitBuilder<'a, openmls::prelude::Initial>,
        ) -> openmls::prelude::CommitBuilder<'a, openmls::prelude::Initial>,
    ) -> Result<Commit, MlsError> {
        let before: BTreeSet<IdentityKey> = self.members(group)?.into_iter().collect();
        let fence = self.fence(group)?;
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        if mls_group.pending_commit().is_some() {
            return Err(MlsError::CommitPending(group.to_owned()));
        }
        let epoch = mls_group.epoch().as_u64();
        let bundle = customise(mls_group.commit_builder().consume_proposal_store(true))
            .load_psks(self.provider.storage())
            .map_err(|e| group_error(action, group, e))?
            .build(self.provider.rand(), self.provider.crypto(), &self.signer, |_| true)
            .map_err(|e| group_error(action, group, e))?
            .stage_commit(&self.provider)
            .map_err(|e| group_error(action, group, e))?;

        let outcome = (|| {
            let message =
                bundle.commit().tls_serialize_detached().map_err(|e| group_error(action, group, e))?;
            let welcome = bundle
                .to_welcome_msg()
                .map(|welcome| welcome.tls_serialize_detached())
                .transpose()
                .map_err(|e| group_error(action, group, e))?;
            let staged = mls_group.pending_commit().ok_or_else(|| MlsError::Group {
                action,
                group: group.to_owned(),
                detail: "openmls kept no pending commit".into(),
            })?;
            let next_fence = staged
                .export_secret(self.provider.crypto(), FENCE_LABEL, b"", 32)
                .map_err(|e| group_error(action, group, e))?;
            let mut removed = BTreeSet::new();
            for remove in staged.remove_proposals() {
                let leaf = remove.remove_proposal().removed();
                let member = mls_group.member_at(leaf).ok_or_else(|| MlsError::Group {
                    action,
                    group: group.to_owned(),
                    detail: format!("the commit removes leaf {leaf:?}, which is empty"),
                })?;
                removed.insert(bound_identity(&member.credential, &member.signature_key)?);
            }
            let mut added = Vec::new();
            for add in staged.add_proposals() {
                added.push(leaf_identity(add.add_proposal().key_package().leaf_node())?);
            }
            let next_fence_hash: [u8; 32] = Sha256::digest(&next_fence).into();
            Ok(Commit {
                epoch,
                fence,
                next_fence_hash,
                message,
                remaining: before
                    .iter()
                    .filter(|id| **id != self.identity && !removed.contains(*id))
                    .copied()
                    .collect(),
                removed: removed.into_iter().collect(),
                added,
                welcome,
            })
        })();
        if outcome.is_err() {
            // Leave the group as it was rather than with a commit nobody can send.
            let _ = mls_group.clear_pending_commit(self.provider.storage());
        }
        outcome
    }

    /// Applies our pending commit in `group` (the relay admitted it) and
    /// returns the new epoch.
    pub fn merge_pending(&mut self, group: &str) -> Result<u64, MlsError> {
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        if mls_group.pending_commit().is_none() {
            return Err(MlsError::NoCommitPending(group.to_owned()));
        }
        mls_group
            .merge_pending_commit(&self.provider)
            .map_err(|e| group_error("applying our commit", group, e))?;
        Ok(mls_group.epoch().as_u64())
    }

    /// Drops our pending commit in `group` (the relay refused it); the
    /// proposals it would have committed stay stored.
    pub fn clear_pending(&mut self, group: &str) -> Result<(), MlsError> {
        let mls_group = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        mls_group
            .clear_pending_commit(self.provider.storage())
            .map_err(|e| group_error("dropping our commit", group, e))
    }

    /// Whether we have a commit in `group` that the relay has not admitted yet.
    pub fn has_pending_commit(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| g.pending_commit().is_some())
    }

    /// The routing value the relay orders `group`'s commits by: SHA-256
    /// over the MLS group id, which holds a random part, so that neither the
    /// relay nor a stranger can tell or guess the group from it.
    pub fn route(&self, group: &str) -> Result<[u8; 32], MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        Ok(Sha256::new_with_prefix(b"qpc group route v1\0")
            .chain_update(mls_group.group_id().as_slice())
            .finalize()
            .into())
    }

    /// Seals an ephemeral signal (typing, presence) for `group`: encrypted
    /// under a key exported from the current epoch and signed with our
    /// identity key, so only members of this epoch can read it and none can
    /// forge another's. It does not touch the group's ratchets, so a signal
    /// that is lost (its reader is offline) costs nothing.
    ///
    /// Layout: route (32), epoch (8, big-endian), nonce (12), then the
    /// ChaCha20-Poly1305 box (associated data: route and epoch) of our
    /// identity key (32), an Ed25519 signature (64) over
    /// `SIGNAL_LABEL || route || epoch || content`, and the content.
    pub fn seal_signal(&self, group: &str, content: &[u8]) -> Result<Vec<u8>, MlsError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let route = self.route(group)?;
        let epoch = self.epoch(group)?.to_be_bytes();
        let key = self.signal_key(group)?;
        let signed = [SIGNAL_LABEL.as_bytes(), &route, &epoch, content].concat();
        let signature = self.signer.0.sign(&signed).to_bytes();
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let plaintext = [&self.identity[..], &signature, content].concat();
        let aad = [&route[..], &epoch].concat();
        let sealed = chacha20poly1305::ChaCha20Poly1305::new(&key.into())
            .encrypt(&nonce.into(), Payload { msg: &plaintext, aad: &aad })
            .map_err(|_| protocol("sealing a signal", "the cipher refused"))?;
        Ok([&route[..], &epoch, &nonce, &sealed].concat())
    }

    /// Opens a signal sealed by [`Member::seal_signal`]: its group, the
    /// member who sent it, and the content; `None` for anything that is not
    /// a signal of a current member for the current epoch of one of our
    /// groups (a late one after a commit is simply dropped).
    pub fn open_signal(&self, bytes: &[u8]) -> Option<(String, IdentityKey, Vec<u8>)> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        if bytes.len() < 32 + 8 + 12 + 16 + 32 + 64 {
            return None;
        }
        let (route, rest) = bytes.split_at(32);
        let (epoch, rest) = rest.split_at(8);
        let (nonce, sealed) = rest.split_at(12);
        let group = self.groups.keys().find(|g| self.route(g).is_ok_and(|r| r[..] == *route))?.clone();
        if self.epoch(&group).ok()?.to_be_bytes() != epoch {
            return None;
        }
        let key = self.signal_key(&group).ok()?;
        let aad = [route, epoch].concat();
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plaintext = chacha20poly1305::ChaCha20Poly1305::new(&key.into())
            .decrypt(&nonce.into(), Payload { msg: sealed, aad: &aad })
            .ok()?;
        let (sender, rest) = plaintext.split_at(32);
        let (signature, content) = rest.split_at(64);
        let sender: IdentityKey = sender.try_into().ok()?;
        if !self.members(&group).ok()?.contains(&sender) {
            return None;
        }
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&sender).ok()?;
        let signature = ed25519_dalek::Signature::from_slice(signature).ok()?;
        let signed = [SIGNAL_LABEL.as_bytes(), route, epoch, content].concat();
        verifying.verify_strict(&signed, &signature).ok()?;
        Some((group, sender, content.to_vec()))
    }

    fn signal_key(&self, group: &str) -> Result<[u8; 32], MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        let secret = mls_group
            .export_secret(self.provider.crypto(), SIGNAL_LABEL, b"", 32)
            .map_err(|e| group_error("deriving the signal key", group, e))?;
        secret.try_into().map_err(|_| protocol("deriving the signal key", "not 32 bytes"))
    }

    /// The fence value of `group`'s current epoch (see the module docs).
    pub fn fence(&self, group: &str) -> Result<[u8; 32], MlsError> {
        let mls_group = self.groups.get(group).ok_or_else(|| no_group(group))?;
        let secret = mls_group
            .export_secret(self.provider.crypto(), FENCE_LABEL, b"", 32)
            .map_err(|e| group_error("deriving the fence value", group, e))?;
        secret.try_into().map_err(|_| MlsError::Group {
            action: "deriving the fence value",
            group: group.to_owned(),
            detail: "the exporter gave a value that is not 32 bytes".into(),
        })
    }

    /// Checks a received commit's new leaves, merges it, and forgets the
    /// group if the commit removed us.
    fn merge_commit(&mut self, name: String, staged: StagedCommit) -> Result<Incoming, MlsError> {
        check_staged_commit(&staged).map_err(|e| group_error("accepting a commit", &name, e))?;
        let removed_self = staged.self_removed();
        let epoch = staged.epoch().as_u64();
        let mls_group = self.groups.get_mut(&name).ok_or_else(|| no_group(&name))?;
        mls_group
            .merge_staged_commit(&self.provider, staged)
            .map_err(|e| group_error("merging a commit", &name, e))?;
        if removed_self {
            mls_group
                .delete(self.provider.storage())
                .map_err(|e| group_error("forgetting the group", &name, e))?;
            self.groups.remove(&name);
        }
        Ok(Incoming::Commit { group: name, epoch, removed_self })
    }
}

/// Every leaf a commit installs must bind its credential to its key.
fn check_staged_commit(staged: &StagedCommit) -> Result<(), MlsError> {
    for add in staged.add_proposals() {
        leaf_identity(add.add_proposal().key_package().leaf_node())?;
    }
    for update in staged.update_proposals() {
        leaf_identity(update.update_proposal().leaf_node())?;
    }
    if let Some(leaf) = staged.update_path_leaf_node() {
        leaf_identity(leaf)?;
    }
    Ok(())
}

fn check_proposal(proposal: &QueuedProposal) -> Result<(), MlsError> {
    match proposal.proposal() {
        Proposal::Add(add) => leaf_identity(add.key_package().leaf_node()).map(drop),
        Proposal::Update(update) => leaf_identity(update.leaf_node()).map(drop),
        _ => Ok(()),
    }
}

fn leaf_identity(leaf: &LeafNode) -> Result<IdentityKey, MlsError> {
    bound_identity(leaf.credential(), leaf.signature_key().as_slice())
}

/// The identity of a credential whose identity must equal its signature key.
fn bound_identity(credential: &Credential, signature_key: &[u8]) -> Result<IdentityKey, MlsError> {
    let identity = credential_identity(credential)?;
    if identity[..] != *signature_key {
        return Err(MlsError::InvalidCredential(format!(
            "identity {} is not the key {} that signs for it",
            hex::encode(identity),
            hex::encode(signature_key)
        )));
    }
    Ok(identity)
}

fn credential_identity(credential: &Credential) -> Result<IdentityKey, MlsError> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| MlsError::InvalidCredential("not a basic credential".into()))?;
    basic.identity().try_into().map_err(|_| {
        MlsError::InvalidCredential(format!(
            "identity is {} bytes, not a 32-byte Ed25519 key",
            basic.identity().len()
        ))
    })
}

/// The capabilities of our leaves: the defaults plus the last-resort
/// extension, which a last-resort KeyPackage must declare.
fn capabilities() -> Capabilities {
    Capabilities::new(None, Some(&[CIPHERSUITE]), Some(&[ExtensionType::LastResort]), None, None)
}

/// The name part of an MLS group id (see the module docs).
fn name_of(group_id: &str) -> &str {
    group_id.split(GROUP_ID_SEPARATOR).next().unwrap_or(group_id)
}

fn check_group_name(name: &str) -> Result<(), MlsError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_GROUP_NAME_LEN {
        "it is longer than 255 bytes"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(MlsError::InvalidGroupName { name: name.to_owned(), reason })
}

fn parse_message(bytes: &[u8]) -> Result<MlsMessageIn, MlsError> {
    MlsMessageIn::tls_deserialize_exact_bytes(bytes)
        .map_err(|e| MlsError::Malformed { what: "an MLS message", detail: e.to_string() })
}

fn body_kind(body: &MlsMessageBodyIn) -> &'static str {
    match body {
        MlsMessageBodyIn::PublicMessage(_) => "a public group message",
        MlsMessageBodyIn::PrivateMessage(_) => "an encrypted group message",
        MlsMessageBodyIn::Welcome(_) => "a Welcome",
        MlsMessageBodyIn::GroupInfo(_) => "a GroupInfo",
        MlsMessageBodyIn::KeyPackage(_) => "a KeyPackage",
        #[allow(unreachable_patterns)]
        _ => "an unsupported MLS message",
    }
}

fn serialize(message: MlsMessageOut, action: &'static str) -> Result<Vec<u8>, MlsError> {
    message.tls_serialize_detached().map_err(|e| protocol(action, e))
}

fn no_group(name: &str) -> MlsError {
    MlsError::NoSuchGroup(name.to_owned())
}

fn protocol(action: &'static str, error: impl fmt::Display) -> MlsError {
    MlsError::Protocol { action, detail: error.to_string() }
}

fn group_error(action: &'static str, group: &str, error: impl fmt::Display) -> MlsError {
    MlsError::Group { action, group: group.to_owned(), detail: error.to_string() }
}

fn welcome_error<E: fmt::Display>(error: WelcomeError<E>) -> MlsError {
    match error {
        WelcomeError::NoMatchingKeyPackage | WelcomeError::PrivateInitKeyNotFound => {
            MlsError::WelcomeNotForUs
        }
        other => MlsError::InvalidWelcome(other.to_string()),
    }
}

fn process_error<E: fmt::Display>(
    error: ProcessMessageError<E>,
    group: String,
    message_epoch: u64,
    group_epoch: u64,
) -> MlsError {
    match error {
        ProcessMessageError::ValidationError(ValidationError::WrongEpoch) if message_epoch > group_epoch => {
            MlsError::FutureEpoch { group, message_epoch, group_epoch }
        }
        ProcessMessageError::ValidationError(
            ValidationError::WrongEpoch | ValidationError::NoPastEpochData,
        ) => MlsError::StaleEpoch { group, message_epoch, group_epoch },
        ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(
            MessageDecryptionError::SecretTreeError(
                SecretTreeError::SecretReuseError | SecretTreeError::TooDistantInThePast,
            ),
        )) => MlsError::Duplicate { group },
        other => MlsError::Group { action: "processing a message", group, detail: other.to_string() },
    }
}

fn put_len32(out: &mut Vec<u8>, len: usize) {
    // Entries live in memory, so they are far below 4 GiB each.
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

/// Bounds-checked reads over saved state.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], MlsError> {
        if self.bytes.len() < len {
            return Err(MlsError::CorruptState(format!(
                "it ends inside {what} (needs {len} bytes, {} left)",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn len32(&mut self, what: &str) -> Result<usize, MlsError> {
        let raw = self.take(4, what)?;
        Ok(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
    }

    fn len16(&mut self, what: &str) -> Result<usize, MlsError> {
        let raw = self.take(2, what)?;
        Ok(u16::from_be_bytes([raw[0], raw[1]]) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "demo-chat";

    /// A member with a fixed seed that can be "restarted" like a new process.
    struct Client {
        seed: [u8; 32],
        member: Member,
    }

    impl Client {
        fn new(tag: u8) -> Self {
            let seed = [tag; 32];
            Client { seed, member: Member::new(seed) }
        }

        fn id(&self) -> IdentityKey {
            self.member.identity_key()
        }

        /// Saves and reloads the state, as the CLI does between subcommands.
        fn restart(&mut self) {
            let bytes = self.member.to_bytes();
            self.member = Member::from_bytes(self.seed, &bytes).expect("state reloads");
            assert_eq!(self.member.to_bytes(), bytes, "reloading changes nothing");
        }

        fn key_package(&mut self) -> Vec<u8> {
            let kp = self.member.new_key_package().expect("key package");
            self.restart();
            kp
        }

        fn process(&mut self, message: &[u8]) -> Incoming {
            let incoming = self.member.process(message).expect("message processes");
            self.restart();
            incoming
        }

        fn join(&mut self, welcome: &[u8]) -> String {
            let Incoming::Welcome(welcome) = self.process(welcome) else { panic!("not a Welcome") };
            let name = self.member.join(&welcome).expect("join");
            self.restart();
            name
        }

        fn send(&mut self, text: &str) -> Vec<u8> {
            let message = self.member.encrypt(GROUP, text.as_bytes()).expect("encrypt");
            self.restart();
            message
        }

        fn expect_text(&mut self, message: &[u8], from: IdentityKey, text: &str) {
            assert_eq!(
                self.process(message),
                Incoming::Application {
                    group: GROUP.into(),
                    sender: from,
                    plaintext: text.as_bytes().to_vec()
                }
            );
        }

        fn expect_commit(&mut self, commit: &[u8], epoch: u64) {
            assert_eq!(
                self.process(commit),
                Incoming::Commit { group: GROUP.into(), epoch, removed_self: false }
            );
        }

        fn epoch(&self) -> u64 {
            self.member.epoch(GROUP).expect("epoch")
        }

        fn members(&self) -> BTreeSet<IdentityKey> {
            self.member.members(GROUP).expect("members").into_iter().collect()
        }
    }

    /// Alice creates the group and adds Bob, every step in its own "process".
    fn alice_and_bob() -> (Client, Client) {
        let mut alice = Client::new(1);
        let mut bob = Client::new(2);
        let bob_kp = bob.key_package();

        alice.member.create_group(GROUP).expect("create");
        alice.restart();
        assert_eq!(alice.epoch(), 0);
        assert_eq!(alice.member.groups(), vec![GROUP.to_string()]);

        let added = alice.member.add_member(GROUP, &bob_kp, Some(bob.id())).expect("add bob");

        alice.member.merge_pending(GROUP).unwrap();
        alice.restart();
        assert_eq!(added.new_member, bob.id());
        assert!(added.existing_members.is_empty(), "nobody else needs the commit");
        assert_eq!(alice.epoch(), 1);

        assert_eq!(bob.join(&added.welcome), GROUP);
        assert_eq!(bob.epoch(), 1);
        (alice, bob)
    }

    /// Alice and Bob as above, then Alice adds Carol and Bob follows.
    fn three_members() -> (Client, Client, Client) {
        let (mut alice, mut bob) = alice_and_bob();
        let mut carol = Client::new(3);
        let carol_kp = carol.key_package();
        let added = alice.member.add_member(GROUP, &carol_kp, Some(carol.id())).expect("add carol");
        alice.member.merge_pending(GROUP).unwrap();
        alice.restart();
        assert_eq!(added.existing_members, vec![bob.id()]);
        bob.expect_commit(&added.commit.message, 2);
        assert_eq!(carol.join(&added.welcome), GROUP);
        (alice, bob, carol)
    }

    fn all_read_all(clients: &mut [&mut Client]) {
        for i in 0..clients.len() {
            let text = format!("hello from {i} at epoch {}", clients[i].epoch());
            let message = clients[i].send(&text);
            let sender = clients[i].id();
            for (j, reader) in clients.iter_mut().enumerate() {
                if i != j {
                    reader.expect_text(&message, sender, &text);
                }
            }
        }
    }

    #[test]
    fn alice_and_bob_chat_across_restarts() {
        let (mut alice, mut bob) = alice_and_bob();
        let both: BTreeSet<_> = [alice.id(), bob.id()].into();
        assert_eq!(alice.members(), both);
        assert_eq!(bob.members(), both);

        let hi = alice.send("Hi Bob");
        bob.expect_text(&hi, alice.id(), "Hi Bob");
        let reply = bob.send("Hi Alice");
        alice.expect_text(&reply, bob.id(), "Hi Alice");
        for n in 0..3 {
            let m = bob.send(&format!("again {n}"));
            alice.expect_text(&m, bob.id(), &format!("again {n}"));
        }
    }

    #[test]
    fn three_members_read_each_other() {
        let (mut alice, mut bob, mut carol) = three_members();
        let all: BTreeSet<_> = [alice.id(), bob.id(), carol.id()].into();
        for client in [&alice, &bob, &carol] {
            assert_eq!(client.members(), all);
            assert_eq!(client.epoch(), 2);
        }
        all_read_all(&mut [&mut alice, &mut bob, &mut carol]);
    }

    #[test]
    fn a_key_package_is_used_once() {
        let mut alice = Client::new(1);
        let mut bob = Client::new(2);
        let kp = bob.key_package();
        alice.member.create_group(GROUP).unwrap();
        let added = alice.member.add_member(GROUP, &kp, None).unwrap();
        alice.member.merge_pending(GROUP).unwrap();
        bob.join(&added.welcome);

        // A second invitation with the same (already used) KeyPackage.
        alice.member.create_group("other").unwrap();
        let again = alice.member.add_member("other", &kp, None).unwrap();
        alice.member.merge_pending("other").unwrap();
        let err = bob.member.join(&again.welcome).unwrap_err();
        assert!(matches!(err, MlsError::WelcomeNotForUs), "{err}");
        // And a Welcome meant for someone else.
        let mut carol = Client::new(3);
        let err = carol.member.join(&added.welcome).unwrap_err();
        assert!(matches!(err, MlsError::WelcomeNotForUs), "{err}");
    }

    #[test]
    fn key_package_for_the_wrong_identity_is_refused() {
        let mut alice = Client::new(1);
        let mut mallory = Client::new(9);
        let bob = Client::new(2);
        alice.member.create_group(GROUP).unwrap();
        let kp = mallory.key_package();

        let err = alice.member.add_member(GROUP, &kp, Some(bob.id())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "KeyPackage is for identity {}, not the requested peer {}",
                hex::encode(mallory.id()),
                hex::encode(bob.id())
            )
        );
        assert_eq!(alice.epoch(), 0, "nothing was committed");
        assert!(alice.member.propose_add(GROUP, &kp, Some(bob.id())).is_err());

        let err = alice.member.add_member(GROUP, b"not a key package", None).unwrap_err();
        assert!(matches!(err, MlsError::Malformed { .. }), "{err}");
        let err = alice.member.add_member(GROUP, &[], None).unwrap_err();
        assert!(matches!(err, MlsError::Malformed { .. }), "{err}");
        // A KeyPackage whose signature no longer verifies.
        let mut tampered = kp.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = alice.member.add_member(GROUP, &tampered, None).unwrap_err();
        assert!(matches!(err, MlsError::InvalidKeyPackage(_)), "{err}");
        // Another kind of MLS message.
        let mut carol = Client::new(3);
        carol.member.create_group("x").unwrap();
        let kp2 = mallory.key_package();
        let welcome = carol.member.add_member("x", &kp2, None).unwrap().welcome;
        let err = alice.member.add_member(GROUP, &welcome, None).unwrap_err();
        assert!(matches!(err, MlsError::UnexpectedMessage { .. }), "{err}");
        let err = alice.member.add_member("nope", &kp, None).unwrap_err();
        assert_eq!(err.to_string(), "no group named nope");
    }

    #[test]
    fn bare_key_packages_are_accepted_too() {
        let mut alice = Client::new(1);
        let mut bob = Client::new(2);
        let kp = bob.key_package();
        let MlsMessageBodyIn::KeyPackage(bare) = parse_message(&kp).unwrap().extract() else { panic!() };
        let bare = bare.tls_serialize_detached().unwrap();
        alice.member.create_group(GROUP).unwrap();
        let added = alice.member.add_member(GROUP, &bare, Some(bob.id())).unwrap();
        alice.member.merge_pending(GROUP).unwrap();
        assert_eq!(bob.join(&added.welcome), GROUP);
    }

    #[test]
    fn corrupt_state_is_refused() {
        let (alice, _bob) = alice_and_bob();
        let good = alice.member.to_bytes();
        assert!(Member::from_bytes(alice.seed, &good).is_ok());

        for len in (0..good.len()).step_by(97).chain([good.len() - 1]) {
            let err = Member::from_bytes(alice.seed, &good[..len]).unwrap_err();
            assert!(matches!(err, MlsError::CorruptState(_)), "truncated at {len}: {err}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(Member::from_bytes(alice.seed, &longer), Err(MlsError::CorruptState(_))));

        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0xff;
        let err = Member::from_bytes(alice.seed, &bad_magic).unwrap_err();
        assert_eq!(err.to_string(), "the saved MLS state is unusable: it is not qpc MLS state (bad header)");
        let mut future = good.clone();
        future[7] = 9;
        assert!(Member::from_bytes(alice.seed, &future).unwrap_err().to_string().contains("version 9"));

        let err = Member::from_bytes([2; 32], &good).unwrap_err();
        assert!(matches!(err, MlsError::StateIdentityMismatch { .. }), "{err}");

        assert!(Member::from_bytes(alice.seed, b"").is_err());
        assert!(Member::from_bytes(alice.seed, &[0xff; 4096]).is_err());

        // Any changed byte is caught before openmls reads the damaged value.
        for i in (STATE_MAGIC.len()..good.len()).step_by(101) {
            let mut flipped = good.clone();
            flipped[i] ^= 0x20;
            let err = Member::from_bytes(alice.seed, &flipped).unwrap_err();
            assert!(matches!(err, MlsError::CorruptState(_)), "flipped byte {i}: {err}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let (mut alice, mut bob) = alice_and_bob();
        let message = alice.send("hi");
        for len in 0..message.len() {
            assert!(bob.member.process(&message[..len]).is_err());
        }
        for i in (0..message.len()).step_by(7) {
            let mut flipped = message.clone();
            flipped[i] ^= 0x55;
            assert!(bob.member.process(&flipped).is_err(), "flipped byte {i}");
        }
        // Bob's state survived all that: the genuine message still reads.
        bob.expect_text(&message, alice.id(), "hi");

        assert!(matches!(bob.member.encrypt("nope", b"x"), Err(MlsError::NoSuchGroup(_))));
        assert!(matches!(bob.member.members("nope"), Err(MlsError::NoSuchGroup(_))));
        let err = bob.member.create_group(GROUP).unwrap_err();
        assert_eq!(err.to_string(), "a group named demo-chat already exists");
        assert!(matches!(bob.member.create_group(""), Err(MlsError::InvalidGroupName { .. })));
        assert!(matches!(bob.member.create_group(&"x".repeat(256)), Err(MlsError::InvalidGroupName { .. })));
        let kp = bob.key_package();
        let err = bob.member.process(&kp).unwrap_err();
        assert!(matches!(err, MlsError::UnexpectedMessage { got: "a KeyPackage", .. }), "{err}");
        let err = bob.member.join(&message).unwrap_err();
        assert!(matches!(err, MlsError::UnexpectedMessage { .. }), "{err}");
    }

    #[test]
    fn replays_and_echoes_are_recognised() {
        let (mut alice, mut bob) = alice_and_bob();
        let message = alice.send("once");
        bob.expect_text(&message, alice.id(), "once");
        let err = bob.member.process(&message).unwrap_err();
        assert!(matches!(err, MlsError::Duplicate { .. }), "{err}");
        assert!(err.is_replay());

        let err = alice.member.process(&message).unwrap_err();
        assert!(matches!(err, MlsError::OwnMessage { .. }), "{err}");
        assert!(err.is_replay());

        let update = alice.member.self_update(GROUP).unwrap();

        alice.member.merge_pending(GROUP).unwrap();
        bob.expect_commit(&update.message, 2);
        let err = bob.member.process(&update.message).unwrap_err();
        assert!(matches!(err, MlsError::StaleEpoch { message_epoch: 1, group_epoch: 2, .. }), "{err}");
        assert!(err.is_replay());
    }

    #[test]
    fn messages_from_a_future_epoch_are_refused() {
        let (mut alice, mut bob) = alice_and_bob();
        let first = alice.member.self_update(GROUP).unwrap();
        alice.member.merge_pending(GROUP).unwrap();
        let second = alice.member.self_update(GROUP).unwrap();
        alice.member.merge_pending(GROUP).unwrap();
        let message = alice.send("at epoch 3");

        let err = bob.member.process(&message).unwrap_err();
        assert_eq!(err.to_string(), "message is for epoch 3 but the group demo-chat is at epoch 1");
        let err = bob.member.process(&second.message).unwrap_err();
        assert!(matches!(err, MlsError::FutureEpoch { message_epoch: 2, group_epoch: 1, .. }), "{err}");
        assert!(!err.is_replay());
        assert_eq!(bob.epoch(), 1, "refusals change nothing");

        bob.expect_commit(&first.message, 2);
        bob.expect_commit(&second.message, 3);
        bob.expect_text(&message, alice.id(), "at epoch 3");
    }

    #[test]
    fn a_removed_member_cannot_read_later_messages() {
        let (mut alice, mut bob, mut carol) = three_members();
        let carol_before = carol.member.to_bytes();

        let removal = alice.member.remove_member(GROUP, carol.id()).unwrap();

        alice.member.merge_pending(GROUP).unwrap();
        alice.restart();
        assert_eq!(removal.remaining, vec![bob.id()]);
        assert_eq!(removal.removed, vec![carol.id()]);
        assert!(removal.added.is_empty() && removal.welcome.is_none());
        assert_eq!(removal.recipients(), vec![bob.id(), carol.id()]);

        bob.expect_commit(&removal.message, 3);
        assert_eq!(
            carol.process(&removal.message),
            Incoming::Commit { group: GROUP.into(), epoch: 3, removed_self: true }
        );
        assert!(carol.member.groups().is_empty());
        let both: BTreeSet<_> = [alice.id(), bob.id()].into();
        assert_eq!(alice.members(), both);
        assert_eq!(bob.members(), both);

        let secret = alice.send("carol is gone");
        bob.expect_text(&secret, alice.id(), "carol is gone");
        let err = carol.member.process(&secret).unwrap_err();
        assert_eq!(err.to_string(), "no group named demo-chat");
        // Even a copy of Carol's state from before the removal cannot read it.
        let old_carol = Member::from_bytes(carol.seed, &carol_before).unwrap();
        let mut old_carol = Client { seed: carol.seed, member: old_carol };
        assert!(old_carol.member.process(&secret).is_err());
        let err = old_carol.member.process(&bob.send("still secret")).unwrap_err();
        assert!(matches!(err, MlsError::FutureEpoch { .. }), "{err}");

        let err = alice.member.remove_member(GROUP, carol.id()).unwrap_err();
        assert!(matches!(err, MlsError::NotMember { .. }), "{err}");
        let err = alice.member.remove_member(GROUP, alice.id()).unwrap_err();
        assert!(matches!(err, MlsError::CannotRemoveSelf(_)), "{err}");
        all_read_all(&mut [&mut alice, &mut bob]);
    }

    #[test]
    fn self_update_moves_everyone_on() {
        let (mut alice, mut bob, mut carol) = three_members();
        let update = bob.member.self_update(GROUP).unwrap();
        bob.member.merge_pending(GROUP).unwrap();
        bob.restart();
        assert_eq!(
            update.remaining.iter().copied().collect::<BTreeSet<_>>(),
            [alice.id(), carol.id()].into()
        );
        assert!(update.removed.is_empty() && update.added.is_empty() && update.welcome.is_none());
        alice.expect_commit(&update.message, 3);
        carol.expect_commit(&update.message, 3);
        all_read_all(&mut [&mut alice, &mut bob, &mut carol]);
    }

    #[test]
    fn a_lagging_member_catches_up_in_order() {
        let (mut alice, mut bob, mut carol) = three_members();
        let mut queued = Vec::new();
        for round in 0..10u64 {
            let committer = if round % 2 == 0 { &mut alice } else { &mut bob };
            let update = committer.member.self_update(GROUP).unwrap();
            committer.member.merge_pending(GROUP).unwrap();
            committer.restart();
            let follower = if round % 2 == 0 { &mut bob } else { &mut alice };
            follower.expect_commit(&update.message, 3 + round);
            queued.push(update.message);
        }
        assert_eq!(alice.epoch(), 12);
        assert_eq!(carol.epoch(), 2);

        // Out of order is refused without harm; in order works.
        assert!(matches!(carol.member.process(&queued[5]), Err(MlsError::FutureEpoch { .. })));
        for (n, commit) in queued.iter().enumerate() {
            carol.expect_commit(commit, 3 + n as u64);
        }
        assert_eq!(carol.epoch(), 12);
        all_read_all(&mut [&mut alice, &mut bob, &mut carol]);
    }

    #[test]
    fn a_message_from_the_previous_epoch_still_reads() {
        let (mut alice, mut bob) = alice_and_bob();
        let late = bob.send("sent before the commit arrived");
        let update = alice.member.self_update(GROUP).unwrap();
        alice.member.merge_pending(GROUP).unwrap();
        alice.expect_text(&late, bob.id(), "sent before the commit arrived");
        bob.expect_commit(&update.message, 2);
    }

    #[test]
    fn leaving_takes_a_proposal_and_someone_elses_commit() {
        let (mut alice, mut bob, mut carol) = three_members();
        let proposal = bob.member.leave(GROUP).unwrap();
        bob.restart();
        assert_eq!(alice.process(&proposal), Incoming::Proposal { group: GROUP.into() });
        assert_eq!(carol.process(&proposal), Incoming::Proposal { group: GROUP.into() });
        assert_eq!(alice.member.pending_proposals(GROUP).unwrap(), 1);

        let commit = alice.member.commit_pending_proposals(GROUP).unwrap();

        alice.member.merge_pending(GROUP).unwrap();
        alice.restart();
        assert_eq!(commit.removed, vec![bob.id()]);
        assert_eq!(commit.remaining, vec![carol.id()]);
        carol.expect_commit(&commit.message, 3);
        assert_eq!(
            bob.process(&commit.message),
            Incoming::Commit { group: GROUP.into(), epoch: 3, removed_self: true }
        );
        assert!(bob.member.groups().is_empty());
        all_read_all(&mut [&mut alice, &mut carol]);

        let err = alice.member.commit_pending_proposals(GROUP).unwrap_err();
        assert_eq!(err.to_string(), "group demo-chat has no pending proposals to commit");

        alice.member.forget(GROUP).unwrap();
        alice.restart();
        assert!(alice.member.groups().is_empty());
        let err = alice.member.process(&carol.send("anyone?")).unwrap_err();
        assert!(matches!(err, MlsError::NoSuchGroup(_)), "{err}");
        assert!(alice.member.to_bytes().len() < 1024, "the group's state is gone from storage");
    }

    #[test]
    fn proposals_by_reference_add_and_remove() {
        let (mut alice, mut bob, mut carol) = three_members();
        let mut dave = Client::new(4);
        let dave_kp = dave.key_package();

        let add = bob.member.propose_add(GROUP, &dave_kp, Some(dave.id())).unwrap();
        bob.restart();
        let remove = bob.member.propose_remove(GROUP, carol.id()).unwrap();
        bob.restart();
        for proposal in [&add, &remove] {
            assert_eq!(alice.process(proposal), Incoming::Proposal { group: GROUP.into() });
            assert_eq!(carol.process(proposal), Incoming::Proposal { group: GROUP.into() });
        }

        let commit = alice.member.commit_pending_proposals(GROUP).unwrap();

        alice.member.merge_pending(GROUP).unwrap();
        alice.restart();
        assert_eq!(commit.added, vec![dave.id()]);
        assert_eq!(commit.removed, vec![carol.id()]);
        assert_eq!(commit.remaining, vec![bob.id()]);
        bob.expect_commit(&commit.message, 3);
        assert!(matches!(carol.process(&commit.message), Incoming::Commit { removed_self: true, .. }));
        assert_eq!(dave.join(commit.welcome.as_ref().unwrap()), GROUP);
        let now: BTreeSet<_> = [alice.id(), bob.id(), dave.id()].into();
        assert_eq!(dave.members(), now);
        all_read_all(&mut [&mut alice, &mut bob, &mut dave]);
    }

    #[test]
    fn state_size_stays_modest() {
        let (alice, bob, carol) = three_members();
        for (who, client) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
            let size = client.member.to_bytes().len();
            eprintln!("{who}: {size} bytes of state, one group of three");
            assert!(size < 256 * 1024, "{who}: {size}");
        }

        let mut dave = Client::new(4);
        let empty = dave.member.to_bytes().len();
        let kp = dave.key_package();
        for _ in 0..9 {
            dave.key_package();
        }
        let per_key_package = (dave.member.to_bytes().len() - empty) / 10;
        eprintln!(
            "empty state {empty} bytes; {per_key_package} bytes per unused KeyPackage; KeyPackage {} bytes",
            kp.len()
        );
        assert!(per_key_package < 4096);
    }

    #[test]
    fn signals_are_read_by_members_of_the_epoch_only() {
        let (mut alice, bob, carol) = three_members();
        let sealed = bob.member.seal_signal(GROUP, b"typing").unwrap();
        assert_eq!(
            alice.member.open_signal(&sealed),
            Some((GROUP.to_string(), bob.id(), b"typing".to_vec()))
        );
        assert_eq!(
            carol.member.open_signal(&sealed).map(|(_, s, c)| (s, c)),
            Some((bob.id(), b"typing".to_vec()))
        );
        for i in (0..sealed.len()).step_by(9) {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert_eq!(alice.member.open_signal(&flipped), None, "flipped byte {i}");
        }
        assert_eq!(alice.member.open_signal(&sealed[..sealed.len() - 1]), None);
        // A stranger cannot read it, and after a commit it is stale.
        let stranger = Client::new(9);
        assert_eq!(stranger.member.open_signal(&sealed), None);
        alice.member.self_update(GROUP).unwrap();
        alice.member.merge_pending(GROUP).unwrap();
        assert_eq!(alice.member.open_signal(&sealed), None);
    }
}

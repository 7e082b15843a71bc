//! The client's state file: the Ed25519 identity seed, the MLS member (key
//! store and groups), the username and the relay last used, saved atomically
//! after every change; and how the client asks for the password that
//! protects it.
//!
//! Two formats share the magic `QPCSTATE` and a version byte:
//!
//! - version 1, plain: the magic, `1`, then the body (a protobuf
//!   `StateBody`). Identities made without a password (`register-state`)
//!   stay in it.
//! - version 2, encrypted: a 73-byte header, then the body sealed with
//!   ChaCha20-Poly1305 under a key that Argon2id derives from the password.
//!   The whole header is the AEAD associated data. Integers big-endian:
//!
//!   | bytes | field |
//!   |---|---|
//!   | 8 | magic `QPCSTATE` |
//!   | 1 | version `2` |
//!   | 4, 4, 4 | Argon2id memory (KiB), passes, lanes |
//!   | 16 | salt, random when the file is made, then kept |
//!   | 16 | key check: tells a wrong password from a damaged body |
//!   | 12 | nonce, random on every save |
//!   | 8 | header checksum (SHA-256 of the bytes before it, truncated) |
//!
//!   The key check is a one-way function of the derived key, so it tells an
//!   attacker nothing that trying to decrypt would not. The header checksum
//!   is not a secret either: it lets a damaged header read as "corrupt"
//!   rather than as "wrong password".
//!
//! The key is derived once (on load or creation) and kept, zeroed on drop, so
//! a save costs no Argon2 run; this is why the salt stays the same across
//! saves and only the nonce changes. A file that is missing, truncated or
//! corrupt is reported as such and never overwritten, and nothing is written
//! when the password is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use ed25519_dalek::SigningKey;
use prost::Message;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::mls::{Member, MlsError};

const MAGIC: &[u8; 8] = b"QPCSTATE";
const VERSION_PLAIN: u8 = 1;
const VERSION_ENCRYPTED: u8 = 2;

const SALT_LEN: usize = 16;
const KEY_CHECK_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const HEADER_CHECKSUM_LEN: usize = 8;
/// Up to and including the nonce; the checksum covers these bytes.
const HEADER_FIELDS_LEN: usize = MAGIC.len() + 1 + 3 * 4 + SALT_LEN + KEY_CHECK_LEN + NONCE_LEN;
const HEADER_LEN: usize = HEADER_FIELDS_LEN + HEADER_CHECKSUM_LEN;
const TAG_LEN: usize = 16;

/// The largest Argon2 memory cost a file may ask for (1 GiB). A damaged
/// header must not make the client try to allocate gigabytes.
const MAX_M_COST_KIB: u32 = 1 << 20;
const MAX_T_COST: u32 = 64;
const MAX_PARALLELISM: u32 = 64;

/// Where the password comes from when `--password` is not given.
pub const PASSWORD_ENV: &str = "QPC_PASSWORD";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path} does not exist: run `qpc register-state --state {path}` first")]
    Missing { path: PathBuf },
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is corrupt or truncated ({why}); it was left untouched")]
    Corrupt { path: PathBuf, why: String },
    #[error("state file {path}: {source}")]
    Mls { path: PathBuf, source: MlsError },
    #[error(
        "state file {path} is encrypted: give its password with --password, \
         the {PASSWORD_ENV} environment variable, or at the prompt"
    )]
    NeedsPassword { path: PathBuf },
    #[error("wrong password for state file {path}; nothing was changed")]
    WrongPassword { path: PathBuf },
    #[error(
        "no password: {why}; give it with --password, the {PASSWORD_ENV} \
         environment variable, or type it at the prompt on a terminal"
    )]
    NoPassword { why: String },
    #[error("Argon2id parameters refused: {why}")]
    KdfParams { why: String },
    #[error("{} is in use by another qpc process", path.display())]
    InUse { path: PathBuf },
}

/// Argon2id cost parameters, stored in every encrypted file so that they can
/// be raised later without breaking older files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's first Argon2id recommendation: 19 MiB, 2 passes, 1 lane. It
    /// fits a router with 64 MB of RAM.
    fn default() -> Self {
        KdfParams { m_cost_kib: 19 * 1024, t_cost: 2, parallelism: 1 }
    }
}

impl KdfParams {
    fn argon2(&self) -> Result<argon2::Argon2<'static>, String> {
        self.argon2_for(32)
    }

    /// Argon2id with these costs (refused over the limits a file may ask
    /// for), giving `out_len` bytes.
    pub(crate) fn argon2_for(&self, out_len: usize) -> Result<argon2::Argon2<'static>, String> {
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.parallelism > MAX_PARALLELISM
        {
            return Err(format!(
                "m={} KiB, t={}, p={} is over the limits m={MAX_M_COST_KIB}, t={MAX_T_COST}, p={MAX_PARALLELISM}",
                self.m_cost_kib, self.t_cost, self.parallelism
            ));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.parallelism, Some(out_len))
            .map_err(|e| {
                format!("m={} KiB, t={}, p={}: {e}", self.m_cost_kib, self.t_cost, self.parallelism)
            })?;
        Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
    }
}

#[derive(Clone, PartialEq, Message)]
struct StateBody {
    #[prost(bytes = "vec", tag = "1")]
    identity_seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    member: Vec<u8>,
    #[prost(string, optional, tag = "3")]
    username: Option<String>,
    #[prost(string, optional, tag = "4")]
    relay: Option<String>,
    #[prost(message, repeated, tag = "5")]
    history: Vec<HistoryEntry>,
    /// Each an encoded [`OutboxEntry`], decoded one by one so that a damaged
    /// entry costs only itself.
    #[prost(bytes = "vec", repeated, tag = "6")]
    outbox: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "7")]
    invitations: Vec<Invitation>,
    #[prost(uint64, tag = "8")]
    next_number: u64,
    #[prost(bool, tag = "9")]
    presence: bool,
    #[prost(message, repeated, tag = "10")]
    names: Vec<KnownName>,
    #[prost(message, optional, tag = "11")]
    sealed: Option<Sealed>,
    /// Key transparency: the pinned log key, the last tree head, the
    /// devices seen per username, who is verified (tag 20: clear of the
    /// tags other work may add next).
    #[prost(message, optional, tag = "20")]
    kt: Option<crate::kt::KtState>,
}

/// Sealed sender: the delivery token this device handed its groups, and the
/// tokens other devices handed us.
#[derive(Clone, PartialEq, Message)]
pub struct Sealed {
    /// Ours (32 bytes), empty until issued.
    #[prost(bytes = "vec", tag = "1")]
    pub own_token: Vec<u8>,
    /// The groups that have it.
    #[prost(string, repeated, tag = "2")]
    pub announced_to: Vec<String>,
    /// Other devices' tokens.
    #[prost(message, repeated, tag = "3")]
    pub tokens: Vec<KnownToken>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KnownToken {
    #[prost(bytes = "vec", tag = "1")]
    pub device: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub token: Vec<u8>,
}

/// A device's username, as the directory said (so marks and labels read
/// right after a restart, before the relay is asked again).
#[derive(Clone, PartialEq, Message)]
pub struct KnownName {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(string, tag = "2")]
    pub name: String,
}

/// Something on its way to the relay: saved before it is sent, removed
/// once the relay has answered, so a crash in between sends it again (the
/// relay recognises the retry by its client message id).
#[derive(Clone, PartialEq, Message)]
pub struct OutboxEntry {
    #[prost(bytes = "vec", tag = "1")]
    pub client_msg_id: Vec<u8>,
    /// The method id: Enqueue, BatchEnqueue or GroupCommit.
    #[prost(uint32, tag = "2")]
    pub method: u32,
    /// The encoded request.
    #[prost(bytes = "vec", tag = "3")]
    pub request: Vec<u8>,
    /// For a GroupCommit: the group whose pending commit this is.
    #[prost(string, tag = "4")]
    pub group: String,
    /// For a GroupCommit: what the commit does, to make it again when
    /// another member's commit was admitted first.
    #[prost(message, optional, tag = "5")]
    pub intent: Option<Intent>,
}

/// What a commit is for, independent of the epoch it was made in.
#[derive(Clone, PartialEq, Message)]
pub struct Intent {
    /// One of the `INTENT_*` constants.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// Add: the devices' identity keys; Remove: the members to remove.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub keys: Vec<Vec<u8>>,
    /// Add: the KeyPackages fetched for `keys`, in the same order.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub key_packages: Vec<Vec<u8>>,
    /// Who it is about, as the person named them (for messages).
    #[prost(string, tag = "4")]
    pub who: String,
}

pub const INTENT_ADD: u32 = 1;
pub const INTENT_REMOVE: u32 = 2;
pub const INTENT_UPDATE: u32 = 3;
pub const INTENT_PROPOSALS: u32 = 4;

/// A Welcome that was processed (its group is in the MLS state, kept up to
/// date) but not yet accepted by the person.
#[derive(Clone, PartialEq, Message)]
pub struct Invitation {
    #[prost(string, tag = "1")]
    pub group: String,
    /// The inviter's username, or their short identity key.
    #[prost(string, tag = "2")]
    pub inviter: String,
}

/// Longest history kept per conversation; older lines are dropped.
pub const HISTORY_PER_CONVERSATION: usize = 1000;

/// One line of chat history, kept in the (encrypted) state file.
#[derive(Clone, PartialEq, Message)]
pub struct HistoryEntry {
    /// `@user` for a DM (or the notepad), `#group` for a group.
    #[prost(string, tag = "1")]
    pub conversation: String,
    /// The sender's username (or short identity key).
    #[prost(string, tag = "2")]
    pub sender: String,
    /// Unix time in seconds.
    #[prost(uint64, tag = "3")]
    pub time: u64,
    #[prost(string, tag = "4")]
    pub text: String,
    /// Received but not yet shown by `recv` or the REPL.
    #[prost(bool, tag = "5")]
    pub unshown: bool,
    /// The MLS group it belongs to.
    #[prost(string, tag = "6")]
    pub group: String,
    /// The message's stable id (the same on every device of every member).
    #[prost(bytes = "vec", tag = "7")]
    pub id: Vec<u8>,
    /// The id of the message this one answers.
    #[prost(bytes = "vec", tag = "8")]
    pub reply_to: Vec<u8>,
    /// A file shared with this message.
    #[prost(message, optional, tag = "9")]
    pub file: Option<crate::content::FileAnnouncement>,
    /// Its author changed the text.
    #[prost(bool, tag = "10")]
    pub edited: bool,
    /// Its author deleted it for everyone.
    #[prost(bool, tag = "11")]
    pub deleted: bool,
    #[prost(message, repeated, tag = "12")]
    pub reactions: Vec<ReactionMark>,
    /// For our own messages: who has received them, and who has read them.
    #[prost(string, repeated, tag = "13")]
    pub delivered_to: Vec<String>,
    #[prost(string, repeated, tag = "14")]
    pub read_by: Vec<String>,
    /// The identity key of the device that sent it.
    #[prost(bytes = "vec", tag = "15")]
    pub sender_key: Vec<u8>,
    /// For a received message: its number in `qpc recv` (`[N]`) and for
    /// `qpc save-file N`, counted over the whole state file from 0.
    #[prost(uint64, optional, tag = "16")]
    pub number: Option<u64>,
    /// Its position in its conversation, from 1 (what the REPL's `/reply N`
    /// and `/react N` name).
    #[prost(uint64, tag = "17")]
    pub seq: u64,
    /// A message of a kind this client does not know (from a newer one).
    #[prost(bool, tag = "18")]
    pub unsupported: bool,
}

/// One person's reaction to a message.
#[derive(Clone, PartialEq, Message)]
pub struct ReactionMark {
    #[prost(string, tag = "1")]
    pub emoji: String,
    #[prost(string, tag = "2")]
    pub by: String,
}

/// What an encrypted state needs to save again without the password.
struct Sealing {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    key_check: [u8; KEY_CHECK_LEN],
    key: Zeroizing<[u8; 32]>,
}

impl Sealing {
    /// A fresh salt and the key derived from `password` with it.
    fn new(password: &str, params: KdfParams) -> Result<Sealing, String> {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        Sealing::derive(password, params, salt)
    }

    fn derive(password: &str, params: KdfParams, salt: [u8; SALT_LEN]) -> Result<Sealing, String> {
        let mut master = Zeroizing::new([0u8; 32]);
        params
            .argon2()?
            .hash_password_into(password.as_bytes(), &salt, master.as_mut())
            .map_err(|e| e.to_string())?;
        let key = Zeroizing::new(<[u8; 32]>::from(
            Sha256::new_with_prefix(b"qpc state v2 key\0").chain_update(*master).finalize(),
        ));
        let check = Sha256::new_with_prefix(b"qpc state v2 key check\0").chain_update(*master).finalize();
        let mut key_check = [0u8; KEY_CHECK_LEN];
        key_check.copy_from_slice(&check[..KEY_CHECK_LEN]);
        Ok(Sealing { params, salt, key_check, key })
    }

    fn header(&self, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        let mut fields = Vec::with_capacity(HEADER_FIELDS_LEN);
        fields.extend_from_slice(MAGIC);
        fields.push(VERSION_ENCRYPTED);
        fields.extend_from_slice(&self.params.m_cost_kib.to_be_bytes());
        fields.extend_from_slice(&self.params.t_cost.to_be_bytes());
        fields.extend_from_slice(&self.params.parallelism.to_be_bytes());
        fields.extend_from_slice(&self.salt);
        fields.extend_from_slice(&self.key_check);
        fields.extend_from_slice(nonce);
        header[..HEADER_FIELDS_LEN].copy_from_slice(&fields);
        header[HEADER_FIELDS_LEN..].copy_from_slice(&Sha256::digest(&fields)[..HEADER_CHECKSUM_LEN]);
        header
    }

    fn seal(&self, body: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let header = self.header(&nonce);
        let cipher = ChaCha20Poly1305::new(self.key.as_ref().into());
        let sealed = cipher
            .encrypt(&nonce.into(), Payload { msg: body, aad: &header })
            .expect("ChaCha20-Poly1305 encrypts any body under 256 GiB");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&sealed);
        out
    }
}

/// An encrypted file's header, parsed and checked, and its ciphertext.
struct SealedFile<'a> {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    key_check: [u8; KEY_CHECK_LEN],
    nonce: [u8; NONCE_LEN],
    header: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> SealedFile<'a> {
    /// `bytes` is a whole version 2 file, magic and version included.
    fn parse(bytes: &'a [u8]) -> Result<SealedFile<'a>, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!("the encrypted header is cut short: {} of {HEADER_LEN} bytes", bytes.len()));
        }
        let (header, ciphertext) = bytes.split_at(HEADER_LEN);
        let (fields, checksum) = header.split_at(HEADER_FIELDS_LEN);
        if Sha256::digest(fields)[..HEADER_CHECKSUM_LEN] != *checksum {
            return Err("the encrypted header's checksum does not match".into());
        }
        if ciphertext.len() < TAG_LEN {
            return Err(format!("the encrypted body is cut short: {} bytes", ciphertext.len()));
        }
        let mut at = MAGIC.len() + 1;
        let mut take = |n: usize| {
            let field = &fields[at..at + n];
            at += n;
            field
        };
        let mut u32_field = || u32::from_be_bytes(take(4).try_into().expect("4 bytes"));
        let params = KdfParams { m_cost_kib: u32_field(), t_cost: u32_field(), parallelism: u32_field() };
        Ok(SealedFile {
            params,
            salt: take(SALT_LEN).try_into().expect("salt length"),
            key_check: take(KEY_CHECK_LEN).try_into().expect("key check length"),
            nonce: take(NONCE_LEN).try_into().expect("nonce length"),
            header,
            ciphertext,
        })
    }
}

/// Compares without an early exit, so timing does not show where two
/// key checks differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A loaded identity: its signing key and MLS member, and where it lives.
pub struct State {
    pub path: PathBuf,
    pub signing_key: SigningKey,
    pub member: Member,
    /// The account name on the relay, once registered or logged in.
    pub username: Option<String>,
    /// The relay address last used.
    pub relay: Option<String>,
    /// Chat history, oldest first (see [`State::record`]).
    pub history: Vec<HistoryEntry>,
    /// What is still to be sent, oldest first.
    pub outbox: Vec<OutboxEntry>,
    /// Welcomes waiting for the person to accept or decline them.
    pub invitations: Vec<Invitation>,
    /// What was wrong with the file but could be set aside (damaged outbox
    /// entries): for the person to read.
    pub warnings: Vec<String>,
    /// The `number` the next received message gets.
    pub next_number: u64,
    /// Whether this person shares (and so sees) online / last seen.
    pub presence: bool,
    /// Usernames of the devices seen so far.
    pub names: Vec<KnownName>,
    pub sealed: Sealed,
    pub kt: crate::kt::KtState,
    /// `Some` when the file is (to be) saved encrypted.
    sealing: Option<Sealing>,
}

impl State {
    /// A fresh identity, not yet saved, that will be saved in the plain format.
    pub fn generate(path: &Path) -> State {
        let signing_key = SigningKey::generate(&mut OsRng);
        let member = Member::new(signing_key.to_bytes());
        State {
            path: path.into(),
            signing_key,
            member,
            username: None,
            relay: None,
            history: Vec::new(),
            outbox: Vec::new(),
            invitations: Vec::new(),
            warnings: Vec::new(),
            next_number: 0,
            presence: false,
            names: Vec::new(),
            sealed: Sealed::default(),
            kt: Default::default(),
            sealing: None,
        }
    }

    /// The identity of `seed` (from a recovery bundle) with no groups yet,
    /// not yet saved, to be saved encrypted under `password`.
    pub fn restore_protected(path: &Path, seed: [u8; 32], username: &str, password: &str) -> State {
        let mut state = State::generate(path);
        state.signing_key = SigningKey::from_bytes(&seed);
        state.member = Member::new(seed);
        state.username = Some(username.to_string());
        state.protect(password).expect("the default Argon2id parameters are valid");
        state
    }

    /// A fresh identity, not yet saved, that will be saved encrypted under
    /// `password` with the default Argon2id parameters. Runs Argon2 once.
    pub fn generate_protected(path: &Path, username: Option<&str>, password: &str) -> State {
        State::generate_protected_with(path, username, password, KdfParams::default())
            .expect("the default Argon2id parameters are valid")
    }

    /// As [`State::generate_protected`], with chosen Argon2id parameters.
    pub fn generate_protected_with(
        path: &Path,
        username: Option<&str>,
        password: &str,
        params: KdfParams,
    ) -> Result<State, StateError> {
        let mut state = State::generate(path);
        state.username = username.map(str::to_owned);
        state.protect_with(password, params)?;
        Ok(state)
    }

    /// From the next save on, encrypt under `password` with a fresh salt and
    /// the default parameters: turns a plain state into an encrypted one, or
    /// changes the password of an encrypted one.
    pub fn protect(&mut self, password: &str) -> Result<(), StateError> {
        self.protect_with(password, KdfParams::default())
    }

    /// As [`State::protect`], with chosen Argon2id parameters.
    pub fn protect_with(&mut self, password: &str, params: KdfParams) -> Result<(), StateError> {
        self.sealing = Some(Sealing::new(password, params).map_err(|why| StateError::KdfParams { why })?);
        Ok(())
    }

    /// Whether [`State::save`] writes the encrypted format.
    pub fn is_encrypted(&self) -> bool {
        self.sealing.is_some()
    }

    pub fn exists(path: &Path) -> bool {
        path.exists()
    }

    /// Whether the file at `path` is in the encrypted format (and so needs
    /// [`State::load_with_password`]).
    pub fn is_protected(path: &Path) -> Result<bool, StateError> {
        let bytes = read(path)?;
        match version(path, &bytes)? {
            (VERSION_PLAIN, _) => Ok(false),
            (_, _) => Ok(true),
        }
    }

    /// Loads a plain state file. An encrypted one is refused with
    /// [`StateError::NeedsPassword`] (after its header has been checked).
    pub fn load(path: &Path) -> Result<State, StateError> {
        let bytes = read(path)?;
        match version(path, &bytes)? {
            (VERSION_PLAIN, body) => State::from_body(path, body, None),
            _ => {
                SealedFile::parse(&bytes).map_err(|why| corrupt(path, why))?;
                Err(StateError::NeedsPassword { path: path.into() })
            }
        }
    }

    /// Loads a state file in either format; a plain one ignores `password`
    /// and stays plain. Runs Argon2 once for an encrypted one.
    pub fn load_with_password(path: &Path, password: &str) -> Result<State, StateError> {
        let bytes = read(path)?;
        let (version, body) = version(path, &bytes)?;
        if version == VERSION_PLAIN {
            return State::from_body(path, body, None);
        }
        let file = SealedFile::parse(&bytes).map_err(|why| corrupt(path, why))?;
        let sealing = Sealing::derive(password, file.params, file.salt)
            .map_err(|why| corrupt(path, format!("Argon2id parameters: {why}")))?;
        if !same_bytes(&sealing.key_check, &file.key_check) {
            return Err(StateError::WrongPassword { path: path.into() });
        }
        let cipher = ChaCha20Poly1305::new(sealing.key.as_ref().into());
        let body = cipher
            .decrypt(&file.nonce.into(), Payload { msg: file.ciphertext, aad: file.header })
            .map(Zeroizing::new)
            .map_err(|_| corrupt(path, "the encrypted body does not authenticate (damaged)".into()))?;
        State::from_body(path, &body, Some(sealing))
    }

    fn from_body(path: &Path, body: &[u8], sealing: Option<Sealing>) -> Result<State, StateError> {
        let body = StateBody::decode(body).map_err(|e| corrupt(path, e.to_string()))?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            body.identity_seed
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(path, "identity seed is not 32 bytes".into()))?,
        );
        let member = Member::from_bytes(*seed, &body.member)
            .map_err(|source| StateError::Mls { path: path.into(), source })?;
        let mut warnings = Vec::new();
        let total = body.outbox.len();
        let outbox = body
            .outbox
            .iter()
            .enumerate()
            .filter_map(|(n, bytes)| match OutboxEntry::decode(bytes.as_slice()) {
                Ok(entry) => Some(entry),
                Err(e) => {
                    warnings.push(format!(
                        "state file {}: outbox entry {} of {total} is damaged ({e}); it was dropped, \
                         the rest of the state is kept",
                        path.display(),
                        n + 1
                    ));
                    None
                }
            })
            .collect();
        Ok(State {
            path: path.into(),
            signing_key: SigningKey::from_bytes(&seed),
            member,
            username: body.username.clone(),
            relay: body.relay.clone(),
            history: body.history,
            outbox,
            invitations: body.invitations,
            warnings,
            next_number: body.next_number,
            presence: body.presence,
            names: body.names,
            sealed: body.sealed.unwrap_or_default(),
            kt: body.kt.unwrap_or_default(),
            sealing,
        })
    }

    /// Appends a history line, dropping the oldest lines of its
    /// conversation beyond [`HISTORY_PER_CONVERSATION`]. Not saved yet.
    pub fn record(&mut self, mut entry: HistoryEntry) {
        let conversation = entry.conversation.clone();
        entry.seq =
            self.history.iter().rev().find(|e| e.conversation == conversation).map_or(0, |e| e.seq) + 1;
        self.history.push(entry);
        let count = self.history.iter().filter(|e| e.conversation == conversation).count();
        if count > HISTORY_PER_CONVERSATION {
            let mut excess = count - HISTORY_PER_CONVERSATION;
            self.history.retain(|e| {
                if excess > 0 && e.conversation == conversation {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// The entry of message `id`, wherever it is.
    pub fn message_mut(&mut self, id: &[u8]) -> Option<&mut HistoryEntry> {
        self.history.iter_mut().rev().find(|e| !id.is_empty() && e.id == id)
    }

    /// Entry `seq` of `conversation`.
    pub fn message_at(&self, conversation: &str, seq: u64) -> Option<&HistoryEntry> {
        self.history.iter().find(|e| e.conversation == conversation && e.seq == seq)
    }

    /// The last `n` history lines of `conversation`, oldest first.
    pub fn history_of(&self, conversation: &str, n: usize) -> Vec<&HistoryEntry> {
        let all: Vec<&HistoryEntry> =
            self.history.iter().filter(|e| e.conversation == conversation).collect();
        all[all.len().saturating_sub(n)..].to_vec()
    }

    pub fn identity_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    /// Writes the state atomically (a temporary file, fsync, rename) in the
    /// format it was loaded or created in; an encrypted one gets a new nonce.
    pub fn save(&self) -> Result<(), StateError> {
        let mut body = StateBody {
            identity_seed: self.signing_key.to_bytes().to_vec(),
            member: self.member.to_bytes(),
            username: self.username.clone(),
            relay: self.relay.clone(),
            history: self.history.clone(),
            outbox: self.outbox.iter().map(Message::encode_to_vec).collect(),
            invitations: self.invitations.clone(),
            next_number: self.next_number,
            presence: self.presence,
            names: self.names.clone(),
            sealed: Some(self.sealed.clone()),
            kt: Some(self.kt.clone()),
        };
        let encoded = Zeroizing::new(body.encode_to_vec());
        zeroize::Zeroize::zeroize(&mut body.identity_seed);
        zeroize::Zeroize::zeroize(&mut body.member);
        let bytes = match &self.sealing {
            Some(sealing) => sealing.seal(&encoded),
            None => {
                let mut bytes = MAGIC.to_vec();
                bytes.push(VERSION_PLAIN);
                bytes.extend_from_slice(&encoded);
                bytes
            }
        };
        write_atomically(&self.path, &bytes)
            .map_err(|source| StateError::Io { path: self.path.clone(), source })
    }
}

/// Holds the exclusive lock of a state file while it lives: one qpc
/// process per state file, so two cannot overwrite each other's changes.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of the state file at `path` (on `<path>.lock`, since
    /// the state file itself is replaced by every save), or says who has it.
    pub fn take(path: &Path) -> Result<StateLock, StateError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StateError::Io { path: lock_path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::InUse { path: path.into() }),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io { path: lock_path, source }),
        }
    }
}

fn corrupt(path: &Path, why: String) -> StateError {
    StateError::Corrupt { path: path.into(), why }
}

fn read(path: &Path) -> Result<Vec<u8>, StateError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => StateError::Missing { path: path.into() },
        _ => StateError::Io { path: path.into(), source },
    })
}

/// The format version and what follows it.
fn version<'a>(path: &Path, bytes: &'a [u8]) -> Result<(u8, &'a [u8]), StateError> {
    let rest =
        bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| corrupt(path, "not a qpc state file".into()))?;
    let (&version, body) = rest.split_first().ok_or_else(|| corrupt(path, "no format version".into()))?;
    match version {
        VERSION_PLAIN | VERSION_ENCRYPTED => Ok((version, body)),
        _ => Err(corrupt(path, format!("unknown format version {version}"))),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The password for a state file or an account: `flag` (from `--password`)
/// if given, else the `QPC_PASSWORD` environment variable if set and not
/// empty, else typed at a `Password: ` prompt on the terminal without echo.
pub fn password_from(flag: Option<String>) -> Result<String, StateError> {
    password_with_prompt(flag, "Password: ")
}

/// As [`password_from`], with the prompt's wording chosen by the caller.
pub fn password_with_prompt(flag: Option<String>, prompt: &str) -> Result<String, StateError> {
    let no = |why: String| StateError::NoPassword { why };
    if let Some(password) = flag {
        return if password.is_empty() { Err(no("--password is empty".into())) } else { Ok(password) };
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(password) if !password.is_empty() => return Ok(password),
        Ok(_) | Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(no(format!("{PASSWORD_ENV} is not valid UTF-8")))
        }
    }
    // rpassword reads /dev/tty, so a password is prompted for even when
    // standard input is a pipe, and there is none to read without a terminal.
    match rpassword::prompt_password(prompt) {
        Ok(password) if password.is_empty() => Err(no("the password typed was empty".into())),
        Ok(password) => Ok(password),
        Err(e) => Err(no(format!("cannot prompt on the terminal ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Argon2's minimum cost, so the tests stay fast.
    const FAST: KdfParams = KdfParams { m_cost_kib: 8, t_cost: 1, parallelism: 1 };
    const PASSWORD: &str = "correct horse battery staple";

    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("qpc-state-test-{}-{name}.bin", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn saved_protected(name: &str) -> (PathBuf, State) {
        let path = temp_path(name);
        let mut state = State::generate_protected_with(&path, Some("alice"), PASSWORD, FAST).unwrap();
        state.relay = Some("127.0.0.1:4433".into());
        state.member.new_key_package().unwrap();
        state.save().unwrap();
        (path, state)
    }

    fn assert_same_state(a: &State, b: &State) {
        assert_eq!(a.identity_key(), b.identity_key());
        assert_eq!(a.signing_key.to_bytes(), b.signing_key.to_bytes());
        assert_eq!(a.member.to_bytes(), b.member.to_bytes());
        assert_eq!(a.username, b.username);
        assert_eq!(a.relay, b.relay);
        assert_eq!(a.history, b.history);
    }

    #[test]
    fn history_is_kept_capped_per_conversation_and_saved() {
        let path = temp_path("history");
        let mut state = State::generate_protected_with(&path, Some("ann"), PASSWORD, FAST).unwrap();
        let line = |conversation: &str, n: usize| HistoryEntry {
            conversation: conversation.into(),
            sender: "ann".into(),
            time: n as u64,
            text: format!("line {n}"),
            ..HistoryEntry::default()
        };
        state.record(line("#other", 0));
        for n in 0..HISTORY_PER_CONVERSATION + 5 {
            state.record(line("@bob", n));
        }
        assert_eq!(state.history.len(), HISTORY_PER_CONVERSATION + 1);
        assert_eq!(
            state.history_of("@bob", 2).iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
            [
                format!("line {}", HISTORY_PER_CONVERSATION + 3),
                format!("line {}", HISTORY_PER_CONVERSATION + 4)
            ]
        );
        assert_eq!(state.history_of("@bob", usize::MAX)[0].text, "line 5");
        assert_eq!(state.history_of("#other", 20).len(), 1);
        state.save().unwrap();
        let loaded = State::load_with_password(&path, PASSWORD).unwrap();
        assert_same_state(&state, &loaded);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn plain_round_trip_keeps_the_plain_format() {
        let path = temp_path("plain");
        let mut state = State::generate(&path);
        state.username = Some("bob".into());
        state.save().unwrap();
        assert!(!State::is_protected(&path).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..9], b"QPCSTATE\x01");

        let loaded = State::load(&path).unwrap();
        assert_same_state(&state, &loaded);
        assert!(!loaded.is_encrypted());
        // A password changes nothing for a plain file.
        let loaded = State::load_with_password(&path, "anything").unwrap();
        assert_same_state(&state, &loaded);
        loaded.save().unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[..9], b"QPCSTATE\x01");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_version_1_body_without_the_new_fields_still_loads() {
        let path = temp_path("v1-old");
        let seed = [7u8; 32];
        let old = StateBody {
            identity_seed: seed.to_vec(),
            member: Member::new(seed).to_bytes(),
            username: None,
            relay: None,
            history: Vec::new(),
            outbox: Vec::new(),
            invitations: Vec::new(),
            next_number: 0,
            presence: false,
            names: Vec::new(),
            sealed: None,
            kt: None,
        };
        let mut bytes = b"QPCSTATE\x01".to_vec();
        bytes.extend_from_slice(&old.encode_to_vec());
        std::fs::write(&path, &bytes).unwrap();
        let state = State::load(&path).unwrap();
        assert_eq!(state.signing_key.to_bytes(), seed);
        assert_eq!(state.username, None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn encrypted_round_trip_and_resave_keep_salt_and_change_nonce() {
        let (path, state) = saved_protected("encrypted");
        assert!(State::is_protected(&path).unwrap());
        let first = std::fs::read(&path).unwrap();
        assert_eq!(&first[..9], b"QPCSTATE\x02");
        assert_eq!(u32::from_be_bytes(first[9..13].try_into().unwrap()), FAST.m_cost_kib);

        let loaded = State::load_with_password(&path, PASSWORD).unwrap();
        assert_same_state(&state, &loaded);
        assert!(loaded.is_encrypted());
        assert_eq!(loaded.username.as_deref(), Some("alice"));
        assert_eq!(loaded.relay.as_deref(), Some("127.0.0.1:4433"));

        loaded.save().unwrap();
        let second = std::fs::read(&path).unwrap();
        let salt = 21..21 + SALT_LEN;
        let nonce = HEADER_FIELDS_LEN - NONCE_LEN..HEADER_FIELDS_LEN;
        assert_eq!(first[salt.clone()], second[salt]);
        assert_ne!(first[nonce.clone()], second[nonce]);
        let again = State::load_with_password(&path, PASSWORD).unwrap();
        assert_same_state(&state, &again);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn protect_turns_a_plain_state_into_an_encrypted_one() {
        let path = temp_path("protect");
        let mut state = State::generate(&path);
        state.save().unwrap();
        state.protect_with(PASSWORD, FAST).unwrap();
        state.save().unwrap();
        assert!(State::is_protected(&path).unwrap());
        assert_same_state(&state, &State::load_with_password(&path, PASSWORD).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn wrong_password_says_so_and_changes_nothing() {
        let (path, _) = saved_protected("wrong");
        let before = std::fs::read(&path).unwrap();
        match State::load_with_password(&path, "not the password") {
            Err(e @ StateError::WrongPassword { .. }) => {
                assert!(e.to_string().contains("wrong password"), "{e}");
                assert!(e.to_string().contains("nothing was changed"), "{e}");
            }
            Err(e) => panic!("expected WrongPassword, got {e}"),
            Ok(_) => panic!("a wrong password loaded the state"),
        }
        assert_eq!(before, std::fs::read(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn load_without_password_on_an_encrypted_file_asks_for_one() {
        let (path, _) = saved_protected("needs");
        assert!(matches!(State::load(&path), Err(StateError::NeedsPassword { .. })));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn truncated_encrypted_file_is_corrupt_and_left_alone() {
        let (path, _) = saved_protected("truncated");
        let whole = std::fs::read(&path).unwrap();
        let cuts = [
            0,
            4,
            8,
            9,
            12,
            20,
            40,
            HEADER_FIELDS_LEN,
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + 5,
            whole.len() - 1,
        ];
        for cut in cuts {
            std::fs::write(&path, &whole[..cut]).unwrap();
            match State::load_with_password(&path, PASSWORD) {
                Err(StateError::Corrupt { .. }) => {}
                Err(e) => panic!("cut at {cut}: expected Corrupt, got {e}"),
                Ok(_) => panic!("cut at {cut}: loaded"),
            }
            // Without the password only the header can be checked.
            match State::load(&path) {
                Err(StateError::Corrupt { .. }) if cut < HEADER_LEN + TAG_LEN => {}
                Err(StateError::NeedsPassword { .. }) if cut >= HEADER_LEN + TAG_LEN => {}
                Err(e) => panic!("cut at {cut}: load() without a password gave {e}"),
                Ok(_) => panic!("cut at {cut}: loaded without a password"),
            }
            assert_eq!(std::fs::read(&path).unwrap(), &whole[..cut], "cut at {cut}: file changed");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn every_single_bit_flip_is_an_error_never_a_panic() {
        let (path, _) = saved_protected("flip");
        let whole = std::fs::read(&path).unwrap();
        // Every byte of the header and the tag, a sample of the ciphertext.
        let positions = (0..HEADER_LEN)
            .chain((HEADER_LEN..whole.len()).step_by(97))
            .chain(whole.len() - TAG_LEN..whole.len());
        for at in positions {
            let mut damaged = whole.clone();
            damaged[at] ^= 0x10;
            std::fs::write(&path, &damaged).unwrap();
            match State::load_with_password(&path, PASSWORD) {
                // Only a flip in the key check itself could read as a wrong
                // password, and the header checksum catches that first.
                Err(StateError::Corrupt { .. }) => {}
                Err(e) => panic!("flip at {at}: expected Corrupt, got {e}"),
                Ok(_) => panic!("flip at {at}: loaded"),
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn encrypted_file_holds_neither_seed_nor_password() {
        let (path, state) = saved_protected("secrets");
        let bytes = std::fs::read(&path).unwrap();
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&state.signing_key.to_bytes()));
        assert!(!contains(PASSWORD.as_bytes()));
        assert!(!contains(b"alice"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn damaged_kdf_parameters_are_refused_without_a_huge_allocation() {
        let (path, state) = saved_protected("params");
        let mut bytes = std::fs::read(&path).unwrap();
        // A well-formed header (checksum recomputed) asking for 4 TiB.
        bytes[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
        let checksum = Sha256::digest(&bytes[..HEADER_FIELDS_LEN]);
        bytes[HEADER_FIELDS_LEN..HEADER_LEN].copy_from_slice(&checksum[..HEADER_CHECKSUM_LEN]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(State::load_with_password(&path, PASSWORD), Err(StateError::Corrupt { .. })));
        drop(state);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_and_foreign_files() {
        let path = temp_path("missing");
        assert!(matches!(State::load_with_password(&path, PASSWORD), Err(StateError::Missing { .. })));
        assert!(matches!(State::is_protected(&path), Err(StateError::Missing { .. })));
        std::fs::write(&path, b"QPCSTATE\x03rest").unwrap();
        assert!(matches!(State::is_protected(&path), Err(StateError::Corrupt { .. })));
        std::fs::write(&path, b"something else").unwrap();
        assert!(matches!(State::load_with_password(&path, PASSWORD), Err(StateError::Corrupt { .. })));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn password_flag_wins_and_empty_is_refused() {
        assert_eq!(password_from(Some("from flag".into())).unwrap(), "from flag");
        assert!(matches!(password_from(Some(String::new())), Err(StateError::NoPassword { .. })));
    }

    /// The default costs derive a key that depends on the password and the
    /// salt alone (what opening a file on another device relies on).
    #[test]
    fn default_costs_derive_the_same_key_from_the_same_password_and_salt() {
        let params = KdfParams::default();
        assert_eq!((params.m_cost_kib, params.t_cost, params.parallelism), (19 * 1024, 2, 1));
        let a = Sealing::derive(PASSWORD, params, [7; SALT_LEN]).unwrap();
        let b = Sealing::derive(PASSWORD, params, [7; SALT_LEN]).unwrap();
        let other_salt = Sealing::derive(PASSWORD, params, [8; SALT_LEN]).unwrap();
        assert_eq!(*a.key, *b.key);
        assert_eq!(a.key_check, b.key_check);
        assert_ne!(*a.key, *other_salt.key);
    }

    #[test]
    fn the_outbox_and_invitations_survive_a_save_and_a_damaged_entry_costs_only_itself() {
        let path = temp_path("outbox");
        let mut state = State::generate(&path);
        for n in 0..3u8 {
            state.outbox.push(OutboxEntry {
                client_msg_id: vec![n; 16],
                method: 205,
                request: vec![n; 40],
                group: String::new(),
                intent: (n == 1).then(|| Intent {
                    kind: INTENT_ADD,
                    keys: vec![vec![9; 32]],
                    ..Intent::default()
                }),
            });
        }
        state.invitations.push(Invitation { group: "team".into(), inviter: "alice".into() });
        state.save().unwrap();
        let loaded = State::load(&path).unwrap();
        assert_eq!(loaded.outbox, state.outbox);
        assert_eq!(loaded.invitations, state.invitations);
        assert!(loaded.warnings.is_empty());

        // Cut the middle entry short inside an otherwise sound body.
        let bytes = std::fs::read(&path).unwrap();
        let mut body = StateBody::decode(&bytes[9..]).unwrap();
        body.outbox[1].truncate(5);
        let mut damaged = b"QPCSTATE\x01".to_vec();
        damaged.extend_from_slice(&body.encode_to_vec());
        std::fs::write(&path, &damaged).unwrap();
        let loaded = State::load(&path).unwrap();
        assert_eq!(loaded.outbox, vec![state.outbox[0].clone(), state.outbox[2].clone()]);
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("outbox entry 2 of 3 is damaged"), "{}", loaded.warnings[0]);
        assert_eq!(loaded.signing_key.to_bytes(), state.signing_key.to_bytes());
    }

    #[test]
    fn a_state_file_has_one_process_at_a_time() {
        let path = temp_path("lock");
        let first = StateLock::take(&path).unwrap();
        let err = StateLock::take(&path).unwrap_err();
        assert_eq!(err.to_string(), format!("{} is in use by another qpc process", path.display()));
        drop(first);
        StateLock::take(&path).unwrap();
    }
}

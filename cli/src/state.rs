//! The client's state file: the Ed25519 identity seed and the MLS member
//! (key store and groups), saved atomically after every change.
//!
//! Layout: magic `QPCSTATE`, a format version byte, then the body (a
//! protobuf `StateBody`). A file that is missing, truncated or corrupt is
//! reported as such and never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use prost::Message;
use rand::rngs::OsRng;

use crate::mls::{Member, MlsError};

const MAGIC: &[u8; 8] = b"QPCSTATE";
const VERSION_PLAIN: u8 = 1;

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
}

#[derive(Clone, PartialEq, Message)]
struct StateBody {
    #[prost(bytes = "vec", tag = "1")]
    identity_seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    member: Vec<u8>,
}

/// A loaded identity: its signing key and MLS member, and where it lives.
pub struct State {
    pub path: PathBuf,
    pub signing_key: SigningKey,
    pub member: Member,
}

impl State {
    /// A fresh identity, not yet saved.
    pub fn generate(path: &Path) -> State {
        let signing_key = SigningKey::generate(&mut OsRng);
        let member = Member::new(signing_key.to_bytes());
        State { path: path.into(), signing_key, member }
    }

    pub fn exists(path: &Path) -> bool {
        path.exists()
    }

    pub fn load(path: &Path) -> Result<State, StateError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StateError::Missing { path: path.into() },
            _ => StateError::Io { path: path.into(), source },
        })?;
        let corrupt = |why: &str| StateError::Corrupt { path: path.into(), why: why.into() };
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| corrupt("not a qpc state file"))?;
        let (&version, body) = rest.split_first().ok_or_else(|| corrupt("no format version"))?;
        if version != VERSION_PLAIN {
            return Err(corrupt(&format!("unknown format version {version}")));
        }
        let body = StateBody::decode(body).map_err(|e| corrupt(&e.to_string()))?;
        let seed: [u8; 32] =
            body.identity_seed.as_slice().try_into().map_err(|_| corrupt("identity seed is not 32 bytes"))?;
        let member = Member::from_bytes(seed, &body.member)
            .map_err(|source| StateError::Mls { path: path.into(), source })?;
        Ok(State { path: path.into(), signing_key: SigningKey::from_bytes(&seed), member })
    }

    pub fn identity_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    /// Writes the state atomically: a temporary file, fsync, rename.
    pub fn save(&self) -> Result<(), StateError> {
        let body =
            StateBody { identity_seed: self.signing_key.to_bytes().to_vec(), member: self.member.to_bytes() };
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION_PLAIN);
        bytes.extend_from_slice(&body.encode_to_vec());
        write_atomically(&self.path, &bytes)
            .map_err(|source| StateError::Io { path: self.path.clone(), source })
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

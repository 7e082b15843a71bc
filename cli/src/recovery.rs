//! Account recovery: a bundle with what a new device needs to be the same
//! person (the account name and the identity key's seed), encrypted here
//! under a recovery code shown once, and kept by the relay.
//!
//! The code is 120 random bits written as 24 base32 letters in groups of
//! four. Argon2id over the code's bytes with a per-bundle salt gives 64
//! bytes: the first half is the ChaCha20-Poly1305 key of the bundle (AAD:
//! username and format version), the second half the verifier key, of which
//! the relay keeps only the SHA-256. Recovering shows the relay the verifier
//! key, never the code; the relay answers with the ciphertext, and the
//! connection may then set the account's new password (see `account`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use prost::Message;
use qpc_proto::{pb, Method};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::relay::{Relay, RelayError};
use crate::state::KdfParams;

/// Format of the bundle's plaintext.
pub const BUNDLE_VERSION: u32 = 1;
/// Random bytes in a recovery code (120 bits).
const CODE_BYTES: usize = 15;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("not a recovery code: {0} (24 letters A-Z and digits 2-7, as `qpc recovery-setup` printed it)")]
    BadCode(String),
    #[error("the relay's recovery bundle asks for Argon2id costs this client refuses: {0}")]
    Params(String),
    #[error("the recovery bundle does not open with this code (it is damaged, or for another account)")]
    WontOpen,
    #[error("the recovery bundle is of format {0}, which this qpc does not know; upgrade qpc")]
    UnknownVersion(u32),
}

/// What the bundle holds.
#[derive(Clone, PartialEq, Message)]
pub struct Contents {
    #[prost(string, tag = "1")]
    pub username: String,
    /// The Ed25519 seed of the identity key.
    #[prost(bytes = "vec", tag = "2")]
    pub identity_seed: Vec<u8>,
}

/// A new recovery code, as shown to the person: `ABCD-EFGH-...` (six groups).
pub fn new_code() -> String {
    let mut raw = [0u8; CODE_BYTES];
    OsRng.fill_bytes(&mut raw);
    let mut letters = String::new();
    for chunk in raw.chunks(5) {
        let n = chunk.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
        for i in (0..8).rev() {
            letters.push(char::from(ALPHABET[(n >> (i * 5) & 31) as usize]));
        }
    }
    let groups: Vec<&str> = (0..letters.len()).step_by(4).map(|i| &letters[i..i + 4]).collect();
    groups.join("-")
}

/// The code's bytes from what the person typed: case, dashes and spaces do
/// not matter, and 0, 1 and 8 read as O, I and B.
pub fn parse_code(text: &str) -> Result<[u8; CODE_BYTES], RecoveryError> {
    let mut bits = Vec::with_capacity(24);
    for c in text.chars().filter(|c| !matches!(c, '-' | ' ' | '\t' | '\n' | '\r')) {
        let c = match c.to_ascii_uppercase() {
            '0' => 'O',
            '1' => 'I',
            '8' => 'B',
            c => c,
        };
        let value = ALPHABET
            .iter()
            .position(|&a| char::from(a) == c)
            .ok_or_else(|| RecoveryError::BadCode(format!("{c:?} is not one of its letters")))?;
        bits.push(value as u64);
    }
    if bits.len() != 24 {
        return Err(RecoveryError::BadCode(format!("{} letters instead of 24", bits.len())));
    }
    let mut raw = [0u8; CODE_BYTES];
    for (i, group) in bits.chunks(8).enumerate() {
        let n = group.iter().fold(0u64, |n, v| n << 5 | v);
        raw[i * 5..i * 5 + 5].copy_from_slice(&n.to_be_bytes()[3..]);
    }
    Ok(raw)
}

/// The bundle key and the verifier key.
type Keys = (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

/// The bundle key and the verifier key of `code`.
fn derive(code: &[u8; CODE_BYTES], salt: &[u8], params: KdfParams) -> Result<Keys, RecoveryError> {
    let mut out = Zeroizing::new([0u8; 64]);
    params
        .argon2_for(64)
        .map_err(RecoveryError::Params)?
        .hash_password_into(code, salt, &mut out[..])
        .map_err(|e| RecoveryError::Params(e.to_string()))?;
    let (mut key, mut verifier) = (Zeroizing::new([0u8; 32]), Zeroizing::new([0u8; 32]));
    key.copy_from_slice(&out[..32]);
    verifier.copy_from_slice(&out[32..]);
    Ok((key, verifier))
}

fn aad(username: &str, version: u32) -> Vec<u8> {
    let mut aad = b"qpc recovery bundle\0".to_vec();
    aad.extend_from_slice(username.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// Encrypts `contents` under `code` (run once per setup: Argon2 once).
pub fn seal(
    contents: &Contents,
    code: &[u8; CODE_BYTES],
    params: KdfParams,
) -> Result<pb::StoreRecoveryBundleRequest, RecoveryError> {
    let mut salt = vec![0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = vec![0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let (key, verifier_key) = derive(code, &salt, params)?;
    let plain = Zeroizing::new(contents.encode_to_vec());
    let ciphertext = ChaCha20Poly1305::new((&*key).into())
        .encrypt(
            nonce.as_slice().into(),
            Payload { msg: &plain, aad: &aad(&contents.username, BUNDLE_VERSION) },
        )
        .map_err(|_| RecoveryError::WontOpen)?;
    Ok(pb::StoreRecoveryBundleRequest {
        version: BUNDLE_VERSION,
        salt,
        m_cost_kib: params.m_cost_kib,
        t_cost: params.t_cost,
        parallelism: params.parallelism,
        verifier: Sha256::digest(*verifier_key).to_vec(),
        nonce,
        ciphertext,
    })
}

/// Stores a bundle of `contents` at the relay (a proven connection of the
/// account) and returns the new recovery code, to be shown once.
pub async fn setup(relay: &Relay, contents: &Contents, params: KdfParams) -> Result<String, RecoveryError> {
    let code = new_code();
    let req = seal(contents, &parse_code(&code)?, params)?;
    let _: pb::StoreRecoveryBundleResponse = relay.call(Method::StoreRecoveryBundle, &req).await?;
    Ok(code)
}

/// Fetches and opens the bundle of `username` with `code` over `relay` (no
/// identity needed); afterwards the connection may set a new password.
pub async fn recover(relay: &Relay, username: &str, code: &str) -> Result<Contents, RecoveryError> {
    let code = parse_code(code)?;
    let start: pb::RecoveryStartResponse =
        relay.call(Method::RecoveryStart, &pb::RecoveryStartRequest { username: username.into() }).await?;
    if start.version != BUNDLE_VERSION {
        return Err(RecoveryError::UnknownVersion(start.version));
    }
    let params =
        KdfParams { m_cost_kib: start.m_cost_kib, t_cost: start.t_cost, parallelism: start.parallelism };
    let (key, verifier_key) = derive(&code, &start.salt, params)?;
    let req = pb::RecoveryFinishRequest { username: username.into(), verifier_key: verifier_key.to_vec() };
    let finish: pb::RecoveryFinishResponse = relay.call(Method::RecoveryFinish, &req).await?;
    if finish.nonce.len() != 12 {
        return Err(RecoveryError::WontOpen);
    }
    let plain = Zeroizing::new(
        ChaCha20Poly1305::new((&*key).into())
            .decrypt(
                finish.nonce.as_slice().into(),
                Payload { msg: &finish.ciphertext, aad: &aad(username, finish.version) },
            )
            .map_err(|_| RecoveryError::WontOpen)?,
    );
    let contents = Contents::decode(plain.as_slice()).map_err(|_| RecoveryError::WontOpen)?;
    if contents.username != username || contents.identity_seed.len() != 32 {
        return Err(RecoveryError::WontOpen);
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams { m_cost_kib: 8, t_cost: 1, parallelism: 1 };

    #[test]
    fn codes_round_trip_and_forgive_typing() {
        let code = new_code();
        assert_eq!(code.len(), 29, "{code}");
        assert_eq!(code.split('-').count(), 6);
        let raw = parse_code(&code).unwrap();
        assert_eq!(parse_code(&code.to_lowercase().replace('-', " ")).unwrap(), raw);
        assert_eq!(
            parse_code("1OBA AAAA AAAA AAAA AAAA AAAA").unwrap(),
            parse_code("IOBA-AAAA-AAAA-AAAA-AAAA-AAAA").unwrap()
        );
        assert!(matches!(parse_code("ABCD-EFGH"), Err(RecoveryError::BadCode(_))));
        assert!(matches!(parse_code("ABCD-EFGH-ABCD-EFGH-ABCD-EFG9"), Err(RecoveryError::BadCode(_))));
    }

    #[test]
    fn a_sealed_bundle_opens_only_with_its_code_and_name() {
        let contents = Contents { username: "alice".into(), identity_seed: vec![7; 32] };
        let code = parse_code(&new_code()).unwrap();
        let sealed = seal(&contents, &code, FAST).unwrap();
        let (key, verifier_key) = derive(&code, &sealed.salt, FAST).unwrap();
        assert_eq!(Sha256::digest(*verifier_key).to_vec(), sealed.verifier);
        let open = |key: &[u8; 32], name: &str| {
            ChaCha20Poly1305::new(key.into())
                .decrypt(
                    sealed.nonce.as_slice().into(),
                    Payload { msg: &sealed.ciphertext, aad: &aad(name, 1) },
                )
                .ok()
        };
        assert_eq!(Contents::decode(open(&key, "alice").unwrap().as_slice()).unwrap(), contents);
        assert!(open(&key, "mallory").is_none(), "the username is bound");
        let other = parse_code(&new_code()).unwrap();
        let (wrong, wrong_verifier) = derive(&other, &sealed.salt, FAST).unwrap();
        assert!(open(&wrong, "alice").is_none());
        assert_ne!(Sha256::digest(*wrong_verifier).to_vec(), sealed.verifier);
    }
}

//! The qpc client library, in layers: the session (every "do the MLS step,
//! save with the outbox, send" and "process, save, ack" of the client) on
//! top of the mechanisms: the relay connection (QUIC + the frame codec), the
//! MLS member, the encrypted state file and OPAQUE accounts. The `qpc` binary and
//! the benchmark drive the relay through it.
#![forbid(unsafe_code)]

pub mod account;
pub mod blob;
pub mod content;
pub mod kt;
pub mod mls;
pub mod provider;
pub mod recovery;
pub mod relay;
pub mod session;
pub mod state;

/// Parses a 64-hex-digit identity key, naming the flag when it is not one.
pub fn parse_identity_key(flag: &str, text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| format!("{flag}: {text:?} is not hex (expected 64 hex digits)"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!("{flag}: expected 64 hex digits (32 bytes), got {} digits", b.len() * 2)
    })
}

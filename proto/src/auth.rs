//! What an identity proof signs. Both ends build the same bytes here so the
//! format lives in one place.

/// Label of the TLS exporter that binds a proof to one QUIC connection.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-qpc-identity-proof";
/// Length of the exporter value and of the server nonce.
pub const BINDING_LEN: usize = 32;

const DOMAIN: &[u8] = b"qpc identity proof v1\0";

/// The message an identity signs: a domain tag, the server's nonce and the
/// connection's TLS exporter value.
pub fn proof_message(nonce: &[u8], tls_binding: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + nonce.len() + tls_binding.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(nonce);
    m.extend_from_slice(tls_binding);
    m
}

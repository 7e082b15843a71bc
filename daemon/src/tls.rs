//! The relay's TLS identity: a self-signed certificate made on first start
//! and kept in the data directory, and the QUIC server configuration built
//! from it (TLS 1.3 only, ALPN `qpc` for clients and `qpc-fed` for peer
//! relays), and the client configuration a relay dials its peers with (the
//! peer's certificate pinned by fingerprint, our own certificate shown as
//! the client certificate: mutual TLS).
//!
//! The server asks every connection for a client certificate and checks
//! only that its owner holds the key (the signature); whether the
//! certificate belongs to a peer is decided after the handshake, by its
//! fingerprint (see `fed`), and only on `qpc-fed` connections. Clients of
//! `qpc` send none, and nothing changes for them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate or key in the data directory is unusable: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Quic(String),
}

pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the certificate DER, hex: what clients pin.
    pub fingerprint: String,
}

pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io { path: path.into(), source })
}

/// Writes a new file with `mode` (the key is private, the certificate is
/// what clients copy).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io { path: path.into(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io)
}

/// Loads `server-cert.der` / `server-key.der` from `dir`, or makes them.
pub fn load_or_create(dir: &Path, hostnames: &[String]) -> Result<Identity, TlsError> {
    let cert_path = dir.join("server-cert.der");
    let key_path = dir.join("server-key.der");
    let (cert, key) = if cert_path.exists() && key_path.exists() {
        (read(&cert_path)?, read(&key_path)?)
    } else {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        names.extend(hostnames.iter().cloned());
        let made = rcgen::generate_simple_self_signed(names)?;
        let (cert, key) = (made.cert.der().to_vec(), made.signing_key.serialize_der());
        write_new(&key_path, &key, 0o600)?;
        write_new(&cert_path, &cert, 0o644)?;
        log::info!("generated self-signed certificate {}", cert_path.display());
        (cert, key)
    };
    Ok(Identity {
        fingerprint: fingerprint(&cert),
        cert: CertificateDer::from(cert),
        key: PrivatePkcs8KeyDer::from(key),
    })
}

/// Whether this CPU encrypts AES in hardware.
fn has_aes() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    return std::arch::is_x86_feature_detected!("aes");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("aes");
    #[allow(unreachable_code)]
    false
}

/// ring, with ChaCha20-Poly1305 first where the CPU has no AES instructions
/// (MIPS and most ARMv7 routers: ChaCha20 is about twice as fast there).
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if !has_aes() {
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }
    provider
}

/// The QUIC server configuration: TLS 1.3 with ring, ALPN `qpc`, and the
/// transport bounds of the relay.
pub fn server_config(
    identity: &Identity,
    limits: &crate::config::Limits,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier =
        Arc::new(KeyCheck { pinned: None, algorithms: provider.signature_verification_algorithms });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], PrivateKeyDer::Pkcs8(identity.key.clone_key()))?;
    tls.alpn_protocols = vec![qpc_proto::ALPN.to_vec(), qpc_proto::FED_ALPN.to_vec()];
    // Our order (ChaCha20 first on CPUs without AES) beats a laptop's.
    tls.ignore_client_order = !has_aes();
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(limits.max_streams.into());
    transport.max_concurrent_uni_streams(0u8.into());
    // Windows for a router: what one connection may make the relay buffer
    // (quinn's defaults allow 1.25 MB per stream and unbounded per
    // connection). A request still may be up to --max-payload; it then
    // takes a few more window updates.
    let stream_window = (limits.max_payload / 4).clamp(64 * 1024, 256 * 1024);
    transport.stream_receive_window(stream_window.into());
    transport.receive_window((4 * stream_window).into());
    transport.send_window(u64::from(4 * stream_window));
    transport.datagram_receive_buffer_size(None);
    let idle = quinn::IdleTimeout::try_from(Duration::from_secs(limits.idle_timeout_secs))
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The certificate checks of federation, one type for both sides: as the
/// server's client-certificate check (`pinned: None`): optional, any
/// certificate whose key signed the handshake (the fingerprint is checked
/// after it, see `fed`); as the dialing relay's server check: only the
/// certificate whose SHA-256 is `pinned`. Either way the handshake
/// signature is verified.
#[derive(Debug)]
struct KeyCheck {
    pinned: Option<String>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl KeyCheck {
    fn tls12(&self) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ClientCertVerifier for KeyCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12()
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for KeyCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.as_deref() == Some(fingerprint(end_entity).as_str()) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12()
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What a relay dials a peer with: ALPN `qpc-fed`, the peer pinned by
/// `peer_fingerprint`, this relay's own certificate as the client's.
pub fn peer_client_config(
    identity: &Identity,
    peer_fingerprint: &str,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(KeyCheck {
        pinned: Some(peer_fingerprint.to_ascii_lowercase()),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert.clone()], PrivateKeyDer::Pkcs8(identity.key.clone_key()))?;
    tls.alpn_protocols = vec![qpc_proto::FED_ALPN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(15)));
    transport.max_concurrent_uni_streams(0u8.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

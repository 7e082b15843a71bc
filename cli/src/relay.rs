//! The client's connection to a relay: QUIC + TLS 1.3 with the relay's
//! certificate pinned, one RPC per stream, the identity proof, and typed
//! calls for each method.

use std::cell::Cell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use qpc_proto::frame::{Header, ResponseHeader};
use qpc_proto::{auth, pb, Method, RequestFrame, Status};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, Socket, Type};

/// Largest response the client accepts.
const MAX_RESPONSE: u32 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot resolve relay address {server:?}: {reason}")]
    Resolve { server: String, reason: String },
    #[error("cannot reach the relay at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the relay at {server} presented certificate {presented}, not the trusted {expected}: refusing to talk to it (is --ca-cert the certificate of this relay?)")]
    WrongCertificate { server: String, expected: String, presented: String },
    #[error("{method:?} failed: {status}: {message}")]
    Refused { method: Method, status: Status, message: String },
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
    #[error("connection to the relay lost: {0}")]
    Lost(String),
}

impl RelayError {
    /// The status a refusal carried, if this is one.
    pub fn status(&self) -> Option<Status> {
        match self {
            RelayError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// SHA-256 of a DER certificate, hex: how a relay is named for pinning.
pub fn cert_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Accepts exactly one server certificate, by its SHA-256, whatever names
/// it carries (like SSH known_hosts); the handshake signature is still
/// verified.
#[derive(Debug)]
pub struct PinnedCert {
    fingerprint: String,
    presented: std::sync::Mutex<Option<String>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl PinnedCert {
    /// The fingerprint of a certificate this verifier refused, if any.
    pub fn presented(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|p| p.clone())
    }
}

/// A TLS 1.3 client configuration (ring) that trusts only the certificate
/// whose SHA-256 is `fingerprint`; also what the benchmark's MQTT client uses.
pub fn pinned_tls_config(
    fingerprint: &str,
) -> Result<(rustls::ClientConfig, Arc<PinnedCert>), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCert {
        fingerprint: fingerprint.to_ascii_lowercase(),
        presented: std::sync::Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((tls, verifier))
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = cert_fingerprint(end_entity);
        if presented == self.fingerprint {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(presented);
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A live connection to one relay.
pub struct Relay {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    /// The endpoint serves other connections too: closing this one must
    /// not wait for it to go idle.
    shared: bool,
    next_request: Cell<u32>,
    /// Where it leads, for [`Relay::connect_again`].
    server: String,
    fingerprint: String,
}

/// Device identity keys off the wire, each 32 bytes.
fn identity_keys(keys: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, RelayError> {
    keys.iter()
        .map(|k| {
            k.as_slice().try_into().map_err(|_| RelayError::Protocol("identity key is not 32 bytes".into()))
        })
        .collect()
}

fn resolve(server: &str) -> Result<SocketAddr, RelayError> {
    let err = |reason: String| RelayError::Resolve { server: server.to_string(), reason };
    let mut addrs = server.to_socket_addrs().map_err(|e| err(format!("{e} (expected HOST:PORT)")))?;
    addrs.next().ok_or_else(|| err("no address found".into()))
}

fn unreachable(server: &str, reason: String) -> RelayError {
    RelayError::Unreachable { server: server.to_string(), reason }
}

/// The QUIC client configuration that pins `fingerprint`.
fn client_config(
    server: &str,
    fingerprint: &str,
) -> Result<(quinn::ClientConfig, Arc<PinnedCert>), RelayError> {
    let (mut tls, verifier) =
        pinned_tls_config(fingerprint).map_err(|e| unreachable(server, e.to_string()))?;
    tls.alpn_protocols = vec![qpc_proto::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| unreachable(server, e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(15)));
    config.transport_config(Arc::new(transport));
    Ok((config, verifier))
}

/// The receive buffer asked for a client's UDP socket. With the kernel's
/// default (208 KiB on Linux) a socket that many connections share overflows
/// on a burst, such as a thousand connections closing at once: the kernel
/// drops datagrams, and a dropped handshake packet costs its connection
/// QUIC's first retransmission timeout, about a second. The kernel caps the
/// request at `net.core.rmem_max` and uses the memory only while packets
/// wait, so asking for more costs nothing when the socket keeps up.
const RECV_BUFFER: usize = 2 << 20;

fn client_endpoint(server: &str, addr: SocketAddr) -> Result<quinn::Endpoint, RelayError> {
    let fail = |e: std::io::Error| unreachable(server, e.to_string());
    let local: SocketAddr = if addr.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }
        .map_err(|_| unreachable(server, "bad local address".into()))?;
    // As quinn::Endpoint::client does, plus the receive buffer.
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    if local.is_ipv6() {
        // Dual-stack where the system allows it; an IPv6 relay works either way.
        let _ = socket.set_only_v6(false);
    }
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        log::debug!("UDP receive buffer of {RECV_BUFFER} bytes refused: {e}");
    }
    socket.bind(&local.into()).map_err(fail)?;
    let runtime = quinn::default_runtime().ok_or_else(|| unreachable(server, "no async runtime".into()))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket.into(), runtime).map_err(fail)
}

/// One UDP socket and one TLS configuration per relay for many connections
/// of one process (a load generator, a process with many identities);
/// `Relay::connect` makes its own for each connection instead. Lives on the
/// runtime it was made on.
pub struct SharedEndpoint {
    endpoints: std::sync::Mutex<Vec<(bool, quinn::Endpoint)>>,
    configs: std::sync::Mutex<Vec<(String, quinn::ClientConfig, Arc<PinnedCert>)>>,
}

impl Default for SharedEndpoint {
    fn default() -> Self {
        SharedEndpoint {
            endpoints: std::sync::Mutex::new(Vec::new()),
            configs: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl SharedEndpoint {
    fn parts(
        &self,
        server: &str,
        addr: SocketAddr,
        fingerprint: &str,
    ) -> Result<(quinn::Endpoint, quinn::ClientConfig, Arc<PinnedCert>), RelayError> {
        let lock = |e: &dyn std::fmt::Display| unreachable(server, e.to_string());
        let mut endpoints = self.endpoints.lock().map_err(|e| lock(&e))?;
        let endpoint = match endpoints.iter().find(|(v6, _)| *v6 == addr.is_ipv6()) {
            Some((_, e)) => e.clone(),
            None => {
                let e = client_endpoint(server, addr)?;
                endpoints.push((addr.is_ipv6(), e.clone()));
                e
            }
        };
        let mut configs = self.configs.lock().map_err(|e| lock(&e))?;
        let (config, verifier) = match configs.iter().find(|(f, _, _)| f == fingerprint) {
            Some((_, c, v)) => (c.clone(), Arc::clone(v)),
            None => {
                let (c, v) = client_config(server, fingerprint)?;
                configs.push((fingerprint.to_string(), c.clone(), Arc::clone(&v)));
                (c, v)
            }
        };
        Ok((endpoint, config, verifier))
    }
}

impl Relay {
    /// Connects to `server` (HOST:PORT), trusting only the certificate whose
    /// SHA-256 is `fingerprint`.
    pub async fn connect(server: &str, fingerprint: &str) -> Result<Relay, RelayError> {
        let addr = resolve(server)?;
        let (config, verifier) = client_config(server, fingerprint)?;
        let endpoint = client_endpoint(server, addr)?;
        Self::handshake(server, addr, endpoint, config, verifier, false).await
    }

    /// A second, separate connection to the same relay (its own endpoint
    /// and port), not proven: what a sealed delivery goes over, so the
    /// relay cannot tie it to this connection's identity.
    pub async fn connect_again(&self) -> Result<Relay, RelayError> {
        Relay::connect(&self.server, &self.fingerprint).await
    }

    /// Like `connect`, over `shared`'s endpoint and configuration.
    pub async fn connect_shared(
        shared: &SharedEndpoint,
        server: &str,
        fingerprint: &str,
    ) -> Result<Relay, RelayError> {
        let addr = resolve(server)?;
        let (endpoint, config, verifier) = shared.parts(server, addr, fingerprint)?;
        Self::handshake(server, addr, endpoint, config, verifier, true).await
    }

    async fn handshake(
        server: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        verifier: Arc<PinnedCert>,
        shared: bool,
    ) -> Result<Relay, RelayError> {
        let host = server.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or("localhost");
        let name = if ServerName::try_from(host.to_string()).is_ok() { host } else { "localhost" };
        let connecting =
            endpoint.connect_with(config, addr, name).map_err(|e| unreachable(server, e.to_string()))?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(unreachable(
                    server,
                    format!(
                        "no answer within {} s (is qpc-server running there?)",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ))
            }
            Ok(Err(e)) => {
                if let Some(presented) = verifier.presented() {
                    return Err(RelayError::WrongCertificate {
                        server: server.to_string(),
                        expected: verifier.fingerprint.clone(),
                        presented,
                    });
                }
                return Err(unreachable(server, e.to_string()));
            }
            Ok(Ok(conn)) => conn,
        };
        Ok(Relay {
            conn,
            endpoint,
            shared,
            next_request: Cell::new(1),
            server: server.to_string(),
            fingerprint: verifier.fingerprint.clone(),
        })
    }

    /// The QUIC connection, for tests that misbehave on purpose.
    #[doc(hidden)]
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends raw request bytes on a new stream and returns the raw response
    /// (for tests of hostile input; use `call`).
    pub async fn call_raw(&self, bytes: &[u8]) -> Result<(ResponseHeader, Vec<u8>), RelayError> {
        let lost = |e: &dyn std::fmt::Display| RelayError::Lost(e.to_string());
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| lost(&e))?;
        send.write_all(bytes).await.map_err(|e| lost(&e))?;
        let _ = send.finish();
        let mut head = [0u8; ResponseHeader::LEN];
        recv.read_exact(&mut head).await.map_err(|e| lost(&e))?;
        let header = ResponseHeader::parse(&head).map_err(|e| RelayError::Protocol(e.to_string()))?;
        let len = header.payload_len(MAX_RESPONSE).map_err(|e| RelayError::Protocol(e.to_string()))?;
        let mut payload = vec![0u8; len];
        recv.read_exact(&mut payload).await.map_err(|e| lost(&e))?;
        Ok((header, payload))
    }

    /// One RPC: request out, response in, a refusal turned into an error.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        req: &Req,
    ) -> Result<Resp, RelayError> {
        let id = self.next_request.get();
        self.next_request.set(id.wrapping_add(1));
        let frame = RequestFrame::new(method.id(), id, req.encode_to_vec());
        let (header, payload) = self.call_raw(&frame.encode()).await?;
        if header.request_id != id {
            return Err(RelayError::Protocol(format!(
                "response to request {} on the stream of request {id}",
                header.request_id
            )));
        }
        if header.status != Status::Ok {
            let message = pb::ErrorDetail::decode(payload.as_slice()).map(|d| d.message).unwrap_or_default();
            return Err(RelayError::Refused { method, status: header.status, message });
        }
        Resp::decode(payload.as_slice())
            .map_err(|e| RelayError::Protocol(format!("malformed {method:?} response: {e}")))
    }

    /// Asks for a challenge and signs it with the TLS binding of this
    /// connection: (identity key, signature), as AuthProve and the account
    /// methods expect.
    pub async fn identity_proof(&self, key: &SigningKey) -> Result<(Vec<u8>, Vec<u8>), RelayError> {
        let challenge: pb::AuthChallengeResponse =
            self.call(Method::AuthChallenge, &pb::AuthChallengeRequest {}).await?;
        let mut binding = [0u8; auth::BINDING_LEN];
        self.conn
            .export_keying_material(&mut binding, auth::TLS_EXPORTER_LABEL, b"")
            .map_err(|_| RelayError::Protocol("cannot derive the TLS binding".into()))?;
        let signature = key.sign(&auth::proof_message(&challenge.nonce, &binding));
        Ok((key.verifying_key().to_bytes().to_vec(), signature.to_bytes().to_vec()))
    }

    /// Proves to the relay that this connection speaks for `key`'s identity.
    pub async fn authenticate(&self, key: &SigningKey) -> Result<(), RelayError> {
        let (identity_key, signature) = self.identity_proof(key).await?;
        let _: pb::AuthProveResponse =
            self.call(Method::AuthProve, &pb::AuthProveRequest { identity_key, signature }).await?;
        Ok(())
    }

    /// The device identity keys of the local `username` (a person on a peer
    /// relay: [`Relay::resolve_remote_user`]).
    pub async fn resolve_user(&self, username: &str) -> Result<Vec<[u8; 32]>, RelayError> {
        let req = pb::ResolveUserRequest { username: username.to_string() };
        let r: pb::ResolveUserResponse = self.call(Method::ResolveUser, &req).await?;
        identity_keys(&r.identity_keys)
    }

    /// A person on a peer relay (`bob@host[:port]`): their keys, their
    /// address in full, and their relay's key transparency proof (with a
    /// consistency proof from `known_size`, the size of that relay's log
    /// this device verified last), unchecked: `kt` checks it.
    pub async fn resolve_remote_user(
        &self,
        address: &str,
        known_size: u64,
    ) -> Result<(Vec<[u8; 32]>, String, Option<pb::DirectoryProof>), RelayError> {
        let req = pb::ResolveRemoteUserRequest { address: address.to_string(), known_size };
        let r: pb::ResolveRemoteUserResponse = self.call(Method::ResolveRemoteUser, &req).await?;
        Ok((identity_keys(&r.identity_keys)?, r.address, r.proof))
    }

    /// Messages of ours that a peer relay never took, each told once.
    pub async fn undelivered(&self) -> Result<Vec<pb::UndeliveredMessage>, RelayError> {
        let r: pb::UndeliveredResponse = self.call(Method::Undelivered, &pb::UndeliveredRequest {}).await?;
        Ok(r.messages)
    }

    /// The username of `identity`, if it belongs to an account.
    pub async fn resolve_identity(&self, identity: &[u8; 32]) -> Result<Option<String>, RelayError> {
        let r: pb::ResolveIdentityResponse = self
            .call(Method::ResolveIdentity, &pb::ResolveIdentityRequest { identity_key: identity.to_vec() })
            .await?;
        Ok((!r.username.is_empty()).then_some(r.username))
    }

    /// Reports the account `username` to the relay's owner with an
    /// optional note; the report's number.
    pub async fn report(&self, username: &str, reason: &str) -> Result<u64, RelayError> {
        let req = pb::ReportRequest { username: username.to_string(), reason: reason.to_string() };
        let r: pb::ReportResponse = self.call(Method::Report, &req).await?;
        Ok(r.report_id)
    }

    pub async fn upload_key_package(
        &self,
        key_package: Vec<u8>,
    ) -> Result<pb::UploadKeyPackageResponse, RelayError> {
        self.upload_key_package_as(key_package, false, 0).await
    }

    /// Uploads a pool KeyPackage for MLS ciphersuite number `ciphersuite`
    /// (0: the classic one), or (with `last_resort`) replaces the
    /// identity's last-resort one of that suite.
    pub async fn upload_key_package_as(
        &self,
        key_package: Vec<u8>,
        last_resort: bool,
        ciphersuite: u32,
    ) -> Result<pb::UploadKeyPackageResponse, RelayError> {
        let req = pb::UploadKeyPackageRequest { key_package, last_resort, ciphersuite };
        self.call(Method::UploadKeyPackage, &req).await
    }

    /// One classic KeyPackage of `identity`.
    pub async fn fetch_key_package(&self, identity: &[u8; 32]) -> Result<Vec<u8>, RelayError> {
        Ok(self.fetch_key_package_of(identity, 0).await?.key_package)
    }

    /// One KeyPackage of `identity` for ciphersuite number `ciphersuite`
    /// (0: the classic one), saying whether it was the last-resort one.
    pub async fn fetch_key_package_of(
        &self,
        identity: &[u8; 32],
        ciphersuite: u32,
    ) -> Result<pb::FetchKeyPackageResponse, RelayError> {
        let req = pb::FetchKeyPackageRequest { identity_key: identity.to_vec(), ciphersuite };
        self.call(Method::FetchKeyPackage, &req).await
    }

    /// How many KeyPackages of ours the relay holds for `ciphersuite`.
    pub async fn key_package_status(
        &self,
        ciphersuite: u32,
    ) -> Result<pb::KeyPackageStatusResponse, RelayError> {
        self.call(Method::KeyPackageStatus, &pb::KeyPackageStatusRequest { ciphersuite }).await
    }

    /// Pushes an ephemeral signal to whichever devices of `recipients` are
    /// connected; returns how many connections it reached.
    pub async fn signal(&self, recipients: &[[u8; 32]], payload: Vec<u8>) -> Result<u32, RelayError> {
        let req =
            pb::SignalRequest { recipient_keys: recipients.iter().map(|r| r.to_vec()).collect(), payload };
        let r: pb::SignalResponse = self.call(Method::Signal, &req).await?;
        Ok(r.delivered)
    }

    /// Registers the SHA-256 of a delivery token for our own queue.
    pub async fn register_delivery_token(&self, token_hash: [u8; 32]) -> Result<u32, RelayError> {
        let req = pb::RegisterDeliveryTokenRequest { token_hash: token_hash.to_vec() };
        let r: pb::RegisterDeliveryTokenResponse = self.call(Method::RegisterDeliveryToken, &req).await?;
        Ok(r.tokens)
    }

    /// Revokes one delivery token of our queue (or all, with `None`).
    pub async fn revoke_delivery_token(&self, token_hash: Option<[u8; 32]>) -> Result<u32, RelayError> {
        let req =
            pb::RevokeDeliveryTokenRequest { token_hash: token_hash.map(|h| h.to_vec()).unwrap_or_default() };
        let r: pb::RevokeDeliveryTokenResponse = self.call(Method::RevokeDeliveryToken, &req).await?;
        Ok(r.revoked)
    }

    /// A fenced commit (method 600): admitted, or refused with `conflict`
    /// when another commit took its epoch.
    pub async fn group_commit(
        &self,
        req: pb::GroupCommitRequest,
    ) -> Result<pb::GroupCommitResponse, RelayError> {
        self.call(Method::GroupCommit, &req).await
    }

    pub async fn enqueue(
        &self,
        recipient: &[u8; 32],
        channel: &[u8],
        payload: Vec<u8>,
        client_msg_id: Vec<u8>,
    ) -> Result<pb::EnqueueResponse, RelayError> {
        let req = pb::EnqueueRequest {
            recipient_key: recipient.to_vec(),
            payload,
            channel_id: channel.to_vec(),
            client_msg_id,
        };
        self.call(Method::Enqueue, &req).await
    }

    pub async fn batch_enqueue(
        &self,
        recipients: &[[u8; 32]],
        channel: &[u8],
        payload: Vec<u8>,
        client_msg_id: Vec<u8>,
    ) -> Result<Vec<u64>, RelayError> {
        let req = pb::BatchEnqueueRequest {
            recipient_keys: recipients.iter().map(|r| r.to_vec()).collect(),
            payload,
            channel_id: channel.to_vec(),
            client_msg_id,
        };
        let r: pb::BatchEnqueueResponse = self.call(Method::BatchEnqueue, &req).await?;
        Ok(r.seqs)
    }

    pub async fn peek(&self, limit: u32) -> Result<Vec<pb::Envelope>, RelayError> {
        let r: pb::PeekResponse =
            self.call(Method::Peek, &pb::PeekRequest { channel_id: None, limit }).await?;
        Ok(r.messages)
    }

    pub async fn fetch_wait(&self, limit: u32, timeout_ms: u32) -> Result<Vec<pb::Envelope>, RelayError> {
        let req = pb::FetchWaitRequest { channel_id: None, limit, timeout_ms };
        let r: pb::FetchWaitResponse = self.call(Method::FetchWait, &req).await?;
        Ok(r.messages)
    }

    pub async fn ack(&self, up_to_seq: u64) -> Result<u64, RelayError> {
        let r: pb::AckResponse =
            self.call(Method::Ack, &pb::AckRequest { up_to_seq, channel_id: None }).await?;
        Ok(r.removed)
    }

    /// Waits for the next push event from the relay.
    pub async fn next_event(&self) -> Result<(u16, Vec<u8>), RelayError> {
        use qpc_proto::frame::PushHeader;
        let lost = |e: &dyn std::fmt::Display| RelayError::Lost(e.to_string());
        let mut recv = self.conn.accept_uni().await.map_err(|e| lost(&e))?;
        let mut head = [0u8; PushHeader::LEN];
        recv.read_exact(&mut head).await.map_err(|e| lost(&e))?;
        let header = PushHeader::parse(&head).map_err(|e| RelayError::Protocol(e.to_string()))?;
        let len = header.payload_len(MAX_RESPONSE).map_err(|e| RelayError::Protocol(e.to_string()))?;
        let mut payload = vec![0u8; len];
        recv.read_exact(&mut payload).await.map_err(|e| lost(&e))?;
        Ok((header.event, payload))
    }

    /// Closes the connection and waits briefly for the relay to hear it.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        if !self.shared {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        }
    }
}

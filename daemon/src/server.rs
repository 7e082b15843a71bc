//! The QUIC side of the relay: endpoints, connections, one RPC per stream,
//! and the orderly shutdown. Everything runs on one thread (tokio
//! current_thread + LocalSet); state is shared with `Rc`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use qpc_proto::frame::{Header, RequestHeader};
use qpc_proto::opaque::opaque_ke::{ServerLogin, ServerSetup};
use qpc_proto::opaque::Suite;
use qpc_proto::{pb, FrameError, ResponseFrame, Status};
use tokio::sync::watch;

use crate::admin::{self, AdminError, AdminSocket};
use crate::cmd::{self, accounts::PendingRegistration, auth::Proven};
use crate::config::{Config, Limits, Registration};
use crate::hub::Hub;
use crate::limits::{AddressBuckets, Bucket, LoginGuard};
use crate::refusal::Refusal;
use crate::status::Facts;
use crate::store::{self, Store, StoreError};
use crate::tls::{self, TlsError};

/// How long a client may take to send a whole request once it opened a stream.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight calls.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    #[error("blob directory {path}: {source}")]
    BlobDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("database: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Counters since start.
#[derive(Default)]
pub struct Stats {
    /// Connections open now.
    pub connections: Cell<u64>,
    pub enqueued: Cell<u64>,
    pub delivered: Cell<u64>,
    pub expired: Cell<u64>,
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// What every command can reach.
pub struct Relay {
    pub store: Rc<Store>,
    pub hub: Hub,
    pub limits: Limits,
    pub registration: Registration,
    pub registration_token: String,
    pub opaque: ServerSetup<Suite>,
    pub logins: LoginGuard,
    addresses: AddressBuckets,
    pub stats: Stats,
    pub shutdown: watch::Receiver<bool>,
    in_flight: Cell<usize>,
    /// Where blob bytes live (see `cmd::blob`).
    pub blobs: cmd::blob::BlobDir,
    /// The owner's bans (see `cmd::moderation`).
    pub bans: cmd::moderation::Bans,
    /// The key transparency log's tree and signing key (see `cmd::kt`).
    pub log: cmd::kt::Log,
    /// Peer relays and their links (see `fed`).
    pub fed: crate::fed::Federation,
}

impl Relay {
    pub fn stats_delivered(&self, n: usize) {
        bump(&self.stats.delivered, n as u64);
    }

    pub fn stats_enqueued(&self, n: usize) {
        bump(&self.stats.enqueued, n as u64);
    }
}

/// One QUIC connection: its nonce while a proof is pending, and the identity
/// it proved.
pub struct Session {
    pub conn: quinn::Connection,
    pub nonce: Cell<Option<[u8; 32]>>,
    pub proven: Cell<Option<Proven>>,
    /// The account the proven identity belongs to, if any.
    pub account: RefCell<Option<String>>,
    pub registration: RefCell<Option<PendingRegistration>>,
    pub login: RefCell<Option<(String, ServerLogin<Suite>)>>,
    /// The account whose recovery code this connection showed (it may set
    /// a new password, see `cmd::recovery`).
    pub recovered: RefCell<Option<String>>,
    /// The account's password was proven on this connection (OPAQUE
    /// registration or login), as revoking a device requires.
    pub password_verified: Cell<bool>,
    bucket: RefCell<Bucket>,
}

impl Session {
    pub fn proven(&self) -> Option<Proven> {
        self.proven.get()
    }
}

/// Counts a call as in flight for as long as it lives.
struct InFlight(Rc<Relay>);

impl InFlight {
    fn new(relay: &Rc<Relay>) -> InFlight {
        relay.in_flight.set(relay.in_flight.get() + 1);
        InFlight(Rc::clone(relay))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

/// The receive buffer asked for each listening socket (see `bind`).
const RECV_BUFFER: usize = 2 << 20;

fn bind(addr: SocketAddr, server_config: quinn::ServerConfig) -> Result<quinn::Endpoint, ServeError> {
    let bind_err = |source| ServeError::Bind { addr, source };
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let socket =
        socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)).map_err(bind_err)?;
    if addr.is_ipv6() {
        // [::] serves IPv4 too, whatever the system default.
        socket.set_only_v6(false).map_err(bind_err)?;
    }
    // Every client's packets arrive on this one socket: with the kernel's
    // default buffer (208 KiB on Linux) a burst, such as many clients
    // connecting or leaving at once, overflows it, and a dropped handshake
    // packet costs its client QUIC's first retransmission timeout, about a
    // second. The kernel caps the request at net.core.rmem_max (often
    // 208 KiB on a router, where the default stays) and holds the memory
    // only while packets wait.
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        log::debug!("UDP receive buffer of {RECV_BUFFER} bytes refused on {addr}: {e}");
    }
    socket.bind(&addr.into()).map_err(bind_err)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server_config), socket.into(), runtime)
        .map_err(bind_err)
}

/// Runs the relay until SIGTERM or SIGINT, then shuts down cleanly.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let up_since = Instant::now();
    let signals = catch_signals()?;
    let dir = &config.data_dir;
    crate::data_dir::prepare(dir)?;
    // First, so that a second relay on this data directory stops here.
    let admin_socket = AdminSocket::bind(dir, config.socket.as_deref())?;
    let identity = tls::load_or_create(dir, &config.hostnames)?;
    log::info!("certificate fingerprint (SHA-256) {}", identity.fingerprint);
    if config.db_key.is_empty() {
        log::warn!("no database key set (--db-key / QPC_DB_KEY): the database is stored unencrypted");
    }
    let store = Rc::new(Store::open(
        &dir.join(crate::data_dir::STORE_FILE),
        &config.db_key,
        store::Options::from_env(),
    )?);
    let opaque = opaque_setup(&store).await?;
    let bans = cmd::moderation::Bans::load(store.read(store::moderation::bans).await?);
    let log = cmd::kt::Log::open(&store).await?;
    log::info!("key transparency log key {}", hex::encode(log.public_key()));
    let blobs = cmd::blob::BlobDir::open(&config.blob_dir)
        .map_err(|source| ServeError::BlobDir { path: config.blob_dir.display().to_string(), source })?;
    let server_config = tls::server_config(&identity, &config.limits)?;
    let peers = load_peers(&store, &config.peers).await?;
    log::info!("registration {}", config.registration.name());
    if config.registration == Registration::Token && config.registration_token.is_empty() {
        log::info!("no --registration-token: only one-time invite tokens admit new accounts");
    }

    let (stop, shutdown) = watch::channel(false);
    let relay = Rc::new(Relay {
        store,
        hub: Hub::default(),
        limits: config.limits.clone(),
        registration: config.registration,
        registration_token: config.registration_token.clone(),
        opaque,
        logins: LoginGuard::default(),
        addresses: AddressBuckets::default(),
        stats: Stats::default(),
        shutdown,
        in_flight: Cell::new(0),
        blobs,
        bans,
        log,
        fed: crate::fed::Federation::new(identity, peers, config.limits.rate_per_address),
    });

    tokio::task::spawn_local(sweep_loop(Rc::clone(&relay)));
    tokio::task::spawn_local(cmd::blob::sweep_loop(Rc::clone(&relay)));
    let mut endpoints = Vec::new();
    let mut listening = Vec::new();
    for addr in &config.listen {
        let endpoint = bind(*addr, server_config.clone())?;
        let local = endpoint.local_addr().map_err(|source| ServeError::Bind { addr: *addr, source })?;
        log::info!("accepting QUIC connections addr={local}");
        tokio::task::spawn_local(accept_loop(Rc::clone(&relay), endpoint.clone()));
        endpoints.push(endpoint);
        listening.push(local);
    }
    relay.fed.set_endpoints(endpoints.clone());
    relay.fed.start(&relay);
    let facts = Rc::new(Facts {
        started: up_since,
        listen: listening,
        fingerprint: relay.fed.fingerprint().to_string(),
        data_dir: dir.clone(),
        db_key: config.db_key.clone(),
    });
    let _admin = admin_socket.start(Rc::clone(&relay), Rc::clone(&facts));
    if let Some(path) = &config.metrics_file {
        let every = Duration::from_secs(config.metrics_interval_secs);
        tokio::task::spawn_local(admin::metrics_loop(Rc::clone(&relay), facts, path.clone(), every));
    }

    wait_for_signal(signals).await?;
    log::info!("shutting down: no new connections, finishing calls in flight");
    let _ = stop.send(true);
    for endpoint in &endpoints {
        endpoint.set_server_config(None);
    }
    let started = Instant::now();
    while relay.in_flight.get() > 0 && started.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"relay shutting down");
    }
    for endpoint in &endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    relay.store.close().await;
    if let Some(path) = &config.metrics_file {
        let _ = std::fs::remove_file(path);
    }
    log::info!("stopped; database closed");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the start (a stop that comes while the
/// relay is still starting must not kill it with the store open).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

fn catch_signals() -> Result<Signals, ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok(Signals {
        term: signal(SignalKind::terminate()).map_err(ServeError::Signal)?,
        int: signal(SignalKind::interrupt()).map_err(ServeError::Signal)?,
    })
}

async fn wait_for_signal(signals: Signals) -> Result<(), ServeError> {
    let Signals { mut term, mut int } = signals;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
    Ok(())
}

async fn accept_loop(relay: Rc<Relay>, endpoint: quinn::Endpoint) {
    let mut shutdown = relay.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Some(incoming) = incoming else { return };
        if relay.stats.connections.get() >= u64::from(relay.limits.max_connections) {
            log::info!(
                "connection from {} refused: {} connections open, the limit",
                incoming.remote_address(),
                relay.limits.max_connections
            );
            incoming.refuse();
            continue;
        }
        tokio::task::spawn_local(serve_connection(Rc::clone(&relay), incoming));
    }
}

/// Counts a connection as open for as long as it lives.
struct Open(Rc<Relay>);

impl Drop for Open {
    fn drop(&mut self) {
        let c = &self.0.stats.connections;
        c.set(c.get().saturating_sub(1));
    }
}

async fn serve_connection(relay: Rc<Relay>, incoming: quinn::Incoming) {
    bump(&relay.stats.connections, 1);
    let _open = Open(Rc::clone(&relay));
    let remote = incoming.remote_address();
    let handshake = Duration::from_secs(relay.limits.handshake_timeout_secs);
    let conn = match tokio::time::timeout(handshake, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            log::debug!("handshake with {remote} failed: {e}");
            return;
        }
        Err(_) => {
            log::info!("handshake with {remote} timed out after {} s", handshake.as_secs());
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() == Some(qpc_proto::FED_ALPN) {
        relay.fed.accept(&relay, conn).await;
        return;
    }
    let session = Rc::new(Session {
        conn: conn.clone(),
        nonce: Cell::new(None),
        proven: Cell::new(None),
        account: RefCell::new(None),
        registration: RefCell::new(None),
        login: RefCell::new(None),
        recovered: RefCell::new(None),
        password_verified: Cell::new(false),
        bucket: RefCell::new(Bucket::new(relay.limits.rate_per_connection)),
    });
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let call = InFlight::new(&relay);
                tokio::task::spawn_local(serve_stream(
                    Rc::clone(&relay),
                    Rc::clone(&session),
                    send,
                    recv,
                    call,
                ));
            }
            Err(e) => {
                log::debug!("connection {} closed: {e}", conn.remote_address());
                break;
            }
        }
    }
    if let Some(me) = session.proven() {
        relay.hub.unsubscribe(me.key(), &conn);
        relay.hub.drop_known(&me.key());
    }
}

pub(crate) fn refusal_frame(request_id: u32, r: &Refusal) -> Vec<u8> {
    let detail = pb::ErrorDetail { message: r.message.clone() }.encode_to_vec();
    ResponseFrame::new(r.status, request_id, detail).encode()
}

/// Reads one request, answers it, and finishes the stream.
async fn serve_stream(
    relay: Rc<Relay>,
    session: Rc<Session>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    _call: InFlight,
) {
    let response = match tokio::time::timeout(REQUEST_READ_TIMEOUT, read_request(&relay, &mut recv)).await {
        Err(_) => {
            let _ = recv.stop(0u32.into());
            refusal_frame(0, &Refusal::bad_request("request not received in time; stream closed"))
        }
        Ok(Err((request_id, refusal))) => {
            let _ = recv.stop(0u32.into());
            refusal_frame(request_id, &refusal)
        }
        Ok(Ok((header, payload))) => match answer(&relay, &session, header.method, &payload).await {
            Ok(body) => ResponseFrame::new(Status::Ok, header.request_id, body).encode(),
            Err(refusal) => {
                log_refusal(&session, header.method, &refusal);
                refusal_frame(header.request_id, &refusal)
            }
        },
    };
    if send.write_all(&response).await.is_ok() {
        let _ = send.finish();
    }
}

pub(crate) async fn read_request(
    relay: &Relay,
    recv: &mut quinn::RecvStream,
) -> Result<(RequestHeader, Vec<u8>), (u32, Refusal)> {
    let mut head = [0u8; RequestHeader::LEN];
    recv.read_exact(&mut head)
        .await
        .map_err(|e| (0, Refusal::bad_request(format!("truncated request header: {e}"))))?;
    let header = RequestHeader::parse(&head).map_err(|e| (0, Refusal::bad_request(e.to_string())))?;
    let len = header.payload_len(relay.limits.max_payload).map_err(|e| {
        let status =
            if matches!(e, FrameError::TooLarge { .. }) { Status::TooLarge } else { Status::BadRequest };
        (header.request_id, Refusal::new(status, e.to_string()))
    })?;
    // Grown as bytes arrive, not allocated from the declared length, so a
    // client that declares much and sends little costs no memory.
    let mut payload = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(
        &mut tokio::io::AsyncReadExt::take(&mut *recv, len as u64),
        &mut payload,
    )
    .await;
    if let Err(e) = read.map_err(|e| e.to_string()).and_then(|n| {
        if n == len {
            Ok(())
        } else {
            Err(format!("{n} bytes arrived"))
        }
    }) {
        return Err((
            header.request_id,
            Refusal::bad_request(format!("truncated request: payload of {len} bytes declared: {e}")),
        ));
    }
    Ok((header, payload))
}

/// Reads one request of peer relay `fingerprint`, answers it (within the
/// peer's request rate), and finishes the stream.
pub(crate) async fn serve_peer_stream(
    relay: Rc<Relay>,
    fingerprint: String,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let _call = InFlight::new(&relay);
    let response = match tokio::time::timeout(REQUEST_READ_TIMEOUT, read_request(&relay, &mut recv)).await {
        Err(_) => refusal_frame(0, &Refusal::bad_request("request not received in time; stream closed")),
        Ok(Err((request_id, refusal))) => {
            let _ = recv.stop(0u32.into());
            refusal_frame(request_id, &refusal)
        }
        Ok(Ok((header, _))) if !relay.fed.allow(&fingerprint) => refusal_frame(
            header.request_id,
            &Refusal::new(Status::RateLimited, "too many requests from your relay; slow down"),
        ),
        Ok(Ok((header, payload))) => {
            match cmd::dispatch_peer(&relay, &fingerprint, header.method, &payload).await {
                Ok(body) => ResponseFrame::new(Status::Ok, header.request_id, body).encode(),
                Err(refusal) => {
                    log::debug!(
                        "refused peer {fingerprint:.16} method {} ({}): {}",
                        header.method,
                        refusal.status,
                        refusal.message
                    );
                    refusal_frame(header.request_id, &refusal)
                }
            }
        }
    };
    if send.write_all(&response).await.is_ok() {
        let _ = send.finish();
    }
}

/// Brings the configured peers (--peer, UCI list peer) into the store,
/// drops configured ones no longer listed, and returns every peer.
async fn load_peers(
    store: &Store,
    configured: &[crate::fed::address::PeerUrl],
) -> Result<Vec<store::peers::Peer>, ServeError> {
    let wanted: Vec<store::peers::Peer> = configured
        .iter()
        .map(|u| store::peers::Peer {
            fingerprint: u.fingerprint.clone(),
            host: u.host.clone(),
            port: u.port,
            source: "config".into(),
        })
        .collect();
    let peers = store
        .write(move |tx| {
            let fps: Vec<String> = wanted.iter().map(|p| p.fingerprint.clone()).collect();
            for gone in store::peers::configured_not_in(tx, &fps)? {
                store::outbound::drop_peer(tx, &gone, store::now_ms())?;
                store::peers::remove(tx, &gone)?;
            }
            for p in &wanted {
                store::peers::upsert(tx, p, store::now_ms())?;
            }
            store::peers::list(tx).map_err(StoreError::from)
        })
        .await?;
    for p in &peers {
        log::info!("federation: peer {} ({}, fingerprint {})", p.address(), p.source, p.fingerprint);
    }
    Ok(peers)
}

/// Quota and auth refusals are what a user asks the owner about: logged
/// here, once, with the reason (never contents or secrets); rate limits are
/// logged where they are decided, once per burst; the rest at debug.
fn log_refusal(session: &Session, method: u16, refusal: &Refusal) {
    // A sealed delivery's sender is not recorded, even where the connection
    // is signed in.
    let who = if method == qpc_proto::Method::SealedEnqueue.id() {
        "a sealed sender".into()
    } else {
        session.proven().map(|p| hex::encode(&p.key()[..8])).unwrap_or_else(|| "anonymous".into())
    };
    let remote = session.conn.remote_address();
    let name = qpc_proto::Method::from_u16(method).map_or_else(|| method.to_string(), |m| format!("{m:?}"));
    match refusal.status {
        Status::QuotaExceeded | Status::Unauthenticated | Status::Forbidden => {
            log::info!("refused {name} for {who} at {remote} ({}): {}", refusal.status, refusal.message)
        }
        Status::Internal => log::error!("{name} for {who} failed: {}", refusal.message),
        _ => log::debug!("refused {name} for {who} at {remote} ({}): {}", refusal.status, refusal.message),
    }
}

async fn answer(
    relay: &Rc<Relay>,
    session: &Session,
    method: u16,
    payload: &[u8],
) -> Result<Vec<u8>, Refusal> {
    if let Some(refusal) = rate_limited(relay, session) {
        return Err(refusal);
    }
    cmd::dispatch(relay, session, method, payload).await
}

/// The per-connection and per-address request rates.
fn rate_limited(relay: &Relay, session: &Session) -> Option<Refusal> {
    let limits = &relay.limits;
    let remote = session.conn.remote_address();
    let (first, what) = {
        let mut bucket = session.bucket.borrow_mut();
        if !bucket.allow(limits.rate_per_connection) {
            (
                !std::mem::replace(&mut bucket.warned, true),
                format!("this connection ({} requests/s)", limits.rate_per_connection),
            )
        } else {
            match relay.addresses.check(remote.ip(), limits.rate_per_address) {
                None => return None,
                Some(first) => (first, format!("your address ({} requests/s)", limits.rate_per_address)),
            }
        }
    };
    if first {
        log::info!("rate limit reached for {what} from {remote}");
    }
    Some(Refusal::new(Status::RateLimited, format!("too many requests from {what}; slow down")))
}

/// Loads the relay's OPAQUE keys, making them on first start. Changing them
/// would lock every account out, so they live in the (encrypted) database.
async fn opaque_setup(store: &Store) -> Result<ServerSetup<Suite>, ServeError> {
    let stored = store.read(store::meta::opaque_setup).await?;
    if let Some(bytes) = stored {
        return ServerSetup::<Suite>::deserialize(&bytes)
            .map_err(|_| ServeError::Corrupt("the stored OPAQUE server setup is unreadable".into()));
    }
    let setup = ServerSetup::<Suite>::new(&mut rand::rngs::OsRng);
    let bytes = setup.serialize().to_vec();
    store.write(move |tx| store::meta::set_opaque_setup(tx, &bytes).map_err(StoreError::from)).await?;
    Ok(setup)
}

/// Deletes undelivered messages older than the TTL, returning their space.
async fn sweep_loop(relay: Rc<Relay>) {
    let ttl = relay.limits.message_ttl_secs;
    let every = Duration::from_secs((ttl / 4).clamp(1, 60));
    let mut shutdown = relay.shutdown.clone();
    loop {
        let cutoff =
            store::now_ms().saturating_sub(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX));
        match relay
            .store
            .write(move |tx| {
                store::fences::expire_before(tx, cutoff)?;
                store::outbound::expire_before(tx, cutoff, store::now_ms())?;
                store::queues::expire_before(tx, cutoff).map_err(StoreError::from)
            })
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                bump(&relay.stats.expired, n);
                log::info!("expired {n} undelivered messages older than {ttl} s");
            }
            Err(e) => log::error!("sweeping expired messages: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

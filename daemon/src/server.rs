//! The QUIC side of the relay: endpoints, connections, one RPC per stream,
//! and the orderly shutdown. Everything runs on one thread (tokio
//! current_thread + LocalSet); state is shared with `Rc`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use qpc_proto::frame::{Header, RequestHeader};
use qpc_proto::{pb, FrameError, ResponseFrame, Status};
use tokio::sync::watch;

use crate::cmd::{self, auth::Proven};
use crate::config::{Config, Limits};
use crate::hub::Hub;
use crate::refusal::Refusal;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

/// How long a client may take to send a whole request once it opened a stream.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight calls.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
}

/// Counters since start.
#[derive(Default)]
pub struct Stats {
    pub connections: Cell<u64>,
    pub delivered: Cell<u64>,
}

/// What every command can reach.
pub struct Relay {
    pub store: Rc<Store>,
    pub hub: Hub,
    pub limits: Limits,
    pub stats: Stats,
    pub shutdown: watch::Receiver<bool>,
    in_flight: Cell<usize>,
}

impl Relay {
    pub fn stats_delivered(&self, n: usize) {
        self.stats.delivered.set(self.stats.delivered.get() + n as u64);
    }
}

/// One QUIC connection: its nonce while a proof is pending, and the identity
/// it proved.
pub struct Session {
    pub conn: quinn::Connection,
    pub nonce: Cell<Option<[u8; 32]>>,
    pub proven: Cell<Option<Proven>>,
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

fn bind(addr: SocketAddr, server_config: quinn::ServerConfig) -> Result<quinn::Endpoint, ServeError> {
    let bind_err = |source| ServeError::Bind { addr, source };
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let socket =
        socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)).map_err(bind_err)?;
    if addr.is_ipv6() {
        // [::] serves IPv4 too, whatever the system default.
        socket.set_only_v6(false).map_err(bind_err)?;
    }
    socket.bind(&addr.into()).map_err(bind_err)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server_config), socket.into(), runtime)
        .map_err(bind_err)
}

/// Runs the relay until SIGTERM or SIGINT, then shuts down cleanly.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|source| ServeError::DataDir { path: dir.display().to_string(), source })?;
    let identity = tls::load_or_create(dir, &config.hostnames)?;
    log::info!("certificate fingerprint (SHA-256) {}", identity.fingerprint);
    if config.db_key.is_empty() {
        log::warn!("no database key set (--db-key / QPC_DB_KEY): the database is stored unencrypted");
    }
    let store = Rc::new(Store::open(&dir.join("qpc.db"), &config.db_key)?);
    let server_config = tls::server_config(&identity, MAX_STREAMS_PER_CONNECTION)?;

    let (stop, shutdown) = watch::channel(false);
    let relay = Rc::new(Relay {
        store,
        hub: Hub::default(),
        limits: config.limits.clone(),
        stats: Stats::default(),
        shutdown,
        in_flight: Cell::new(0),
    });

    let mut endpoints = Vec::new();
    for addr in &config.listen {
        let endpoint = bind(*addr, server_config.clone())?;
        let local = endpoint.local_addr().map_err(|source| ServeError::Bind { addr: *addr, source })?;
        log::info!("accepting QUIC connections addr={local}");
        tokio::task::spawn_local(accept_loop(Rc::clone(&relay), endpoint.clone()));
        endpoints.push(endpoint);
    }

    wait_for_signal().await?;
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
    relay.store.close();
    log::info!("stopped; database closed");
    Ok(())
}

async fn wait_for_signal() -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
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
        tokio::task::spawn_local(serve_connection(Rc::clone(&relay), incoming));
    }
}

async fn serve_connection(relay: Rc<Relay>, incoming: quinn::Incoming) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            log::debug!("handshake failed: {e}");
            return;
        }
    };
    relay.stats.connections.set(relay.stats.connections.get() + 1);
    let session = Rc::new(Session { conn: conn.clone(), nonce: Cell::new(None), proven: Cell::new(None) });
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
    }
}

fn refusal_frame(request_id: u32, r: &Refusal) -> Vec<u8> {
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
        Ok(Ok((header, payload))) => match cmd::dispatch(&relay, &session, header.method, &payload).await {
            Ok(body) => ResponseFrame::new(Status::Ok, header.request_id, body).encode(),
            Err(refusal) => {
                log::debug!("method {} refused ({}): {}", header.method, refusal.status, refusal.message);
                refusal_frame(header.request_id, &refusal)
            }
        },
    };
    if send.write_all(&response).await.is_ok() {
        let _ = send.finish();
    }
}

async fn read_request(
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
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await.map_err(|e| {
        (
            header.request_id,
            Refusal::bad_request(format!("truncated request: payload of {len} bytes declared: {e}")),
        )
    })?;
    Ok((header, payload))
}

//! Federation: relays that deliver to each other, as their owners decided.
//!
//! A peer is a relay named by its certificate's SHA-256 (added with
//! `qpc-server peer add qpc://host:port#fingerprint`, `--peer` or UCI `list
//! peer`). Relay to relay runs over QUIC + TLS 1.3 with ALPN `qpc-fed` on the
//! relay's own endpoint: the dialing relay pins the peer's certificate and
//! shows its own as the client certificate; the accepting relay takes the
//! connection only if that certificate's fingerprint is a peer's (`accept`).
//!
//! A link is one QUIC connection to a peer, whichever side dialed it: both
//! sides answer requests on it, so a relay behind NAT that dials out can be
//! delivered to over the same link. Requests are the ordinary frames, one
//! per stream (methods 1250-1252, see `cmd::federation`).
//!
//! Delivery: a message for a remote recipient is stored in the outgoing
//! queue (`store::outbound`) in the sender's write; a forwarder per peer
//! sends it with PeerDeliver, at least once, backing off while the peer is
//! unreachable or over its limits, and removes it when the peer answered.
//! The peer refuses for good (unknown recipient, bad request) or the TTL
//! runs out: the sender's device is told through Undelivered (1201).
//!
//! Everything here runs on the relay's one thread; the store is reached
//! through the storage thread like everywhere else.

pub mod address;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use prost::Message;
use qpc_proto::frame::{Header, ResponseHeader};
use qpc_proto::{pb, Method, RequestFrame, Status};
use tokio::sync::Notify;

use crate::limits::Bucket;
use crate::server::Relay;
use crate::store::outbound::{self, Outgoing};
use crate::store::peers::Peer;
use crate::store::StoreError;
use crate::tls::Identity;

/// Longest a peer may take to answer one request.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Back-off between tries while a peer is unreachable or over its limits.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often an idle forwarder looks at its queue anyway.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Messages read from the outgoing queue at once.
const BATCH: u32 = 32;
/// Largest answer taken from a peer.
const MAX_ANSWER: u32 = 2 << 20;

/// QUIC close codes a relay gives a peer connection it refuses.
const CLOSE_NOT_A_PEER: u32 = 0x403;
const CLOSE_GARBAGE: u32 = 0x400;
const CLOSE_REMOVED: u32 = 0x410;

/// Why a call to a peer did not get an answer.
#[derive(Debug)]
pub enum CallError {
    /// No link, or it broke (or the peer answered garbage: the link was
    /// closed); try again later.
    Link(String),
    /// The peer answered with a refusal.
    Refused(Status, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Link(why) => write!(f, "{why}"),
            CallError::Refused(status, message) => write!(f, "{status}: {message}"),
        }
    }
}

/// What `qpc-server status` shows of one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub reachable: bool,
    pub last_error: String,
    /// Messages the peer took from us since start.
    pub forwarded: u64,
    /// Messages we took from the peer since start.
    pub received: u64,
}

#[derive(Default)]
struct PeerEntry {
    peer: Option<Peer>,
    link: Option<quinn::Connection>,
    wake: Rc<Notify>,
    state: PeerState,
    bucket: Option<Bucket>,
    forwarding: bool,
}

/// The relay's federation side: its peers, their links and states.
pub struct Federation {
    identity: Identity,
    entries: RefCell<HashMap<String, PeerEntry>>,
    endpoints: RefCell<Vec<quinn::Endpoint>>,
    rate: u32,
}

impl Federation {
    pub fn new(identity: Identity, peers: Vec<Peer>, rate: u32) -> Federation {
        let entries = peers
            .into_iter()
            .map(|p| (p.fingerprint.clone(), PeerEntry { peer: Some(p), ..PeerEntry::default() }))
            .collect();
        Federation { identity, entries: RefCell::new(entries), endpoints: RefCell::new(Vec::new()), rate }
    }

    pub fn fingerprint(&self) -> &str {
        &self.identity.fingerprint
    }

    /// The endpoints peers are dialed from (the relay's own).
    pub fn set_endpoints(&self, endpoints: Vec<quinn::Endpoint>) {
        *self.endpoints.borrow_mut() = endpoints;
    }

    pub fn peers(&self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self.entries.borrow().values().filter_map(|e| e.peer.clone()).collect();
        peers.sort_by_key(Peer::address);
        peers
    }

    pub fn peer(&self, fingerprint: &str) -> Option<Peer> {
        self.entries.borrow().get(fingerprint).and_then(|e| e.peer.clone())
    }

    /// The peer at `host` (and `port`, when given).
    pub fn find(&self, host: &str, port: Option<u16>) -> Option<Peer> {
        self.peers().into_iter().find(|p| p.host == host && port.is_none_or(|port| p.port == port))
    }

    pub fn state(&self, fingerprint: &str) -> PeerState {
        self.entries.borrow().get(fingerprint).map(|e| e.state.clone()).unwrap_or_default()
    }

    fn with<T>(&self, fingerprint: &str, f: impl FnOnce(&mut PeerEntry) -> T) -> T {
        f(self.entries.borrow_mut().entry(fingerprint.to_string()).or_default())
    }

    /// Adds (or updates) a peer and starts its forwarder.
    pub fn add(&self, relay: &Rc<Relay>, peer: Peer) {
        let fp = peer.fingerprint.clone();
        let start = self.with(&fp, |e| {
            if e.peer.as_ref().is_some_and(|old| old.address() != peer.address()) {
                // Moved: the next call dials the new address.
                if let Some(link) = e.link.take() {
                    link.close(CLOSE_REMOVED.into(), b"peer address changed");
                }
            }
            e.peer = Some(peer);
            !std::mem::replace(&mut e.forwarding, true)
        });
        if start {
            tokio::task::spawn_local(forward_loop(Rc::clone(relay), fp));
        } else {
            self.wake(&fp);
        }
    }

    /// Forgets a peer: its links close, its forwarder stops.
    pub fn remove(&self, fingerprint: &str) {
        let entry = self.entries.borrow_mut().remove(fingerprint);
        if let Some(entry) = entry {
            if let Some(link) = entry.link {
                link.close(CLOSE_REMOVED.into(), b"this relay's owner removed you as a peer");
            }
            entry.wake.notify_one();
        }
    }

    /// Starts the forwarders of the peers known at start.
    pub fn start(&self, relay: &Rc<Relay>) {
        for peer in self.peers() {
            self.add(relay, peer);
        }
    }

    /// Wakes the forwarder of `fingerprint` (something was queued for it).
    pub fn wake(&self, fingerprint: &str) {
        if let Some(e) = self.entries.borrow().get(fingerprint) {
            e.wake.notify_one();
        }
    }

    fn note(&self, fingerprint: &str, result: Result<(), String>) {
        self.with(fingerprint, |e| match result {
            Ok(()) => {
                e.state.reachable = true;
                e.state.last_error.clear();
            }
            Err(why) => {
                e.state.reachable = e.link.as_ref().is_some_and(|l| l.close_reason().is_none());
                e.state.last_error = why;
            }
        });
    }

    /// Takes one request token of `fingerprint`'s rate.
    pub fn allow(&self, fingerprint: &str) -> bool {
        let rate = self.rate;
        self.with(fingerprint, |e| e.bucket.get_or_insert_with(|| Bucket::new(rate)).allow(rate))
    }

    pub fn count_received(&self, fingerprint: &str) {
        self.with(fingerprint, |e| e.state.received += 1);
    }

    /// A live link to the peer, dialing one if there is none.
    async fn link(&self, relay: &Rc<Relay>, fingerprint: &str) -> Result<quinn::Connection, String> {
        let (peer, live) = {
            let entries = self.entries.borrow();
            let entry = entries.get(fingerprint).ok_or("not a peer (removed)")?;
            let peer = entry.peer.clone().ok_or("not a peer (removed)")?;
            (peer, entry.link.clone().filter(|l| l.close_reason().is_none()))
        };
        if let Some(link) = live {
            return Ok(link);
        }
        let conn = self.dial(&peer).await?;
        if self.peer(fingerprint).is_none() {
            conn.close(CLOSE_REMOVED.into(), b"peer removed");
            return Err("not a peer (removed)".into());
        }
        log::info!("federation: link to peer {} up (dialed)", peer.address());
        self.with(fingerprint, |e| e.link = Some(conn.clone()));
        tokio::task::spawn_local(serve_link(Rc::clone(relay), fingerprint.to_string(), conn.clone()));
        Ok(conn)
    }

    async fn dial(&self, peer: &Peer) -> Result<quinn::Connection, String> {
        let shown = peer.address();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((peer.host.as_str(), peer.port))
            .await
            .map_err(|e| format!("cannot resolve {shown}: {e}"))?
            .collect();
        let endpoint = {
            let endpoints = self.endpoints.borrow();
            let v6 = |e: &quinn::Endpoint| e.local_addr().is_ok_and(|a| a.is_ipv6());
            let want_v6 = addrs.first().is_some_and(|a| a.is_ipv6());
            endpoints.iter().find(|e| v6(e) == want_v6 || v6(e)).or(endpoints.first()).cloned()
        };
        let endpoint = endpoint.ok_or("the relay has no endpoint to dial from")?;
        let addr = addrs.first().copied().ok_or_else(|| format!("{shown}: no address found"))?;
        let config = crate::tls::peer_client_config(&self.identity, &peer.fingerprint)
            .map_err(|e| format!("TLS configuration for {shown}: {e}"))?;
        let name = if rustls::pki_types::ServerName::try_from(peer.host.clone()).is_ok() {
            peer.host.as_str()
        } else {
            "localhost"
        };
        let connecting = endpoint.connect_with(config, addr, name).map_err(|e| format!("{shown}: {e}"))?;
        match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Err(_) => Err(format!("{shown}: no answer within {} s", DIAL_TIMEOUT.as_secs())),
            Ok(Err(quinn::ConnectionError::TransportError(e))) if e.to_string().contains("certificate") => {
                Err(format!(
                    "{shown} presented a certificate whose fingerprint is not {} (the one this peer was added with)",
                    peer.fingerprint
                ))
            }
            Ok(Err(e)) => Err(format!("{shown}: {e}")),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    /// One request to the peer over its link. Garbage in the answer closes
    /// the link (it is dialed again on the next call).
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        relay: &Rc<Relay>,
        fingerprint: &str,
        method: Method,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let link = self.link(relay, fingerprint).await.map_err(CallError::Link)?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, exchange(&link, method, req)).await;
        let result = match answer {
            Err(_) => {
                Err(CallError::Link(format!("no answer to {method:?} within {} s", CALL_TIMEOUT.as_secs())))
            }
            Ok(Err(Exchange::Lost(why))) => Err(CallError::Link(match link.close_reason() {
                Some(reason) => format!("link closed: {reason}"),
                None => why,
            })),
            Ok(Err(Exchange::Garbage(why))) => {
                log::warn!("federation: peer {fingerprint:.16} answered garbage ({why}); link closed");
                link.close(CLOSE_GARBAGE.into(), b"garbage answer");
                Err(CallError::Link(format!("the peer answered garbage ({why}); the link was closed")))
            }
            Ok(Ok((status, payload))) if status != Status::Ok => {
                let message =
                    pb::ErrorDetail::decode(payload.as_slice()).map(|d| d.message).unwrap_or_default();
                Err(CallError::Refused(status, message))
            }
            Ok(Ok((_, payload))) => Resp::decode(payload.as_slice()).map_err(|e| {
                link.close(CLOSE_GARBAGE.into(), b"garbage answer");
                CallError::Link(format!(
                    "the peer answered a malformed {method:?} ({e}); the link was closed"
                ))
            }),
        };
        match &result {
            Err(CallError::Link(why)) => self.note(fingerprint, Err(why.clone())),
            Err(CallError::Refused(status, message)) => {
                self.note(fingerprint, Err(format!("{status}: {message}")))
            }
            Ok(_) => self.note(fingerprint, Ok(())),
        }
        result
    }

    /// Takes an incoming `qpc-fed` connection if its client certificate is
    /// a peer's, and answers its requests until it closes.
    pub async fn accept(&self, relay: &Rc<Relay>, conn: quinn::Connection) {
        let remote = conn.remote_address();
        let presented = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
            .and_then(|certs| certs.first().map(|c| crate::tls::fingerprint(c)));
        let Some(fp) = presented else {
            log::info!("federation: refused {remote}: no client certificate");
            conn.close(CLOSE_NOT_A_PEER.into(), b"a peer relay must show its certificate");
            return;
        };
        let Some(peer) = self.peer(&fp) else {
            log::info!("federation: refused {remote}: certificate {fp} is not a peer of this relay");
            conn.close(
                CLOSE_NOT_A_PEER.into(),
                b"not a peer of this relay: its owner must add you (qpc-server peer add)",
            );
            return;
        };
        log::info!("federation: link from peer {} up (from {remote})", peer.address());
        self.with(&fp, |e| {
            if e.link.as_ref().is_none_or(|l| l.close_reason().is_some()) {
                e.link = Some(conn.clone());
            }
            e.state.reachable = true;
        });
        self.wake(&fp);
        serve_link(Rc::clone(relay), fp, conn).await;
    }
}

enum Exchange {
    Lost(String),
    Garbage(String),
}

async fn exchange<Req: Message>(
    link: &quinn::Connection,
    method: Method,
    req: &Req,
) -> Result<(Status, Vec<u8>), Exchange> {
    let lost = |e: &dyn std::fmt::Display| Exchange::Lost(format!("link lost: {e}"));
    let (mut send, mut recv) = link.open_bi().await.map_err(|e| lost(&e))?;
    let frame = RequestFrame::new(method.id(), 1, req.encode_to_vec()).encode();
    send.write_all(&frame).await.map_err(|e| lost(&e))?;
    let _ = send.finish();
    let mut head = [0u8; ResponseHeader::LEN];
    recv.read_exact(&mut head).await.map_err(|e| lost(&e))?;
    let header = ResponseHeader::parse(&head).map_err(|e| Exchange::Garbage(e.to_string()))?;
    let len = header.payload_len(MAX_ANSWER).map_err(|e| Exchange::Garbage(e.to_string()))?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await.map_err(|e| lost(&e))?;
    if header.request_id != 1 {
        return Err(Exchange::Garbage(format!("answer to request {} on our stream", header.request_id)));
    }
    Ok((header.status, payload))
}

/// Answers the peer's requests on `conn` until it closes.
async fn serve_link(relay: Rc<Relay>, fingerprint: String, conn: quinn::Connection) {
    loop {
        match conn.accept_bi().await {
            Ok(_) if relay.fed.peer(&fingerprint).is_none() => {
                // Removed while this link was up (a peer may hold two).
                conn.close(CLOSE_REMOVED.into(), b"this relay's owner removed you as a peer");
                return;
            }
            Ok((send, recv)) => {
                tokio::task::spawn_local(crate::server::serve_peer_stream(
                    Rc::clone(&relay),
                    fingerprint.clone(),
                    send,
                    recv,
                ));
            }
            Err(e) => {
                log::info!("federation: link with peer {fingerprint:.16} closed: {e}");
                // Closed here: the reason why was noted when it was closed.
                if !matches!(e, quinn::ConnectionError::LocallyClosed) {
                    relay.fed.note(&fingerprint, Err(format!("link closed: {e}")));
                }
                relay.fed.wake(&fingerprint);
                return;
            }
        }
    }
}

/// Test-only: `QPC_TEST_CRASH_AT=POINT` stops the relay as a kill -9 would:
/// `fed-forwarded` after a peer took a message and before it leaves the
/// queue, `fed-taken` after a message from a peer is stored and before the
/// peer is answered.
pub(crate) fn crash_point(point: &str) {
    if std::env::var("QPC_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("QPC_TEST_CRASH_AT: stopping at {point}");
        std::process::abort();
    }
}

/// Whether a peer's refusal is final for this message.
fn final_refusal(status: Status) -> bool {
    matches!(
        status,
        Status::NotFound | Status::BadRequest | Status::Forbidden | Status::TooLarge | Status::UnknownMethod
    )
}

async fn sleep_or_wake(relay: &Relay, wake: &Notify, d: Duration) {
    let mut shutdown = relay.shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = wake.notified() => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

/// Sends what is queued for one peer, oldest first, until the peer is
/// removed or the relay stops.
async fn forward_loop(relay: Rc<Relay>, fingerprint: String) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if *relay.shutdown.borrow() || relay.fed.peer(&fingerprint).is_none() {
            return;
        }
        let wake = relay.fed.with(&fingerprint, |e| Rc::clone(&e.wake));
        let fp = fingerprint.clone();
        let batch = match relay.store.read(move |c| outbound::next(c, &fp, BATCH)).await {
            Ok(b) => b,
            Err(StoreError::Closed) => return,
            Err(e) => {
                log::error!("federation: reading the outgoing queue: {e}");
                sleep_or_wake(&relay, &wake, BACKOFF_MAX).await;
                continue;
            }
        };
        if batch.is_empty() {
            // A link is kept up even with nothing to send, so that a peer
            // that cannot dial us (behind NAT) can deliver over it.
            if let Err(why) = relay.fed.link(&relay, &fingerprint).await {
                relay.fed.note(&fingerprint, Err(why));
                if !pause(&relay, &mut backoff).await {
                    return;
                }
                continue;
            }
            backoff = BACKOFF_MIN;
            sleep_or_wake(&relay, &wake, IDLE_CHECK).await;
            continue;
        }
        match forward(&relay, &fingerprint, batch).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(why) => {
                log::debug!(
                    "federation: forwarding to {fingerprint:.16} paused {} ms: {why}",
                    backoff.as_millis()
                );
                if !pause(&relay, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Waits out `backoff` (not woken by new messages: the peer is the reason
/// to wait) and doubles it; false when the relay stops meanwhile.
async fn pause(relay: &Relay, backoff: &mut Duration) -> bool {
    let mut shutdown = relay.shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = shutdown.wait_for(|stop| *stop) => return false,
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    true
}

/// Sends `batch` one by one; stops at the first message the peer cannot
/// take now.
async fn forward(relay: &Rc<Relay>, fingerprint: &str, batch: Vec<Outgoing>) -> Result<(), String> {
    for m in batch {
        let sender_username = if m.sender == crate::store::queues::SEALED {
            String::new()
        } else {
            let sender = m.sender;
            relay
                .store
                .read(move |c| crate::store::directory::owner_of(c, &sender))
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default()
        };
        let req = pb::PeerDeliverRequest {
            message_id: m.message_id.clone(),
            sender_key: if m.sender == crate::store::queues::SEALED { Vec::new() } else { m.sender.to_vec() },
            sender_username,
            recipient_key: m.recipient.to_vec(),
            channel_id: m.channel_id.clone(),
            client_msg_id: m.client_msg_id.clone().unwrap_or_default(),
            payload: m.payload.clone(),
            group_route: m.group_route.clone().unwrap_or_default(),
            delivery_token: m.delivery_token.clone().unwrap_or_default(),
        };
        let id = m.id;
        match relay
            .fed
            .call::<_, pb::PeerDeliverResponse>(relay, fingerprint, Method::PeerDeliver, &req)
            .await
        {
            Ok(_) => {
                crash_point("fed-forwarded");
                relay
                    .store
                    .write(move |tx| outbound::delivered(tx, id).map_err(StoreError::from))
                    .await
                    .map_err(|e| e.to_string())?;
                relay.fed.with(fingerprint, |e| e.state.forwarded += 1);
            }
            Err(CallError::Refused(status, message)) if final_refusal(status) => {
                let reason = format!("the peer relay refused it: {status}: {message}");
                log::info!(
                    "federation: message for {} refused by peer {fingerprint:.16}: {reason}",
                    hex::encode(&m.recipient[..8])
                );
                let now = crate::store::now_ms();
                relay
                    .store
                    .write(move |tx| outbound::fail(tx, id, &reason, now).map_err(StoreError::from))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

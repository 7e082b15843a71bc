//! The admin channel: a Unix socket that only root and the relay's own user
//! may use, answering `qpc-server status`, `users`, `user-delete`,
//! `invite-token` and the moderation requests `reports`, `report-dismiss`,
//! `ban`, `unban` (see `cmd::moderation`; `ctl` is the other end), and the metrics file for
//! node-exporter's textfile collector. No HTTP server lives in the relay.
//!
//! Where the socket is:
//! - `--socket PATH` (QPC_SOCKET) when given;
//! - else `/var/run/qpc/qpc.sock` when the directory `/var/run/qpc` exists and
//!   the relay may create the socket there (and no other relay holds it);
//! - else `DATA_DIR/admin.sock`.
//!
//! `backup` is answered with `ok` and then the backup file itself (see
//! `store::backup`), streamed from a copy the store makes of itself.
//!
//! Whichever it is, `DATA_DIR/admin.sock` leads to it (a symbolic link when
//! the socket lives elsewhere), so `qpc-server status --data-dir DATA_DIR`
//! finds the relay started with that data directory. A relay refuses to
//! start on a data directory whose admin socket answers: another relay runs
//! there.
//!
//! The protocol is one request line, `COMMAND [ARGUMENT]`, answered by one
//! status line, `ok`, `ok NOTE` or `error MESSAGE`, then the body, after
//! which the relay closes the connection.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::cmd::accounts::check_username;
use crate::cmd::moderation;
use crate::config::Registration;
use crate::server::Relay;
use crate::status::{json_string, Facts, Figures};
use crate::store::accounts::{self, Deleted};
use crate::store::{identities, now_ms, StoreError};

/// The run directory of the relay on OpenWrt and other Linux systems.
pub const RUN_DIR: &str = "/var/run/qpc";
/// The socket's name in the run directory.
pub const RUN_SOCKET: &str = "qpc.sock";
/// The socket's (or the link's) name in the data directory.
pub const DATA_DIR_SOCKET: &str = "admin.sock";
/// Longest request line.
const MAX_REQUEST: u64 = 1024;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Random bytes in an invite token (hex-encoded: 32 characters).
const TOKEN_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("another qpc-server is running with data directory {data_dir} (its admin socket {socket} answers); stop it first")]
    AlreadyRunning { data_dir: String, socket: String },
    #[error("admin socket {path}: another process answers there; stop it or choose another --socket")]
    InUse { path: String },
    #[error("admin socket {path}: something that is not a socket is in the way; move it or choose another --socket")]
    NotASocket { path: String },
    #[error("admin socket {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AdminError + '_ {
    move |source| AdminError::Io { path: path.display().to_string(), source }
}

/// Whether a relay answers on `path`.
fn answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Removes a leftover socket or link at `path`, refusing to remove anything
/// else or a socket that still answers.
fn clear(path: &Path) -> Result<(), AdminError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let kind = meta.file_type();
    if kind.is_socket() && answers(path) {
        return Err(AdminError::InUse { path: path.display().to_string() });
    }
    if !kind.is_socket() && !kind.is_symlink() {
        return Err(AdminError::NotASocket { path: path.display().to_string() });
    }
    std::fs::remove_file(path).map_err(io_err(path))
}

/// Files removed when the relay stops (or fails to start).
pub struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A bound admin socket, not yet answering.
pub struct AdminSocket {
    listener: UnixListener,
    /// Uid of the relay (the socket's owner): allowed besides root.
    owner: u32,
    cleanup: Cleanup,
}

fn bind_at(path: &Path) -> Result<(UnixListener, u32), AdminError> {
    clear(path)?;
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_err(path))?;
    // Owner only; the peer's uid is checked as well (see `serve_client`).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    let owner = std::fs::metadata(path).map_err(io_err(path))?.uid();
    listener.set_nonblocking(true).map_err(io_err(path))?;
    Ok((UnixListener::from_std(listener).map_err(io_err(path))?, owner))
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
}

impl AdminSocket {
    /// Binds the admin socket for a relay on `data_dir` (see the module
    /// documentation for where).
    pub fn bind(data_dir: &Path, wanted: Option<&Path>) -> Result<AdminSocket, AdminError> {
        let link = absolute(&data_dir.join(DATA_DIR_SOCKET));
        if answers(&link) {
            return Err(AdminError::AlreadyRunning {
                data_dir: data_dir.display().to_string(),
                socket: link.display().to_string(),
            });
        }
        let bound = match wanted {
            Some(path) => {
                let path = absolute(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                Some((bind_at(&path)?, path))
            }
            None if Path::new(RUN_DIR).is_dir() => {
                let path = Path::new(RUN_DIR).join(RUN_SOCKET);
                match bind_at(&path) {
                    Ok(bound) => Some((bound, path)),
                    Err(e) => {
                        log::info!(
                            "not using the run directory: {e}; the admin socket goes in the data directory"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let ((listener, owner), path) = match bound {
            Some(b) => b,
            None => (bind_at(&link)?, link.clone()),
        };
        let mut files = vec![path.clone()];
        if path != link {
            clear(&link)?;
            match std::os::unix::fs::symlink(&path, &link) {
                Ok(()) => files.push(link.clone()),
                Err(e) => log::warn!(
                    "cannot link {} to the admin socket: {e}; `qpc-server status` needs --socket {}",
                    link.display(),
                    path.display()
                ),
            }
        }
        log::info!("admin socket {} (qpc-server status --data-dir {})", path.display(), data_dir.display());
        Ok(AdminSocket { listener, owner, cleanup: Cleanup(files) })
    }

    /// Starts answering; the returned value removes the socket when dropped.
    pub fn start(self, relay: Rc<Relay>, facts: Rc<Facts>) -> Cleanup {
        let AdminSocket { listener, owner, cleanup } = self;
        tokio::task::spawn_local(accept_loop(Rc::new(Admin { relay, facts, owner }), listener));
        cleanup
    }
}

struct Admin {
    relay: Rc<Relay>,
    facts: Rc<Facts>,
    owner: u32,
}

async fn accept_loop(admin: Rc<Admin>, listener: UnixListener) {
    let mut shutdown = admin.relay.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::task::spawn_local(serve_client(Rc::clone(&admin), stream));
            }
            Err(e) => {
                log::warn!("admin socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The answer to one request.
enum Reply {
    Ok { note: Option<String>, body: String },
    Error(String),
}

impl Reply {
    fn ok(body: String) -> Reply {
        Reply::Ok { note: None, body }
    }

    fn encode(&self) -> String {
        match self {
            Reply::Ok { note: None, body } => format!("ok\n{body}"),
            Reply::Ok { note: Some(note), body } => format!("ok {}\n{body}", one_line(note)),
            Reply::Error(message) => format!("error {}\n", one_line(message)),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

async fn serve_client(admin: Rc<Admin>, stream: UnixStream) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            log::warn!("admin socket: cannot tell who connected: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    // The request is read first, even from a caller that will be refused:
    // closing on unread data would reset the connection before the caller
    // reads why.
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let request = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let reply = if uid != 0 && uid != admin.owner {
        log::info!("admin socket: refused uid {uid} (only root and uid {} may use it)", admin.owner);
        Reply::Error(format!(
            "permission denied: only root and the relay's own user (uid {}) may use the admin socket; you are uid {uid}",
            admin.owner
        ))
    } else {
        match request {
            Ok(Ok(n)) if n > 0 && line == "backup\n" => {
                if let Err(e) = send_backup(&admin, &mut write).await {
                    log::warn!("admin socket: backup failed: {e}");
                    // Only heard when nothing was sent yet; else the file is cut short.
                    let _ = write.write_all(Reply::Error(e).encode().as_bytes()).await;
                }
                let _ = write.shutdown().await;
                return;
            }
            Ok(Ok(n)) if n > 0 && line.ends_with('\n') => answer(&admin, line.trim_end()).await,
            Ok(Ok(0)) => return, // connected and left: a liveness check
            _ => Reply::Error("expected one request line, e.g. `status json`".into()),
        }
    };
    let _ = write.write_all(reply.encode().as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Copies the store with SQLite's backup API (committed state only: every
/// answered write is in it; the storage thread makes the copy between two
/// batches, so the loop goes on), then streams `ok` and the backup file. An error before the first byte is the caller's to send.
async fn send_backup(admin: &Admin, write: &mut tokio::net::unix::OwnedWriteHalf) -> Result<(), String> {
    use crate::store::backup;
    let dir = &admin.facts.data_dir;
    let copy = dir.join(backup::COPY_FILE);
    let key = admin.facts.db_key.clone();
    let target = copy.clone();
    // On the storage thread, between batches: the loop goes on meanwhile.
    admin
        .relay
        .store
        .read(move |conn| Ok(backup::copy_store(conn, &target, &key).map_err(|e| e.to_string())))
        .await
        .map_err(|e| e.to_string())??;
    let pieces = backup::Pieces::new(dir, &copy);
    // Open, the copy needs no name any more.
    let _ = std::fs::remove_file(&copy);
    let pieces = pieces.map_err(|e| e.to_string())?;
    write.write_all(b"ok\n").await.map_err(|e| e.to_string())?;
    let mut size = 0u64;
    for piece in pieces {
        // Past `ok`, a failure can only cut the file short, which the
        // caller's check of it finds.
        let piece = piece.map_err(|e| e.to_string())?;
        size += piece.len() as u64;
        write.write_all(&piece).await.map_err(|e| e.to_string())?;
    }
    log::info!("admin socket: backup of {size} bytes sent");
    Ok(())
}

async fn answer(admin: &Admin, request: &str) -> Reply {
    let (command, argument) = request.split_once(' ').unwrap_or((request, ""));
    let relay = &admin.relay;
    let result = match (command, argument) {
        ("status", format @ ("" | "text" | "json" | "prometheus")) => {
            Figures::gather(relay, &admin.facts).await.map_err(|e| e.to_string()).map(|f| {
                Reply::ok(match format {
                    "json" => f.json(),
                    "prometheus" => f.prometheus(),
                    _ => f.text(),
                })
            })
        }
        ("users", format @ ("" | "text" | "json")) => users(relay, format == "json").await,
        ("user-delete", name) => user_delete(relay, name).await,
        ("invite-token", "") => invite_token(relay).await,
        ("reports", format @ ("" | "text" | "json")) => moderation::reports(relay, format == "json")
            .await
            .map(|(note, body)| Reply::Ok { note, body }),
        ("report-dismiss", id) => moderation::dismiss(relay, id).await.map(Reply::ok),
        ("ban", argument) => moderation::ban(relay, argument).await.map(Reply::ok),
        ("unban", name) => moderation::unban(relay, name).await.map(Reply::ok),
        ("log-head", "") => log_head(relay).await,
        ("peer-add", url) => peer_add(relay, url).await,
        ("peer-list", format @ ("" | "text" | "json")) => Ok(peer_list(relay, format == "json").await),
        ("peer-remove", which) => peer_remove(relay, which).await,
        _ => Err(format!(
            "unknown request {request:?}: expected status [text|json|prometheus], users [text|json], user-delete NAME, invite-token, reports [text|json], report-dismiss ID, ban NAME [REASON], unban NAME, log-head, peer-add URL, peer-list [text|json] or peer-remove FINGERPRINT|HOST:PORT"
        )),
    };
    result.unwrap_or_else(Reply::Error)
}

/// One row per account: its device keys (16 hex digits each, as the client
/// shows them) and the messages waiting for them; as a table, or as a JSON
/// array of `{"username", "devices", "queued", "keys"}`.
async fn users(relay: &Relay, json: bool) -> Result<Reply, String> {
    struct User {
        name: String,
        keys: Vec<String>,
        queued: u64,
    }
    let (rows, unbound) = relay
        .store
        .read(|c| Ok((accounts::list(c)?, identities::count_unbound(c)?)))
        .await
        .map_err(|e| e.to_string())?;
    let mut users: Vec<User> = Vec::new();
    for (name, key, queued) in rows {
        if users.last().is_none_or(|u| u.name != name) {
            users.push(User { name, keys: Vec::new(), queued: 0 });
        }
        let Some(user) = users.last_mut() else { continue };
        if let Some(key) = key {
            user.keys.push(hex::encode(&key[..key.len().min(8)]));
            user.queued += queued;
        }
    }
    let body = if json {
        let rows: Vec<String> = users
            .iter()
            .map(|u| {
                let keys: Vec<String> = u.keys.iter().map(|k| json_string(k)).collect();
                format!(
                    "{{\"username\":{},\"devices\":{},\"queued\":{},\"keys\":[{}]}}",
                    json_string(&u.name),
                    u.keys.len(),
                    u.queued,
                    keys.join(",")
                )
            })
            .collect();
        format!("[{}]\n", rows.join(","))
    } else {
        let width = users.iter().map(|u| u.name.len()).max().unwrap_or(0).max(8);
        let mut body = format!("{:<width$}  {:>7}  {:>6}  DEVICE KEYS\n", "USERNAME", "DEVICES", "QUEUED");
        for u in &users {
            body.push_str(&format!(
                "{:<width$}  {:>7}  {:>6}  {}\n",
                u.name,
                u.keys.len(),
                u.queued,
                u.keys.join(" ")
            ));
        }
        body
    };
    let note = match (users.len(), unbound) {
        (0, 0) => Some("no accounts on this relay yet".to_string()),
        (_, 0) => None,
        (_, n) => Some(format!("{n} more identities use the relay without an account (open registration)")),
    };
    Ok(Reply::Ok { note, body })
}

/// Removes the account, its device keys and everything stored for them
/// (queues, KeyPackages, hybrid keys), in one transaction, then closes the
/// connections that speak for them. Messages the user sent others stay
/// with their recipients.
async fn user_delete(relay: &Rc<Relay>, name: &str) -> Result<Reply, String> {
    check_username(name).map_err(|r| r.message)?;
    let username = name.to_string();
    let deleted =
        relay.store.write(move |tx| accounts::delete(tx, &username).map_err(StoreError::from)).await;
    let Deleted { keys, messages } = match deleted {
        Ok(Some(d)) => d,
        Ok(None) => return Err(format!("no account named {name:?} on this relay")),
        Err(e) => return Err(e.to_string()),
    };
    for key in &keys {
        if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
            relay.hub.disconnect(key, "account deleted by the relay's owner");
        }
    }
    log::info!(
        "admin: deleted account {name:?} with {} device keys and {messages} queued messages",
        keys.len()
    );
    Ok(Reply::ok(format!(
        "deleted account {name:?}: {} device keys, {messages} queued messages\n",
        keys.len()
    )))
}

/// The key transparency log's signed tree head now: size, root, time,
/// signature and the log key that verifies it.
async fn log_head(relay: &Rc<Relay>) -> Result<Reply, String> {
    let head = relay.log.head(&relay.store).await.map_err(|e| e.to_string())?;
    Ok(Reply::ok(format!(
        "size      {}\nroot      {}\ntime_ms   {}\nsignature {}\nlog_key   {}\n",
        head.size,
        head.root_hex(),
        head.time_ms,
        hex::encode(head.signature),
        hex::encode(relay.log.public_key())
    )))
}

/// Mints a one-time registration token; only its SHA-256 is stored, and
/// registering with it spends it (see `cmd::accounts`).
async fn invite_token(relay: &Rc<Relay>) -> Result<Reply, String> {
    let mut raw = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    relay
        .store
        .write(move |tx| accounts::add_token(tx, &hash, now_ms()).map_err(StoreError::from))
        .await
        .map_err(|e| e.to_string())?;
    log::info!("admin: minted a one-time registration token");
    let note = (relay.registration != Registration::Token).then(|| {
        format!(
            "registration is {} on this relay: invite tokens count only with --registration token",
            relay.registration.name()
        )
    });
    Ok(Reply::Ok { note, body: format!("{token}\n") })
}

/// Rewrites `path` with the Prometheus text every `every`, atomically (a
/// temporary file beside it, renamed over it), until shutdown; then removes
/// it, so that a stopped relay shows as absent rather than frozen.
pub async fn metrics_loop(relay: Rc<Relay>, facts: Rc<Facts>, path: PathBuf, every: Duration) {
    let mut shutdown = relay.shutdown.clone();
    let mut failing = false;
    loop {
        let written = Figures::gather(&relay, &facts)
            .await
            .map_err(|e| e.to_string())
            .and_then(|f| write_atomically(&path, f.prometheus().as_bytes()).map_err(|e| e.to_string()));
        match written {
            Err(e) if !failing => {
                log::error!("metrics file {}: {e}", path.display());
                failing = true;
            }
            Ok(()) if failing => {
                log::info!("metrics file {} written again", path.display());
                failing = false;
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Writes `bytes` to `path` so that readers see the old or the new file,
/// never a part. The temporary name does not end in `.prom`, so the
/// textfile collector ignores it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Adds (or re-addresses) a peer relay; its forwarder starts at once.
async fn peer_add(relay: &Rc<Relay>, url: &str) -> Result<Reply, String> {
    let url: crate::fed::address::PeerUrl = url.parse()?;
    if url.fingerprint == relay.fed.fingerprint() {
        return Err(
            "that fingerprint is this relay's own certificate: a relay does not peer with itself".into()
        );
    }
    let peer = crate::store::peers::Peer {
        fingerprint: url.fingerprint,
        host: url.host,
        port: url.port,
        source: "admin".into(),
    };
    let stored = peer.clone();
    let new = relay
        .store
        .write(move |tx| crate::store::peers::upsert(tx, &stored, now_ms()).map_err(StoreError::from))
        .await
        .map_err(|e| e.to_string())?;
    relay.fed.add(relay, peer.clone());
    log::info!(
        "admin: peer {} {} (fingerprint {})",
        peer.address(),
        if new { "added" } else { "updated" },
        peer.fingerprint
    );
    Ok(Reply::Ok {
        note: Some(
            "the peer's owner must add this relay too (qpc-server status shows this relay's fingerprint)"
                .into(),
        ),
        body: format!(
            "peer {} {}: fingerprint {}\n",
            peer.address(),
            if new { "added" } else { "updated" },
            peer.fingerprint
        ),
    })
}

/// Each peer: address, fingerprint, whether a link is up, what is queued
/// for it and the last error.
async fn peer_list(relay: &Rc<Relay>, json: bool) -> Reply {
    let rows = crate::status::peer_rows(relay).await;
    let body = if json {
        format!("[{}]\n", rows.iter().map(|r| r.json()).collect::<Vec<_>>().join(","))
    } else {
        let mut body = String::from("PEER  FINGERPRINT  REACHABLE  QUEUED  LAST ERROR\n");
        for r in &rows {
            body.push_str(&r.line());
            body.push('\n');
        }
        body
    };
    let note =
        rows.is_empty().then(|| "no peers yet: qpc-server peer add qpc://HOST:PORT#FINGERPRINT".to_string());
    Reply::Ok { note, body }
}

/// Removes a peer (by fingerprint or HOST:PORT): its links close, its
/// queued messages are given up and their senders told.
async fn peer_remove(relay: &Rc<Relay>, which: &str) -> Result<Reply, String> {
    let which = which.trim().to_ascii_lowercase();
    let peer = relay
        .fed
        .peers()
        .into_iter()
        .find(|p| p.fingerprint == which || p.address() == which)
        .ok_or_else(|| {
            format!("no peer {which:?}: give its fingerprint or HOST:PORT as qpc-server peer list shows it")
        })?;
    let fp = peer.fingerprint.clone();
    let dropped = relay
        .store
        .write(move |tx| {
            let n = crate::store::outbound::drop_peer(tx, &fp, now_ms())?;
            crate::store::peers::remove(tx, &fp)?;
            Ok::<_, StoreError>(n)
        })
        .await
        .map_err(|e| e.to_string())?;
    relay.fed.remove(&peer.fingerprint);
    log::info!("admin: peer {} removed; {dropped} queued messages given up", peer.address());
    let note = (peer.source == "config").then(|| {
        "this peer is also in the configuration (--peer / UCI list peer): remove it there too, or it returns at the next start".to_string()
    });
    Ok(Reply::Ok {
        note,
        body: format!("peer {} removed; {dropped} messages queued for it given up\n", peer.address()),
    })
}

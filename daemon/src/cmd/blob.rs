//! Blobs (700-705): files, encrypted by their sender, stored in chunks.
//!
//! The bytes live in the blob directory, one file per blob named by its id
//! in hex (on USB storage if the owner says so: `--blob-dir`); what the
//! relay knows of them lives in `store::blobs`. Chunks are streamed to and
//! from the file one at a time, so a blob is never held in memory whole.
//!
//! The story of an upload: BlobUploadStart checks every limit against the
//! declared size (largest blob, the account's bytes, the relay's bytes, the
//! free space on the blob directory) before any byte is stored, or finds
//! the upload already under that id (a resume). Each BlobUploadChunk must
//! be the next chunk: its SHA-256 is checked, it is written at its offset
//! and synced, and only then recorded, so `received_chunks` never claims a
//! byte the disk does not hold. BlobUploadFinish checks the blob hash (the
//! SHA-256 of the chunk hashes) and only then offers the blob to readers:
//! nothing partial is ever downloadable. A reader needs the blob id and its
//! read token (the relay keeps only the token's SHA-256); BlobReceived from
//! every announced recipient, or the end of the lifetime, deletes it.
//!
//! File I/O is plain blocking `std::fs`, run on the storage thread (one
//! chunk, at most 1 MiB, 256 KiB from the qpc client, per job) so that the
//! event loop never waits for the disk.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};

use super::auth::Proven;
use super::enqueue::MAX_RECIPIENTS;
use crate::refusal::{identity_key, Refusal};
use crate::server::{Relay, Session};
use crate::store::blobs::{self, Blob, Caps, NewBlob, StartRefused};
use crate::store::{now_ms, StoreError};

/// Bytes of a blob id.
pub const ID_LEN: usize = 16;
/// Smallest chunk size accepted: smaller would cost a row and a sync per
/// few bytes.
pub const MIN_CHUNK: u32 = 16 * 1024;
/// Largest range one download answers.
pub const MAX_RANGE: u32 = 1 << 20;
/// Room a request needs besides a chunk's bytes (ids, hashes, framing).
const CHUNK_OVERHEAD: u32 = 1024;
/// Space left free on the blob directory's file system for everything
/// else (the database may share it).
const DISK_RESERVE: u64 = 2 << 20;

/// The blob directory (cheap to clone: jobs for the storage thread take one).
#[derive(Clone)]
pub struct BlobDir {
    path: std::sync::Arc<Path>,
}

impl BlobDir {
    /// Creates the directory if needed.
    pub fn open(path: &Path) -> std::io::Result<BlobDir> {
        std::fs::create_dir_all(path)?;
        Ok(BlobDir { path: path.into() })
    }

    /// The ids of the blob files in the directory.
    fn file_ids(&self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| hex::decode(n).ok()).filter(|id| id.len() == ID_LEN)
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn file(&self, id: &[u8]) -> PathBuf {
        self.path.join(hex::encode(id))
    }

    /// Writes `data` at `offset` and syncs it. On failure the file is cut
    /// back to `offset`, giving back what the failed write took.
    fn write_chunk(&self, id: &[u8], offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut file = OpenOptions::new().create(true).truncate(false).write(true).open(self.file(id))?;
        let written = file
            .set_len(offset)
            .and_then(|()| std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)))
            .and_then(|_| file.write_all(data))
            .and_then(|()| file.sync_data());
        if written.is_err() {
            let _ = file.set_len(offset);
        }
        written
    }

    fn read_range(&self, id: &[u8], offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let file = File::open(self.file(id))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn remove(&self, id: &[u8]) {
        match std::fs::remove_file(self.file(id)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                log::error!("cannot remove blob file {}: {e}", self.file(id).display())
            }
            _ => {}
        }
    }

    /// Bytes an unprivileged writer may still use on the directory's file system.
    fn free_bytes(&self) -> std::io::Result<u64> {
        let s = rustix::fs::statvfs(&*self.path)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }
}

/// Runs `f` on the blob directory on the storage thread.
async fn on_disk<T: Send + 'static>(
    relay: &Relay,
    f: impl FnOnce(&BlobDir) -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>, StoreError> {
    let dir = relay.blobs.clone();
    relay.store.file_io(move || f(&dir)).await
}

/// Removes blob `id`'s file (a failure is logged: the next start removes
/// what no row knows).
async fn remove_file(relay: &Relay, id: &[u8]) {
    let id = id.to_vec();
    if let Err(e) = on_disk(relay, move |dir| {
        dir.remove(&id);
        Ok(())
    })
    .await
    {
        log::error!("cannot remove a blob file: {e}");
    }
}

fn blob_id(bytes: &[u8]) -> Result<[u8; ID_LEN], Refusal> {
    bytes
        .try_into()
        .map_err(|_| Refusal::bad_request(format!("blob_id must be {ID_LEN} bytes, got {}", bytes.len())))
}

fn hash32(field: &str, bytes: &[u8]) -> Result<[u8; 32], Refusal> {
    bytes
        .try_into()
        .map_err(|_| Refusal::bad_request(format!("{field} must be 32 bytes, got {}", bytes.len())))
}

fn no_upload() -> Refusal {
    Refusal::new(
        Status::NotFound,
        "no upload under this blob id (it expired, or was never started: BlobUploadStart first)",
    )
}

fn mib(n: u64) -> String {
    format!("{n} bytes ({:.1} MiB)", n as f64 / f64::from(1 << 20))
}

/// The live blob `id`, if any.
async fn live_blob(relay: &Relay, id: [u8; ID_LEN]) -> Result<Option<Blob>, StoreError> {
    let now = now_ms();
    relay.store.read(move |c| blobs::get(c, &id, now)).await
}

/// The live blob `id` of its uploader `me`.
async fn own_blob(relay: &Relay, me: Proven, id: [u8; ID_LEN]) -> Result<Blob, Refusal> {
    let blob = live_blob(relay, id).await?.ok_or_else(no_upload)?;
    if blob.owner != me.key() {
        return Err(Refusal::new(Status::Forbidden, "this blob id belongs to another identity's upload"));
    }
    Ok(blob)
}

/// The complete blob `id` that `token` opens. A wrong token reads as an
/// unknown blob: without the capability nothing is learned.
async fn readable_blob(relay: &Relay, id: &[u8], token: &[u8]) -> Result<Blob, Refusal> {
    let id = blob_id(id)?;
    let token = hash32("read_token", token)?;
    let unknown = || {
        Refusal::new(
            Status::NotFound,
            "no blob with this id and read token (expired, or deleted once every recipient had it)",
        )
    };
    let blob = live_blob(relay, id).await?.ok_or_else(unknown)?;
    if Sha256::digest(token).as_slice() != blob.read_token_hash.as_slice() {
        return Err(unknown());
    }
    if !blob.complete {
        return Err(Refusal::new(
            Status::Unavailable,
            format!(
                "the blob is still being uploaded ({} of {} chunks); try again later",
                blob.received_chunks,
                blob.chunks()
            ),
        ));
    }
    Ok(blob)
}

fn largest_chunk(relay: &Relay) -> u32 {
    relay.limits.max_payload.saturating_sub(CHUNK_OVERHEAD).clamp(MIN_CHUNK, MAX_RANGE)
}

pub async fn upload_start(
    relay: &Rc<Relay>,
    session: &Session,
    me: Proven,
    req: pb::BlobUploadStartRequest,
) -> Result<pb::BlobUploadStartResponse, Refusal> {
    let id = blob_id(&req.blob_id)?;
    let blob_sha256 = hash32("blob_sha256", &req.blob_sha256)?;
    let read_token_hash = hash32("read_token_hash", &req.read_token_hash)?;
    let limits = &relay.limits;
    if req.size == 0 {
        return Err(Refusal::bad_request("size is 0: an empty file needs no blob"));
    }
    if req.size > limits.blob_max_bytes {
        return Err(Refusal::new(
            Status::TooLarge,
            format!(
                "a blob of {} is over the largest this relay takes, {} (--blob-max-bytes)",
                mib(req.size),
                mib(limits.blob_max_bytes)
            ),
        ));
    }
    let largest = largest_chunk(relay);
    if req.chunk_size < MIN_CHUNK || req.chunk_size > largest {
        return Err(Refusal::bad_request(format!(
            "chunk_size {} is outside {MIN_CHUNK}..={largest} bytes",
            req.chunk_size
        )));
    }
    if req.recipient_keys.len() > MAX_RECIPIENTS {
        return Err(Refusal::new(Status::TooLarge, format!("at most {MAX_RECIPIENTS} recipient_keys")));
    }
    let recipients: Vec<[u8; 32]> =
        req.recipient_keys.iter().map(|k| identity_key("recipient_keys[]", k)).collect::<Result<_, _>>()?;
    let now = now_ms();
    let resuming = live_blob(relay, id).await?.is_some();
    if !resuming {
        let pending = relay.store.read(move |c| blobs::pending_bytes(c, now)).await?;
        let free = on_disk(relay, BlobDir::free_bytes).await?.map_err(|e| {
            log::error!("blob directory {}: {e}", relay.blobs.path.display());
            Refusal::new(Status::Unavailable, "the relay's blob storage cannot be read; try again later")
        })?;
        let needed = req.size.saturating_add(pending).saturating_add(DISK_RESERVE);
        if free < needed {
            return Err(Refusal::new(
                Status::QuotaExceeded,
                format!(
                    "the relay's blob storage is full: {} free, this blob needs {} (plus {} for \
                     uploads under way and {} kept free)",
                    mib(free),
                    mib(req.size),
                    mib(pending),
                    mib(DISK_RESERVE)
                ),
            ));
        }
    }
    let account = session.account.borrow().clone().unwrap_or_else(|| hex::encode(me.key()));
    let caps = Caps { account_bytes: limits.blob_account_bytes, total_bytes: limits.blob_cap_bytes };
    let lifetime_ms = i64::try_from(limits.blob_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (size, chunk_size) = (req.size, req.chunk_size);
    let started = relay
        .store
        .write(move |c| {
            let new = NewBlob {
                id: &id,
                owner: me.key(),
                account: &account,
                size,
                chunk_size,
                blob_sha256: &blob_sha256,
                read_token_hash: &read_token_hash,
                recipients: &recipients,
                expires_at_ms: now.saturating_add(lifetime_ms),
            };
            Ok::<_, StoreError>(blobs::start(c, &new, caps, now)?)
        })
        .await?
        .map_err(|refused| match refused {
            StartRefused::Taken => {
                Refusal::new(Status::Forbidden, "this blob id belongs to another identity's upload")
            }
            StartRefused::Mismatch => Refusal::new(
                Status::Conflict,
                "an upload under this blob id has another size, chunk size, hash or read token",
            ),
            StartRefused::Account { held, cap } => Refusal::new(
                Status::QuotaExceeded,
                format!(
                    "your account's blobs would take {}, over its {} (--blob-account-bytes): \
                     wait until earlier files are fetched or expire",
                    mib(held.saturating_add(size)),
                    mib(cap)
                ),
            ),
            StartRefused::Total { held, cap } => Refusal::new(
                Status::QuotaExceeded,
                format!(
                    "the relay's blobs would take {}, over its cap of {} (--blob-cap-bytes)",
                    mib(held.saturating_add(size)),
                    mib(cap)
                ),
            ),
        })?;
    if started.new {
        // A file under this id from an expired blob the sweep has not reached.
        remove_file(relay, &id).await;
    }
    let b = started.blob;
    Ok(pb::BlobUploadStartResponse {
        received_chunks: b.received_chunks,
        complete: b.complete,
        expires_at_ms: u64::try_from(b.expires_at_ms).unwrap_or(0),
    })
}

pub async fn upload_chunk(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::BlobUploadChunkRequest,
) -> Result<pb::BlobUploadChunkResponse, Refusal> {
    let id = blob_id(&req.blob_id)?;
    let sha = hash32("sha256", &req.sha256)?;
    let blob = own_blob(relay, me, id).await?;
    let index = req.index;
    let chunks = blob.chunks();
    if index >= chunks {
        return Err(Refusal::bad_request(format!(
            "chunk {index} is past the declared size: {} bytes in chunks of {} are chunks 0..{chunks}",
            blob.size, blob.chunk_size
        )));
    }
    if index > blob.received_chunks {
        return Err(Refusal::bad_request(format!(
            "chunk {index} is out of order: the relay holds chunks 0..{0}, send chunk {0} next",
            blob.received_chunks
        )));
    }
    let expected = blob.chunk_len(index);
    if req.data.len() as u64 != expected {
        return Err(Refusal::bad_request(format!(
            "chunk {index} has {} bytes, expected {expected} (blob of {} bytes in chunks of {})",
            req.data.len(),
            blob.size,
            blob.chunk_size
        )));
    }
    if Sha256::digest(&req.data).as_slice() != sha {
        return Err(Refusal::bad_request(format!(
            "chunk {index}: its SHA-256 does not match the bytes sent (damaged on the way?); nothing stored"
        )));
    }
    if index < blob.received_chunks {
        // A retry of a chunk the relay holds: the same bytes are answered again.
        let held = relay.store.read(move |c| blobs::chunk_hash(c, &id, index)).await?;
        if held.as_deref() != Some(&sha[..]) {
            return Err(Refusal::new(
                Status::Conflict,
                format!("chunk {index} is held already with other bytes"),
            ));
        }
        return Ok(pb::BlobUploadChunkResponse { received_chunks: blob.received_chunks });
    }
    let offset = index * u64::from(blob.chunk_size);
    let data = req.data;
    if let Err(e) = on_disk(relay, move |dir| dir.write_chunk(&id, offset, &data)).await? {
        return Err(if e.kind() == ErrorKind::StorageFull || e.kind() == ErrorKind::QuotaExceeded {
            log::warn!("blob directory {} is full: {e}", relay.blobs.path.display());
            Refusal::new(
                Status::QuotaExceeded,
                format!(
                    "the relay's blob storage is full (no space left on the device); chunk {index} was \
                     not stored and the upload can resume from it later"
                ),
            )
        } else {
            log::error!("writing blob file {}: {e}", relay.blobs.file(&id).display());
            Refusal::new(
                Status::Internal,
                format!("the relay could not write chunk {index}; it was not stored"),
            )
        });
    }
    let received =
        relay.store.write(move |c| Ok::<_, StoreError>(blobs::add_chunk(c, &id, index, &sha)?)).await?;
    Ok(pb::BlobUploadChunkResponse { received_chunks: received })
}

pub async fn upload_finish(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::BlobUploadFinishRequest,
) -> Result<pb::BlobUploadFinishResponse, Refusal> {
    let id = blob_id(&req.blob_id)?;
    let blob = own_blob(relay, me, id).await?;
    let expires_at_ms = u64::try_from(blob.expires_at_ms).unwrap_or(0);
    if blob.complete {
        return Ok(pb::BlobUploadFinishResponse { expires_at_ms });
    }
    if blob.received_chunks < blob.chunks() {
        return Err(Refusal::bad_request(format!(
            "the relay holds chunks 0..{0} of {1}: send chunk {0} next",
            blob.received_chunks,
            blob.chunks()
        )));
    }
    let hashes = relay.store.read(move |c| blobs::chunk_hashes(c, &id)).await?;
    if Sha256::digest(&hashes).as_slice() != blob.blob_sha256.as_slice() {
        relay.store.write(move |c| Ok::<_, StoreError>(blobs::delete(c, &id)?)).await?;
        remove_file(relay, &id).await;
        return Err(Refusal::bad_request(
            "the chunks do not add up to the blob_sha256 declared at the start; the upload was \
             deleted: upload the file again",
        ));
    }
    relay.store.write(move |c| Ok::<_, StoreError>(blobs::mark_complete(c, &id)?)).await?;
    Ok(pb::BlobUploadFinishResponse { expires_at_ms })
}

pub async fn status(
    relay: &Relay,
    me: Proven,
    req: pb::BlobStatusRequest,
) -> Result<pb::BlobStatusResponse, Refusal> {
    let blob = live_blob(relay, blob_id(&req.blob_id)?).await?;
    // Another identity's blob reads as none: nothing is learned by asking.
    Ok(match blob.filter(|b| b.owner == me.key()) {
        None => pb::BlobStatusResponse::default(),
        Some(b) => pb::BlobStatusResponse {
            exists: true,
            size: b.size,
            chunk_size: b.chunk_size,
            received_chunks: b.received_chunks,
            complete: b.complete,
            expires_at_ms: u64::try_from(b.expires_at_ms).unwrap_or(0),
        },
    })
}

pub async fn download(
    relay: &Relay,
    req: pb::BlobDownloadRequest,
) -> Result<pb::BlobDownloadResponse, Refusal> {
    let blob = readable_blob(relay, &req.blob_id, &req.read_token).await?;
    if req.offset > blob.size {
        return Err(Refusal::bad_request(format!(
            "offset {} is past the end of the blob ({} bytes)",
            req.offset, blob.size
        )));
    }
    let len = u64::from(req.length.min(MAX_RANGE)).min(blob.size - req.offset);
    let (id, offset) = (blob.id.clone(), req.offset);
    let data = on_disk(relay, move |dir| dir.read_range(&id, offset, len as usize)).await?.map_err(|e| {
        log::error!("reading blob file {}: {e}", relay.blobs.file(&blob.id).display());
        Refusal::new(Status::Internal, "the relay could not read this blob from its storage")
    })?;
    let chunk_size = u64::from(blob.chunk_size);
    let index = req.offset / chunk_size;
    let mut chunk_sha256 = Vec::new();
    if req.offset.is_multiple_of(chunk_size) && len == blob.chunk_len(index) && len > 0 {
        let id = blob.id.clone();
        let held = relay.store.read(move |c| blobs::chunk_hash(c, &id, index)).await?.unwrap_or_default();
        if Sha256::digest(&data).as_slice() != held.as_slice() {
            log::error!("blob {} chunk {index} is damaged on disk", hex::encode(&blob.id));
            return Err(Refusal::new(
                Status::Internal,
                format!("chunk {index} of this blob is damaged on the relay's storage"),
            ));
        }
        chunk_sha256 = held;
    }
    Ok(pb::BlobDownloadResponse {
        data,
        size: blob.size,
        chunk_size: blob.chunk_size,
        blob_sha256: blob.blob_sha256,
        chunk_sha256,
    })
}

pub async fn received(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::BlobReceivedRequest,
) -> Result<pb::BlobReceivedResponse, Refusal> {
    let blob = readable_blob(relay, &req.blob_id, &req.read_token).await?;
    let id = blob.id.clone();
    let deleted = relay
        .store
        .write(move |c| {
            let all = blobs::mark_received(c, &id, &me.key())?;
            if all {
                blobs::delete(c, &id)?;
            }
            Ok::<_, StoreError>(all)
        })
        .await?;
    if deleted {
        remove_file(relay, &blob.id).await;
        log::debug!("blob {} received by every recipient: deleted", hex::encode(&blob.id));
    }
    Ok(pb::BlobReceivedResponse { deleted })
}

/// Live blobs and their declared bytes, for the status.
pub async fn totals(relay: &Relay) -> Result<(u64, u64), StoreError> {
    let now = now_ms();
    relay.store.read(move |c| blobs::totals(c, now)).await
}

/// Removes files no row knows (left by a crash between deleting a row and
/// its file).
async fn remove_orphans(relay: &Relay) -> Result<(), String> {
    let ids =
        on_disk(relay, BlobDir::file_ids).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let orphans = relay
        .store
        .read(move |c| {
            let mut orphans = Vec::new();
            for id in ids {
                if !blobs::known(c, &id)? {
                    orphans.push(id);
                }
            }
            Ok(orphans)
        })
        .await
        .map_err(|e| e.to_string())?;
    for id in &orphans {
        log::info!("removing orphaned blob file {}", relay.blobs.file(id).display());
        remove_file(relay, id).await;
    }
    Ok(())
}

/// Deletes blobs past their lifetime, rows first (a crash then leaves an
/// orphan file, which the next start removes, never a row without bytes).
pub async fn sweep_loop(relay: Rc<Relay>) {
    let every = Duration::from_secs((relay.limits.blob_lifetime_secs / 4).clamp(1, 60));
    let mut shutdown = relay.shutdown.clone();
    if let Err(e) = remove_orphans(&relay).await {
        log::error!("blob directory {}: {e}", relay.blobs.path.display());
    }
    loop {
        match relay.store.write(|c| Ok::<_, StoreError>(blobs::expire(c, now_ms())?)).await {
            Ok(ids) => {
                for id in &ids {
                    remove_file(&relay, id).await;
                }
                if !ids.is_empty() {
                    log::info!("deleted {} blobs past their lifetime", ids.len());
                }
            }
            Err(e) => log::error!("sweeping expired blobs: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

//! Files through the relay's blob store (methods 700-705): encrypted here,
//! uploaded as ciphertext in chunks, announced inside an MLS application
//! message ([`FileAnnouncement`]), downloaded, checked and decrypted by
//! every reader.
//!
//! Encryption: ChaCha20-Poly1305 per chunk of `PLAIN_CHUNK` plaintext bytes
//! (each ciphertext chunk is 16 bytes longer, exactly the relay's chunk
//! size). The nonce is the chunk index (8 bytes, big-endian), three zero
//! bytes and a last-chunk flag; the associated data binds the blob id, the
//! index, the flag and the plaintext size, so chunks cannot be reordered,
//! dropped, moved to another blob or the file cut short without the tag
//! failing. The whole plaintext is checked against its SHA-256 at the end.
//!
//! Key, blob id and read token are derived (HKDF-SHA256) from the device's
//! secret seed and the file's SHA-256 and size: sending the same file again
//! from the same device names the same blob, which is what makes an upload
//! resumable without keeping anything on disk (run the same `send-file`
//! again and it continues from the last chunk the relay holds). Each key
//! encrypts only one plaintext, so a nonce never repeats with other data.
//! The cost: the relay can tell that one device sent the same file twice.
//!
//! The capability readers get is `blob_id ‖ read_token` (16 + 32 bytes) in
//! the announcement's `blob_id`; the relay holds only the token's SHA-256.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use qpc_proto::{pb, Method};
use sha2::{Digest, Sha256};

use crate::content::FileAnnouncement;
use crate::relay::{Relay, RelayError};

/// Plaintext bytes per chunk; with its 16-byte tag a chunk is 256 KiB.
pub const PLAIN_CHUNK: u32 = 256 * 1024 - TAG;
const TAG: u32 = 16;
const ID_LEN: usize = 16;
const TOKEN_LEN: usize = 32;
const AAD_LABEL: &[u8] = b"qpc file chunk v1";

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} changed while it was being sent; send it again")]
    Changed(PathBuf),
    #[error("{0} exists already; give another path to save to")]
    Exists(PathBuf),
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("the announcement is unusable: {0}")]
    BadAnnouncement(&'static str),
    #[error("the file from the relay does not check out: {0}; nothing was saved")]
    Corrupt(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

/// What an upload or download has done so far, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the file to derive its key (bytes read, of the size).
    Hashing { done: u64, total: u64 },
    /// Chunks on the relay (ciphertext bytes), `from` where this run began.
    Uploading { done: u64, total: u64, from: u64 },
    /// Plaintext bytes written, of the size.
    Downloading { done: u64, total: u64 },
}

/// The secrets of one file, derived from the device seed and its content.
struct FileKeys {
    key: [u8; 32],
    id: [u8; ID_LEN],
    token: [u8; TOKEN_LEN],
}

impl FileKeys {
    fn derive(seed: &[u8; 32], sha256: &[u8; 32], size: u64) -> FileKeys {
        let mut salt = sha256.to_vec();
        salt.extend_from_slice(&size.to_be_bytes());
        let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), seed);
        let mut keys = FileKeys { key: [0; 32], id: [0; ID_LEN], token: [0; TOKEN_LEN] };
        // The output lengths are far below HKDF's limit.
        let _ = hk.expand(b"qpc file key", &mut keys.key);
        let _ = hk.expand(b"qpc file blob id", &mut keys.id);
        let _ = hk.expand(b"qpc file read token", &mut keys.token);
        keys
    }
}

/// How a file of `size` bytes is cut.
#[derive(Debug, Clone, Copy)]
struct Layout {
    size: u64,
    plain_chunk: u32,
}

impl Layout {
    fn chunks(self) -> u64 {
        self.size.div_ceil(u64::from(self.plain_chunk)).max(1)
    }
    fn plain_len(self, index: u64) -> usize {
        let start = index * u64::from(self.plain_chunk);
        self.size.saturating_sub(start).min(u64::from(self.plain_chunk)) as usize
    }
    fn cipher_chunk(self) -> u32 {
        self.plain_chunk + TAG
    }
    fn cipher_size(self) -> u64 {
        self.size + self.chunks() * u64::from(TAG)
    }
}

fn nonce_and_aad(id: &[u8], index: u64, last: bool, size: u64) -> ([u8; 12], Vec<u8>) {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + ID_LEN + 17);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(id);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad.extend_from_slice(&size.to_be_bytes());
    (nonce, aad)
}

/// Reads plaintext chunk `index` of the file and encrypts it.
fn sealed_chunk(
    file: &File,
    path: &Path,
    keys: &FileKeys,
    layout: Layout,
    index: u64,
) -> Result<Vec<u8>, BlobError> {
    let mut plain = vec![0u8; layout.plain_len(index)];
    file.read_exact_at(&mut plain, index * u64::from(layout.plain_chunk)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BlobError::Changed(path.to_path_buf())
        } else {
            io(path)(e)
        }
    })?;
    let last = index + 1 == layout.chunks();
    let (nonce, aad) = nonce_and_aad(&keys.id, index, last, layout.size);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&keys.key));
    cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
        .map_err(|_| BlobError::Corrupt("encryption failed".into()))
}

/// A media type from the file name's extension (what a reader's viewer
/// needs); anything unknown is `application/octet-stream`.
pub fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A file name safe to save under: the last path component, without
/// control characters, never empty, `.` or `..`.
pub fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    match clean.trim() {
        "" | "." | ".." => "file".to_string(),
        s => s.to_string(),
    }
}

/// Encrypts `path` and uploads it (or the rest of it) for `recipients`
/// (the identity keys the announcement goes to); returns the announcement
/// to send them.
pub async fn upload(
    relay: &Relay,
    seed: &[u8; 32],
    path: &Path,
    recipients: &[[u8; 32]],
    progress: &mut dyn FnMut(Step),
) -> Result<FileAnnouncement, BlobError> {
    let mut file = File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(BlobError::NotAFile(path.to_path_buf()));
    }
    let size = meta.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
        progress(Step::Hashing { done: read.min(size), total: size });
        // Lets the connection's driver run (keep-alives) on this thread.
        tokio::task::yield_now().await;
    }
    drop(buf);
    if read != size {
        return Err(BlobError::Changed(path.to_path_buf()));
    }
    let sha256: [u8; 32] = hasher.finalize().into();
    let keys = FileKeys::derive(seed, &sha256, size);
    let layout = Layout { size, plain_chunk: PLAIN_CHUNK };
    // The blob hash needs every chunk's ciphertext hash before the start.
    let mut chunk_hashes = Vec::with_capacity(layout.chunks() as usize);
    for index in 0..layout.chunks() {
        chunk_hashes.push(<[u8; 32]>::from(Sha256::digest(sealed_chunk(&file, path, &keys, layout, index)?)));
        tokio::task::yield_now().await;
    }
    let blob_sha256 = Sha256::digest(chunk_hashes.concat()).to_vec();
    let start: pb::BlobUploadStartResponse = relay
        .call(
            Method::BlobUploadStart,
            &pb::BlobUploadStartRequest {
                blob_id: keys.id.to_vec(),
                size: layout.cipher_size(),
                chunk_size: layout.cipher_chunk(),
                blob_sha256,
                read_token_hash: Sha256::digest(keys.token).to_vec(),
                recipient_keys: recipients.iter().map(|r| r.to_vec()).collect(),
            },
        )
        .await?;
    let total = layout.cipher_size();
    let cipher_chunk = u64::from(layout.cipher_chunk());
    if !start.complete {
        let from = (start.received_chunks * cipher_chunk).min(total);
        progress(Step::Uploading { done: from, total, from });
        for index in start.received_chunks..layout.chunks() {
            let data = sealed_chunk(&file, path, &keys, layout, index)?;
            let sha256 = Sha256::digest(&data);
            if sha256.as_slice() != chunk_hashes[index as usize] {
                return Err(BlobError::Changed(path.to_path_buf()));
            }
            let req = pb::BlobUploadChunkRequest {
                blob_id: keys.id.to_vec(),
                index,
                sha256: sha256.to_vec(),
                data,
            };
            let _: pb::BlobUploadChunkResponse = relay.call(Method::BlobUploadChunk, &req).await?;
            progress(Step::Uploading { done: ((index + 1) * cipher_chunk).min(total), total, from });
        }
        let _: pb::BlobUploadFinishResponse = relay
            .call(Method::BlobUploadFinish, &pb::BlobUploadFinishRequest { blob_id: keys.id.to_vec() })
            .await?;
    } else {
        progress(Step::Uploading { done: total, total, from: total });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(FileAnnouncement {
        blob_id: [&keys.id[..], &keys.token[..]].concat(),
        key: keys.key.to_vec(),
        size,
        media_type: media_type(&name).to_string(),
        name,
        sha256: sha256.to_vec(),
        chunk_size: PLAIN_CHUNK,
        reply_to: Vec::new(),
    })
}

/// Downloads, checks and decrypts the file of `ann` into `dest` (written
/// beside it as `dest.part` and renamed only once the whole file checks
/// out), then tells the relay this reader has it.
pub async fn download(
    relay: &Relay,
    ann: &FileAnnouncement,
    dest: &Path,
    progress: &mut dyn FnMut(Step),
) -> Result<(), BlobError> {
    if ann.blob_id.len() != ID_LEN + TOKEN_LEN {
        return Err(BlobError::BadAnnouncement("the blob capability is not 48 bytes"));
    }
    let key: [u8; 32] =
        ann.key.as_slice().try_into().map_err(|_| BlobError::BadAnnouncement("the key is not 32 bytes"))?;
    if ann.chunk_size == 0 || ann.chunk_size > 1 << 20 {
        return Err(BlobError::BadAnnouncement("the chunk size is out of range"));
    }
    if dest.exists() {
        return Err(BlobError::Exists(dest.to_path_buf()));
    }
    let (id, token) = ann.blob_id.split_at(ID_LEN);
    let layout = Layout { size: ann.size, plain_chunk: ann.chunk_size };
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let mut out = File::create(&part).map_err(io(&part))?;
    let result = async {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        progress(Step::Downloading { done: 0, total: layout.size });
        for index in 0..layout.chunks() {
            let want = layout.plain_len(index) + TAG as usize;
            let req = pb::BlobDownloadRequest {
                blob_id: id.to_vec(),
                read_token: token.to_vec(),
                offset: index * u64::from(layout.cipher_chunk()),
                length: want as u32,
            };
            let r: pb::BlobDownloadResponse = relay.call(Method::BlobDownload, &req).await?;
            if r.size != layout.cipher_size() || r.data.len() != want {
                return Err(BlobError::Corrupt(format!(
                    "the relay holds {} bytes, the announcement says {}",
                    r.size,
                    layout.cipher_size()
                )));
            }
            if !r.chunk_sha256.is_empty() && Sha256::digest(&r.data).as_slice() != r.chunk_sha256.as_slice() {
                return Err(BlobError::Corrupt(format!("chunk {index} does not match its SHA-256")));
            }
            let last = index + 1 == layout.chunks();
            let (nonce, aad) = nonce_and_aad(id, index, last, layout.size);
            let plain =
                cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &r.data, aad: &aad }).map_err(
                    |_| BlobError::Corrupt(format!("chunk {index} does not decrypt (damaged or forged)")),
                )?;
            hasher.update(&plain);
            out.write_all(&plain).map_err(io(&part))?;
            written += plain.len() as u64;
            progress(Step::Downloading { done: written, total: layout.size });
        }
        if hasher.finalize().as_slice() != ann.sha256.as_slice() {
            return Err(BlobError::Corrupt("the file's SHA-256 is not the announced one".into()));
        }
        out.sync_all().map_err(io(&part))?;
        std::fs::rename(&part, dest).map_err(io(dest))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result?;
    let _: pb::BlobReceivedResponse = relay
        .call(
            Method::BlobReceived,
            &pb::BlobReceivedRequest { blob_id: id.to_vec(), read_token: token.to_vec() },
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bound_to_their_place() {
        let keys = FileKeys::derive(&[1; 32], &[2; 32], 10);
        let again = FileKeys::derive(&[1; 32], &[2; 32], 10);
        assert_eq!((keys.key, keys.id, keys.token), (again.key, again.id, again.token));
        let other = FileKeys::derive(&[3; 32], &[2; 32], 10);
        assert_ne!(keys.id, other.id, "another device names the same file differently");
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&keys.key));
        let (n0, a0) = nonce_and_aad(&keys.id, 0, false, 10);
        let sealed = cipher.encrypt(Nonce::from_slice(&n0), Payload { msg: b"hello", aad: &a0 }).unwrap();
        for (index, last, size) in [(1, false, 10), (0, true, 10), (0, false, 11)] {
            let (n, a) = nonce_and_aad(&keys.id, index, last, size);
            assert!(cipher.decrypt(Nonce::from_slice(&n), Payload { msg: &sealed, aad: &a }).is_err());
        }
        let (n, a) = nonce_and_aad(&other.id, 0, false, 10);
        assert!(cipher.decrypt(Nonce::from_slice(&n), Payload { msg: &sealed, aad: &a }).is_err());
    }

    #[test]
    fn layout_and_names() {
        let l = Layout { size: 0, plain_chunk: 100 };
        assert_eq!((l.chunks(), l.cipher_size()), (1, 16), "an empty file is one empty chunk");
        let l = Layout { size: 250, plain_chunk: 100 };
        assert_eq!((l.chunks(), l.plain_len(2), l.cipher_size()), (3, 50, 298));
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("a\nb.jpg"), "ab.jpg");
        assert_eq!(media_type("Photo.JPG"), "image/jpeg");
    }
}

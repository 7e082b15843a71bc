//! The blob service (methods 700-705) against the real relay: limits that
//! refuse before a byte is stored, expiry, capabilities, bad chunks, a full
//! disk, no plaintext on the relay's storage, and the relay's memory while
//! a 100 MiB blob goes up and down.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::SigningKey;
use qpc::blob::{self, BlobError};
use qpc::content::FileAnnouncement;
use qpc::relay::{Relay, RelayError};
use qpc_proto::{pb, Method, Status};
use rand::RngCore;
use sha2::{Digest, Sha256};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// The relay's chunk size for the qpc client's files.
const CHUNK: u32 = 256 * 1024;

async fn proven(server: &Server) -> (Relay, SigningKey) {
    let key = new_key();
    let relay = connect(server).await;
    relay.authenticate(&key).await.expect("prove an identity");
    (relay, key)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

fn write_file(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The files in the blob directory, with their sizes.
fn blob_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

async fn send(relay: &Relay, seed: &[u8; 32], path: &Path) -> Result<FileAnnouncement, BlobError> {
    blob::upload(relay, seed, path, &[], &mut |_| {}).await
}

async fn save(relay: &Relay, ann: &FileAnnouncement, dest: &Path) -> Result<(), BlobError> {
    blob::download(relay, ann, dest, &mut |_| {}).await
}

fn refused(e: &BlobError) -> (Status, String) {
    match e {
        BlobError::Relay(RelayError::Refused { status, message, .. }) => (*status, message.clone()),
        other => panic!("expected a refusal, got {other}"),
    }
}

fn refusal(e: RelayError) -> (Status, String) {
    match e {
        RelayError::Refused { status, message, .. } => (status, message),
        other => panic!("expected a refusal, got {other}"),
    }
}

fn seed() -> [u8; 32] {
    random_bytes(32).try_into().unwrap()
}

#[test]
fn every_limit_refuses_before_a_byte_is_stored() {
    let dir = TempDir::new("blob-limits");
    let data = dir.join("data");
    let server = Server::start(
        &data,
        &[
            "--blob-max-bytes",
            &(800 * KIB).to_string(),
            "--blob-account-bytes",
            &MIB.to_string(),
            "--blob-cap-bytes",
            &(1536 * KIB).to_string(),
        ],
    );
    let blobs = data.join("blobs");
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        let (bob, _) = proven(&server).await;
        let (carol, _) = proven(&server).await;
        let a_seed = seed();
        let first = random_bytes(600 * KIB as usize);
        let ann = send(&alice, &a_seed, &write_file(&dir, "first.bin", &first)).await.unwrap();
        let stored = blob_files(&blobs);
        let before = server.status();
        assert_eq!(num(&before, "blobs"), 1);

        let cases: [(&Relay, u64, Status, &str); 3] = [
            (&alice, 900 * KIB, Status::TooLarge, "--blob-max-bytes"),
            (&alice, 500 * KIB, Status::QuotaExceeded, "--blob-account-bytes"),
            (&carol, 700 * KIB, Status::QuotaExceeded, "--blob-cap-bytes"),
        ];
        // Bob's 500 KiB fits before the relay's cap is reached by Carol.
        send(&bob, &seed(), &write_file(&dir, "bob.bin", &random_bytes(500 * KIB as usize))).await.unwrap();
        let stored_with_bob = blob_files(&blobs);
        assert_eq!(stored_with_bob.len(), stored.len() + 1);
        for (who, size, status, flag) in cases {
            let path = write_file(&dir, "big.bin", &random_bytes(size as usize));
            let e = send(who, &seed(), &path).await.unwrap_err();
            let (got, message) = refused(&e);
            assert_eq!(got, status, "{size} bytes: {message}");
            assert!(message.contains(flag), "the refusal names {flag}: {message}");
            assert_eq!(blob_files(&blobs), stored_with_bob, "nothing written for a refused blob");
        }
        let after = server.status();
        assert_eq!(num(&after, "blobs"), 2);
        assert_eq!(num(&after, "blob_bytes"), num(&before, "blob_bytes") + 500 * KIB + 2 * 16);
        // What was stored is untouched and still reads back.
        let out = dir.join("first.out");
        save(&alice, &ann, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first);
    });
}

#[test]
fn an_expired_blob_is_gone_from_disk_and_no_longer_counts() {
    let dir = TempDir::new("blob-expiry");
    let data = dir.join("data");
    let server =
        Server::start(&data, &["--blob-lifetime-secs", "2", "--blob-account-bytes", &MIB.to_string()]);
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        let a_seed = seed();
        let ann = send(&alice, &a_seed, &write_file(&dir, "a.bin", &random_bytes(700 * KIB as usize)))
            .await
            .unwrap();
        assert_eq!(blob_files(&data.join("blobs")).len(), 1);
        let s = server.status();
        assert_eq!((num(&s, "blobs"), num(&s, "blob_lifetime_s")), (1, 2));
        let s = server.wait_status("the blob expired", |s| s["blobs"] == 0 && s["blob_bytes"] == 0);
        assert_eq!(num(&s, "blob_bytes"), 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !blob_files(&data.join("blobs")).is_empty() {
            assert!(Instant::now() < deadline, "the expired blob's file is still on disk");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, message) = refused(&save(&alice, &ann, &dir.join("late.bin")).await.unwrap_err());
        assert_eq!(status, Status::NotFound, "{message}");
        assert!(!dir.join("late.bin").exists() && !dir.join("late.bin.part").exists());
        // Its bytes no longer count: a file as large as the account's cap fits.
        send(&alice, &seed(), &write_file(&dir, "b.bin", &random_bytes(1000 * KIB as usize))).await.unwrap();
    });
}

#[test]
fn strangers_cannot_download_without_the_capability_nor_list() {
    let dir = TempDir::new("blob-strangers");
    let server = Server::start(&dir.join("data"), &[]);
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        let ann = send(&alice, &seed(), &write_file(&dir, "secret.bin", &random_bytes(300 * KIB as usize)))
            .await
            .unwrap();
        let (id, token) = ann.blob_id.split_at(16);
        let (stranger, _) = proven(&server).await;
        let download = |token: Vec<u8>| pb::BlobDownloadRequest {
            blob_id: id.to_vec(),
            read_token: token,
            offset: 0,
            length: CHUNK,
        };
        // Knowing the id is not enough: the token is the capability.
        let e = stranger
            .call::<_, pb::BlobDownloadResponse>(Method::BlobDownload, &download(random_bytes(32)))
            .await
            .unwrap_err();
        let (status, message) = refusal(e);
        assert_eq!(status, Status::NotFound, "{message}");
        let e = stranger.call::<_, pb::BlobDownloadResponse>(Method::BlobDownload, &download(vec![])).await;
        assert_eq!(refusal(e.unwrap_err()).0, Status::BadRequest);
        // The uploader's own calls tell a stranger nothing and change nothing.
        let st: pb::BlobStatusResponse =
            stranger.call(Method::BlobStatus, &pb::BlobStatusRequest { blob_id: id.to_vec() }).await.unwrap();
        assert_eq!(st, pb::BlobStatusResponse::default(), "another identity's blob reads as none");
        let e = stranger
            .call::<_, pb::BlobUploadFinishResponse>(
                Method::BlobUploadFinish,
                &pb::BlobUploadFinishRequest { blob_id: id.to_vec() },
            )
            .await
            .unwrap_err();
        assert_eq!(refusal(e).0, Status::Forbidden);
        let start = pb::BlobUploadStartRequest {
            blob_id: id.to_vec(),
            size: 100 * KIB,
            chunk_size: CHUNK,
            blob_sha256: vec![0; 32],
            read_token_hash: vec![0; 32],
            recipient_keys: vec![],
        };
        let e = stranger.call::<_, pb::BlobUploadStartResponse>(Method::BlobUploadStart, &start).await;
        assert_eq!(refusal(e.unwrap_err()).0, Status::Forbidden);
        // Anonymous: nothing at all, even with the capability.
        let anonymous = connect(&server).await;
        let e = anonymous
            .call::<_, pb::BlobDownloadResponse>(Method::BlobDownload, &download(token.to_vec()))
            .await
            .unwrap_err();
        assert_eq!(refusal(e).0, Status::Unauthenticated);
        // No method lists blobs: the ids after the blob methods are unknown.
        for unknown in [706u16, 710, 799] {
            assert!(Method::from_u16(unknown).is_none());
        }
        // With the capability, the stranger's connection could read it:
        // that is what the announcement hands to readers.
        let out = dir.join("read.bin");
        save(&stranger, &ann, &out).await.unwrap();
        assert_eq!(Sha256::digest(std::fs::read(&out).unwrap()).as_slice(), ann.sha256.as_slice());
    });
}

/// A BlobUploadStart for `pieces` (the chunks of `size` bytes) made by
/// hand, with a random id and read token.
fn hand_made_start(
    pieces: &[&[u8]],
    size: usize,
    chunk: usize,
) -> (Vec<u8>, Vec<u8>, pb::BlobUploadStartRequest) {
    let hashes: Vec<u8> = pieces.iter().flat_map(|p| Sha256::digest(p).to_vec()).collect();
    let (id, token) = (random_bytes(16), random_bytes(32));
    let start = pb::BlobUploadStartRequest {
        blob_id: id.clone(),
        size: size as u64,
        chunk_size: chunk as u32,
        blob_sha256: Sha256::digest(&hashes).to_vec(),
        read_token_hash: Sha256::digest(&token).to_vec(),
        recipient_keys: vec![],
    };
    (id, token, start)
}

fn chunk_req(id: &[u8], index: u64, data: &[u8]) -> pb::BlobUploadChunkRequest {
    pb::BlobUploadChunkRequest {
        blob_id: id.to_vec(),
        index,
        sha256: Sha256::digest(data).to_vec(),
        data: data.to_vec(),
    }
}

#[test]
fn bad_chunks_get_a_clear_error_and_lose_nothing() {
    let dir = TempDir::new("blob-bad");
    let data = dir.join("data");
    let server = Server::start(&data, &[]);
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        let chunk = 64 * KIB as usize;
        let bytes = random_bytes(3 * chunk + 1000);
        let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let (id, token, start) = hand_made_start(&pieces, bytes.len(), chunk);
        let started: pb::BlobUploadStartResponse = alice.call(Method::BlobUploadStart, &start).await.unwrap();
        assert_eq!((started.received_chunks, started.complete), (0, false));
        let call = |req: pb::BlobUploadChunkRequest| {
            let alice = &alice;
            async move { alice.call::<_, pb::BlobUploadChunkResponse>(Method::BlobUploadChunk, &req).await }
        };
        let r = call(chunk_req(&id, 0, pieces[0])).await.unwrap();
        assert_eq!(r.received_chunks, 1);

        let mut wrong_hash = chunk_req(&id, 1, pieces[1]);
        wrong_hash.sha256 = Sha256::digest(b"something else").to_vec();
        let mut bit_flip = chunk_req(&id, 1, pieces[1]);
        bit_flip.data[100] ^= 1;
        let cases = [
            (wrong_hash, Status::BadRequest, "SHA-256 does not match"),
            (bit_flip, Status::BadRequest, "SHA-256 does not match"),
            (
                chunk_req(&id, 2, pieces[2]),
                Status::BadRequest,
                "out of order: the relay holds chunks 0..1, send chunk 1 next",
            ),
            (chunk_req(&id, 4, pieces[3]), Status::BadRequest, "past the declared size"),
            (chunk_req(&id, 1, &pieces[1][..1000]), Status::BadRequest, "has 1000 bytes, expected 65536"),
            (chunk_req(&id, 0, pieces[1]), Status::Conflict, "held already with other bytes"),
            (chunk_req(&random_bytes(16), 0, pieces[0]), Status::NotFound, "BlobUploadStart first"),
            (chunk_req(&id[..5], 0, pieces[0]), Status::BadRequest, "blob_id must be 16 bytes"),
        ];
        let on_disk = blob_files(&data.join("blobs"));
        assert_eq!(on_disk, vec![(hex::encode(&id), chunk as u64)]);
        for (req, status, words) in cases {
            let (got, message) = refusal(call(req).await.unwrap_err());
            assert_eq!(got, status, "{message}");
            assert!(message.contains(words), "{words:?} in {message:?}");
            assert_eq!(blob_files(&data.join("blobs")), on_disk, "a refused chunk writes nothing");
        }
        let e = alice
            .call::<_, pb::BlobUploadFinishResponse>(
                Method::BlobUploadFinish,
                &pb::BlobUploadFinishRequest { blob_id: id.clone() },
            )
            .await
            .unwrap_err();
        let (status, message) = refusal(e);
        assert_eq!(status, Status::BadRequest);
        assert!(message.contains("send chunk 1 next"), "{message}");
        // Nothing partial is offered to a reader.
        let download =
            pb::BlobDownloadRequest { blob_id: id.clone(), read_token: token.clone(), offset: 0, length: 10 };
        let e = alice.call::<_, pb::BlobDownloadResponse>(Method::BlobDownload, &download).await.unwrap_err();
        let (status, message) = refusal(e);
        assert_eq!(status, Status::Unavailable, "{message}");
        assert!(message.contains("still being uploaded (1 of 4 chunks)"), "{message}");

        // A retried chunk is answered again; the rest completes the blob.
        assert_eq!(call(chunk_req(&id, 0, pieces[0])).await.unwrap().received_chunks, 1);
        for (i, p) in pieces.iter().enumerate().skip(1) {
            call(chunk_req(&id, i as u64, p)).await.unwrap();
        }
        let _: pb::BlobUploadFinishResponse = alice
            .call(Method::BlobUploadFinish, &pb::BlobUploadFinishRequest { blob_id: id.clone() })
            .await
            .unwrap();
        let mut back = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let req = pb::BlobDownloadRequest {
                blob_id: id.clone(),
                read_token: token.clone(),
                offset: (i * chunk) as u64,
                length: chunk as u32,
            };
            let r: pb::BlobDownloadResponse = alice.call(Method::BlobDownload, &req).await.unwrap();
            assert_eq!(r.chunk_sha256, Sha256::digest(p).to_vec(), "a whole chunk comes with its hash");
            back.extend_from_slice(&r.data);
        }
        assert_eq!(back, bytes);
        // A range anywhere, and past the end.
        let req = pb::BlobDownloadRequest {
            blob_id: id.clone(),
            read_token: token.clone(),
            offset: 70_000,
            length: 5,
        };
        let r: pb::BlobDownloadResponse = alice.call(Method::BlobDownload, &req).await.unwrap();
        assert_eq!((r.data.as_slice(), r.chunk_sha256.len()), (&bytes[70_000..70_005], 0));
        let past = pb::BlobDownloadRequest { offset: bytes.len() as u64 + 1, ..req };
        let e = alice.call::<_, pb::BlobDownloadResponse>(Method::BlobDownload, &past).await.unwrap_err();
        assert!(refusal(e).1.contains("past the end of the blob"));

        // A declared hash the chunks do not add up to: refused, and the
        // upload deleted rather than left to count against the caps.
        let id2 = random_bytes(16);
        let start2 = pb::BlobUploadStartRequest { blob_id: id2.clone(), blob_sha256: vec![7; 32], ..start };
        let _: pb::BlobUploadStartResponse = alice.call(Method::BlobUploadStart, &start2).await.unwrap();
        for (i, p) in pieces.iter().enumerate() {
            call(chunk_req(&id2, i as u64, p)).await.unwrap();
        }
        let e = alice
            .call::<_, pb::BlobUploadFinishResponse>(
                Method::BlobUploadFinish,
                &pb::BlobUploadFinishRequest { blob_id: id2.clone() },
            )
            .await
            .unwrap_err();
        assert!(refusal(e).1.contains("do not add up to the blob_sha256"));
        assert_eq!(blob_files(&data.join("blobs")).len(), 1);
        // Bad starts.
        for (req, words) in [
            (
                pb::BlobUploadStartRequest { blob_id: random_bytes(16), size: 0, ..start2.clone() },
                "size is 0",
            ),
            (
                pb::BlobUploadStartRequest { blob_id: random_bytes(16), chunk_size: 100, ..start2.clone() },
                "chunk_size 100",
            ),
            (
                pb::BlobUploadStartRequest {
                    blob_id: random_bytes(16),
                    read_token_hash: vec![1],
                    ..start2.clone()
                },
                "read_token_hash must be 32",
            ),
        ] {
            let e = alice.call::<_, pb::BlobUploadStartResponse>(Method::BlobUploadStart, &req).await;
            let (status, message) = refusal(e.unwrap_err());
            assert_eq!(status, Status::BadRequest);
            assert!(message.contains(words), "{words:?} in {message:?}");
        }
    });
}

#[test]
fn the_relay_stores_no_plaintext_and_deletes_once_every_recipient_has_it() {
    let dir = TempDir::new("blob-plain");
    let data = dir.join("data");
    let server = Server::start(&data, &[]);
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        let (bob1, bob1_key) = proven(&server).await;
        let (bob2, bob2_key) = proven(&server).await;
        let marker = b"PLAINTEXT-MARKER-qpc-";
        let text: Vec<u8> =
            (0..40_000u32).flat_map(|i| [&marker[..], i.to_string().as_bytes()].concat()).collect();
        let path = write_file(&dir, "notes.txt", &text);
        let recipients = [bob1_key.verifying_key().to_bytes(), bob2_key.verifying_key().to_bytes()];
        let ann = blob::upload(&alice, &seed(), &path, &recipients, &mut |_| {}).await.unwrap();
        assert_eq!((ann.name.as_str(), ann.media_type.as_str()), ("notes.txt", "text/plain"));
        let files = blob_files(&data.join("blobs"));
        assert_eq!(files.len(), 1);
        let stored = std::fs::read(data.join("blobs").join(&files[0].0)).unwrap();
        assert_eq!(
            stored.len() as u64,
            text.len() as u64 + 16 * (text.len() as u64).div_ceil(u64::from(CHUNK - 16))
        );
        assert!(!stored.windows(marker.len()).any(|w| w == marker), "the marker is not on the relay's disk");
        assert!(!stored.windows(16).any(|w| w == &text[1000..1016]), "no 16 plaintext bytes either");
        let db = std::fs::read(data.join("qpc.db")).unwrap_or_default();
        assert!(!db.windows(9).any(|w| w == b"notes.txt"), "nor the name in the database");
        // Both of Bob's devices save it; then it is gone.
        save(&bob1, &ann, &dir.join("1.txt")).await.unwrap();
        assert_eq!(num(&server.status(), "blobs"), 1, "one recipient still to fetch it");
        save(&bob2, &ann, &dir.join("2.txt")).await.unwrap();
        assert_eq!(std::fs::read(dir.join("2.txt")).unwrap(), text);
        assert_eq!(num(&server.status(), "blobs"), 0);
        assert!(blob_files(&data.join("blobs")).is_empty());
    });
}

/// Runs the relay in its own mount namespace with a 4 MiB tmpfs as its blob
/// directory (`unshare` from util-linux; root, or unprivileged user
/// namespaces). The tmpfs disappears with the relay.
fn relay_on_small_disk(data: &Path, blobs: &Path) -> Server {
    std::fs::create_dir_all(blobs).unwrap();
    let script = dir_script(blobs);
    let out = Command::new("unshare").args(["--mount", "--map-root-user", "true"]).output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs `unshare --mount --map-root-user` (util-linux, root or user namespaces): {out:?}"
    );
    Server::start_wrapped(
        data,
        &["unshare", "--mount", "--map-root-user", "sh", "-c", &script, "sh"],
        &["--blob-dir", &blobs.to_string_lossy()],
    )
}

fn dir_script(blobs: &Path) -> String {
    format!("mount -t tmpfs -o size=4m qpc-test {} && exec \"$@\"", blobs.display())
}

#[test]
fn a_full_disk_refuses_the_upload_and_other_traffic_goes_on() {
    let dir = TempDir::new("blob-full");
    let data = dir.join("data");
    let blobs = dir.join("usb");
    let server = relay_on_small_disk(&data, &blobs);
    // The relay's view of its blob directory (the tmpfs is in its namespace).
    let inside = PathBuf::from(format!("/proc/{}/root{}", server.pid(), blobs.display()));
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        let (bob, bob_key) = proven(&server).await;
        // 3 MiB + the 2 MiB the relay keeps free do not fit in 4 MiB.
        let big = write_file(&dir, "big.bin", &random_bytes(3 * MIB as usize));
        let (status, message) = refused(&send(&alice, &seed(), &big).await.unwrap_err());
        assert_eq!(status, Status::QuotaExceeded);
        assert!(message.contains("blob storage is full"), "{message}");
        assert!(blob_files(&inside).is_empty(), "nothing written");

        // A 1 MiB upload fits; then something else fills the disk.
        let bytes = random_bytes(MIB as usize);
        let chunk = 64 * KIB as usize;
        let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let (id, token, start) = hand_made_start(&pieces, bytes.len(), chunk);
        let _: pb::BlobUploadStartResponse = alice.call(Method::BlobUploadStart, &start).await.unwrap();
        let _: pb::BlobUploadChunkResponse =
            alice.call(Method::BlobUploadChunk, &chunk_req(&id, 0, pieces[0])).await.unwrap();
        let filler = inside.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x55u8; 64 * 1024];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        drop(f);
        let e = alice
            .call::<_, pb::BlobUploadChunkResponse>(Method::BlobUploadChunk, &chunk_req(&id, 1, pieces[1]))
            .await
            .unwrap_err();
        let (status, message) = refusal(e);
        assert_eq!(status, Status::QuotaExceeded);
        assert!(message.contains("no space left") && message.contains("resume"), "{message}");
        assert_eq!(
            std::fs::metadata(inside.join(hex::encode(&id))).unwrap().len(),
            chunk as u64,
            "the failed write was cut back"
        );
        // Other traffic goes on.
        alice.enqueue(&bob_key.verifying_key().to_bytes(), b"c", b"hello".to_vec(), vec![]).await.unwrap();
        assert_eq!(bob.peek(10).await.unwrap().len(), 1);
        // Space back: the upload resumes where it stopped.
        std::fs::remove_file(&filler).unwrap();
        let again: pb::BlobUploadStartResponse = alice.call(Method::BlobUploadStart, &start).await.unwrap();
        assert_eq!(again.received_chunks, 1);
        for (i, p) in pieces.iter().enumerate().skip(1) {
            let _: pb::BlobUploadChunkResponse =
                alice.call(Method::BlobUploadChunk, &chunk_req(&id, i as u64, p)).await.unwrap();
        }
        let _: pb::BlobUploadFinishResponse = alice
            .call(Method::BlobUploadFinish, &pb::BlobUploadFinishRequest { blob_id: id.clone() })
            .await
            .unwrap();
        let req = pb::BlobDownloadRequest { blob_id: id, read_token: token, offset: 0, length: chunk as u32 };
        let r: pb::BlobDownloadResponse = bob.call(Method::BlobDownload, &req).await.unwrap();
        assert_eq!(r.data, pieces[0]);
    });
}

/// VmRSS or VmHWM of a process, in bytes.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_100_mib_blob_goes_up_and_down_within_2_mib_of_idle_memory() {
    let dir = TempDir::new("blob-rss");
    let data = dir.join("data");
    let cap = (160 * MIB).to_string();
    let server = Server::start(
        &data,
        &[
            "--blob-max-bytes",
            &cap,
            "--blob-account-bytes",
            &cap,
            "--blob-cap-bytes",
            &cap,
            "--rate-per-connection",
            "2000",
            "--rate-per-address",
            "2000",
        ],
    );
    let pid = server.pid();
    let rt = runtime();
    rt.block_on(async {
        let (alice, _) = proven(&server).await;
        // Warm up every path once (allocator, statement cache, QUIC windows).
        let small = write_file(&dir, "warm.bin", &random_bytes(2 * MIB as usize));
        let ann = send(&alice, &seed(), &small).await.unwrap();
        save(&alice, &ann, &dir.join("warm.out")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let idle = proc_status_kib(pid, "VmRSS");
        // Reset the peak so that it measures from here on.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM (clear_refs)");
        let big = dir.join("big.bin");
        {
            let mut f = std::fs::File::create(&big).unwrap();
            for _ in 0..100 {
                std::io::Write::write_all(&mut f, &random_bytes(MIB as usize)).unwrap();
            }
        }
        let ann = send(&alice, &seed(), &big).await.unwrap();
        save(&alice, &ann, &dir.join("big.out")).await.unwrap();
        let peak = proc_status_kib(pid, "VmHWM");
        let grew = peak.saturating_sub(idle);
        eprintln!(
            "relay RSS: idle {} KiB, peak during a 100 MiB upload and download {} KiB (+{} KiB)",
            idle / 1024,
            peak / 1024,
            grew / 1024
        );
        assert!(grew <= 2 * MIB, "peak RSS grew by {} KiB over idle, more than 2 MiB", grew / 1024);
        let same = std::fs::read(dir.join("big.out")).unwrap() == std::fs::read(&big).unwrap();
        assert!(same, "100 MiB back byte for byte");
    });
}

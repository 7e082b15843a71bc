//! `qpc-server backup` and `restore` through the real relay: a backup taken
//! while real clients enqueue holds every message and account acknowledged
//! before it began, restores on a fresh data directory with the same
//! certificate, and restore refuses a truncated backup, one of another
//! key, a running relay and a directory that holds a store, leaving the
//! directory as it was.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use qpc::account::{login, register};

const KEY: &str = "x'0011223344556677889900112233445566778899001122334455667788990011'";

/// Each answered enqueue: when its answer came, and its payload.
type Answered = Vec<(Instant, Vec<u8>)>;

fn ctl(args: &[&str], key: &str) -> Output {
    Command::new(server_bin())
        .args(args)
        .env("QPC_DB_KEY", key)
        .env_remove("QPC_SOCKET")
        .env_remove("QPC_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run qpc-server")
}

fn start(dir: &Path) -> Server {
    Server::start_with_env(
        dir,
        &["--registration", "token", "--registration-token", "t"],
        &[("QPC_DB_KEY", KEY)],
    )
}

/// Names and sizes of the files in `dir`.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn backup_under_load_restores_every_acknowledged_message_and_account() {
    let tmp = TempDir::new("backup");
    let server = start(&tmp.join("a"));
    let data = server.data_dir.to_string_lossy().into_owned();
    let (alice_key, bob_key) = (new_key(), new_key());
    let rt = runtime();
    rt.block_on(async {
        let alice = connect(&server).await;
        register(&alice, "alice", "pw-a", "t", &alice_key).await.unwrap();
        let bob = connect(&server).await;
        register(&bob, "bob", "pw-b", "t", &bob_key).await.unwrap();
        alice.close().await;
        bob.close().await;
    });

    // Two clients enqueue to bob until told to stop; each answered
    // enqueue is recorded with the moment its answer came.
    let acked: Arc<Mutex<Answered>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2u8)
        .map(|sender| {
            let (acked, stop, addr, fp) =
                (acked.clone(), stop.clone(), server.addr.clone(), server.fingerprint());
            let to = bob_key.verifying_key().to_bytes();
            let key = if sender == 0 { alice_key.clone() } else { new_key() };
            std::thread::spawn(move || {
                runtime().block_on(async {
                    let relay = qpc::relay::Relay::connect(&addr, &fp).await.unwrap();
                    if sender == 0 {
                        login(&relay, "alice", "pw-a", &key).await.unwrap();
                    } else {
                        register(&relay, "carol", "pw-c", "t", &key).await.unwrap();
                    }
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let payload = format!("from {sender} number {i}").into_bytes();
                        relay.enqueue(&to, b"chat", payload.clone(), payload.clone()).await.unwrap();
                        acked.lock().unwrap().push((Instant::now(), payload));
                        i += 1;
                    }
                    relay.close().await;
                })
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "the senders never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let file = tmp.join("relay.qpcb");
    let began = Instant::now();
    let out = ctl(&["backup", file.to_str().unwrap(), "--data-dir", &data], "");
    let during = acked.lock().unwrap().iter().filter(|(t, _)| *t >= began).count();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let note = stderr(&out);
    assert!(out.status.success(), "backup: {note}");
    assert!(note.contains("backup written to"), "{note}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the backup holds the certificate's key");
    let before: Vec<Vec<u8>> =
        acked.lock().unwrap().iter().filter(|(t, _)| *t < began).map(|(_, p)| p.clone()).collect();
    eprintln!("{} messages acknowledged before the backup, {during} while it ran", before.len());
    assert!(before.len() >= 50);
    assert!(!std::fs::read_dir(&server.data_dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("backup-copy")));

    // Restore on a fresh data directory and start a relay there.
    let fresh = tmp.join("b");
    let fresh_s = fresh.to_string_lossy().into_owned();
    let out = ctl(&["restore", file.to_str().unwrap(), "--data-dir", &fresh_s], KEY);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("certificate fingerprint {}", server.fingerprint())),
        "{}",
        stderr(&out)
    );
    let restored = start(&fresh);
    assert_eq!(restored.fingerprint(), server.fingerprint(), "clients keep trusting the relay");
    let users = ok(restored.ctl(&["users", "--json"]));
    for name in ["alice", "bob", "carol"] {
        assert!(users.contains(&format!("\"{name}\"")), "{name} restored: {users}");
    }
    let got: Vec<Vec<u8>> = rt.block_on(async {
        let bob = connect(&restored).await;
        login(&bob, "bob", "pw-b", &bob_key).await.unwrap();
        let mut got = Vec::new();
        loop {
            let page = bob.peek(500).await.unwrap();
            let Some(last) = page.last().map(|e| e.seq) else { break };
            got.extend(page.into_iter().map(|e| e.payload));
            bob.ack(last).await.unwrap();
        }
        got
    });
    for p in &before {
        assert!(
            got.contains(p),
            "{} acknowledged before the backup, missing after restore",
            String::from_utf8_lossy(p)
        );
    }

    // What restore refuses, leaving the directory as it was.
    let running = ctl(&["restore", file.to_str().unwrap(), "--data-dir", &data], KEY);
    assert!(!running.status.success());
    assert!(stderr(&running).contains("a relay is running on"), "{}", stderr(&running));
    drop(restored);
    let again = ctl(&["restore", file.to_str().unwrap(), "--data-dir", &fresh_s], KEY);
    assert!(stderr(&again).contains("holds a store already: pass --replace"), "{}", stderr(&again));

    let whole = std::fs::read(&file).unwrap();
    let cut = tmp.join("cut.qpcb");
    std::fs::write(&cut, &whole[..whole.len() - 1000]).unwrap();
    let empty = tmp.join("c");
    let out = ctl(&["restore", cut.to_str().unwrap(), "--data-dir", empty.to_str().unwrap()], KEY);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is truncated or damaged"), "{}", stderr(&out));
    assert_eq!(listing(&empty), vec![], "nothing written for a truncated backup");

    let other = "x'ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100'";
    let out = ctl(&["restore", file.to_str().unwrap(), "--data-dir", empty.to_str().unwrap()], other);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not open with this relay's key"), "{}", stderr(&out));
    assert_eq!(listing(&empty), vec![], "nothing left of a backup of another key");

    // --replace keeps the store that was there.
    let before_listing = listing(&fresh);
    let out = ctl(&["restore", file.to_str().unwrap(), "--data-dir", &fresh_s, "--replace"], KEY);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("the store that was there is in"), "{}", stderr(&out));
    assert!(before_listing.iter().any(|(n, _)| n == "qpc.db"));
}

#[test]
fn backup_of_a_stopped_relay_says_so() {
    let tmp = TempDir::new("backup-stopped");
    let out = ctl(
        &["backup", tmp.join("x.qpcb").to_str().unwrap(), "--data-dir", tmp.path().to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no relay is running"), "{}", stderr(&out));
}

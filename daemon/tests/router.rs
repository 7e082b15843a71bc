//! What the router owner meets: the relay refuses a data directory that
//! holds files but no store (an unmounted USB disk, a wrong path) instead
//! of starting afresh; a raw store key as uci-defaults makes it opens, and
//! the secrets work from the environment alone (the init script passes
//! them that way).

mod common;

use std::process::{Command, Stdio};

use common::*;

/// `qpc-server --data-dir DIR` with env, expected to exit: its status and stderr.
fn start_fails(dir: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("QPC_DB_KEY")
        .env_remove("QPC_SOCKET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run qpc-server");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_directory_with_files_but_no_store_is_refused() {
    let tmp = TempDir::new("not-a-store");
    let dir = tmp.join("mnt-sda1");
    std::fs::create_dir_all(dir.join("lost+found")).unwrap();
    std::fs::write(dir.join("photo.jpg"), b"jpeg").unwrap();
    let (code, err) = start_fails(&dir, &[]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("holds lost+found, photo.jpg but no store (qpc.db): not making a new store"),
        "{err}"
    );
    assert!(!dir.join("qpc.db").exists(), "a store was made anyway");
    assert!(!dir.join("server-cert.der").exists(), "a certificate was made anyway");
    assert_eq!(std::fs::read(dir.join("photo.jpg")).unwrap(), b"jpeg");
}

#[test]
fn an_empty_directory_gets_a_store_and_keeps_it() {
    let tmp = TempDir::new("empty-store");
    let dir = tmp.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Server::start(&dir, &[]);
    let fingerprint = server.fingerprint();
    server.restart();
    assert_eq!(server.fingerprint(), fingerprint);
    assert!(dir.join("qpc.db").exists());
}

#[test]
fn a_raw_key_from_the_environment_opens_the_store_and_a_wrong_one_is_refused() {
    let tmp = TempDir::new("raw-key");
    let dir = tmp.join("data");
    let key = format!("x'{}'", "a1".repeat(32));
    let mut server = Server::start_with_env(
        &dir,
        &["--registration", "token"],
        &[("QPC_DB_KEY", &key), ("QPC_REGISTRATION_TOKEN", "t0ken")],
    );
    let state = tmp.join("alice");
    ok(server.qpc(&state, &["register-user", "--username", "alice", "--password", "pw", "--token", "t0ken"]));
    assert!(
        !server.log().contains("no database key set"),
        "the environment's key was not used: {}",
        server.log()
    );
    server.stop();
    let head = std::fs::read(dir.join("qpc.db")).unwrap();
    assert!(!head.starts_with(b"SQLite format 3"), "the store is not encrypted");
    let wrong = format!("x'{}'", "b2".repeat(32));
    let (code, err) = start_fails(&dir, &[("QPC_DB_KEY", &wrong)]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("key"), "{err}");
    // The account is still there with the right key.
    let server = Server::start_with_env(
        &dir,
        &["--registration", "token"],
        &[("QPC_DB_KEY", &key), ("QPC_REGISTRATION_TOKEN", "t0ken")],
    );
    let users = ok(server.ctl(&["users", "--json"]));
    assert!(users.contains("\"alice\""), "{users}");
}

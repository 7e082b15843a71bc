//! SQLCipher on the relay's own crypto (daemon/src/store/crypto.rs) keeps
//! the database format: stores that the OpenSSL build wrote
//! (tests/fixtures/openssl-*.db, made by qpc-server at 0660439 with
//! `register-user alice`, one with a raw key and one with a passphrase)
//! open with their key, take new writes, reopen, and refuse a wrong key.

mod common;

use std::process::{Command, Stdio};

use common::*;

const TOKEN: &str = "t0ken";

fn relay(dir: &std::path::Path, key: &str) -> Server {
    Server::start_with_env(
        dir,
        &["--registration", "token"],
        &[("QPC_DB_KEY", key), ("QPC_REGISTRATION_TOKEN", TOKEN)],
    )
}

fn users(server: &Server) -> String {
    ok(server.ctl(&["users", "--json"]))
}

fn opens_the_openssl_store(fixture: &str, key: &str) {
    let tmp = TempDir::new(fixture);
    let dir = tmp.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let source = format!("{}/tests/fixtures/{fixture}.db", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(&source, dir.join("qpc.db")).unwrap();

    let mut server = relay(&dir, key);
    let found = users(&server);
    assert!(found.contains("\"alice\""), "the OpenSSL-written account is not read back: {found}");
    // New pages, written by the Rust provider.
    ok(server.qpc(
        &tmp.join("bob"),
        &["register-user", "--username", "bob", "--password", "pw", "--token", TOKEN],
    ));
    server.stop();

    let head = std::fs::read(dir.join("qpc.db")).unwrap();
    assert!(!head.starts_with(b"SQLite format 3"), "the store is not encrypted");
    let wrong = Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("QPC_DB_KEY", "not the key")
        .env_remove("QPC_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_ne!(wrong.status.code(), Some(0), "a wrong key was accepted: {err}");
    assert!(err.contains("the database key is wrong"), "{err}");

    let server = relay(&dir, key);
    let found = users(&server);
    assert!(found.contains("\"alice\"") && found.contains("\"bob\""), "{found}");
}

#[test]
fn a_store_with_a_raw_key_from_the_openssl_build_opens() {
    opens_the_openssl_store("openssl-raw-key", &format!("x'{}'", "a1".repeat(32)));
}

#[test]
fn a_store_with_a_passphrase_from_the_openssl_build_opens() {
    // PBKDF2-HMAC-SHA512 with 256,000 iterations, as OpenSSL derived it.
    opens_the_openssl_store("openssl-passphrase", "correct horse battery staple");
}

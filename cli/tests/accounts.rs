//! Accounts, names and limits against a real relay.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use qpc::relay::{cert_fingerprint, Relay};
use qpc::state::State;
use qpc_proto::Status;

/// `qpc` as a user: --username NAME --password PW, state in `dir`.
fn as_user(
    server: &Server,
    dir: &TempDir,
    user: &str,
    password: &str,
    args: &[&str],
) -> std::process::Output {
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["--username", user, "--password", password]);
    server.qpc(&dir.join(&format!("qpc-{user}.bin")), &full)
}

async fn connect(server: &Server, seed: u8) -> Relay {
    let fp = cert_fingerprint(&std::fs::read(server.cert()).unwrap());
    let relay = Relay::connect(&server.addr, &fp).await.unwrap();
    relay.authenticate(&SigningKey::from_bytes(&[seed; 32])).await.unwrap();
    relay
}

#[test]
fn users_register_log_in_and_talk_by_name() {
    let dir = TempDir::new("accounts");
    let server =
        Server::start(&dir.join("data"), &["--registration", "token", "--registration-token", "let-me-in"]);
    let out = ok(as_user(&server, &dir, "alice", "pw-alice", &["register-user", "--token", "let-me-in"]));
    assert!(out.contains("registered user alice"), "{out}");
    ok(as_user(&server, &dir, "bob", "pw-bob", &["register-user", "--token", "let-me-in"]));
    assert!(ok(as_user(&server, &dir, "bob", "pw-bob", &["login"])).contains("logged in as bob"));

    ok(as_user(&server, &dir, "alice", "pw-alice", &["create-group", "--group-id", "friends"]));
    ok(as_user(&server, &dir, "alice", "pw-alice", &["invite", "bob"]));
    assert!(ok(as_user(&server, &dir, "bob", "pw-bob", &["join"])).contains("joined group successfully"));
    ok(as_user(&server, &dir, "alice", "pw-alice", &["send", "--to", "bob", "--msg", "hi bob"]));
    assert_eq!(plaintexts(&ok(as_user(&server, &dir, "bob", "pw-bob", &["recv"]))), ["hi bob"]);
    ok(as_user(&server, &dir, "bob", "pw-bob", &["send", "--to", "alice", "--msg", "hi alice"]));
    assert_eq!(plaintexts(&ok(as_user(&server, &dir, "alice", "pw-alice", &["recv"]))), ["hi alice"]);

    // A second device of bob logs in with the password alone.
    let laptop = dir.join("bob-laptop.bin");
    let out = ok(server.qpc(&laptop, &["login", "--username", "bob", "--password", "pw-bob"]));
    assert!(out.contains("(new device)"), "{out}");

    // At rest: neither the seed nor the password in the clear.
    let path = dir.join("qpc-alice.bin");
    let bytes = std::fs::read(&path).unwrap();
    let state = State::load_with_password(&path, "pw-alice").unwrap();
    let seed = state.signing_key.to_bytes();
    assert!(!bytes.windows(32).any(|w| w == seed), "seed in the clear");
    assert!(!bytes.windows(8).any(|w| w == b"pw-alice"), "password in the clear");
}

#[test]
fn bad_account_input_is_refused_and_changes_nothing() {
    let dir = TempDir::new("badacct");
    let server =
        Server::start(&dir.join("data"), &["--registration", "token", "--registration-token", "tok"]);
    ok(as_user(&server, &dir, "carol", "right", &["register-user", "--token", "tok"]));
    let state = dir.join("qpc-carol.bin");
    let before = std::fs::read(&state).unwrap();

    // Wrong password on the state file: said, nothing written.
    let err = fails(as_user(&server, &dir, "carol", "wrong", &["login"]));
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(std::fs::read(&state).unwrap(), before);
    // Wrong password from a new device: the relay never learns the password.
    let other = dir.join("elsewhere.bin");
    let err = fails(server.qpc(&other, &["login", "--username", "carol", "--password", "wrong"]));
    assert!(err.contains("wrong password for account \"carol\""), "{err}");
    assert!(!other.exists());
    // Unknown user.
    let err = fails(server.qpc(&other, &["login", "--username", "nobody", "--password", "x"]));
    assert!(err.contains("no account named \"nobody\""), "{err}");
    assert!(!other.exists());
    // Duplicate registration.
    let err = fails(
        server.qpc(&other, &["register-user", "--username", "carol", "--password", "x", "--token", "tok"]),
    );
    assert!(err.contains("conflict") && err.contains("already taken"), "{err}");
    assert!(!other.exists());
    // Wrong token.
    let err = fails(
        server.qpc(&other, &["register-user", "--username", "dave", "--password", "x", "--token", "nope"]),
    );
    assert!(err.contains("forbidden") && err.contains("registration token"), "{err}");
    assert!(!other.exists());
    // A bare identity is not admitted outside open registration.
    let err = fails(server.qpc(&other, &["register-state"]));
    assert!(err.contains("registered accounts only"), "{err}");
    // Nothing of the refused users reached the relay.
    block_on(async {
        let relay = Relay::connect(&server.addr, &cert_fingerprint(&std::fs::read(server.cert()).unwrap()))
            .await
            .unwrap();
        let st = State::load_with_password(&state, "right").unwrap();
        relay.authenticate(&st.signing_key).await.unwrap();
        assert_eq!(relay.resolve_user("dave").await.unwrap_err().status(), Some(Status::NotFound));
        assert_eq!(relay.resolve_user("carol").await.unwrap().len(), 1);
    });

    // Closed registration.
    let closed = Server::start(&dir.join("closed"), &["--registration", "closed"]);
    let err =
        fails(closed.qpc(&dir.join("x.bin"), &["register-user", "--username", "erin", "--password", "x"]));
    assert!(err.contains("registration is closed"), "{err}");
}

#[test]
fn quota_and_rate_refusals_leave_others_working() {
    let dir = TempDir::new("limits");
    let server =
        Server::start(&dir.join("data"), &["--max-queue-messages", "2", "--rate-per-connection", "20"]);
    block_on(async {
        let alice = connect(&server, 1).await;
        let bob = connect(&server, 2).await;
        let carol = connect(&server, 3).await;
        let alice_key = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        let carol_key = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
        bob.enqueue(&alice_key, b"", b"1".to_vec(), vec![]).await.unwrap();
        bob.enqueue(&alice_key, b"", b"2".to_vec(), vec![]).await.unwrap();
        let err = bob.enqueue(&alice_key, b"", b"3".to_vec(), vec![]).await.unwrap_err();
        assert_eq!(err.status(), Some(Status::QuotaExceeded), "{err}");
        assert!(err.to_string().contains("is full"), "{err}");
        // Carol's queue is another queue.
        bob.enqueue(&carol_key, b"", b"ok".to_vec(), vec![]).await.unwrap();
        // Once Alice reads, her queue takes messages again.
        let got = alice.peek(0).await.unwrap();
        alice.ack(got.last().unwrap().seq).await.unwrap();
        bob.enqueue(&alice_key, b"", b"3".to_vec(), vec![]).await.unwrap();

        // A burst over the per-connection rate is refused ...
        let mut limited = 0;
        for _ in 0..60 {
            if let Err(e) = carol.peek(0).await {
                assert_eq!(e.status(), Some(Status::RateLimited), "{e}");
                limited += 1;
            }
        }
        assert!(limited > 0, "a burst of 60 at 20/s must be limited");
        // ... while another connection keeps working.
        assert_eq!(alice.peek(0).await.unwrap().len(), 1);
    });
    assert!(server.log().contains("rate limit reached"), "{}", server.log());
}

#[test]
fn expired_messages_are_swept_and_stop_counting() {
    let dir = TempDir::new("ttl");
    let server = Server::start(&dir.join("data"), &["--message-ttl-secs", "1", "--max-queue-messages", "1"]);
    block_on(async {
        let alice = connect(&server, 1).await;
        let bob = connect(&server, 2).await;
        let alice_key = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        bob.enqueue(&alice_key, b"", b"old".to_vec(), vec![]).await.unwrap();
        let err = bob.enqueue(&alice_key, b"", b"full".to_vec(), vec![]).await.unwrap_err();
        assert_eq!(err.status(), Some(Status::QuotaExceeded));
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        assert!(alice.peek(0).await.unwrap().is_empty(), "expired message still queued");
        // Its place in the quota is free again.
        bob.enqueue(&alice_key, b"", b"new".to_vec(), vec![]).await.unwrap();
        assert_eq!(alice.peek(0).await.unwrap()[0].payload, b"new");
    });
    assert!(server.log().contains("expired 1 undelivered"), "{}", server.log());
}

#[test]
fn production_mode_refuses_unsafe_settings() {
    let dir = TempDir::new("prod");
    for (args, why) in [
        (vec!["--registration", "token"], "unencrypted database"),
        (vec!["--db-key", "k"], "open registration"),
    ] {
        let out = std::process::Command::new(server_bin())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(&args)
            .env("QPC_PRODUCTION", "1")
            .env_remove("QPC_DB_KEY")
            .env_remove("QPC_REGISTRATION")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("QPC_PRODUCTION=1") && err.contains(why), "{err}");
    }
}

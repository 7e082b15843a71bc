//! Bad input gets a clear error and loses nothing.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use prost::Message;
use qpc::relay::{cert_fingerprint, Relay};
use qpc_proto::{pb, Method, RequestFrame, Status};

fn fingerprint(server: &Server) -> String {
    cert_fingerprint(&std::fs::read(server.cert()).unwrap())
}

#[test]
fn wrong_ca_cert_is_refused_clearly() {
    let dir = TempDir::new("wrongca");
    let server = Server::start(&dir.join("data"), &[]);
    let other = Server::start(&dir.join("other"), &[]);
    let out = std::process::Command::new(qpc_bin())
        .args(["register-state", "--state"])
        .arg(dir.join("a.bin"))
        .args(["--server", &server.addr, "--ca-cert"])
        .arg(other.cert())
        .output()
        .unwrap();
    let err = fails(out);
    assert!(err.contains("presented certificate") && err.contains("not the trusted"), "{err}");
}

#[test]
fn missing_state_bad_key_and_down_server_are_named() {
    let dir = TempDir::new("badinput");
    let server = Server::start(&dir.join("data"), &[]);
    let missing = dir.join("nobody.bin");
    let err = fails(server.qpc(&missing, &["recv"]));
    assert!(err.contains("does not exist") && err.contains("register-state"), "{err}");
    assert!(!missing.exists());

    let alice = dir.join("alice.bin");
    ok(server.qpc(&alice, &["register-state"]));
    ok(server.qpc(&alice, &["create-group", "--group-id", "g"]));
    let before = std::fs::read(&alice).unwrap();
    let err = fails(server.qpc(&alice, &["invite", "--peer-key", "abc123"]));
    assert!(err.contains("--peer-key") && err.contains("64 hex digits"), "{err}");
    let err = fails(server.qpc(&alice, &["invite", "--peer-key", &"zz".repeat(32)]));
    assert!(err.contains("not hex"), "{err}");
    assert_eq!(std::fs::read(&alice).unwrap(), before, "state unchanged");

    // A corrupt state file is reported and left as it is.
    let corrupt = dir.join("corrupt.bin");
    std::fs::write(&corrupt, &before[..before.len() / 2]).unwrap();
    let err = fails(server.qpc(&corrupt, &["recv"]));
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(&corrupt).unwrap(), &before[..before.len() / 2]);

    // A relay that is down: the address is named.
    let down = std::process::Command::new(qpc_bin())
        .args(["recv", "--state"])
        .arg(&alice)
        .args(["--server", "127.0.0.1:9", "--ca-cert"])
        .arg(server.cert())
        .output()
        .unwrap();
    let err = fails(down);
    assert!(err.contains("cannot reach the relay at 127.0.0.1:9"), "{err}");
}

#[test]
fn database_is_not_plain_sqlite_with_a_key() {
    let dir = TempDir::new("dbkey");
    let mut keyed = Server::start(&dir.join("keyed"), &["--db-key", "s3cret"]);
    let mut plain = Server::start(&dir.join("plain"), &[]);
    ok(keyed.qpc(&dir.join("a.bin"), &["register-state"]));
    ok(plain.qpc(&dir.join("b.bin"), &["register-state"]));
    keyed.stop();
    plain.stop();
    let header = |p: &std::path::Path| std::fs::read(p.join("qpc.db")).unwrap()[..16].to_vec();
    assert_eq!(header(&dir.join("plain")), b"SQLite format 3\0", "the check can tell plain SQLite");
    assert_ne!(header(&dir.join("keyed")), b"SQLite format 3\0");
    assert!(plain.log().contains("unencrypted"), "warns about the plain database");

    // The wrong key is refused by name, and the file is left alone.
    let before = std::fs::read(dir.join("keyed/qpc.db")).unwrap();
    let out = std::process::Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--db-key", "wrong", "--data-dir"])
        .arg(dir.join("keyed"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database key is wrong"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.join("keyed/qpc.db")).unwrap(), before);
}

#[test]
fn a_connection_reaches_only_its_own_queue() {
    let dir = TempDir::new("isolation");
    let server = Server::start(&dir.join("data"), &[]);
    let fp = fingerprint(&server);
    block_on(async {
        let alice = SigningKey::from_bytes(&[1u8; 32]);
        let bob = SigningKey::from_bytes(&[2u8; 32]);
        let a = Relay::connect(&server.addr, &fp).await.unwrap();
        a.authenticate(&alice).await.unwrap();
        let b = Relay::connect(&server.addr, &fp).await.unwrap();
        b.authenticate(&bob).await.unwrap();
        let alice_key = alice.verifying_key().to_bytes();
        b.enqueue(&alice_key, b"", b"for alice".to_vec(), vec![]).await.unwrap();

        // Bob's peek, fetch and ack act on Bob's queue only.
        assert!(b.peek(0).await.unwrap().is_empty());
        assert_eq!(b.ack(u64::MAX).await.unwrap(), 0);
        let msgs = a.peek(0).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload, b"for alice");
        assert_eq!(msgs[0].sender_key, bob.verifying_key().to_bytes());

        // Bob cannot prove Alice's identity: his signature is not hers.
        let c = Relay::connect(&server.addr, &fp).await.unwrap();
        let challenge: pb::AuthChallengeResponse =
            c.call(Method::AuthChallenge, &pb::AuthChallengeRequest {}).await.unwrap();
        let forged = pb::AuthProveRequest { identity_key: alice_key.to_vec(), signature: vec![7u8; 64] };
        let err = c.call::<_, pb::AuthProveResponse>(Method::AuthProve, &forged).await.unwrap_err();
        assert_eq!(err.status(), Some(Status::Unauthenticated), "{err}");
        assert!(!challenge.nonce.is_empty());
        // An unproven connection cannot peek at all.
        let err = c.peek(0).await.unwrap_err();
        assert_eq!(err.status(), Some(Status::Unauthenticated), "{err}");

        // A retried enqueue with the same client id is stored once.
        let first = b.enqueue(&alice_key, b"", b"again".to_vec(), b"id-1".to_vec()).await.unwrap();
        let retry = b.enqueue(&alice_key, b"", b"again".to_vec(), b"id-1".to_vec()).await.unwrap();
        assert_eq!((first.seq, first.duplicate), (retry.seq, !retry.duplicate));
        assert_eq!(a.peek(0).await.unwrap().len(), 2);
    });
}

#[test]
fn garbage_frames_get_bad_request_and_others_keep_working() {
    let dir = TempDir::new("garbage");
    let server = Server::start(&dir.join("data"), &["--max-payload", "4096"]);
    let fp = fingerprint(&server);
    block_on(async {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let good = Relay::connect(&server.addr, &fp).await.unwrap();
        good.authenticate(&key).await.unwrap();
        let me = key.verifying_key().to_bytes();
        good.enqueue(&me, b"", b"kept".to_vec(), vec![]).await.unwrap();

        let hostile = Relay::connect(&server.addr, &fp).await.unwrap();
        // Garbage protobuf for a known method.
        let frame = RequestFrame::new(Method::AuthProve.id(), 5, vec![0xFF, 0xFF, 0xFF]).encode();
        let (h, body) = hostile.call_raw(&frame).await.unwrap();
        assert_eq!((h.status, h.request_id), (Status::BadRequest, 5));
        assert!(pb::ErrorDetail::decode(body.as_slice()).unwrap().message.contains("malformed"));
        // A truncated header.
        let (h, _) = hostile.call_raw(&[0, 200, 0]).await.unwrap();
        assert_eq!(h.status, Status::BadRequest);
        // A declared length over the bound, refused from the header alone.
        let mut over = RequestFrame::new(Method::Enqueue.id(), 6, vec![]).encode();
        over[6..10].copy_from_slice(&1_000_000u32.to_be_bytes());
        let (h, _) = hostile.call_raw(&over).await.unwrap();
        assert_eq!((h.status, h.request_id), (Status::TooLarge, 6));
        // A payload shorter than declared.
        let mut short = RequestFrame::new(Method::Enqueue.id(), 7, vec![1, 2]).encode();
        short[6..10].copy_from_slice(&100u32.to_be_bytes());
        let (h, _) = hostile.call_raw(&short).await.unwrap();
        assert_eq!((h.status, h.request_id), (Status::BadRequest, 7));
        // An unknown method id.
        let (h, _) = hostile.call_raw(&RequestFrame::new(999, 8, vec![]).encode()).await.unwrap();
        assert_eq!((h.status, h.request_id), (Status::UnknownMethod, 8));

        // The relay still serves, and nothing stored was lost.
        let msgs = good.peek(0).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload, b"kept");
    });
}

#[test]
fn idle_streams_and_stream_floods_do_not_stop_the_relay() {
    let dir = TempDir::new("floods");
    let server = Server::start(
        &dir.join("data"),
        &["--rate-per-connection", "100000", "--rate-per-address", "100000"],
    );
    let fp = fingerprint(&server);
    let local = tokio::task::LocalSet::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    local.block_on(&rt, async {
        let key = SigningKey::from_bytes(&[4u8; 32]);
        let good = Relay::connect(&server.addr, &fp).await.unwrap();
        good.authenticate(&key).await.unwrap();
        let me = key.verifying_key().to_bytes();
        good.enqueue(&me, b"", b"stored before".to_vec(), vec![]).await.unwrap();

        // A stream opened and left idle is answered and closed by the relay.
        let hostile = std::rc::Rc::new(Relay::connect(&server.addr, &fp).await.unwrap());
        let (mut send, mut recv) = hostile.connection().open_bi().await.unwrap();
        send.write_all(&[0, 200]).await.unwrap();
        let mut head = [0u8; 9];
        let answered =
            tokio::time::timeout(std::time::Duration::from_secs(20), recv.read_exact(&mut head)).await;
        assert!(answered.is_ok(), "the relay must not hold an idle stream forever");
        assert_eq!(head[0], Status::BadRequest as u8);

        // Hundreds of streams at once: each is answered (QUIC holds the
        // ones over the stream limit until others finish).
        let mut calls = Vec::new();
        for i in 0..300u32 {
            let relay = hostile.clone();
            calls.push(tokio::task::spawn_local(async move {
                let frame = RequestFrame::new(Method::Peek.id(), i, vec![]).encode();
                relay.call_raw(&frame).await.map(|(h, _)| h.status)
            }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), Status::Unauthenticated);
        }
        let msgs = good.peek(0).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload, b"stored before");
    });
}

#[test]
fn help_and_wrong_flags_are_explained() {
    let help = std::process::Command::new(server_bin()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--max-queue-messages"));
    let help = std::process::Command::new(qpc_bin()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("register-state"));
    let wrong = std::process::Command::new(server_bin()).arg("--bogus").output().unwrap();
    assert!(!wrong.status.success());
    let wrong =
        std::process::Command::new(server_bin()).args(["--registration", "sometimes"]).output().unwrap();
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("unknown registration mode"), "{wrong:?}");
}

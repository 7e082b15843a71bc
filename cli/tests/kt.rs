//! Key transparency against a real relay: directory answers checked against
//! the signed log, split views caught, device revocation, safety numbers.
//! The lying relays are the real binary with `QPC_TEST_KT_TAMPER`.

mod common;

use common::*;
use qpc::relay::{cert_fingerprint, Relay};
use qpc_proto::{pb, Method, Status};

fn as_user(server: &Server, dir: &TempDir, state: &str, user: &str, args: &[&str]) -> std::process::Output {
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["--username", user, "--password", "pw"]);
    server.qpc(&dir.join(state), &full)
}

fn register(server: &Server, dir: &TempDir, user: &str) -> String {
    let out = ok(as_user(server, dir, &format!("{user}.bin"), user, &["register-user"]));
    identity_key(&out)
}

fn safety_number(out: &str, peer: &str) -> String {
    let prefix = format!("safety number with {peer}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no safety number in:\n{out}"))
        .to_string()
}

#[test]
fn a_key_added_behind_the_logs_back_is_refused() {
    let dir = TempDir::new("kt-tamper");
    let server = Server::start_with_env(&dir.join("data"), &[], &[("QPC_TEST_KT_TAMPER", "extra-key:bob")]);
    register(&server, &dir, "alice");
    register(&server, &dir, "bob");
    ok(as_user(&server, &dir, "alice.bin", "alice", &["create-group", "--group-id", "g"]));
    let err = fails(as_user(&server, &dir, "alice.bin", "alice", &["invite", "bob"]));
    assert!(err.contains("key transparency check of \"bob\" FAILED"), "{err}");
    assert!(err.contains(&"5a".repeat(32)) && err.contains("not in the log"), "names the extra key: {err}");
    let who = ok(as_user(&server, &dir, "alice.bin", "alice", &["whoami"]));
    assert!(who.contains("group : g (epoch 0, 1 members)"), "nobody was invited: {who}");
    // The same check by identity key is not a name: nothing to check; by
    // name, verify refuses too.
    let err = fails(as_user(&server, &dir, "alice.bin", "alice", &["verify", "bob"]));
    assert!(err.contains("FAILED"), "{err}");
}

#[test]
fn a_split_view_is_caught_at_the_next_consistency_check() {
    let dir = TempDir::new("kt-fork");
    let data = dir.join("data");
    let mut server = Server::start_with_env(&data, &[], &[("QPC_TEST_KT_TAMPER", "fork:carol")]);
    register(&server, &dir, "alice");
    register(&server, &dir, "bob");
    register(&server, &dir, "carol");
    // Each is shown a history that verifies on its own: carol's has one
    // entry more than everyone else's.
    let carol = ok(as_user(&server, &dir, "carol.bin", "carol", &["verify", "bob"]));
    let alice = ok(as_user(&server, &dir, "alice.bin", "alice", &["verify", "bob"]));
    assert!(carol.contains("safety number with bob"), "{carol}");
    assert!(alice.contains("safety number with bob"), "{alice}");
    let audit = ok(as_user(&server, &dir, "carol.bin", "carol", &["audit"]));
    assert!(audit.contains("log verified: 7 entries"), "carol's view: {audit}");
    let audit = ok(as_user(&server, &dir, "alice.bin", "alice", &["audit"]));
    assert!(audit.contains("log verified: 6 entries"), "alice's view: {audit}");
    server.stop();
    // The relay cannot keep two histories forever: once it shows carol the
    // one everybody else has, her next check fails, loudly.
    let server = Server::start(&data, &[]);
    let err = fails(as_user(&server, &dir, "carol.bin", "carol", &["verify", "bob"]));
    assert!(err.contains("key transparency check") && err.contains("forked"), "{err}");
    assert!(err.contains("from 7 to 6 entries"), "{err}");
    ok(as_user(&server, &dir, "alice.bin", "alice", &["verify", "bob"]));
    ok(as_user(&server, &dir, "alice.bin", "alice", &["audit"]));
}

#[test]
fn a_revoked_device_is_cut_out_and_the_others_keep_working() {
    let dir = TempDir::new("kt-revoke");
    let server = Server::start(&dir.join("data"), &[]);
    register(&server, &dir, "alice");
    let phone = register(&server, &dir, "bob");
    ok(as_user(&server, &dir, "alice.bin", "alice", &["create-group", "--group-id", "g"]));
    ok(as_user(&server, &dir, "alice.bin", "alice", &["invite", "bob"]));
    ok(as_user(&server, &dir, "bob.bin", "bob", &["join"]));

    // Bob's laptop logs in: his phone says so and adds it to his groups;
    // alice sees that bob has a new device.
    let laptop = identity_key(&ok(as_user(&server, &dir, "laptop.bin", "bob", &["login"])));
    let out = ok(as_user(&server, &dir, "bob.bin", "bob", &["recv"]));
    assert!(
        out.contains("* a new device was added to your account on ")
            && out.contains(&format!("qpc revoke-device {laptop}")),
        "{out}"
    );
    assert!(out.contains("added your new device"), "{out}");
    let out = ok(as_user(&server, &dir, "laptop.bin", "bob", &["recv"]));
    assert!(out.contains("joined group: g"), "{out}");
    let out = ok(as_user(&server, &dir, "alice.bin", "alice", &["recv"]));
    assert!(out.contains("#g: bob has a new device"), "{out}");

    let list = ok(as_user(&server, &dir, "bob.bin", "bob", &["devices"]));
    assert!(list.contains(&format!("{phone}  added")) && list.contains("(this device)"), "{list}");
    assert!(list.contains(&laptop), "{list}");

    // Bad revocations change nothing.
    let err = fails(as_user(&server, &dir, "bob.bin", "bob", &["revoke-device", &phone]));
    assert!(err.contains("this device"), "{err}");
    let err = fails(as_user(&server, &dir, "bob.bin", "bob", &["revoke-device", &"ab".repeat(32)]));
    assert!(err.contains("no device abababab"), "{err}");

    let out = ok(as_user(&server, &dir, "bob.bin", "bob", &["revoke-device", &laptop]));
    assert!(out.contains(&format!("revoked device {laptop}")), "{out}");
    assert!(out.contains("removed your revoked device"), "{out}");

    // The laptop can neither log in, nor fetch, nor be invited.
    let err = fails(as_user(&server, &dir, "laptop.bin", "bob", &["recv"]));
    assert!(err.contains("revoked"), "{err}");
    let err = fails(as_user(&server, &dir, "laptop.bin", "bob", &["login"]));
    assert!(err.contains("revoked"), "{err}");
    ok(as_user(&server, &dir, "alice.bin", "alice", &["recv"]));
    let who = ok(as_user(&server, &dir, "alice.bin", "alice", &["whoami"]));
    assert!(who.contains("(epoch 3, 2 members)"), "alice and bob's phone: {who}");
    ok(as_user(&server, &dir, "alice.bin", "alice", &["create-group", "--group-id", "h"]));
    ok(as_user(&server, &dir, "alice.bin", "alice", &["invite", "bob", "--group-id", "h"]));
    let who = ok(as_user(&server, &dir, "alice.bin", "alice", &["whoami"]));
    assert!(who.contains("group : h (epoch 1, 2 members)"), "only the phone was invited: {who}");

    // The others keep talking.
    ok(as_user(
        &server,
        &dir,
        "alice.bin",
        "alice",
        &["send", "--all", "--group-id", "g", "--msg", "still here?"],
    ));
    let out = ok(as_user(&server, &dir, "bob.bin", "bob", &["recv"]));
    assert!(plaintexts(&out).contains(&"still here?".to_string()), "{out}");
    let audit = ok(as_user(&server, &dir, "alice.bin", "alice", &["audit"]));
    assert!(audit.contains("1 revoked"), "{audit}");
}

#[test]
fn safety_numbers_match_on_both_sides_and_change_with_a_key() {
    let dir = TempDir::new("kt-verify");
    let server = Server::start(&dir.join("data"), &[]);
    register(&server, &dir, "alice");
    register(&server, &dir, "bob");
    let a = ok(as_user(&server, &dir, "alice.bin", "alice", &["verify", "bob"]));
    let b = ok(as_user(&server, &dir, "bob.bin", "bob", &["verify", "alice"]));
    let number = safety_number(&a, "bob");
    assert_eq!(number, safety_number(&b, "alice"));
    assert_eq!(number.split(' ').count(), 12);
    let again = ok(as_user(&server, &dir, "alice.bin", "alice", &["verify", "bob"]));
    assert!(again.contains("bob is verified: the safety number is unchanged"), "{again}");

    ok(as_user(&server, &dir, "laptop.bin", "bob", &["login"]));
    let changed = ok(as_user(&server, &dir, "alice.bin", "alice", &["verify", "bob"]));
    assert!(changed.contains("CHANGED since you verified it: the verified mark is broken"), "{changed}");
    assert_ne!(safety_number(&changed, "bob"), number);
    let b = ok(as_user(&server, &dir, "laptop.bin", "bob", &["verify", "alice"]));
    assert_eq!(safety_number(&b, "alice"), safety_number(&changed, "bob"));
}

#[test]
fn bad_log_requests_get_clear_errors_and_the_owner_sees_the_head() {
    let dir = TempDir::new("kt-bad");
    let server = Server::start(&dir.join("data"), &[]);
    register(&server, &dir, "alice");
    block_on(async {
        let fp = cert_fingerprint(&std::fs::read(server.cert()).unwrap());
        let relay = Relay::connect(&server.addr, &fp).await.unwrap();
        relay.authenticate(&ed25519_dalek::SigningKey::from_bytes(&[3; 32])).await.unwrap();
        let e = relay
            .call::<_, pb::LogConsistencyResponse>(
                Method::LogConsistency,
                &pb::LogConsistencyRequest { from_size: 1, to_size: 9 },
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(Status::BadRequest));
        assert!(e.to_string().contains("no consistency proof from 1 to 9 entries: the log has 2"), "{e}");
        let e = relay
            .call::<_, pb::LogEntriesResponse>(
                Method::LogEntries,
                &pb::LogEntriesRequest { start: 0, count: 0 },
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("count 0 out of range"), "{e}");
        let e = relay
            .call::<_, pb::LogInclusionResponse>(
                Method::LogInclusion,
                &pb::LogInclusionRequest { username: "nobody".into() },
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(Status::NotFound));
        // Not signed in to an account: no devices to list or revoke.
        let e = relay
            .call::<_, pb::RevokeDeviceResponse>(
                Method::RevokeDevice,
                &pb::RevokeDeviceRequest { identity_key: vec![1; 32] },
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(Status::Forbidden));
        relay.close().await;
    });
    let out = std::process::Command::new(server_bin())
        .args(["log-head", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("size      2\n") && text.contains("log_key   "), "{text}{}", stderr(&out));
}

#[test]
fn the_repl_verifies_too_and_both_sides_see_the_same_number() {
    let dir = TempDir::new("kt-repl");
    let server = Server::start(&dir.join("data"), &[]);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    alice.send("/verify bob");
    let a = alice.expect("safety number with bob: ");
    bob.send("/verify alice");
    let b = bob.expect("safety number with alice: ");
    assert_eq!(safety_number(&a, "bob"), safety_number(&b, "alice"));
    alice.send("/verify nobody");
    let err = alice.expect("/verify nobody");
    assert!(err.contains("nobody"), "{err}");
    alice.quit();
    bob.quit();
}

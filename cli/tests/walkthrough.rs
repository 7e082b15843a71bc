//! The README walkthrough, as separate `qpc` processes against a real relay.

mod common;

use common::*;

#[test]
fn alice_and_bob_talk_through_a_group() {
    let dir = TempDir::new("walk");
    let server = Server::start(&dir.join("data"), &[]);
    let (alice, bob) = (dir.join("alice.bin"), dir.join("bob.bin"));

    let a = ok(server.qpc(&alice, &["register-state"]));
    assert!(a.contains("KeyPackage uploaded successfully."), "{a}");
    let fingerprint = a.lines().find_map(|l| l.strip_prefix("fingerprint : ")).unwrap();
    assert_eq!(fingerprint.trim().len(), 64);
    let alice_key = identity_key(&a);
    assert_eq!(alice_key.len(), 64);
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));

    assert_eq!(
        ok(server.qpc(&alice, &["create-group", "--group-id", "demo-chat"])).trim(),
        "group created: demo-chat"
    );
    assert_eq!(
        ok(server.qpc(&alice, &["invite", "--peer-key", &bob_key])).trim(),
        "invited peer (welcome queued)"
    );
    assert!(ok(server.qpc(&bob, &["join"])).contains("joined group successfully"));

    let hello = "Hello Bob, this is encrypted with MLS!";
    assert_eq!(
        ok(server.qpc(&alice, &["send", "--peer-key", &bob_key, "--msg", hello])).trim(),
        "message sent"
    );
    assert_eq!(ok(server.qpc(&bob, &["recv"])).trim(), format!("[0] plaintext: {hello}"));

    let reply = "Hi Alice, received loud and clear!";
    ok(server.qpc(&bob, &["send", "--peer-key", &alice_key, "--msg", reply]));
    assert_eq!(plaintexts(&ok(server.qpc(&alice, &["recv"]))), [reply]);

    // Nothing is delivered twice.
    assert_eq!(ok(server.qpc(&bob, &["recv"])).trim(), "");
    let who = ok(server.qpc(&bob, &["whoami"]));
    assert!(who.contains(&bob_key) && who.contains("group : demo-chat"), "{who}");
}

#[test]
fn demo_group_runs_both_directions() {
    let dir = TempDir::new("demo");
    let server = Server::start(&dir.join("data"), &[]);
    let out = ok(server.qpc(&dir.join("unused.bin"), &["demo-group"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["Alice -> Bob plaintext: hello bob", "Bob -> Alice plaintext: hello alice", "demo-group complete"]
    );
}

#[test]
fn three_members_read_each_other() {
    let dir = TempDir::new("three");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| dir.join(&format!("{n}.bin")));
    ok(server.qpc(&alice, &["register-state"]));
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));
    let carol_key = identity_key(&ok(server.qpc(&carol, &["register-state"])));

    ok(server.qpc(&alice, &["create-group", "--group-id", "team"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &bob_key]));
    ok(server.qpc(&bob, &["join"]));
    // Carol comes after Bob: Bob gets the commit and must advance his epoch.
    ok(server.qpc(&alice, &["invite", "--peer-key", &carol_key]));
    ok(server.qpc(&carol, &["join"]));
    let bob_out = ok(server.qpc(&bob, &["recv"]));
    assert!(bob_out.contains("group team is now at epoch 2"), "{bob_out}");

    for (who, text) in [(&alice, "from alice"), (&bob, "from bob"), (&carol, "from carol")] {
        ok(server.qpc(who, &["send", "--all", "--msg", text]));
    }
    assert_eq!(plaintexts(&ok(server.qpc(&alice, &["recv"]))), ["from bob", "from carol"]);
    assert_eq!(plaintexts(&ok(server.qpc(&bob, &["recv"]))), ["from alice", "from carol"]);
    assert_eq!(plaintexts(&ok(server.qpc(&carol, &["recv"]))), ["from alice", "from bob"]);
}

#[test]
fn queued_messages_survive_a_restart_and_arrive_once() {
    let dir = TempDir::new("restart");
    let mut server = Server::start(&dir.join("data"), &["--db-key", "correct horse"]);
    let (alice, bob) = (dir.join("alice.bin"), dir.join("bob.bin"));
    ok(server.qpc(&alice, &["register-state"]));
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));
    ok(server.qpc(&alice, &["create-group", "--group-id", "g"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &bob_key]));
    ok(server.qpc(&bob, &["join"]));
    for i in 0..3 {
        ok(server.qpc(&alice, &["send", "--peer-key", &bob_key, "--msg", &format!("offline {i}")]));
    }
    server.restart();
    assert!(server.log().contains("accepting QUIC connections"));
    assert_eq!(plaintexts(&ok(server.qpc(&bob, &["recv"]))), ["offline 0", "offline 1", "offline 2"]);
    assert_eq!(plaintexts(&ok(server.qpc(&bob, &["recv"]))), Vec::<String>::new());
}

#[test]
fn key_packages_are_single_use_and_the_last_resort_one_is_kept() {
    let dir = TempDir::new("kp");
    let server = Server::start(&dir.join("data"), &[]);
    let (alice, bob) = (dir.join("alice.bin"), dir.join("bob.bin"));
    ok(server.qpc(&alice, &["register-state"]));
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));
    let fetch = || ok(server.qpc(&alice, &["fetch-key", "--peer-key", &bob_key]));
    let hash = |line: &str| line.split("sha256 ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    // The pool: each fetch removes exactly one, never the same twice.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let out = fetch();
        assert!(out.contains(&format!("KeyPackage of {bob_key}")) && !out.contains("last resort"), "{out}");
        assert!(seen.insert(hash(&out)), "a pool KeyPackage was handed out twice: {out}");
    }
    // Then the last-resort one, again and again, so Bob can still be invited.
    let last = fetch();
    assert!(last.trim_end().ends_with("(last resort)"), "{last}");
    assert!(!seen.contains(&hash(&last)));
    assert_eq!(hash(&fetch()), hash(&last));
    // Bob's next run tops the pool up and replaces the used last-resort one.
    ok(server.qpc(&bob, &["recv"]));
    let fresh = fetch();
    assert!(!fresh.contains("last resort"), "{fresh}");
    for _ in 0..9 {
        fetch();
    }
    let replaced = fetch();
    assert!(replaced.contains("(last resort)") && hash(&replaced) != hash(&last), "{replaced}");
}

//! Post-quantum groups: new groups use the X-Wing ciphersuite (X25519 +
//! ML-KEM-768), every device publishes KeyPackages for both suites, and a
//! device that offers only the classic one is refused from a PQ group with a
//! clear message (or gets a classic group by the creator's choice). Real
//! relay, real binaries.

mod common;

use common::*;
use qpc::mls::{suite_of_message, Member, Suite};
use qpc::state::State;

#[test]
fn a_post_quantum_group_of_three_adds_removes_updates_and_reads() {
    let dir = TempDir::new("pq");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| dir.join(&format!("{n}.bin")));
    ok(server.qpc(&alice, &["register-state"]));
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));
    let carol_key = identity_key(&ok(server.qpc(&carol, &["register-state"])));

    // Bob's relay holds KeyPackages of both suites.
    let bob_id: [u8; 32] = hex::decode(&bob_key).unwrap().try_into().unwrap();
    let alice_state = State::load(&alice).unwrap();
    let (pq, classic) = block_on(async {
        let relay = signed_in(&server, &alice_state.signing_key).await;
        let pq = relay.fetch_key_package_of(&bob_id, Suite::Pq.id()).await.unwrap().key_package;
        let classic = relay.fetch_key_package_of(&bob_id, 0).await.unwrap().key_package;
        relay.close().await;
        (pq, classic)
    });
    assert_eq!(suite_of_message(&pq), Some(Suite::Pq));
    assert_eq!(suite_of_message(&classic), Some(Suite::Classic));
    eprintln!("KeyPackage sizes: X-Wing {} bytes, classic {} bytes", pq.len(), classic.len());

    ok(server.qpc(&alice, &["create-group", "--group-id", "pq"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &bob_key]));
    // The Welcome waiting for Bob is an X-Wing one.
    let bob_state = State::load(&bob).unwrap();
    let queued = block_on(async {
        let relay = signed_in(&server, &bob_state.signing_key).await;
        let queued = relay.peek(0).await.unwrap();
        relay.close().await;
        queued
    });
    assert!(queued.iter().any(|e| suite_of_message(&e.payload) == Some(Suite::Pq)), "no X-Wing Welcome");
    drop(bob_state);
    ok(server.qpc(&bob, &["join"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &carol_key]));
    ok(server.qpc(&carol, &["join"]));
    let who = ok(server.qpc(&carol, &["whoami"]));
    assert!(who.contains("suite : pq: post-quantum: X-Wing"), "{who}");

    for (who, text) in [(&alice, "from alice"), (&bob, "from bob"), (&carol, "from carol")] {
        ok(server.qpc(who, &["recv"]));
        ok(server.qpc(who, &["send", "--all", "--msg", text]));
    }
    assert_eq!(plaintexts(&ok(server.qpc(&alice, &["recv"]))), ["from bob", "from carol"]);
    assert_eq!(plaintexts(&ok(server.qpc(&bob, &["recv"]))), ["from carol"]);
    ok(server.qpc(&bob, &["update", "--group-id", "pq"]));
    ok(server.qpc(&alice, &["remove", &carol_key, "--group-id", "pq"]));
    ok(server.qpc(&bob, &["recv"]));
    ok(server.qpc(&bob, &["send", "--all", "--msg", "after the removal"]));
    assert_eq!(plaintexts(&ok(server.qpc(&alice, &["recv"]))), ["after the removal"]);
    let out = ok(server.qpc(&carol, &["recv"]));
    assert!(out.contains("you were removed from group pq"), "{out}");
}

#[test]
fn a_device_that_offers_only_the_classic_suite_is_refused_or_gets_a_classic_group() {
    let dir = TempDir::new("pq-classic");
    let server = Server::start(&dir.join("data"), &[]);
    let alice = dir.join("alice.bin");
    ok(server.qpc(&alice, &["register-state"]));
    // An older client: one classic KeyPackage, no post-quantum one.
    let old_seed = [0x42u8; 32];
    let mut old = Member::new(old_seed);
    let old_key = hex::encode(old.identity_key());
    let kp = old.new_key_package().unwrap();
    block_on(async {
        let relay = signed_in(&server, &ed25519_dalek::SigningKey::from_bytes(&old_seed)).await;
        relay.upload_key_package(kp).await.unwrap();
        relay.close().await;
    });

    ok(server.qpc(&alice, &["create-group", "--group-id", "new"]));
    let err = fails(server.qpc(&alice, &["invite", "--peer-key", &old_key]));
    assert!(err.contains("no post-quantum KeyPackage") && err.contains("--suite classic"), "{err}");
    ok(server.qpc(&alice, &["create-group", "--group-id", "compatible", "--suite", "classic"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &old_key, "--group-id", "compatible"]));
    let err = fails(server.qpc(&alice, &["create-group", "--group-id", "x", "--suite", "quantum"]));
    assert!(err.contains("--suite \"quantum\": expected pq"), "{err}");
}

//! What the relay can still learn from traffic (issue: less metadata):
//! message sizes fall into a few padding buckets, and a sealed enqueue
//! stores no sender. Real relay, real binaries.

mod common;

use common::*;
use qpc::content::PADDING_BUCKETS;
use qpc::state::State;

/// Lengths of the payloads waiting in `who`'s queue, read without acking.
fn queued_sizes(server: &Server, who: &std::path::Path) -> Vec<usize> {
    let state = State::load(who).unwrap();
    block_on(async {
        let relay = signed_in(server, &state.signing_key).await;
        let sizes = relay.peek(0).await.unwrap().iter().map(|e| e.payload.len()).collect();
        relay.close().await;
        sizes
    })
}

#[test]
fn application_messages_fall_into_the_padding_buckets() {
    let dir = TempDir::new("padding");
    let server = Server::start(&dir.join("data"), &[]);
    let (alice, bob) = (dir.join("alice.bin"), dir.join("bob.bin"));
    ok(server.qpc(&alice, &["register-state"]));
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));
    ok(server.qpc(&alice, &["create-group", "--group-id", "sizes"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &bob_key]));
    ok(server.qpc(&bob, &["join"]));

    for len in [1usize, 50, 200, 900] {
        ok(server.qpc(&alice, &["send", "--all", "--msg", &"m".repeat(len)]));
    }
    let sizes = queued_sizes(&server, &bob);
    // Alice's delivery token (sealed sender) may come first: it is a
    // message like any other, so it is padded alike.
    let texts = &sizes[sizes.len() - 4..];
    // The same group's header and signature around every one: the stored
    // size is the bucket plus one constant.
    let overhead = texts[0] - PADDING_BUCKETS[0];
    assert_eq!(texts, [256, 256, 256, 1024].map(|b| b + overhead), "overhead {overhead}");
    assert!(sizes.iter().all(|s| *s == 256 + overhead || *s == 1024 + overhead), "{sizes:?}");
    assert!(overhead < 256, "MLS framing costs {overhead} bytes per message");
    eprintln!("stored sizes {sizes:?}: buckets 256/1024 + {overhead} bytes of MLS framing");
    // And they still read as the texts they were.
    let texts = plaintexts(&ok(server.qpc(&bob, &["recv"])));
    assert_eq!(texts.iter().map(String::len).collect::<Vec<_>>(), [1, 50, 200, 900]);
}

/// The token Bob's device handed its groups, as Alice's state holds it.
fn token_for(holder: &std::path::Path, device: &[u8; 32]) -> Option<Vec<u8>> {
    let state = State::load(holder).unwrap();
    state.sealed.tokens.iter().find(|t| t.device == device).map(|t| t.token.clone())
}

#[test]
fn a_sealed_enqueue_stores_no_sender_and_a_revoked_token_is_refused() {
    let dir = TempDir::new("sealed");
    let server = Server::start(&dir.join("data"), &["--log-level", "debug", "--rate-per-connection", "40"]);
    let (alice, bob, carol) = (dir.join("alice.bin"), dir.join("bob.bin"), dir.join("carol.bin"));
    let alice_key = identity_key(&ok(server.qpc(&alice, &["register-state"])));
    let bob_key = identity_key(&ok(server.qpc(&bob, &["register-state"])));
    let carol_key = identity_key(&ok(server.qpc(&carol, &["register-state"])));
    ok(server.qpc(&alice, &["create-group", "--group-id", "quiet"]));
    ok(server.qpc(&alice, &["invite", "--peer-key", &bob_key]));
    ok(server.qpc(&bob, &["join"]));
    // Bob's next run hands his token to the group; Alice's reads it.
    ok(server.qpc(&bob, &["recv"]));
    ok(server.qpc(&alice, &["recv"]));
    let bob_id: [u8; 32] = hex::decode(&bob_key).unwrap().try_into().unwrap();
    let token = token_for(&alice, &bob_id).expect("alice holds bob's delivery token");
    assert_eq!(token.len(), 32);

    ok(server.qpc(&alice, &["send", "--all", "--msg", "sealed hello"]));
    let bob_state = State::load(&bob).unwrap();
    let envelopes = block_on(async {
        let relay = signed_in(&server, &bob_state.signing_key).await;
        let envelopes = relay.peek(0).await.unwrap();
        relay.close().await;
        envelopes
    });
    let last = envelopes.last().expect("a message for bob");
    assert!(
        last.sender_key.is_empty(),
        "the relay stored a sender for a sealed message: {:?}",
        last.sender_key
    );
    // Bob learns the sender from MLS.
    assert_eq!(plaintexts(&ok(server.qpc(&bob, &["recv"]))), ["sealed hello"]);
    let log = server.log();
    assert!(!log.lines().any(|l| l.contains("SealedEnqueue") && l.contains(&alice_key[..16])), "{log}");

    // Straight through the library, as a stranger would: another queue's
    // token, a garbage token, then Bob's token after he rotated it.
    let fp = qpc::relay::cert_fingerprint(&std::fs::read(server.cert()).unwrap());
    let sealed = |recipient: &str, token: Vec<u8>| qpc_proto::pb::SealedEnqueueRequest {
        recipient_key: hex::decode(recipient).unwrap(),
        token,
        payload: b"opaque".to_vec(),
        channel_id: vec![],
        client_msg_id: vec![],
    };
    let call = |req: qpc_proto::pb::SealedEnqueueRequest| {
        block_on(async {
            let relay = qpc::relay::Relay::connect(&server.addr, &fp).await.unwrap();
            let answer = relay
                .call::<_, qpc_proto::pb::SealedEnqueueResponse>(qpc_proto::Method::SealedEnqueue, &req)
                .await;
            relay.close().await;
            answer
        })
    };
    let err = call(sealed(&carol_key, token.clone())).unwrap_err();
    assert_eq!(err.status(), Some(qpc_proto::Status::Forbidden));
    assert!(err.to_string().contains("for another queue"), "{err}");
    let err = call(sealed(&bob_key, vec![1; 32])).unwrap_err();
    assert!(err.to_string().contains("unknown or revoked delivery token"), "{err}");
    let err = call(sealed(&bob_key, vec![1; 5])).unwrap_err();
    assert_eq!(err.status(), Some(qpc_proto::Status::BadRequest), "{err}");
    assert!(call(sealed(&bob_key, token.clone())).is_ok(), "the current token works anonymously");

    assert!(ok(server.qpc(&bob, &["rotate-token"])).contains("old one is revoked"));
    let err = call(sealed(&bob_key, token.clone())).unwrap_err();
    assert_eq!(err.status(), Some(qpc_proto::Status::Forbidden));
    assert!(err.to_string().contains("unknown or revoked"), "{err}");
    // Alice picks the new token up and sealed delivery goes on; the garbage
    // Bob got above reads as undecryptable, nothing else.
    ok(server.qpc(&bob, &["recv"]));
    ok(server.qpc(&alice, &["recv"]));
    let fresh = token_for(&alice, &bob_id).unwrap();
    assert_ne!(fresh, token);
    ok(server.qpc(&alice, &["send", "--all", "--msg", "after the rotation"]));
    assert_eq!(plaintexts(&ok(server.qpc(&bob, &["recv"]))), ["after the rotation"]);

    // A sealed sender is rate limited like anyone else.
    let limited = block_on(async {
        let relay = qpc::relay::Relay::connect(&server.addr, &fp).await.unwrap();
        let mut limited = None;
        for _ in 0..200 {
            if let Err(e) = relay
                .call::<_, qpc_proto::pb::SealedEnqueueResponse>(
                    qpc_proto::Method::SealedEnqueue,
                    &sealed(&bob_key, fresh.clone()),
                )
                .await
            {
                limited = Some(e);
                break;
            }
        }
        relay.close().await;
        limited
    });
    let limited = limited.expect("200 sealed enqueues at once are rate limited");
    assert_eq!(limited.status(), Some(qpc_proto::Status::RateLimited), "{limited}");
}

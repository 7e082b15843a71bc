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
    assert_eq!(sizes.len(), 4, "{sizes:?}");
    // The same group's header and signature around every one: the stored
    // size is the bucket plus one constant.
    let overhead = sizes[0] - PADDING_BUCKETS[0];
    assert_eq!(sizes, [256, 256, 256, 1024].map(|b| b + overhead), "overhead {overhead}");
    assert!(overhead < 256, "MLS framing costs {overhead} bytes per message");
    eprintln!("stored sizes {sizes:?}: buckets 256/1024 + {overhead} bytes of MLS framing");
    // And they still read as the texts they were.
    let texts = plaintexts(&ok(server.qpc(&bob, &["recv"])));
    assert_eq!(texts.iter().map(String::len).collect::<Vec<_>>(), [1, 50, 200, 900]);
}

//! Federation with two real relays on loopback (their own ports and data
//! directories), peered with `qpc-server peer add`, and the real `qpc`
//! binary for Alice on relay A and Bob on relay B. Key transparency across
//! them: Bob's relay lying (`QPC_TEST_KT_TAMPER`) is caught by Alice.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use qpc::relay::{cert_fingerprint, RelayError};
use qpc_proto::Status;

fn fp(server: &Server) -> String {
    cert_fingerprint(&std::fs::read(server.cert()).unwrap())
}

fn ctl(server: &Server, args: &[&str]) -> Output {
    Command::new(server_bin()).args(args).arg("--data-dir").arg(&server.data_dir).output().unwrap()
}

/// `from` takes `to` as a peer.
fn peer(from: &Server, to: &Server) {
    let url = format!("qpc://{}#{}", to.addr, fp(to));
    let out = ok(ctl(from, &["peer", "add", &url]));
    assert!(out.contains("added") || out.contains("updated"), "{out}");
}

/// A person with an account on `server`.
struct Person {
    name: &'static str,
    state: PathBuf,
}

impl Person {
    fn new(server: &Server, dir: &TempDir, name: &'static str) -> Person {
        let p = Person { name, state: dir.join(&format!("{name}.bin")) };
        ok(p.qpc(server, &["register-user"]));
        p
    }

    fn qpc(&self, server: &Server, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.extend_from_slice(&["--username", self.name, "--password", "pw"]);
        server.qpc(&self.state, &full)
    }

    /// Reads until `want` plaintexts arrived (forwarding is asynchronous).
    fn read(&self, server: &Server, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut got = Vec::new();
        while got.len() < want {
            assert!(Instant::now() < deadline, "{} got only {got:?}", self.name);
            got.extend(plaintexts(&ok(self.qpc(server, &["recv"]))));
            if got.len() < want {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        got
    }

    /// Joins the group whose invitation is on its way.
    fn join(&self, server: &Server) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.qpc(server, &["join"]);
            if out.status.success() && stdout(&out).contains("joined") {
                return;
            }
            assert!(Instant::now() < deadline, "{} never got the invitation: {}", self.name, stderr(&out));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn two_relays(dir: &TempDir, extra_b: &[&str]) -> (Server, Server) {
    two_relays_lying(dir, extra_b, |_| None)
}

/// Two peered relays; B lies as `tamper(A's address)` says, if it does
/// (`QPC_TEST_KT_TAMPER`).
fn two_relays_lying(
    dir: &TempDir,
    extra_b: &[&str],
    tamper: impl Fn(&str) -> Option<String>,
) -> (Server, Server) {
    let a = Server::start(&dir.join("a"), &["--log-level", "debug"]);
    let env = tamper(&a.addr).map(|t| vec![("QPC_TEST_KT_TAMPER", t)]).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let b = Server::start_with_env(&dir.join("b"), extra_b, &env);
    peer(&a, &b);
    peer(&b, &a);
    (a, b)
}

fn status(server: &Server) -> serde_json::Value {
    serde_json::from_str(&ok(ctl(server, &["status", "--json"]))).unwrap()
}

/// Alice (A) invites Bob (B) into group `g`; both sides answer once.
fn dm(a: &Server, b: &Server, alice: &Person, bob: &Person) {
    ok(alice.qpc(a, &["create-group", "--group-id", "g"]));
    let bob_at_b = format!("bob@{}", b.addr);
    let out = ok(alice.qpc(a, &["invite", &bob_at_b, "--group-id", "g"]));
    assert!(out.contains("invited"), "{out}");
    bob.join(b);
}

#[test]
fn alice_on_a_and_bob_on_b_talk_both_ways() {
    let dir = TempDir::new("fed-dm");
    let (a, b) = two_relays(&dir, &[]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    dm(&a, &b, &alice, &bob);

    let bob_at_b = format!("bob@{}", b.addr);
    let alice_at_a = format!("alice@{}", a.addr);
    assert_eq!(ok(alice.qpc(&a, &["send", "--to", &bob_at_b, "--msg", "hi bob"])).trim(), "message sent");
    assert_eq!(bob.read(&b, 1), ["hi bob"]);
    ok(bob.qpc(&b, &["send", "--to", &alice_at_a, "--msg", "hi alice"]));
    assert_eq!(alice.read(&a, 1), ["hi alice"]);
    // Bob's reply went sealed (Alice's delivery token reached him in MLS):
    // B forwarded it without a sender, A checked the token.
    a.wait_log("took a sealed message from peer");
    // Names across relays: B names Alice by her address.
    let out = ok(bob.qpc(&b, &["recv", "--json"]));
    assert!(!out.contains("hi bob"), "nothing twice: {out}");

    let s = status(&a);
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{s}");
    assert_eq!(peers[0]["address"], b.addr.as_str());
    assert_eq!(peers[0]["queued"], 0);
    assert!(peers[0]["forwarded"].as_u64().unwrap() >= 2, "{s}");
    let prom = ok(ctl(&a, &["status", "--prometheus"]));
    assert!(prom.contains(&format!("qpc_peer_queued_messages{{peer=\"{}\"}} 0", b.addr)), "{prom}");
    let list = ok(ctl(&a, &["peer", "list"]));
    assert!(list.contains(&b.addr) && list.contains(&fp(&b)[..16]), "{list}");
}

#[test]
fn messages_wait_on_a_while_b_is_down_and_arrive_once() {
    let dir = TempDir::new("fed-down");
    let (a, mut b) = two_relays(&dir, &[]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    dm(&a, &b, &alice, &bob);

    assert_eq!(b.stop(), Some(0));
    let bob_at_b = format!("bob@{}", b.addr);
    for text in ["one", "two", "three"] {
        assert_eq!(ok(alice.qpc(&a, &["send", "--to", &bob_at_b, "--msg", text])).trim(), "message sent");
    }
    let s = status(&a);
    assert!(s["peers"][0]["queued"].as_u64().unwrap() >= 3, "queued on A: {s}");
    assert_eq!(s["peers"][0]["reachable"], false);
    b.restart_stopped();
    assert_eq!(bob.read(&b, 3), ["one", "two", "three"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(plaintexts(&ok(bob.qpc(&b, &["recv"]))).is_empty(), "delivered once");
    assert_eq!(status(&a)["peers"][0]["queued"], 0);
}

#[test]
fn kill_9_after_the_peer_took_a_message_delivers_it_once() {
    let dir = TempDir::new("fed-kill");
    let (mut a, b) = two_relays(&dir, &[]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    dm(&a, &b, &alice, &bob);
    assert_eq!(a.stop(), Some(0));

    // A stops dead right after B answered, before the message leaves A's queue.
    let crashing = Server::start_with_env(&a.data_dir, &[], &[("QPC_TEST_CRASH_AT", "fed-forwarded")]);
    let bob_at_b = format!("bob@{}", b.addr);
    let _ = alice.qpc(&crashing, &["send", "--to", &bob_at_b, "--msg", "exactly once"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !crashing.log().contains("QPC_TEST_CRASH_AT: stopping at fed-forwarded") {
        assert!(Instant::now() < deadline, "A never forwarded:\n{}", crashing.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(crashing);
    // A again: it sends the message once more (and Alice's outbox, if her
    // answer was lost); B and Bob take it once.
    let again = Server::start(&a.data_dir, &[]);
    let _ = alice.qpc(&again, &["recv"]);
    assert_eq!(bob.read(&b, 1), ["exactly once"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&again)["peers"][0]["queued"] != 0 {
        assert!(Instant::now() < deadline, "A kept the message queued");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(plaintexts(&ok(bob.qpc(&b, &["recv"]))).is_empty(), "delivered once");
}

#[test]
fn kill_9_of_the_receiving_relay_before_it_answered_delivers_once() {
    let dir = TempDir::new("fed-kill-b");
    let (a, mut b) = two_relays(&dir, &[]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    dm(&a, &b, &alice, &bob);
    assert_eq!(b.stop(), Some(0));

    // B stores the message, then stops dead before answering A.
    let crashing = Server::start_with_env(&b.data_dir, &[], &[("QPC_TEST_CRASH_AT", "fed-taken")]);
    peer(&a, &crashing);
    ok(alice.qpc(&a, &["send", "--all", "--msg", "stored, unanswered"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !crashing.log().contains("QPC_TEST_CRASH_AT: stopping at fed-taken") {
        assert!(Instant::now() < deadline, "B never took it:\n{}", crashing.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(crashing);
    // B again: A sends it once more, B knows its id, Bob reads it once.
    let again = Server::start(&b.data_dir, &[]);
    peer(&a, &again);
    assert_eq!(bob.read(&again, 1), ["stored, unanswered"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&a)["peers"][0]["queued"] != 0 {
        assert!(Instant::now() < deadline, "A kept the message queued");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(plaintexts(&ok(bob.qpc(&again, &["recv"]))).is_empty(), "delivered once");
}

#[test]
fn only_peers_are_answered_and_a_removed_peer_is_refused() {
    let dir = TempDir::new("fed-refuse");
    let a = Server::start(&dir.join("a"), &[]);
    let b = Server::start(&dir.join("b"), &[]);
    let c = Server::start(&dir.join("c"), &[]);
    let _bob = Person::new(&b, &dir, "bob");
    let alice = Person::new(&a, &dir, "alice");
    ok(alice.qpc(&a, &["create-group", "--group-id", "g"]));
    let bob_at_b = format!("bob@{}", b.addr);

    // No peer at that address.
    let e = fails(alice.qpc(&a, &["invite", &bob_at_b, "--group-id", "g"]));
    assert!(e.contains("no peer relay at"), "{e}");
    // A takes B, B does not take A: B refuses the link.
    peer(&a, &b);
    let e = fails(alice.qpc(&a, &["invite", &bob_at_b, "--group-id", "g"]));
    assert!(e.contains("unavailable") && e.contains("not a peer of this relay"), "{e}");
    b.wait_log("is not a peer of this relay");
    // Now both: it works.
    peer(&b, &a);
    let out = ok(alice.qpc(&a, &["invite", &bob_at_b, "--group-id", "g"]));
    assert!(out.contains("invited"), "{out}");
    // B removes A: refused from then on (the open link closes too).
    let out = ok(ctl(&b, &["peer", "remove", &a.addr]));
    assert!(out.contains("removed"), "{out}");
    let carol = Person::new(&b, &dir, "carol");
    let _ = carol;
    let carol_at_b = format!("carol@{}", b.addr);
    let e = fails(alice.qpc(&a, &["invite", &carol_at_b, "--group-id", "g"]));
    assert!(e.contains("not a peer of this relay") || e.contains("removed you"), "{e}");

    // A peer added with a fingerprint that is not the certificate of the
    // relay at that address: A's pin refuses it.
    let url = format!("qpc://{}#{}", c.addr, "ab".repeat(32));
    ok(ctl(&a, &["peer", "add", &url]));
    let e = fails(alice.qpc(&a, &["invite", &format!("bob@{}", c.addr), "--group-id", "g"]));
    assert!(e.contains("fingerprint") && e.contains("not"), "{e}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let dir = TempDir::new("fed-bad");
    let (a, b) = two_relays(&dir, &[]);
    let e = fails(ctl(&a, &["peer", "add", &format!("qpc://{}", b.addr)]));
    assert!(e.contains("fingerprint is missing"), "{e}");
    let e = fails(ctl(&a, &["peer", "add", &format!("qpc://{}#1234", b.addr)]));
    assert!(e.contains("64 hex digits"), "{e}");
    let e = fails(ctl(&a, &["peer", "add", &format!("qpc://{}#{}", a.addr, fp(&a))]));
    assert!(e.contains("itself"), "{e}");
    let e = fails(ctl(&a, &["peer", "remove", "nobody:1"]));
    assert!(e.contains("no peer"), "{e}");

    let alice = Person::new(&a, &dir, "alice");
    let _bob = Person::new(&b, &dir, "bob");
    ok(alice.qpc(&a, &["create-group", "--group-id", "g"]));
    for (address, why) in [
        ("Bob@127.0.0.1:1", "invalid username"),
        ("bob@", "host is missing"),
        ("bob@127.0.0.1:99999", "not a port"),
        ("bob@::1:7000", "brackets"),
    ] {
        let e = fails(alice.qpc(&a, &["invite", address, "--group-id", "g"]));
        assert!(e.contains(why) && e.contains("remote address"), "{address}: {e}");
    }
    let e = fails(alice.qpc(&a, &["invite", &format!("nobody@{}", b.addr), "--group-id", "g"]));
    assert!(e.contains("not_found") && e.contains("nobody"), "{e}");

    // A client cannot call the peer methods.
    block_on(async {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let relay = signed_in(&a, &key).await;
        let req = qpc_proto::pb::PeerDeliverRequest::default();
        let e = relay
            .call::<_, qpc_proto::pb::PeerDeliverResponse>(qpc_proto::Method::PeerDeliver, &req)
            .await
            .unwrap_err();
        assert!(matches!(&e, RelayError::Refused { status: Status::Forbidden, .. }), "{e}");
    });
}

#[test]
fn a_peer_cannot_go_past_the_recipients_quota_or_reach_a_deleted_identity() {
    let dir = TempDir::new("fed-quota");
    let (a, b) = two_relays(&dir, &["--max-queue-messages", "3"]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    dm(&a, &b, &alice, &bob);
    let _ = bob.qpc(&b, &["recv"]);

    let bob_at_b = format!("bob@{}", b.addr);
    let texts = ["m1", "m2", "m3", "m4", "m5"];
    for text in texts {
        ok(alice.qpc(&a, &["send", "--to", &bob_at_b, "--msg", text]));
    }
    // B takes three, refuses the rest for now; A keeps them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&a);
        let error = s["peers"][0]["last_error"].as_str().unwrap_or_default().to_string();
        if error.contains("quota_exceeded") {
            assert!(s["peers"][0]["queued"].as_u64().unwrap() >= 1, "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "A never heard quota_exceeded: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // As Bob reads, the rest follow, once each.
    assert_eq!(bob.read(&b, 5), texts);

    // Bob's account goes: what A still forwards for him is refused for good,
    // and Alice is told.
    ok(ctl(&b, &["user-delete", "bob"]));
    ok(alice.qpc(&a, &["send", "--all", "--msg", "too late"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = alice.qpc(&a, &["recv"]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        if text.contains("was not delivered") {
            assert!(text.contains("not_found"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "Alice was never told: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads until `text` shows in the output of `recv` (stdout and stderr).
fn recv_until(p: &Person, server: &Server, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut all = String::new();
    loop {
        let out = p.qpc(server, &["recv"]);
        all.push_str(&stdout(&out));
        all.push_str(&stderr(&out));
        if all.contains(text) {
            return all;
        }
        assert!(Instant::now() < deadline, "{} never saw {text:?}: {all}", p.name);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_group_with_members_on_both_relays_adds_updates_and_removes() {
    let dir = TempDir::new("fed-group");
    let (a, b) = two_relays(&dir, &[]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    let carol = Person::new(&a, &dir, "carol");
    // The group opens on A (its fence lives there); Bob on B joins.
    dm(&a, &b, &alice, &bob);
    // Bob (on B) adds Carol (on A): B forwards his commit to A's fence.
    let carol_at_a = format!("carol@{}", a.addr);
    let out = ok(bob.qpc(&b, &["invite", &carol_at_a, "--group-id", "g"]));
    assert!(out.contains("invited"), "{out}");
    carol.join(&a);
    recv_until(&alice, &a, "group g is now at epoch 2");
    // Bob updates his key: through A's fence, to Alice and Carol.
    ok(bob.qpc(&b, &["update", "--group-id", "g"]));
    recv_until(&alice, &a, "group g is now at epoch 3");
    recv_until(&carol, &a, "group g is now at epoch 3");
    // Everyone reads everyone.
    for (who, server, text) in
        [(&alice, &a, "from alice"), (&bob, &b, "from bob"), (&carol, &a, "from carol")]
    {
        ok(who.qpc(server, &["send", "--all", "--group-id", "g", "--msg", text]));
    }
    assert_eq!(alice.read(&a, 2).len(), 2);
    let mut bob_got = bob.read(&b, 2);
    bob_got.sort();
    assert_eq!(bob_got, ["from alice", "from carol"]);
    let mut carol_got = carol.read(&a, 2);
    carol_got.sort();
    assert_eq!(carol_got, ["from alice", "from bob"]);
    // Carol (on A) removes Bob (on B): he is told, and reads no more.
    let bob_at_b = format!("bob@{}", b.addr);
    ok(carol.qpc(&a, &["remove", &bob_at_b, "--group-id", "g"]));
    recv_until(&bob, &b, "removed");
    ok(alice.qpc(&a, &["send", "--all", "--group-id", "g", "--msg", "bob is gone"]));
    assert_eq!(carol.read(&a, 1), ["bob is gone"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(plaintexts(&ok(bob.qpc(&b, &["recv"]))).is_empty());
}

/// A "peer" that answers every request with bytes that are not a response
/// frame; counts the connections it got.
fn garbage_peer() -> (String, String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.der().to_vec();
    let key = made.signing_key.serialize_der();
    let fingerprint = cert_fingerprint(&cert);
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        block_on(async move {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut tls = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![rustls::pki_types::CertificateDer::from(cert)],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
                )
                .unwrap();
            tls.alpn_protocols = vec![qpc_proto::FED_ALPN.to_vec()];
            let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
            let config = quinn::ServerConfig::with_crypto(Arc::new(quic));
            let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send(endpoint.local_addr().unwrap().to_string()).unwrap();
            while let Some(incoming) = endpoint.accept().await {
                let Ok(conn) = incoming.await else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let _ = recv.read_to_end(1 << 20).await;
                        let _ = send.write_all(&[0xee; 40]).await;
                        let _ = send.finish();
                    }
                });
            }
        })
    });
    (rx.recv().unwrap(), fingerprint, connections)
}

#[test]
fn a_peer_that_answers_garbage_has_its_link_closed_and_retried_and_nothing_local_changes() {
    use std::sync::atomic::Ordering;
    let dir = TempDir::new("fed-garbage");
    let a = Server::start(&dir.join("a"), &[]);
    let (addr, fingerprint, connections) = garbage_peer();
    ok(ctl(&a, &["peer", "add", &format!("qpc://{addr}#{fingerprint}")]));
    let alice = Person::new(&a, &dir, "alice");
    ok(alice.qpc(&a, &["create-group", "--group-id", "g"]));
    let before = status(&a);

    let e = fails(alice.qpc(&a, &["invite", &format!("bob@{addr}"), "--group-id", "g"]));
    assert!(e.contains("unavailable") && e.contains("garbage"), "{e}");
    a.wait_log("answered garbage");
    let e = fails(alice.qpc(&a, &["invite", &format!("bob@{addr}"), "--group-id", "g"]));
    assert!(e.contains("garbage"), "{e}");
    assert!(connections.load(Ordering::SeqCst) >= 2, "the link was closed and dialed again");

    let after = status(&a);
    for key in ["accounts", "identities", "queued_messages", "queued_bytes"] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert!(after["peers"][0]["last_error"].as_str().unwrap().contains("garbage"), "{after}");
    // Alice's own relay serves her as before.
    ok(alice.qpc(&a, &["create-group", "--group-id", "h"]));
}

#[test]
fn a_key_bobs_relay_adds_behind_its_log_is_refused_on_alices_relay() {
    let dir = TempDir::new("fed-kt-tamper");
    let (a, b) = two_relays_lying(&dir, &[], |_| Some("extra-key:bob".into()));
    let alice = Person::new(&a, &dir, "alice");
    let _bob = Person::new(&b, &dir, "bob");
    ok(alice.qpc(&a, &["create-group", "--group-id", "g"]));
    let bob_at_b = format!("bob@{}", b.addr);
    let err = fails(alice.qpc(&a, &["invite", &bob_at_b, "--group-id", "g"]));
    assert!(err.contains(&format!("key transparency check of \"{bob_at_b}\" FAILED")), "{err}");
    assert!(err.contains(&"5a".repeat(32)) && err.contains("not in the log"), "names the extra key: {err}");
    let who = ok(alice.qpc(&a, &["whoami"]));
    assert!(who.contains("group : g (epoch 0, 1 members)"), "nobody was invited: {who}");
    let err = fails(alice.qpc(&a, &["verify", &bob_at_b]));
    assert!(err.contains("FAILED") && err.contains(&bob_at_b), "{err}");
}

#[test]
fn a_split_view_of_bobs_relay_is_caught_on_alices_next_check() {
    let dir = TempDir::new("fed-kt-fork");
    // B shows the peer A (and so every device asking through A) a log with
    // one entry more than its own people see.
    let (a, mut b) = two_relays_lying(&dir, &[], |a_addr| Some(format!("fork:@{a_addr}")));
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    let bob_at_b = format!("bob@{}", b.addr);
    let out = ok(alice.qpc(&a, &["verify", &bob_at_b]));
    assert!(out.contains(&format!("safety number with {bob_at_b}")), "{out}");
    let audit = ok(bob.qpc(&b, &["audit"]));
    assert!(audit.contains("log verified: 2 entries"), "bob's view of his relay: {audit}");
    // B cannot keep the two histories apart forever: once A is shown the
    // one B's own people have, Alice's next check fails, loudly.
    assert_eq!(b.stop(), Some(0));
    b.restart_stopped_with_env(&[]);
    let err = fails(alice.qpc(&a, &["verify", &bob_at_b]));
    assert!(err.contains(&format!("key transparency check of \"{bob_at_b}\" FAILED")), "{err}");
    assert!(err.contains("forked") && err.contains("from 3 to 2 entries"), "{err}");
}

#[test]
fn bobs_new_device_is_noticed_across_relays_and_his_log_must_extend() {
    let dir = TempDir::new("fed-kt-device");
    let (a, b) = two_relays(&dir, &[]);
    let alice = Person::new(&a, &dir, "alice");
    let bob = Person::new(&b, &dir, "bob");
    dm(&a, &b, &alice, &bob);
    let bob_at_b = format!("bob@{}", b.addr);
    ok(alice.qpc(&a, &["verify", &bob_at_b]));
    // Bob's laptop logs in on B and his phone adds it to the group: B's
    // log grew. Alice meets the new member, checks it against B's log (the
    // proof, and that the log extends what she saw, come through A) and is
    // told, as of someone on her own relay.
    ok(Person { name: "bob", state: dir.join("laptop.bin") }.qpc(&b, &["login"]));
    recv_until(&bob, &b, "added your new device");
    let seen = recv_until(&alice, &a, "has a new device");
    assert!(seen.contains(&format!("#g: {bob_at_b} has a new device")), "{seen}");
    let after = ok(alice.qpc(&a, &["verify", &bob_at_b]));
    assert!(after.contains("CHANGED since you verified it"), "{after}");
    ok(alice.qpc(&a, &["send", "--to", &bob_at_b, "--msg", "two devices"]));
    assert_eq!(bob.read(&b, 1), ["two devices"]);
}

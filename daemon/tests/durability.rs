//! Durability with the storage thread: every enqueue that was answered
//! survives kill -9 under load from several senders; a waiting recipient
//! gets a message before its sender is answered when the disk is slow; and
//! a sequence number shown before a crash never names another message.

mod common;

use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::SigningKey;
use qpc::relay::{cert_fingerprint, Relay};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn fingerprint(server: &Server) -> String {
    cert_fingerprint(&std::fs::read(server.cert()).unwrap())
}

async fn online(server: &Server, key: &SigningKey) -> Relay {
    let relay = Relay::connect(&server.addr, &fingerprint(server)).await.unwrap();
    relay.authenticate(key).await.unwrap();
    relay
}

fn kill_9(server: &Server) {
    let status = std::process::Command::new("kill").arg("-KILL").arg(server.pid().to_string()).status();
    assert!(status.unwrap().success());
}

const UNLIMITED: &[&str] = &["--rate-per-connection", "1000000", "--rate-per-address", "1000000"];

#[test]
fn every_answered_enqueue_survives_kill_9_under_load() {
    let dir = TempDir::new("kill9");
    let data = dir.join("data");
    let server = Server::start(&data, UNLIMITED);
    let reader = SigningKey::from_bytes(&[1u8; 32]);
    let to = reader.verifying_key().to_bytes();
    let answered = block_on(async {
        drop(online(&server, &reader).await);
        let answered = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut senders = Vec::new();
        for s in 0..4u8 {
            let relay = Rc::new(online(&server, &SigningKey::from_bytes(&[10 + s; 32])).await);
            // Each sender keeps 8 enqueues in flight until the relay dies.
            for lane in 0..8u32 {
                let (relay, answered) = (Rc::clone(&relay), Rc::clone(&answered));
                senders.push(tokio::task::spawn_local(async move {
                    for n in 0u32.. {
                        let body = format!("sender {s} lane {lane} message {n}").into_bytes();
                        match relay.enqueue(&to, b"", body.clone(), body.clone()).await {
                            Ok(r) => answered.borrow_mut().push((r.seq, body)),
                            Err(_) => return,
                        }
                    }
                }));
            }
        }
        let started = Instant::now();
        while answered.borrow().len() < 500 {
            assert!(started.elapsed() < Duration::from_secs(60), "too slow: {}", answered.borrow().len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill_9(&server);
        for s in senders {
            let _ = s.await;
        }
        let answered = answered.borrow().clone();
        answered
    });
    drop(server);

    let server = Server::start(&data, UNLIMITED);
    let log = server.wait_log("did not stop cleanly");
    assert!(log.contains("queue sequence numbers moved"), "{log}");
    let stored = block_on(async {
        let relay = online(&server, &reader).await;
        let mut stored = Vec::new();
        loop {
            let page = relay.peek(1000).await.unwrap();
            let Some(last) = page.last().map(|e| e.seq) else { break };
            stored.extend(page.into_iter().map(|e| (e.seq, e.payload)));
            relay.ack(last).await.unwrap();
        }
        stored
    });
    let kept: std::collections::HashMap<u64, Vec<u8>> = stored.iter().cloned().collect();
    assert_eq!(kept.len(), stored.len(), "a sequence number names one message");
    for (seq, body) in &answered {
        assert_eq!(kept.get(seq), Some(body), "answered message {seq} lost after kill -9");
    }
    assert!(stored.len() >= answered.len());
}

#[test]
fn a_waiting_recipient_gets_the_message_before_the_sender_is_answered() {
    let dir = TempDir::new("early");
    let server = Server::start_with_env(&dir.join("data"), &[], &[("QPC_TEST_COMMIT_DELAY_MS", "1500")]);
    let reader_key = SigningKey::from_bytes(&[1u8; 32]);
    let to = reader_key.verifying_key().to_bytes();
    block_on(async {
        let reader = Rc::new(online(&server, &reader_key).await);
        let sender = Rc::new(online(&server, &SigningKey::from_bytes(&[2u8; 32])).await);
        let waiting = {
            let reader = Rc::clone(&reader);
            tokio::task::spawn_local(async move { reader.fetch_wait(10, 20_000).await.unwrap() })
        };
        // Let the FetchWait's read pass (it waits behind nothing now).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let sending = {
            let sender = Rc::clone(&sender);
            tokio::task::spawn_local(async move {
                let r = sender.enqueue(&to, b"", b"early".to_vec(), b"id-1".to_vec()).await.unwrap();
                (r, started.elapsed())
            })
        };
        let page = waiting.await.unwrap();
        let seen_after = started.elapsed();
        assert!(!sending.is_finished(), "the sender was answered before the reader had the message");
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].payload, b"early");
        let (answer, answered_after) = sending.await.unwrap();
        assert!(!answer.duplicate);
        assert_eq!(answer.seq, page[0].seq);
        assert!(
            answered_after >= Duration::from_millis(1500),
            "answered before the commit: {answered_after:?}"
        );
        assert!(seen_after < answered_after, "{seen_after:?} vs {answered_after:?}");
        // The ack of what was shown early deletes exactly that message.
        assert_eq!(reader.ack(page[0].seq).await.unwrap(), 1);
    });
}

#[test]
fn a_sequence_number_shown_before_a_crash_never_names_another_message() {
    let dir = TempDir::new("seqsafe");
    let data = dir.join("data");
    let reader_key = SigningKey::from_bytes(&[1u8; 32]);
    let to = reader_key.verifying_key().to_bytes();
    let sender_key = SigningKey::from_bytes(&[2u8; 32]);
    let mut server = Server::start(&data, &[]);
    block_on(async {
        drop(online(&server, &reader_key).await);
        drop(online(&server, &sender_key).await);
    });
    assert_eq!(server.stop(), Some(0));
    // A slow disk: the relay dies while the message is shown but not committed.
    let server = Server::start_with_env(&data, &[], &[("QPC_TEST_COMMIT_DELAY_MS", "3000")]);
    let shown = block_on(async {
        let reader = Rc::new(online(&server, &reader_key).await);
        let sender = online(&server, &sender_key).await;
        let waiting = {
            let reader = Rc::clone(&reader);
            tokio::task::spawn_local(async move { reader.fetch_wait(10, 20_000).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sending = tokio::task::spawn_local(async move {
            let _ = sender.enqueue(&to, b"", b"lost".to_vec(), b"id-lost".to_vec()).await;
        });
        let page = waiting.await.unwrap();
        kill_9(&server);
        let _ = sending.await;
        page[0].seq
    });
    drop(server);
    let server = Server::start(&data, &[]);
    block_on(async {
        let sender = online(&server, &sender_key).await;
        let retry = sender.enqueue(&to, b"", b"kept".to_vec(), b"id-kept".to_vec()).await.unwrap();
        assert_ne!(retry.seq, shown, "the shown sequence number was handed out again");
        let reader = online(&server, &reader_key).await;
        // The reader acks what it saw before the crash: nothing else goes.
        assert_eq!(reader.ack(shown).await.unwrap(), 0);
        let left = reader.peek(10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].payload, b"kept");
    });
}

//! The workloads driven through the qpc client library (`qpc::relay`), the
//! way the `qpc` client talks to its relay: one QUIC connection per client,
//! an identity proof, Enqueue answered once durable, FetchWait + Ack.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use qpc::relay::Relay;
use tokio::sync::Semaphore;

use crate::servers::Server;
use crate::suite::{GroupWorkload, LatencyWorkload, Meter, SfOutcome, SfWorkload};
use crate::util::{self, bounded, within};
use crate::Result;

const CHANNEL: &[u8] = b"bench";
/// How many connections are set up at once.
const SETUP_CONCURRENCY: usize = 16;
const PAGE: u32 = 1000;
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

pub fn new_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn identity(key: &SigningKey) -> [u8; 32] {
    key.verifying_key().to_bytes()
}

async fn close_all(relays: Vec<Rc<Relay>>) {
    let closing: Vec<_> = relays
        .into_iter()
        .filter_map(|r| Rc::try_unwrap(r).ok())
        .map(|r| tokio::task::spawn_local(r.close()))
        .collect();
    for c in closing {
        let _ = c.await;
    }
}

/// Identities that have authenticated once (so the relay accepts messages
/// for them), then gone offline.
async fn register(server: &Server, n: usize) -> Result<Vec<SigningKey>> {
    let keys: Rc<Vec<SigningKey>> = Rc::new((0..n).map(|_| new_key()).collect());
    let relays = bounded(n, SETUP_CONCURRENCY, |i| online(server, keys[i].clone())).await?;
    close_all(relays.into_iter().map(Rc::new).collect()).await;
    Ok(Rc::try_unwrap(keys).unwrap_or_else(|k| (*k).clone()))
}

/// Connects (retrying a few times: a relay under valgrind answers slowly)
/// and proves `key`'s identity.
pub fn online(
    server: &Server,
    key: SigningKey,
) -> impl std::future::Future<Output = Result<Relay>> + 'static {
    let addr = server.addr.to_string();
    let fingerprint = server.fingerprint.clone();
    let client = Arc::clone(&server.client);
    async move {
        let mut tries = 0;
        let relay = loop {
            match Relay::connect_shared(&client, &addr, &fingerprint).await {
                Ok(r) => break r,
                Err(e) if tries >= 4 => return Err(e.into()),
                Err(_) => tries += 1,
            }
        };
        relay.authenticate(&key).await?;
        Ok(relay)
    }
}

/// Sends `w.messages` to offline recipients (each answered once durable),
/// then lets the recipients come online and drain their queues.
pub async fn store_and_forward(server: &Server, w: &SfWorkload) -> Result<SfOutcome> {
    let recipients = register(server, w.recipients).await?;
    let targets: Rc<Vec<[u8; 32]>> = Rc::new(recipients.iter().map(identity).collect());
    let senders = bounded(w.senders, SETUP_CONCURRENCY, |_| online(server, new_key())).await?;
    let senders: Vec<Rc<Relay>> = senders.into_iter().map(Rc::new).collect();
    let template = Rc::new(util::payload(w.payload_size));

    let meter = Meter::start_with(server, w.measure_disk)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, relay) in senders.iter().enumerate() {
        let (relay, targets, template) = (Rc::clone(relay), Rc::clone(&targets), Rc::clone(&template));
        let (count, window, stride) = (w.messages, w.window, w.senders);
        tasks.push(tokio::task::spawn_local(async move {
            let gate = Arc::new(Semaphore::new(window.max(1)));
            let mut calls = Vec::new();
            for k in (s..count).step_by(stride) {
                let permit = gate.clone().acquire_owned().await?;
                let relay = Rc::clone(&relay);
                let to = targets[k % targets.len()];
                let mut body = template.to_vec();
                util::stamp(&mut body);
                calls.push(tokio::task::spawn_local(async move {
                    let r = relay.enqueue(&to, CHANNEL, body, (k as u64).to_be_bytes().to_vec()).await;
                    drop(permit);
                    r.map(|_| ()).map_err(crate::BoxError::from)
                }));
            }
            for c in calls {
                c.await??;
            }
            Ok::<_, crate::BoxError>(())
        }));
    }
    for t in tasks {
        within(STEP_TIMEOUT, "qpc send phase", async { t.await? }).await?;
    }
    let send_s = started.elapsed().as_secs_f64();
    let mid = meter.mid(server)?;
    close_all(senders).await;

    let drain_started = Instant::now();
    let mut drains = Vec::new();
    for (j, key) in recipients.into_iter().enumerate() {
        let expected = (0..w.messages).filter(|k| k % w.recipients == j).count();
        let connecting = online(server, key);
        drains.push(tokio::task::spawn_local(async move {
            let relay = connecting.await?;
            let mut got = 0;
            while got < expected {
                let page = relay.fetch_wait(PAGE, 5000).await?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    return Err(format!("queue empty after {got} of {expected} messages").into());
                };
                got += page.len();
                relay.ack(last).await?;
            }
            relay.close().await;
            Ok::<_, crate::BoxError>(())
        }));
    }
    for d in drains {
        within(STEP_TIMEOUT, "qpc drain phase", async { d.await? }).await?;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    Ok(meter.finish(server, mid, send_s, drain_s))
}

/// Online recipients waiting in FetchWait; senders enqueue at a fixed
/// offered rate; returns each message's enqueue-to-arrival time in ns.
pub async fn latency(server: &Server, w: &LatencyWorkload) -> Result<Vec<u64>> {
    let recipient_keys: Vec<SigningKey> = (0..w.pairs).map(|_| new_key()).collect();
    let targets: Vec<[u8; 32]> = recipient_keys.iter().map(identity).collect();
    let keys = Rc::new(recipient_keys);
    let recipients = bounded(w.pairs, SETUP_CONCURRENCY, |i| online(server, keys[i].clone())).await?;
    let senders = bounded(w.pairs, SETUP_CONCURRENCY, |_| online(server, new_key())).await?;
    let senders: Vec<Rc<Relay>> = senders.into_iter().map(Rc::new).collect();

    let mut listeners = Vec::new();
    for (j, relay) in recipients.into_iter().enumerate() {
        let expected = (0..w.messages).filter(|k| k % w.pairs == j).count();
        listeners.push(tokio::task::spawn_local(async move {
            let mut samples = Vec::with_capacity(expected);
            let mut last_seq = 0;
            while samples.len() < expected {
                let page = relay.fetch_wait(PAGE, 10_000).await?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    return Err(format!("no message within 10 s ({} of {expected})", samples.len()).into());
                };
                for env in page.iter().filter(|e| e.seq > last_seq) {
                    samples.push(util::age_ns(&env.payload).unwrap_or(0));
                }
                last_seq = last;
                relay.ack(last).await?;
            }
            relay.close().await;
            Ok::<_, crate::BoxError>(samples)
        }));
    }

    let template = util::payload(w.payload_size);
    let interval = Duration::from_secs_f64(1.0 / w.rate.max(0.001));
    let start = tokio::time::Instant::now();
    let mut sends = Vec::new();
    for k in 0..w.messages {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let relay = Rc::clone(&senders[k % w.pairs]);
        let to = targets[k % w.pairs];
        let mut body = template.clone();
        util::stamp(&mut body);
        sends.push(tokio::task::spawn_local(async move {
            relay.enqueue(&to, CHANNEL, body, (k as u64).to_be_bytes().to_vec()).await.map(|_| ())
        }));
    }
    for s in sends {
        s.await??;
    }
    let mut samples = Vec::with_capacity(w.messages);
    for l in listeners {
        samples.extend(within(STEP_TIMEOUT, "qpc latency receivers", async { l.await? }).await?);
    }
    close_all(senders).await;
    Ok(samples)
}

/// One sender to a group of `w.members`: each message goes out in one
/// BatchEnqueue (the fan-out call) to the other members, who are online
/// in FetchWait; returns the seconds until every member has every message.
pub async fn group(server: &Server, w: &GroupWorkload) -> Result<f64> {
    let readers = w.members.saturating_sub(1).max(1);
    let keys: Rc<Vec<SigningKey>> = Rc::new((0..readers).map(|_| new_key()).collect());
    let targets: Rc<Vec<[u8; 32]>> = Rc::new(keys.iter().map(identity).collect());
    let members = bounded(readers, SETUP_CONCURRENCY, |i| online(server, keys[i].clone())).await?;
    let sender = Rc::new(online(server, new_key()).await?);
    let started = Instant::now();
    let mut listeners = Vec::new();
    for relay in members {
        let expected = w.messages;
        listeners.push(tokio::task::spawn_local(async move {
            let mut got = 0;
            while got < expected {
                let page = relay.fetch_wait(PAGE, 10_000).await?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    return Err(format!("no group message within 10 s ({got} of {expected})").into());
                };
                got += page.len();
                relay.ack(last).await?;
            }
            relay.close().await;
            Ok::<_, crate::BoxError>(())
        }));
    }
    let gate = Arc::new(Semaphore::new(w.window.max(1)));
    let template = util::payload(w.payload_size);
    let mut sends = Vec::new();
    for k in 0..w.messages {
        let permit = gate.clone().acquire_owned().await?;
        let (relay, targets) = (Rc::clone(&sender), Rc::clone(&targets));
        let mut body = template.clone();
        util::stamp(&mut body);
        sends.push(tokio::task::spawn_local(async move {
            let r = relay.batch_enqueue(&targets, CHANNEL, body, (k as u64).to_be_bytes().to_vec()).await;
            drop(permit);
            r.map(|_| ()).map_err(crate::BoxError::from)
        }));
    }
    for s in sends {
        within(STEP_TIMEOUT, "qpc group send", async { s.await? }).await?;
    }
    for l in listeners {
        within(STEP_TIMEOUT, "qpc group members", async { l.await? }).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    close_all(vec![sender]).await;
    Ok(elapsed)
}

/// Holds `n` authenticated idle connections; returns the relay's RSS (KiB)
/// once they have settled.
pub async fn idle(server: &Server, n: usize, settle: Duration) -> Result<u64> {
    let relays = bounded(n, SETUP_CONCURRENCY, |_| online(server, new_key())).await?;
    tokio::time::sleep(settle).await;
    let rss = server.rss_kib();
    close_all(relays.into_iter().map(Rc::new).collect()).await;
    Ok(rss)
}

/// New connections (QUIC + TLS 1.3 full handshake) per second, `concurrency`
/// at a time; each is closed in the background once it is up.
pub async fn handshakes(server: &Server, n: usize, concurrency: usize) -> Result<f64> {
    let addr = server.addr.to_string();
    let fingerprint = server.fingerprint.clone();
    let started = Instant::now();
    let closers = bounded(n, concurrency, |_| {
        let (addr, fingerprint, client) = (addr.clone(), fingerprint.clone(), Arc::clone(&server.client));
        async move {
            let relay = Relay::connect_shared(&client, &addr, &fingerprint).await?;
            Ok(tokio::task::spawn_local(relay.close()))
        }
    })
    .await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    for c in closers {
        let _ = c.await;
    }
    Ok(rate)
}

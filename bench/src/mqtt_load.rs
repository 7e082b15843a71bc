//! The same workloads driven through an MQTT 3.1.1 client (rumqttc) against
//! Mosquitto, used as a store-and-forward relay: one topic per recipient,
//! QoS 1, recipients with persistent sessions (clean_session = false) that
//! are offline while messages queue for them. TLS 1.3 with the certificate
//! pinned, as for qpc; session resumption off so every handshake is full.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::Semaphore;

use crate::servers::Server;
use crate::suite::{GroupWorkload, LatencyWorkload, Meter, SfOutcome, SfWorkload};
use crate::util::{self, bounded, within};
use crate::Result;

const SETUP_CONCURRENCY: usize = 16;
const STEP_TIMEOUT: Duration = Duration::from_secs(300);
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Where the broker is and how to reach it.
#[derive(Clone)]
pub struct Broker {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Broker {
    pub fn new(server: &Server) -> Result<Broker> {
        // The same pinned TLS 1.3 client as qpc's, so both relays see one client.
        let (mut tls, _) = qpc::relay::pinned_tls_config(&server.fingerprint)?;
        // Every connection does a full handshake, as every qpc connection does.
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(Broker { host: server.addr.ip().to_string(), port: server.addr.port(), tls: Arc::new(tls) })
    }

    fn options(&self, id: &str, clean_session: bool, inflight: u16) -> MqttOptions {
        let mut o = MqttOptions::new(id, &self.host, self.port);
        o.set_keep_alive(KEEP_ALIVE);
        o.set_clean_session(clean_session);
        o.set_inflight(inflight.max(1));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::clone(&self.tls))));
        o
    }

    /// A connected client (CONNACK received).
    pub async fn connect(
        &self,
        id: &str,
        clean_session: bool,
        inflight: u16,
    ) -> Result<(AsyncClient, EventLoop)> {
        let cap = inflight as usize + 16;
        let (client, mut events) = AsyncClient::new(self.options(id, clean_session, inflight), cap);
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(60);
        events.set_network_options(network);
        loop {
            if let Event::Incoming(Packet::ConnAck(ack)) = events.poll().await? {
                if ack.code != ConnectReturnCode::Success {
                    return Err(format!("mosquitto refused client {id}: {:?}", ack.code).into());
                }
                return Ok((client, events));
            }
        }
    }
}

/// A client id not used before in this process.
fn unique_id(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{tag}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn topic(recipient: &str) -> String {
    format!("bench/{recipient}")
}

async fn subscribe(client: &AsyncClient, events: &mut EventLoop, topic: String) -> Result<()> {
    client.subscribe(topic, QoS::AtLeastOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
            return Ok(());
        }
    }
}

/// Sends DISCONNECT (so the broker keeps a persistent session as offline,
/// not as a lost client) and waits until it is written.
async fn disconnect(client: AsyncClient, mut events: EventLoop) {
    if client.disconnect().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// A recipient with a persistent session subscribed to its topic, then gone.
async fn register(broker: &Broker, tag: &str, n: usize) -> Result<Vec<String>> {
    let ids: Rc<Vec<String>> = Rc::new((0..n).map(|_| unique_id(tag)).collect());
    bounded(n, SETUP_CONCURRENCY, |i| {
        let (broker, id) = (broker.clone(), ids[i].clone());
        async move {
            let (client, mut events) = broker.connect(&id, false, 10).await?;
            subscribe(&client, &mut events, topic(&id)).await?;
            disconnect(client, events).await;
            Ok(())
        }
    })
    .await?;
    Ok(Rc::try_unwrap(ids).unwrap_or_else(|ids| (*ids).clone()))
}

/// Publishes with QoS 1, at most `window` unacknowledged at a time; returns
/// once every PUBACK is in.
async fn publish_all(
    broker: &Broker,
    recipients: Rc<Vec<String>>,
    messages: Vec<usize>,
    template: Rc<Vec<u8>>,
    window: usize,
) -> Result<()> {
    let window = window.max(1);
    let (client, mut events) = broker.connect(&unique_id("sender"), true, window as u16 + 1).await?;
    let gate = Rc::new(Semaphore::new(window));
    let total = messages.len();
    let acks = Rc::clone(&gate);
    let poller = tokio::task::spawn_local(async move {
        let mut acked = 0;
        while acked < total {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
                acked += 1;
                acks.add_permits(1);
            }
        }
        Ok::<_, crate::BoxError>(events)
    });
    for k in messages {
        gate.acquire().await?.forget();
        let mut body = template.to_vec();
        util::stamp(&mut body);
        client.publish(topic(&recipients[k % recipients.len()]), QoS::AtLeastOnce, false, body).await?;
    }
    let events = poller.await??;
    disconnect(client, events).await;
    Ok(())
}

/// Receives `expected` messages on a persistent session; returns each one's age in ns.
async fn receive(broker: &Broker, id: &str, expected: usize) -> Result<Vec<u64>> {
    let (client, mut events) = broker.connect(id, false, 10).await?;
    let mut ages = Vec::with_capacity(expected);
    while ages.len() < expected {
        if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
            ages.push(util::age_ns(&p.payload).unwrap_or(0));
        }
    }
    // The DISCONNECT goes out after the last PUBACK, so nothing is resent.
    disconnect(client, events).await;
    Ok(ages)
}

/// See `qpc_load::store_and_forward`: the same counts, sizes and concurrency.
pub async fn store_and_forward(server: &Server, w: &SfWorkload) -> Result<SfOutcome> {
    let broker = Broker::new(server)?;
    let recipients = Rc::new(register(&broker, "sf", w.recipients).await?);
    let template = Rc::new(util::payload(w.payload_size));

    let meter = Meter::start_with(server, w.measure_disk)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..w.senders {
        let messages: Vec<usize> = (s..w.messages).step_by(w.senders).collect();
        let (broker, recipients, template) = (broker.clone(), Rc::clone(&recipients), Rc::clone(&template));
        let window = w.window;
        tasks.push(tokio::task::spawn_local(async move {
            publish_all(&broker, recipients, messages, template, window).await
        }));
    }
    for t in tasks {
        within(STEP_TIMEOUT, "mosquitto send phase", async { t.await? }).await?;
    }
    let send_s = started.elapsed().as_secs_f64();
    let mid = meter.mid(server)?;

    let drain_started = Instant::now();
    let mut drains = Vec::new();
    for (j, id) in recipients.iter().enumerate() {
        let expected = (0..w.messages).filter(|k| k % w.recipients == j).count();
        let (broker, id) = (broker.clone(), id.clone());
        drains.push(tokio::task::spawn_local(async move { receive(&broker, &id, expected).await }));
    }
    for d in drains {
        within(STEP_TIMEOUT, "mosquitto drain phase", async { d.await? }).await?;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    Ok(meter.finish(server, mid, send_s, drain_s))
}

/// See `qpc_load::latency`.
pub async fn latency(server: &Server, w: &LatencyWorkload) -> Result<Vec<u64>> {
    let broker = Broker::new(server)?;
    let ids: Rc<Vec<String>> = Rc::new((0..w.pairs).map(|_| unique_id("lat")).collect());
    let recipients = bounded(w.pairs, SETUP_CONCURRENCY, |i| {
        let (broker, id) = (broker.clone(), ids[i].clone());
        async move {
            let (client, mut events) = broker.connect(&id, false, 10).await?;
            subscribe(&client, &mut events, topic(&id)).await?;
            Ok((client, events))
        }
    })
    .await?;
    let mut listeners = Vec::new();
    for (j, (client, mut events)) in recipients.into_iter().enumerate() {
        let expected = (0..w.messages).filter(|k| k % w.pairs == j).count();
        listeners.push(tokio::task::spawn_local(async move {
            let mut ages = Vec::with_capacity(expected);
            while ages.len() < expected {
                if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
                    ages.push(util::age_ns(&p.payload).unwrap_or(0));
                }
            }
            disconnect(client, events).await;
            Ok::<_, crate::BoxError>(ages)
        }));
    }
    let senders = bounded(w.pairs, SETUP_CONCURRENCY, |_| {
        let broker = broker.clone();
        async move { broker.connect(&unique_id("lat-sender"), true, 1000).await }
    })
    .await?;
    let mut clients = Vec::new();
    let mut pollers = Vec::new();
    for (s, (client, mut events)) in senders.into_iter().enumerate() {
        let share = (0..w.messages).filter(|k| k % w.pairs == s).count();
        clients.push(client.clone());
        pollers.push(tokio::task::spawn_local(async move {
            let mut acked = 0;
            while acked < share {
                if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
                    acked += 1;
                }
            }
            disconnect(client, events).await;
            Ok::<_, crate::BoxError>(())
        }));
    }

    let template = util::payload(w.payload_size);
    let interval = Duration::from_secs_f64(1.0 / w.rate.max(0.001));
    let start = tokio::time::Instant::now();
    for k in 0..w.messages {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let mut body = template.clone();
        util::stamp(&mut body);
        clients[k % w.pairs].publish(topic(&ids[k % w.pairs]), QoS::AtLeastOnce, false, body).await?;
    }
    for p in pollers {
        within(STEP_TIMEOUT, "mosquitto latency senders", async { p.await? }).await?;
    }
    let mut samples = Vec::with_capacity(w.messages);
    for l in listeners {
        samples.extend(within(STEP_TIMEOUT, "mosquitto latency receivers", async { l.await? }).await?);
    }
    Ok(samples)
}

/// See `qpc_load::group`: one topic, `members - 1` online subscribers at
/// QoS 1, one publisher with `window` messages unacknowledged.
pub async fn group(server: &Server, w: &GroupWorkload) -> Result<f64> {
    let broker = Broker::new(server)?;
    let readers = w.members.saturating_sub(1).max(1);
    let group = unique_id("group");
    let members = bounded(readers, SETUP_CONCURRENCY, |_| {
        let (broker, group) = (broker.clone(), group.clone());
        async move {
            let (client, mut events) = broker.connect(&unique_id("member"), true, 10).await?;
            subscribe(&client, &mut events, topic(&group)).await?;
            Ok((client, events))
        }
    })
    .await?;
    let started = Instant::now();
    let mut listeners = Vec::new();
    for (client, mut events) in members {
        let expected = w.messages;
        listeners.push(tokio::task::spawn_local(async move {
            let mut got = 0;
            while got < expected {
                if let Event::Incoming(Packet::Publish(_)) = events.poll().await? {
                    got += 1;
                }
            }
            disconnect(client, events).await;
            Ok::<_, crate::BoxError>(())
        }));
    }
    let template = Rc::new(util::payload(w.payload_size));
    let topics = Rc::new(vec![group]);
    publish_all(&broker, topics, (0..w.messages).collect(), template, w.window).await?;
    for l in listeners {
        within(STEP_TIMEOUT, "mosquitto group members", async { l.await? }).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Holds `n` idle connected clients (keep-alive running); returns the
/// broker's RSS (KiB) once they have settled.
pub async fn idle(server: &Server, n: usize, settle: Duration) -> Result<u64> {
    let broker = Broker::new(server)?;
    let held = bounded(n, SETUP_CONCURRENCY, |_| {
        let broker = broker.clone();
        async move {
            let (client, mut events) = broker.connect(&unique_id("idle"), true, 10).await?;
            let poller = tokio::task::spawn_local(async move { while events.poll().await.is_ok() {} });
            Ok((client, poller))
        }
    })
    .await?;
    tokio::time::sleep(settle).await;
    let rss = server.rss_kib();
    for (client, _) in &held {
        let _ = client.try_disconnect();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (_, poller) in held {
        poller.abort();
    }
    Ok(rss)
}

/// New connections (TCP + TLS 1.3 full handshake + CONNECT/CONNACK) per
/// second, `concurrency` at a time; each is closed in the background.
pub async fn handshakes(server: &Server, n: usize, concurrency: usize) -> Result<f64> {
    let broker = Broker::new(server)?;
    let started = Instant::now();
    let closers = bounded(n, concurrency, |_| {
        let broker = broker.clone();
        async move {
            let (client, events) = broker.connect(&unique_id("hs"), true, 10).await?;
            Ok(tokio::task::spawn_local(disconnect(client, events)))
        }
    })
    .await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    for c in closers {
        let _ = c.await;
    }
    Ok(rate)
}

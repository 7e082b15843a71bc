//! The workload both relays run, A B A B: each round starts a fresh qpc-server,
//! runs every workload against it, stops it, then does the same with a fresh
//! Mosquitto. Figures are averaged over the rounds.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::servers::{DiskUse, Kind, Launch, Server};
use crate::{mqtt_load, procfs, qpc_load, util, Result};

/// Store-and-forward: `senders` connections, each with up to `window`
/// messages awaiting the relay's acknowledgement, send `messages` in all,
/// spread round-robin over `recipients` who are offline; then the
/// recipients connect and drain their queues.
#[derive(Debug, Clone)]
pub struct SfWorkload {
    pub messages: usize,
    pub payload_size: usize,
    pub senders: usize,
    pub recipients: usize,
    pub window: usize,
    /// Read the disk use before and after the send phase (Mosquitto is made
    /// to write its persistence file for it, which costs it work).
    pub measure_disk: bool,
}

/// Latency: `pairs` online recipients, each with its own sender; `messages`
/// in all, offered at `rate` per second (open loop, so a slow relay queues up).
#[derive(Debug, Clone)]
pub struct LatencyWorkload {
    pub messages: usize,
    pub pairs: usize,
    pub rate: f64,
    pub payload_size: usize,
}

/// A group send: one sender, `members` in the group (the sender and
/// `members - 1` online readers), `messages` sent with up to `window`
/// awaiting the relay's answer; every reader gets every message.
#[derive(Debug, Clone)]
pub struct GroupWorkload {
    pub messages: usize,
    pub members: usize,
    pub payload_size: usize,
    pub window: usize,
}

impl GroupWorkload {
    /// Messages delivered in all (one per reader per message).
    pub fn delivered(&self) -> usize {
        self.messages * self.members.saturating_sub(1).max(1)
    }
}

#[derive(Debug, Clone)]
pub struct SfOutcome {
    pub send_s: f64,
    pub drain_s: f64,
    /// Growth of the relay's files over the send phase.
    pub disk: DiskUse,
    /// The same, once the relay has been idle for [`REST`] (what stays on
    /// a router's flash after a burst).
    pub disk_at_rest: DiskUse,
    /// Server CPU over send and drain (forced persistence saves excluded).
    pub server_cpu_s: f64,
    /// The load generator's own CPU over the same time.
    pub loadgen_cpu_s: f64,
}

/// CPU and disk readings around a store-and-forward run.
pub struct Meter {
    measure_disk: bool,
    disk: DiskUse,
    cpu: f64,
    own: f64,
}

/// How long the send phase's relay is left idle before the disk is read
/// again: longer than qpc-server's idle checkpoint (1 s), which copies a
/// large WAL into the database and truncates it.
pub const REST: std::time::Duration = std::time::Duration::from_millis(2500);

/// Readings taken between the send and drain phases.
pub struct Midpoint {
    disk: DiskUse,
    disk_at_rest: DiskUse,
    server_cpu: f64,
    own_cpu: f64,
    cpu_after_save: f64,
    own_after_save: f64,
}

impl Meter {
    pub fn start_with(server: &Server, measure_disk: bool) -> Result<Meter> {
        let disk = if measure_disk {
            // From a relay at rest too (the setup's writes checkpointed).
            std::thread::sleep(REST);
            server.disk_bytes()?
        } else {
            DiskUse::default()
        };
        Ok(Meter { measure_disk, disk, cpu: server.cpu_seconds(), own: crate::procfs::own_cpu_seconds() })
    }

    pub fn mid(&self, server: &Server) -> Result<Midpoint> {
        let server_cpu = server.cpu_seconds() - self.cpu;
        let own_cpu = crate::procfs::own_cpu_seconds() - self.own;
        let read = || -> Result<DiskUse> {
            Ok(if self.measure_disk {
                server.disk_bytes()?.growth_since(self.disk)
            } else {
                DiskUse::default()
            })
        };
        let disk = read()?;
        // What the relay does while idle (qpc: its checkpoint) counts,
        // Mosquitto's forced saves around it do not.
        let mut idle_cpu = 0.0;
        let disk_at_rest = if self.measure_disk {
            let before = server.cpu_seconds();
            std::thread::sleep(REST);
            idle_cpu = server.cpu_seconds() - before;
            read()?
        } else {
            DiskUse::default()
        };
        Ok(Midpoint {
            disk,
            disk_at_rest,
            server_cpu: server_cpu + idle_cpu,
            own_cpu,
            cpu_after_save: server.cpu_seconds(),
            own_after_save: crate::procfs::own_cpu_seconds(),
        })
    }

    pub fn finish(self, server: &Server, mid: Midpoint, send_s: f64, drain_s: f64) -> SfOutcome {
        SfOutcome {
            send_s,
            drain_s,
            disk: mid.disk,
            disk_at_rest: mid.disk_at_rest,
            server_cpu_s: mid.server_cpu + (server.cpu_seconds() - mid.cpu_after_save),
            loadgen_cpu_s: mid.own_cpu + (crate::procfs::own_cpu_seconds() - mid.own_after_save),
        }
    }
}

/// Everything one run measures.
#[derive(Debug, Clone)]
pub struct Params {
    pub messages: usize,
    pub senders: usize,
    pub recipients: usize,
    pub window: usize,
    pub small_payload: usize,
    pub large_payload: usize,
    pub latency: LatencyWorkload,
    pub group: GroupWorkload,
    pub idle_clients: usize,
    pub idle_settle: Duration,
    pub handshakes: usize,
    pub handshake_concurrency: usize,
    pub rounds: usize,
}

impl Params {
    fn sf(&self, payload_size: usize) -> SfWorkload {
        SfWorkload {
            messages: self.messages,
            payload_size,
            senders: self.senders,
            recipients: self.recipients,
            window: self.window,
            measure_disk: true,
        }
    }
}

/// Figure name → value, for one relay in one round.
pub type Figures = BTreeMap<String, f64>;

/// Runs the workloads of `kind` on an already running relay.
pub async fn store_and_forward(kind: Kind, server: &Server, w: &SfWorkload) -> Result<SfOutcome> {
    match kind {
        Kind::Qpc => qpc_load::store_and_forward(server, w).await,
        Kind::Mosquitto => mqtt_load::store_and_forward(server, w).await,
    }
}

/// Runs the group workload of `kind`; returns its seconds.
pub async fn group(kind: Kind, server: &Server, w: &GroupWorkload) -> Result<f64> {
    match kind {
        Kind::Qpc => qpc_load::group(server, w).await,
        Kind::Mosquitto => mqtt_load::group(server, w).await,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn record_sf(f: &mut Figures, suffix: &str, messages: usize, o: &SfOutcome) {
    let n = messages as f64;
    let key = |base: &str| format!("{base}_{suffix}");
    f.insert(key("msgs_per_s"), n / (o.send_s + o.drain_s));
    f.insert(key("send_per_s"), n / o.send_s);
    f.insert(key("drain_per_s"), n / o.drain_s);
    f.insert(key("disk_per_msg"), o.disk.total as f64 / n);
    f.insert(key("disk_no_wal_per_msg"), o.disk.without_wal as f64 / n);
    f.insert(key("disk_rest_per_msg"), o.disk_at_rest.total as f64 / n);
    f.insert(key("cpu_per_10k"), o.server_cpu_s / n * 10_000.0);
    f.insert(key("loadgen_cpu"), o.loadgen_cpu_s / (o.send_s + o.drain_s));
}

/// One relay, one round: start it fresh, run every workload, stop it.
pub async fn run_one(kind: Kind, launch: &Launch, p: &Params, progress: &dyn Fn(&str)) -> Result<Figures> {
    let server = Server::start(kind, launch)?;
    let mut f = Figures::new();
    let name = kind.name();
    let drops_before = procfs::udp_receive_drops();

    progress(&format!("{name}: store-and-forward, {} x {} B", p.messages, p.small_payload));
    let small = store_and_forward(kind, &server, &p.sf(p.small_payload)).await?;
    record_sf(&mut f, "256", p.messages, &small);
    f.insert("peak_rss_after_256".into(), mib(server.peak_rss_kib()));
    f.insert("disk_bytes_per_msg".into(), f["disk_rest_per_msg_256"]);
    f.insert("cpu_s_per_10k".into(), f["cpu_per_10k_256"]);

    progress(&format!("{name}: store-and-forward, {} x {} B", p.messages, p.large_payload));
    let large = store_and_forward(kind, &server, &p.sf(p.large_payload)).await?;
    record_sf(&mut f, "4k", p.messages, &large);
    f.insert("peak_rss_after_4k".into(), mib(server.peak_rss_kib()));

    progress(&format!("{name}: latency, {} messages at {}/s", p.latency.messages, p.latency.rate));
    let mut samples = match kind {
        Kind::Qpc => qpc_load::latency(&server, &p.latency).await?,
        Kind::Mosquitto => mqtt_load::latency(&server, &p.latency).await?,
    };
    samples.sort_unstable();
    let ms = |ns: Option<u64>| ns.unwrap_or(0) as f64 / 1e6;
    f.insert("latency_p50".into(), ms(util::percentile(&samples, 0.50)));
    f.insert("latency_p99".into(), ms(util::percentile(&samples, 0.99)));
    f.insert("latency_max".into(), ms(samples.last().copied()));

    let g = &p.group;
    progress(&format!("{name}: group of {}, {} messages", g.members, g.messages));
    let group_s = group(kind, &server, g).await?;
    f.insert("group_msgs_per_s".into(), g.delivered() as f64 / group_s);
    f.insert("peak_rss".into(), mib(server.peak_rss_kib()));

    progress(&format!("{name}: {} idle connections", p.idle_clients));
    f.insert("rss_before_idle".into(), mib(server.rss_kib()));
    let idle = match kind {
        Kind::Qpc => qpc_load::idle(&server, p.idle_clients, p.idle_settle).await?,
        Kind::Mosquitto => mqtt_load::idle(&server, p.idle_clients, p.idle_settle).await?,
    };
    f.insert("idle_rss_1000".into(), mib(idle));

    progress(&format!("{name}: {} handshakes, {} at a time", p.handshakes, p.handshake_concurrency));
    let cpu_before = server.cpu_seconds();
    let rate = match kind {
        Kind::Qpc => qpc_load::handshakes(&server, p.handshakes, p.handshake_concurrency).await?,
        Kind::Mosquitto => mqtt_load::handshakes(&server, p.handshakes, p.handshake_concurrency).await?,
    };
    f.insert("handshakes_per_s".into(), rate);
    f.insert(
        "cpu_ms_per_handshake".into(),
        (server.cpu_seconds() - cpu_before) * 1000.0 / p.handshakes as f64,
    );
    f.insert("peak_rss_all".into(), mib(server.peak_rss_kib()));
    if let (Some(before), Some(after)) = (drops_before, procfs::udp_receive_drops()) {
        f.insert("udp_drops".into(), after.saturating_sub(before) as f64);
    }
    server.stop(Duration::from_secs(30))?;
    Ok(f)
}

/// The figures of every round, per relay.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub qpc: Vec<Figures>,
    pub mosquitto: Vec<Figures>,
}

impl Comparison {
    pub fn rounds(&self, kind: Kind) -> &[Figures] {
        match kind {
            Kind::Qpc => &self.qpc,
            Kind::Mosquitto => &self.mosquitto,
        }
    }

    /// The mean over the rounds of one figure.
    pub fn mean(&self, kind: Kind, key: &str) -> Option<f64> {
        let values: Vec<f64> = self.rounds(kind).iter().filter_map(|f| f.get(key).copied()).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// qpc's mean divided by Mosquitto's.
    pub fn ratio(&self, key: &str) -> Option<f64> {
        let (q, m) = (self.mean(Kind::Qpc, key)?, self.mean(Kind::Mosquitto, key)?);
        (m != 0.0).then(|| q / m)
    }
}

/// A B A B: `p.rounds` rounds of qpc then Mosquitto.
pub async fn run(launch: &Launch, p: &Params, progress: &dyn Fn(&str)) -> Result<Comparison> {
    let mut c = Comparison::default();
    for round in 1..=p.rounds {
        for kind in [Kind::Qpc, Kind::Mosquitto] {
            progress(&format!("round {round}/{}: {}", p.rounds, kind.name()));
            let figures = run_one(kind, launch, p, progress).await?;
            match kind {
                Kind::Qpc => c.qpc.push(figures),
                Kind::Mosquitto => c.mosquitto.push(figures),
            }
        }
    }
    Ok(c)
}

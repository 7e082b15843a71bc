//! The relay's figures (what `qpc-server status`, the LuCI page and the
//! metrics file show), gathered in one place and rendered three ways: for a
//! person, as one JSON object, and as Prometheus text exposition. Written by
//! hand: a JSON or metrics library would cost more flash than these few
//! lines.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::logger::{self, LastError};
use crate::server::Relay;
use crate::store::{meta, StoreError};

/// What the relay knows about itself that the store does not hold.
pub struct Facts {
    pub started: Instant,
    pub listen: Vec<SocketAddr>,
    pub fingerprint: String,
    pub data_dir: PathBuf,
    /// The store's key, for the copy a backup makes (never shown).
    pub db_key: String,
}

/// One snapshot of the figures.
#[derive(Debug, Clone)]
pub struct Figures {
    pub version: &'static str,
    pub uptime_s: u64,
    pub listen: Vec<String>,
    pub fingerprint: String,
    /// The key transparency log key (hex), its size and head root (hex).
    pub log_key: String,
    pub log_size: u64,
    pub log_head: String,
    pub registration: &'static str,
    pub connections: u64,
    pub accounts: u64,
    pub identities: u64,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub store_bytes: u64,
    pub store_cap_bytes: u64,
    /// Live blobs (files), complete or being uploaded.
    pub blobs: u64,
    /// Their declared bytes: what counts against the blob cap.
    pub blob_bytes: u64,
    pub blob_cap_bytes: u64,
    pub blob_lifetime_s: u64,
    pub enqueued: u64,
    pub delivered: u64,
    pub expired: u64,
    /// Reports waiting for the owner, and banned accounts.
    pub reports: u64,
    pub banned: u64,
    pub errors: u64,
    pub last_error: Option<LastError>,
    /// The peer relays (federation).
    pub peers: Vec<PeerRow>,
}

/// One peer relay as status shows it.
#[derive(Debug, Clone)]
pub struct PeerRow {
    pub address: String,
    pub fingerprint: String,
    pub source: String,
    pub reachable: bool,
    /// Messages waiting in its outgoing queue.
    pub queued: u64,
    pub queued_bytes: u64,
    pub forwarded: u64,
    pub received: u64,
    pub last_error: String,
}

impl PeerRow {
    pub fn json(&self) -> String {
        format!(
            "{{\"address\":{},\"fingerprint\":{},\"source\":{},\"reachable\":{},\"queued\":{},\"queued_bytes\":{},\"forwarded\":{},\"received\":{},\"last_error\":{}}}",
            json_string(&self.address),
            json_string(&self.fingerprint),
            json_string(&self.source),
            self.reachable,
            self.queued,
            self.queued_bytes,
            self.forwarded,
            self.received,
            if self.last_error.is_empty() { "null".into() } else { json_string(&self.last_error) }
        )
    }

    pub fn line(&self) -> String {
        format!(
            "{}  {:.16}  {}  {}  {}",
            self.address,
            self.fingerprint,
            if self.reachable { "yes" } else { "no" },
            self.queued,
            if self.last_error.is_empty() { "-" } else { &self.last_error }
        )
    }
}

/// Every peer with its state and outgoing queue.
pub async fn peer_rows(relay: &Relay) -> Vec<PeerRow> {
    let mut rows = Vec::new();
    for p in relay.fed.peers() {
        let fp = p.fingerprint.clone();
        let (queued, queued_bytes) =
            relay.store.read(move |c| crate::store::outbound::queued(c, &fp)).await.unwrap_or((0, 0));
        let state = relay.fed.state(&p.fingerprint);
        rows.push(PeerRow {
            address: p.address(),
            fingerprint: p.fingerprint,
            source: p.source,
            reachable: state.reachable,
            queued,
            queued_bytes,
            forwarded: state.forwarded,
            received: state.received,
            last_error: state.last_error,
        });
    }
    rows
}

/// Bytes the database takes on disk: the file and its write-ahead log.
pub fn store_bytes(data_dir: &Path) -> u64 {
    ["qpc.db", "qpc.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(data_dir.join(name)).ok())
        .map(|m| m.len())
        .sum()
}

impl Figures {
    pub async fn gather(relay: &Relay, facts: &Facts) -> Result<Figures, StoreError> {
        let meta::Totals { accounts, identities, queued_messages, queued_bytes } =
            relay.store.read(meta::totals).await?;
        let (blobs, blob_bytes) = crate::cmd::blob::totals(relay).await?;
        let (reports, banned) = relay.store.read(crate::store::moderation::counts).await?;
        let stats = &relay.stats;
        let head = relay.log.head(&relay.store).await?;
        Ok(Figures {
            log_key: hex::encode(relay.log.public_key()),
            log_size: head.size,
            log_head: head.root_hex(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: facts.started.elapsed().as_secs(),
            listen: facts.listen.iter().map(SocketAddr::to_string).collect(),
            fingerprint: facts.fingerprint.clone(),
            registration: relay.registration.name(),
            connections: stats.connections.get(),
            accounts,
            identities,
            queued_messages,
            queued_bytes,
            store_bytes: store_bytes(&facts.data_dir),
            store_cap_bytes: relay.limits.store_cap_bytes,
            blobs,
            blob_bytes,
            blob_cap_bytes: relay.limits.blob_cap_bytes,
            blob_lifetime_s: relay.limits.blob_lifetime_secs,
            enqueued: stats.enqueued.get(),
            delivered: stats.delivered.get(),
            expired: stats.expired.get(),
            reports,
            banned,
            errors: logger::errors(),
            last_error: logger::last_error(),
            peers: peer_rows(relay).await,
        })
    }

    /// One JSON object, keys in the documented order, on one line.
    pub fn json(&self) -> String {
        let mut o = String::with_capacity(512);
        o.push('{');
        let _ = write!(o, "\"version\":{},", json_string(self.version));
        let _ = write!(o, "\"uptime_s\":{},", self.uptime_s);
        let listen: Vec<String> = self.listen.iter().map(|a| json_string(a)).collect();
        let _ = write!(o, "\"listen\":[{}],", listen.join(","));
        let _ = write!(o, "\"fingerprint\":{},", json_string(&self.fingerprint));
        let _ = write!(o, "\"log_key\":{},", json_string(&self.log_key));
        let _ = write!(o, "\"log_head\":{},", json_string(&self.log_head));
        let _ = write!(o, "\"registration\":{},", json_string(self.registration));
        for (key, value) in [
            ("connections", self.connections),
            ("accounts", self.accounts),
            ("identities", self.identities),
            ("queued_messages", self.queued_messages),
            ("queued_bytes", self.queued_bytes),
            ("store_bytes", self.store_bytes),
            ("store_cap_bytes", self.store_cap_bytes),
            ("blobs", self.blobs),
            ("blob_bytes", self.blob_bytes),
            ("blob_cap_bytes", self.blob_cap_bytes),
            ("blob_lifetime_s", self.blob_lifetime_s),
            ("log_size", self.log_size),
            ("enqueued", self.enqueued),
            ("delivered", self.delivered),
            ("expired", self.expired),
            ("reports", self.reports),
            ("banned", self.banned),
        ] {
            let _ = write!(o, "\"{key}\":{value},");
        }
        let peers: Vec<String> = self.peers.iter().map(PeerRow::json).collect();
        let _ = write!(o, "\"peers\":[{}],", peers.join(","));
        let last_error = self.last_error.as_ref().map_or("null".into(), |e| json_string(&e.message));
        let _ = write!(o, "\"last_error\":{last_error}}}");
        o.push('\n');
        o
    }

    /// Prometheus text exposition (format 0.0.4), for node-exporter's
    /// textfile collector.
    pub fn prometheus(&self) -> String {
        fn family(o: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        let mut o = String::with_capacity(2048);
        family(&mut o, "qpc_info", "gauge", "qpc-server version and settings (labels); always 1.");
        let _ = writeln!(
            o,
            "qpc_info{{version={},fingerprint={},log_key={},log_head={},registration={}}} 1",
            label(self.version),
            label(&self.fingerprint),
            label(&self.log_key),
            label(&self.log_head),
            label(self.registration)
        );
        family(
            &mut o,
            "qpc_listen_info",
            "gauge",
            "An address the relay accepts QUIC connections on; always 1.",
        );
        for addr in &self.listen {
            let _ = writeln!(o, "qpc_listen_info{{addr={}}} 1", label(addr));
        }
        let gauges = [
            ("qpc_uptime_seconds", "Seconds since the relay started.", self.uptime_s),
            ("qpc_connections", "QUIC connections open now.", self.connections),
            ("qpc_accounts", "Registered accounts.", self.accounts),
            ("qpc_identities", "Identities (device keys) known to the relay.", self.identities),
            ("qpc_queued_messages", "Undelivered messages in all queues.", self.queued_messages),
            ("qpc_queued_bytes", "Payload bytes of the undelivered messages.", self.queued_bytes),
            ("qpc_store_bytes", "Bytes the database takes on disk (file and WAL).", self.store_bytes),
            ("qpc_store_cap_bytes", "Most payload bytes the relay queues in all.", self.store_cap_bytes),
            ("qpc_blobs", "Blobs (files) held, complete or being uploaded.", self.blobs),
            (
                "qpc_blob_bytes",
                "Declared bytes of the blobs held (what the blob cap counts).",
                self.blob_bytes,
            ),
            ("qpc_blob_cap_bytes", "Most blob bytes the relay holds in all.", self.blob_cap_bytes),
            ("qpc_blob_lifetime_seconds", "Seconds a blob is kept at most.", self.blob_lifetime_s),
            ("qpc_reports", "Reports waiting for the relay's owner.", self.reports),
            ("qpc_banned_accounts", "Accounts banned by the relay's owner.", self.banned),
            ("qpc_log_entries", "Entries in the key transparency log.", self.log_size),
        ];
        for (name, help, value) in gauges {
            family(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name} {value}");
        }
        let counters = [
            ("qpc_enqueued_total", "Messages enqueued since start.", self.enqueued),
            ("qpc_delivered_total", "Messages acknowledged by their recipient since start.", self.delivered),
            ("qpc_expired_total", "Undelivered messages dropped after their TTL since start.", self.expired),
            ("qpc_errors_total", "Error-level log lines since start.", self.errors),
        ];
        for (name, help, value) in counters {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {value}");
        }
        if !self.peers.is_empty() {
            let per_peer = [
                ("qpc_peer_up", "gauge", "Whether a link to the peer relay is up (1) or not (0)."),
                ("qpc_peer_queued_messages", "gauge", "Messages waiting in the outgoing queue for the peer."),
                (
                    "qpc_peer_queued_bytes",
                    "gauge",
                    "Payload bytes waiting in the outgoing queue for the peer.",
                ),
                (
                    "qpc_peer_forwarded_total",
                    "counter",
                    "Messages the peer took from this relay since start.",
                ),
                ("qpc_peer_received_total", "counter", "Messages this relay took from the peer since start."),
            ];
            for (name, kind, help) in per_peer {
                family(&mut o, name, kind, help);
                for p in &self.peers {
                    let value = match name {
                        "qpc_peer_up" => u64::from(p.reachable),
                        "qpc_peer_queued_messages" => p.queued,
                        "qpc_peer_queued_bytes" => p.queued_bytes,
                        "qpc_peer_forwarded_total" => p.forwarded,
                        _ => p.received,
                    };
                    let _ = writeln!(o, "{name}{{peer={}}} {value}", label(&p.address));
                }
            }
        }
        if let Some(e) = &self.last_error {
            let name = "qpc_last_error_timestamp_seconds";
            family(&mut o, name, "gauge", "When the last error was logged (Unix time).");
            let at = e.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let _ = writeln!(o, "{name} {at}");
        }
        o
    }

    /// For a person at a terminal.
    pub fn text(&self) -> String {
        let mut o = String::with_capacity(1024);
        let mut row = |name: &str, value: String| {
            let _ = writeln!(o, "{name:<14} {value}");
        };
        row("version", self.version.to_string());
        row("uptime", duration(self.uptime_s));
        row("listen", self.listen.join(", "));
        row("fingerprint", self.fingerprint.clone());
        row("log key", self.log_key.clone());
        row("log", format!("{} entries, head {}", self.log_size, self.log_head));
        row("registration", self.registration.to_string());
        row("connections", self.connections.to_string());
        row("accounts", self.accounts.to_string());
        row("identities", self.identities.to_string());
        let share = self
            .queued_bytes
            .saturating_mul(100)
            .checked_div(self.store_cap_bytes)
            .map_or(String::new(), |p| format!(", {p}% of the store cap"));
        row("queued", format!("{} messages, {}{share}", self.queued_messages, bytes(self.queued_bytes)));
        row("store cap", bytes(self.store_cap_bytes));
        row("store on disk", bytes(self.store_bytes));
        let share = self
            .blob_bytes
            .saturating_mul(100)
            .checked_div(self.blob_cap_bytes)
            .map_or(String::new(), |p| format!(", {p}% of the blob cap"));
        row("blobs", format!("{}, {}{share}", self.blobs, bytes(self.blob_bytes)));
        row(
            "blob cap",
            format!("{}, kept {} at most", bytes(self.blob_cap_bytes), duration(self.blob_lifetime_s)),
        );
        row(
            "since start",
            format!("{} enqueued, {} delivered, {} expired", self.enqueued, self.delivered, self.expired),
        );
        let last = match &self.last_error {
            None => "none".to_string(),
            Some(e) => {
                let ago = SystemTime::now().duration_since(e.at).map_or(0, |d| d.as_secs());
                format!("{} ago: {}", duration(ago), e.message)
            }
        };
        row("moderation", format!("{} reports waiting, {} accounts banned", self.reports, self.banned));
        row("last error", last);
        for p in &self.peers {
            let error = if p.last_error.is_empty() {
                String::new()
            } else {
                format!(", last error: {}", p.last_error)
            };
            row(
                "peer",
                format!(
                    "{} ({}), {}, {} queued for it{error}",
                    p.address,
                    &p.fingerprint[..p.fingerprint.len().min(16)],
                    if p.reachable { "reachable" } else { "not reachable" },
                    p.queued
                ),
            );
        }
        o
    }
}

/// A JSON string literal: quotes, backslashes and control characters
/// escaped (RFC 8259).
pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A Prometheus label value, quoted: backslash, double quote and newline
/// escaped, as the exposition format requires.
pub fn label(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// 3725 -> "1h 2m 5s".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// 1536 -> "1536 bytes (1.5 KiB)".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{n} bytes ({value:.1} {})", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(last_error: Option<&str>) -> Figures {
        Figures {
            version: "0.1.0",
            uptime_s: 3725,
            listen: vec!["127.0.0.1:7000".into(), "[::1]:7000".into()],
            fingerprint: "ab".repeat(32),
            log_key: "cd".repeat(32),
            log_size: 9,
            log_head: "ef".repeat(32),
            registration: "token",
            connections: 2,
            accounts: 3,
            identities: 4,
            queued_messages: 5,
            queued_bytes: 1536,
            store_bytes: 40960,
            store_cap_bytes: 1 << 20,
            blobs: 1,
            blob_bytes: 2048,
            blob_cap_bytes: 1 << 30,
            blob_lifetime_s: 86_400,
            enqueued: 7,
            delivered: 2,
            expired: 0,
            reports: 2,
            banned: 1,
            errors: 1,
            last_error: last_error.map(|m| LastError { at: SystemTime::now(), message: m.into() }),
            peers: vec![PeerRow {
                address: "friends.example.net:7000".into(),
                fingerprint: "cd".repeat(32),
                source: "admin".into(),
                reachable: false,
                queued: 3,
                queued_bytes: 900,
                forwarded: 1,
                received: 2,
                last_error: "no answer within 5 s".into(),
            }],
        }
    }

    #[test]
    fn json_escapes_and_keeps_the_key_order() {
        let json = sample(Some("disk \"full\"\n\\ \u{1}")).json();
        assert!(json.starts_with(
            "{\"version\":\"0.1.0\",\"uptime_s\":3725,\"listen\":[\"127.0.0.1:7000\",\"[::1]:7000\"],"
        ));
        assert!(json.ends_with(",\"last_error\":\"disk \\\"full\\\"\\n\\\\ \\u0001\"}\n"), "{json}");
        let json = sample(None).json();
        assert!(
            json.contains("\"expired\":0,\"reports\":2,\"banned\":1,\"peers\":[{\"address\":\"friends.example.net:7000\","),
            "{json}"
        );
        assert!(json.ends_with("\"last_error\":\"no answer within 5 s\"}],\"last_error\":null}\n"), "{json}");
    }

    #[test]
    fn prometheus_has_help_and_type_for_each_family() {
        let text = sample(Some("x")).prometheus();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
        }
        assert!(text.contains("qpc_enqueued_total 7\n"));
        assert!(text.contains("qpc_listen_info{addr=\"[::1]:7000\"} 1\n"));
        assert!(text.contains("qpc_peer_queued_messages{peer=\"friends.example.net:7000\"} 3\n"), "{text}");
        assert_eq!(label("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn text_for_people() {
        let text = sample(None).text();
        assert!(text.contains("uptime         1h 2m 5s\n"), "{text}");
        assert!(
            text.contains("queued         5 messages, 1536 bytes (1.5 KiB), 0% of the store cap\n"),
            "{text}"
        );
        assert!(text.contains("last error     none\n"));
    }
}

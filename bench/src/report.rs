//! The printed result: a table of every figure for both relays, then one
//! `ratio NAME VALUE` line per headline figure (qpc's figure divided by
//! Mosquitto's), in the order the issue lists them.

use std::fmt::Write;

use crate::servers::Kind;
use crate::suite::{Comparison, Params};

/// The headline figures, as named on the `ratio` lines.
pub const RATIO_NAMES: &[&str] = &[
    "msgs_per_s_256",
    "msgs_per_s_4k",
    "latency_p50",
    "latency_p99",
    "group_msgs_per_s",
    "peak_rss",
    "idle_rss_1000",
    "cpu_s_per_10k",
    "disk_bytes_per_msg",
    "handshakes_per_s",
];

/// Every row of the table: key, label, unit, whether more is better.
pub fn rows(p: &Params) -> Vec<(&'static str, String, &'static str, bool)> {
    let small = p.small_payload;
    let large = p.large_payload;
    vec![
        ("msgs_per_s_256", format!("store-and-forward, {small} B (send + drain)"), "msg/s", true),
        ("send_per_s_256", format!("  send phase, {small} B (acked = stored)"), "msg/s", true),
        ("drain_per_s_256", format!("  drain phase, {small} B"), "msg/s", true),
        ("msgs_per_s_4k", format!("store-and-forward, {large} B (send + drain)"), "msg/s", true),
        ("send_per_s_4k", format!("  send phase, {large} B"), "msg/s", true),
        ("drain_per_s_4k", format!("  drain phase, {large} B"), "msg/s", true),
        ("latency_p50", format!("latency p50, online, {}/s offered", p.latency.rate), "ms", false),
        ("latency_p99", "latency p99, online".into(), "ms", false),
        ("latency_max", "latency max, online".into(), "ms", false),
        (
            "group_msgs_per_s",
            format!("group of {}, delivered ({} B, online)", p.group.members, p.group.payload_size),
            "msg/s",
            true,
        ),
        ("peak_rss", "server peak RSS (workloads above)".into(), "MiB", false),
        ("peak_rss_after_256", format!("  peak after store-and-forward {small} B"), "MiB", false),
        ("peak_rss_after_4k", format!("  peak after store-and-forward {large} B"), "MiB", false),
        ("rss_before_idle", "server RSS before the idle clients".into(), "MiB", false),
        ("idle_rss_1000", format!("server RSS, {} idle clients", p.idle_clients), "MiB", false),
        ("cpu_s_per_10k", format!("server CPU per 10k msgs, {small} B"), "s", false),
        ("cpu_per_10k_4k", format!("server CPU per 10k msgs, {large} B"), "s", false),
        ("disk_bytes_per_msg", format!("disk per stored {small} B msg, at rest (WAL incl.)"), "B", false),
        ("disk_per_msg_256", format!("  right after the send phase, {small} B"), "B", false),
        ("disk_no_wal_per_msg_256", format!("  without the WAL, {small} B"), "B", false),
        ("disk_rest_per_msg_4k", format!("disk per stored {large} B msg, at rest"), "B", false),
        ("disk_per_msg_4k", format!("  right after the send phase, {large} B"), "B", false),
        ("disk_no_wal_per_msg_4k", format!("  without the WAL, {large} B"), "B", false),
        ("handshakes_per_s", "new connections (full handshake)".into(), "conn/s", true),
        ("cpu_ms_per_handshake", "  server CPU per new connection".into(), "ms", false),
        ("loadgen_cpu_256", format!("load generator CPU share, {small} B"), "cores", false),
        ("udp_drops", "UDP datagrams dropped, full buffer (machine)".into(), "count", false),
    ]
}

fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if !v.is_finite() => "-".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The table: mean over the rounds, and each round's figure for qpc.
pub fn table(c: &Comparison, p: &Params) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<46} {:>7} {:>11} {:>11} {:>9}",
        "figure (mean of rounds)", "unit", "qpc", "mosquitto", "qpc/mosq"
    );
    let _ = writeln!(out, "{}", "-".repeat(88));
    for (key, label, unit, _) in rows(p) {
        let q = c.mean(Kind::Qpc, key);
        let m = c.mean(Kind::Mosquitto, key);
        let _ = writeln!(
            out,
            "{label:<46} {unit:>7} {:>11} {:>11} {:>9}",
            number(q),
            number(m),
            number(c.ratio(key))
        );
    }
    if p.rounds > 1 {
        let _ = writeln!(out, "\nper round (qpc | mosquitto):");
        for key in RATIO_NAMES {
            let each = |kind| {
                c.rounds(kind).iter().map(|f| number(f.get(*key).copied())).collect::<Vec<_>>().join(" ")
            };
            let _ = writeln!(out, "  {key:<20} {} | {}", each(Kind::Qpc), each(Kind::Mosquitto));
        }
    }
    out
}

/// `ratio NAME VALUE` for each headline figure.
pub fn ratio_lines(c: &Comparison) -> String {
    let mut out = String::new();
    for name in RATIO_NAMES {
        let value = c.ratio(name).filter(|v| v.is_finite());
        let _ = writeln!(
            out,
            "ratio {name} {}",
            value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "nan".into())
        );
    }
    out
}

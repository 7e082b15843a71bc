//! Readings of a running process from /proc: resident memory and CPU time;
//! and the machine's count of UDP datagrams dropped on a full socket buffer.

use std::sync::OnceLock;

/// A `Vm*` field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds the process (all its live threads) has run: the sum of
/// /proc/PID/task/*/schedstat (nanoseconds), else utime + stime from
/// /proc/PID/stat (clock ticks, 10 ms: too coarse for short runs).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_at(&format!("/proc/{pid}"))
}

/// The same for this process.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_at("/proc/self").unwrap_or(0.0)
}

fn cpu_seconds_at(proc_dir: &str) -> Option<f64> {
    let from_schedstat = std::fs::read_dir(format!("{proc_dir}/task")).ok().and_then(|tasks| {
        let mut ns = 0u64;
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 / 1e9)
    });
    from_schedstat.or_else(|| cpu_seconds_of_stat(&std::fs::read_to_string(format!("{proc_dir}/stat")).ok()?))
}

fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// UDP datagrams the kernel dropped because a socket's receive buffer was
/// full, over IPv4 and IPv6 (`RcvbufErrors` of /proc/net/snmp,
/// `Udp6RcvbufErrors` of /proc/net/snmp6): machine-wide, so a reading
/// taken around a round counts the drops of both ends of the bench.
pub fn udp_receive_drops() -> Option<u64> {
    let v4 = snmp_field(&std::fs::read_to_string("/proc/net/snmp").ok()?, "Udp:", "RcvbufErrors")?;
    let v6 = std::fs::read_to_string("/proc/net/snmp6")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Udp6RcvbufErrors")?.trim().parse::<u64>().ok()))
        .unwrap_or(0);
    Some(v4 + v6)
}

/// A field of /proc/net/snmp: a line of names, then a line of values, both
/// starting with `prefix`.
fn snmp_field(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        let s = cpu_seconds_of_stat(stat).unwrap();
        assert!((s - 300.0 / clock_ticks()).abs() < 1e-9);
    }

    #[test]
    fn reads_own_cpu() {
        let before = own_cpu_seconds();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(own_cpu_seconds() > before);
    }

    #[test]
    fn reads_own_memory() {
        assert!(status_kib(std::process::id(), "VmRSS").unwrap() > 0);
    }

    #[test]
    fn a_snmp_field_is_read_by_its_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
                    Udp: 1072920 837 7865 1082020 7866\n";
        assert_eq!(snmp_field(text, "Udp:", "RcvbufErrors"), Some(7866));
        assert_eq!(snmp_field(text, "Udp:", "NoPorts"), Some(837));
        assert_eq!(snmp_field(text, "Udp:", "Missing"), None);
        assert_eq!(snmp_field(text, "Tcp:", "RcvbufErrors"), None);
        assert!(udp_receive_drops().is_some(), "this machine has /proc/net/snmp");
    }
}

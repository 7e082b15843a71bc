//! Readings of a running process from /proc: resident memory and CPU time.

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
}

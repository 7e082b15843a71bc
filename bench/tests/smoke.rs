//! Smoke test of the benchmark harness: a few messages each way against
//! both relays, so that `make bench` does not rot. It checks that every
//! figure comes out, not how good it is. Skips (saying why) only when
//! Mosquitto is missing and cannot be installed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use qpc_bench::report::{self, RATIO_NAMES};
use qpc_bench::servers::{Kind, Launch};
use qpc_bench::suite::{self, GroupWorkload, LatencyWorkload, Params};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// qpc-server from the same target directory as this test (debug build:
/// `make test` builds the binaries first).
fn server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/smoke-HASH -> target/debug/qpc-server
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join("qpc-server");
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// Mosquitto, installed with apt-get if missing; `Err` says why it cannot be had.
fn mosquitto() -> Result<PathBuf, String> {
    let path = PathBuf::from(MOSQUITTO);
    if path.exists() {
        return Ok(path);
    }
    eprintln!("mosquitto missing: trying apt-get install -y mosquitto");
    let install = Command::new("sh")
        .arg("-c")
        .arg("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto")
        .status();
    match install {
        Ok(s) if s.success() && path.exists() => Ok(path),
        Ok(s) => Err(format!("apt-get install mosquitto failed ({s})")),
        Err(e) => Err(format!("cannot run apt-get: {e}")),
    }
}

#[test]
fn harness_produces_every_figure_for_both_relays() {
    let mosquitto = match mosquitto() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED bench smoke: mosquitto cannot be installed: {why}");
            return;
        }
    };
    let qpc_server = server_bin();
    let launch = Launch {
        qpc_flags: qpc_bench::servers::qpc_limit_flags(&qpc_server),
        qpc_server,
        qpc_run: None,
        db_key: "smoke".into(),
        mosquitto,
        mqtt_max_inflight: 20,
        wrapper: Vec::new(),
        mosquitto_wrapper: Vec::new(),
        start_timeout: Duration::from_secs(30),
    };
    let params = Params {
        messages: 24,
        senders: 2,
        recipients: 3,
        window: 4,
        small_payload: 256,
        large_payload: 4096,
        latency: LatencyWorkload { messages: 12, pairs: 2, rate: 100.0, payload_size: 256 },
        group: GroupWorkload { messages: 5, members: 4, payload_size: 256, window: 2 },
        idle_clients: 8,
        idle_settle: Duration::from_millis(200),
        handshakes: 6,
        handshake_concurrency: 2,
        rounds: 1,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let comparison = local
        .block_on(&runtime, suite::run(&launch, &params, &|what| eprintln!("smoke: {what}")))
        .unwrap_or_else(|e| panic!("harness failed: {e}"));

    let table = report::table(&comparison, &params);
    let ratios = report::ratio_lines(&comparison);
    println!("{table}\n{ratios}");

    for kind in [Kind::Qpc, Kind::Mosquitto] {
        for name in RATIO_NAMES {
            let v = comparison.mean(kind, name).unwrap_or_else(|| panic!("{} has no {name}", kind.name()));
            assert!(v.is_finite() && v > 0.0, "{} {name} = {v}", kind.name());
        }
    }
    let lines: Vec<&str> = ratios.lines().collect();
    assert_eq!(lines.len(), RATIO_NAMES.len());
    for (line, name) in lines.iter().zip(RATIO_NAMES) {
        let rest =
            line.strip_prefix(&format!("ratio {name} ")).unwrap_or_else(|| panic!("bad line {line:?}"));
        let v: f64 = rest.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(v.is_finite() && v > 0.0, "{line}");
    }
}

//! The admin channel against the real relay: `status` with known traffic,
//! the metrics file through a real Prometheus parser, who may use the
//! socket, `users`, `user-delete`, `invite-token`, syslog, and the
//! refusal to run two relays on one data directory.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use qpc::account::{login, register, AccountError};
use qpc::relay::RelayError;
use qpc_proto::Status;

/// The keys of `status --json`, exactly.
const KEYS: &[&str] = &[
    "version",
    "uptime_s",
    "listen",
    "fingerprint",
    "log_key",
    "log_head",
    "registration",
    "connections",
    "accounts",
    "identities",
    "queued_messages",
    "queued_bytes",
    "store_bytes",
    "store_cap_bytes",
    "blobs",
    "blob_bytes",
    "blob_cap_bytes",
    "blob_lifetime_s",
    "log_size",
    "enqueued",
    "delivered",
    "expired",
    "reports",
    "banned",
    "peers",
    "last_error",
];

fn pub_key(key: &ed25519_dalek::SigningKey) -> [u8; 32] {
    key.verifying_key().to_bytes()
}

/// Parses Prometheus text with the Python `prometheus_client` parser and
/// returns `name value` per sample, or panics with the parser's complaint.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
for f in families:
    assert f.documentation, "no HELP for " + f.name
    assert f.type in ("gauge", "counter"), f.name + " has type " + f.type
    for s in f.samples:
        print(s.name, s.value)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (make status-deps installs what this test needs)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        !err.contains("No module named 'prometheus_client'"),
        "the Python prometheus_client parser is missing: `make status-deps` (pip install prometheus_client)"
    );
    assert!(out.status.success(), "prometheus_client rejects the metrics:\n{err}\n---\n{text}");
    stdout(&out)
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn sample(samples: &[(String, f64)], name: &str) -> f64 {
    samples.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no sample {name}: {samples:?}")).1
}

#[test]
fn status_counts_match_known_traffic_and_metrics_file_parses() {
    let dir = TempDir::new("status");
    let metrics = dir.join("qpc.prom");
    let metrics_arg = metrics.to_string_lossy().into_owned();
    let server = Server::start(
        &dir.join("data"),
        &[
            "--registration",
            "open",
            "--store-cap-bytes",
            "1000000",
            "--metrics-file",
            &metrics_arg,
            "--metrics-interval-secs",
            "1",
        ],
    );

    let fresh = server.status();
    let keys: BTreeSet<&str> = fresh.keys().map(String::as_str).collect();
    assert_eq!(keys, KEYS.iter().copied().collect::<BTreeSet<_>>(), "exactly the documented keys");
    for key in ["connections", "accounts", "identities", "queued_messages", "enqueued", "delivered"] {
        assert_eq!(num(&fresh, key), 0, "{key} on a fresh relay");
    }
    assert_eq!(fresh["last_error"], serde_json::Value::Null);

    let (alice_key, bob_key, carol_key) = (new_key(), new_key(), new_key());
    let rt = runtime();
    let (alice, bob, carol) = rt.block_on(async {
        let alice = connect(&server).await;
        register(&alice, "alice", "alice's password", "", &alice_key).await.unwrap();
        let bob = connect(&server).await;
        register(&bob, "bob", "bob's password", "", &bob_key).await.unwrap();
        // An identity without an account (open registration admits it).
        let carol = connect(&server).await;
        carol.authenticate(&carol_key).await.unwrap();

        for (i, len) in [10usize, 20, 30].into_iter().enumerate() {
            let id = format!("m{i}").into_bytes();
            alice.enqueue(&pub_key(&bob_key), b"chat", vec![7; len], id).await.unwrap();
        }
        alice.enqueue(&pub_key(&carol_key), b"chat", vec![8; 40], b"c1".to_vec()).await.unwrap();
        // A retry with the same client message id is stored (and counted) once.
        let again = alice.enqueue(&pub_key(&bob_key), b"chat", vec![7; 10], b"m0".to_vec()).await.unwrap();
        assert!(again.duplicate);

        let waiting = bob.peek(10).await.unwrap();
        assert_eq!(waiting.len(), 3);
        assert_eq!(bob.ack(waiting[1].seq).await.unwrap(), 2);
        (alice, bob, carol)
    });

    let raw = ok(server.ctl(&["status", "--json"]));
    eprintln!("status --json after the traffic: {raw}");
    let s = server.status();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["listen"], serde_json::json!([server.addr]));
    assert_eq!(s["fingerprint"], server.fingerprint());
    assert_eq!(s["registration"], "open");
    assert_eq!(num(&s, "connections"), 3);
    assert_eq!(num(&s, "accounts"), 2);
    assert_eq!(num(&s, "identities"), 3);
    assert_eq!(num(&s, "queued_messages"), 2, "bob's third and carol's one");
    assert_eq!(num(&s, "queued_bytes"), 30 + 40);
    assert_eq!(num(&s, "enqueued"), 4);
    assert_eq!(num(&s, "delivered"), 2);
    assert_eq!(num(&s, "expired"), 0);
    assert_eq!(num(&s, "store_cap_bytes"), 1_000_000);
    assert_eq!((num(&s, "blobs"), num(&s, "blob_bytes")), (0, 0), "no file sent");
    assert_eq!(num(&s, "blob_cap_bytes"), 64 << 20, "the default blob cap");
    assert_eq!(num(&s, "blob_lifetime_s"), 7 * 86_400, "the default blob lifetime");
    assert!(num(&s, "uptime_s") < 120);
    let on_disk: u64 = ["qpc.db", "qpc.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(server.data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(num(&s, "store_bytes") > 0);
    assert_eq!(num(&s, "store_bytes"), on_disk, "qpc.db and its WAL");
    assert_eq!(s["last_error"], serde_json::Value::Null);

    // The same figures for a person, and as Prometheus text.
    let text = ok(server.ctl(&["status"]));
    for line in ["accounts       2", "identities     3", "queued         2 messages, 70 bytes"] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    assert!(text.contains("4 enqueued, 2 delivered, 0 expired"), "{text}");
    let prom = parse_prometheus(&ok(server.ctl(&["status", "--prometheus"])));
    assert_eq!(sample(&prom, "qpc_queued_messages"), 2.0);
    assert_eq!(sample(&prom, "qpc_enqueued_total"), 4.0);

    // Users: one row per account with its device key and queue.
    let users = ok(server.ctl(&["users"]));
    let bob_row = users.lines().find(|l| l.starts_with("bob ")).expect("bob listed");
    assert_eq!(bob_row.split_whitespace().collect::<Vec<_>>()[..3], ["bob", "1", "1"], "{users}");
    assert!(bob_row.contains(&hex_prefix(&bob_key)), "{users}");
    let alice_row = users.lines().find(|l| l.starts_with("alice ")).expect("alice listed");
    assert_eq!(alice_row.split_whitespace().collect::<Vec<_>>()[..3], ["alice", "1", "0"], "{users}");
    let json: serde_json::Value = serde_json::from_str(&ok(server.ctl(&["users", "--json"]))).unwrap();
    assert_eq!(json[1]["username"], "bob");
    assert_eq!(json[1]["queued"], 1);

    // The metrics file catches up within its interval and parses.
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = loop {
        let file = std::fs::read_to_string(&metrics).unwrap_or_default();
        if file.contains("qpc_enqueued_total 4\n") && file.contains("qpc_connections 3\n") {
            break file;
        }
        assert!(Instant::now() < deadline, "metrics file never showed the traffic:\n{file}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let samples = parse_prometheus(&file);
    for (name, want) in [
        ("qpc_accounts", 2.0),
        ("qpc_identities", 3.0),
        ("qpc_queued_bytes", 70.0),
        ("qpc_delivered_total", 2.0),
        ("qpc_expired_total", 0.0),
        ("qpc_store_cap_bytes", 1e6),
        ("qpc_blobs", 0.0),
        ("qpc_blob_cap_bytes", f64::from(64u32 << 20)),
        ("qpc_info", 1.0),
    ] {
        assert_eq!(sample(&samples, name), want, "{name}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).collect();
    assert!(
        leftovers.iter().all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")),
        "no temporary file left beside the metrics file"
    );

    rt.block_on(async {
        alice.close().await;
        bob.close().await;
        carol.close().await;
    });
    server.wait_status("the connections closed", |s| num(s, "connections") == 0);

    // A clean stop removes the socket and the metrics file.
    let mut server = server;
    assert_eq!(server.stop(), Some(0));
    assert!(!server.data_dir.join("admin.sock").exists());
    assert!(!metrics.exists(), "the metrics file of a stopped relay is removed");
    let out = server.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3), "exit 3: no relay answers");
    assert!(stderr(&out).contains("no relay is running"), "{}", stderr(&out));
}

fn hex_prefix(key: &ed25519_dalek::SigningKey) -> String {
    pub_key(key)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `qpc-server ARGS` as user nobody.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(server_bin())
        .args(args)
        .env_remove("QPC_SOCKET")
        .env_remove("QPC_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

#[test]
fn admin_socket_refuses_other_users() {
    if !is_root() || !have_user("nobody") || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs root, user nobody and setpriv to connect as another user");
        return;
    }
    let dir = TempDir::new("refuse");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&dir.join("data"), &[]);
    let socket = server.data_dir.join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the admin socket is the owner's only");
    let socket_arg = socket.to_string_lossy().into_owned();

    // The file mode already keeps nobody out.
    let out = as_nobody(&["status", "--socket", &socket_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));
    assert!(stderr(&out).contains("only root and the relay's own user"), "{}", stderr(&out));

    // And so does the relay, which checks the peer's uid, should the mode
    // ever be loosened.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["status", "--json", "--socket", &socket_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "no figures for nobody: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("permission denied: only root and the relay's own user (uid 0) may use the admin socket; you are uid 65534"),
        "{err}"
    );
    let out = as_nobody(&["invite-token", "--socket", &socket_arg]);
    assert_eq!(out.status.code(), Some(1), "no token for nobody");
    let log = server.wait_log("admin socket: refused uid 65534");
    assert!(!log.contains("minted"), "{log}");

    // Root still may.
    assert_eq!(num(&server.status(), "accounts"), 0);
}

#[test]
fn user_delete_removes_the_account_its_keys_and_its_queue() {
    let dir = TempDir::new("delete");
    let server = Server::start(&dir.join("data"), &["--registration", "token"]);

    // Two invite tokens; each admits exactly one account.
    let alice_token = ok(server.ctl(&["invite-token"])).trim().to_string();
    let bob_token = ok(server.ctl(&["invite-token"])).trim().to_string();
    assert_eq!(alice_token.len(), 32);
    assert_ne!(alice_token, bob_token);
    server.wait_log("minted a one-time registration token");
    assert!(!server.log().contains(&alice_token), "the token is never logged");

    let (alice_key, bob_key, mallory_key) = (new_key(), new_key(), new_key());
    let rt = runtime();
    let alice = rt.block_on(async {
        let alice = connect(&server).await;
        register(&alice, "alice", "pw-alice", &alice_token, &alice_key).await.unwrap();
        let bob = connect(&server).await;
        register(&bob, "bob", "pw-bob", &bob_token, &bob_key).await.unwrap();
        let mallory = connect(&server).await;
        let reused = register(&mallory, "mallory", "pw", &alice_token, &mallory_key).await;
        assert!(
            matches!(&reused, Err(AccountError::Relay(e)) if e.status() == Some(Status::Forbidden)),
            "a spent token admits nobody: {reused:?}"
        );
        alice.upload_key_package(b"alice's key package".to_vec()).await.unwrap();
        for i in 0..3u8 {
            bob.enqueue(&pub_key(&alice_key), b"chat", vec![i; 100], vec![i]).await.unwrap();
        }
        alice.enqueue(&pub_key(&bob_key), b"chat", vec![9; 50], b"to-bob".to_vec()).await.unwrap();
        bob.close().await;
        mallory.close().await;
        alice
    });
    // A login for an unknown account is logged once, with the reason and
    // without the password. (A wrong password never reaches the relay:
    // with OPAQUE the client finds out alone, and the relay counts the
    // unfinished login towards the backoff.)
    rt.block_on(async {
        let guess = connect(&server).await;
        assert!(login(&guess, "nobody-here", "a-guessed-password", &new_key()).await.is_err());
        guess.close().await;
    });
    let log = server.wait_log("login for unknown account \"nobody-here\" from 127.0.0.1");
    assert_eq!(log.matches("nobody-here").count(), 1, "logged once:\n{log}");
    assert!(!log.contains("a-guessed-password") && !log.contains(&alice_token), "no secrets:\n{log}");

    let before = server.status();
    assert_eq!(num(&before, "accounts"), 2);
    assert_eq!(num(&before, "queued_messages"), 4);

    let out = ok(server.ctl(&["user-delete", "alice"]));
    assert!(out.contains("deleted account \"alice\": 1 device keys, 3 queued messages"), "{out}");
    server.wait_log("admin: deleted account \"alice\"");

    let after = server.status();
    assert_eq!(num(&after, "accounts"), 1);
    assert_eq!(num(&after, "identities"), 1, "only bob's");
    assert_eq!(num(&after, "queued_messages"), 1, "alice's queue is gone; what she sent bob stays");
    assert_eq!(num(&after, "queued_bytes"), 50);
    let users = ok(server.ctl(&["users"]));
    assert!(!users.contains("alice"), "{users}");

    rt.block_on(async {
        // Her open connection was closed.
        let lost = alice.peek(10).await;
        assert!(lost.is_err(), "the deleted account's connection is closed: {lost:?}");

        // She cannot log in, not even from the same device key.
        let relay = connect(&server).await;
        let denied = login(&relay, "alice", "pw-alice", &alice_key).await;
        match denied {
            Err(AccountError::Relay(RelayError::Refused { status: Status::NotFound, message, .. })) => {
                assert!(message.contains("no account named \"alice\""), "{message}")
            }
            other => panic!("login after user-delete: {other:?}"),
        }
        // Her name is free and unknown to the directory.
        let bob = connect(&server).await;
        login(&bob, "bob", "pw-bob", &bob_key).await.unwrap();
        let resolved = bob.resolve_user("alice").await;
        assert_eq!(resolved.err().and_then(|e| e.status()), Some(Status::NotFound));
        let gone = bob.fetch_key_package(&pub_key(&alice_key)).await;
        assert_eq!(gone.err().and_then(|e| e.status()), Some(Status::NotFound), "her KeyPackages are gone");
        let to_her = bob.enqueue(&pub_key(&alice_key), b"chat", vec![1], vec![]).await;
        assert_eq!(to_her.err().and_then(|e| e.status()), Some(Status::NotFound), "no queue for her");
        relay.close().await;
        bob.close().await;
    });

    let out = server.ctl(&["user-delete", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no account named \"alice\""), "{}", stderr(&out));
    let out = server.ctl(&["user-delete", "Not A Name"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn invite_token_in_open_mode_says_it_does_not_matter() {
    let dir = TempDir::new("invite");
    let server = Server::start(&dir.join("data"), &["--registration", "open"]);
    let out = server.ctl(&["invite-token"]);
    let token = ok(out.clone());
    assert_eq!(token.trim().len(), 32);
    assert!(stderr(&out).contains("registration is open on this relay"), "{}", stderr(&out));
}

#[test]
fn one_relay_per_data_directory_and_stale_sockets_are_replaced() {
    let dir = TempDir::new("twice");
    let data = dir.join("data");
    let first = Server::start(&data, &[]);
    let second = Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("QPC_SOCKET")
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("another qpc-server is running with data directory"),
        "{}",
        stderr(&second)
    );
    assert_eq!(num(&first.status(), "connections"), 0, "the first relay still answers");

    // A relay that died leaves its socket; the next one replaces it.
    let _ = Command::new("kill").arg("-KILL").arg(first.pid().to_string()).status();
    drop(first);
    assert!(data.join("admin.sock").exists(), "a killed relay leaves its socket");
    let out = Command::new(server_bin()).args(["status", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("no relay answers"), "{}", stderr(&out));
    let again = Server::start(&data, &[]);
    assert_eq!(num(&again.status(), "accounts"), 0);
}

#[test]
fn explicit_socket_is_found_through_the_data_directory() {
    let dir = TempDir::new("socket");
    let socket = dir.join("run/relay.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    let mut server = Server::start(&dir.join("data"), &["--socket", &socket_arg]);
    assert!(socket.exists());
    let link = server.data_dir.join("admin.sock");
    assert_eq!(std::fs::read_link(&link).unwrap(), socket, "DATA_DIR/admin.sock leads to the socket");
    assert_eq!(num(&server.status(), "identities"), 0);
    let by_socket =
        Command::new(server_bin()).args(["status", "--json", "--socket", &socket_arg]).output().unwrap();
    assert!(ok(by_socket).contains("\"identities\":0"));
    // QPC_SOCKET works as the flag does.
    let by_env =
        Command::new(server_bin()).args(["status", "--json"]).env("QPC_SOCKET", &socket).output().unwrap();
    assert!(ok(by_env).contains("\"identities\":0"));
    assert_eq!(server.stop(), Some(0));
    assert!(!socket.exists() && std::fs::symlink_metadata(&link).is_err(), "both removed at stop");
}

#[test]
fn syslog_gets_the_lines_and_each_refusal_once() {
    let dir = TempDir::new("syslog");
    let log_socket = dir.join("log.sock");
    let syslog = UnixDatagram::bind(&log_socket).unwrap();
    syslog.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let log_path = log_socket.to_string_lossy().into_owned();
    let data = dir.join("data");
    // Logging to syslog, nothing announces the port on stderr: give one.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(server_bin())
        .args(["--listen", &listen, "--registration", "closed", "--syslog", "--data-dir"])
        .arg(&data)
        .env("QPC_SYSLOG_PATH", &log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines: Vec<String> = Vec::new();
    let read_until = |want: &str, lines: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        while !lines.iter().any(|l| l.contains(want)) {
            assert!(Instant::now() < deadline, "syslog never got {want:?}: {lines:#?}");
            if let Ok(n) = syslog.recv(&mut buf) {
                lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    read_until("accepting QUIC connections", &mut lines);
    let pid = child.id();
    let line = lines.iter().find(|l| l.contains("accepting QUIC")).unwrap();
    assert!(line.starts_with(&format!("<30>qpc-server[{pid}]: info: ")), "daemon.info with tag: {line}");

    // A refused registration (closed relay) is logged once, with its reason.
    let fingerprint = qpc::relay::cert_fingerprint(&std::fs::read(data.join("server-cert.der")).unwrap());
    let rt = runtime();
    rt.block_on(async {
        let relay = qpc::relay::Relay::connect(&listen, &fingerprint).await.unwrap();
        let refused = register(&relay, "eve", "secret-password", "", &new_key()).await;
        assert!(refused.is_err());
        relay.close().await;
    });
    read_until("registration is closed", &mut lines);
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 4096];
    while let Ok(n) = syslog.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let refusals: Vec<_> = lines.iter().filter(|l| l.contains("registration is closed")).collect();
    assert_eq!(refusals.len(), 1, "logged once: {lines:#?}");
    assert!(refusals[0].contains("refused OpaqueRegisterStart"), "{}", refusals[0]);
    assert!(lines.iter().all(|l| !l.contains("secret-password")), "no secrets in the log");

    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty(), "with syslog, nothing on stderr: {rest}");
}

#[test]
fn last_error_reports_the_latest_error() {
    let dir = TempDir::new("lasterror");
    let server = Server::start(&dir.join("data"), &["--metrics-file", "/nonexistent-qpc-dir/qpc.prom"]);
    let s = server.wait_status("an error", |s| !s["last_error"].is_null());
    let message = s["last_error"].as_str().unwrap();
    assert!(message.contains("metrics file /nonexistent-qpc-dir/qpc.prom"), "{message}");
    let text = ok(server.ctl(&["status"]));
    assert!(text.contains("last error") && text.contains("ago: metrics file"), "{text}");
    let prom = parse_prometheus(&ok(server.ctl(&["status", "--prometheus"])));
    assert_eq!(sample(&prom, "qpc_errors_total"), 1.0, "the failing file is reported once");
    assert!(sample(&prom, "qpc_last_error_timestamp_seconds") > 1.6e9);
}

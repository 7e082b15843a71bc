//! The relay's test harness: the shared one of the client's tests (real
//! `qpc-server` on loopback, temporary directories), plus the admin
//! subcommands and a client from the `qpc` library driving known traffic.
#![allow(dead_code)]

#[path = "../../../cli/tests/common/mod.rs"]
mod shared;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use qpc::relay::Relay;
pub use shared::*;

/// The workspace root (for openwrt/ and target/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

impl Server {
    pub fn fingerprint(&self) -> String {
        qpc::relay::cert_fingerprint(&std::fs::read(self.data_dir.join("server-cert.der")).unwrap())
    }

    /// `qpc-server ARGS --data-dir DATA_DIR`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(server_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("QPC_SOCKET")
            .env_remove("QPC_DATA_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run qpc-server")
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> serde_json::Map<String, serde_json::Value> {
        let out = ok(self.ctl(&["status", "--json"]));
        match serde_json::from_str(&out) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("status --json is not one JSON object: {other:?}\n{out}"),
        }
    }

    /// Waits until `status --json` satisfies `cond`, or panics after 10 s.
    pub fn wait_status(
        &self,
        what: &str,
        cond: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
    ) -> serde_json::Map<String, serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "status never showed {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn new_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// A client connection to `server`.
pub async fn connect(server: &Server) -> Relay {
    Relay::connect(&server.addr, &server.fingerprint()).await.expect("connect to the relay")
}

pub fn num(status: &serde_json::Map<String, serde_json::Value>, key: &str) -> u64 {
    status.get(key).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{key} is not a number: {status:?}"))
}

/// Whether `user` exists on this machine (for tests that switch to it).
pub fn have_user(user: &str) -> bool {
    Command::new("id")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root (needed to switch users).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

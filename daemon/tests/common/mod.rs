//! Test harness: the real `qpc-server` binary on a loopback port with a
//! temporary data directory, its admin subcommands, and a client from the
//! `qpc` library driving known traffic.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use qpc::relay::Relay;

pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qpc-server"))
}

/// The workspace root (for openwrt/ and target/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A directory removed when dropped; readable by everyone, so that a test
/// can reach into it as another user.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "qpc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running relay.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a relay on 127.0.0.1 (a free port) with `data_dir` and extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(server_bin())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env_remove("QPC_DB_KEY")
            .env_remove("QPC_SOCKET")
            .env_remove("QPC_DATA_DIR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qpc-server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(addr) = line.split("accepting QUIC connections addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("qpc-server did not start listening; log:\n{}", log.lock().unwrap());
            }
        };
        Server { child: Some(child), addr, data_dir: data_dir.into(), log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it contains `needle` (lines arrive through a pipe, a
    /// little after the relay wrote them); panics after 10 s.
    #[track_caller]
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "the log never showed {needle:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

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

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("qpc-server did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "command failed ({}): {}\nstdout: {}", o.status, stderr(&o), stdout(&o));
    stdout(&o)
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(o: Output) -> String {
    assert!(!o.status.success(), "command should have failed; stdout: {}", stdout(&o));
    stderr(&o)
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

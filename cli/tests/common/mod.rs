//! Test harness shared by the client's and the relay's tests (the relay's
//! include this file by path): the real `qpc-server` binary on a loopback
//! port with a temporary data directory, and the real `qpc` binary against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn server_bin() -> PathBuf {
    let path = match option_env!("CARGO_BIN_EXE_qpc-server") {
        Some(path) => PathBuf::from(path),
        None => qpc_bin().with_file_name("qpc-server"),
    };
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

pub fn qpc_bin() -> PathBuf {
    match (option_env!("CARGO_BIN_EXE_qpc"), option_env!("CARGO_BIN_EXE_qpc-server")) {
        (Some(qpc), _) => PathBuf::from(qpc),
        (None, Some(server)) => PathBuf::from(server).with_file_name("qpc"),
        (None, None) => unreachable!("the harness serves the qpc and qpc-server packages only"),
    }
}

/// A directory removed when dropped.
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
    extra: Vec<String>,
    env: Vec<(String, String)>,
    /// A command the relay runs under (e.g. `unshare ...`), if any.
    wrapper: Vec<String>,
}

impl Server {
    /// Starts a relay on 127.0.0.1 (a free port) with `data_dir` and extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Starts a relay with extra flags and environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_on(data_dir, "127.0.0.1:0", extra, env, Vec::new())
    }

    /// Starts a relay as the last argument of `wrapper` (which must exec it,
    /// so that `pid` is the relay's).
    pub fn start_wrapped(data_dir: &Path, wrapper: &[&str], extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        Self::start_on(data_dir, "127.0.0.1:0", extra, Vec::new(), wrapper)
    }

    fn start_on(
        data_dir: &Path,
        listen: &str,
        extra: Vec<String>,
        env: Vec<(String, String)>,
        wrapper: Vec<String>,
    ) -> Server {
        let mut command = match wrapper.split_first() {
            None => Command::new(server_bin()),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(server_bin());
                c
            }
        };
        let mut child = command
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra)
            .env_remove("QPC_DB_KEY")
            .env_remove("QPC_SOCKET")
            .env_remove("QPC_DATA_DIR")
            .envs(env.iter().map(|(k, v)| (k, v)))
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
        Server { child: Some(child), addr, data_dir: data_dir.into(), log, extra, env, wrapper }
    }

    pub fn cert(&self) -> PathBuf {
        self.data_dir.join("server-cert.der")
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

    /// Stops and starts again on the same data directory and port.
    pub fn restart(&mut self) {
        assert_eq!(self.stop(), Some(0), "clean exit on SIGTERM; log:\n{}", self.log());
        let addr = self.addr.clone();
        let (extra, env, wrapper) = (self.extra.clone(), self.env.clone(), self.wrapper.clone());
        *self = Server::start_on(&self.data_dir.clone(), &addr, extra, env, wrapper);
    }

    /// A `qpc` command pointed at this relay.
    pub fn qpc(&self, state: &Path, args: &[&str]) -> Output {
        let (sub, rest) = args.split_first().expect("subcommand");
        Command::new(qpc_bin())
            .arg(sub)
            .arg("--state")
            .arg(state)
            .arg("--server")
            .arg(&self.addr)
            .arg("--ca-cert")
            .arg(self.cert())
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .expect("run qpc")
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

/// The identity_key printed by register-state.
pub fn identity_key(register_output: &str) -> String {
    register_output
        .lines()
        .find_map(|l| l.strip_prefix("identity_key : "))
        .expect("identity_key line")
        .trim()
        .to_string()
}

/// The `[i] plaintext: ...` texts of a recv output.
pub fn plaintexts(out: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.split_once("] plaintext: ").map(|(_, t)| t.to_string())).collect()
}

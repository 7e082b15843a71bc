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
        self.restart_stopped();
    }

    /// Starts a relay stopped with [`Server::stop`] again, on the same data
    /// directory and port.
    pub fn restart_stopped(&mut self) {
        assert!(self.child.is_none(), "the relay is still running");
        let addr = self.addr.clone();
        let (extra, env, wrapper) = (self.extra.clone(), self.env.clone(), self.wrapper.clone());
        *self = Server::start_on(&self.data_dir.clone(), &addr, extra, env, wrapper);
    }

    /// Like [`Server::restart_stopped`] with `env` instead of the
    /// environment it had (a lying test relay told the truth again).
    pub fn restart_stopped_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.restart_stopped();
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

// ---------------------------------------------------------------------------
// `qpc repl` and `qpc chat` driven through pipes (cli/tests/conversations.rs;
// the same as the harness of cli/tests/repl.rs, which it can replace).

use std::io::Write as _;
use std::process::ChildStdin;

use serde_json::Value;

/// How long a REPL is waited for.
pub const WAIT: Duration = Duration::from_secs(15);

/// A running `qpc repl` (or `qpc chat`) of one user, stdin piped.
pub struct Repl {
    pub user: String,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    /// Every line as it came; `true` for stdout, `false` for stderr.
    pub out: Arc<Mutex<Vec<(bool, String)>>>,
    /// Lines before this were already matched by `expect`.
    pub seen: usize,
}

pub fn state_path(dir: &TempDir, user: &str) -> std::path::PathBuf {
    dir.join(&format!("qpc-{user}.bin"))
}

pub fn start_args(server: &Server, dir: &TempDir, user: &str, sub: &[&str]) -> Command {
    let mut cmd = Command::new(qpc_bin());
    cmd.args(sub)
        .arg("--state")
        .arg(state_path(dir, user))
        .arg("--server")
        .arg(&server.addr)
        .arg("--ca-cert")
        .arg(server.cert())
        .args(["--username", user, "--password", &format!("pw-{user}")])
        .env_remove("QPC_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Repl {
    pub fn start(server: &Server, dir: &TempDir, user: &str) -> Repl {
        let mut repl = Repl::spawn(server, dir, user, &["repl"]);
        repl.expect("type /help for the commands");
        repl
    }

    pub fn spawn(server: &Server, dir: &TempDir, user: &str, sub: &[&str]) -> Repl {
        let mut child = start_args(server, dir, user, sub).spawn().expect("start qpc");
        let out = Arc::new(Mutex::new(Vec::new()));
        for (is_stdout, stream) in [
            (true, Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>),
            (false, Box::new(child.stderr.take().unwrap())),
        ] {
            let sink = Arc::clone(&out);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push((is_stdout, line));
                }
            });
        }
        let stdin = child.stdin.take();
        Repl { user: user.into(), child, stdin, out, seen: 0 }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn output(&self) -> String {
        self.out.lock().unwrap().iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.out.lock().unwrap().iter().filter(|(o, _)| *o).map(|(_, l)| l.clone()).collect()
    }

    /// The lines not matched yet (a mark for [`Repl::since`]).
    pub fn mark(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// Everything printed since `mark`.
    pub fn since(&self, mark: usize) -> String {
        self.out.lock().unwrap()[mark..].iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// Waits for a line (after the last one matched) that `found` accepts.
    #[track_caller]
    pub fn expect_line(&mut self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(i) = out[self.seen..].iter().position(|(_, l)| found(l)) {
                    self.seen += i + 1;
                    return out[self.seen - 1].1.clone();
                }
            }
            if Instant::now() > deadline {
                panic!("{}: no line {what} within {WAIT:?}; output:\n{}", self.user, self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a line (after the last one matched) containing `needle`.
    #[track_caller]
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_line(&format!("with {needle:?}"), |l| l.contains(needle))
    }

    /// Waits for a line that is exactly `line`.
    #[track_caller]
    pub fn expect_exact(&mut self, line: &str) {
        self.expect_line(&format!("equal to {line:?}"), |l| l == line);
    }

    /// Waits for a JSON object on stdout that `found` accepts.
    #[track_caller]
    pub fn expect_json(&mut self, what: &str, found: impl Fn(&Value) -> bool) -> Value {
        let line = self.expect_line(what, |l| serde_json::from_str::<Value>(l).is_ok_and(|v| found(&v)));
        serde_json::from_str(&line).unwrap()
    }

    /// `/history` of the active conversation `label`: its lines as printed.
    #[track_caller]
    pub fn history(&mut self, label: &str) -> Vec<String> {
        self.send("/history 100");
        let header = self.expect(&format!("history of {label} ("));
        let n: usize = header
            .split_once(" (")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: a history header without a count: {header}", self.user));
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let out = self.out.lock().unwrap();
                let lines: Vec<(usize, &String)> = out[self.seen..]
                    .iter()
                    .enumerate()
                    .filter(|(_, (o, l))| *o && l.starts_with("  "))
                    .map(|(i, (_, l))| (i, l))
                    .take(n)
                    .collect();
                if lines.len() == n {
                    self.seen += lines.last().map_or(0, |(i, _)| i + 1);
                    return lines.into_iter().map(|(_, l)| l.clone()).collect();
                }
            }
            assert!(Instant::now() < deadline, "{}: /history ended early:\n{}", self.user, self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/history` of `label` asked again until `done` accepts it.
    #[track_caller]
    pub fn history_until(
        &mut self,
        label: &str,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.history(label);
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{}: /history of {label} never showed {what}:\n{lines:#?}",
                self.user
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to end by itself; returns whether it succeeded.
    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status.success();
            }
            assert!(Instant::now() < deadline, "{}: did not end; output:\n{}", self.user, self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the session with /quit and waits for a clean exit.
    pub fn quit(mut self) -> String {
        self.send("/quit");
        drop(self.stdin.take());
        assert!(self.wait_exit(), "{}: /quit did not end cleanly; output:\n{}", self.user, self.output());
        self.output()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private tmux server (its own socket) for REPLs at real terminals;
/// killed, with its sessions, when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Fails the test when tmux is missing (`make test` installs it).
    pub fn new(tag: &str) -> Tmux {
        let tmux_ok = Command::new("tmux").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
        assert!(tmux_ok, "tmux is needed for this test: `make test` installs it (apt-get install tmux)");
        Tmux { socket: format!("qpc-{tag}-{}", std::process::id()) }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux")
    }

    /// `qpc repl` of `user` (password `pw-<user>`, state in `dir`) in a
    /// 150x40 terminal session named `user`.
    pub fn repl(&self, server: &Server, dir: &TempDir, user: &str) {
        let cmd = format!(
            "{} repl --state {} --server {} --ca-cert {} --username {user} --password pw-{user}; sleep 30",
            qpc_bin().display(),
            state_path(dir, user).display(),
            server.addr,
            server.cert().display()
        );
        let out = self.run(&["new-session", "-d", "-s", user, "-x", "150", "-y", "40", &cmd]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// What the terminal of session `user` shows (and its last 100 lines of scrollback).
    pub fn screen(&self, user: &str) -> String {
        stdout(&self.run(&["capture-pane", "-p", "-t", user, "-S", "-100"]))
    }

    /// Waits until the screen of `user` shows `needle`.
    #[track_caller]
    pub fn wait_for(&self, user: &str, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.screen(user).contains(needle) {
            assert!(Instant::now() < deadline, "{user}: no {needle:?} on screen:\n{}", self.screen(user));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` at the terminal of `user`, without Enter.
    pub fn keys(&self, user: &str, text: &str) {
        assert!(self.run(&["send-keys", "-t", user, "-l", text]).status.success());
    }

    /// Types `text` and Enter.
    pub fn type_line(&self, user: &str, text: &str) {
        self.keys(user, text);
        assert!(self.run(&["send-keys", "-t", user, "Enter"]).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// Runs `f` on a fresh current-thread runtime, as the client does.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A library connection to `server` that has proven `key`'s identity.
pub async fn signed_in(server: &Server, key: &ed25519_dalek::SigningKey) -> qpc::relay::Relay {
    let fp = qpc::relay::cert_fingerprint(&std::fs::read(server.cert()).unwrap());
    let relay = qpc::relay::Relay::connect(&server.addr, &fp).await.unwrap();
    relay.authenticate(key).await.unwrap();
    relay
}

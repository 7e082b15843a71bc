//! The two relays under test as child processes on loopback: `qpc-server`
//! with its own data directory, and Debian's `mosquitto` with a generated
//! configuration (TLS listener, persistence on, persistent sessions). Each
//! can run under a wrapper command (valgrind) for instruction counts.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::procfs;
use crate::util::TempDir;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Qpc,
    Mosquitto,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Qpc => "qpc",
            Kind::Mosquitto => "mosquitto",
        }
    }
}

/// How to start the relays.
#[derive(Debug, Clone)]
pub struct Launch {
    pub qpc_server: PathBuf,
    /// The binary started in place of `qpc_server`, when that is one the
    /// host cannot run itself (a router build under an emulator `wrapper`);
    /// flags are still probed on `qpc_server`, built from the same source.
    pub qpc_run: Option<PathBuf>,
    /// Extra flags for qpc-server (limits raised so the bench measures throughput).
    pub qpc_flags: Vec<String>,
    /// SQLCipher key: the relay runs keyed, as on a router.
    pub db_key: String,
    pub mosquitto: PathBuf,
    /// Mosquitto's `max_inflight_messages` (QoS 1 messages in flight to one client).
    pub mqtt_max_inflight: u32,
    /// A command qpc-server runs under (e.g. valgrind); empty for none.
    pub wrapper: Vec<String>,
    /// The same for Mosquitto.
    pub mosquitto_wrapper: Vec<String>,
    /// How long a start may take (valgrind is slow).
    pub start_timeout: Duration,
}

/// Bytes of a relay's files.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUse {
    pub total: u64,
    pub without_wal: u64,
}

impl DiskUse {
    pub fn growth_since(self, before: DiskUse) -> DiskUse {
        DiskUse {
            total: self.total.saturating_sub(before.total),
            without_wal: self.without_wal.saturating_sub(before.without_wal),
        }
    }
}

/// One running relay.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub addr: SocketAddr,
    /// SHA-256 of the server certificate (DER), hex: what clients pin.
    pub fingerprint: String,
    dir: TempDir,
    log: Arc<Mutex<String>>,
    /// One client endpoint and TLS configuration for every connection the
    /// load generator opens to this relay, so the client side is no bound.
    pub client: Arc<qpc::relay::SharedEndpoint>,
}

/// Flags of qpc-server that cap load, and the value that lifts the cap for
/// the bench; applied only when `qpc-server --help` lists the flag.
const QPC_LIFTED_LIMITS: &[(&str, &str)] = &[
    ("--max-connections", "100000"),
    ("--max-queue-messages", "100000000"),
    ("--max-queue-bytes", "100000000000"),
    ("--store-cap-bytes", "100000000000"),
    ("--rate-per-connection", "1000000"),
    ("--rate-per-address", "1000000"),
    ("--blob-max-bytes", "100000000000"),
    ("--blob-account-bytes", "100000000000"),
    ("--blob-cap-bytes", "100000000000"),
];

/// The flags (from `QPC_LIFTED_LIMITS`) that this qpc-server knows.
pub fn qpc_limit_flags(qpc_server: &Path) -> Vec<String> {
    qpc_known_flags(qpc_server, QPC_LIFTED_LIMITS)
}

/// The pairs of `wanted` whose flag this qpc-server accepts. Each flag is
/// probed by a command line that argh rejects right after it (a trailing
/// `--listen` without a value), so nothing starts; an unknown flag is
/// reported as such first. (`--help` is not read: it prints nothing when
/// argh is built without its `help` feature.)
fn qpc_known_flags(qpc_server: &Path, wanted: &[(&str, &str)]) -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, value) in wanted {
        let Ok(out) = Command::new(qpc_server).args([flag, value, "--listen"]).output() else { continue };
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !said.contains("Unrecognized argument") {
            flags.push(flag.to_string());
            flags.push(value.to_string());
        }
    }
    flags
}

fn spawn(launch: &Launch, program: &Path, args: &[String]) -> Result<Child> {
    let mut cmd = match launch.wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().map_err(|e| format!("cannot start {}: {e}", program.display()).into())
}

/// Copies the child's stderr into `log`, and sends each line to `lines`.
fn collect_stderr(child: &mut Child, log: Arc<Mutex<String>>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                let _ = tx.send(line);
            }
        });
    }
    rx
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Server {
    pub fn start(kind: Kind, launch: &Launch) -> Result<Server> {
        match kind {
            Kind::Qpc => Self::start_qpc(launch),
            Kind::Mosquitto => Self::start_mosquitto(launch),
        }
    }

    fn start_qpc(launch: &Launch) -> Result<Server> {
        let dir = TempDir::new("qpc")?;
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.path().display().to_string(),
            "--db-key".into(),
            launch.db_key.clone(),
        ];
        // The admin socket in the data directory, so several relays can run at once.
        let socket = dir.path().join("admin.sock").display().to_string();
        args.extend(qpc_known_flags(&launch.qpc_server, &[("--socket", &socket)]));
        args.extend(launch.qpc_flags.iter().cloned());
        let program = launch.qpc_run.as_ref().unwrap_or(&launch.qpc_server);
        let mut child = spawn(launch, program, &args)?;
        let log = Arc::new(Mutex::new(String::new()));
        let lines = collect_stderr(&mut child, Arc::clone(&log));
        let deadline = Instant::now() + launch.start_timeout;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    if let Some(rest) = line.split("accepting QUIC connections addr=").nth(1) {
                        break rest.trim().parse::<SocketAddr>()?;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                    return Err(format!("qpc-server did not start listening; its log:\n{log}").into());
                }
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let cert = std::fs::read(dir.path().join("server-cert.der"))?;
        let fingerprint = qpc::relay::cert_fingerprint(&cert);
        Ok(Server { kind: Kind::Qpc, child, addr, fingerprint, dir, log, client: Arc::default() })
    }

    fn start_mosquitto(launch: &Launch) -> Result<Server> {
        let launch = &Launch { wrapper: launch.mosquitto_wrapper.clone(), ..launch.clone() };
        let dir = TempDir::new("mosquitto")?;
        let made =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        let cert_der = made.cert.der().to_vec();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, pem("CERTIFICATE", &cert_der))?;
        std::fs::write(&key_path, pem("PRIVATE KEY", &made.signing_key.serialize_der()))?;
        let port = free_port()?;
        let conf_path = dir.path().join("mosquitto.conf");
        let mut conf = std::fs::File::create(&conf_path)?;
        // A store-and-forward broker as a router owner would set it up:
        // TLS, persistence, persistent sessions kept without expiry, queues
        // big enough for the workload (the default 1000 per client would
        // drop messages instead of storing them).
        write!(
            conf,
            "user root
per_listener_settings false
allow_anonymous true
listener {port} 127.0.0.1
certfile {cert}
keyfile {key}
tls_version tlsv1.3
set_tcp_nodelay true
max_connections -1
persistence true
persistence_location {dir}/
persistence_file mosquitto.db
autosave_interval 1800
persistent_client_expiration 1d
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages {inflight}
max_packet_size 1048576
log_dest stderr
log_type error
log_type warning
connection_messages false
",
            cert = cert_path.display(),
            key = key_path.display(),
            dir = dir.path().display(),
            inflight = launch.mqtt_max_inflight,
        )?;
        drop(conf);
        let mut child = spawn(launch, &launch.mosquitto, &["-c".into(), conf_path.display().to_string()])?;
        let log = Arc::new(Mutex::new(String::new()));
        let lines = collect_stderr(&mut child, Arc::clone(&log));
        std::thread::spawn(move || for _ in lines {});
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let deadline = Instant::now() + launch.start_timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                return Err(format!("mosquitto did not start listening on {addr}; its log:\n{log}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let fingerprint = hex::encode(Sha256::digest(&cert_der));
        Ok(Server { kind: Kind::Mosquitto, child, addr, fingerprint, dir, log, client: Arc::default() })
    }

    /// The relay's process: the child, or the child's own child when a
    /// wrapper such as strace runs it as a subprocess (valgrind does not).
    pub fn pid(&self) -> u32 {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(pid)
    }

    pub fn rss_kib(&self) -> u64 {
        procfs::status_kib(self.pid(), "VmRSS").unwrap_or(0)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        procfs::status_kib(self.pid(), "VmHWM").unwrap_or(0)
    }

    pub fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status()?;
        if !status.success() {
            return Err(format!("kill -{name} {} failed", self.pid()).into());
        }
        Ok(())
    }

    /// Bytes the relay keeps on disk for its messages, and the part of them
    /// outside a write-ahead log: qpc's database and its WAL (the WAL stays
    /// at its high-water mark between checkpoints); Mosquitto's persistence
    /// file, written out first (SIGUSR1) since Mosquitto otherwise saves
    /// only every autosave_interval.
    pub fn disk_bytes(&self) -> Result<DiskUse> {
        let size = |name: &str| std::fs::metadata(self.dir.path().join(name)).map(|m| m.len()).unwrap_or(0);
        match self.kind {
            Kind::Qpc => {
                let db = size("qpc.db");
                Ok(DiskUse { total: db + size("qpc.db-wal"), without_wal: db })
            }
            Kind::Mosquitto => {
                use std::os::unix::fs::MetadataExt;
                let db = self.dir.path().join("mosquitto.db");
                let version = || std::fs::metadata(&db).ok().map(|m| (m.ino(), m.mtime_nsec(), m.len()));
                let before = version();
                self.signal("USR1")?;
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    std::thread::sleep(Duration::from_millis(20));
                    let now = version();
                    let writing = self.dir.path().join("mosquitto.db.new").exists();
                    if now.is_some() && now != before && !writing {
                        let bytes = size("mosquitto.db");
                        return Ok(DiskUse { total: bytes, without_wal: bytes });
                    }
                    if Instant::now() > deadline {
                        return Err("mosquitto did not write its persistence file after SIGUSR1".into());
                    }
                }
            }
        }
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after `grace`).
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        self.signal("TERM")?;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(format!(
                        "{} exited with {status}; its log:\n{}",
                        self.kind.name(),
                        self.log()
                    )
                    .into());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "{} did not stop within {} s of SIGTERM",
                    self.kind.name(),
                    grace.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pem;

    #[test]
    fn pem_base64_pads() {
        assert_eq!(pem("X", b"ab"), "-----BEGIN X-----\nYWI=\n-----END X-----\n");
        assert_eq!(pem("X", b"abc"), "-----BEGIN X-----\nYWJj\n-----END X-----\n");
        assert_eq!(pem("X", b"a"), "-----BEGIN X-----\nYQ==\n-----END X-----\n");
    }
}

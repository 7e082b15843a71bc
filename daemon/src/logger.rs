//! Where log lines go: stderr (`LEVEL target: message`) on any host, or the
//! system log (facility daemon, tag `qpc-server[pid]`) with `--syslog`, which
//! the OpenWrt init script passes so that `logread` shows the relay. Also
//! remembers the last error-level line, which the status reports.
//!
//! The `syslog` crate finds and connects the local socket (/dev/log, as a
//! datagram or stream socket); the line is written here without a
//! timestamp, which the system logger adds (RFC 3164 allows it, and it keeps
//! the time-formatting code off the router).

use std::io::Write;
use std::path::PathBuf;
// No AtomicU64 on 32-bit MIPS routers; a usize counts errors well enough.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// Longest error message kept for the status.
const MAX_LAST_ERROR: usize = 400;
/// LOG_DAEMON, as in <syslog.h>.
const FACILITY_DAEMON: u8 = 3 << 3;

type Syslog = syslog::Logger<syslog::LoggerBackend, ()>;

enum Sink {
    Stderr,
    Syslog { socket: Mutex<Option<Syslog>>, path: Option<PathBuf> },
}

struct Logger {
    sink: Sink,
    pid: u32,
}

/// The last error-level line and when it was logged.
#[derive(Debug, Clone)]
pub struct LastError {
    pub at: SystemTime,
    pub message: String,
}

static LAST_ERROR: Mutex<Option<LastError>> = Mutex::new(None);
static ERRORS: AtomicUsize = AtomicUsize::new(0);

/// The last error logged since start, if any.
pub fn last_error() -> Option<LastError> {
    LAST_ERROR.lock().map(|e| e.clone()).unwrap_or_default()
}

/// Error-level lines logged since start.
pub fn errors() -> u64 {
    ERRORS.load(Ordering::Relaxed) as u64
}

fn remember_error(message: String) {
    let mut message = message;
    if message.len() > MAX_LAST_ERROR {
        let mut end = MAX_LAST_ERROR;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    ERRORS.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut last) = LAST_ERROR.lock() {
        *last = Some(LastError { at: SystemTime::now(), message });
    }
}

fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

fn connect(path: &Option<PathBuf>) -> Option<Syslog> {
    match path {
        Some(p) => syslog::unix_custom((), p).ok(),
        None => syslog::unix(()).ok(),
    }
}

impl Logger {
    /// Sends one line to syslog, reconnecting once if the system logger
    /// restarted; false if it cannot be reached.
    fn to_syslog(&self, socket: &Mutex<Option<Syslog>>, path: &Option<PathBuf>, line: &str) -> bool {
        let Ok(mut socket) = socket.lock() else { return false };
        for _ in 0..2 {
            if socket.is_none() {
                *socket = connect(path);
            }
            let Some(s) = socket.as_mut() else { return false };
            if s.backend.write_fmt(format_args!("{line}")).is_ok() {
                return true;
            }
            *socket = None;
        }
        false
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if record.level() == log::Level::Error {
            remember_error(record.args().to_string());
        }
        if !self.enabled(record.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Stderr => eprintln!("{:>5} {}: {}", record.level(), record.target(), record.args()),
            Sink::Syslog { socket, path } => {
                let line = format!(
                    "<{}>qpc-server[{}]: {}: {}",
                    FACILITY_DAEMON | severity(record.level()),
                    self.pid,
                    record.level().as_str().to_ascii_lowercase(),
                    record.args()
                );
                if !self.to_syslog(socket, path, &line) {
                    // procd keeps stderr too; losing the line would be worse.
                    eprintln!("{:>5} {}: {}", record.level(), record.target(), record.args());
                }
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. With `syslog`, lines go to the system log socket
/// (`QPC_SYSLOG_PATH` names another one, e.g. in tests); if none answers,
/// they stay on stderr, and the first line says why.
pub fn init(level: log::LevelFilter, syslog: bool) {
    let pid = std::process::id();
    let mut unreachable = None;
    let sink = if syslog {
        let path = crate::config::env_path("QPC_SYSLOG_PATH");
        match connect(&path) {
            Some(s) => Sink::Syslog { socket: Mutex::new(Some(s)), path },
            None => {
                unreachable = Some(path.map_or("/dev/log".into(), |p| p.display().to_string()));
                Sink::Stderr
            }
        }
    } else {
        Sink::Stderr
    };
    let logger = Box::new(Logger { sink, pid });
    // Error lines are recorded for the status whatever the level, so the
    // logger sees everything and filters in `log`.
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level.max(log::LevelFilter::Error));
    }
    if let Some(path) = unreachable {
        log::warn!("--syslog: no system logger answers at {path}; logging to stderr");
    }
}

//! The daemon's settings: command-line flags (argh), each with a `QPC_*`
//! environment equivalent used when the flag is absent, then a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use argh::FromArgs;

/// qpc-server: the qpc relay (MLS Authentication and Delivery Service over QUIC).
#[derive(FromArgs, Debug)]
pub struct Flags {
    /// address to listen on, repeatable (QPC_LISTEN, comma-separated; default [::]:7000, dual-stack)
    #[argh(option)]
    pub listen: Vec<String>,
    /// directory holding the database, certificate and key (QPC_DATA_DIR; default ./data)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// SQLCipher key of the database (QPC_DB_KEY); empty means an unencrypted database
    #[argh(option)]
    pub db_key: Option<String>,
    /// extra host name for the certificate, repeatable (QPC_HOSTNAME, comma-separated)
    #[argh(option)]
    pub hostname: Vec<String>,
    /// largest request payload in bytes (QPC_MAX_PAYLOAD; default 1048576)
    #[argh(option)]
    pub max_payload: Option<u32>,
    /// most KeyPackages kept per identity (QPC_MAX_KEY_PACKAGES; default 50)
    #[argh(option)]
    pub max_key_packages: Option<u32>,
    /// longest FetchWait in milliseconds (QPC_MAX_WAIT_MS; default 30000)
    #[argh(option)]
    pub max_wait_ms: Option<u32>,
    /// who may create accounts: open, token or closed (QPC_REGISTRATION; default open)
    #[argh(option)]
    pub registration: Option<Registration>,
    /// the token new accounts must present in token mode (QPC_REGISTRATION_TOKEN)
    #[argh(option)]
    pub registration_token: Option<String>,
    /// most messages queued per recipient (QPC_MAX_QUEUE_MESSAGES; default 1000)
    #[argh(option)]
    pub max_queue_messages: Option<u64>,
    /// most bytes queued per recipient (QPC_MAX_QUEUE_BYTES; default 8388608)
    #[argh(option)]
    pub max_queue_bytes: Option<u64>,
    /// most bytes queued on the whole relay (QPC_STORE_CAP_BYTES; default 33554432)
    #[argh(option)]
    pub store_cap_bytes: Option<u64>,
    /// seconds an undelivered message is kept (QPC_MESSAGE_TTL_SECS; default 1209600, 14 days; at most 31536000)
    #[argh(option)]
    pub message_ttl_secs: Option<u64>,
    /// directory holding the blob (file) chunks, e.g. on USB storage (QPC_BLOB_DIR; default DATA_DIR/blobs)
    #[argh(option)]
    pub blob_dir: Option<PathBuf>,
    /// largest blob (file) in bytes (QPC_BLOB_MAX_BYTES; default 16777216)
    #[argh(option)]
    pub blob_max_bytes: Option<u64>,
    /// most blob bytes per account (QPC_BLOB_ACCOUNT_BYTES; default 33554432)
    #[argh(option)]
    pub blob_account_bytes: Option<u64>,
    /// most blob bytes on the whole relay (QPC_BLOB_CAP_BYTES; default 67108864)
    #[argh(option)]
    pub blob_cap_bytes: Option<u64>,
    /// seconds a blob is kept at most (QPC_BLOB_LIFETIME_SECS; default 604800, 7 days)
    #[argh(option)]
    pub blob_lifetime_secs: Option<u64>,
    /// most concurrent connections (QPC_MAX_CONNECTIONS; default 256)
    #[argh(option)]
    pub max_connections: Option<u32>,
    /// most concurrent streams per connection (QPC_MAX_STREAMS; default 32)
    #[argh(option)]
    pub max_streams: Option<u32>,
    /// seconds a client has to complete the handshake (QPC_HANDSHAKE_TIMEOUT_SECS; default 10)
    #[argh(option)]
    pub handshake_timeout_secs: Option<u64>,
    /// seconds of silence before a connection is closed (QPC_IDLE_TIMEOUT_SECS; default 60)
    #[argh(option)]
    pub idle_timeout_secs: Option<u64>,
    /// requests per second allowed per connection (QPC_RATE_PER_CONNECTION; default 50)
    #[argh(option)]
    pub rate_per_connection: Option<u32>,
    /// requests per second allowed per source address (QPC_RATE_PER_ADDRESS; default 200)
    #[argh(option)]
    pub rate_per_address: Option<u32>,
    /// failed logins per account or address before backing off (QPC_MAX_LOGIN_FAILURES; default 5)
    #[argh(option)]
    pub max_login_failures: Option<u32>,
    /// log level: error, warn, info, debug, trace (QPC_LOG_LEVEL; default info)
    #[argh(option)]
    pub log_level: Option<String>,
    /// log to syslog instead of stderr (QPC_SYSLOG=1; the OpenWrt init script sets it)
    #[argh(switch)]
    pub syslog: bool,
    /// admin socket (QPC_SOCKET; default /var/run/qpc/qpc.sock when that directory is writable, else DATA_DIR/admin.sock)
    #[argh(option)]
    pub socket: Option<PathBuf>,
    /// rewrite this file with the Prometheus metrics, atomically (QPC_METRICS_FILE; default none)
    #[argh(option)]
    pub metrics_file: Option<PathBuf>,
    /// seconds between rewrites of the metrics file (QPC_METRICS_INTERVAL_SECS; default 15)
    #[argh(option)]
    pub metrics_interval_secs: Option<u64>,
    /// a peer relay, qpc://HOST:PORT#FINGERPRINT, repeatable (QPC_PEERS, comma-separated; UCI list peer)
    #[argh(option)]
    pub peer: Vec<String>,
    #[argh(subcommand)]
    pub command: Option<crate::ctl::Command>,
}

/// Who may create accounts (and so use the relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may register, and any identity may prove itself.
    Open,
    /// Registering needs the relay's token or a one-time invite token.
    Token,
    /// No new accounts.
    Closed,
}

impl FromStr for Registration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Registration::Open),
            "token" => Ok(Registration::Token),
            "closed" => Ok(Registration::Closed),
            other => Err(format!("unknown registration mode {other:?}: expected open, token or closed")),
        }
    }
}

impl Registration {
    pub fn name(self) -> &'static str {
        match self {
            Registration::Open => "open",
            Registration::Token => "token",
            Registration::Closed => "closed",
        }
    }
}

/// Why the settings cannot be used; names the flag and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: cannot parse {value:?}: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub db_key: String,
    pub hostnames: Vec<String>,
    pub registration: Registration,
    pub registration_token: String,
    pub limits: Limits,
    pub log_level: log::LevelFilter,
    pub syslog: bool,
    /// The admin socket asked for; `None` picks the default (see `admin`).
    pub socket: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    pub metrics_interval_secs: u64,
    /// Where blob files live (see `cmd::blob`).
    pub blob_dir: PathBuf,
    /// Peer relays from the configuration (see `fed`).
    pub peers: Vec<crate::fed::address::PeerUrl>,
}

/// Bounds that protect the router's memory and flash.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload: u32,
    pub max_key_packages: u32,
    pub max_wait_ms: u32,
    pub max_queue_messages: u64,
    pub max_queue_bytes: u64,
    pub store_cap_bytes: u64,
    pub message_ttl_secs: u64,
    pub max_connections: u32,
    pub max_streams: u32,
    pub handshake_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub rate_per_connection: u32,
    pub rate_per_address: u32,
    pub max_login_failures: u32,
    pub blob_max_bytes: u64,
    pub blob_account_bytes: u64,
    pub blob_cap_bytes: u64,
    pub blob_lifetime_secs: u64,
}

/// The limits a relay has when nothing sets them: the values the OpenWrt
/// package ships in uci/qpc (a test holds the two to one list), so a limit
/// removed from /etc/config/qpc means what the file and LuCI showed.
pub mod defaults {
    pub const MAX_QUEUE_MESSAGES: u64 = 1_000;
    pub const MAX_QUEUE_BYTES: u64 = 8 << 20;
    pub const STORE_CAP_BYTES: u64 = 32 << 20;
    pub const MESSAGE_TTL_SECS: u64 = 14 * 86_400;
    pub const PORT: u16 = 7000;
}

/// Longest --message-ttl-secs: a year; longer keeps flash full of messages
/// nobody fetches.
const MAX_MESSAGE_TTL_SECS: u64 = 365 * 86_400;

/// Largest --max-payload accepted: more would let a few streams claim a
/// router's memory.
const MAX_PAYLOAD_CAP: u32 = 16 << 20;

fn at_most<T: PartialOrd + std::fmt::Display>(
    name: &'static str,
    value: T,
    cap: T,
) -> Result<T, ConfigError> {
    if value > cap {
        return Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: format!("must be at most {cap}"),
        });
    }
    Ok(value)
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

/// A path from the environment; unset and empty are both "none".
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The flag's value, else the environment variable's, else `default`.
fn pick<T: FromStr>(flag: Option<T>, env: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    if let Some(v) = flag {
        return Ok(v);
    }
    match std::env::var(env) {
        Ok(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: env,
            value: v,
            reason: e.to_string(),
        }),
        Err(_) => Ok(default),
    }
}

fn parse_addr(name: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { name, value: s.to_string(), reason };
    let with_zone = with_zone_index(s).map_err(invalid)?;
    with_zone.parse().map_err(|e: std::net::AddrParseError| {
        invalid(format!("{e} (expected IP:PORT, e.g. [::]:7000, 127.0.0.1:7000 or [fe80::1%br-lan]:7000)"))
    })
}

/// `[fe80::1%br-lan]:7000` as the standard library reads it,
/// `[fe80::1%5]:7000`: an interface name in the zone becomes its index.
fn with_zone_index(s: &str) -> Result<String, String> {
    let Some((head, rest)) = s.split_once('%') else { return Ok(s.to_string()) };
    let Some((zone, tail)) = rest.split_once(']') else { return Ok(s.to_string()) };
    if zone.is_empty() || zone.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(s.to_string());
    }
    if !zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b)) {
        return Err(format!("{zone:?} is not an interface name"));
    }
    let index_file = Path::new("/sys/class/net").join(zone).join("ifindex");
    let index = std::fs::read_to_string(&index_file)
        .map_err(|e| format!("no network interface {zone:?} ({}: {e})", index_file.display()))?;
    Ok(format!("{head}%{}]{tail}", index.trim()))
}

impl Config {
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        let (listen_src, listen_name) = if !flags.listen.is_empty() {
            (flags.listen, "--listen")
        } else {
            let env = env_list("QPC_LISTEN");
            if env.is_empty() {
                (vec![format!("[::]:{}", defaults::PORT)], "--listen")
            } else {
                (env, "QPC_LISTEN")
            }
        };
        let listen = listen_src.iter().map(|s| parse_addr(listen_name, s)).collect::<Result<_, _>>()?;
        let mut hostnames = flags.hostname;
        hostnames.extend(env_list("QPC_HOSTNAME"));
        let level: String = pick(flags.log_level, "QPC_LOG_LEVEL", "info".to_string())?;
        let log_level = level.parse().map_err(|_| ConfigError::Invalid {
            name: "--log-level",
            value: level.clone(),
            reason: "expected one of error, warn, info, debug, trace".into(),
        })?;
        let registration = pick(flags.registration, "QPC_REGISTRATION", Registration::Open)?;
        let registration_token = pick(flags.registration_token, "QPC_REGISTRATION_TOKEN", String::new())?;
        let db_key = pick(flags.db_key, "QPC_DB_KEY", String::new())?;
        let positive = |name: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid { name, value: "0".into(), reason: "must be at least 1".into() })
            } else {
                Ok(v)
            }
        };
        let limits = Limits {
            max_payload: at_most(
                "--max-payload",
                pick(flags.max_payload, "QPC_MAX_PAYLOAD", qpc_proto::DEFAULT_MAX_PAYLOAD)?,
                MAX_PAYLOAD_CAP,
            )?,
            max_key_packages: pick(flags.max_key_packages, "QPC_MAX_KEY_PACKAGES", 50)?,
            max_wait_ms: pick(flags.max_wait_ms, "QPC_MAX_WAIT_MS", 30_000)?,
            max_queue_messages: pick(
                flags.max_queue_messages,
                "QPC_MAX_QUEUE_MESSAGES",
                defaults::MAX_QUEUE_MESSAGES,
            )?,
            max_queue_bytes: pick(flags.max_queue_bytes, "QPC_MAX_QUEUE_BYTES", defaults::MAX_QUEUE_BYTES)?,
            store_cap_bytes: pick(flags.store_cap_bytes, "QPC_STORE_CAP_BYTES", defaults::STORE_CAP_BYTES)?,
            message_ttl_secs: at_most(
                "--message-ttl-secs",
                positive(
                    "--message-ttl-secs",
                    pick(flags.message_ttl_secs, "QPC_MESSAGE_TTL_SECS", defaults::MESSAGE_TTL_SECS)?,
                )?,
                MAX_MESSAGE_TTL_SECS,
            )?,
            max_connections: pick(flags.max_connections, "QPC_MAX_CONNECTIONS", 256)?,
            max_streams: positive("--max-streams", pick(flags.max_streams, "QPC_MAX_STREAMS", 32)?.into())?
                as u32,
            handshake_timeout_secs: positive(
                "--handshake-timeout-secs",
                pick(flags.handshake_timeout_secs, "QPC_HANDSHAKE_TIMEOUT_SECS", 10)?,
            )?,
            idle_timeout_secs: positive(
                "--idle-timeout-secs",
                pick(flags.idle_timeout_secs, "QPC_IDLE_TIMEOUT_SECS", 60)?,
            )?,
            rate_per_connection: positive(
                "--rate-per-connection",
                pick(flags.rate_per_connection, "QPC_RATE_PER_CONNECTION", 50)?.into(),
            )? as u32,
            rate_per_address: positive(
                "--rate-per-address",
                pick(flags.rate_per_address, "QPC_RATE_PER_ADDRESS", 200)?.into(),
            )? as u32,
            max_login_failures: pick(flags.max_login_failures, "QPC_MAX_LOGIN_FAILURES", 5)?,
            blob_max_bytes: pick(flags.blob_max_bytes, "QPC_BLOB_MAX_BYTES", 16 << 20)?,
            blob_account_bytes: pick(flags.blob_account_bytes, "QPC_BLOB_ACCOUNT_BYTES", 32 << 20)?,
            blob_cap_bytes: pick(flags.blob_cap_bytes, "QPC_BLOB_CAP_BYTES", 64 << 20)?,
            blob_lifetime_secs: positive(
                "--blob-lifetime-secs",
                pick(flags.blob_lifetime_secs, "QPC_BLOB_LIFETIME_SECS", 7 * 86_400)?,
            )?,
        };
        if std::env::var("QPC_PRODUCTION").is_ok_and(|v| v == "1") {
            if db_key.is_empty() {
                return Err(ConfigError::Refused(
                    "QPC_PRODUCTION=1 refuses an unencrypted database: set --db-key or QPC_DB_KEY".into(),
                ));
            }
            if registration == Registration::Open {
                return Err(ConfigError::Refused(
                    "QPC_PRODUCTION=1 refuses open registration: use --registration token or closed".into(),
                ));
            }
        }
        let syslog = flags.syslog || std::env::var("QPC_SYSLOG").is_ok_and(|v| v == "1");
        let socket = flags.socket.or_else(|| env_path("QPC_SOCKET"));
        let metrics_file = flags.metrics_file.or_else(|| env_path("QPC_METRICS_FILE"));
        let metrics_interval_secs = positive(
            "--metrics-interval-secs",
            pick(flags.metrics_interval_secs, "QPC_METRICS_INTERVAL_SECS", 15)?,
        )?;
        let data_dir = pick(flags.data_dir, "QPC_DATA_DIR", PathBuf::from("./data"))?;
        let blob_dir =
            flags.blob_dir.or_else(|| env_path("QPC_BLOB_DIR")).unwrap_or_else(|| data_dir.join("blobs"));
        let (peer_src, peer_name) =
            if flags.peer.is_empty() { (env_list("QPC_PEERS"), "QPC_PEERS") } else { (flags.peer, "--peer") };
        let peers = peer_src
            .iter()
            .map(|s| {
                s.parse().map_err(|reason| ConfigError::Invalid { name: peer_name, value: s.clone(), reason })
            })
            .collect::<Result<_, _>>()?;
        Ok(Config {
            peers,
            blob_dir,
            syslog,
            socket,
            metrics_file,
            metrics_interval_secs,
            registration,
            registration_token,
            listen,
            data_dir,
            db_key,
            hostnames,
            limits,
            log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `option NAME 'VALUE'` of the shipped /etc/config/qpc.
    fn shipped(name: &str) -> u64 {
        let uci = include_str!("../../uci/qpc");
        let line = uci
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("option {name} ")))
            .unwrap_or_else(|| panic!("uci/qpc has no option {name}"));
        line.split('\'').nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    }

    #[test]
    fn defaults_are_the_shipped_uci_values() {
        assert_eq!(defaults::MAX_QUEUE_MESSAGES, shipped("max_queue_messages"));
        assert_eq!(defaults::MAX_QUEUE_BYTES, shipped("max_queue_bytes"));
        assert_eq!(defaults::STORE_CAP_BYTES, shipped("store_cap_bytes"));
        assert_eq!(defaults::MESSAGE_TTL_SECS, shipped("message_ttl_secs"));
        assert_eq!(u64::from(defaults::PORT), shipped("port"));
    }

    #[test]
    fn listen_zones_by_name_and_number() {
        assert_eq!(parse_addr("--listen", "[fe80::1%1]:7000").unwrap().to_string(), "[fe80::1%1]:7000");
        let lo = parse_addr("--listen", "[fe80::1%lo]:7000").unwrap();
        assert!(matches!(lo, SocketAddr::V6(a) if a.scope_id() >= 1), "{lo}");
        let e = parse_addr("--listen", "[fe80::1%no-such-if0]:7000").unwrap_err().to_string();
        assert!(e.contains("no network interface \"no-such-if0\""), "{e}");
        assert!(parse_addr("--listen", "garbage").is_err());
    }
}

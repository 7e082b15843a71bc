//! The daemon's settings: command-line flags (argh), each with a `QPC_*`
//! environment equivalent used when the flag is absent, then a default.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// log level: error, warn, info, debug, trace (QPC_LOG_LEVEL; default info)
    #[argh(option)]
    pub log_level: Option<String>,
}

/// Why the settings cannot be used; names the flag and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: cannot parse {value:?}: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub db_key: String,
    pub hostnames: Vec<String>,
    pub limits: Limits,
    pub log_level: log::LevelFilter,
}

/// Bounds that protect the router's memory and flash.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload: u32,
    pub max_key_packages: u32,
    pub max_wait_ms: u32,
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default()
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
    s.parse().map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
        name,
        value: s.to_string(),
        reason: format!("{e} (expected IP:PORT, e.g. [::]:7000 or 127.0.0.1:7000)"),
    })
}

impl Config {
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        let (listen_src, listen_name) = if !flags.listen.is_empty() {
            (flags.listen, "--listen")
        } else {
            let env = env_list("QPC_LISTEN");
            if env.is_empty() {
                (vec!["[::]:7000".to_string()], "--listen")
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
        Ok(Config {
            listen,
            data_dir: pick(flags.data_dir, "QPC_DATA_DIR", PathBuf::from("./data"))?,
            db_key: pick(flags.db_key, "QPC_DB_KEY", String::new())?,
            hostnames,
            limits: Limits {
                max_payload: pick(flags.max_payload, "QPC_MAX_PAYLOAD", qpc_proto::DEFAULT_MAX_PAYLOAD)?,
                max_key_packages: pick(flags.max_key_packages, "QPC_MAX_KEY_PACKAGES", 50)?,
                max_wait_ms: pick(flags.max_wait_ms, "QPC_MAX_WAIT_MS", 30_000)?,
            },
            log_level,
        })
    }
}

//! qpc-server: the qpc relay daemon.
// deny, not forbid: SQLCipher's crypto (store/crypto.rs) is C calling Rust,
// the one module allowed unsafe code.
#![deny(unsafe_code)]

mod admin;
mod cmd;
mod config;
mod ctl;
mod data_dir;
mod fed;
mod hub;
mod limits;
mod logger;
mod refusal;
mod restore;
mod server;
mod status;
mod store;
mod tls;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut flags: config::Flags = argh::from_env();
    if let Some(command) = flags.command.take() {
        return ctl::run(command, flags.data_dir.take(), flags.socket.take(), flags.db_key.take());
    }
    let config = match config::Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qpc-server: {e}");
            return ExitCode::from(2);
        }
    };
    logger::init(config.log_level, config.syslog);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

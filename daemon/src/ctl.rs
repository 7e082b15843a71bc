//! `qpc-server status | users | user-delete | invite-token | reports |
//! report-dismiss | ban | unban | log-head | backup | peer`: the
//! other end of the admin socket (see `admin`). Finds the socket of the
//! relay started with the same `--data-dir` (or `--socket`), sends one
//! request line and prints the answer. `restore` needs no relay: it refuses
//! to run while one answers, and writes the data directory itself.
//! Exit status: 0 done, 1 refused or failed, 2 usage, 3 no relay answers.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::admin::{DATA_DIR_SOCKET, RUN_DIR, RUN_SOCKET};
use crate::config::env_path;

/// Longest the relay may take to answer (a deletion waits for its commit).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_ANSWER: u64 = 16 << 20;

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Status(Status),
    Users(Users),
    UserDelete(UserDelete),
    InviteToken(InviteToken),
    Reports(Reports),
    ReportDismiss(ReportDismiss),
    Ban(Ban),
    Unban(Unban),
    LogHead(LogHead),
    Backup(Backup),
    Restore(Restore),
    Peer(Peer),
}

/// manage the peer relays this relay delivers to: add, list, remove
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "peer")]
pub struct Peer {
    /// add URL (qpc://HOST:PORT#FINGERPRINT), list, or remove FINGERPRINT|HOST:PORT
    #[argh(positional)]
    action: String,
    /// the URL (add) or the peer (remove)
    #[argh(positional)]
    what: Option<String>,
    /// print JSON (list)
    #[argh(switch)]
    json: bool,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// write a consistent copy of the running relay (store, certificate, key) to FILE
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "backup")]
pub struct Backup {
    /// the backup file to write (mode 0600: it holds the certificate's key)
    #[argh(positional)]
    file: PathBuf,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// restore a backup into a stopped relay's data directory (the store key in QPC_DB_KEY)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restore")]
pub struct Restore {
    /// the backup file (from qpc-server backup)
    #[argh(positional)]
    file: PathBuf,
    /// data directory to restore into (QPC_DATA_DIR; default ./data)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// move a store already there into DATA_DIR/before-restore-TIME/ first
    #[argh(switch)]
    replace: bool,
}

/// show the running relay's figures (for a person, --json or --prometheus)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct Status {
    /// print one JSON object (for scripts and LuCI)
    #[argh(switch)]
    json: bool,
    /// print Prometheus text exposition
    #[argh(switch)]
    prometheus: bool,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// list the accounts: device keys and queued messages
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "users")]
pub struct Users {
    /// print a JSON array (for scripts and LuCI)
    #[argh(switch)]
    json: bool,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// delete an account with its device keys, KeyPackages and queued messages
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "user-delete")]
pub struct UserDelete {
    /// the username
    #[argh(positional)]
    name: String,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// mint a one-time registration token (for --registration token) and print it
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "invite-token")]
pub struct InviteToken {
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// list the users' reports and the banned accounts (--json for scripts and LuCI)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "reports")]
pub struct Reports {
    /// print one JSON object {"reports": [...], "banned": [...]}
    #[argh(switch)]
    json: bool,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// print the key transparency log's signed tree head (size, root, time, signature, log key)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "log-head")]
pub struct LogHead {
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// delete a report (by its ID, as `qpc-server reports` lists it)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "report-dismiss")]
pub struct ReportDismiss {
    /// the report's ID
    #[argh(positional)]
    id: String,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// ban an account: it can no longer log in or send; its queues are kept
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ban")]
pub struct Ban {
    /// the username
    #[argh(positional)]
    name: String,
    /// why, shown to the banned account's devices (at most 500 bytes)
    #[argh(option)]
    reason: Option<String>,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// lift the ban of an account
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "unban")]
pub struct Unban {
    /// the username
    #[argh(positional)]
    name: String,
    /// data directory of the relay (QPC_DATA_DIR; finds DATA_DIR/admin.sock)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// admin socket of the relay (QPC_SOCKET)
    #[argh(option)]
    socket: Option<PathBuf>,
}

/// Refuses a username argument that would not fit on the request line.
fn one_word(command: &str, name: &str) -> Result<(), ExitCode> {
    if name.is_empty() || name.contains(['\n', '\r', ' ']) {
        eprintln!("qpc-server {command}: invalid argument {name:?} (one word expected)");
        return Err(ExitCode::from(2));
    }
    Ok(())
}

/// The admin socket to use: flags first (the subcommand's, then the
/// relay's), then QPC_SOCKET / QPC_DATA_DIR, then the run directory, then
/// the default data directory.
pub fn socket_path(
    socket: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    top_socket: Option<PathBuf>,
    top_data_dir: Option<PathBuf>,
) -> PathBuf {
    if let Some(s) = socket.or(top_socket) {
        return s;
    }
    if let Some(d) = data_dir.or(top_data_dir) {
        return d.join(DATA_DIR_SOCKET);
    }
    if let Some(s) = env_path("QPC_SOCKET") {
        return s;
    }
    if let Some(d) = env_path("QPC_DATA_DIR") {
        return d.join(DATA_DIR_SOCKET);
    }
    let run = Path::new(RUN_DIR).join(RUN_SOCKET);
    if run.exists() {
        return run;
    }
    Path::new("./data").join(DATA_DIR_SOCKET)
}

/// Prints the note or the error of a command; its exit status.
fn finish(result: Result<impl Into<Option<String>>, CtlError>) -> ExitCode {
    match result {
        Ok(note) => {
            if let Some(note) = note.into() {
                eprintln!("qpc-server: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(CtlError::Refused(message)) => {
            eprintln!("qpc-server: {message}");
            ExitCode::FAILURE
        }
        Err(CtlError::NotRunning(message)) => {
            eprintln!("qpc-server: {message}");
            ExitCode::from(3)
        }
    }
}

/// Why the relay could not be asked.
#[derive(Debug)]
pub enum CtlError {
    /// No relay answers (exit 3).
    NotRunning(String),
    /// The relay refused or failed (exit 1).
    Refused(String),
}

/// Connects to the admin socket at `path`, saying why not.
pub fn connect(path: &Path) -> Result<std::os::unix::net::UnixStream, CtlError> {
    use std::io::ErrorKind;
    let shown = path.display();
    std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => CtlError::NotRunning(format!(
            "no relay is running there: {shown} does not exist (pass the --data-dir or --socket qpc-server runs with)"
        )),
        ErrorKind::ConnectionRefused => CtlError::NotRunning(format!(
            "no relay answers on {shown} (left over from a relay that stopped)"
        )),
        ErrorKind::PermissionDenied => CtlError::Refused(format!(
            "permission denied on {shown}: only root and the relay's own user may use the admin socket"
        )),
        _ => CtlError::NotRunning(format!("cannot reach the relay at {shown}: {e}")),
    })
}

fn ask(path: &Path, request: &str) -> Result<(Option<String>, String), CtlError> {
    let shown = path.display();
    let mut stream = connect(path)?;
    let lost = |e: std::io::Error| CtlError::NotRunning(format!("the relay at {shown} did not answer: {e}"));
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(lost)?;
    // The relay may refuse (wrong uid) before reading: a failed write is
    // not the end, its answer is.
    let _ = stream.write_all(format!("{request}\n").as_bytes());
    let mut bytes = Vec::new();
    if let Err(e) = stream.take(MAX_ANSWER).read_to_end(&mut bytes) {
        // A reset after the answer (the relay closed on unread bytes) still
        // leaves the answer.
        if bytes.is_empty() {
            return Err(lost(e));
        }
    }
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    let (status, body) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    match status.split_once(' ').unwrap_or((status, "")) {
        ("ok", note) => Ok(((!note.is_empty()).then(|| note.to_string()), body.to_string())),
        ("error", message) => Err(CtlError::Refused(message.to_string())),
        _ if answer.is_empty() => {
            Err(CtlError::NotRunning(format!("the relay at {shown} closed without answering")))
        }
        _ => Err(CtlError::Refused(format!("unexpected answer from {shown}: {status:?}"))),
    }
}

/// Runs a subcommand against the running relay; `top_*` are the relay
/// flags given before it (`qpc-server --data-dir D status`).
pub fn run(
    command: Command,
    top_data_dir: Option<PathBuf>,
    top_socket: Option<PathBuf>,
    top_db_key: Option<String>,
) -> ExitCode {
    let (request, socket, data_dir) = match command {
        Command::Backup(b) => {
            let path = socket_path(b.socket, b.data_dir, top_socket, top_data_dir);
            return finish(crate::restore::backup(&path, &b.file));
        }
        Command::Restore(r) => {
            let dir =
                r.data_dir.or(top_data_dir).or_else(|| env_path("QPC_DATA_DIR")).unwrap_or("./data".into());
            let key = top_db_key.or_else(|| std::env::var("QPC_DB_KEY").ok()).unwrap_or_default();
            return finish(crate::restore::restore(&r.file, &dir, &key, r.replace));
        }
        Command::Status(s) => {
            let format = match (s.json, s.prometheus) {
                (true, true) => {
                    eprintln!("qpc-server status: choose one of --json and --prometheus");
                    return ExitCode::from(2);
                }
                (true, false) => "json",
                (false, true) => "prometheus",
                (false, false) => "text",
            };
            (format!("status {format}"), s.socket, s.data_dir)
        }
        Command::Users(u) => {
            (if u.json { "users json" } else { "users text" }.to_string(), u.socket, u.data_dir)
        }
        Command::UserDelete(d) => {
            if let Err(code) = one_word("user-delete", &d.name) {
                return code;
            }
            (format!("user-delete {}", d.name), d.socket, d.data_dir)
        }
        Command::Reports(r) => {
            (if r.json { "reports json" } else { "reports text" }.to_string(), r.socket, r.data_dir)
        }
        Command::ReportDismiss(d) => {
            if let Err(code) = one_word("report-dismiss", &d.id) {
                return code;
            }
            (format!("report-dismiss {}", d.id), d.socket, d.data_dir)
        }
        Command::Ban(b) => {
            if let Err(code) = one_word("ban", &b.name) {
                return code;
            }
            let reason = b.reason.unwrap_or_default();
            if reason.contains(['\n', '\r']) {
                eprintln!("qpc-server ban: the reason must be one line");
                return ExitCode::from(2);
            }
            (format!("ban {} {reason}", b.name).trim_end().to_string(), b.socket, b.data_dir)
        }
        Command::Unban(u) => {
            if let Err(code) = one_word("unban", &u.name) {
                return code;
            }
            (format!("unban {}", u.name), u.socket, u.data_dir)
        }
        Command::InviteToken(t) => ("invite-token".to_string(), t.socket, t.data_dir),
        Command::LogHead(h) => ("log-head".to_string(), h.socket, h.data_dir),
        Command::Peer(p) => {
            let what = p.what.unwrap_or_default();
            let request = match p.action.as_str() {
                "add" | "remove" if what.is_empty() || what.contains(['\n', '\r', ' ']) => {
                    eprintln!(
                        "qpc-server peer {}: give {}",
                        p.action,
                        if p.action == "add" {
                            "the peer URL, qpc://HOST:PORT#FINGERPRINT"
                        } else {
                            "the peer's fingerprint or HOST:PORT"
                        }
                    );
                    return ExitCode::from(2);
                }
                "add" => format!("peer-add {what}"),
                "remove" => format!("peer-remove {what}"),
                "list" => format!("peer-list {}", if p.json { "json" } else { "text" }),
                other => {
                    eprintln!("qpc-server peer: unknown action {other:?}: expected add, list or remove");
                    return ExitCode::from(2);
                }
            };
            (request, p.socket, p.data_dir)
        }
    };
    let path = socket_path(socket, data_dir, top_socket, top_data_dir);
    finish(ask(&path, &request).map(|(note, body)| {
        print!("{body}");
        let _ = std::io::stdout().flush();
        note
    }))
}

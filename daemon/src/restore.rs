//! `qpc-server backup FILE` and `qpc-server restore FILE`, the side of
//! them that is not the relay: backup asks the running relay for its backup
//! (see `admin`) and writes it to FILE, then checks it whole; restore checks
//! a backup through (format, checksum, the store opening with the key)
//! before it writes anything, refuses while a relay runs on the data
//! directory, and writes each file under a temporary name first, so a
//! failure leaves the data directory as it was.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use crate::admin::DATA_DIR_SOCKET;
use crate::ctl::{connect, CtlError};
use crate::data_dir::STORE_FILE;
use crate::store::backup::{self, BackupError};

/// Longest a backup may take to arrive.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);

fn refused(e: impl std::fmt::Display) -> CtlError {
    CtlError::Refused(e.to_string())
}

/// Asks the relay at `socket` for a backup and writes it to `file`.
pub fn backup(socket: &Path, file: &Path) -> Result<String, CtlError> {
    let mut stream = connect(socket)?;
    let lost = |e: std::io::Error| {
        CtlError::NotRunning(format!("the relay at {} did not answer: {e}", socket.display()))
    };
    stream.set_read_timeout(Some(BACKUP_TIMEOUT)).map_err(lost)?;
    stream.write_all(b"backup\n").map_err(lost)?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(lost)?;
    match status.trim_end().split_once(' ').unwrap_or((status.trim_end(), "")) {
        ("ok", _) => {}
        ("error", message) => return Err(CtlError::Refused(message.to_string())),
        _ => {
            return Err(CtlError::NotRunning(format!(
                "the relay at {} closed without answering",
                socket.display()
            )))
        }
    }
    let write_err = |e: std::io::Error| refused(format!("{}: {e}", file.display()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(write_err)?;
    std::io::copy(&mut reader, &mut out).map_err(lost)?;
    out.sync_all().map_err(write_err)?;
    drop(out);
    let entries = backup::check(file).map_err(|e| match e {
        BackupError::Damaged { .. } => refused(format!("the relay's answer ended early: {e}")),
        other => refused(other),
    })?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let store = entries.iter().find(|e| e.name == STORE_FILE).map_or(0, |e| e.len);
    Ok(format!(
        "backup written to {} ({size} bytes: store of {store} bytes, certificate and key); restore it with qpc-server restore {}",
        file.display(),
        file.display()
    ))
}

/// Restores the backup `file` into `dir`, whose store must open with `key`.
pub fn restore(file: &Path, dir: &Path, key: &str, replace: bool) -> Result<String, CtlError> {
    let socket = dir.join(DATA_DIR_SOCKET);
    if connect(&socket).is_ok() {
        return Err(refused(format!(
            "a relay is running on {} (its admin socket answers): stop it first (/etc/init.d/qpc stop); nothing was restored",
            dir.display()
        )));
    }
    let entries = backup::check(file).map_err(refused)?;
    std::fs::create_dir_all(dir).map_err(|e| refused(format!("{}: {e}", dir.display())))?;
    let owner = std::fs::metadata(dir).map_err(|e| refused(format!("{}: {e}", dir.display())))?;
    let has_store = dir.join(STORE_FILE).exists();
    if has_store && !replace {
        return Err(refused(format!(
            "{} holds a store already: pass --replace to move it into {}/before-restore-TIME/ first; nothing was restored",
            dir.display(),
            dir.display()
        )));
    }

    // Each file under a temporary name, owned like the directory (a root
    // restore for the relay's user), checked, and only then renamed.
    let staged: Vec<(String, std::path::PathBuf)> =
        entries.iter().map(|e| (e.name.clone(), dir.join(format!("{}.restoring", e.name)))).collect();
    let result = (|| -> Result<u64, CtlError> {
        for (entry, (name, path)) in entries.iter().zip(&staged) {
            let _ = std::fs::remove_file(path);
            let mode = if name == "server-cert.der" { 0o644 } else { 0o600 };
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .map_err(|e| refused(format!("{}: {e}", path.display())))?;
            if chown_file(&out, owner.uid(), owner.gid()).is_err() {
                return Err(refused(format!("cannot give {} to the directory's owner", path.display())));
            }
            backup::extract(file, entry, &mut out).map_err(refused)?;
        }
        let staged_path = |name: &str| staged.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
        let store = staged_path(STORE_FILE).expect("checked entries");
        // A backup without the record: its store has SQLCipher 4's defaults.
        let record = staged_path(backup::OPTIONAL);
        backup::open_check(&store, record.as_deref(), key).map_err(refused)
    })();
    let accounts = match result {
        Ok(n) => n,
        Err(e) => {
            for (_, path) in &staged {
                let _ = std::fs::remove_file(path);
            }
            cleanup_journal(&staged);
            return Err(e);
        }
    };
    cleanup_journal(&staged);

    let mut note = String::new();
    if has_store {
        let secs =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let aside = dir.join(format!("before-restore-{secs}"));
        std::fs::create_dir(&aside).map_err(|e| refused(format!("{}: {e}", aside.display())))?;
        let _ = std::os::unix::fs::chown(&aside, Some(owner.uid()), Some(owner.gid()));
        for name in
            [STORE_FILE, "qpc.db-wal", "qpc.db-shm", "server-cert.der", "server-key.der", backup::OPTIONAL]
        {
            let from = dir.join(name);
            if from.exists() {
                std::fs::rename(&from, aside.join(name))
                    .map_err(|e| refused(format!("{}: {e}", from.display())))?;
            }
        }
        note = format!("; the store that was there is in {}", aside.display());
    }
    for (name, path) in &staged {
        std::fs::rename(path, dir.join(name)).map_err(|e| refused(format!("{}: {e}", path.display())))?;
    }
    let cert = std::fs::read(dir.join("server-cert.der")).unwrap_or_default();
    Ok(format!(
        "restored {} into {}: {accounts} accounts, certificate fingerprint {}{note}",
        file.display(),
        dir.display(),
        crate::tls::fingerprint(&cert)
    ))
}

/// Removes what opening the staged store may have left beside it.
fn cleanup_journal(staged: &[(String, std::path::PathBuf)]) {
    for (_, path) in staged {
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

/// fchown of a file this process just created (never a path, which a link
/// could redirect).
fn chown_file(file: &std::fs::File, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::fchown(file, Some(uid), Some(gid))
}

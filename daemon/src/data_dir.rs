//! The data directory is the relay's store or nothing: the relay makes a
//! new store only in a directory that is missing or empty, never over
//! files it did not make. So a relay started before its USB disk is
//! mounted, or pointed at the wrong directory, refuses with a message
//! instead of starting afresh with an empty store (and every client's
//! pinned certificate broken).

use std::path::Path;

use crate::admin::DATA_DIR_SOCKET;

/// The store's database in the data directory.
pub const STORE_FILE: &str = "qpc.db";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "data directory {path} holds {found} but no store ({STORE_FILE}): not making a new store over it. \
         An empty or missing directory gets a new store; if the store should be there, check that its disk \
         is mounted, or restore a backup (qpc-server restore FILE --data-dir {path})"
    )]
    NotAStore { path: String, found: String },
}

/// Makes `dir` if it is missing; refuses one that holds files but no store.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io { path: dir.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    if dir.join(STORE_FILE).exists() {
        return Ok(());
    }
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Left by a relay that stopped before it made its store.
        .filter(|name| name != DATA_DIR_SOCKET)
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    let shown = if found.len() > 3 {
        format!("{} and {} more", found[..3].join(", "), found.len() - 3)
    } else {
        found.join(", ")
    };
    Err(DataDirError::NotAStore { path: dir.display().to_string(), found: shown })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qpc-data-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn missing_and_empty_directories_get_a_store() {
        let d = temp("missing");
        prepare(&d).unwrap();
        assert!(d.is_dir());
        std::fs::write(d.join(DATA_DIR_SOCKET), b"").unwrap();
        prepare(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_of_other_files_is_refused_and_named() {
        let d = temp("foreign");
        std::fs::create_dir_all(d.join("lost+found")).unwrap();
        std::fs::write(d.join("server-cert.der"), b"x").unwrap();
        let e = prepare(&d).unwrap_err().to_string();
        assert!(e.contains("holds lost+found, server-cert.der but no store (qpc.db)"), "{e}");
        std::fs::write(d.join(STORE_FILE), b"").unwrap();
        prepare(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}

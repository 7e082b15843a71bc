//! The store's SQLCipher settings, and opening the store with its key.
//!
//! SQLCipher keeps none of its settings in the file (the first 16 bytes are
//! the salt, every page is encrypted), so a store opens only with the page
//! size and HMAC it was made with. They are recorded beside it, in
//! [`RECORD_FILE`], which backups carry and sysupgrade keeps with the rest
//! of the data directory.
//!
//! A new store gets 2 KiB pages authenticated with HMAC-SHA256
//! ([`Settings::NEW`]): on a router's 32-bit CPU the page crypto is most of
//! what the relay does per message (AES-256-CBC and SHA-512 in software,
//! 86% of the instructions per stored message on a MIPS 24Kc), and a commit
//! of a few small messages writes about as many pages either way, so half
//! the page is half the crypto; SHA-256 is the cheaper hash on 32 bits
//! (SHA-512 works on 64-bit words), and its 32-byte tag leaves more of each
//! page for rows. docs/performance.md has the figures. A store made before
//! keeps SQLCipher 4's defaults (4 KiB pages, HMAC-SHA512): the record then
//! says so.
//!
//! A missing or unreadable record loses nothing: when the settings tried
//! first do not fit, the other known ones are tried before the key is
//! called wrong, and the record is written again.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// The record's name in the data directory, beside the store.
pub const RECORD_FILE: &str = "qpc.db-cipher";

/// The SQLCipher settings a store was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settings {
    /// SQLCipher 4's defaults: 4 KiB pages, HMAC-SHA512. Stores made before
    /// the settings were recorded.
    Sqlcipher4,
    /// 2 KiB pages, HMAC-SHA256.
    Small,
}

impl Settings {
    /// What a new store gets.
    pub const NEW: Settings = Settings::Small;
    const ALL: [Settings; 2] = [Settings::Small, Settings::Sqlcipher4];

    /// The pragmas that select these settings, set right after the key.
    fn pragmas(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Settings::Sqlcipher4 => &[],
            Settings::Small => &[("cipher_page_size", "2048"), ("cipher_hmac_algorithm", "HMAC_SHA256")],
        }
    }

    /// The record's text: a comment, then one `pragma = value` line each.
    fn record(self) -> String {
        let mut text = format!("# SQLCipher settings of {}", crate::data_dir::STORE_FILE);
        text.push_str(if self == Settings::Sqlcipher4 { " (SQLCipher 4's defaults)\n" } else { "\n" });
        for (name, value) in self.pragmas() {
            text.push_str(&format!("{name} = {value}\n"));
        }
        text
    }

    /// The settings a record names, or `None` for one that names none of them.
    fn parse(text: &str) -> Option<Settings> {
        let mut lines: Vec<(&str, &str)> = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (name, value) = line.split_once('=')?;
            lines.push((name.trim(), value.trim()));
        }
        Settings::ALL.into_iter().find(|s| s.pragmas() == lines.as_slice())
    }

    fn apply(self, conn: &Connection) -> rusqlite::Result<()> {
        for (name, value) in self.pragmas() {
            conn.pragma_update(None, name, value)?;
        }
        Ok(())
    }
}

/// Where the record of the store at `store` lies.
pub fn record_path(store: &Path) -> PathBuf {
    store.with_file_name(RECORD_FILE)
}

/// The settings recorded in `record`: `None` if there is no record, or one
/// that cannot be read (said in the log; opening then tries each).
pub fn recorded(record: &Path) -> Option<Settings> {
    match std::fs::read_to_string(record) {
        Ok(text) => {
            let found = Settings::parse(&text);
            if found.is_none() {
                log::warn!("{}: not a record of known SQLCipher settings; ignored", record.display());
            }
            found
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("{}: {e}; ignored", record.display());
            None
        }
    }
}

/// Writes the record, whole or not at all (a new file renamed over it).
fn write_record(record: &Path, settings: Settings) -> std::io::Result<()> {
    let part = record.with_extension("part");
    let mut f = std::fs::File::create(&part)?;
    f.write_all(settings.record().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&part, record)?;
    if let Some(dir) = record.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Why the store did not open.
#[derive(Debug)]
pub enum OpenError {
    /// No known settings make the first page fit the key.
    WrongKey,
    /// The file could not be opened, or the record not written.
    Sqlite(rusqlite::Error),
    Record(std::io::Error),
}

/// Opens the store at `path` with `key`: a new (missing or empty) file with
/// [`Settings::NEW`], an existing one with the settings in `record` first
/// (without one, SQLCipher 4's defaults) and then the other known ones.
/// With `keep_record`, a record that was missing or named other settings is
/// written (the relay's own store; a restore's check leaves the staged
/// files as they are). An empty key opens an unencrypted store, with no
/// settings and no record.
pub fn open(
    path: &Path,
    key: &str,
    record: Option<&Path>,
    keep_record: bool,
) -> Result<(Connection, Settings), OpenError> {
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let found = record.and_then(recorded);
    let first = if fresh { Settings::NEW } else { found.unwrap_or(Settings::Sqlcipher4) };
    if key.is_empty() {
        return Connection::open(path).map(|c| (c, first)).map_err(OpenError::Sqlite);
    }
    let order = std::iter::once(first).chain(Settings::ALL.into_iter().filter(|s| *s != first));
    for (i, settings) in order.enumerate() {
        if fresh && i > 0 {
            break;
        }
        let conn = Connection::open(path).map_err(OpenError::Sqlite)?;
        conn.pragma_update(None, "key", key).map_err(OpenError::Sqlite)?;
        settings.apply(&conn).map_err(OpenError::Sqlite)?;
        // The first read is where SQLCipher finds out whether the key fits.
        if conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).is_err() {
            continue;
        }
        if let (true, Some(record)) = (keep_record && found != Some(settings), record) {
            write_record(record, settings).map_err(OpenError::Record)?;
            if !fresh {
                log::warn!("{} was missing or named other settings: written again", record.display());
            }
        }
        return Ok((conn, settings));
    }
    Err(OpenError::WrongKey)
}

/// Gives `copy` (a new database, keyed) the settings of the open store
/// `conn`, so that SQLite's backup can copy pages between them.
pub fn copy_settings(conn: &Connection, copy: &Connection) -> rusqlite::Result<()> {
    for name in ["cipher_page_size", "cipher_hmac_algorithm"] {
        let value: String = conn.pragma_query_value(None, name, |r| r.get(0))?;
        copy.pragma_update(None, name, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qpc-cipher-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn page_size(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "cipher_page_size", |r| r.get::<_, String>(0)).unwrap().parse().unwrap()
    }

    #[test]
    fn records_read_back_and_garbage_names_nothing() {
        for s in Settings::ALL {
            assert_eq!(Settings::parse(&s.record()), Some(s), "{}", s.record());
        }
        assert_eq!(Settings::parse("cipher_page_size = 1024\n"), None);
        assert_eq!(Settings::parse("\u{0}\u{1}garbage"), None);
    }

    #[test]
    fn a_new_store_is_small_and_recorded_and_an_old_one_opens_without_a_record() {
        let d = dir("new");
        let (path, record) = (d.join("qpc.db"), d.join(RECORD_FILE));
        let (conn, s) = open(&path, "k", Some(&record), true).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        assert_eq!((s, page_size(&conn)), (Settings::Small, 2048));
        drop(conn);
        assert_eq!(recorded(&record), Some(Settings::Small));
        // The record gone or garbled: found again, and written again.
        let other = Settings::Sqlcipher4.record();
        for damage in [None, Some("garbage\n"), Some(other.as_str())] {
            match damage {
                None => std::fs::remove_file(&record).unwrap(),
                Some(text) => std::fs::write(&record, text).unwrap(),
            }
            let (conn, s) = open(&path, "k", Some(&record), true).unwrap();
            assert_eq!(s, Settings::Small);
            assert_eq!(conn.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0)).unwrap(), 1);
            assert_eq!(recorded(&record), Some(Settings::Small));
        }
        // A wrong key is still wrong, whatever the record says.
        assert!(matches!(open(&path, "other", Some(&record), true), Err(OpenError::WrongKey)));
        // A store made with SQLCipher 4's defaults (before the record) opens
        // and gets its record.
        let (old, old_record) = (d.join("old.db"), d.join("old.db-cipher"));
        let conn = Connection::open(&old).unwrap();
        conn.pragma_update(None, "key", "k").unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (2);").unwrap();
        drop(conn);
        let (conn, s) = open(&old, "k", Some(&old_record), true).unwrap();
        assert_eq!((s, page_size(&conn)), (Settings::Sqlcipher4, 4096));
        assert_eq!(recorded(&old_record), Some(Settings::Sqlcipher4));
        // Without keep_record nothing is written.
        std::fs::remove_file(&old_record).unwrap();
        open(&old, "k", Some(&old_record), false).unwrap();
        assert!(!old_record.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! Backups of the relay: a consistent online copy of the store through
//! SQLite's backup API (still encrypted with the store key, SQLCipher copies
//! pages between connections keyed alike), packed with the TLS certificate
//! and key into one file that `qpc-server restore` checks before it writes
//! anything.
//!
//! The file, sans-IO here (the admin socket streams it, `ctl` writes and
//! reads it):
//!
//! ```text
//! MAGIC
//! ( [name length: u16][name][content length: u64][content] )...   qpc.db, server-cert.der, server-key.der[, qpc.db-cipher]
//! [0: u16]
//! [SHA-256 of every byte before it: 32 bytes]
//! ```
//! Integers are big-endian. The checksum finds a truncated or damaged file;
//! opening the store with the key finds a backup of another relay's key.

use std::io::Read;
use std::path::Path;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// First bytes of a backup file.
pub const MAGIC: &[u8; 12] = b"qpc-backup1\n";
/// What a backup holds, in this order.
pub const ENTRIES: [&str; 3] = [crate::data_dir::STORE_FILE, "server-cert.der", "server-key.der"];
/// What a backup holds after [`ENTRIES`] when the data directory has it:
/// the store's SQLCipher settings (backups made before it existed lack it,
/// and their stores have SQLCipher 4's defaults).
pub const OPTIONAL: &str = super::cipher::RECORD_FILE;
/// The store's copy while a backup is made, in the data directory.
pub const COPY_FILE: &str = "backup-copy.db";
/// Pages copied per step; between steps the relay's own writes go on and
/// the copy follows them (the same connection writes, so SQLite updates the
/// copy instead of starting again).
const PAGES_PER_STEP: std::os::raw::c_int = 256;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot copy the store: {0}")]
    Copy(#[from] rusqlite::Error),
    #[error("{path} is not a qpc backup (it does not start with the backup header)")]
    NotABackup { path: String },
    #[error("{path} is truncated or damaged ({why}); nothing was restored")]
    Damaged { path: String, why: String },
    #[error(
        "the store in {path} does not open with this relay's key: the backup was made by a relay with another db_key \
         (set QPC_DB_KEY to that key); nothing was restored"
    )]
    OtherKey { path: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// Copies the store `conn` holds into a new database at `dest`, keyed with
/// `key` (the store's own key: an encrypted copy).
pub fn copy_store(conn: &Connection, dest: &Path, key: &str) -> Result<(), BackupError> {
    for leftover in [dest.to_path_buf(), dest.with_extension("db-journal")] {
        match std::fs::remove_file(&leftover) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&leftover)(e)),
            _ => {}
        }
    }
    let mut copy = Connection::open(dest)?;
    if !key.is_empty() {
        copy.pragma_update(None, "key", key)?;
        super::cipher::copy_settings(conn, &copy)?;
    }
    {
        let backup = rusqlite::backup::Backup::new(conn, &mut copy)?;
        backup.run_to_completion(PAGES_PER_STEP, std::time::Duration::ZERO, None)?;
    }
    // The copy's header says WAL, as the store's does: bring it back to
    // one self-contained file.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    copy.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// The header of one entry.
pub fn entry_header(name: &str, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + name.len() + 8);
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out
}

/// The end marker (a zero-length name) and the checksum of all before it.
pub fn trailer(hasher: Sha256) -> Vec<u8> {
    let mut hasher = hasher;
    hasher.update(0u16.to_be_bytes());
    let mut out = 0u16.to_be_bytes().to_vec();
    out.extend_from_slice(&hasher.finalize());
    out
}

/// The pieces of a backup file in order, hashed as they go: the header,
/// each entry's header and content (64 KiB at a time, so a large store
/// never sits in memory), the trailer. The store's content comes from
/// `store_copy`, the rest from `dir`.
pub struct Pieces {
    /// Each entry's name, open file and bytes still to read.
    files: std::collections::VecDeque<(&'static str, std::fs::File, u64)>,
    reading: Option<(std::fs::File, u64)>,
    hasher: Option<Sha256>,
    started: bool,
}

impl Pieces {
    /// Opens every file first, so that a missing one is an error before the
    /// first byte (and the store's copy may be removed once this returns).
    pub fn new(dir: &Path, store_copy: &Path) -> Result<Pieces, BackupError> {
        let mut files = std::collections::VecDeque::new();
        let optional = Some(OPTIONAL).filter(|name| dir.join(name).exists());
        for name in ENTRIES.into_iter().chain(optional) {
            let path =
                if name == crate::data_dir::STORE_FILE { store_copy.to_path_buf() } else { dir.join(name) };
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            let len = file.metadata().map_err(io_err(&path))?.len();
            files.push_back((name, file, len));
        }
        Ok(Pieces { files, reading: None, hasher: Some(Sha256::new()), started: false })
    }

    fn piece(&mut self) -> Result<Option<Vec<u8>>, BackupError> {
        if !self.started {
            self.started = true;
            return Ok(Some(MAGIC.to_vec()));
        }
        if let Some((file, left)) = &mut self.reading {
            if *left > 0 {
                let mut buf = vec![0u8; (*left).min(64 << 10) as usize];
                file.read_exact(&mut buf).map_err(io_err(Path::new("a file of the backup")))?;
                *left -= buf.len() as u64;
                return Ok(Some(buf));
            }
            self.reading = None;
        }
        if let Some((name, file, len)) = self.files.pop_front() {
            self.reading = Some((file, len));
            return Ok(Some(entry_header(name, len)));
        }
        Ok(self.hasher.take().map(trailer))
    }
}

impl Iterator for Pieces {
    type Item = Result<Vec<u8>, BackupError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.piece() {
            Ok(Some(piece)) => {
                // The trailer carries the checksum of what came before it.
                if let Some(h) = &mut self.hasher {
                    h.update(&piece);
                }
                Some(Ok(piece))
            }
            Ok(None) => None,
            Err(e) => {
                self.hasher = None;
                self.files.clear();
                self.reading = None;
                Some(Err(e))
            }
        }
    }
}

/// One entry of a checked backup: its name and where its content lies in
/// the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// Reads `path` through: the header, every entry and the checksum. Returns
/// the entries when the file is whole, else says what is wrong.
pub fn check(path: &Path) -> Result<Vec<Entry>, BackupError> {
    let shown = path.display().to_string();
    let damaged = |why: String| BackupError::Damaged { path: shown.clone(), why };
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io_err(path))?);
    let offset = std::cell::Cell::new(0u64);
    let file = std::cell::RefCell::new(file);
    let mut hasher = Sha256::new();
    let read = |buf: &mut [u8], hasher: &mut Sha256, what: &str| -> Result<(), BackupError> {
        file.borrow_mut().read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => damaged(format!("it ends inside {what}")),
            _ => io_err(path)(e),
        })?;
        hasher.update(&*buf);
        offset.set(offset.get() + buf.len() as u64);
        Ok(())
    };
    let mut magic = [0u8; MAGIC.len()];
    if read(&mut magic, &mut hasher, "the header").is_err() || &magic != MAGIC {
        return Err(BackupError::NotABackup { path: shown });
    }
    let mut entries = Vec::new();
    loop {
        let mut n = [0u8; 2];
        read(&mut n, &mut hasher, "an entry's name")?;
        let n = u16::from_be_bytes(n) as usize;
        if n == 0 {
            break;
        }
        if n > 255 {
            return Err(damaged(format!("an entry name of {n} bytes")));
        }
        let mut name = vec![0u8; n];
        read(&mut name, &mut hasher, "an entry's name")?;
        let name = String::from_utf8(name).map_err(|_| damaged("an entry name that is not UTF-8".into()))?;
        let mut len = [0u8; 8];
        read(&mut len, &mut hasher, &format!("the length of {name}"))?;
        let len = u64::from_be_bytes(len);
        let start = offset.get();
        let mut left = len;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let chunk = left.min(buf.len() as u64) as usize;
            read(&mut buf[..chunk], &mut hasher, &name)?;
            left -= chunk as u64;
        }
        entries.push(Entry { name, offset: start, len });
    }
    let sum = hasher.finalize();
    let mut stored = [0u8; 32];
    read(&mut stored, &mut Sha256::new(), "the checksum")?;
    if stored[..] != sum[..] {
        return Err(damaged("its checksum does not match its content".into()));
    }
    let mut rest = [0u8; 1];
    if file.borrow_mut().read(&mut rest).map_err(io_err(path))? != 0 {
        return Err(damaged("bytes follow its checksum".into()));
    }
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    if names != ENTRIES && names[..] != [&ENTRIES[..], &[OPTIONAL]].concat()[..] {
        return Err(damaged(format!("it holds {names:?}, expected {ENTRIES:?} (and perhaps {OPTIONAL:?})")));
    }
    Ok(entries)
}

/// Copies one entry of the checked backup `from` into `to`.
pub fn extract(from: &Path, entry: &Entry, to: &mut std::fs::File) -> Result<(), BackupError> {
    use std::io::Seek;
    let mut file = std::fs::File::open(from).map_err(io_err(from))?;
    file.seek(std::io::SeekFrom::Start(entry.offset)).map_err(io_err(from))?;
    let copied = std::io::copy(&mut file.take(entry.len), to).map_err(io_err(from))?;
    if copied != entry.len {
        return Err(BackupError::Damaged {
            path: from.display().to_string(),
            why: "it shrank while read".into(),
        });
    }
    to.sync_all().map_err(io_err(from))
}

/// Whether the store at `path` opens with `key`, with the settings in
/// `record` (or, without one, any known settings). Counts the accounts, as
/// a sign of life.
pub fn open_check(path: &Path, record: Option<&Path>, key: &str) -> Result<u64, BackupError> {
    let other_key = || BackupError::OtherKey { path: path.display().to_string() };
    let conn = match super::cipher::open(path, key, record, false) {
        Ok((conn, _)) => conn,
        Err(super::cipher::OpenError::Sqlite(e)) => return Err(e.into()),
        Err(_) => return Err(other_key()),
    };
    let accounts = conn
        .query_row("SELECT count(*) FROM accounts", [], |r| r.get::<_, u64>(0))
        .map_err(|_| other_key())?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qpc-backup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A new store, as the relay makes one (its settings recorded beside it).
    fn store(dir: &Path, key: &str) -> Connection {
        let path = dir.join(crate::data_dir::STORE_FILE);
        let record = super::super::cipher::record_path(&path);
        let (conn, _) = super::super::cipher::open(&path, key, Some(&record), true).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE accounts(username TEXT); INSERT INTO accounts VALUES ('alice'), ('bob');",
        )
        .unwrap();
        std::fs::write(dir.join("server-cert.der"), b"cert").unwrap();
        std::fs::write(dir.join("server-key.der"), b"key").unwrap();
        conn
    }

    fn write(out: &mut impl Write, dir: &Path, copy: &Path) -> Result<u64, BackupError> {
        let mut n = 0;
        for piece in Pieces::new(dir, copy)? {
            let piece = piece?;
            n += piece.len() as u64;
            out.write_all(&piece).unwrap();
        }
        Ok(n)
    }

    #[test]
    fn a_backup_holds_an_encrypted_copy_and_checks_whole() {
        let dir = temp("whole");
        let conn = store(&dir, "k");
        let copy = dir.join(COPY_FILE);
        copy_store(&conn, &copy, "k").unwrap();
        let file = dir.join("b.qpcb");
        let n = write(&mut std::fs::File::create(&file).unwrap(), &dir, &copy).unwrap();
        assert_eq!(n, std::fs::metadata(&file).unwrap().len());
        let entries = check(&file).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [&ENTRIES[..], &[OPTIONAL]].concat(), "the settings' record is carried");
        let out = dir.join("restored.db");
        extract(&file, &entries[0], &mut std::fs::File::create(&out).unwrap()).unwrap();
        assert!(!std::fs::read(&out).unwrap().starts_with(b"SQLite format 3"), "the copy is encrypted");
        let record = dir.join("restored.db-cipher");
        extract(&file, &entries[3], &mut std::fs::File::create(&record).unwrap()).unwrap();
        // The copy has the store's 2 KiB pages (its file is whole pages).
        assert_eq!(std::fs::metadata(&out).unwrap().len() % 2048, 0);
        assert_eq!(open_check(&out, Some(&record), "k").unwrap(), 2);
        assert_eq!(open_check(&out, None, "k").unwrap(), 2, "found without the record too");
        assert!(matches!(open_check(&out, Some(&record), "other"), Err(BackupError::OtherKey { .. })));
        let mut cert = Vec::new();
        extract(&file, &entries[1], &mut std::fs::File::create(dir.join("c")).unwrap()).unwrap();
        std::fs::File::open(dir.join("c")).unwrap().read_to_end(&mut cert).unwrap();
        assert_eq!(cert, b"cert");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_from_before_the_settings_record_backs_up_and_checks_as_before() {
        let dir = temp("legacy");
        // SQLCipher 4's defaults, no record: a store made by an older relay.
        let conn = Connection::open(dir.join(crate::data_dir::STORE_FILE)).unwrap();
        conn.pragma_update(None, "key", "k").unwrap();
        conn.execute_batch("CREATE TABLE accounts(username TEXT); INSERT INTO accounts VALUES ('carol');")
            .unwrap();
        std::fs::write(dir.join("server-cert.der"), b"cert").unwrap();
        std::fs::write(dir.join("server-key.der"), b"key").unwrap();
        let copy = dir.join(COPY_FILE);
        copy_store(&conn, &copy, "k").unwrap();
        let file = dir.join("old.qpcb");
        write(&mut std::fs::File::create(&file).unwrap(), &dir, &copy).unwrap();
        let entries = check(&file).unwrap();
        assert_eq!(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ENTRIES);
        let out = dir.join("restored.db");
        extract(&file, &entries[0], &mut std::fs::File::create(&out).unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len() % 4096, 0);
        assert_eq!(open_check(&out, None, "k").unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_and_a_flipped_bit_are_refused() {
        let dir = temp("damaged");
        let conn = store(&dir, "k");
        let copy = dir.join(COPY_FILE);
        copy_store(&conn, &copy, "k").unwrap();
        let mut whole = Vec::new();
        write(&mut whole, &dir, &copy).unwrap();
        let file = dir.join("cut.qpcb");
        for cut in (0..whole.len()).step_by(97).chain([whole.len() - 1]) {
            std::fs::write(&file, &whole[..cut]).unwrap();
            let e = check(&file).unwrap_err();
            assert!(
                matches!(e, BackupError::Damaged { .. } | BackupError::NotABackup { .. }),
                "cut at {cut}: {e}"
            );
        }
        let mut flipped = whole.clone();
        flipped[whole.len() / 2] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        let e = check(&file).unwrap_err().to_string();
        assert!(e.contains("checksum does not match"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Commit fences: the relay's whole memory of a group. One row per group
//! routing value holds the epoch the group is in and the SHA-256 of that
//! epoch's fence value; one row per admitted commit (the last few epochs)
//! remembers its client message id so that a retry is answered, not refused.
//! Nothing here reads MLS: a route, an epoch and hashes are all there is.

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

/// How many past epochs' commit ids are kept for retries.
const REMEMBERED_EPOCHS: u64 = 16;

/// A commit asking to pass the fence of its group.
pub struct Attempt<'a> {
    pub route: &'a [u8; 32],
    pub epoch: u64,
    pub fence: &'a [u8; 32],
    pub next_fence_hash: &'a [u8; 32],
    pub client_msg_id: &'a [u8],
    /// Start a fence at `epoch` when the route has none.
    pub open: bool,
}

/// Why a commit did not pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The relay holds no fence for the route and the commit did not open one.
    Unknown,
    /// The group is at another epoch: someone else committed first (or the
    /// committer is ahead of what the relay admitted).
    WrongEpoch { held: u64 },
    /// The fence value is not the one of the held epoch.
    Forged,
}

/// A commit that passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Passed {
    /// Admitted now: fan it out. The group is at `epoch` from now on.
    Admitted { epoch: u64 },
    /// Admitted before under the same client message id: answer again,
    /// store nothing.
    Retry { epoch: u64 },
}

fn sql_epoch(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// Checks `attempt` against the group's fence and, when it passes, moves
/// the fence to the next epoch. Run it in the same savepoint as the
/// fan-out, so that a failed fan-out leaves the fence where it was.
pub fn pass(c: &Connection, attempt: &Attempt<'_>, now_ms: i64) -> rusqlite::Result<Result<Passed, Refused>> {
    let route = &attempt.route[..];
    let epoch = sql_epoch(attempt.epoch);
    let admitted_before: bool = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM group_commits WHERE route = ?1 AND epoch = ?2 AND client_msg_id = ?3)",
        )?
        .query_row((route, epoch, attempt.client_msg_id), |r| r.get(0))?;
    if admitted_before {
        return Ok(Ok(Passed::Retry { epoch: attempt.epoch.saturating_add(1) }));
    }
    let held: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT epoch, fence_hash FROM group_fences WHERE route = ?1")?
        .query_row([route], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match held {
        None if !attempt.open => return Ok(Err(Refused::Unknown)),
        None => {}
        Some((held, _)) if held != epoch => {
            return Ok(Err(Refused::WrongEpoch { held: u64::try_from(held).unwrap_or(0) }))
        }
        Some((_, hash)) if Sha256::digest(attempt.fence).as_slice() != hash.as_slice() => {
            return Ok(Err(Refused::Forged))
        }
        Some(_) => {}
    }
    let next = attempt.epoch.saturating_add(1);
    c.prepare_cached(
        "INSERT INTO group_fences (route, epoch, fence_hash, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (route) DO UPDATE SET epoch = ?2, fence_hash = ?3, updated_at_ms = ?4",
    )?
    .execute((route, sql_epoch(next), &attempt.next_fence_hash[..], now_ms))?;
    c.prepare_cached(
        "INSERT OR REPLACE INTO group_commits (route, epoch, client_msg_id, at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((route, epoch, attempt.client_msg_id, now_ms))?;
    c.prepare_cached("DELETE FROM group_commits WHERE route = ?1 AND epoch < ?2")?
        .execute((route, sql_epoch(attempt.epoch.saturating_sub(REMEMBERED_EPOCHS))))?;
    Ok(Ok(Passed::Admitted { epoch: next }))
}

/// Forgets the fences of groups that have not committed since `cutoff_ms`
/// (they expire with the message TTL); returns how many.
pub fn expire_before(c: &Connection, cutoff_ms: i64) -> rusqlite::Result<u64> {
    c.prepare_cached("DELETE FROM group_commits WHERE at_ms < ?1")?.execute([cutoff_ms])?;
    Ok(c.prepare_cached("DELETE FROM group_fences WHERE updated_at_ms < ?1")?.execute([cutoff_ms])? as u64)
}

/// How many groups the relay holds a fence for.
#[cfg(test)]
pub fn count(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT count(*) FROM group_fences")?.query_row([], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::memory_db as db;

    fn fence(epoch: u64) -> [u8; 32] {
        [epoch as u8 + 1; 32]
    }

    fn hash(f: &[u8; 32]) -> [u8; 32] {
        Sha256::digest(f).into()
    }

    fn attempt<'a>(
        route: &'a [u8; 32],
        epoch: u64,
        f: &'a [u8; 32],
        next: &'a [u8; 32],
        id: &'a [u8],
        open: bool,
    ) -> Attempt<'a> {
        Attempt { route, epoch, fence: f, next_fence_hash: next, client_msg_id: id, open }
    }

    #[test]
    fn one_commit_per_epoch_and_retries_are_recognised() {
        let c = db();
        let route = [7u8; 32];
        let (f0, f1, f2) = (fence(0), fence(1), fence(2));
        let (h1, h2) = (hash(&f1), hash(&f2));

        let unknown = pass(&c, &attempt(&route, 0, &f0, &h1, b"a", false), 1).unwrap();
        assert_eq!(unknown, Err(Refused::Unknown));
        let first = pass(&c, &attempt(&route, 0, &f0, &h1, b"a", true), 1).unwrap();
        assert_eq!(first, Ok(Passed::Admitted { epoch: 1 }));
        // A second commit in epoch 0 loses, open or not.
        let late = pass(&c, &attempt(&route, 0, &f0, &h1, b"b", true), 2).unwrap();
        assert_eq!(late, Err(Refused::WrongEpoch { held: 1 }));
        // The winner's retry is answered again.
        let retry = pass(&c, &attempt(&route, 0, &f0, &h1, b"a", false), 3).unwrap();
        assert_eq!(retry, Ok(Passed::Retry { epoch: 1 }));
        // Epoch 1 needs epoch 1's fence value, not a guess.
        let forged = pass(&c, &attempt(&route, 1, &[9; 32], &h2, b"c", false), 4).unwrap();
        assert_eq!(forged, Err(Refused::Forged));
        let future = pass(&c, &attempt(&route, 5, &f1, &h2, b"c", false), 4).unwrap();
        assert_eq!(future, Err(Refused::WrongEpoch { held: 1 }));
        let second = pass(&c, &attempt(&route, 1, &f1, &h2, b"c", false), 5).unwrap();
        assert_eq!(second, Ok(Passed::Admitted { epoch: 2 }));
        assert_eq!(count(&c).unwrap(), 1);

        // Expiry forgets idle groups only.
        let other = [8u8; 32];
        pass(&c, &attempt(&other, 0, &f0, &h1, b"d", true), 100).unwrap().unwrap();
        assert_eq!(expire_before(&c, 50).unwrap(), 1);
        assert_eq!(count(&c).unwrap(), 1);
        let gone = pass(&c, &attempt(&route, 2, &f2, &h1, b"e", false), 101).unwrap();
        assert_eq!(gone, Err(Refused::Unknown));
    }

    #[test]
    fn old_commit_ids_are_pruned() {
        let c = db();
        let route = [1u8; 32];
        for epoch in 0..40u64 {
            let f = fence(epoch);
            let next = hash(&fence(epoch + 1));
            let id = epoch.to_be_bytes();
            pass(&c, &attempt(&route, epoch, &f, &next, &id, epoch == 0), 1).unwrap().unwrap();
        }
        let kept: u64 = c.query_row("SELECT count(*) FROM group_commits", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, REMEMBERED_EPOCHS + 1);
    }
}

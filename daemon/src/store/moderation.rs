//! Moderation: reports one account makes about another (the reporter's
//! note only; the relay never has message contents to add) and the owner's
//! bans. A ban keeps everything stored for the account; only unban or
//! deleting the account ends it.

use rusqlite::Connection;

/// One stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: u64,
    pub reporter: String,
    pub reported: String,
    pub reason: String,
    pub at_ms: i64,
}

/// One banned account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub username: String,
    pub reason: String,
    pub at_ms: i64,
}

/// Stores a report; `None` (nothing stored) when `reporter` already has
/// `cap` reports waiting for the owner.
pub fn add_report(
    c: &Connection,
    reporter: &str,
    reported: &str,
    reason: &str,
    at_ms: i64,
    cap: u32,
) -> rusqlite::Result<Option<u64>> {
    let held: u32 = c
        .prepare_cached("SELECT count(*) FROM reports WHERE reporter = ?1")?
        .query_row([reporter], |r| r.get(0))?;
    if held >= cap {
        return Ok(None);
    }
    c.prepare_cached("INSERT INTO reports (reporter, reported, reason, at_ms) VALUES (?1, ?2, ?3, ?4)")?
        .execute((reporter, reported, reason, at_ms))?;
    Ok(Some(c.last_insert_rowid() as u64))
}

/// Every report, oldest first.
pub fn reports(c: &Connection) -> rusqlite::Result<Vec<Report>> {
    let mut stmt =
        c.prepare_cached("SELECT id, reporter, reported, reason, at_ms FROM reports ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Report {
                id: r.get(0)?,
                reporter: r.get(1)?,
                reported: r.get(2)?,
                reason: r.get(3)?,
                at_ms: r.get(4)?,
            })
        })?
        .collect();
    rows
}

/// Removes report `id`; false if there is none.
pub fn dismiss(c: &Connection, id: u64) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM reports WHERE id = ?1")?.execute([id])? > 0)
}

/// Bans `username` (a ban already there keeps its time, takes the new reason).
pub fn ban(c: &Connection, username: &str, reason: &str, at_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO bans (username, reason, at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (username) DO UPDATE SET reason = excluded.reason",
    )?
    .execute((username, reason, at_ms))?;
    Ok(())
}

/// Lifts the ban of `username`; false if it was not banned.
pub fn unban(c: &Connection, username: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM bans WHERE username = ?1")?.execute([username])? > 0)
}

/// Every ban, by username.
pub fn bans(c: &Connection) -> rusqlite::Result<Vec<Ban>> {
    let mut stmt = c.prepare_cached("SELECT username, reason, at_ms FROM bans ORDER BY username")?;
    let rows = stmt
        .query_map([], |r| Ok(Ban { username: r.get(0)?, reason: r.get(1)?, at_ms: r.get(2)? }))?
        .collect();
    rows
}

/// Reports waiting and accounts banned, for the status page.
pub fn counts(c: &Connection) -> rusqlite::Result<(u64, u64)> {
    c.query_row("SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM bans)", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

/// Forgets everything about `username` (its account is being deleted):
/// its ban, its reports and the reports about it.
pub fn forget(c: &Connection, username: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM reports WHERE reporter = ?1 OR reported = ?1")?.execute([username])?;
    c.prepare_cached("DELETE FROM bans WHERE username = ?1")?.execute([username])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_capped_per_reporter_and_dismissed_by_id() {
        let (c, _) = super::super::schema::memory();
        let first = add_report(&c, "alice", "mallory", "spam", 1, 2).unwrap().unwrap();
        add_report(&c, "alice", "bob", "", 2, 2).unwrap().unwrap();
        assert_eq!(add_report(&c, "alice", "eve", "x", 3, 2).unwrap(), None, "over the cap");
        add_report(&c, "bob", "mallory", "rude", 4, 2).unwrap().unwrap();
        let all = reports(&c).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].id, all[0].reported.as_str(), all[0].reason.as_str()), (first, "mallory", "spam"));
        assert!(dismiss(&c, first).unwrap());
        assert!(!dismiss(&c, first).unwrap());
        assert_eq!(counts(&c).unwrap(), (2, 0));
        forget(&c, "mallory").unwrap();
        assert_eq!(reports(&c).unwrap().len(), 1);
    }

    #[test]
    fn bans_come_and_go() {
        let (c, _) = super::super::schema::memory();
        assert!(bans(&c).unwrap().is_empty());
        ban(&c, "mallory", "spam", 5).unwrap();
        ban(&c, "mallory", "spam, again", 9).unwrap();
        assert_eq!(
            bans(&c).unwrap(),
            vec![Ban { username: "mallory".into(), reason: "spam, again".into(), at_ms: 5 }]
        );
        assert_eq!(counts(&c).unwrap(), (0, 1));
        assert!(unban(&c, "mallory").unwrap());
        assert!(!unban(&c, "mallory").unwrap());
        assert!(bans(&c).unwrap().is_empty());
    }
}

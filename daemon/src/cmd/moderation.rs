//! Moderation, the whole story: Report (900) from a signed-in account, the
//! owner's side over the admin socket (`reports`, `report-dismiss`, `ban`,
//! `unban`), and the gate every request of a banned account meets.
//!
//! A report holds what the relay can act on: who reported, whom, when, and
//! the reporter's note; the relay has no message contents to add. A ban
//! refuses the account's logins, identity proofs and every request on its
//! connections (`forbidden`, saying it is the owner's ban); everything
//! stored for it (its queues above all) stays until unban or deletion.
//! The bans live in the store and, for the gate, in memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;

use qpc_proto::{pb, Status};

use super::accounts::check_username;
use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::{Relay, Session};
use crate::status::json_string;
use crate::store::{accounts, directory, moderation, now_ms, StoreError};

/// Longest reporter's note and owner's ban reason, in bytes of UTF-8.
pub const MAX_REASON: usize = 500;
/// Reports one account may have waiting for the owner.
pub const MAX_REPORTS_PER_REPORTER: u32 = 20;

/// The banned accounts and the owner's reasons, as the gate sees them.
#[derive(Default)]
pub struct Bans(RefCell<HashMap<String, String>>);

impl Bans {
    pub fn load(bans: Vec<moderation::Ban>) -> Bans {
        Bans(RefCell::new(bans.into_iter().map(|b| (b.username, b.reason)).collect()))
    }

    /// Refuses `account` if it is banned, saying so and why.
    pub fn check(&self, account: &str) -> Result<(), Refusal> {
        match self.0.borrow().get(account) {
            None => Ok(()),
            Some(reason) => Err(Refusal::new(
                Status::Forbidden,
                if reason.is_empty() {
                    format!("account {account:?} is banned by this relay's owner")
                } else {
                    format!("account {account:?} is banned by this relay's owner: {reason}")
                },
            )),
        }
    }

    /// Refuses the connection if it speaks for a banned account.
    pub fn check_session(&self, session: &Session) -> Result<(), Refusal> {
        match session.account.borrow().as_deref() {
            Some(account) => self.check(account),
            None => Ok(()),
        }
    }
}

/// Checks a reason or note: at most MAX_REASON bytes, no control characters
/// (it is shown on one line of the owner's table).
fn check_reason(what: &str, reason: &str) -> Result<(), Refusal> {
    if reason.len() > MAX_REASON {
        return Err(Refusal::new(
            Status::TooLarge,
            format!("the {what} is {} bytes; the most is {MAX_REASON}", reason.len()),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(Refusal::bad_request(format!(
            "the {what} may not contain control characters (newlines, tabs)"
        )));
    }
    Ok(())
}

pub async fn report(
    relay: &Rc<Relay>,
    session: &Session,
    _me: Proven,
    req: pb::ReportRequest,
) -> Result<pb::ReportResponse, Refusal> {
    let reporter = session.account.borrow().clone().ok_or_else(|| {
        Refusal::new(
            Status::Forbidden,
            "only an account may report: sign in with `qpc login --username NAME`",
        )
    })?;
    check_username(&req.username)?;
    if req.username == reporter {
        return Err(Refusal::bad_request("you cannot report your own account"));
    }
    check_reason("reason", &req.reason)?;
    let reported = req.username.clone();
    let id = relay
        .store
        .write(move |tx| {
            if !accounts::exists(tx, &req.username)? {
                return Err(Refusal::new(
                    Status::NotFound,
                    format!("no account named {:?} on this relay", req.username),
                ));
            }
            moderation::add_report(tx, &reporter, &req.username, &req.reason, now_ms(), MAX_REPORTS_PER_REPORTER)?
                .ok_or_else(|| {
                    Refusal::new(
                        Status::QuotaExceeded,
                        format!(
                            "you already have {MAX_REPORTS_PER_REPORTER} reports waiting for the relay's owner; wait until they are dealt with"
                        ),
                    )
                })
        })
        .await?;
    log::info!("report {id} about account {reported:?} stored for the owner");
    Ok(pb::ReportResponse { report_id: id })
}

// ----- the owner's side (admin socket) ---------------------------------------

/// When, as the owner's table shows it: seconds since the Unix epoch, UTC.
fn when(at_ms: i64) -> String {
    let secs = at_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest / 60 % 60)
}

/// `reports`: the reports waiting, then the banned accounts; as two tables,
/// or as one JSON object `{"reports": [...], "banned": [...]}`.
pub async fn reports(relay: &Relay, json: bool) -> Result<(Option<String>, String), String> {
    let (reports, bans) = relay
        .store
        .read(|c| Ok((moderation::reports(c)?, moderation::bans(c)?)))
        .await
        .map_err(|e| e.to_string())?;
    if json {
        let rows: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{{\"id\":{},\"reporter\":{},\"reported\":{},\"reason\":{},\"at_ms\":{}}}",
                    r.id,
                    json_string(&r.reporter),
                    json_string(&r.reported),
                    json_string(&r.reason),
                    r.at_ms
                )
            })
            .collect();
        let banned: Vec<String> = bans
            .iter()
            .map(|b| {
                format!(
                    "{{\"username\":{},\"reason\":{},\"at_ms\":{}}}",
                    json_string(&b.username),
                    json_string(&b.reason),
                    b.at_ms
                )
            })
            .collect();
        return Ok((
            None,
            format!("{{\"reports\":[{}],\"banned\":[{}]}}\n", rows.join(","), banned.join(",")),
        ));
    }
    let mut o = String::new();
    let name_width = reports.iter().map(|r| r.reporter.len().max(r.reported.len())).max().unwrap_or(0).max(8);
    let _ = writeln!(
        o,
        "{:>4}  {:<20}  {:<name_width$}  {:<name_width$}  REASON",
        "ID", "WHEN", "REPORTED", "REPORTER"
    );
    for r in &reports {
        let _ = writeln!(
            o,
            "{:>4}  {:<20}  {:<name_width$}  {:<name_width$}  {}",
            r.id,
            when(r.at_ms),
            r.reported,
            r.reporter,
            r.reason
        );
    }
    let _ = writeln!(o, "\n{:<name_width$}  {:<20}  REASON", "BANNED", "SINCE");
    for b in &bans {
        let _ = writeln!(o, "{:<name_width$}  {:<20}  {}", b.username, when(b.at_ms), b.reason);
    }
    let note =
        (reports.is_empty() && bans.is_empty()).then(|| "no reports and no banned accounts".to_string());
    Ok((note, o))
}

/// `report-dismiss ID`: the report is deleted (nothing else changes).
pub async fn dismiss(relay: &Relay, id: &str) -> Result<String, String> {
    let id: u64 = id
        .parse()
        .map_err(|_| format!("report-dismiss: {id:?} is not a report number (see `qpc-server reports`)"))?;
    let gone = relay
        .store
        .write(move |tx| moderation::dismiss(tx, id).map_err(StoreError::from))
        .await
        .map_err(|e| e.to_string())?;
    if !gone {
        return Err(format!("no report number {id} on this relay (see `qpc-server reports`)"));
    }
    log::info!("admin: report {id} dismissed");
    Ok(format!("report {id} dismissed\n"))
}

/// `ban NAME [REASON]`: the account's connections are closed and refused
/// from now on; nothing stored for it is removed. An unknown name changes
/// nothing.
pub async fn ban(relay: &Relay, argument: &str) -> Result<String, String> {
    let (name, reason) = argument.split_once(' ').unwrap_or((argument, ""));
    let (name, reason) = (name.to_string(), reason.trim().to_string());
    check_username(&name).map_err(|r| r.message)?;
    check_reason("ban reason", &reason).map_err(|r| r.message)?;
    let (username, why) = (name.clone(), reason.clone());
    let keys = relay
        .store
        .write(move |tx| {
            if !accounts::exists(tx, &username)? {
                return Ok(None);
            }
            moderation::ban(tx, &username, &why, now_ms())?;
            Ok::<_, StoreError>(Some(directory::keys_of(tx, &username)?))
        })
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no account named {name:?} on this relay; nothing was banned"))?;
    relay.bans.0.borrow_mut().insert(name.clone(), reason);
    for key in &keys {
        if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
            relay.hub.disconnect(key, "account banned by the relay's owner");
        }
    }
    log::info!("admin: account {name:?} banned ({} device keys disconnected)", keys.len());
    Ok(format!("banned account {name:?}: its {} device keys are refused; its queues are kept\n", keys.len()))
}

/// `unban NAME`.
pub async fn unban(relay: &Relay, name: &str) -> Result<String, String> {
    check_username(name).map_err(|r| r.message)?;
    let username = name.to_string();
    let lifted = relay
        .store
        .write(move |tx| moderation::unban(tx, &username).map_err(StoreError::from))
        .await
        .map_err(|e| e.to_string())?;
    relay.bans.0.borrow_mut().remove(name);
    if !lifted {
        return Err(format!("account {name:?} is not banned on this relay"));
    }
    log::info!("admin: account {name:?} unbanned");
    Ok(format!("unbanned account {name:?}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_790_000_000_000), "2026-09-21 14:13 UTC");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn reasons_are_bounded_and_on_one_line() {
        assert!(check_reason("reason", &"x".repeat(MAX_REASON)).is_ok());
        assert_eq!(check_reason("reason", &"x".repeat(MAX_REASON + 1)).unwrap_err().status, Status::TooLarge);
        assert_eq!(check_reason("reason", "a\nb").unwrap_err().status, Status::BadRequest);
        let bans =
            Bans::load(vec![moderation::Ban { username: "m".into(), reason: "spam".into(), at_ms: 0 }]);
        let refused = bans.check("m").unwrap_err();
        assert_eq!(refused.status, Status::Forbidden);
        assert!(refused.message.contains("banned by this relay's owner: spam"), "{}", refused.message);
        assert!(bans.check("alice").is_ok());
    }
}

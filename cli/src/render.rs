//! How what the session reports is shown: as lines for people, or as one
//! JSON object per line for scripts (`qpc recv --json`, `qpc chat --json`;
//! the README lists the objects). One place, so `recv`, the REPL and
//! `qpc chat` say the same things the same way.

use qpc::session::{Event, Session};
use qpc::state::HistoryEntry;
use serde_json::{json, Value};

/// The marks after one of our own messages: delivered to every other
/// person in the conversation (`✓`), read by all of them (`✓✓`).
pub fn receipt_mark(session: &Session, entry: &HistoryEntry) -> &'static str {
    if entry.sender_key != session.me().to_vec() || entry.deleted {
        return "";
    }
    let others = session.other_people(&entry.group);
    if others.is_empty() {
        return "";
    }
    if others.iter().all(|p| entry.read_by.contains(p)) {
        " ✓✓"
    } else if others.iter().all(|p| entry.delivered_to.contains(p) || entry.read_by.contains(p)) {
        " ✓"
    } else {
        ""
    }
}

/// `(re #2) ` when the entry answers another message of its conversation.
fn reply_prefix(session: &Session, entry: &HistoryEntry) -> String {
    if entry.reply_to.is_empty() {
        return String::new();
    }
    match session.state.history.iter().find(|e| e.id == entry.reply_to) {
        Some(target) => format!("(re #{}) ", target.seq),
        None => "(re an older message) ".into(),
    }
}

/// The text of an entry as people read it: a file as its name and size.
fn body(entry: &HistoryEntry) -> String {
    match &entry.file {
        Some(file) if !entry.deleted => format!("sent {} ({})", file.name, size(file.size)),
        _ => entry.text.clone(),
    }
}

/// `2.3 MiB`, `512 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A message as a live line: `[alice] hello #3`, with `(label) ` in front
/// when it is not in the active conversation.
pub fn live_line(session: &Session, entry: &HistoryEntry, active: Option<&str>) -> String {
    let place = if active == Some(entry.conversation.as_str()) {
        String::new()
    } else {
        format!("({}) ", entry.conversation)
    };
    let save = match (&entry.file, entry.deleted) {
        (Some(_), false) => format!(": /save {}", entry.seq),
        _ => String::new(),
    };
    format!("{place}[{}] {}{}{save} #{}", entry.sender, reply_prefix(session, entry), body(entry), entry.seq)
}

/// A line of `/history`: time, number, sender, text, marks and reactions.
pub fn history_line(session: &Session, entry: &HistoryEntry, clock: &str) -> String {
    let edited = if entry.edited { " (edited)" } else { "" };
    let mut reactions: Vec<String> = Vec::new();
    for mark in &entry.reactions {
        reactions.push(format!("{} {}", mark.emoji, mark.by));
    }
    let reactions =
        if reactions.is_empty() { String::new() } else { format!("  [{}]", reactions.join(", ")) };
    format!(
        "  {clock} #{} [{}] {}{}{edited}{}{reactions}",
        entry.seq,
        entry.sender,
        reply_prefix(session, entry),
        body(entry),
        receipt_mark(session, entry)
    )
}

/// What `qpc recv` prints for a received message: `[N] plaintext: TEXT`,
/// or for a file `[N] file: NAME (SIZE): qpc save-file N`.
pub fn recv_line(entry: &HistoryEntry) -> String {
    let n = entry.number.unwrap_or_default();
    match (&entry.file, entry.deleted) {
        (Some(file), false) => format!("[{n}] file: {} ({}): qpc save-file {n}", file.name, size(file.size)),
        _ => format!("[{n}] plaintext: {}", entry.text),
    }
}

/// An event as a line for people, or `None` when it is not worth a line
/// (a receipt is shown as a mark instead).
pub fn event_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Invited { group, inviter } => {
            format!("invitation to group {group} from {inviter}: qpc join --group-id {group}, or qpc decline {group}")
        }
        Event::Joined { group, own_device: true } => {
            format!("joined group: {group} (added by your other device)")
        }
        Event::Joined { group, own_device: false } => format!("joined group: {group}"),
        Event::EpochAdvanced { group, epoch } => format!("group {group} is now at epoch {epoch}"),
        Event::Removed { group } => format!("you were removed from group {group}"),
        Event::Proposal { group, .. } => format!("proposal received in group {group}"),
        Event::Committed { group, epoch, what } => format!("group {group}: {what} (epoch {epoch})"),
        Event::Undecryptable { seq, from, reason } => {
            format!("message {seq} from {from} cannot be decrypted: {reason}")
        }
        Event::Reacted { conversation, seq, emoji, by, removed: false } => {
            format!("{conversation}: {by} reacted {emoji} to #{seq}")
        }
        Event::Reacted { conversation, seq, emoji, by, removed: true } => {
            format!("{conversation}: {by} took back {emoji} on #{seq}")
        }
        Event::Edited { conversation, seq, by, text } => {
            format!("{conversation}: {by} edited #{seq}: {text}")
        }
        Event::Deleted { conversation, seq, by } => format!("{conversation}: {by} deleted #{seq}"),
        Event::Receipt { .. } => return None,
        Event::Refused { conversation, from, why } => format!("{conversation}: {from} {why}"),
        Event::Typing { conversation, by, active: true } => format!("{conversation}: {by} is typing"),
        Event::Typing { active: false, .. } => return None,
        Event::Presence { by, online: true, .. } => format!("{by} is online"),
        Event::Presence { by, online: false, .. } => format!("{by} went away"),
        Event::NewOwnDevice { key, added_ms } => format!(
            "* a new device was added to your account on {}: if this was not you, run qpc revoke-device {}",
            utc_time(*added_ms),
            hex::encode(key)
        ),
        Event::NewPeerDevice { who, conversations } if conversations.is_empty() => {
            format!("{who} has a new device")
        }
        Event::NewPeerDevice { who, conversations } => conversations
            .iter()
            .map(|c| format!("{c}: {who} has a new device"))
            .collect::<Vec<_>>()
            .join("\n"),
        Event::Undelivered { to, reason } => format!("a message to {to} was not delivered: {reason}"),
    })
}

/// `ms` since 1970 as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// A received message as a JSON object.
pub fn message_json(session: &Session, entry: &HistoryEntry) -> Value {
    let reply_seq =
        session.state.history.iter().find(|e| !entry.reply_to.is_empty() && e.id == entry.reply_to);
    json!({
        "type": "received",
        "conversation": entry.conversation,
        "group": entry.group,
        "seq": entry.seq,
        "number": entry.number,
        "id": hex::encode(&entry.id),
        "from": entry.sender,
        "time": entry.time,
        "text": entry.text,
        "reply_to": reply_seq.map(|e| e.seq),
        "unsupported": entry.unsupported,
        "file": entry.file.as_ref().map(|f| json!({
            "name": f.name, "size": f.size, "media_type": f.media_type,
        })),
    })
}

/// An event as a JSON object.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Invited { group, inviter } => json!({"type": "invitation", "group": group, "from": inviter}),
        Event::Joined { group, own_device } => {
            json!({"type": "joined", "group": group, "own_device": own_device})
        }
        Event::EpochAdvanced { group, epoch } => json!({"type": "epoch", "group": group, "epoch": epoch}),
        Event::Removed { group } => json!({"type": "removed", "group": group}),
        Event::Proposal { group, from } => json!({"type": "proposal", "group": group, "from": from}),
        Event::Committed { group, epoch, what } => {
            json!({"type": "committed", "group": group, "epoch": epoch, "what": what})
        }
        Event::Undecryptable { seq, from, reason } => {
            json!({"type": "error", "message": format!("message {seq} from {from} cannot be decrypted: {reason}")})
        }
        Event::Reacted { conversation, seq, emoji, by, removed } => json!({
            "type": "reaction", "conversation": conversation, "seq": seq, "emoji": emoji, "by": by, "removed": removed,
        }),
        Event::Edited { conversation, seq, by, text } => {
            json!({"type": "edit", "conversation": conversation, "seq": seq, "by": by, "text": text})
        }
        Event::Deleted { conversation, seq, by } => {
            json!({"type": "delete", "conversation": conversation, "seq": seq, "by": by})
        }
        Event::Receipt { conversation, seqs, by, read } => {
            json!({"type": "receipt", "conversation": conversation, "seqs": seqs, "by": by, "read": read})
        }
        Event::Refused { conversation, from, why } => {
            json!({"type": "error", "conversation": conversation, "message": format!("{from} {why}")})
        }
        Event::Typing { conversation, by, active } => {
            json!({"type": "typing", "conversation": conversation, "by": by, "active": active})
        }
        Event::Presence { by, online, last_seen } => {
            json!({"type": "presence", "by": by, "online": online, "last_seen": last_seen})
        }
        Event::NewOwnDevice { key, added_ms } => {
            json!({"type": "new_own_device", "key": hex::encode(key), "added_ms": added_ms})
        }
        Event::NewPeerDevice { who, conversations } => {
            json!({"type": "new_device", "by": who, "conversations": conversations})
        }
        Event::Undelivered { to, reason } => json!({"type": "undelivered", "to": to, "reason": reason}),
    }
}

pub fn error_json(message: &str) -> Value {
    json!({"type": "error", "message": message})
}

//! `qpc repl` and `qpc chat`: one signed-in session with several
//! conversations. Lines come from standard input (a terminal or a pipe) on a
//! reader thread; the relay's queue is read with FetchWait, so incoming
//! messages appear while the user types and nothing busy-polls.
//!
//! Conversations: `#name` is the MLS group `name`; `@user` is a DM, the
//! MLS group `dm:<a>:<b>` (the two usernames sorted) of both people's
//! devices; `@<own name>` is a notepad that only ever lives in the local
//! history. What this file owns is the conversation on the terminal: every
//! MLS step, save, send and ack goes through [`qpc::session`].

use std::collections::BTreeSet;
use std::error::Error;
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qpc::account::{self, AccountError};
use qpc::relay::{Relay, RelayError};
use qpc::session::{dm_group, Event, Session, SessionError, DM_PREFIX};
use qpc::state::{password_from, HistoryEntry, State, StateLock};
use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::commands::{connect_anonymous, resolve_peer};
use crate::Common;

type Outcome = Result<(), Box<dyn Error>>;

/// Longest message text sent, in bytes; longer lines are refused.
pub const MAX_TEXT: usize = 64 * 1024;

/// How long one FetchWait waits before it is asked again (the relay may cap it).
const WAIT_MS: u32 = 25_000;

const HELP: &[(&str, &str)] = &[
    ("/dm <user>", "open (or start) a DM with a user; /dm <yourself> is a local notepad"),
    ("/create-group <name>", "create a group and make it active"),
    ("/invite <user>", "add a user to the active group"),
    ("/remove <user>", "remove a member from the active group"),
    ("/leave", "leave the active group or DM"),
    ("/join [#group|@user]", "accept an invitation (the only one when none is named)"),
    ("/decline #group|@user", "decline an invitation"),
    ("/invites", "list the pending invitations"),
    ("/switch @user|#group", "change the active conversation"),
    ("/list, /ls", "list conversations"),
    ("/members", "members of the active conversation"),
    ("/history [n]", "the last n lines of the active conversation (default 20)"),
    ("/whoami", "identity key, fingerprint, relay, active conversation, epoch"),
    ("/update", "rotate your own leaf key in the active group"),
    ("/help", "this list"),
    ("/quit", "leave the session"),
];

fn usage(command: &str) -> String {
    let line = HELP.iter().find(|(u, _)| u.split([' ', ',']).next() == Some(command));
    match line {
        Some((u, what)) => format!("usage: {u}  ({what})"),
        None => "type /help for the commands".into(),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn clock(t: u64) -> String {
    format!("{:02}:{:02}", (t / 3600) % 24, (t / 60) % 60)
}

/// Lines of standard input, read on their own thread (a pipe works as well as
/// a terminal); `None` at the end of input.
fn stdin_lines() -> mpsc::UnboundedReceiver<Option<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    if tx.send(Some(String::from_utf8_lossy(&buf).into_owned())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Signs in as `--username`: logs in with an existing state file, else
/// registers the account (or, when it exists, logs in as a new device).
async fn sign_in(c: &Common, password: &str) -> Result<(Relay, State, String), Box<dyn Error>> {
    let username = c.username.clone().ok_or("--username is required")?;
    let password = password.to_string();
    let relay = connect_anonymous(c).await?;
    let state = if State::exists(&c.state) {
        let state = State::load_with_password(&c.state, &password)?;
        for warning in &state.warnings {
            println!("! {warning}");
        }
        account::login(&relay, &username, &password, &state.signing_key).await?;
        println!("signed in as {username}");
        state
    } else {
        let mut state = State::generate_protected(&c.state, Some(&username), &password);
        match account::register(&relay, &username, &password, "", &state.signing_key).await {
            Ok(()) => println!("registered and signed in as {username}"),
            Err(AccountError::Relay(e)) if e.status() == Some(Status::Conflict) => {
                account::login(&relay, &username, &password, &state.signing_key).await?;
                println!("signed in as {username} (new device)");
            }
            Err(AccountError::Relay(e)) if e.status() == Some(Status::Forbidden) => {
                return Err(format!(
                    "the relay does not let {username} register here ({e}); \
                     run `qpc register-user --username {username} --token TOKEN` first"
                )
                .into())
            }
            Err(e) => return Err(e.into()),
        }
        state.relay = Some(c.server.clone());
        state.save()?;
        state
    };
    Ok((relay, state, username))
}

/// One signed-in conversation on the terminal.
struct Repl<'c> {
    common: &'c Common,
    session: Session,
    me: String,
    /// `@user` or `#group`.
    active: Option<String>,
    /// `qpc chat`: every line is text for the active conversation.
    chat_mode: bool,
}

/// Outcome of a step: errors that end the REPL are told apart by `fatal`.
type Step<T> = Result<T, Box<dyn Error>>;

impl Repl<'_> {
    fn notepad(&self) -> String {
        format!("@{}", self.me)
    }

    fn label_of(&self, group: &str) -> String {
        self.session.label_of(group)
    }

    /// The MLS group a conversation label names, whether or not we hold it.
    fn group_named(&self, label: &str) -> Option<String> {
        if let Some(user) = label.strip_prefix('@') {
            Some(dm_group(&self.me, user))
        } else {
            Some(label.strip_prefix('#').unwrap_or(label).to_string())
        }
    }

    /// The MLS group of a conversation label, if it is one we hold and accepted.
    fn group_of(&self, label: &str) -> Option<String> {
        if !label.starts_with(['@', '#']) {
            return None;
        }
        let group = self.group_named(label)?;
        self.session.groups().contains(&group).then_some(group)
    }

    fn save(&self) -> Step<()> {
        Ok(self.session.state.save()?)
    }

    /// Prints what the session reports, then the messages not shown yet.
    fn show(&mut self, events: &[Event]) -> Step<()> {
        for event in events {
            match event {
                Event::Invited { group, inviter } => {
                    let label = self.label_of(group);
                    let name = if label.starts_with('@') { label.clone() } else { group.clone() };
                    if label.starts_with('@') {
                        println!("* {inviter} invites you to a DM {label}: /join {name} or /decline {name}");
                    } else {
                        println!("* {inviter} invites you to {label}: /join {name} or /decline {name}");
                    }
                }
                Event::Joined { group, .. } => {
                    let label = self.label_of(group);
                    println!("* joined {label} (added by your other device)");
                    self.activate_if_idle(&label);
                }
                Event::EpochAdvanced { group, epoch } => {
                    println!("* {} is now at epoch {epoch}", self.label_of(group))
                }
                Event::Removed { group } => {
                    let label = self.label_of(group);
                    println!("* you were removed from {label}");
                    if self.active.as_deref() == Some(label.as_str()) {
                        self.active = None;
                    }
                }
                Event::Proposal { group, from } => {
                    println!("* {}: proposal from {from}", self.label_of(group))
                }
                Event::Committed { group, epoch, what } => {
                    println!("* {}: {what} (epoch {epoch})", self.label_of(group))
                }
                Event::Undecryptable { from, reason, .. } => {
                    println!("! a message from {from} cannot be decrypted: {reason}")
                }
            }
        }
        for entry in self.session.take_unshown()? {
            self.print_line(&entry);
        }
        Ok(())
    }

    fn print_line(&self, entry: &HistoryEntry) {
        if self.active.as_deref() == Some(entry.conversation.as_str()) {
            println!("[{}] {}", entry.sender, entry.text);
        } else {
            println!("({}) [{}] {}", entry.conversation, entry.sender, entry.text);
        }
    }

    fn activate_if_idle(&mut self, label: &str) {
        if self.active.is_none() {
            self.active = Some(label.to_string());
            println!("* now talking in {label}");
        }
    }

    /// Processes queued messages and shows what they brought.
    async fn receive(&mut self, relay: &Relay, envelopes: Vec<pb::Envelope>) -> Step<()> {
        let events = self.session.receive(relay, envelopes).await?;
        self.show(&events)
    }

    /// Sends `text` to the active conversation.
    async fn send_text(&mut self, relay: &Relay, text: &str) -> Step<()> {
        if text.trim().is_empty() {
            println!("(empty line: nothing sent)");
            return Ok(());
        }
        if text.len() > MAX_TEXT {
            println!("! message too long ({} bytes; the limit is {MAX_TEXT}): not sent", text.len());
            return Ok(());
        }
        let Some(label) = self.active.clone() else {
            println!("! no active conversation: /dm <user>, /create-group <name> or /switch first");
            return Ok(());
        };
        if label == self.notepad() {
            let me = self.me.clone();
            self.session.state.record(HistoryEntry {
                conversation: label,
                sender: me,
                time: now(),
                text: text.into(),
                ..HistoryEntry::default()
            });
            return self.save();
        }
        let Some(group) = self.group_of(&label) else {
            println!("! {label} is gone; /switch to another conversation");
            self.active = None;
            return Ok(());
        };
        match self.session.send_text(relay, &group, text).await {
            Err(SessionError::NotPossible(why)) if why.contains("no other members") => {
                println!("! nobody else is in {label} yet: /invite <user>");
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// The keys of `user`, or a message saying there is no such user.
    async fn user_keys(&self, relay: &Relay, user: &str) -> Step<Option<Vec<[u8; 32]>>> {
        match resolve_peer(relay, user).await {
            Ok(keys) if !keys.is_empty() => Ok(Some(keys)),
            Ok(_) => {
                println!("! no user named {user} on this relay");
                Ok(None)
            }
            Err(e) => match e.downcast_ref::<RelayError>() {
                Some(r) if r.status() == Some(Status::NotFound) => {
                    println!("! no user named {user} on this relay");
                    Ok(None)
                }
                _ => Err(e),
            },
        }
    }

    /// Adds every device of `user` to `group`; `false` (after saying why)
    /// when nothing was added.
    async fn add(&mut self, relay: &Relay, group: &str, user: &str, keys: &[[u8; 32]]) -> Step<bool> {
        match self.session.add(relay, group, user, keys).await {
            Ok(_) => Ok(true),
            Err(SessionError::NotPossible(why)) => {
                println!("! {why}");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The active MLS group, or a message why there is none.
    fn active_group(&self, command: &str, dm_ok: bool) -> Option<(String, String)> {
        let Some(label) = self.active.clone() else {
            println!("! {command}: no active conversation (/switch #group first)");
            return None;
        };
        if label == self.notepad() {
            println!("! {command}: {label} is your local notepad, not a group");
            return None;
        }
        if label.starts_with('@') && !dm_ok {
            println!("! {command}: {label} is a DM; /create-group <name> for more people");
            return None;
        }
        let Some(group) = self.group_of(&label) else {
            println!("! {command}: {label} is gone");
            return None;
        };
        Some((label, group))
    }

    /// Accepts the invitation to the conversation `target` names (or the
    /// only one pending) and makes it active.
    fn accept(&mut self, target: Option<&str>) -> Step<()> {
        let pending: Vec<String> = self.session.state.invitations.iter().map(|i| i.group.clone()).collect();
        let group = match target {
            Some(t) => self.group_named(t).unwrap_or_default(),
            None => match pending.as_slice() {
                [only] => only.clone(),
                [] => {
                    println!("* no pending invitation");
                    return Ok(());
                }
                several => {
                    let labels: Vec<String> = several.iter().map(|g| self.label_of(g)).collect();
                    println!("! several invitations: /join one of {}", labels.join(", "));
                    return Ok(());
                }
            },
        };
        if !pending.contains(&group) {
            println!("! no pending invitation to {}", self.label_of(&group));
            return Ok(());
        }
        self.session.accept(&group)?;
        let label = self.label_of(&group);
        println!("* joined {label}");
        self.active = Some(label.clone());
        println!("* now talking in {label}");
        for entry in self.session.take_unshown()? {
            self.print_line(&entry);
        }
        Ok(())
    }

    /// Runs one slash command; `Ok(false)` ends the session.
    async fn command(&mut self, relay: &Relay, line: &str) -> Step<bool> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("/");
        let args: Vec<&str> = words.collect();
        let one = |args: &[&str]| if args.len() == 1 { Some(args[0].to_string()) } else { None };
        match command {
            "/quit" | "/exit" if args.is_empty() => return Ok(false),
            "/help" if args.is_empty() => {
                for (u, what) in HELP {
                    println!("  {u:<22} {what}");
                }
                println!("  a line without a slash goes to the active conversation");
            }
            "/dm" => match one(&args) {
                Some(user) => self.dm(relay, &user).await?,
                None => println!("{}", usage("/dm")),
            },
            "/create-group" => match one(&args) {
                Some(name) if name.starts_with(DM_PREFIX) || name.starts_with(['#', '@']) => {
                    println!("! a group name may not start with {DM_PREFIX:?}, '#' or '@'");
                }
                Some(name) => match self.session.state.member.create_group(&name) {
                    Ok(()) => {
                        self.save()?;
                        self.active = Some(format!("#{name}"));
                        println!("* created #{name}; /invite <user> to add members");
                    }
                    Err(e) => println!("! {e}"),
                },
                None => println!("{}", usage("/create-group")),
            },
            "/invite" => match one(&args) {
                Some(user) => {
                    let Some((label, group)) = self.active_group("/invite", false) else { return Ok(true) };
                    let Some(keys) = self.user_keys(relay, &user).await? else { return Ok(true) };
                    let members = self.session.state.member.members(&group)?;
                    if keys.iter().all(|k| members.contains(k)) {
                        println!("! {user} is already a member of {label}");
                        return Ok(true);
                    }
                    if self.add(relay, &group, &user, &keys).await? {
                        println!(
                            "* invited {user} to {label} (epoch {})",
                            self.session.state.member.epoch(&group)?
                        );
                    }
                }
                None => println!("{}", usage("/invite")),
            },
            "/remove" => match one(&args) {
                Some(user) => {
                    let Some((label, group)) = self.active_group("/remove", false) else { return Ok(true) };
                    if user == self.me {
                        println!("! to leave {label} yourself, use /leave");
                        return Ok(true);
                    }
                    let Some(keys) = self.user_keys(relay, &user).await? else { return Ok(true) };
                    let members = self.session.state.member.members(&group)?;
                    let targets: Vec<_> = keys.into_iter().filter(|k| members.contains(k)).collect();
                    if targets.is_empty() {
                        println!("! {user} is not a member of {label}");
                        return Ok(true);
                    }
                    match self.session.remove(relay, &group, &user, &targets).await {
                        Ok(epoch) => println!("* removed {user} from {label} (epoch {epoch})"),
                        Err(SessionError::NotPossible(why)) => println!("! {why}"),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => println!("{}", usage("/remove")),
            },
            "/update" if args.is_empty() => {
                let Some((label, group)) = self.active_group("/update", true) else { return Ok(true) };
                let epoch = self.session.update(relay, &group).await?;
                println!("* your key in {label} is rotated (epoch {epoch})");
            }
            "/leave" if args.is_empty() => {
                let Some((label, group)) = self.active_group("/leave", true) else { return Ok(true) };
                self.session.leave(relay, &group).await?;
                self.active = None;
                println!("* you left {label}");
            }
            "/join" if args.len() <= 1 => {
                if self.session.state.invitations.is_empty() {
                    let envelopes = relay.peek(0).await?;
                    self.receive(relay, envelopes).await?;
                }
                self.accept(args.first().copied())?;
            }
            "/decline" => match one(&args) {
                Some(target) => {
                    let group = self.group_named(&target).unwrap_or_default();
                    match self.session.decline(relay, &group).await {
                        Ok(()) => println!("* declined the invitation to {}", self.label_of(&group)),
                        Err(SessionError::NotPossible(why)) => println!("! {why}"),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => println!("{}", usage("/decline")),
            },
            "/invites" if args.is_empty() => {
                if self.session.state.invitations.is_empty() {
                    println!("* no pending invitations");
                }
                for invitation in self.session.state.invitations.clone() {
                    println!("  {} from {}", self.label_of(&invitation.group), invitation.inviter);
                }
            }
            "/switch" => match one(&args) {
                Some(target) if target.starts_with(['@', '#']) && target.len() > 1 => {
                    if target == self.notepad() || self.group_of(&target).is_some() {
                        println!("* now talking in {target}");
                        self.active = Some(target);
                    } else if let Some(user) = target.strip_prefix('@') {
                        println!("! no DM with {user} yet: /dm {user}");
                    } else {
                        println!("! no conversation {target} (see /list)");
                    }
                }
                _ => println!("{}", usage("/switch")),
            },
            "/list" | "/ls" if args.is_empty() => {
                let mark = |l: &str| if self.active.as_deref() == Some(l) { "*" } else { " " };
                let notepad = self.notepad();
                println!("{} {notepad} (notepad, local only)", mark(&notepad));
                for group in self.session.groups() {
                    let label = self.label_of(&group);
                    println!(
                        "{} {label} ({} members, epoch {})",
                        mark(&label),
                        self.session.state.member.members(&group)?.len(),
                        self.session.state.member.epoch(&group)?
                    );
                }
            }
            "/members" if args.is_empty() => {
                let Some(label) = self.active.clone() else {
                    println!("! /members: no active conversation");
                    return Ok(true);
                };
                if label == self.notepad() {
                    println!("members of {label}: {}", self.me);
                    return Ok(true);
                }
                let Some((_, group)) = self.active_group("/members", true) else { return Ok(true) };
                let mut names = BTreeSet::new();
                for key in self.session.state.member.members(&group)? {
                    names.insert(self.session.name(relay, &key).await);
                }
                println!("members of {label}: {}", names.into_iter().collect::<Vec<_>>().join(", "));
            }
            "/history" if args.len() <= 1 => {
                let n = match args.first().map(|a| a.parse::<usize>()) {
                    None => 20,
                    Some(Ok(n)) if n > 0 => n,
                    _ => {
                        println!("{}", usage("/history"));
                        return Ok(true);
                    }
                };
                let Some(label) = self.active.clone() else {
                    println!("! /history: no active conversation");
                    return Ok(true);
                };
                let lines = self.session.state.history_of(&label, n);
                println!("history of {label} ({} lines):", lines.len());
                for e in lines {
                    println!("  {} [{}] {}", clock(e.time), e.sender, e.text);
                }
            }
            "/whoami" if args.is_empty() => {
                let key = self.session.me();
                println!("username : {}", self.me);
                println!("identity_key : {}", hex::encode(key));
                println!("fingerprint : {}", hex::encode(Sha256::digest(key)));
                println!("relay : {}", self.common.server);
                match self.active.clone() {
                    Some(label) => match self.group_of(&label) {
                        Some(group) => {
                            println!("active : {label} (epoch {})", self.session.state.member.epoch(&group)?)
                        }
                        None => println!("active : {label}"),
                    },
                    None => println!("active : none"),
                }
            }
            "/quit" | "/exit" | "/help" | "/update" | "/leave" | "/join" | "/invites" | "/list" | "/ls"
            | "/members" | "/history" | "/whoami" => {
                println!("{}", usage(command));
            }
            other => {
                println!("! unknown command {other}; commands:");
                for (u, _) in HELP {
                    println!("  {u}");
                }
            }
        }
        Ok(true)
    }

    async fn dm(&mut self, relay: &Relay, user: &str) -> Step<()> {
        let label = format!("@{user}");
        if user == self.me {
            self.active = Some(label.clone());
            println!("* now talking in {label} (your notepad: it stays on this device)");
            return Ok(());
        }
        if user.starts_with(['@', '#']) || user.contains(':') {
            println!("{}", usage("/dm"));
            return Ok(());
        }
        let group = dm_group(&self.me, user);
        if self.session.is_pending(&group) {
            return self.accept(Some(&label));
        }
        if self.group_of(&label).is_some() {
            self.active = Some(label.clone());
            println!("* now talking in {label}");
            if self.session.state.member.members(&group)?.len() < 2 {
                // The peer left this DM: invite them back.
                let Some(keys) = self.user_keys(relay, user).await? else { return Ok(()) };
                if self.add(relay, &group, user, &keys).await? {
                    println!("* invited {user} back to {label}");
                }
            }
            return Ok(());
        }
        let Some(keys) = self.user_keys(relay, user).await? else { return Ok(()) };
        self.session.state.member.create_group(&group)?;
        if !self.add(relay, &group, user, &keys).await? {
            self.session.state.member.forget(&group)?;
            self.save()?;
            return Ok(());
        }
        self.active = Some(label.clone());
        println!("* DM with {user} started; now talking in {label}");
        Ok(())
    }

    /// One line typed by the user; `Ok(false)` ends the session.
    async fn line(&mut self, relay: &Relay, line: &str) -> Step<bool> {
        if !self.chat_mode && line.starts_with('/') {
            return self.command(relay, line).await;
        }
        self.send_text(relay, line).await?;
        Ok(true)
    }
}

/// Errors that end the session: the relay connection or the state file.
fn fatal(e: &(dyn Error + 'static)) -> bool {
    lost(e)
        || e.downcast_ref::<qpc::state::StateError>().is_some()
        || matches!(e.downcast_ref::<SessionError>(), Some(SessionError::State(_)))
}

/// A lost (or unreachable) relay: worth reconnecting to.
fn lost(e: &(dyn Error + 'static)) -> bool {
    matches!(e.downcast_ref::<RelayError>(), Some(RelayError::Lost(_) | RelayError::Unreachable { .. }))
        || e.downcast_ref::<SessionError>().is_some_and(SessionError::is_lost)
}

type Lines = mpsc::UnboundedReceiver<Option<String>>;

/// Why [`Session::serve`] returned.
enum Ended {
    Quit,
    Lost(Box<dyn Error>),
}

impl Repl<'_> {
    /// Reads typed lines and the queue until the user quits or the relay is
    /// lost; any other error is reported and the session goes on, except a
    /// state file that cannot be saved.
    async fn serve(&mut self, relay: &Relay, lines: &mut Lines) -> Result<Ended, Box<dyn Error>> {
        let mut wait = Box::pin(relay.fetch_wait(0, WAIT_MS));
        loop {
            tokio::select! {
                line = lines.recv() => {
                    let Some(Some(line)) = line else { return Ok(Ended::Quit) };
                    match self.line(relay, &line).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(Ended::Quit),
                        Err(e) if lost(e.as_ref()) => return Ok(Ended::Lost(e)),
                        Err(e) if fatal(e.as_ref()) => return Err(e),
                        Err(e) => println!("! {e}"),
                    }
                }
                fetched = &mut wait => {
                    let result = match fetched {
                        Ok(envelopes) => self.receive(relay, envelopes).await.map(|_| ()),
                        Err(e) => Err(e.into()),
                    };
                    match result {
                        Ok(()) => {}
                        Err(e) if lost(e.as_ref()) => return Ok(Ended::Lost(e)),
                        Err(e) if fatal(e.as_ref()) => return Err(e),
                        Err(e) => println!("! {e}"),
                    }
                    wait = Box::pin(relay.fetch_wait(0, WAIT_MS));
                }
            }
        }
    }

    /// Connects and logs in again, backing off, until it works or the user
    /// quits (`None`). Lines typed meanwhile are not sent, and say so.
    async fn reconnect(&mut self, password: &str, lines: &mut Lines) -> Option<Relay> {
        let mut delay = Duration::from_millis(250);
        loop {
            let attempt = async {
                let relay = connect_anonymous(self.common).await?;
                account::login(&relay, &self.me, password, &self.session.state.signing_key).await?;
                Ok::<Relay, Box<dyn Error>>(relay)
            };
            tokio::select! {
                line = lines.recv() => match line {
                    Some(Some(l)) if l.trim() != "/quit" && l.trim() != "/exit" => {
                        println!("! not connected to the relay (reconnecting): not sent");
                        continue;
                    }
                    _ => return None,
                },
                result = attempt => match result {
                    Ok(relay) => {
                        println!("* reconnected to the relay");
                        return Some(relay);
                    }
                    Err(e) if lost(e.as_ref()) => {}
                    Err(e) => println!("! reconnecting: {e}"),
                },
            }
            tokio::select! {
                line = lines.recv() => match line {
                    Some(Some(l)) if l.trim() != "/quit" && l.trim() != "/exit" => {
                        println!("! not connected to the relay (reconnecting): not sent");
                    }
                    _ => return None,
                },
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// `qpc repl` (no target) and `qpc chat --to TARGET`.
pub async fn run(c: &Common, target: Option<&str>) -> Outcome {
    c.username.as_deref().ok_or("--username is required")?;
    let _lock = StateLock::take(&c.state)?;
    let password = password_from(c.password.clone())?;
    let (relay, state, me) = sign_in(c, &password).await?;
    let mut repl =
        Repl { common: c, session: Session::new(state), me, active: None, chat_mode: target.is_some() };
    // What is still to be sent, and KeyPackages for peers to invite us with.
    let events = repl.session.start(&relay).await?;
    if target.is_none() {
        println!("type /help for the commands");
    }
    // Then what arrived while we were away.
    repl.show(&events)?;
    let queued = relay.peek(0).await?;
    repl.receive(&relay, queued).await?;
    if let Some(target) = target {
        if let Some(user) = target.strip_prefix('@').or((!target.starts_with('#')).then_some(target)) {
            repl.dm(&relay, user).await?;
        } else if repl.session.is_pending(target.trim_start_matches('#')) {
            repl.accept(Some(target))?;
        } else if repl.group_of(target).is_some() {
            repl.active = Some(target.to_string());
        } else {
            return Err(format!("no conversation {target}").into());
        }
        if repl.active.is_none() {
            return Err(format!("cannot open a conversation with {target}").into());
        }
    }

    let mut lines = stdin_lines();
    let mut relay = relay;
    loop {
        match repl.serve(&relay, &mut lines).await? {
            Ended::Quit => break,
            Ended::Lost(e) => {
                println!("! {e}; reconnecting");
                match repl.reconnect(&password, &mut lines).await {
                    Some(fresh) => {
                        relay = fresh;
                        // What did not go out before the connection broke.
                        let events = repl.session.flush_outbox(&relay).await?;
                        repl.show(&events)?;
                    }
                    None => {
                        repl.save()?;
                        return Ok(());
                    }
                }
            }
        }
    }
    repl.save()?;
    relay.close().await;
    Ok(())
}

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

use std::collections::{BTreeSet, HashMap};
use std::error::Error;
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qpc::account::{self, AccountError};
use qpc::relay::{Relay, RelayError};
use qpc::session::{dm_group, Event, Session, SessionError, DM_PREFIX};
use qpc::state::{password_from, HistoryEntry, State, StateLock};
use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::commands::{connect_anonymous, resolve_peer};
use crate::output::{self, say};
use crate::{render, Common};

type Outcome = Result<(), Box<dyn Error>>;

/// Longest message text sent, in bytes; longer lines are refused.
pub const MAX_TEXT: usize = 64 * 1024;

/// How long one FetchWait waits before it is asked again (the relay may cap it).
const WAIT_MS: u32 = 25_000;

/// At most one typing signal this often while a line is being typed.
const TYPING_EVERY: Duration = Duration::from_secs(3);

/// `* bob is typing` at most this often per person and conversation.
const TYPING_SHOWN_EVERY: Duration = Duration::from_secs(5);

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
    ("/reply <n> <text>", "answer message n of the active conversation"),
    ("/react <n> <emoji>", "react to message n (again to take it back)"),
    ("/edit <n> <text>", "change the text of your message n, for everyone"),
    ("/delete <n>", "delete your message n for everyone"),
    ("/send-file <path>", "encrypt a file and send it to the active conversation"),
    ("/save <n> [path]", "download, decrypt and check the file of message n"),
    ("/presence on|off", "share online / last seen (and see others'), or not"),
    ("/report <user> [reason]", "report a user to the relay's owner (never your messages)"),
    ("/verify <user>", "the safety number with user, to compare; marks them verified"),
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

/// What the person does: a line, a keystroke in a line being typed (for
/// the typing signal), or the end of input.
enum Input {
    Line(String),
    Typing,
    End,
}

/// The person's input, read on its own thread: through the line editor
/// (history on the arrow keys, editing, incoming lines printed above the
/// line being typed) on a terminal, else plain lines (a pipe, `--json`).
fn input(json: bool) -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    if !json && std::io::stdin().is_terminal() && line_editor(tx.clone()).is_ok() {
        return rx;
    }
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Input::End);
                    return;
                }
                Ok(_) => {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    if tx.send(Input::Line(String::from_utf8_lossy(&buf).into_owned())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Tells the session when a text line is being typed (rustyline asks for a
/// hint after every keystroke), at most every couple of seconds.
struct TypingHints {
    tx: mpsc::UnboundedSender<Input>,
    last: std::cell::Cell<Option<Instant>>,
}

impl rustyline::hint::Hinter for TypingHints {
    type Hint = String;

    fn hint(&self, line: &str, _pos: usize, _ctx: &rustyline::Context<'_>) -> Option<String> {
        let due = self.last.get().is_none_or(|t| t.elapsed() >= TYPING_EVERY);
        if !line.is_empty() && !line.starts_with('/') && due {
            self.last.set(Some(Instant::now()));
            let _ = self.tx.send(Input::Typing);
        }
        None
    }
}
impl rustyline::completion::Completer for TypingHints {
    type Candidate = String;
}
impl rustyline::highlight::Highlighter for TypingHints {}
impl rustyline::validate::Validator for TypingHints {}
impl rustyline::Helper for TypingHints {}

fn line_editor(tx: mpsc::UnboundedSender<Input>) -> rustyline::Result<()> {
    let mut editor: rustyline::Editor<TypingHints, rustyline::history::DefaultHistory> =
        rustyline::Editor::new()?;
    editor.set_helper(Some(TypingHints { tx: tx.clone(), last: std::cell::Cell::new(None) }));
    output::set_printer(Box::new(editor.create_external_printer()?));
    std::thread::spawn(move || loop {
        match editor.readline("> ") {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                if tx.send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Err(_) => {
                let _ = tx.send(Input::End);
                return;
            }
        }
    });
    Ok(())
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
            say!("! {warning}");
        }
        account::login(&relay, &username, &password, &state.signing_key).await?;
        say!("signed in as {username}");
        state
    } else {
        let mut state = State::generate_protected(&c.state, Some(&username), &password);
        match account::register(&relay, &username, &password, "", &state.signing_key).await {
            Ok(()) => say!("registered and signed in as {username}"),
            Err(AccountError::Relay(e)) if e.status() == Some(Status::Conflict) => {
                account::login(&relay, &username, &password, &state.signing_key).await?;
                say!("signed in as {username} (new device)");
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
    /// When `* X is typing` was last shown, per conversation and person.
    typing_shown: HashMap<(String, String), Instant>,
    /// Who is online, and since when they were last seen (this run only).
    presence: HashMap<String, (bool, u64)>,
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
            if output::is_json() {
                if let Event::Presence { by, online, last_seen } = event {
                    self.presence.insert(by.clone(), (*online, *last_seen));
                }
                output::emit(render::event_json(event));
                continue;
            }
            match event {
                Event::Invited { group, inviter } => {
                    let label = self.label_of(group);
                    let name = if label.starts_with('@') { label.clone() } else { group.clone() };
                    if label.starts_with('@') {
                        say!("* {inviter} invites you to a DM {label}: /join {name} or /decline {name}");
                    } else {
                        say!("* {inviter} invites you to {label}: /join {name} or /decline {name}");
                    }
                }
                Event::Joined { group, .. } => {
                    let label = self.label_of(group);
                    say!("* joined {label} (added by your other device)");
                    self.activate_if_idle(&label);
                }
                Event::EpochAdvanced { group, epoch } => {
                    say!("* {} is now at epoch {epoch}", self.label_of(group))
                }
                Event::Removed { group } => {
                    let label = self.label_of(group);
                    say!("* you were removed from {label}");
                    if self.active.as_deref() == Some(label.as_str()) {
                        self.active = None;
                    }
                }
                Event::Proposal { group, from } => say!("* {}: proposal from {from}", self.label_of(group)),
                Event::Committed { group, epoch, what } => {
                    say!("* {}: {what} (epoch {epoch})", self.label_of(group))
                }
                Event::Undecryptable { from, reason, .. } => {
                    say!("! a message from {from} cannot be decrypted: {reason}")
                }
                Event::Refused { conversation, from, why } => say!("! {conversation}: {from} {why}"),
                Event::Typing { conversation, by, active: true } => {
                    let key = (conversation.clone(), by.clone());
                    let due = self.typing_shown.get(&key).is_none_or(|t| t.elapsed() >= TYPING_SHOWN_EVERY);
                    if due && self.active.as_deref() == Some(conversation.as_str()) {
                        self.typing_shown.insert(key, Instant::now());
                        say!("* {by} is typing");
                    }
                }
                Event::Typing { conversation, by, active: false } => {
                    self.typing_shown.remove(&(conversation.clone(), by.clone()));
                }
                Event::Presence { by, online, last_seen } => {
                    self.presence.insert(by.clone(), (*online, *last_seen));
                    if *online {
                        say!("* {by} is online");
                    } else {
                        say!("* {by} went away ({})", clock(*last_seen));
                    }
                }
                other => {
                    if let Some(line) = render::event_line(other) {
                        for line in line.lines() {
                            match line.strip_prefix("* ") {
                                Some(notice) => say!("* {notice}"),
                                None => say!("* {line}"),
                            }
                        }
                    }
                }
            }
        }
        for entry in self.session.take_unshown()? {
            self.print_line(&entry);
        }
        Ok(())
    }

    fn print_line(&self, entry: &HistoryEntry) {
        if output::is_json() {
            output::emit(render::message_json(&self.session, entry));
        } else {
            say!("{}", render::live_line(&self.session, entry, self.active.as_deref()));
        }
    }

    /// An error for the person (an error object under `--json`).
    fn error(&self, message: &str) {
        if output::is_json() {
            output::emit(render::error_json(message));
        } else {
            say!("! {message}");
        }
    }

    /// Tells the active conversation that we are typing (or stopped).
    async fn typing(&mut self, relay: &Relay, active: bool) {
        let Some(group) = self.active.clone().and_then(|label| self.group_of(&label)) else { return };
        let body = qpc::content::Body::Typing(qpc::content::Typing { active });
        // A signal is a courtesy: a failure to send one is not worth a word.
        let _ = self.session.send_signal(relay, &group, body).await;
    }

    fn activate_if_idle(&mut self, label: &str) {
        if self.active.is_none() {
            self.active = Some(label.to_string());
            say!("* now talking in {label}");
        }
    }

    /// Processes queued messages and shows what they brought.
    async fn receive(&mut self, relay: &Relay, envelopes: Vec<pb::Envelope>) -> Step<()> {
        // Shown once saved, before the ack and the upkeep (see Session::read).
        let read = self.session.read(relay, envelopes).await?;
        self.show(&read)?;
        let settled = self.session.settle(relay, &read).await?;
        self.show(&settled)?;
        // Read where it was shown in the active conversation, else delivered.
        let active = self.active.as_deref().and_then(|label| self.group_of(label));
        self.session.send_receipts(relay, &|group| active.as_deref() == Some(group)).await?;
        Ok(())
    }

    /// Sends `text` to the active conversation.
    async fn send_text(&mut self, relay: &Relay, text: &str) -> Step<()> {
        self.send(relay, text, |text| qpc::content::Content::text(text, None)).await
    }

    /// Sends a text-bearing message built by `make` to the active
    /// conversation, after the checks every line gets.
    async fn send(
        &mut self,
        relay: &Relay,
        text: &str,
        make: impl FnOnce(&str) -> qpc::content::Content,
    ) -> Step<()> {
        if text.trim().is_empty() {
            say!("(empty line: nothing sent)");
            return Ok(());
        }
        if text.len() > MAX_TEXT {
            self.error(&format!(
                "message too long ({} bytes; the limit is {MAX_TEXT}): not sent",
                text.len()
            ));
            return Ok(());
        }
        let Some(label) = self.active.clone() else {
            self.error("no active conversation: /dm <user>, /create-group <name> or /switch first");
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
            self.error(&format!("{label} is gone; /switch to another conversation"));
            self.active = None;
            return Ok(());
        };
        self.typing(relay, false).await;
        match self.session.send_content(relay, &group, make(text)).await {
            Ok(id) => {
                let seq = self.session.state.history.iter().rev().find(|e| e.id == id).map(|e| e.seq);
                output::emit(
                    serde_json::json!({"type": "sent", "conversation": label, "seq": seq, "id": hex::encode(id)}),
                );
                Ok(())
            }
            Err(SessionError::NotPossible(why)) if why.contains("no other members") => {
                self.error(&format!("nobody else is in {label} yet: /invite <user>"));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Message `n` of the active conversation, or a word why there is none.
    fn message(&self, command: &str, n: &str) -> Option<(String, HistoryEntry)> {
        let Some(label) = self.active.clone() else {
            self.error(&format!("{command}: no active conversation"));
            return None;
        };
        let Some(entry) = n
            .trim_start_matches('#')
            .parse::<u64>()
            .ok()
            .and_then(|n| self.session.state.message_at(&label, n))
        else {
            self.error(&format!("{command}: there is no message {n} in {label} (see /history)"));
            return None;
        };
        if entry.id.is_empty() {
            self.error(&format!("{command}: message {n} in {label} is local only"));
            return None;
        }
        Some((label, entry.clone()))
    }

    /// `/reply N text`, `/react N emoji`, `/edit N text`, `/delete N`: a
    /// message about message N of the active conversation.
    async fn about(&mut self, relay: &Relay, command: &str, n: &str, rest: &str) -> Step<()> {
        use qpc::content::{Body, Content, Delete, Edit, Reaction};
        let Some((label, entry)) = self.message(command, n) else { return Ok(()) };
        let mine = entry.sender == self.me;
        let target = entry.id.clone();
        let content = match command {
            "/reply" => {
                let target: Option<[u8; 16]> = target.as_slice().try_into().ok();
                return self.send(relay, rest, |text| Content::text(text, target)).await;
            }
            "/react" if rest.is_empty() || rest.contains(char::is_whitespace) => {
                self.error(&usage("/react"));
                return Ok(());
            }
            "/react" => {
                // Reacting again with the same emoji takes it back.
                let remove = entry.reactions.iter().any(|m| m.emoji == rest && m.by == self.me);
                Content::new(Body::Reaction(Reaction { target, emoji: rest.into(), remove }))
            }
            "/edit" | "/delete" if !mine => {
                self.error(&format!("{command}: message {n} in {label} is {}'s, not yours", entry.sender));
                return Ok(());
            }
            "/edit" if rest.trim().is_empty() => {
                self.error(&usage("/edit"));
                return Ok(());
            }
            "/edit" => Content::new(Body::Edit(Edit { target, text: rest.into() })),
            _ => Content::new(Body::Delete(Delete { target })),
        };
        let Some(group) = self.group_of(&label) else { return Ok(()) };
        match self.session.send_content(relay, &group, content).await {
            Ok(_) | Err(SessionError::NotPossible(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(entry) = self.session.state.message_at(&label, entry.seq) {
            say!("{}", render::history_line(&self.session, entry, &clock(entry.time)));
        }
        self.save()
    }

    /// `/send-file PATH`: the file to the active conversation.
    async fn send_file(&mut self, relay: &Relay, path: &str) -> Step<()> {
        let Some((label, group)) = self.active_group("/send-file", true) else { return Ok(()) };
        match crate::files::upload_to_group(&mut self.session, relay, &group, std::path::Path::new(path))
            .await
        {
            Ok((name, size)) => say!("* sent {name} ({}) to {label}", render::size(size)),
            Err(e) => self.error(&format!("/send-file: {e}")),
        }
        self.save()
    }

    /// `/save N [PATH]`: the file of message N of the active conversation.
    async fn save_file(&mut self, relay: &Relay, n: &str, path: Option<&&str>) -> Step<()> {
        let Some((_, entry)) = self.message("/save", n) else { return Ok(()) };
        let Some(file) = entry.file.as_ref().filter(|_| !entry.deleted) else {
            self.error(&format!("/save: message {n} is not a file"));
            return Ok(());
        };
        match crate::files::download_to(relay, file, path.map(|p| std::path::Path::new(*p))).await {
            Ok(dest) => say!("* saved {} ({}) to {}", file.name, render::size(file.size), dest.display()),
            Err(e) => self.error(&format!("/save: {e}")),
        }
        Ok(())
    }

    /// The keys of `user`, or a message saying there is no such user.
    async fn user_keys(&mut self, relay: &Relay, user: &str) -> Step<Option<Vec<[u8; 32]>>> {
        match resolve_peer(&mut self.session, relay, user).await {
            Ok(keys) if !keys.is_empty() => Ok(Some(keys)),
            Ok(_) => {
                say!("! no user named {user} on this relay");
                Ok(None)
            }
            Err(e) => match e.downcast_ref::<RelayError>() {
                Some(r) if r.status() == Some(Status::NotFound) => {
                    say!("! no user named {user} on this relay");
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
                say!("! {why}");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The active MLS group, or a message why there is none.
    fn active_group(&self, command: &str, dm_ok: bool) -> Option<(String, String)> {
        let Some(label) = self.active.clone() else {
            say!("! {command}: no active conversation (/switch #group first)");
            return None;
        };
        if label == self.notepad() {
            say!("! {command}: {label} is your local notepad, not a group");
            return None;
        }
        if label.starts_with('@') && !dm_ok {
            say!("! {command}: {label} is a DM; /create-group <name> for more people");
            return None;
        }
        let Some(group) = self.group_of(&label) else {
            say!("! {command}: {label} is gone");
            return None;
        };
        Some((label, group))
    }

    /// Accepts the invitation to the conversation `target` names (or the
    /// only one pending) and makes it active.
    async fn accept(&mut self, relay: &Relay, target: Option<&str>) -> Step<()> {
        let pending: Vec<String> = self.session.state.invitations.iter().map(|i| i.group.clone()).collect();
        let group = match target {
            Some(t) => self.group_named(t).unwrap_or_default(),
            None => match pending.as_slice() {
                [only] => only.clone(),
                [] => {
                    say!("* no pending invitation");
                    return Ok(());
                }
                several => {
                    let labels: Vec<String> = several.iter().map(|g| self.label_of(g)).collect();
                    say!("! several invitations: /join one of {}", labels.join(", "));
                    return Ok(());
                }
            },
        };
        if !pending.contains(&group) {
            say!("! no pending invitation to {}", self.label_of(&group));
            return Ok(());
        }
        self.session.accept(&group)?;
        self.session.share_delivery_token(relay).await?;
        let label = self.label_of(&group);
        say!("* joined {label}");
        self.active = Some(label.clone());
        say!("* now talking in {label}");
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
                    say!("  {u:<22} {what}");
                }
                say!("  a line without a slash goes to the active conversation");
            }
            "/dm" => match one(&args) {
                Some(user) => self.dm(relay, &user).await?,
                None => say!("{}", usage("/dm")),
            },
            "/create-group" => match one(&args) {
                Some(name) if name.starts_with(DM_PREFIX) || name.starts_with(['#', '@']) => {
                    say!("! a group name may not start with {DM_PREFIX:?}, '#' or '@'");
                }
                Some(name) => match self.session.state.member.create_group_with(&name, qpc::mls::Suite::Pq) {
                    Ok(()) => {
                        self.save()?;
                        self.active = Some(format!("#{name}"));
                        say!("* created #{name}; /invite <user> to add members");
                    }
                    Err(e) => say!("! {e}"),
                },
                None => say!("{}", usage("/create-group")),
            },
            "/invite" => match one(&args) {
                Some(user) => {
                    let Some((label, group)) = self.active_group("/invite", false) else { return Ok(true) };
                    let Some(keys) = self.user_keys(relay, &user).await? else { return Ok(true) };
                    let members = self.session.state.member.members(&group)?;
                    if keys.iter().all(|k| members.contains(k)) {
                        say!("! {user} is already a member of {label}");
                        return Ok(true);
                    }
                    if self.add(relay, &group, &user, &keys).await? {
                        say!(
                            "* invited {user} to {label} (epoch {})",
                            self.session.state.member.epoch(&group)?
                        );
                    }
                }
                None => say!("{}", usage("/invite")),
            },
            "/remove" => match one(&args) {
                Some(user) => {
                    let Some((label, group)) = self.active_group("/remove", false) else { return Ok(true) };
                    if user == self.me {
                        say!("! to leave {label} yourself, use /leave");
                        return Ok(true);
                    }
                    let Some(keys) = self.user_keys(relay, &user).await? else { return Ok(true) };
                    let members = self.session.state.member.members(&group)?;
                    let targets: Vec<_> = keys.into_iter().filter(|k| members.contains(k)).collect();
                    if targets.is_empty() {
                        say!("! {user} is not a member of {label}");
                        return Ok(true);
                    }
                    match self.session.remove(relay, &group, &user, &targets).await {
                        Ok(epoch) => say!("* removed {user} from {label} (epoch {epoch})"),
                        Err(SessionError::NotPossible(why)) => say!("! {why}"),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => say!("{}", usage("/remove")),
            },
            "/update" if args.is_empty() => {
                let Some((label, group)) = self.active_group("/update", true) else { return Ok(true) };
                let epoch = self.session.update(relay, &group).await?;
                say!("* your key in {label} is rotated (epoch {epoch})");
            }
            "/leave" if args.is_empty() => {
                let Some((label, group)) = self.active_group("/leave", true) else { return Ok(true) };
                self.session.leave(relay, &group).await?;
                self.active = None;
                say!("* you left {label}");
            }
            "/join" if args.len() <= 1 => {
                if self.session.state.invitations.is_empty() {
                    let envelopes = relay.peek(0).await?;
                    self.receive(relay, envelopes).await?;
                }
                self.accept(relay, args.first().copied()).await?;
            }
            "/decline" => match one(&args) {
                Some(target) => {
                    let group = self.group_named(&target).unwrap_or_default();
                    match self.session.decline(relay, &group).await {
                        Ok(()) => say!("* declined the invitation to {}", self.label_of(&group)),
                        Err(SessionError::NotPossible(why)) => say!("! {why}"),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => say!("{}", usage("/decline")),
            },
            "/report" if !args.is_empty() => {
                let (user, reason) = (args[0], args[1..].join(" "));
                match relay.report(user, &reason).await {
                    Ok(id) => say!("* reported {user} to the relay's owner (report {id})"),
                    Err(e) if e.status().is_some() => say!("! {e}"),
                    Err(e) => return Err(e.into()),
                }
            }
            "/invites" if args.is_empty() => {
                if self.session.state.invitations.is_empty() {
                    say!("* no pending invitations");
                }
                for invitation in self.session.state.invitations.clone() {
                    say!("  {} from {}", self.label_of(&invitation.group), invitation.inviter);
                }
            }
            "/switch" => match one(&args) {
                Some(target) if target.starts_with(['@', '#']) && target.len() > 1 => {
                    if target == self.notepad() || self.group_of(&target).is_some() {
                        say!("* now talking in {target}");
                        self.active = Some(target);
                    } else if let Some(user) = target.strip_prefix('@') {
                        say!("! no DM with {user} yet: /dm {user}");
                    } else {
                        say!("! no conversation {target} (see /list)");
                    }
                }
                _ => say!("{}", usage("/switch")),
            },
            "/list" | "/ls" if args.is_empty() => {
                let mark = |l: &str| if self.active.as_deref() == Some(l) { "*" } else { " " };
                let notepad = self.notepad();
                say!("{} {notepad} (notepad, local only)", mark(&notepad));
                for group in self.session.groups() {
                    let label = self.label_of(&group);
                    say!(
                        "{} {label} ({} members, epoch {})",
                        mark(&label),
                        self.session.state.member.members(&group)?.len(),
                        self.session.state.member.epoch(&group)?
                    );
                }
            }
            "/members" if args.is_empty() => {
                let Some(label) = self.active.clone() else {
                    say!("! /members: no active conversation");
                    return Ok(true);
                };
                if label == self.notepad() {
                    say!("members of {label}: {}", self.me);
                    return Ok(true);
                }
                let Some((_, group)) = self.active_group("/members", true) else { return Ok(true) };
                let mut names = BTreeSet::new();
                for key in self.session.state.member.members(&group)? {
                    names.insert(self.session.name(relay, &key).await);
                }
                let shown: Vec<String> = names
                    .into_iter()
                    .map(|name| match self.presence.get(&name) {
                        Some((true, _)) => format!("{name} (online)"),
                        Some((false, seen)) => format!("{name} (last seen {})", clock(*seen)),
                        None => name,
                    })
                    .collect();
                say!("members of {label}: {}", shown.join(", "));
            }
            "/reply" | "/edit" if args.len() >= 2 => {
                let rest = line.splitn(3, char::is_whitespace).nth(2).unwrap_or_default().trim().to_string();
                self.about(relay, command, args[0], &rest).await?;
            }
            "/react" if args.len() == 2 => self.about(relay, command, args[0], args[1]).await?,
            "/delete" if args.len() == 1 => self.about(relay, command, args[0], "").await?,
            "/presence" if args.len() == 1 && matches!(args[0], "on" | "off") => {
                let on = args[0] == "on";
                if !on {
                    self.session.announce_presence(relay, false).await?;
                }
                self.session.state.presence = on;
                self.save()?;
                if on {
                    self.session.announce_presence(relay, true).await?;
                    say!("* presence on: your contacts see when you are online, and you see theirs");
                } else {
                    self.presence.clear();
                    say!("* presence off: nobody sees when you are online, and you see nobody's");
                }
            }
            "/verify" if args.len() == 1 => {
                match crate::transparency::verify_lines(&mut self.session, relay, args[0]).await {
                    Ok(lines) => lines.iter().for_each(|l| say!("{l}")),
                    Err(e) => self.error(&format!("/verify {}: {e}", args[0])),
                }
            }
            "/send-file" if args.len() == 1 => self.send_file(relay, args[0]).await?,
            "/save" if (1..=2).contains(&args.len()) => self.save_file(relay, args[0], args.get(1)).await?,
            "/history" if args.len() <= 1 => {
                let n = match args.first().map(|a| a.parse::<usize>()) {
                    None => 20,
                    Some(Ok(n)) if n > 0 => n,
                    _ => {
                        say!("{}", usage("/history"));
                        return Ok(true);
                    }
                };
                let Some(label) = self.active.clone() else {
                    say!("! /history: no active conversation");
                    return Ok(true);
                };
                let lines = self.session.state.history_of(&label, n);
                say!("history of {label} ({} lines):", lines.len());
                for e in lines {
                    say!("{}", render::history_line(&self.session, e, &clock(e.time)));
                }
            }
            "/whoami" if args.is_empty() => {
                let key = self.session.me();
                say!("username : {}", self.me);
                say!("identity_key : {}", hex::encode(key));
                say!("fingerprint : {}", hex::encode(Sha256::digest(key)));
                say!("relay : {}", self.common.server);
                match self.active.clone() {
                    Some(label) => match self.group_of(&label) {
                        Some(group) => {
                            say!("active : {label} (epoch {})", self.session.state.member.epoch(&group)?);
                            say!("suite : {}", self.session.state.member.suite(&group)?.describe());
                        }
                        None => say!("active : {label}"),
                    },
                    None => say!("active : none"),
                }
            }
            "/quit" | "/exit" | "/help" | "/update" | "/leave" | "/join" | "/invites" | "/list" | "/ls"
            | "/members" | "/history" | "/whoami" | "/reply" | "/edit" | "/react" | "/delete"
            | "/presence" | "/report" | "/verify" => {
                say!("{}", usage(command));
            }
            other => {
                say!("! unknown command {other}; commands:");
                for (u, _) in HELP {
                    say!("  {u}");
                }
            }
        }
        Ok(true)
    }

    async fn dm(&mut self, relay: &Relay, user: &str) -> Step<()> {
        let label = format!("@{user}");
        if user == self.me {
            self.active = Some(label.clone());
            say!("* now talking in {label} (your notepad: it stays on this device)");
            return Ok(());
        }
        if user.starts_with(['@', '#']) || user.contains(':') {
            say!("{}", usage("/dm"));
            return Ok(());
        }
        let group = dm_group(&self.me, user);
        if self.session.is_pending(&group) {
            return self.accept(relay, Some(&label)).await;
        }
        if self.group_of(&label).is_some() {
            self.active = Some(label.clone());
            say!("* now talking in {label}");
            if self.session.state.member.members(&group)?.len() < 2 {
                // The peer left this DM: invite them back.
                let Some(keys) = self.user_keys(relay, user).await? else { return Ok(()) };
                if self.add(relay, &group, user, &keys).await? {
                    say!("* invited {user} back to {label}");
                }
            }
            return Ok(());
        }
        let Some(keys) = self.user_keys(relay, user).await? else { return Ok(()) };
        self.session.state.member.create_group_with(&group, qpc::mls::Suite::Pq)?;
        if !self.add(relay, &group, user, &keys).await? {
            self.session.state.member.forget(&group)?;
            self.save()?;
            return Ok(());
        }
        self.active = Some(label.clone());
        say!("* DM with {user} started; now talking in {label}");
        Ok(())
    }

    /// One line typed by the user; `Ok(false)` ends the session.
    async fn line(&mut self, relay: &Relay, line: &str) -> Step<bool> {
        if output::is_json() {
            self.json_line(relay, line).await?;
            return Ok(true);
        }
        if !self.chat_mode && line.starts_with('/') {
            return self.command(relay, line).await;
        }
        self.send_text(relay, line).await?;
        Ok(true)
    }

    /// One JSON object from a script (`qpc chat --json`; the README lists
    /// them): send, reply, react, edit, delete, typing. A line that is not
    /// one gets an error object, and the session goes on.
    async fn json_line(&mut self, relay: &Relay, line: &str) -> Step<()> {
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(e) => {
                self.error(&format!("not a JSON object ({e}): {line}"));
                return Ok(());
            }
        };
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let seq = value.get("seq").and_then(|v| v.as_u64()).map(|n| n.to_string());
        let kind = field("type").unwrap_or_default();
        match (kind.as_str(), seq) {
            ("send", _) => match (field("text"), value.get("reply_to").and_then(|v| v.as_u64())) {
                (Some(text), None) => self.send_text(relay, &text).await?,
                (Some(text), Some(n)) => self.about(relay, "/reply", &n.to_string(), &text).await?,
                (None, _) => self.error("send needs \"text\""),
            },
            ("react", Some(n)) => match field("emoji") {
                Some(emoji) => self.about(relay, "/react", &n, &emoji).await?,
                None => self.error("react needs \"emoji\""),
            },
            ("edit", Some(n)) => match field("text") {
                Some(text) => self.about(relay, "/edit", &n, &text).await?,
                None => self.error("edit needs \"text\""),
            },
            ("delete", Some(n)) => self.about(relay, "/delete", &n, "").await?,
            ("typing", _) => {
                let active = value.get("active").and_then(|v| v.as_bool()).unwrap_or(true);
                self.typing(relay, active).await;
            }
            ("react" | "edit" | "delete", None) => {
                self.error(&format!("{kind} needs \"seq\": the message's number"))
            }
            _ => self.error(&format!("unknown \"type\" {kind:?}: one of send, react, edit, delete, typing")),
        }
        Ok(())
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

type Lines = mpsc::UnboundedReceiver<Input>;

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
                input = lines.recv() => {
                    let line = match input {
                        Some(Input::Line(line)) => line,
                        Some(Input::Typing) => {
                            self.typing(relay, true).await;
                            continue;
                        }
                        Some(Input::End) | None => return Ok(Ended::Quit),
                    };
                    match self.line(relay, &line).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(Ended::Quit),
                        Err(e) if lost(e.as_ref()) => return Ok(Ended::Lost(e)),
                        Err(e) if fatal(e.as_ref()) => return Err(e),
                        Err(e) => self.error(&e.to_string()),
                    }
                }
                pushed = relay.next_event() => {
                    match pushed {
                        Ok((event, payload)) if event == qpc_proto::Event::Signal.id() => {
                            if let Ok(signal) = <pb::SignalEvent as prost::Message>::decode(payload.as_slice()) {
                                if let Some(event) = self.session.read_signal(relay, &signal.payload).await {
                                    self.show(&[event])?;
                                }
                            }
                        }
                        // A new message: the FetchWait below has it already.
                        Ok(_) => {}
                        Err(e) => return Ok(Ended::Lost(e.into())),
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
                        Err(e) => self.error(&e.to_string()),
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
                    Some(Input::Typing) => continue,
                    Some(Input::Line(l)) if l.trim() != "/quit" && l.trim() != "/exit" => {
                        say!("! not connected to the relay (reconnecting): not sent");
                        continue;
                    }
                    _ => return None,
                },
                result = attempt => match result {
                    Ok(relay) => {
                        say!("* reconnected to the relay");
                        return Some(relay);
                    }
                    Err(e) if lost(e.as_ref()) => {}
                    Err(e) => say!("! reconnecting: {e}"),
                },
            }
            tokio::select! {
                line = lines.recv() => match line {
                    Some(Input::Typing) => {}
                    Some(Input::Line(l)) if l.trim() != "/quit" && l.trim() != "/exit" => {
                        say!("! not connected to the relay (reconnecting): not sent");
                    }
                    _ => return None,
                },
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// `qpc repl` (no target) and `qpc chat --to TARGET` (with `--json`, one
/// JSON object per line both ways).
pub async fn run(c: &Common, target: Option<&str>, json: bool) -> Outcome {
    output::set_json(json);
    c.username.as_deref().ok_or("--username is required")?;
    let _lock = StateLock::take(&c.state)?;
    let password = password_from(c.password.clone())?;
    let (relay, state, me) = sign_in(c, &password).await?;
    let mut repl = Repl {
        common: c,
        session: Session::new(state),
        me,
        active: None,
        chat_mode: target.is_some(),
        typing_shown: HashMap::new(),
        presence: HashMap::new(),
    };
    // What is still to be sent, and KeyPackages for peers to invite us with.
    let events = repl.session.start(&relay).await?;
    if target.is_none() {
        say!("type /help for the commands");
    }
    // Then what arrived while we were away.
    repl.show(&events)?;
    let queued = relay.peek(0).await?;
    repl.receive(&relay, queued).await?;
    if let Some(target) = target {
        if let Some(user) = target.strip_prefix('@').or((!target.starts_with('#')).then_some(target)) {
            repl.dm(&relay, user).await?;
        } else if repl.session.is_pending(target.trim_start_matches('#')) {
            repl.accept(&relay, Some(target)).await?;
        } else if repl.group_of(target).is_some() {
            repl.active = Some(target.to_string());
        } else {
            return Err(format!("no conversation {target}").into());
        }
        if repl.active.is_none() {
            return Err(format!("cannot open a conversation with {target}").into());
        }
    }
    repl.session.announce_presence(&relay, true).await?;

    let mut lines = input(json);
    let mut relay = relay;
    loop {
        match repl.serve(&relay, &mut lines).await? {
            Ended::Quit => break,
            Ended::Lost(e) => {
                say!("! {e}; reconnecting");
                match repl.reconnect(&password, &mut lines).await {
                    Some(fresh) => {
                        relay = fresh;
                        // What did not go out before the connection broke
                        // (if this fails too, the next line typed tries again).
                        match repl.session.flush_outbox(&relay).await {
                            Ok(events) => repl.show(&events)?,
                            Err(e) if e.is_lost() => say!("! {e}"),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    None => {
                        repl.save()?;
                        return Ok(());
                    }
                }
            }
        }
    }
    let _ = repl.session.announce_presence(&relay, false).await;
    repl.save()?;
    relay.close().await;
    Ok(())
}

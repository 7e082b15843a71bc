//! `qpc repl` and `qpc chat`: one signed-in session with several
//! conversations. Lines come from standard input (a terminal or a pipe) on a
//! reader thread; the relay's queue is read with FetchWait, so incoming
//! messages appear while the user types and nothing busy-polls.
//!
//! Conversations: `#name` is the MLS group `name`; `@user` is a DM, the
//! two-member MLS group `dm:<a>:<b>` (the two usernames sorted) on its own
//! channel; `@<own name>` is a notepad that only ever lives in the local
//! history. Every change is saved before anything leaves, and the queue is
//! acknowledged only after the state is saved.

use std::collections::HashMap;
use std::error::Error;
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qpc::account::{self, AccountError};
use qpc::mls::{Incoming, MlsError};
use qpc::relay::{Relay, RelayError};
use qpc::state::{password_from, HistoryEntry, State};
use qpc_proto::{pb, Status};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::commands::{connect_anonymous, new_msg_id, publish_key_package, resolve_peer, short};
use crate::Common;

type Outcome = Result<(), Box<dyn Error>>;

/// Longest message text sent, in bytes; longer lines are refused.
pub const MAX_TEXT: usize = 64 * 1024;

/// How long one FetchWait waits before it is asked again (the relay may cap it).
const WAIT_MS: u32 = 25_000;

/// Prefix of the MLS group names of DMs; `#` groups may not use it.
const DM_PREFIX: &str = "dm:";

const HELP: &[(&str, &str)] = &[
    ("/dm <user>", "open (or start) a DM with a user; /dm <yourself> is a local notepad"),
    ("/create-group <name>", "create a group and make it active"),
    ("/invite <user>", "add a user to the active group"),
    ("/remove <user>", "remove a member from the active group"),
    ("/leave", "leave the active group or DM"),
    ("/join", "accept pending invitations now (they are also accepted as they arrive)"),
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

/// The MLS group of the DM between `a` and `b`.
pub fn dm_group(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{DM_PREFIX}{x}:{y}")
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
        publish_key_package(&relay, &mut state).await?;
        state
    };
    Ok((relay, state, username))
}

/// One signed-in session.
struct Session<'c> {
    common: &'c Common,
    state: State,
    me: String,
    names: HashMap<[u8; 32], String>,
    /// `@user` or `#group`.
    active: Option<String>,
    /// Highest queue position processed (and acknowledged).
    done_seq: u64,
    /// `qpc chat`: every line is text for the active conversation.
    chat_mode: bool,
}

impl Session<'_> {
    fn notepad(&self) -> String {
        format!("@{}", self.me)
    }

    /// The conversation label of an MLS group.
    fn label_of(&self, group: &str) -> String {
        match group.strip_prefix(DM_PREFIX).and_then(|pair| pair.split_once(':')) {
            Some((a, b)) => format!("@{}", if a == self.me { b } else { a }),
            None => format!("#{group}"),
        }
    }

    /// The MLS group of a conversation label, if it is one we hold.
    fn group_of(&self, label: &str) -> Option<String> {
        let group = if let Some(user) = label.strip_prefix('@') {
            dm_group(&self.me, user)
        } else {
            label.strip_prefix('#')?.to_string()
        };
        self.state.member.groups().contains(&group).then_some(group)
    }

    fn save(&self) -> Outcome {
        Ok(self.state.save()?)
    }

    async fn name(&mut self, relay: &Relay, key: &[u8; 32]) -> String {
        if *key == self.state.identity_key() {
            return self.me.clone();
        }
        if let Some(name) = self.names.get(key) {
            return name.clone();
        }
        match relay.resolve_identity(key).await {
            Ok(Some(name)) => {
                self.names.insert(*key, name.clone());
                name
            }
            _ => short(key),
        }
    }

    fn record(&mut self, conversation: &str, sender: &str, text: &str) {
        self.state.record(HistoryEntry {
            conversation: conversation.into(),
            sender: sender.into(),
            time: now(),
            text: text.into(),
        });
    }

    /// Processes queued messages (skipping any already done), saves, acks.
    /// Returns how many groups were joined.
    async fn receive(
        &mut self,
        relay: &Relay,
        envelopes: Vec<pb::Envelope>,
    ) -> Result<usize, Box<dyn Error>> {
        let fresh: Vec<pb::Envelope> = envelopes.into_iter().filter(|e| e.seq > self.done_seq).collect();
        let Some(last) = fresh.last().map(|e| e.seq) else { return Ok(0) };
        let mut joined = 0;
        for env in &fresh {
            match self.process(relay, env).await {
                Ok(n) => joined += n,
                Err(e) if fatal(e.as_ref()) => return Err(e),
                Err(e) => println!("! while reading message {}: {e}", env.seq),
            }
        }
        self.save()?;
        relay.ack(last).await?;
        self.done_seq = last;
        Ok(joined)
    }

    async fn process(&mut self, relay: &Relay, env: &pb::Envelope) -> Result<usize, Box<dyn Error>> {
        let from: [u8; 32] = env.sender_key.as_slice().try_into().unwrap_or([0; 32]);
        match self.state.member.process(&env.payload) {
            Ok(Incoming::Application { group, sender, plaintext }) => {
                let label = self.label_of(&group);
                let name = self.name(relay, &sender).await;
                let text = String::from_utf8_lossy(&plaintext).into_owned();
                self.record(&label, &name, &text);
                if self.active.as_deref() == Some(label.as_str()) {
                    println!("[{name}] {text}");
                } else {
                    println!("({label}) [{name}] {text}");
                }
            }
            Ok(Incoming::Welcome(welcome)) => {
                let name = self.name(relay, &from).await;
                match self.state.member.join(&welcome) {
                    Ok(group) => {
                        let label = self.label_of(&group);
                        if label.starts_with('@') {
                            println!("* {name} opened a DM with you: {label}");
                        } else {
                            println!("* {name} added you to {label}");
                        }
                        if self.active.is_none() {
                            self.active = Some(label.clone());
                            println!("* now talking in {label}");
                        }
                        // The Welcome used up a KeyPackage: publish another.
                        publish_key_package(relay, &mut self.state).await?;
                        return Ok(1);
                    }
                    Err(e) => println!("! cannot join from the invitation of {name}: {e}"),
                }
            }
            Ok(Incoming::Commit { group, epoch, removed_self }) => {
                let label = self.label_of(&group);
                if removed_self {
                    println!("* you were removed from {label}");
                    if self.active.as_deref() == Some(label.as_str()) {
                        self.active = None;
                    }
                } else {
                    println!("* {label} is now at epoch {epoch}");
                }
            }
            Ok(Incoming::Proposal { group }) => {
                let label = self.label_of(&group);
                let name = self.name(relay, &from).await;
                println!("* {label}: proposal from {name}");
                // One member commits proposals: the lowest identity key among
                // the members other than the proposer.
                let members = self.state.member.members(&group)?;
                let committer = members.iter().filter(|m| **m != from).min().copied();
                if committer == Some(self.state.identity_key()) {
                    let commit = self.state.member.commit_pending_proposals(&group)?;
                    self.save()?;
                    let recipients = commit.recipients();
                    if !recipients.is_empty() {
                        relay
                            .batch_enqueue(&recipients, group.as_bytes(), commit.commit, new_msg_id())
                            .await?;
                    }
                    if let Some(welcome) = commit.welcome {
                        relay.batch_enqueue(&commit.added, group.as_bytes(), welcome, new_msg_id()).await?;
                    }
                    println!(
                        "* {label}: committed the proposal (epoch {})",
                        self.state.member.epoch(&group)?
                    );
                }
            }
            Err(e) if e.is_replay() => {}
            Err(MlsError::NoSuchGroup(_)) => {}
            Err(e) => {
                let name = self.name(relay, &from).await;
                println!("! a message from {name} cannot be decrypted: {e}");
            }
        }
        Ok(0)
    }

    /// Encrypts `text` for the active conversation and sends it.
    async fn send_text(&mut self, relay: &Relay, text: &str) -> Outcome {
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
            self.record(&label, &me, text);
            return self.save();
        }
        let Some(group) = self.group_of(&label) else {
            println!("! {label} is gone; /switch to another conversation");
            self.active = None;
            return Ok(());
        };
        let me = self.state.identity_key();
        let recipients: Vec<[u8; 32]> =
            self.state.member.members(&group)?.into_iter().filter(|m| *m != me).collect();
        if recipients.is_empty() {
            println!("! nobody else is in {label} yet: /invite <user>");
            return Ok(());
        }
        let ciphertext = self.state.member.encrypt(&group, text.as_bytes())?;
        let name = self.me.clone();
        self.record(&label, &name, text);
        self.save()?;
        relay.batch_enqueue(&recipients, group.as_bytes(), ciphertext, new_msg_id()).await?;
        Ok(())
    }

    /// The keys of `user`, or a message saying there is no such user.
    async fn user_keys(&self, relay: &Relay, user: &str) -> Result<Option<Vec<[u8; 32]>>, Box<dyn Error>> {
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

    /// Adds every device of `keys` to `group`: commit to the members, Welcome
    /// to the newcomer. Returns how many were added.
    async fn add(
        &mut self,
        relay: &Relay,
        group: &str,
        user: &str,
        keys: &[[u8; 32]],
    ) -> Result<usize, Box<dyn Error>> {
        let mut added_count = 0;
        for key in keys {
            if self.state.member.members(group)?.contains(key) {
                continue;
            }
            let key_package = match relay.fetch_key_package(key).await {
                Ok(kp) => kp,
                Err(e) if e.status() == Some(Status::NotFound) => {
                    println!("! {user} has no KeyPackage left on the relay (a device of theirs must sign in first)");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let added = self.state.member.add_member(group, &key_package, Some(*key))?;
            self.save()?;
            if !added.existing_members.is_empty() {
                relay
                    .batch_enqueue(&added.existing_members, group.as_bytes(), added.commit, new_msg_id())
                    .await?;
            }
            relay.enqueue(key, group.as_bytes(), added.welcome, new_msg_id()).await?;
            added_count += 1;
        }
        Ok(added_count)
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
            println!("! {command}: {label} is a DM with two members; /create-group <name> for more");
            return None;
        }
        let Some(group) = self.group_of(&label) else {
            println!("! {command}: {label} is gone");
            return None;
        };
        Some((label, group))
    }

    async fn send_commit(&self, relay: &Relay, group: &str, commit: qpc::mls::Commit) -> Outcome {
        let recipients = commit.recipients();
        if !recipients.is_empty() {
            relay.batch_enqueue(&recipients, group.as_bytes(), commit.commit, new_msg_id()).await?;
        }
        Ok(())
    }

    /// Runs one slash command; `Ok(false)` ends the session.
    async fn command(&mut self, relay: &Relay, line: &str) -> Result<bool, Box<dyn Error>> {
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
                Some(name) => match self.state.member.create_group(&name) {
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
                    if keys.iter().all(|k| self.state.member.members(&group).is_ok_and(|m| m.contains(k))) {
                        println!("! {user} is already a member of {label}");
                        return Ok(true);
                    }
                    if self.add(relay, &group, &user, &keys).await? > 0 {
                        println!("* invited {user} to {label} (epoch {})", self.state.member.epoch(&group)?);
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
                    let members = self.state.member.members(&group)?;
                    let targets: Vec<_> = keys.into_iter().filter(|k| members.contains(k)).collect();
                    if targets.is_empty() {
                        println!("! {user} is not a member of {label}");
                        return Ok(true);
                    }
                    for key in targets {
                        let commit = self.state.member.remove_member(&group, key)?;
                        self.save()?;
                        self.send_commit(relay, &group, commit).await?;
                    }
                    println!("* removed {user} from {label} (epoch {})", self.state.member.epoch(&group)?);
                }
                None => println!("{}", usage("/remove")),
            },
            "/update" if args.is_empty() => {
                let Some((label, group)) = self.active_group("/update", true) else { return Ok(true) };
                let commit = self.state.member.self_update(&group)?;
                self.save()?;
                self.send_commit(relay, &group, commit).await?;
                println!("* your key in {label} is rotated (epoch {})", self.state.member.epoch(&group)?);
            }
            "/leave" if args.is_empty() => {
                let Some((label, group)) = self.active_group("/leave", true) else { return Ok(true) };
                let me = self.state.identity_key();
                let others: Vec<_> =
                    self.state.member.members(&group)?.into_iter().filter(|m| *m != me).collect();
                let proposal = self.state.member.leave(&group)?;
                self.state.member.forget(&group)?;
                self.save()?;
                if !others.is_empty() {
                    relay.batch_enqueue(&others, group.as_bytes(), proposal, new_msg_id()).await?;
                }
                self.active = None;
                println!("* you left {label}");
            }
            "/join" if args.is_empty() => {
                let envelopes = relay.peek(0).await?;
                if self.receive(relay, envelopes).await? == 0 {
                    println!("* no pending invitation (invitations are accepted as they arrive)");
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
                for group in self.state.member.groups() {
                    let label = self.label_of(&group);
                    println!(
                        "{} {label} ({} members, epoch {})",
                        mark(&label),
                        self.state.member.members(&group)?.len(),
                        self.state.member.epoch(&group)?
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
                let mut names = Vec::new();
                for key in self.state.member.members(&group)? {
                    names.push(self.name(relay, &key).await);
                }
                names.sort();
                println!("members of {label}: {}", names.join(", "));
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
                let lines = self.state.history_of(&label, n);
                println!("history of {label} ({} lines):", lines.len());
                for e in lines {
                    println!("  {} [{}] {}", clock(e.time), e.sender, e.text);
                }
            }
            "/whoami" if args.is_empty() => {
                let key = self.state.identity_key();
                println!("username : {}", self.me);
                println!("identity_key : {}", hex::encode(key));
                println!("fingerprint : {}", hex::encode(Sha256::digest(key)));
                println!("relay : {}", self.common.server);
                match self.active.clone() {
                    Some(label) => match self.group_of(&label) {
                        Some(group) => {
                            println!("active : {label} (epoch {})", self.state.member.epoch(&group)?)
                        }
                        None => println!("active : {label}"),
                    },
                    None => println!("active : none"),
                }
            }
            "/quit" | "/exit" | "/help" | "/update" | "/leave" | "/join" | "/list" | "/ls" | "/members"
            | "/history" | "/whoami" => {
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

    async fn dm(&mut self, relay: &Relay, user: &str) -> Outcome {
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
        if let Some(group) = self.group_of(&label) {
            self.active = Some(label.clone());
            println!("* now talking in {label}");
            if self.state.member.members(&group)?.len() < 2 {
                // The peer left this DM: invite them back.
                let Some(keys) = self.user_keys(relay, user).await? else { return Ok(()) };
                if self.add(relay, &group, user, &keys).await? > 0 {
                    println!("* invited {user} back to {label}");
                }
            }
            return Ok(());
        }
        let Some(keys) = self.user_keys(relay, user).await? else { return Ok(()) };
        let group = dm_group(&self.me, user);
        self.state.member.create_group(&group)?;
        if self.add(relay, &group, user, &keys).await? == 0 {
            self.state.member.forget(&group)?;
            self.save()?;
            return Ok(());
        }
        self.active = Some(label.clone());
        println!("* DM with {user} started; now talking in {label}");
        Ok(())
    }

    /// One line typed by the user; `Ok(false)` ends the session.
    async fn line(&mut self, relay: &Relay, line: &str) -> Result<bool, Box<dyn Error>> {
        if !self.chat_mode && line.starts_with('/') {
            return self.command(relay, line).await;
        }
        self.send_text(relay, line).await?;
        Ok(true)
    }
}

/// Errors that end the session: the relay connection or the state file.
fn fatal(e: &(dyn Error + 'static)) -> bool {
    lost(e) || e.downcast_ref::<qpc::state::StateError>().is_some()
}

/// A lost (or unreachable) relay: worth reconnecting to.
fn lost(e: &(dyn Error + 'static)) -> bool {
    matches!(e.downcast_ref::<RelayError>(), Some(RelayError::Lost(_) | RelayError::Unreachable { .. }))
}

type Lines = mpsc::UnboundedReceiver<Option<String>>;

/// Why [`Session::serve`] returned.
enum Ended {
    Quit,
    Lost(Box<dyn Error>),
}

impl Session<'_> {
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
                account::login(&relay, &self.me, password, &self.state.signing_key).await?;
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
    let password = password_from(c.password.clone())?;
    let (relay, state, me) = sign_in(c, &password).await?;
    let mut session = Session {
        common: c,
        state,
        me,
        names: HashMap::new(),
        active: None,
        done_seq: 0,
        chat_mode: target.is_some(),
    };
    if target.is_none() {
        println!("type /help for the commands");
    }
    // What arrived while we were away, in queue order.
    let queued = relay.peek(0).await?;
    session.receive(&relay, queued).await?;
    if let Some(target) = target {
        if let Some(user) = target.strip_prefix('@').or((!target.starts_with('#')).then_some(target)) {
            session.dm(&relay, user).await?;
        } else if session.group_of(target).is_some() {
            session.active = Some(target.to_string());
        } else {
            return Err(format!("no conversation {target}").into());
        }
        if session.active.is_none() {
            return Err(format!("cannot open a conversation with {target}").into());
        }
    }

    let mut lines = stdin_lines();
    let mut relay = relay;
    loop {
        match session.serve(&relay, &mut lines).await? {
            Ended::Quit => break,
            Ended::Lost(e) => {
                println!("! {e}; reconnecting");
                match session.reconnect(&password, &mut lines).await {
                    Some(fresh) => relay = fresh,
                    None => {
                        session.save()?;
                        return Ok(());
                    }
                }
            }
        }
    }
    session.save()?;
    relay.close().await;
    Ok(())
}

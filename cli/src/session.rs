//! The client session layer: the one place where an MLS step, the state
//! file, the outbox and the relay meet. Every user interface (the one-shot
//! subcommands, the REPL, `qpc chat`, `demo-group`) goes through it, so
//! each of these stories is written once:
//!
//! - **Sending** (application messages, proposals, commits): do the MLS
//!   step, save it together with an outbox entry, send, then remove the
//!   entry and save. A crash at any point leaves the entry in the outbox and
//!   the next run sends it first; the relay recognises the retry by its
//!   client message id, and readers drop an MLS replay silently.
//! - **Committing**: a commit stays pending until the relay admits it
//!   through the group's fence (method 600); only then is it merged. When
//!   another member's commit for the same epoch was admitted first, the
//!   relay says `conflict`: the pending commit is dropped, the queue is read
//!   up to (and past) the winning commit, and the operation is made again on
//!   the new epoch, or given up with a clear reason when it no longer
//!   applies (the peer was added by someone else meanwhile).
//! - **Receiving**: process each queued envelope (Welcome, commit, proposal,
//!   application message), save, and only then ack. Then the upkeep: top up
//!   the KeyPackage pool after a join, commit received proposals when it is
//!   our turn, and add this person's new devices to their groups.
//!
//! Invitations are offers: a Welcome is processed at once (so its group
//! stays current) but the group is held as a pending invitation, its
//! messages unshown, until the person accepts it; a Welcome from another
//! device of one's own account is accepted without asking.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;
use qpc_proto::{pb, Method, Status};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::content::{self, Body, Content, FileAnnouncement, MessageId, Receipt};
use crate::mls::{Commit, IdentityKey, Incoming, MlsError, Suite};
use crate::relay::{Relay, RelayError};
use crate::state::{
    HistoryEntry, Intent, Invitation, OutboxEntry, ReactionMark, State, StateError, INTENT_ADD,
    INTENT_PROPOSALS, INTENT_REMOVE, INTENT_UPDATE,
};

/// KeyPackages a device keeps on the relay; topped up below half of it.
pub const KEY_PACKAGE_POOL: u32 = 10;

/// How often a commit is made again after losing the race for its epoch.
const COMMIT_TRIES: usize = 8;

/// Prefix of the MLS group names of DMs; `#` groups may not use it.
pub const DM_PREFIX: &str = "dm:";

/// The MLS group of the DM between `a` and `b`.
pub fn dm_group(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{DM_PREFIX}{x}:{y}")
}

pub fn short(key: &[u8; 32]) -> String {
    hex::encode(&key[..8])
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn new_msg_id() -> Vec<u8> {
    let mut id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

/// Test-only: `QPC_TEST_CRASH_AT=POINT` stops the process at POINT as a
/// kill -9 would (nothing flushed, nothing saved).
fn crash_point(point: &str) {
    if std::env::var("QPC_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("QPC_TEST_CRASH_AT: stopping at {point}");
        std::process::abort();
    }
}

/// Test-only: `QPC_TEST_HOLD_COMMIT=GATE` holds a staged commit until the
/// file GATE exists, after announcing it with `GATE.<pid>.ready`, so that a
/// test can make two members commit in the same epoch.
fn hold_commit() {
    let Ok(gate) = std::env::var("QPC_TEST_HOLD_COMMIT") else { return };
    let _ = std::fs::write(format!("{gate}.{}.ready", std::process::id()), b"");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::path::Path::new(&gate).exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Mls(#[from] MlsError),
    #[error("{0}")]
    NotPossible(String),
    #[error(transparent)]
    Kt(#[from] crate::kt::KtError),
}

impl SessionError {
    /// A lost (or unreachable) relay: what is in the outbox goes next time.
    pub fn is_lost(&self) -> bool {
        matches!(self, SessionError::Relay(RelayError::Lost(_) | RelayError::Unreachable { .. }))
    }
}

type Result<T> = std::result::Result<T, SessionError>;

/// What happened while reading the queue (application messages go to the
/// history instead: see [`Session::take_unshown`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Welcome is waiting for the person's answer.
    Invited { group: String, inviter: String },
    /// We are in `group` now; `own_device` when another device of ours
    /// added us (accepted without asking).
    Joined { group: String, own_device: bool },
    /// Someone's commit moved `group` to `epoch`.
    EpochAdvanced { group: String, epoch: u64 },
    /// A commit removed us from `group`.
    Removed { group: String },
    /// A proposal arrived in `group` from `from`.
    Proposal { group: String, from: String },
    /// We committed something ourselves while receiving (a proposal, our
    /// new device).
    Committed { group: String, epoch: u64, what: String },
    /// A message that cannot be read (it is acknowledged all the same).
    Undecryptable { seq: u64, from: String, reason: String },
    /// `by` reacted to message `seq` of `conversation` (or took it back).
    Reacted { conversation: String, seq: u64, emoji: String, by: String, removed: bool },
    /// Its author changed the text of message `seq`.
    Edited { conversation: String, seq: u64, by: String, text: String },
    /// Its author deleted message `seq` for everyone.
    Deleted { conversation: String, seq: u64, by: String },
    /// `by` has received (or read) our messages `seqs`.
    Receipt { conversation: String, seqs: Vec<u64>, by: String, read: bool },
    /// A change that only a message's author may make, from someone else:
    /// ignored.
    Refused { conversation: String, from: String, why: String },
    /// Ephemeral (a relay push, never stored): `by` is typing, or stopped.
    Typing { conversation: String, by: String, active: bool },
    /// Ephemeral: `by` came online or went away.
    Presence { by: String, online: bool, last_seen: u64 },
    /// The log shows a device key on our own account that this device did
    /// not see before (added at `added_ms`).
    NewOwnDevice { key: IdentityKey, added_ms: u64 },
    /// `who` has a new device, shown in each conversation shared with them.
    NewPeerDevice { who: String, conversations: Vec<String> },
    /// A peer relay never took a message of ours for `to` (see `Undelivered`).
    Undelivered { to: String, reason: String },
}

/// How a sent outbox entry ended.
enum Sent {
    Done,
    /// Our commit lost its epoch; it was dropped and must be made again.
    Lost,
}

/// One device's signed-in session: its state and what it has learnt from
/// the relay this run.
pub struct Session {
    pub state: State,
    names: HashMap<IdentityKey, String>,
    /// The devices of our own account, once looked up this run.
    own_devices: Option<Vec<IdentityKey>>,
    /// Highest queue position processed (and saved) this run.
    done_seq: u64,
    /// The queue position read and saved but not acked yet (see `read`).
    unacked: Option<u64>,
    /// Messages received this run that no receipt has answered yet.
    unreceipted: Vec<(String, Vec<u8>)>,
    /// The unproven connection sealed deliveries go over, once opened.
    anonymous: Option<Relay>,
    /// New devices the key transparency log showed, not yet reported.
    notices: Vec<Event>,
}

impl Session {
    pub fn new(state: State) -> Session {
        let names = state
            .names
            .iter()
            .filter_map(|n| Some((<[u8; 32]>::try_from(n.key.as_slice()).ok()?, n.name.clone())))
            .collect();
        Session {
            state,
            names,
            own_devices: None,
            done_seq: 0,
            unacked: None,
            unreceipted: Vec::new(),
            anonymous: None,
            notices: Vec::new(),
        }
    }

    pub fn me(&self) -> IdentityKey {
        self.state.identity_key()
    }

    fn save(&self) -> Result<()> {
        Ok(self.state.save()?)
    }

    /// What every run does first, once connected: send what the outbox
    /// still holds, top the KeyPackages up, and add this person's devices
    /// that are missing from their groups.
    pub async fn start(&mut self, relay: &Relay) -> Result<Vec<Event>> {
        let mut events = self.flush_outbox(relay).await?;
        self.top_up_key_packages(relay).await?;
        events.extend(self.add_own_devices(relay).await?);
        self.share_delivery_token(relay).await?;
        Ok(events)
    }

    // ----- names and labels -------------------------------------------------

    /// The username of `key`, else its short hex form.
    pub async fn name(&mut self, relay: &Relay, key: &IdentityKey) -> String {
        if *key == self.me() {
            if let Some(me) = &self.state.username {
                return me.clone();
            }
        }
        if let Some(name) = self.names.get(key) {
            return name.clone();
        }
        match relay.resolve_identity(key).await {
            Ok(Some(name)) => {
                self.names.insert(*key, name.clone());
                // Saved with the next change of the state.
                self.state.names.push(crate::state::KnownName { key: key.to_vec(), name: name.clone() });
                name
            }
            _ => short(key),
        }
    }

    /// The people in `group` other than us (by name; our own other devices
    /// are not others).
    pub fn other_people(&self, group: &str) -> Vec<String> {
        let me = self.me();
        let own = self.own_devices.clone().unwrap_or_default();
        let mine = self.state.username.clone().unwrap_or_default();
        let mut people: Vec<String> = self
            .state
            .member
            .members(group)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| *k != me && !own.contains(k))
            .map(|k| self.names.get(&k).cloned().unwrap_or_else(|| short(&k)))
            .filter(|name| *name != mine)
            .collect();
        people.sort();
        people.dedup();
        people
    }

    /// The conversation label of an MLS group: `@user` for a DM, `#name`.
    pub fn label_of(&self, group: &str) -> String {
        let me = self.state.username.as_deref().unwrap_or_default();
        match group.strip_prefix(DM_PREFIX).and_then(|pair| pair.split_once(':')) {
            Some((a, b)) => format!("@{}", if a == me { b } else { a }),
            None => format!("#{group}"),
        }
    }

    // ----- invitations -------------------------------------------------------

    pub fn is_pending(&self, group: &str) -> bool {
        self.state.invitations.iter().any(|i| i.group == group)
    }

    /// Groups we are in and have accepted.
    pub fn groups(&self) -> Vec<String> {
        self.state.member.groups().into_iter().filter(|g| !self.is_pending(g)).collect()
    }

    /// Accepts the pending invitation to `group`; its held messages become
    /// unshown history.
    pub fn accept(&mut self, group: &str) -> Result<()> {
        if !self.is_pending(group) {
            return Err(SessionError::NotPossible(format!("no pending invitation to group {group}")));
        }
        self.state.invitations.retain(|i| i.group != group);
        self.save()
    }

    /// Declines the pending invitation to `group`: asks the group to remove
    /// us (someone commits it), then forgets it, so nothing is left behind
    /// and a later invitation to the same group works.
    pub async fn decline(&mut self, relay: &Relay, group: &str) -> Result<()> {
        if !self.is_pending(group) {
            return Err(SessionError::NotPossible(format!("no pending invitation to group {group}")));
        }
        self.state.invitations.retain(|i| i.group != group);
        self.leave(relay, group).await
    }

    // ----- sending -----------------------------------------------------------

    /// Sends `text` to `group` (see [`Session::send_content`]).
    pub async fn send_text(&mut self, relay: &Relay, group: &str, text: &str) -> Result<MessageId> {
        self.send_content(relay, group, Content::text(text, None)).await
    }

    /// Encrypts `content` for every other member of `group` (our other
    /// devices included), applies it to our own history as readers will
    /// apply it to theirs, and sends it through the outbox.
    pub async fn send_content(&mut self, relay: &Relay, group: &str, content: Content) -> Result<MessageId> {
        if self.is_pending(group) {
            return Err(SessionError::NotPossible(format!(
                "accept the invitation to group {group} first (qpc join --group-id {group})"
            )));
        }
        if self.state.member.pending_proposals(group)? > 0 {
            // openmls sends nothing while proposals wait: commit them first.
            self.commit(relay, group, Intent { kind: INTENT_PROPOSALS, ..Intent::default() }).await?;
        }
        let me = self.me();
        let recipients: Vec<IdentityKey> =
            self.state.member.members(group)?.into_iter().filter(|m| *m != me).collect();
        if recipients.is_empty() {
            return Err(SessionError::NotPossible(format!("group {group} has no other members yet")));
        }
        let ciphertext = self.state.member.encrypt(group, &content.to_plaintext())?;
        let sender = self.state.username.clone().unwrap_or_else(|| short(&me));
        let id = content.id();
        self.apply(group, me, sender, content, false);
        self.send_batch(relay, &recipients, group, ciphertext).await?;
        Ok(id)
    }

    /// Applies a message's content to the history: a text or a file becomes
    /// a new entry; a reaction, edit, delete or receipt changes the entry it
    /// names (edits and deletes only from its author).
    fn apply(
        &mut self,
        group: &str,
        sender: IdentityKey,
        name: String,
        content: Content,
        received: bool,
    ) -> Option<Event> {
        let conversation = self.label_of(group);
        let id = content.id.clone();
        let entry = |text: String, reply_to: Vec<u8>, file: Option<FileAnnouncement>, unsupported: bool| {
            HistoryEntry {
                conversation: conversation.clone(),
                sender: name.clone(),
                time: now(),
                text,
                unshown: received,
                group: group.into(),
                id: id.clone(),
                reply_to,
                file,
                sender_key: sender.to_vec(),
                unsupported,
                ..HistoryEntry::default()
            }
        };
        let new = match content.body {
            Some(Body::Text(t)) => Some(entry(t.text, t.reply_to, None, false)),
            Some(Body::File(f)) => Some(entry(f.name.clone(), f.reply_to.clone(), Some(f), false)),
            None => Some(entry("(unsupported message)".into(), Vec::new(), None, true)),
            Some(Body::Typing(_) | Body::Presence(_)) => return None,
            Some(Body::DeliveryToken(t)) => {
                let me = self.me();
                let tokens = &mut self.state.sealed.tokens;
                tokens.retain(|k| k.device != sender);
                if t.token.len() == 32 && sender != me {
                    tokens.push(crate::state::KnownToken { device: sender.to_vec(), token: t.token });
                }
                return None;
            }
            Some(Body::Reaction(r)) => {
                let target = self.state.message_mut(&r.target)?;
                let mark = ReactionMark { emoji: r.emoji.clone(), by: name.clone() };
                target.reactions.retain(|m| *m != mark);
                if !r.remove {
                    target.reactions.push(mark);
                }
                return Some(Event::Reacted {
                    conversation: target.conversation.clone(),
                    seq: target.seq,
                    emoji: r.emoji,
                    by: name,
                    removed: r.remove,
                });
            }
            Some(Body::Edit(content::Edit { target, text })) => {
                let target = self.state.message_mut(&target)?;
                if target.sender != name || target.deleted {
                    return Some(Event::Refused {
                        conversation: target.conversation.clone(),
                        from: name,
                        why: format!("tried to edit message {} of {}: ignored", target.seq, target.sender),
                    });
                }
                target.text = text.clone();
                target.edited = true;
                return Some(Event::Edited {
                    conversation: target.conversation.clone(),
                    seq: target.seq,
                    by: name,
                    text,
                });
            }
            Some(Body::Delete(content::Delete { target })) => {
                let target = self.state.message_mut(&target)?;
                if target.sender != name {
                    return Some(Event::Refused {
                        conversation: target.conversation.clone(),
                        from: name,
                        why: format!("tried to delete message {} of {}: ignored", target.seq, target.sender),
                    });
                }
                target.text = "deleted".into();
                target.deleted = true;
                target.file = None;
                return Some(Event::Deleted {
                    conversation: target.conversation.clone(),
                    seq: target.seq,
                    by: name,
                });
            }
            Some(Body::Receipt(Receipt { targets, read })) => {
                let me = self.me().to_vec();
                let mut seqs = Vec::new();
                let mut conversation = conversation.clone();
                for target in targets {
                    let Some(entry) = self.state.message_mut(&target) else { continue };
                    if entry.sender_key != me {
                        continue;
                    }
                    if !entry.delivered_to.contains(&name) {
                        entry.delivered_to.push(name.clone());
                    }
                    if read && !entry.read_by.contains(&name) {
                        entry.read_by.push(name.clone());
                    }
                    conversation = entry.conversation.clone();
                    seqs.push(entry.seq);
                }
                return (!seqs.is_empty()).then_some(Event::Receipt { conversation, seqs, by: name, read });
            }
        };
        let mut new = new?;
        if received {
            new.number = Some(self.state.next_number);
            self.state.next_number += 1;
            self.unreceipted.push((group.to_string(), id));
        }
        self.state.record(new);
        None
    }

    /// Answers the messages received this run with receipts, one per group:
    /// read where `read(group)` says the person has seen them, else only
    /// delivered. Groups whose invitation is pending tell nothing.
    pub async fn send_receipts(&mut self, relay: &Relay, read: &dyn Fn(&str) -> bool) -> Result<()> {
        let mut by_group: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        for (group, id) in std::mem::take(&mut self.unreceipted) {
            if self.is_pending(&group) {
                self.unreceipted.push((group, id));
                continue;
            }
            match by_group.iter_mut().find(|(g, _)| *g == group) {
                Some((_, ids)) => ids.push(id),
                None => by_group.push((group, vec![id])),
            }
        }
        for (group, targets) in by_group {
            if !self.state.member.groups().contains(&group) {
                continue;
            }
            let receipt = Content::new(Body::Receipt(Receipt { targets, read: read(&group) }));
            match self.send_content(relay, &group, receipt).await {
                Ok(_) | Err(SessionError::NotPossible(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Puts one payload for `recipients` in the outbox and sends it: sealed
    /// (no sender told to the relay) to each device that gave us a delivery
    /// token, in one batch to the others.
    async fn send_batch(
        &mut self,
        relay: &Relay,
        recipients: &[IdentityKey],
        group: &str,
        payload: Vec<u8>,
    ) -> Result<()> {
        let client_msg_id = new_msg_id();
        let mut open = Vec::new();
        for recipient in recipients {
            let token =
                self.state.sealed.tokens.iter().find(|t| t.device == recipient).map(|t| t.token.clone());
            let Some(token) = token else {
                open.push(*recipient);
                continue;
            };
            let request = pb::SealedEnqueueRequest {
                recipient_key: recipient.to_vec(),
                token,
                payload: payload.clone(),
                channel_id: group.as_bytes().to_vec(),
                client_msg_id: client_msg_id.clone(),
            };
            self.state.outbox.push(OutboxEntry {
                client_msg_id: client_msg_id.clone(),
                method: u32::from(Method::SealedEnqueue.id()),
                request: request.encode_to_vec(),
                ..OutboxEntry::default()
            });
        }
        if !open.is_empty() {
            let request = pb::BatchEnqueueRequest {
                recipient_keys: open.iter().map(|r| r.to_vec()).collect(),
                payload,
                channel_id: group.as_bytes().to_vec(),
                client_msg_id: client_msg_id.clone(),
            };
            self.state.outbox.push(OutboxEntry {
                client_msg_id,
                method: u32::from(Method::BatchEnqueue.id()),
                request: request.encode_to_vec(),
                ..OutboxEntry::default()
            });
        }
        self.save()?;
        crash_point("message-saved");
        self.flush_outbox(relay).await.map(drop)
    }

    /// Sends every outbox entry, oldest first. A commit that lost its epoch
    /// while we were away is made again.
    pub async fn flush_outbox(&mut self, relay: &Relay) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        while !self.state.outbox.is_empty() {
            let entry = self.state.outbox[0].clone();
            match self.send_entry(relay, 0).await? {
                Sent::Done => {}
                Sent::Lost => {
                    let intent = entry.intent.unwrap_or_default();
                    events.extend(self.catch_up(relay).await?);
                    match self.commit(relay, &entry.group, intent).await {
                        Ok(epoch) => events.push(Event::Committed {
                            group: entry.group.clone(),
                            epoch,
                            what: "made again after another member's commit".into(),
                        }),
                        Err(SessionError::NotPossible(_))
                        | Err(SessionError::Mls(MlsError::NoSuchGroup(_))) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(events)
    }

    /// Sends outbox entry `index`; on an answer, removes it (merging our
    /// commit when it was admitted) and saves. A refusal other than a lost
    /// epoch drops the entry and is returned; a lost connection keeps it.
    async fn send_entry(&mut self, relay: &Relay, index: usize) -> Result<Sent> {
        let entry = self.state.outbox[index].clone();
        let method = u16::try_from(entry.method).ok().and_then(Method::from_u16);
        let outcome: std::result::Result<(), RelayError> = match method {
            Some(Method::BatchEnqueue) => match pb::BatchEnqueueRequest::decode(entry.request.as_slice()) {
                Ok(req) => {
                    relay.call::<_, pb::BatchEnqueueResponse>(Method::BatchEnqueue, &req).await.map(drop)
                }
                Err(e) => Err(RelayError::Protocol(format!("unreadable outbox entry: {e}"))),
            },
            Some(Method::Enqueue) => match pb::EnqueueRequest::decode(entry.request.as_slice()) {
                Ok(req) => relay.call::<_, pb::EnqueueResponse>(Method::Enqueue, &req).await.map(drop),
                Err(e) => Err(RelayError::Protocol(format!("unreadable outbox entry: {e}"))),
            },
            Some(Method::SealedEnqueue) => match pb::SealedEnqueueRequest::decode(entry.request.as_slice()) {
                Ok(req) => self.send_sealed(relay, req).await,
                Err(e) => Err(RelayError::Protocol(format!("unreadable outbox entry: {e}"))),
            },
            Some(Method::GroupCommit) => match pb::GroupCommitRequest::decode(entry.request.as_slice()) {
                Ok(mut req) => {
                    hold_commit();
                    let mut answer = relay.group_commit(req.clone()).await;
                    if matches!(&answer, Err(e) if e.status() == Some(Status::NotFound)) && !req.open {
                        // The relay forgot the group (its fence expired): start it again.
                        req.open = true;
                        answer = relay.group_commit(req).await;
                    }
                    answer.map(drop)
                }
                Err(e) => Err(RelayError::Protocol(format!("unreadable outbox entry: {e}"))),
            },
            _ => Err(RelayError::Protocol(format!("outbox entry for unknown method {}", entry.method))),
        };
        match outcome {
            Err(e @ (RelayError::Lost(_) | RelayError::Unreachable { .. })) => Err(e.into()),
            Err(e) if e.status() == Some(Status::Unavailable) => Err(e.into()),
            Ok(()) => {
                if method == Some(Method::GroupCommit) {
                    crash_point("commit-sent");
                    if self.state.member.has_pending_commit(&entry.group) {
                        self.state.member.merge_pending(&entry.group)?;
                    }
                } else {
                    crash_point("message-sent");
                }
                self.state.outbox.remove(index);
                self.save()?;
                Ok(Sent::Done)
            }
            Err(e) => {
                self.state.outbox.remove(index);
                if method == Some(Method::GroupCommit) && self.state.member.has_pending_commit(&entry.group) {
                    self.state.member.clear_pending(&entry.group)?;
                }
                self.save()?;
                if e.status() == Some(Status::Conflict) && method == Some(Method::GroupCommit) {
                    return Ok(Sent::Lost);
                }
                Err(e.into())
            }
        }
    }

    /// A sealed enqueue over the separate unproven connection (where the
    /// relay takes them; over ours otherwise, which the relay does not
    /// record with the message). A refused token (revoked) is forgotten and
    /// the message goes the ordinary way.
    async fn send_sealed(
        &mut self,
        relay: &Relay,
        req: pb::SealedEnqueueRequest,
    ) -> std::result::Result<(), RelayError> {
        let mut answer = Err(RelayError::Lost("no connection yet".into()));
        // A connection left over from before the relay restarted is dead:
        // one fresh try.
        for _ in 0..2 {
            if self.anonymous.is_none() {
                self.anonymous = relay.connect_again().await.ok();
            }
            answer = match &self.anonymous {
                Some(anon) => anon.call::<_, pb::SealedEnqueueResponse>(Method::SealedEnqueue, &req).await,
                None => relay.call::<_, pb::SealedEnqueueResponse>(Method::SealedEnqueue, &req).await,
            };
            if !matches!(answer, Err(RelayError::Lost(_))) || self.anonymous.is_none() {
                break;
            }
            self.anonymous = None;
        }
        if matches!(&answer, Err(e) if e.status() == Some(Status::Unauthenticated)) {
            answer = relay.call::<_, pb::SealedEnqueueResponse>(Method::SealedEnqueue, &req).await;
        }
        match answer {
            Err(e) if e.status() == Some(Status::Forbidden) => {
                self.state.sealed.tokens.retain(|t| t.device != req.recipient_key);
                let open = pb::EnqueueRequest {
                    recipient_key: req.recipient_key,
                    payload: req.payload,
                    channel_id: req.channel_id,
                    client_msg_id: req.client_msg_id,
                };
                relay.call::<_, pb::EnqueueResponse>(Method::Enqueue, &open).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// Sealed sender: issues this device's delivery token (registering only
    /// its hash) when it has none, and hands it to every accepted group that
    /// does not have it yet, inside MLS.
    pub async fn share_delivery_token(&mut self, relay: &Relay) -> Result<()> {
        if self.state.sealed.own_token.len() != 32 {
            let token = content::new_id().iter().chain(&content::new_id()).copied().collect::<Vec<u8>>();
            relay.register_delivery_token(Sha256::digest(&token).into()).await?;
            self.state.sealed.own_token = token;
            self.state.sealed.announced_to.clear();
            self.save()?;
        }
        for group in self.groups() {
            if self.state.sealed.announced_to.contains(&group) {
                continue;
            }
            let token = self.state.sealed.own_token.clone();
            match self
                .send_content(
                    relay,
                    &group,
                    Content::new(Body::DeliveryToken(content::DeliveryToken { token })),
                )
                .await
            {
                Ok(_) => self.state.sealed.announced_to.push(group),
                Err(SessionError::NotPossible(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.save()
    }

    /// Replaces this device's delivery token: the old one is revoked at the
    /// relay (sealed deliveries with it are refused from now on) and the
    /// new one handed to the groups.
    pub async fn rotate_delivery_token(&mut self, relay: &Relay) -> Result<()> {
        relay.revoke_delivery_token(None).await?;
        self.state.sealed.own_token.clear();
        self.share_delivery_token(relay).await
    }

    // ----- committing --------------------------------------------------------

    /// Makes the commit `intent` describes in `group`, has the relay admit
    /// it, and merges it; made again (after reading the queue) as long as
    /// another member wins the epoch. Returns the new epoch.
    pub async fn commit(&mut self, relay: &Relay, group: &str, intent: Intent) -> Result<u64> {
        for _ in 0..COMMIT_TRIES {
            let commit = self.build(group, &intent)?;
            let client_msg_id = new_msg_id();
            let request = self.commit_request(group, &commit, client_msg_id.clone())?;
            self.state.outbox.push(OutboxEntry {
                client_msg_id,
                method: u32::from(Method::GroupCommit.id()),
                request: request.encode_to_vec(),
                group: group.to_owned(),
                intent: Some(intent.clone()),
            });
            self.save()?;
            crash_point("commit-saved");
            match self.send_entry(relay, self.state.outbox.len() - 1).await? {
                Sent::Done => return Ok(self.state.member.epoch(group)?),
                Sent::Lost => {
                    self.catch_up(relay).await?;
                }
            }
        }
        Err(SessionError::NotPossible(format!(
            "group {group}: other members kept committing first ({COMMIT_TRIES} tries); try again"
        )))
    }

    /// The fenced request for a pending commit.
    fn commit_request(
        &self,
        group: &str,
        commit: &Commit,
        client_msg_id: Vec<u8>,
    ) -> Result<pb::GroupCommitRequest> {
        Ok(pb::GroupCommitRequest {
            group_route: self.state.member.route(group)?.to_vec(),
            epoch: commit.epoch,
            fence: commit.fence.to_vec(),
            next_fence_hash: commit.next_fence_hash.to_vec(),
            commit_recipient_keys: commit.recipients().iter().map(|k| k.to_vec()).collect(),
            commit: commit.message.clone(),
            welcome_recipient_keys: commit.added.iter().map(|k| k.to_vec()).collect(),
            welcome: commit.welcome.clone().unwrap_or_default(),
            channel_id: group.as_bytes().to_vec(),
            client_msg_id,
            // A group the relay has never seen starts its fence here.
            open: commit.epoch == 0,
        })
    }

    /// The pending commit for `intent` on the group as it is now, or why
    /// it no longer applies.
    fn build(&mut self, group: &str, intent: &Intent) -> Result<Commit> {
        let members: BTreeSet<IdentityKey> = self.state.member.members(group)?.into_iter().collect();
        let keys: Vec<IdentityKey> =
            intent.keys.iter().filter_map(|k| k.as_slice().try_into().ok()).collect();
        let who = if intent.who.is_empty() { "they".to_string() } else { intent.who.clone() };
        match intent.kind {
            INTENT_ADD => {
                let wanted: Vec<(Vec<u8>, Option<IdentityKey>)> = keys
                    .iter()
                    .zip(&intent.key_packages)
                    .filter(|(k, _)| !members.contains(*k))
                    .map(|(k, kp)| (kp.clone(), Some(*k)))
                    .collect();
                if wanted.is_empty() {
                    return Err(SessionError::NotPossible(format!(
                        "{who} is already a member of group {group}"
                    )));
                }
                Ok(self.state.member.add_members(group, &wanted)?)
            }
            INTENT_REMOVE => {
                let present: Vec<IdentityKey> = keys.into_iter().filter(|k| members.contains(k)).collect();
                if present.is_empty() {
                    return Err(SessionError::NotPossible(format!("{who} is not a member of group {group}")));
                }
                Ok(self.state.member.remove_members(group, &present)?)
            }
            INTENT_UPDATE => Ok(self.state.member.self_update(group)?),
            INTENT_PROPOSALS => match self.state.member.commit_pending_proposals(group) {
                Err(MlsError::NothingToCommit(g)) => {
                    Err(SessionError::NotPossible(format!("group {g} has no pending proposals to commit")))
                }
                other => Ok(other?),
            },
            other => Err(SessionError::NotPossible(format!("unknown kind of commit {other} in the outbox"))),
        }
    }

    /// Adds every device in `keys` (those not in `group` yet, with a
    /// KeyPackage on the relay) in one commit. Returns the new epoch.
    pub async fn add(&mut self, relay: &Relay, group: &str, who: &str, keys: &[IdentityKey]) -> Result<u64> {
        let members = self.state.member.members(group)?;
        let suite = self.state.member.suite(group)?;
        let mut intent = Intent { kind: INTENT_ADD, who: who.into(), ..Intent::default() };
        let mut missing_key_package = false;
        // Our own other devices come along in the same commit (a new group
        // holds every device of ours before its first message).
        let own: Vec<IdentityKey> =
            self.own_devices(relay).await?.into_iter().filter(|k| !keys.contains(k)).collect();
        let mut own_added = Vec::new();
        for key in own.iter().filter(|k| !members.contains(k)) {
            if let Ok(kp) = relay.fetch_key_package_of(key, suite.id()).await {
                own_added.push((key.to_vec(), kp.key_package));
            }
        }
        for key in keys.iter().filter(|k| !members.contains(k)) {
            match relay.fetch_key_package_of(key, suite.id()).await {
                Ok(kp) => {
                    intent.keys.push(key.to_vec());
                    intent.key_packages.push(kp.key_package);
                }
                Err(e) if e.status() == Some(Status::NotFound) => missing_key_package = true,
                Err(e) => return Err(e.into()),
            }
        }
        if !intent.keys.is_empty() {
            for (key, kp) in own_added {
                intent.keys.push(key);
                intent.key_packages.push(kp);
            }
        }
        if intent.keys.is_empty() {
            return Err(SessionError::NotPossible(if missing_key_package && suite == Suite::Pq {
                format!(
                    "{who} has no post-quantum KeyPackage on the relay (a device of theirs must sign in \
                     first, or it runs an older qpc): group {group} is post-quantum; for such a device \
                     create a classic group (create-group --suite classic)"
                )
            } else if missing_key_package {
                format!("{who} has no KeyPackage on the relay (a device of theirs must sign in first)")
            } else {
                format!("{who} is already a member of group {group}")
            }));
        }
        let epoch = self.commit(relay, group, intent).await?;
        self.share_delivery_token(relay).await?;
        Ok(epoch)
    }

    /// Removes the members `keys` (every device of a person) from `group`.
    pub async fn remove(
        &mut self,
        relay: &Relay,
        group: &str,
        who: &str,
        keys: &[IdentityKey],
    ) -> Result<u64> {
        if keys.contains(&self.me()) {
            return Err(SessionError::NotPossible(format!("to leave group {group} yourself, leave it")));
        }
        let intent = Intent {
            kind: INTENT_REMOVE,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            who: who.into(),
            ..Intent::default()
        };
        self.commit(relay, group, intent).await
    }

    /// Rotates our leaf key in `group`.
    pub async fn update(&mut self, relay: &Relay, group: &str) -> Result<u64> {
        self.commit(relay, group, Intent { kind: INTENT_UPDATE, ..Intent::default() }).await
    }

    /// Asks the other members to remove us (a proposal one of them
    /// commits), then forgets the group.
    pub async fn leave(&mut self, relay: &Relay, group: &str) -> Result<()> {
        let me = self.me();
        let others: Vec<IdentityKey> =
            self.state.member.members(group)?.into_iter().filter(|m| *m != me).collect();
        let proposal = self.state.member.leave(group)?;
        self.state.member.forget(group)?;
        self.state.invitations.retain(|i| i.group != group);
        if others.is_empty() {
            return self.save();
        }
        self.send_batch(relay, &others, group, proposal).await
    }

    // ----- receiving ---------------------------------------------------------

    /// Reads the queue (waiting up to `wait_ms` when it is empty, if given)
    /// and processes it: see [`Session::receive`].
    pub async fn drain(&mut self, relay: &Relay, wait_ms: Option<u32>) -> Result<Vec<Event>> {
        let mut events = self.drain_read(relay, wait_ms).await?;
        let settled = self.drain_settle(relay, &events).await?;
        events.extend(settled);
        Ok(events)
    }

    /// [`Session::drain`] up to the save, for a caller that shows what came
    /// before [`Session::drain_settle`] does the rest (see [`Session::read`]).
    pub async fn drain_read(&mut self, relay: &Relay, wait_ms: Option<u32>) -> Result<Vec<Event>> {
        let envelopes = match wait_ms {
            Some(ms) => relay.fetch_wait(0, ms).await?,
            None => relay.peek(0).await?,
        };
        self.read(relay, envelopes).await
    }

    /// The rest of [`Session::drain`]: the ack, the upkeep and what a peer
    /// relay could not deliver.
    pub async fn drain_settle(&mut self, relay: &Relay, read: &[Event]) -> Result<Vec<Event>> {
        let mut events = self.settle(relay, read).await?;
        events.extend(self.undelivered(relay).await?);
        Ok(events)
    }

    /// What our relay could not hand to a peer relay (federation); a relay
    /// without federation answers unknown_method, which tells nothing.
    async fn undelivered(&mut self, relay: &Relay) -> Result<Vec<Event>> {
        let failures = match relay.undelivered().await {
            Ok(f) => f,
            Err(e) if e.status() == Some(Status::UnknownMethod) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut events = Vec::new();
        for f in failures {
            let to = match <[u8; 32]>::try_from(f.recipient_key.as_slice()) {
                Ok(key) => self.name(relay, &key).await,
                Err(_) => format!("someone on {}", f.peer),
            };
            events.push(Event::Undelivered { to, reason: f.reason });
        }
        Ok(events)
    }

    /// Reads the queue until it is empty, e.g. after losing a commit's
    /// epoch: the winning commit is in it.
    async fn catch_up(&mut self, relay: &Relay) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        loop {
            let envelopes = relay.peek(0).await?;
            if envelopes.iter().all(|e| e.seq <= self.done_seq) {
                return Ok(events);
            }
            events.extend(self.receive_only(relay, envelopes).await?);
        }
    }

    /// Processes `envelopes` in queue order (those already processed this
    /// run are skipped), saves, acks, then does the upkeep: KeyPackages
    /// after a join, proposals when it is our turn to commit them, and our
    /// own new devices.
    pub async fn receive(&mut self, relay: &Relay, envelopes: Vec<pb::Envelope>) -> Result<Vec<Event>> {
        let mut events = self.read(relay, envelopes).await?;
        let settled = self.settle(relay, &events).await?;
        events.extend(settled);
        Ok(events)
    }

    /// The second half of [`Session::receive`], given what [`Session::read`]
    /// returned: the ack of what was read, then the upkeep; its own events.
    pub async fn settle(&mut self, relay: &Relay, read: &[Event]) -> Result<Vec<Event>> {
        self.ack_read(relay).await?;
        let mut events = Vec::new();
        let advanced: Vec<String> = read
            .iter()
            .filter_map(|e| match e {
                Event::EpochAdvanced { group, .. } => Some(group.clone()),
                _ => None,
            })
            .collect();
        self.check_new_members(relay, &advanced).await?;
        if read.iter().any(|e| matches!(e, Event::Joined { .. } | Event::Invited { .. })) {
            self.top_up_key_packages(relay).await?;
        }
        events.extend(self.commit_proposals_if_ours(relay).await?);
        events.extend(self.add_own_devices(relay).await?);
        self.share_delivery_token(relay).await?;
        Ok(events)
    }

    async fn receive_only(&mut self, relay: &Relay, envelopes: Vec<pb::Envelope>) -> Result<Vec<Event>> {
        let events = self.read(relay, envelopes).await?;
        self.ack_read(relay).await?;
        Ok(events)
    }

    /// The first half of [`Session::receive`]: processes `envelopes` and
    /// saves, so that the caller can show what came before anything waits
    /// for the relay; [`Session::settle`] then acks and does the upkeep. An
    /// ack, like some of the upkeep, waits while the relay's storage syncs a
    /// commit, and a waiting reader is handed a message before that sync.
    pub async fn read(&mut self, relay: &Relay, envelopes: Vec<pb::Envelope>) -> Result<Vec<Event>> {
        let fresh: Vec<pb::Envelope> = envelopes.into_iter().filter(|e| e.seq > self.done_seq).collect();
        let Some(last) = fresh.last().map(|e| e.seq) else { return Ok(Vec::new()) };
        let mut events = Vec::new();
        for env in &fresh {
            if let Some(event) = self.process(relay, env).await? {
                events.push(event);
            }
        }
        crash_point("inbox-processed");
        self.save()?;
        crash_point("inbox-saved");
        self.done_seq = last;
        self.unacked = Some(last);
        Ok(events)
    }

    /// Acks what was read and saved, if anything is waiting for it.
    async fn ack_read(&mut self, relay: &Relay) -> Result<()> {
        if let Some(last) = self.unacked {
            relay.ack(last).await?;
            self.unacked = None;
        }
        Ok(())
    }

    async fn process(&mut self, relay: &Relay, env: &pb::Envelope) -> Result<Option<Event>> {
        let from: IdentityKey = env.sender_key.as_slice().try_into().unwrap_or([0; 32]);
        match self.state.member.process(&env.payload) {
            Ok(Incoming::Application { group, sender, plaintext }) => {
                let name = self.name(relay, &sender).await;
                // Bare text from an older client: an id every member derives alike.
                let fallback: MessageId = Sha256::digest(&env.payload)[..16].try_into().unwrap_or([0; 16]);
                let content = Content::from_plaintext(&plaintext, fallback);
                Ok(self.apply(&group, sender, name, content, true))
            }
            Ok(Incoming::Welcome(welcome)) => {
                let inviter = self.name(relay, &from).await;
                match self.state.member.join(&welcome) {
                    Ok(group) => {
                        let own_device = self.state.username.as_deref() == Some(inviter.as_str());
                        if own_device {
                            Ok(Some(Event::Joined { group, own_device: true }))
                        } else {
                            self.state.invitations.retain(|i| i.group != group);
                            self.state
                                .invitations
                                .push(Invitation { group: group.clone(), inviter: inviter.clone() });
                            Ok(Some(Event::Invited { group, inviter }))
                        }
                    }
                    // A Welcome read again after a crash before its ack.
                    Err(MlsError::GroupExists(_)) => Ok(None),
                    Err(e) => Ok(Some(Event::Undecryptable {
                        seq: env.seq,
                        from: inviter,
                        reason: format!("cannot join from this Welcome: {e}"),
                    })),
                }
            }
            Ok(Incoming::Commit { group, epoch, removed_self }) => {
                if removed_self {
                    self.state.invitations.retain(|i| i.group != group);
                    Ok(Some(Event::Removed { group }))
                } else {
                    Ok(Some(Event::EpochAdvanced { group, epoch }))
                }
            }
            Ok(Incoming::Proposal { group, sender }) => {
                // From MLS: the envelope of a sealed delivery names nobody.
                let from = self.name(relay, &sender).await;
                Ok(Some(Event::Proposal { group, from }))
            }
            // A second copy (a retry after a crash) or an echo: nothing new.
            Err(e) if e.is_replay() => Ok(None),
            // For a group we left or never joined.
            Err(MlsError::NoSuchGroup(_)) => Ok(None),
            Err(e) => {
                let from = self.name(relay, &from).await;
                Ok(Some(Event::Undecryptable { seq: env.seq, from, reason: e.to_string() }))
            }
        }
    }

    /// Received application messages not shown yet (groups whose invitation
    /// is pending keep theirs), marked shown and saved.
    pub fn take_unshown(&mut self) -> Result<Vec<HistoryEntry>> {
        let pending: BTreeSet<String> = self.state.invitations.iter().map(|i| i.group.clone()).collect();
        let mut shown = Vec::new();
        for entry in self.state.history.iter_mut().filter(|e| e.unshown && !pending.contains(&e.group)) {
            entry.unshown = false;
            shown.push(entry.clone());
        }
        if !shown.is_empty() {
            self.save()?;
        }
        Ok(shown)
    }

    /// Commits the proposals waiting in our groups when we are the member
    /// whose turn it is: the lowest identity key among those the proposals
    /// do not remove (so one member commits, and the fence settles a race).
    async fn commit_proposals_if_ours(&mut self, relay: &Relay) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for group in self.state.member.groups() {
            if self.state.member.pending_proposals(&group)? == 0 {
                continue;
            }
            let leaving = self.state.member.pending_removals(&group)?;
            let committer =
                self.state.member.members(&group)?.into_iter().filter(|m| !leaving.contains(m)).min();
            if committer != Some(self.me()) {
                continue;
            }
            match self.commit(relay, &group, Intent { kind: INTENT_PROPOSALS, ..Intent::default() }).await {
                Ok(epoch) => {
                    events.push(Event::Committed { group, epoch, what: "committed the proposal".into() })
                }
                Err(SessionError::NotPossible(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    /// The devices of our own account (ourselves included), looked up once
    /// per run; none without an account.
    async fn own_devices(&mut self, relay: &Relay) -> Result<Vec<IdentityKey>> {
        let Some(username) = self.state.username.clone() else { return Ok(Vec::new()) };
        if self.own_devices.is_none() {
            let devices = match self.resolve_user(relay, &username).await {
                Ok(devices) => devices,
                Err(SessionError::Relay(e)) if e.status() == Some(Status::NotFound) => Vec::new(),
                Err(e) => return Err(e),
            };
            self.own_devices = Some(devices);
        }
        Ok(self.own_devices.clone().unwrap_or_default())
    }

    /// The device keys of `username`, from the directory and checked
    /// against the key transparency log (see `kt`): a failed check is an
    /// error naming the username, and nothing goes ahead. Devices that
    /// appeared since the last check become notices ([`Session::take_notices`]).
    /// A person on a peer relay (`bob@host[:port]`) is checked against that
    /// relay's log, with the proof it sent through ours.
    pub async fn resolve_user(&mut self, relay: &Relay, username: &str) -> Result<Vec<IdentityKey>> {
        let (username, keys, new) = match self.checked_keys(relay, username).await {
            // A device added or revoked between the two calls: ask once more.
            Err(SessionError::Kt(crate::kt::KtError::Check { .. })) => {
                self.checked_keys(relay, username).await?
            }
            other => other?,
        };
        let username = username.as_str();
        let mine = self.state.username.as_deref() == Some(username);
        for device in new {
            if mine && device.key != self.me() {
                self.notices.push(Event::NewOwnDevice { key: device.key, added_ms: device.added_ms });
            } else if !mine {
                let conversations: Vec<String> = self
                    .groups()
                    .into_iter()
                    .filter(|g| self.other_people(g).iter().any(|p| p == username))
                    .map(|g| self.label_of(&g))
                    .collect();
                self.notices.push(Event::NewPeerDevice { who: username.to_string(), conversations });
            }
        }
        self.save()?;
        Ok(keys)
    }

    /// One directory answer for `username` and its check: the name as
    /// people are shown it (a remote one in full, `bob@host:port`), the
    /// keys, and the devices new since the last check.
    async fn checked_keys(
        &mut self,
        relay: &Relay,
        username: &str,
    ) -> Result<(String, Vec<IdentityKey>, Vec<crate::kt::NewDevice>)> {
        if !username.contains('@') {
            let keys = relay.resolve_user(username).await?;
            let new = self.state.kt.check(relay, username, &keys).await?;
            return Ok((username.to_string(), keys, new));
        }
        let asked = self.state.kt.remote_known_size(username);
        let (mut keys, address, mut proof) = relay.resolve_remote_user(username, asked).await?;
        let known = self.state.kt.remote_known_size(&address);
        if known != asked {
            // Asked by a shorter address than the relay is known by: again,
            // for the consistency proof from the size this device knows.
            (keys, _, proof) = relay.resolve_remote_user(&address, known).await?;
        }
        let new = self.state.kt.check_remote(&address, &keys, proof.as_ref())?;
        Ok((address, keys, new))
    }

    /// Our account's device keys as the log showed them at the last check.
    fn known_own_devices(&self) -> Vec<IdentityKey> {
        let Some(me) = self.state.username.as_deref() else { return Vec::new() };
        let known = self.state.kt.devices.iter().find(|d| d.username == me);
        known.map_or_else(Vec::new, |d| d.keys.iter().filter_map(|k| k.as_slice().try_into().ok()).collect())
    }

    /// Removes revoked devices of ours from every group they are in, with a
    /// fenced commit each (another of our devices may be quicker: fine).
    async fn remove_devices(&mut self, relay: &Relay, gone: &[IdentityKey]) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        if gone.is_empty() {
            return Ok(events);
        }
        for group in self.state.member.groups() {
            let members = self.state.member.members(&group)?;
            let targets: Vec<IdentityKey> = gone.iter().filter(|k| members.contains(k)).copied().collect();
            if targets.is_empty() {
                continue;
            }
            match self.remove(relay, &group, "your revoked device", &targets).await {
                Ok(epoch) => {
                    events.push(Event::Committed { group, epoch, what: "removed your revoked device".into() })
                }
                Err(SessionError::NotPossible(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    /// Revokes another device of our account (the connection must have
    /// logged in with the password) and removes it from our groups.
    pub async fn revoke_device(&mut self, relay: &Relay, key: &IdentityKey) -> Result<(u64, Vec<Event>)> {
        let r: pb::RevokeDeviceResponse = relay
            .call(qpc_proto::Method::RevokeDevice, &pb::RevokeDeviceRequest { identity_key: key.to_vec() })
            .await?;
        self.own_devices = None;
        let mut events = self.add_own_devices(relay).await?;
        // Where it is still a member (this device had not seen it as ours).
        events.extend(self.remove_devices(relay, &[*key]).await?);
        Ok((r.log_index, events))
    }

    /// The new-device notices gathered so far, once.
    pub fn take_notices(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.notices)
    }

    /// People in `groups` with a device key we have not seen for them,
    /// checked again against the log (which reports their new device).
    async fn check_new_members(&mut self, relay: &Relay, groups: &[String]) -> Result<()> {
        let me = self.me();
        let mut names = Vec::new();
        for group in groups {
            for key in self.state.member.members(group).unwrap_or_default() {
                let known = key == me
                    || self.state.kt.devices.iter().any(|d| d.keys.iter().any(|k| k[..] == key[..]));
                if known {
                    continue;
                }
                let name = self.name(relay, &key).await;
                let checked = |n: &String| self.state.kt.devices.iter().any(|d| d.username == *n);
                let who = if checked(&name) {
                    vec![name]
                } else if !self.names.contains_key(&key) {
                    // A key our relay cannot name: a new device of someone
                    // on a peer relay (ours learns a remote key when it is
                    // resolved there). Their relay's log tells whose.
                    self.other_people(group).into_iter().filter(|p| p.contains('@') && checked(p)).collect()
                } else {
                    Vec::new()
                };
                for name in who {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        for name in names {
            match self.resolve_user(relay, &name).await {
                Err(SessionError::Relay(e)) if e.status() == Some(Status::NotFound) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Adds the devices of our own account that are missing from our
    /// groups (a device that logged in since), once per run.
    async fn add_own_devices(&mut self, relay: &Relay) -> Result<Vec<Event>> {
        let before = self.known_own_devices();
        let devices = self.own_devices(relay).await?;
        let mut events = self.take_notices();
        let gone: Vec<IdentityKey> = before.into_iter().filter(|k| !devices.contains(k)).collect();
        events.extend(self.remove_devices(relay, &gone).await?);
        for group in self.groups() {
            let members = self.state.member.members(&group)?;
            let missing: Vec<IdentityKey> =
                devices.iter().filter(|d| !members.contains(d)).copied().collect();
            if missing.is_empty() {
                continue;
            }
            match self.add(relay, &group, "your new device", &missing).await {
                Ok(epoch) => {
                    events.push(Event::Committed { group, epoch, what: "added your new device".into() })
                }
                // No KeyPackage yet, or another of our devices was quicker.
                Err(SessionError::NotPossible(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    // ----- ephemeral signals -------------------------------------------------

    /// Sends a typing or presence signal to the other members of `group`
    /// that are connected now; nothing is stored anywhere.
    pub async fn send_signal(&mut self, relay: &Relay, group: &str, body: Body) -> Result<u32> {
        if self.is_pending(group) {
            return Ok(0);
        }
        let me = self.me();
        let recipients: Vec<IdentityKey> =
            self.state.member.members(group)?.into_iter().filter(|m| *m != me).collect();
        if recipients.is_empty() {
            return Ok(0);
        }
        let sealed = self.state.member.seal_signal(group, &Content::new(body).to_plaintext())?;
        Ok(relay.signal(&recipients, sealed).await?)
    }

    /// Tells every accepted group that we are online (or going away), when
    /// the person shares presence.
    pub async fn announce_presence(&mut self, relay: &Relay, online: bool) -> Result<()> {
        if !self.state.presence {
            return Ok(());
        }
        let last_seen = now();
        for group in self.groups() {
            self.send_signal(relay, &group, Body::Presence(content::Presence { online, last_seen })).await?;
        }
        Ok(())
    }

    /// Reads a pushed signal; `None` for anything not worth showing (not a
    /// current member's, our own, presence while we share none).
    pub async fn read_signal(&mut self, relay: &Relay, payload: &[u8]) -> Option<Event> {
        let (group, sender, bytes) = self.state.member.open_signal(payload)?;
        if sender == self.me() || self.is_pending(&group) {
            return None;
        }
        let by = self.name(relay, &sender).await;
        match Content::from_plaintext(&bytes, [0; 16]).body? {
            Body::Typing(t) => {
                Some(Event::Typing { conversation: self.label_of(&group), by, active: t.active })
            }
            Body::Presence(p) if self.state.presence => {
                Some(Event::Presence { by, online: p.online, last_seen: p.last_seen })
            }
            _ => None,
        }
    }

    // ----- KeyPackages -------------------------------------------------------

    /// Keeps [`KEY_PACKAGE_POOL`] KeyPackages on the relay (topping up when
    /// fewer than half remain) and a last-resort one that has not been used.
    /// The private halves are saved before the public ones are published.
    pub async fn top_up_key_packages(&mut self, relay: &Relay) -> Result<Option<Vec<u8>>> {
        let mut packages = Vec::new();
        for suite in Suite::ALL {
            let held = relay.key_package_status(suite.id()).await?;
            if held.available < KEY_PACKAGE_POOL / 2 {
                for _ in held.available..KEY_PACKAGE_POOL {
                    packages.push((self.state.member.new_key_package_for(suite, false)?, false, suite));
                }
            }
            if !held.last_resort || held.last_resort_used {
                packages.push((self.state.member.new_key_package_for(suite, true)?, true, suite));
            }
        }
        if packages.is_empty() {
            return Ok(None);
        }
        self.save()?;
        let mut first = None;
        for (key_package, last_resort, suite) in packages {
            let uploaded = relay.upload_key_package_as(key_package, last_resort, suite.id()).await?;
            first.get_or_insert(uploaded.fingerprint);
        }
        Ok(first)
    }
}

//! The one-shot subcommands of the walkthrough. Each loads the state file,
//! does its work, saves the state and prints the walkthrough's lines.

use std::error::Error;

use qpc::account;
use qpc::inbox::{self, Event};
use qpc::parse_identity_key;
use qpc::relay::{cert_fingerprint, Relay};
use qpc::state::{password_from, State, StateError};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::Common;

type Outcome = Result<(), Box<dyn Error>>;

/// Connects to the relay trusting only `--ca-cert`, not yet proving anything.
pub(crate) async fn connect_anonymous(c: &Common) -> Result<Relay, Box<dyn Error>> {
    let der = std::fs::read(&c.ca_cert).map_err(|e| {
        format!(
            "--ca-cert {}: cannot read the relay's certificate: {e} (copy server-cert.der from the relay's data directory)",
            c.ca_cert.display()
        )
    })?;
    Ok(Relay::connect(&c.server, &cert_fingerprint(&der)).await?)
}

/// Connects to the relay trusting only `--ca-cert`, and proves the identity.
async fn connect(c: &Common, state: &State) -> Result<Relay, Box<dyn Error>> {
    let relay = connect_anonymous(c).await?;
    relay.authenticate(&state.signing_key).await?;
    Ok(relay)
}

/// Loads the state file, asking for its password when it is encrypted.
fn open_state(c: &Common) -> Result<State, Box<dyn Error>> {
    match State::load(&c.state) {
        Err(StateError::NeedsPassword { .. }) => {
            Ok(State::load_with_password(&c.state, &password_from(c.password.clone())?)?)
        }
        other => Ok(other?),
    }
}

/// A peer named by username (resolved at the relay) or by identity key.
pub(crate) async fn resolve_peer(relay: &Relay, peer: &str) -> Result<Vec<[u8; 32]>, Box<dyn Error>> {
    if peer.len() == 64 && peer.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(vec![parse_identity_key("peer", peer)?]);
    }
    if peer.chars().all(|c| c.is_ascii_hexdigit()) && peer.len() > 16 {
        // Looks like a key with the wrong length: say so rather than "no user".
        parse_identity_key("--peer-key", peer)?;
    }
    Ok(relay.resolve_user(peer).await?)
}

/// The peer named by NAME-or-KEY, or by `--peer-key`, which must be a key.
pub fn peer_arg(
    name_or_key: Option<String>,
    peer_key: Option<String>,
) -> Result<Option<String>, Box<dyn Error>> {
    match (name_or_key, peer_key) {
        (Some(_), Some(_)) => Err("give the peer once: a name or key, or --peer-key".into()),
        (None, Some(key)) => {
            parse_identity_key("--peer-key", &key)?;
            Ok(Some(key))
        }
        (peer, None) => Ok(peer),
    }
}

fn required<'a>(peer: Option<&'a str>, what: &str) -> Result<&'a str, Box<dyn Error>> {
    peer.ok_or_else(|| format!("say which peer to {what}: a username or --peer-key KEY").into())
}

pub(crate) fn new_msg_id() -> Vec<u8> {
    let mut id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

pub(crate) fn short(key: &[u8; 32]) -> String {
    hex::encode(&key[..8])
}

/// The group named by `--group-id`, else the one shared with `peer`, else
/// the only group.
fn pick_group(state: &State, group: Option<&str>, peer: Option<&[u8; 32]>) -> Result<String, Box<dyn Error>> {
    let groups = state.member.groups();
    if let Some(g) = group {
        return if groups.iter().any(|x| x == g) {
            Ok(g.to_string())
        } else {
            Err(format!("no group named {g:?} in {}", state.path.display()).into())
        };
    }
    if let Some(peer) = peer {
        for g in &groups {
            if state.member.members(g)?.contains(peer) {
                return Ok(g.clone());
            }
        }
    }
    match groups.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err("no group yet: run `qpc create-group --group-id NAME` or `qpc join` first".into()),
        _ => Err(format!("several groups ({}): say which with --group-id", groups.join(", ")).into()),
    }
}

pub async fn register_state(c: &Common) -> Outcome {
    let mut state = if State::exists(&c.state) { open_state(c)? } else { State::generate(&c.state) };
    let key_package = state.member.new_key_package()?;
    // The private half must be on disk before the public half is published.
    state.save()?;
    let relay = connect(c, &state).await?;
    let uploaded = relay.upload_key_package(key_package).await?;
    relay.close().await;
    println!("identity_key : {}", hex::encode(state.identity_key()));
    println!("fingerprint : {}", hex::encode(uploaded.fingerprint));
    println!("KeyPackage uploaded successfully.");
    Ok(())
}

pub fn create_group(c: &Common, group: &str) -> Outcome {
    let mut state = open_state(c)?;
    state.member.create_group(group)?;
    state.save()?;
    println!("group created: {group}");
    Ok(())
}

pub async fn invite(c: &Common, peer: Option<&str>, group: Option<&str>) -> Outcome {
    let peer = required(peer, "invite")?;
    let mut state = open_state(c)?;
    let group = pick_group(&state, group, None)?;
    let relay = connect(c, &state).await?;
    let mut invited = 0;
    for key in resolve_peer(&relay, peer).await? {
        // Each device of the peer joins with its own KeyPackage.
        let key_package = match relay.fetch_key_package(&key).await {
            Ok(kp) => kp,
            Err(e) if e.status() == Some(qpc_proto::Status::NotFound) && invited > 0 => continue,
            Err(e) => return Err(e.into()),
        };
        let added = state.member.add_member(&group, &key_package, Some(key))?;
        if !added.existing_members.is_empty() {
            relay
                .batch_enqueue(&added.existing_members, group.as_bytes(), added.commit, new_msg_id())
                .await?;
        }
        relay.enqueue(&key, group.as_bytes(), added.welcome, new_msg_id()).await?;
        state.save()?;
        invited += 1;
    }
    relay.close().await;
    println!("invited peer (welcome queued)");
    Ok(())
}

fn print_events(events: &[Event]) {
    let mut index = 0;
    for event in events {
        match event {
            Event::Message { text, .. } => {
                println!("[{index}] plaintext: {text}");
                index += 1;
            }
            Event::Joined { group } => println!("joined group: {group}"),
            Event::EpochAdvanced { group, epoch, removed_self: false } => {
                println!("group {group} is now at epoch {epoch}")
            }
            Event::EpochAdvanced { group, removed_self: true, .. } => {
                println!("you were removed from group {group}")
            }
            Event::Proposal { group } => println!("proposal received in group {group}"),
            Event::Undecryptable { seq, sender, reason } => {
                eprintln!("message {seq} from {} cannot be decrypted: {reason}", short(sender))
            }
        }
    }
}

pub async fn join(c: &Common) -> Outcome {
    let mut state = open_state(c)?;
    let relay = connect(c, &state).await?;
    let events = inbox::drain(&relay, &mut state, None).await?;
    relay.close().await;
    let joined = events.iter().any(|e| matches!(e, Event::Joined { .. }));
    let others: Vec<_> = events.into_iter().filter(|e| !matches!(e, Event::Joined { .. })).collect();
    print_events(&others);
    if !joined {
        return Err("no Welcome found in DS for this identity (has the inviter run `qpc invite`?)".into());
    }
    println!("joined group successfully");
    Ok(())
}

pub async fn send(c: &Common, to: Option<&str>, all: bool, msg: &str, group: Option<&str>) -> Outcome {
    if to.is_some() == all {
        return Err("say who gets the message: --to NAME, --peer-key KEY or --all (one of them)".into());
    }
    let mut state = open_state(c)?;
    let relay = connect(c, &state).await?;
    let peers = match to {
        Some(to) => resolve_peer(&relay, to).await?,
        None => Vec::new(),
    };
    let group = pick_group(&state, group, peers.first())?;
    let members = state.member.members(&group)?;
    let me = state.identity_key();
    let recipients: Vec<[u8; 32]> = if all {
        members.into_iter().filter(|m| *m != me).collect()
    } else {
        let recipients: Vec<_> = peers.iter().filter(|p| members.contains(p)).copied().collect();
        if recipients.is_empty() {
            return Err(format!("{} is not a member of group {group}", to.unwrap_or_default()).into());
        }
        recipients
    };
    if recipients.is_empty() {
        return Err(format!("group {group} has no other members yet").into());
    }
    let ciphertext = state.member.encrypt(&group, msg.as_bytes())?;
    // The ratchet moved on: save before the ciphertext leaves.
    state.save()?;
    relay.batch_enqueue(&recipients, group.as_bytes(), ciphertext, new_msg_id()).await?;
    relay.close().await;
    println!("message sent");
    Ok(())
}

pub async fn recv(c: &Common, stream: bool) -> Outcome {
    let mut state = open_state(c)?;
    let relay = connect(c, &state).await?;
    loop {
        let wait = stream.then_some(30_000);
        let events = inbox::drain(&relay, &mut state, wait).await?;
        print_events(&events);
        if !stream {
            break;
        }
    }
    relay.close().await;
    Ok(())
}

pub async fn fetch_key(c: &Common, peer: Option<&str>) -> Outcome {
    let peer = required(peer, "fetch a KeyPackage of")?;
    let state = open_state(c)?;
    let relay = connect(c, &state).await?;
    for key in resolve_peer(&relay, peer).await? {
        let key_package = relay.fetch_key_package(&key).await?;
        println!(
            "KeyPackage of {}: {} bytes, sha256 {}",
            hex::encode(key),
            key_package.len(),
            hex::encode(Sha256::digest(&key_package))
        );
    }
    relay.close().await;
    Ok(())
}

pub fn whoami(c: &Common) -> Outcome {
    let state = open_state(c)?;
    let key = state.identity_key();
    println!("identity_key : {}", hex::encode(key));
    println!("fingerprint : {}", hex::encode(Sha256::digest(key)));
    for group in state.member.groups() {
        println!(
            "group : {group} (epoch {}, {} members)",
            state.member.epoch(&group)?,
            state.member.members(&group)?.len()
        );
    }
    Ok(())
}

pub async fn demo_group(c: &Common) -> Outcome {
    let dir = std::env::temp_dir();
    let mut alice = State::generate(&dir.join(format!("qpc-demo-alice-{}.bin", std::process::id())));
    let mut bob = State::generate(&dir.join(format!("qpc-demo-bob-{}.bin", std::process::id())));
    let a = connect(c, &alice).await?;
    let b = connect(c, &bob).await?;
    b.upload_key_package(bob.member.new_key_package()?).await?;
    let group = format!("demo-{}", hex::encode(&alice.identity_key()[..4]));
    alice.member.create_group(&group)?;
    let added = alice.member.add_member(
        &group,
        &a.fetch_key_package(&bob.identity_key()).await?,
        Some(bob.identity_key()),
    )?;
    a.enqueue(&bob.identity_key(), group.as_bytes(), added.welcome, new_msg_id()).await?;
    let received = async |relay: &Relay, who: &mut State| -> Result<Vec<String>, Box<dyn Error>> {
        let mut texts = Vec::new();
        let envelopes = relay.peek(0).await?;
        for env in &envelopes {
            match who.member.process(&env.payload)? {
                qpc::mls::Incoming::Welcome(w) => {
                    who.member.join(&w)?;
                }
                qpc::mls::Incoming::Application { plaintext, .. } => {
                    texts.push(String::from_utf8_lossy(&plaintext).into_owned())
                }
                _ => {}
            }
        }
        if let Some(last) = envelopes.last() {
            relay.ack(last.seq).await?;
        }
        Ok(texts)
    };
    received(&b, &mut bob).await?;
    a.enqueue(
        &bob.identity_key(),
        group.as_bytes(),
        alice.member.encrypt(&group, b"hello bob")?,
        new_msg_id(),
    )
    .await?;
    for text in received(&b, &mut bob).await? {
        println!("Alice -> Bob plaintext: {text}");
    }
    b.enqueue(
        &alice.identity_key(),
        group.as_bytes(),
        bob.member.encrypt(&group, b"hello alice")?,
        new_msg_id(),
    )
    .await?;
    for text in received(&a, &mut alice).await? {
        println!("Bob -> Alice plaintext: {text}");
    }
    a.close().await;
    b.close().await;
    println!("demo-group complete");
    Ok(())
}

fn username_of(c: &Common) -> Result<&str, Box<dyn Error>> {
    c.username.as_deref().ok_or_else(|| "--username is required".into())
}

/// Uploads a fresh KeyPackage, saving its private half first.
pub(crate) async fn publish_key_package(relay: &Relay, state: &mut State) -> Result<Vec<u8>, Box<dyn Error>> {
    let key_package = state.member.new_key_package()?;
    state.save()?;
    Ok(relay.upload_key_package(key_package).await?.fingerprint)
}

pub async fn register_user(c: &Common, token: &str) -> Outcome {
    let username = username_of(c)?;
    if State::exists(&c.state) {
        return Err(format!(
            "state file {} already exists: use `qpc login --username {username}`",
            c.state.display()
        )
        .into());
    }
    let password = password_from(c.password.clone())?;
    let mut state = State::generate_protected(&c.state, Some(username), &password);
    let relay = connect_anonymous(c).await?;
    // Nothing is written locally unless the relay created the account.
    account::register(&relay, username, &password, token, &state.signing_key).await?;
    let fingerprint = publish_key_package(&relay, &mut state).await?;
    relay.close().await;
    println!("registered user {username}");
    println!("identity_key : {}", hex::encode(state.identity_key()));
    println!("fingerprint : {}", hex::encode(fingerprint));
    println!("KeyPackage uploaded successfully.");
    Ok(())
}

pub async fn login(c: &Common) -> Outcome {
    let username = username_of(c)?;
    let password = password_from(c.password.clone())?;
    let existing = State::exists(&c.state);
    let mut state = if existing {
        State::load_with_password(&c.state, &password)?
    } else {
        State::generate_protected(&c.state, Some(username), &password)
    };
    let relay = connect_anonymous(c).await?;
    account::login(&relay, username, &password, &state.signing_key).await?;
    if !existing {
        publish_key_package(&relay, &mut state).await?;
    }
    relay.close().await;
    println!("logged in as {username}{}", if existing { "" } else { " (new device)" });
    println!("identity_key : {}", hex::encode(state.identity_key()));
    Ok(())
}

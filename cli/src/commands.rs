//! The one-shot subcommands of the walkthrough. Each loads the state file,
//! does its work, saves the state and prints the walkthrough's lines.

use std::error::Error;

use qpc::inbox::{self, Event};
use qpc::parse_identity_key;
use qpc::relay::{cert_fingerprint, Relay};
use qpc::state::State;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::Common;

type Outcome = Result<(), Box<dyn Error>>;

/// Connects to the relay trusting only `--ca-cert`, and proves the identity.
async fn connect(c: &Common, state: &State) -> Result<Relay, Box<dyn Error>> {
    let der = std::fs::read(&c.ca_cert).map_err(|e| {
        format!("--ca-cert {}: cannot read the relay's certificate: {e} (copy server-cert.der from the relay's data directory)", c.ca_cert.display())
    })?;
    let relay = Relay::connect(&c.server, &cert_fingerprint(&der)).await?;
    relay.authenticate(&state.signing_key).await?;
    Ok(relay)
}

fn new_msg_id() -> Vec<u8> {
    let mut id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

fn short(key: &[u8; 32]) -> String {
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
    let mut state = if State::exists(&c.state) { State::load(&c.state)? } else { State::generate(&c.state) };
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
    let mut state = State::load(&c.state)?;
    state.member.create_group(group)?;
    state.save()?;
    println!("group created: {group}");
    Ok(())
}

pub async fn invite(c: &Common, peer_key: &str, group: Option<&str>) -> Outcome {
    let peer = parse_identity_key("--peer-key", peer_key)?;
    let mut state = State::load(&c.state)?;
    let group = pick_group(&state, group, None)?;
    let relay = connect(c, &state).await?;
    let key_package = relay.fetch_key_package(&peer).await?;
    let added = state.member.add_member(&group, &key_package, Some(peer))?;
    if !added.existing_members.is_empty() {
        relay.batch_enqueue(&added.existing_members, group.as_bytes(), added.commit, new_msg_id()).await?;
    }
    relay.enqueue(&peer, group.as_bytes(), added.welcome, new_msg_id()).await?;
    state.save()?;
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
    let mut state = State::load(&c.state)?;
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

pub async fn send(c: &Common, peer_key: Option<&str>, all: bool, msg: &str, group: Option<&str>) -> Outcome {
    let peer = match (peer_key, all) {
        (Some(k), false) => Some(parse_identity_key("--peer-key", k)?),
        (None, true) => None,
        (Some(_), true) => return Err("give either --peer-key or --all, not both".into()),
        (None, false) => return Err("say who gets the message: --peer-key KEY or --all".into()),
    };
    let mut state = State::load(&c.state)?;
    let group = pick_group(&state, group, peer.as_ref())?;
    let members = state.member.members(&group)?;
    let me = state.identity_key();
    let recipients: Vec<[u8; 32]> = match peer {
        Some(p) if members.contains(&p) => vec![p],
        Some(p) => return Err(format!("{} is not a member of group {group}", hex::encode(p)).into()),
        None => members.into_iter().filter(|m| *m != me).collect(),
    };
    if recipients.is_empty() {
        return Err(format!("group {group} has no other members yet").into());
    }
    let ciphertext = state.member.encrypt(&group, msg.as_bytes())?;
    // The ratchet moved on: save before the ciphertext leaves.
    state.save()?;
    let relay = connect(c, &state).await?;
    relay.batch_enqueue(&recipients, group.as_bytes(), ciphertext, new_msg_id()).await?;
    relay.close().await;
    println!("message sent");
    Ok(())
}

pub async fn recv(c: &Common, stream: bool) -> Outcome {
    let mut state = State::load(&c.state)?;
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

pub async fn fetch_key(c: &Common, peer_key: &str) -> Outcome {
    let peer = parse_identity_key("--peer-key", peer_key)?;
    let state = State::load(&c.state)?;
    let relay = connect(c, &state).await?;
    let key_package = relay.fetch_key_package(&peer).await?;
    relay.close().await;
    println!(
        "KeyPackage of {}: {} bytes, sha256 {}",
        hex::encode(peer),
        key_package.len(),
        hex::encode(Sha256::digest(&key_package))
    );
    Ok(())
}

pub fn whoami(c: &Common) -> Outcome {
    let state = State::load(&c.state)?;
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

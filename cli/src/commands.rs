//! The one-shot subcommands of the walkthrough. Each opens the state file
//! (holding its lock), connects, lets the session send what the outbox
//! still holds, does its one thing through the session layer and prints the
//! walkthrough's lines.

use std::error::Error;

use qpc::account;
use qpc::mls::Suite;
use qpc::parse_identity_key;
use qpc::recovery;
use qpc::relay::{cert_fingerprint, Relay};
use qpc::session::{Event, Session};
use qpc::state::{password_from, State, StateError, StateLock};
use sha2::{Digest, Sha256};

use crate::{render, Common};

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

/// The state file, locked for this process, loaded (asking for its
/// password when it is encrypted).
pub(crate) fn open_state(c: &Common) -> Result<(StateLock, State), Box<dyn Error>> {
    let lock = StateLock::take(&c.state)?;
    Ok((lock, open_state_locked(c)?))
}

/// Loads the state when its lock is already held; damaged outbox entries
/// are reported.
fn open_state_locked(c: &Common) -> Result<State, Box<dyn Error>> {
    let state = match State::load(&c.state) {
        Err(StateError::NeedsPassword { .. }) => {
            State::load_with_password(&c.state, &password_from(c.password.clone())?)?
        }
        other => other?,
    };
    for warning in &state.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(state)
}

/// A session on the state file, connected and proven, with the outbox sent.
pub(crate) async fn online(c: &Common) -> Result<(StateLock, Session, Relay, Vec<Event>), Box<dyn Error>> {
    let (lock, state) = open_state(c)?;
    let relay = connect(c, &state).await?;
    let mut session = Session::new(state);
    let events = session.start(&relay).await?;
    Ok((lock, session, relay, events))
}

/// A peer named by username (resolved at the relay and checked against its
/// key transparency log) or by identity key.
pub(crate) async fn resolve_peer(
    session: &mut Session,
    relay: &Relay,
    peer: &str,
) -> Result<Vec<[u8; 32]>, Box<dyn Error>> {
    if peer.len() == 64 && peer.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(vec![parse_identity_key("peer", peer)?]);
    }
    if peer.chars().all(|c| c.is_ascii_hexdigit()) && peer.len() > 16 {
        // Looks like a key with the wrong length: say so rather than "no user".
        parse_identity_key("--peer-key", peer)?;
    }
    // A refusal stays a RelayError, so callers can tell "no such user".
    let keys = session.resolve_user(relay, peer).await.map_err(|e| -> Box<dyn Error> {
        match e {
            qpc::session::SessionError::Relay(r) => Box::new(r),
            other => Box::new(other),
        }
    })?;
    for event in session.take_notices() {
        if let Some(line) = render::event_line(&event) {
            println!("{line}");
        }
    }
    Ok(keys)
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

/// The group named by `--group-id`, else the one shared with `peer`, else
/// the only group (pending invitations do not count).
pub(crate) fn pick_group(
    session: &Session,
    group: Option<&str>,
    peer: Option<&[u8; 32]>,
) -> Result<String, Box<dyn Error>> {
    let groups = session.groups();
    if let Some(g) = group {
        return if groups.iter().any(|x| x == g) {
            Ok(g.to_string())
        } else if session.is_pending(g) {
            Err(format!("the invitation to group {g} is pending: run `qpc join --group-id {g}` first").into())
        } else {
            Err(format!("no group named {g:?} in {}", session.state.path.display()).into())
        };
    }
    if let Some(peer) = peer {
        for g in &groups {
            if session.state.member.members(g)?.contains(peer) {
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

/// Prints what reading the queue brought, in the walkthrough's words (or as
/// JSON lines), then answers it with read receipts.
async fn print_events(session: &mut Session, relay: &Relay, events: &[Event], json: bool) -> Outcome {
    for event in events {
        if json {
            println!("{}", render::event_json(event));
        } else if let Some(line) = render::event_line(event) {
            match event {
                Event::Undecryptable { .. } | Event::Refused { .. } => eprintln!("{line}"),
                _ => println!("{line}"),
            }
        }
    }
    for entry in session.take_unshown()? {
        if json {
            println!("{}", render::message_json(session, &entry));
        } else {
            println!("{}", render::recv_line(&entry));
        }
    }
    // What was printed was read.
    session.send_receipts(relay, &|_| true).await?;
    Ok(())
}

pub async fn register_state(c: &Common) -> Outcome {
    let lock = StateLock::take(&c.state)?;
    let state = if State::exists(&c.state) { open_state_locked(c)? } else { State::generate(&c.state) };
    // The private halves are on disk before the public halves are published.
    state.save()?;
    let relay = connect(c, &state).await?;
    let mut session = Session::new(state);
    session.flush_outbox(&relay).await?;
    let uploaded = session.top_up_key_packages(&relay).await?;
    relay.close().await;
    drop(lock);
    let key = session.me();
    // The fingerprint of the first KeyPackage uploaded now (of the identity
    // key when the relay already held enough).
    let fingerprint = uploaded.unwrap_or_else(|| Sha256::digest(key).to_vec());
    println!("identity_key : {}", hex::encode(key));
    println!("fingerprint : {}", hex::encode(fingerprint));
    println!("KeyPackage uploaded successfully.");
    Ok(())
}

pub fn create_group(c: &Common, group: &str, suite: Option<&str>) -> Outcome {
    let suite = match suite {
        None => Suite::Pq,
        Some(name) => Suite::parse(name)
            .ok_or_else(|| format!("--suite {name:?}: expected pq (post-quantum, the default) or classic"))?,
    };
    let (_lock, mut state) = open_state(c)?;
    state.member.create_group_with(group, suite)?;
    state.save()?;
    println!("group created: {group}");
    Ok(())
}

pub async fn invite(c: &Common, peer: Option<&str>, group: Option<&str>) -> Outcome {
    let peer = required(peer, "invite")?;
    let (_lock, mut session, relay, _) = online(c).await?;
    let group = pick_group(&session, group, None)?;
    let keys = resolve_peer(&mut session, &relay, peer).await?;
    session.add(&relay, &group, peer, &keys).await?;
    relay.close().await;
    println!("invited peer (welcome queued)");
    Ok(())
}

pub async fn remove(c: &Common, peer: Option<&str>, group: Option<&str>) -> Outcome {
    let peer = required(peer, "remove")?;
    let (_lock, mut session, relay, _) = online(c).await?;
    let keys = resolve_peer(&mut session, &relay, peer).await?;
    let group = pick_group(&session, group, keys.first())?;
    let members = session.state.member.members(&group)?;
    let targets: Vec<_> = keys.into_iter().filter(|k| members.contains(k)).collect();
    if targets.is_empty() {
        return Err(format!("{peer} is not a member of group {group}").into());
    }
    let epoch = session.remove(&relay, &group, peer, &targets).await?;
    relay.close().await;
    println!("removed {peer} from group {group} (epoch {epoch})");
    Ok(())
}

pub async fn update(c: &Common, group: Option<&str>) -> Outcome {
    let (_lock, mut session, relay, _) = online(c).await?;
    let group = pick_group(&session, group, None)?;
    let epoch = session.update(&relay, &group).await?;
    relay.close().await;
    println!("key rotated in group {group} (epoch {epoch})");
    Ok(())
}

pub async fn join(c: &Common, group: Option<&str>) -> Outcome {
    let (_lock, mut session, relay, mut events) = online(c).await?;
    events.extend(session.drain(&relay, None).await?);
    let chosen = match group {
        Some(g) => g.to_string(),
        None => {
            let pending: Vec<String> = session.state.invitations.iter().map(|i| i.group.clone()).collect();
            match pending.as_slice() {
                [only] => only.clone(),
                [] => {
                    let joined = events.iter().any(|e| matches!(e, Event::Joined { .. }));
                    print_events(&mut session, &relay, &events, false).await?;
                    relay.close().await;
                    if joined {
                        println!("joined group successfully");
                        return Ok(());
                    }
                    return Err(
                        "no Welcome found in DS for this identity (has the inviter run `qpc invite`?)".into(),
                    );
                }
                several => {
                    relay.close().await;
                    return Err(format!(
                        "several invitations are pending ({}): say which with --group-id",
                        several.join(", ")
                    )
                    .into());
                }
            }
        }
    };
    session.accept(&chosen)?;
    session.share_delivery_token(&relay).await?;
    let others: Vec<Event> = events
        .into_iter()
        .filter(|e| !matches!(e, Event::Invited { group, .. } if *group == chosen))
        .collect();
    println!("joined group: {chosen}");
    print_events(&mut session, &relay, &others, false).await?;
    relay.close().await;
    println!("joined group successfully");
    Ok(())
}

pub async fn decline(c: &Common, group: &str) -> Outcome {
    let (_lock, mut session, relay, _) = online(c).await?;
    session.drain(&relay, None).await?;
    session.decline(&relay, group).await?;
    relay.close().await;
    println!("declined the invitation to {group}");
    Ok(())
}

/// Reads the queue first, so an invitation that is waiting there counts.
pub async fn invitations(c: &Common) -> Outcome {
    let (_lock, mut session, relay, _) = online(c).await?;
    session.drain(&relay, None).await?;
    relay.close().await;
    if session.state.invitations.is_empty() {
        println!("no pending invitations");
    }
    for invitation in &session.state.invitations {
        println!("invitation: {} from {}", invitation.group, invitation.inviter);
    }
    Ok(())
}

pub async fn send(c: &Common, to: Option<&str>, all: bool, msg: &str, group: Option<&str>) -> Outcome {
    if to.is_some() == all {
        return Err("say who gets the message: --to NAME, --peer-key KEY or --all (one of them)".into());
    }
    let (_lock, mut session, relay, _) = online(c).await?;
    let peers = match to {
        Some(to) => resolve_peer(&mut session, &relay, to).await?,
        None => Vec::new(),
    };
    let group = pick_group(&session, group, peers.first())?;
    if !all {
        let members = session.state.member.members(&group)?;
        if !peers.iter().any(|p| members.contains(p)) {
            return Err(format!("{} is not a member of group {group}", to.unwrap_or_default()).into());
        }
    }
    // The group's every other member gets it (an MLS message is for the
    // whole group), the person's other devices included.
    session.send_text(&relay, &group, msg).await?;
    relay.close().await;
    println!("message sent");
    Ok(())
}

pub async fn recv(c: &Common, stream: bool, json: bool) -> Outcome {
    let (_lock, mut session, relay, events) = online(c).await?;
    print_events(&mut session, &relay, &events, json).await?;
    loop {
        let wait = stream.then_some(30_000);
        // Shown once saved, before the ack and the upkeep: they wait while
        // the relay syncs a commit, and a waiting reader gets a message
        // before its sync.
        let read = session.drain_read(&relay, wait).await?;
        print_events(&mut session, &relay, &read, json).await?;
        let settled = session.drain_settle(&relay, &read).await?;
        print_events(&mut session, &relay, &settled, json).await?;
        if !stream {
            break;
        }
    }
    relay.close().await;
    Ok(())
}

/// Sealed sender: a new delivery token for this device's queue, handed to
/// its groups; the old one is refused by the relay from now on.
pub async fn rotate_token(c: &Common) -> Outcome {
    let (_lock, mut session, relay, _) = online(c).await?;
    session.rotate_delivery_token(&relay).await?;
    relay.close().await;
    println!("delivery token replaced: the old one is revoked");
    Ok(())
}

pub async fn fetch_key(c: &Common, peer: Option<&str>) -> Outcome {
    let peer = required(peer, "fetch a KeyPackage of")?;
    let (_lock, state) = open_state(c)?;
    let relay = connect(c, &state).await?;
    let mut session = Session::new(state);
    for key in resolve_peer(&mut session, &relay, peer).await? {
        let fetched = relay.fetch_key_package_of(&key, 0).await?;
        println!(
            "KeyPackage of {}: {} bytes, sha256 {}{}",
            hex::encode(key),
            fetched.key_package.len(),
            hex::encode(Sha256::digest(&fetched.key_package)),
            if fetched.last_resort { " (last resort)" } else { "" }
        );
    }
    relay.close().await;
    Ok(())
}

pub fn whoami(c: &Common) -> Outcome {
    let (_lock, state) = open_state(c)?;
    let key = state.identity_key();
    println!("identity_key : {}", hex::encode(key));
    println!("fingerprint : {}", hex::encode(Sha256::digest(key)));
    let session = Session::new(state);
    for group in session.groups() {
        println!(
            "group : {group} (epoch {}, {} members)",
            session.state.member.epoch(&group)?,
            session.state.member.members(&group)?.len()
        );
        println!("suite : {group}: {}", session.state.member.suite(&group)?.describe());
    }
    for invitation in &session.state.invitations {
        println!("invitation : {} from {}", invitation.group, invitation.inviter);
    }
    Ok(())
}

/// Alice and Bob in this process, through the relay and the session layer.
pub async fn demo_group(c: &Common) -> Outcome {
    let dir = std::env::temp_dir();
    let paths = ["alice", "bob"].map(|n| dir.join(format!("qpc-demo-{n}-{}.bin", std::process::id())));
    let result = demo_group_in(c, &paths).await;
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn demo_group_in(c: &Common, paths: &[std::path::PathBuf; 2]) -> Outcome {
    let mut alice = Session::new(State::generate(&paths[0]));
    let mut bob = Session::new(State::generate(&paths[1]));
    let a = connect(c, &alice.state).await?;
    let b = connect(c, &bob.state).await?;
    alice.start(&a).await?;
    bob.start(&b).await?;
    let group = format!("demo-{}", hex::encode(&alice.me()[..4]));
    alice.state.member.create_group_with(&group, Suite::Pq)?;
    alice.add(&a, &group, "bob", &[bob.me()]).await?;
    bob.drain(&b, None).await?;
    bob.accept(&group)?;
    alice.send_text(&a, &group, "hello bob").await?;
    bob.drain(&b, None).await?;
    for entry in bob.take_unshown()? {
        println!("Alice -> Bob plaintext: {}", entry.text);
    }
    bob.send_text(&b, &group, "hello alice").await?;
    alice.drain(&a, None).await?;
    for entry in alice.take_unshown()? {
        println!("Bob -> Alice plaintext: {}", entry.text);
    }
    a.close().await;
    b.close().await;
    println!("demo-group complete");
    Ok(())
}

fn username_of(c: &Common) -> Result<&str, Box<dyn Error>> {
    c.username.as_deref().ok_or_else(|| "--username is required".into())
}

pub async fn register_user(c: &Common, token: &str) -> Outcome {
    let username = username_of(c)?;
    let lock = StateLock::take(&c.state)?;
    if State::exists(&c.state) {
        return Err(format!(
            "state file {} already exists: use `qpc login --username {username}`",
            c.state.display()
        )
        .into());
    }
    let password = password_from(c.password.clone())?;
    let mut state = State::generate_protected(&c.state, Some(username), &password);
    state.relay = Some(c.server.clone());
    let relay = connect_anonymous(c).await?;
    // Nothing is written locally unless the relay created the account.
    account::register(&relay, username, &password, token, &state.signing_key).await?;
    let mut session = Session::new(state);
    let fingerprint = session.top_up_key_packages(&relay).await?.unwrap_or_default();
    relay.close().await;
    drop(lock);
    println!("registered user {username}");
    println!("identity_key : {}", hex::encode(session.me()));
    println!("fingerprint : {}", hex::encode(fingerprint));
    println!("KeyPackage uploaded successfully.");
    Ok(())
}

pub async fn login(c: &Common) -> Outcome {
    let username = username_of(c)?;
    let password = password_from(c.password.clone())?;
    let _lock = StateLock::take(&c.state)?;
    let existing = State::exists(&c.state);
    let mut state = if existing {
        State::load_with_password(&c.state, &password)?
    } else {
        State::generate_protected(&c.state, Some(username), &password)
    };
    if state.relay.is_none() {
        state.relay = Some(c.server.clone());
    }
    let relay = connect_anonymous(c).await?;
    account::login(&relay, username, &password, &state.signing_key).await?;
    let mut session = Session::new(state);
    session.start(&relay).await?;
    if !existing {
        session.state.save()?;
    }
    relay.close().await;
    println!("logged in as {username}{}", if existing { "" } else { " (new device)" });
    println!("identity_key : {}", hex::encode(session.me()));
    Ok(())
}

/// Reports USER to the relay's owner (the account and the note; the relay
/// has no message contents to add).
pub async fn report(c: &Common, user: &str, reason: &[String]) -> Outcome {
    let reason = reason.join(" ");
    let (_lock, state) = open_state(c)?;
    let relay = connect(c, &state).await?;
    let id = relay.report(user, &reason).await?;
    relay.close().await;
    println!("reported {user} to the relay's owner (report {id})");
    Ok(())
}

/// Stores a recovery bundle of this identity and account on the relay and
/// prints its code, once.
pub async fn recovery_setup(c: &Common) -> Outcome {
    let (_lock, state) = open_state(c)?;
    let username = state
        .username
        .clone()
        .ok_or("recovery needs an account: this state file has none (`qpc register-user` or `qpc login`)")?;
    let relay = connect(c, &state).await?;
    let contents = recovery::Contents {
        username: username.clone(),
        identity_seed: state.signing_key.to_bytes().to_vec(),
    };
    let code = recovery::setup(&relay, &contents, qpc::state::KdfParams::default()).await?;
    relay.close().await;
    println!("recovery code : {code}");
    println!("Write this code down and keep it away from your devices: it is shown only now.");
    println!("With it, `qpc recover --username {username}` brings your account back on a new device.");
    Ok(())
}

/// The recovery code: QPC_RECOVERY_CODE, else a line of standard input
/// when it is not a terminal, else typed at a prompt.
fn recovery_code() -> Result<String, Box<dyn Error>> {
    use std::io::IsTerminal;
    if let Ok(code) = std::env::var("QPC_RECOVERY_CODE") {
        if !code.trim().is_empty() {
            return Ok(code);
        }
    }
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim().is_empty() {
            return Err("no recovery code on standard input (or in QPC_RECOVERY_CODE)".into());
        }
        return Ok(line);
    }
    Ok(rpassword::prompt_password("Recovery code: ").map_err(|e| {
        format!("cannot prompt for the recovery code on the terminal ({e}); set QPC_RECOVERY_CODE")
    })?)
}

/// Brings the account back on a new device from its recovery bundle: the
/// same identity key, a new state file and password; the lost devices are
/// retired at the relay.
pub async fn recover(c: &Common) -> Outcome {
    let username = username_of(c)?;
    let lock = StateLock::take(&c.state)?;
    if State::exists(&c.state) {
        return Err(format!(
            "state file {} already exists: recovery makes a new one (choose another --state)",
            c.state.display()
        )
        .into());
    }
    let code = recovery_code()?;
    let relay = connect_anonymous(c).await?;
    let contents = recovery::recover(&relay, username, &code).await?;
    let seed: [u8; 32] =
        contents.identity_seed.as_slice().try_into().map_err(|_| "damaged recovery bundle")?;
    let password = qpc::state::password_with_prompt(c.password.clone(), "New password: ")?;
    let mut state = State::restore_protected(&c.state, seed, username, &password);
    state.relay = Some(c.server.clone());
    // The new password (the relay admits it on this connection only, after
    // the right code), which also retires the lost devices.
    account::register(&relay, username, &password, "", &state.signing_key).await?;
    let mut session = Session::new(state);
    session.top_up_key_packages(&relay).await?;
    session.state.save()?;
    relay.close().await;
    drop(lock);
    println!("recovered account {username}");
    println!("identity_key : {}", hex::encode(session.me()));
    println!("Your lost devices can no longer use the account. Ask your contacts to invite you to your groups again.");
    Ok(())
}

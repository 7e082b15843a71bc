//! The key transparency subcommands: `qpc audit` (the whole log, end to
//! end), `qpc devices`, `qpc revoke-device KEY` and `qpc verify NAME` (the
//! REPL's `/verify` too). The checks are the library's (`qpc::kt`, through
//! the session); this file only prints.

use std::error::Error;

use qpc::account;
use qpc::kt::safety_number;
use qpc::parse_identity_key;
use qpc::relay::Relay;
use qpc::session::Session;
use qpc::state::password_from;
use qpc_proto::{pb, Method};

use crate::commands::{connect_anonymous, online, open_state};
use crate::{render, Common};

type Outcome = Result<(), Box<dyn Error>>;

pub async fn audit(c: &Common) -> Outcome {
    let (_lock, mut session, relay, _) = online(c).await?;
    let before = session.state.kt.head.as_ref().map(|h| h.size);
    let (head, entries) = session.state.kt.audit(&relay).await?;
    session.state.save()?;
    relay.close().await;
    let mut counts = [0usize; 5];
    for e in &entries {
        counts[e.kind as usize] += 1;
    }
    println!(
        "log verified: {} entries ({} accounts created, {} devices added, {} revoked, {} accounts deleted)",
        head.size, counts[1], counts[2], counts[3], counts[4]
    );
    println!("root : {}", head.root_hex());
    println!("signed : {}", render::utc_time(head.time_ms));
    match before {
        Some(n) => println!("consistent with the head of {n} entries this device saw before"),
        None => println!("first head this device has seen; later ones must extend it"),
    }
    Ok(())
}

pub async fn devices(c: &Common) -> Outcome {
    let (_lock, session, relay, _) = online(c).await?;
    let r: pb::ListDevicesResponse = relay.call(Method::ListDevices, &pb::ListDevicesRequest {}).await?;
    relay.close().await;
    let me = session.me();
    for d in r.devices {
        let this = if d.identity_key == me { "  (this device)" } else { "" };
        let seen = if d.last_seen_ms == 0 { "never".to_string() } else { render::utc_time(d.last_seen_ms) };
        println!(
            "{}  added {}  last seen {seen}{this}",
            hex::encode(&d.identity_key),
            render::utc_time(d.added_at_ms)
        );
    }
    Ok(())
}

pub async fn revoke_device(c: &Common, key: &str) -> Outcome {
    let key = parse_identity_key("KEY", key)?;
    let (_lock, state) = open_state(c)?;
    if key == state.identity_key() {
        return Err("that is this device: revoke it from another device of the account".into());
    }
    let username = c
        .username
        .clone()
        .or_else(|| state.username.clone())
        .ok_or("revoking a device needs an account: --username NAME")?;
    let password = password_from(c.password.clone())?;
    let relay = connect_anonymous(c).await?;
    // The password, not only this device's key, proves the revocation.
    account::login(&relay, &username, &password, &state.signing_key).await?;
    let mut session = Session::new(state);
    session.start(&relay).await?;
    let (index, events) = session.revoke_device(&relay, &key).await?;
    relay.close().await;
    println!("revoked device {} (log entry {index})", hex::encode(key));
    for e in &events {
        if let Some(line) = render::event_line(e) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The safety number with `peer` and what the verified mark says, as lines;
/// marks `peer` verified.
pub async fn verify_lines(
    session: &mut Session,
    relay: &Relay,
    peer: &str,
) -> Result<Vec<String>, Box<dyn Error>> {
    let me_name = session.state.username.clone().unwrap_or_default();
    let mine =
        if me_name.is_empty() { vec![session.me()] } else { session.resolve_user(relay, &me_name).await? };
    let theirs = session.resolve_user(relay, peer).await?;
    let number = safety_number((&me_name, &mine), (peer, &theirs));
    let mut lines = Vec::new();
    match session.state.kt.verified_number(peer) {
        Some(old) if old != number => lines.push(format!(
            "! the safety number with {peer} CHANGED since you verified it: the verified mark is broken (their or your devices changed); compare the new one"
        )),
        Some(_) => lines.push(format!("{peer} is verified: the safety number is unchanged")),
        None => {}
    }
    lines.push(format!("safety number with {peer}: {number}"));
    lines.push(format!("compare it with {peer} face to face or on a call; {peer} is now marked verified"));
    session.state.kt.mark_verified(peer, &number);
    session.state.save()?;
    for event in session.take_notices() {
        if let Some(line) = render::event_line(&event) {
            lines.push(line);
        }
    }
    Ok(lines)
}

pub async fn verify(c: &Common, peer: &str) -> Outcome {
    let (_lock, mut session, relay, _) = online(c).await?;
    let lines = verify_lines(&mut session, &relay, peer).await?;
    relay.close().await;
    lines.iter().for_each(|l| println!("{l}"));
    Ok(())
}

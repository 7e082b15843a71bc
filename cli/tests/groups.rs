//! Groups that hold in daily use, against a real relay with real `qpc`
//! processes: commits made in the same epoch by two members, crashes at every
//! step of invite, join, remove, update, send and recv, a message shown
//! before a relay crash and sent again, a person who stays
//! offline while three people invite them, every device of a person, fences a
//! stranger cannot pass, one process per state file, declined invitations and
//! a damaged outbox entry.

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::SigningKey;
use qpc::relay::Relay;
use qpc::state::State;
use qpc_proto::{pb, Status};

const G: &str = "g";

/// One device: a name for the assertions, its state file, its identity key
/// and the account flags its commands need (none for `register-state`).
struct Dev {
    name: String,
    state: PathBuf,
    key: String,
    auth: Vec<String>,
}

impl Dev {
    /// A `qpc` command of this device, with the test hooks cleared and both
    /// outputs piped.
    fn command(&self, server: &Server, args: &[&str]) -> Command {
        let (sub, rest) = args.split_first().expect("subcommand");
        let mut cmd = Command::new(qpc_bin());
        cmd.arg(sub)
            .arg("--state")
            .arg(&self.state)
            .arg("--server")
            .arg(&server.addr)
            .arg("--ca-cert")
            .arg(server.cert())
            .args(rest)
            .args(&self.auth)
            .env_remove("QPC_TEST_CRASH_AT")
            .env_remove("QPC_TEST_HOLD_COMMIT")
            .env_remove("QPC_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, server: &Server, args: &[&str]) -> Output {
        self.command(server, args).output().expect("run qpc")
    }

    /// Runs with `QPC_TEST_CRASH_AT=point` and asserts that the process died.
    #[track_caller]
    fn crash(&self, server: &Server, point: &str, args: &[&str]) -> Output {
        let out = self.command(server, args).env("QPC_TEST_CRASH_AT", point).output().expect("run qpc");
        // Stopped as by kill -9: by a signal, not by an error exit.
        assert!(
            std::os::unix::process::ExitStatusExt::signal(&out.status).is_some(),
            "{} {args:?} should have crashed at {point} ({}); stdout: {}\nstderr: {}",
            self.name,
            out.status,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// `recv`, asserting success; the plaintexts it showed.
    #[track_caller]
    fn recv(&self, server: &Server) -> Vec<String> {
        plaintexts(&self.ok(server, &["recv"]))
    }

    #[track_caller]
    fn ok(&self, server: &Server, args: &[&str]) -> String {
        let out = self.run(server, args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {}\nstdout: {}",
            self.name,
            out.status,
            stderr(&out),
            stdout(&out)
        );
        stdout(&out)
    }

    /// The 16-hex short key other people's clients name this device by.
    fn short(&self) -> &str {
        &self.key[..16]
    }
}

/// A bare identity (`register-state`) in `dir`.
fn register(server: &Server, dir: &TempDir, name: &str) -> Dev {
    let mut dev =
        Dev { name: name.into(), state: dir.join(&format!("{name}.bin")), key: String::new(), auth: vec![] };
    dev.key = identity_key(&dev.ok(server, &["register-state"]));
    dev
}

/// A device of the account `user` (password `pw-USER`): the first one
/// registers the account, later ones log in as new devices.
fn account(server: &Server, dir: &TempDir, user: &str, device: &str, first: bool) -> Dev {
    let name = format!("{user}-{device}");
    let mut dev = Dev {
        state: dir.join(&format!("{name}.bin")),
        name,
        key: String::new(),
        auth: ["--username", user, "--password", &format!("pw-{user}")].map(String::from).to_vec(),
    };
    if first {
        let out = dev.ok(server, &["register-user"]);
        assert!(out.contains(&format!("registered user {user}")), "{out}");
    } else {
        let out = dev.ok(server, &["login"]);
        assert!(out.contains("(new device)"), "{out}");
    }
    dev.key = identity_key(&dev.ok(server, &["whoami"]));
    dev
}

#[track_caller]
fn invite(server: &Server, by: &Dev, peer: &Dev, group: &str) {
    let out = by.ok(server, &["invite", "--peer-key", &peer.key, "--group-id", group]);
    assert_eq!(out.trim(), "invited peer (welcome queued)", "{} invites {}", by.name, peer.name);
}

#[track_caller]
fn join(server: &Server, who: &Dev, group: &str) {
    let out = who.ok(server, &["join", "--group-id", group]);
    assert!(
        out.contains(&format!("joined group: {group}")) && out.contains("joined group successfully"),
        "{} joins {group}: {out}",
        who.name
    );
}

/// `(epoch, members)` of `group` in `dev`'s `whoami`, None when not a member.
fn group_status(server: &Server, dev: &Dev, group: &str) -> Option<(u64, usize)> {
    let out = dev.ok(server, &["whoami"]);
    let prefix = format!("group : {group} (epoch ");
    out.lines().find_map(|l| l.strip_prefix(&prefix)).map(|rest| {
        let (epoch, members) = rest.split_once(", ").unwrap_or_else(|| panic!("whoami line: {rest}"));
        let members = members.strip_suffix(" members)").unwrap_or_else(|| panic!("whoami line: {rest}"));
        (epoch.parse().unwrap(), members.parse().unwrap())
    })
}

/// Every device reports `group` at one epoch with one member count; returns them.
#[track_caller]
fn same_epoch(server: &Server, group: &str, devs: &[&Dev]) -> (u64, usize) {
    let seen: Vec<(&str, Option<(u64, usize)>)> =
        devs.iter().map(|d| (d.name.as_str(), group_status(server, d, group))).collect();
    let first = seen[0].1.unwrap_or_else(|| panic!("{} is not in {group}: {seen:?}", seen[0].0));
    assert!(
        seen.iter().all(|(_, s)| *s == Some(first)),
        "every member of {group} at the same epoch with the same members (no fork): {seen:?}"
    );
    first
}

/// Each device runs `recv` once and is shown no message.
#[track_caller]
fn catch_up(server: &Server, devs: &[&Dev]) {
    for d in devs {
        assert_eq!(d.recv(server), Vec::<String>::new(), "{} had nothing more to read", d.name);
    }
}

/// Every device catches up, then sends one message to `group`, and every
/// device reads exactly the others' messages, in order: all N*(N-1) pairs.
/// Returns the common `(epoch, members)`.
#[track_caller]
fn all_read_all(server: &Server, group: &str, devs: &[&Dev], tag: &str) -> (u64, usize) {
    catch_up(server, devs);
    let texts: Vec<String> = devs.iter().map(|d| format!("{tag}: from {}", d.name)).collect();
    for (d, text) in devs.iter().zip(&texts) {
        let out = d.ok(server, &["send", "--all", "--group-id", group, "--msg", text]);
        assert_eq!(out.trim(), "message sent", "{} sends", d.name);
    }
    for (i, d) in devs.iter().enumerate() {
        let want: Vec<String> =
            texts.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, t)| t.clone()).collect();
        assert_eq!(d.recv(server), want, "{} reads every other member of {group} ({tag})", d.name);
    }
    same_epoch(server, group, devs)
}

/// `devs[0]` creates `group` and invites the others one by one, each joins,
/// and everyone catches up: epoch N-1, N members.
fn form_group(server: &Server, group: &str, devs: &[&Dev]) {
    let (creator, rest) = devs.split_first().expect("a creator");
    assert_eq!(
        creator.ok(server, &["create-group", "--group-id", group]).trim(),
        format!("group created: {group}")
    );
    for d in rest {
        invite(server, creator, d, group);
        join(server, d, group);
    }
    catch_up(server, &rest[..rest.len().saturating_sub(1)]);
    assert_eq!(same_epoch(server, group, devs), (rest.len() as u64, devs.len()));
}

/// `dev` reads its queue (its removal among it) and is no longer in `group`.
#[track_caller]
fn gone(server: &Server, dev: &Dev, group: &str) {
    assert_eq!(dev.recv(server), Vec::<String>::new());
    assert_eq!(group_status(server, dev, group), None, "{} was removed from {group}", dev.name);
}

/// The N in a trailing `(epoch N)`.
fn epoch_in(line: &str) -> u64 {
    let n = line.rsplit_once("(epoch ").and_then(|(_, n)| n.strip_suffix(')'));
    n.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no (epoch N) at the end of {line:?}"))
}

// ---------------------------------------------------------------------------
// Concurrent commits
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Add,
    Remove,
    Update,
}

/// Starts both runs with one `QPC_TEST_HOLD_COMMIT` gate, waits until both
/// have staged and saved their commit (so both were made in the same epoch),
/// opens the gate, and returns both stdouts (each run must succeed).
fn hold_and_release(server: &Server, gate: &Path, runs: [(&Dev, Vec<String>); 2]) -> Vec<String> {
    let mut children: Vec<(String, Child)> = runs
        .iter()
        .map(|(dev, args)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let child =
                dev.command(server, &args).env("QPC_TEST_HOLD_COMMIT", gate).spawn().expect("start qpc");
            (dev.name.clone(), child)
        })
        .collect();
    let ready = |c: &Child| PathBuf::from(format!("{}.{}.ready", gate.display(), c.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !children.iter().all(|(_, c)| ready(c).exists()) {
        let exited = children.iter_mut().any(|(_, c)| c.try_wait().unwrap().is_some());
        if exited || Instant::now() > deadline {
            let report: Vec<String> = children
                .into_iter()
                .map(|(name, mut c)| {
                    let _ = c.kill();
                    let o = c.wait_with_output().unwrap();
                    format!("{name}: {}; stdout: {}; stderr: {}", o.status, stdout(&o), stderr(&o))
                })
                .collect();
            panic!("both commits should wait at the gate {}: {report:#?}", gate.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(gate, b"open").unwrap();
    children
        .into_iter()
        .map(|(name, c)| {
            let o = c.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "{name}'s commit ({}): {}\nstdout: {}",
                o.status,
                stderr(&o),
                stdout(&o)
            );
            stdout(&o)
        })
        .collect()
}

/// A five-member group at epoch 4; alice makes `first` and bob `second` in
/// that same epoch (adds invite frank and grace, removals take dave and
/// erin). Both succeed, one after the other; then every member, old and new,
/// reads every other and all are at epoch 6.
fn concurrent_commits(first: Op, second: Op) {
    let dir = TempDir::new("concurrent");
    // At debug level the relay logs the commit it refused with `conflict`.
    let server = Server::start(&dir.join("data"), &["--log-level", "debug"]);
    let members: Vec<Dev> =
        ["alice", "bob", "carol", "dave", "erin"].iter().map(|n| register(&server, &dir, n)).collect();
    let frank = (first == Op::Add).then(|| register(&server, &dir, "frank"));
    let grace = (second == Op::Add).then(|| register(&server, &dir, "grace"));
    form_group(&server, G, &members.iter().collect::<Vec<_>>());

    let args = |op: Op, newcomer: Option<&Dev>, target: &Dev| -> Vec<String> {
        let args: Vec<&str> = match op {
            Op::Add => vec!["invite", "--peer-key", newcomer.unwrap().key.as_str(), "--group-id", G],
            Op::Remove => vec!["remove", target.key.as_str(), "--group-id", G],
            Op::Update => vec!["update", "--group-id", G],
        };
        args.into_iter().map(String::from).collect()
    };
    let outs = hold_and_release(
        &server,
        &dir.join("gate"),
        [
            (&members[0], args(first, frank.as_ref(), &members[3])),
            (&members[1], args(second, grace.as_ref(), &members[4])),
        ],
    );
    let mut epochs = Vec::new();
    for (op, out) in [first, second].into_iter().zip(&outs) {
        let line = out.trim();
        match op {
            Op::Add => assert_eq!(line, "invited peer (welcome queued)"),
            Op::Remove => {
                assert!(
                    line.starts_with("removed ") && line.contains(&format!(" from group {G} (epoch ")),
                    "{line}"
                );
                epochs.push(epoch_in(line));
            }
            Op::Update => {
                assert!(line.starts_with(&format!("key rotated in group {G} (epoch ")), "{line}");
                epochs.push(epoch_in(line));
            }
        }
    }
    // The relay refused one of the two, and its author made it again.
    let log = server.wait_log("refused GroupCommit");
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused GroupCommit")).collect();
    assert!(refusals.iter().all(|l| l.contains("(conflict)")), "{refusals:#?}");
    // Made in epoch 4, admitted one after the other: epochs 5 and 6.
    let mut sorted = epochs.clone();
    sorted.dedup();
    assert!(sorted.len() == epochs.len() && epochs.iter().all(|e| (5..=6).contains(e)), "{outs:?}");

    let removed: Vec<&Dev> = [(first, &members[3]), (second, &members[4])]
        .into_iter()
        .filter(|(op, _)| *op == Op::Remove)
        .map(|(_, d)| d)
        .collect();
    let mut group: Vec<&Dev> = members.iter().filter(|m| !removed.iter().any(|r| r.name == m.name)).collect();
    for newcomer in [&frank, &grace].into_iter().flatten() {
        join(&server, newcomer, G);
        group.push(newcomer);
    }
    for r in &removed {
        gone(&server, r, G);
    }
    let tag = format!("after {first:?}+{second:?}");
    assert_eq!(all_read_all(&server, G, &group, &tag), (6, group.len()));
}

#[test]
fn concurrent_add_and_add() {
    concurrent_commits(Op::Add, Op::Add);
}

#[test]
fn concurrent_add_and_remove() {
    concurrent_commits(Op::Add, Op::Remove);
}

#[test]
fn concurrent_add_and_update() {
    concurrent_commits(Op::Add, Op::Update);
}

#[test]
fn concurrent_remove_and_update() {
    concurrent_commits(Op::Remove, Op::Update);
}

#[test]
fn concurrent_update_and_update() {
    concurrent_commits(Op::Update, Op::Update);
}

#[test]
fn concurrent_remove_and_remove_of_different_members() {
    concurrent_commits(Op::Remove, Op::Remove);
}

// ---------------------------------------------------------------------------
// An offline person and the last-resort KeyPackage
// ---------------------------------------------------------------------------

/// `fetch-key` of `peer` by `by`: the KeyPackage's sha256 and whether it was
/// the last-resort one.
fn fetch_key(server: &Server, by: &Dev, peer: &Dev) -> (String, bool) {
    let out = by.ok(server, &["fetch-key", "--peer-key", &peer.key]);
    let line = out.trim();
    let prefix = format!("KeyPackage of {}: ", peer.key);
    assert!(line.starts_with(&prefix), "{line}");
    let (line, last_resort) = match line.strip_suffix(" (last resort)") {
        Some(rest) => (rest, true),
        None => (line, false),
    };
    let hash = line.rsplit_once(", sha256 ").unwrap_or_else(|| panic!("{line}")).1;
    assert_eq!(hash.len(), 64, "{line}");
    (hash.to_string(), last_resort)
}

/// Fetches until the pool of `peer` is empty: exactly 10 pool KeyPackages,
/// then the last-resort one, whose hash is returned.
fn drain_pool(server: &Server, by: &Dev, peer: &Dev) -> String {
    let mut seen = Vec::new();
    for i in 0..10 {
        let (hash, last_resort) = fetch_key(server, by, peer);
        assert!(!last_resort, "KeyPackage {i} of a pool of 10 came as the last-resort one");
        assert!(!seen.contains(&hash), "a pool KeyPackage was handed out twice");
        seen.push(hash);
    }
    let (hash, last_resort) = fetch_key(server, by, peer);
    assert!(last_resort, "the 11th KeyPackage is the last-resort one");
    hash
}

#[test]
fn an_offline_person_is_invited_into_three_groups_and_joins_them_all() {
    let dir = TempDir::new("offline");
    let server = Server::start(&dir.join("data"), &[]);
    let olive = register(&server, &dir, "olive");
    let drainer = register(&server, &dir, "drainer");
    let inviters: Vec<Dev> = ["alice", "bob", "carol"].iter().map(|n| register(&server, &dir, n)).collect();
    let groups = ["g-alice", "g-bob", "g-carol"];

    // Olive's pool is gone: every invitation must use her last-resort KeyPackage.
    let last_resort = drain_pool(&server, &drainer, &olive);
    for (inviter, group) in inviters.iter().zip(groups) {
        inviter.ok(&server, &["create-group", "--group-id", group]);
        invite(&server, inviter, &olive, group);
    }
    // Handed out, not deleted.
    assert_eq!(fetch_key(&server, &drainer, &olive), (last_resort.clone(), true));

    // Olive comes back: her queue holds three invitations, she joins each.
    let out = olive.ok(&server, &["recv"]);
    for (inviter, g) in inviters.iter().zip(groups) {
        let offer = format!(
            "invitation to group {g} from {}: qpc join --group-id {g}, or qpc decline {g}",
            inviter.short()
        );
        assert!(out.lines().any(|l| l == offer), "{out}");
    }
    let mut listed: Vec<String> = olive.ok(&server, &["invitations"]).lines().map(String::from).collect();
    listed.sort();
    let mut expected: Vec<String> =
        inviters.iter().zip(groups).map(|(i, g)| format!("invitation: {g} from {}", i.short())).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for group in groups {
        join(&server, &olive, group);
    }
    assert_eq!(olive.ok(&server, &["invitations"]).trim(), "no pending invitations");
    for group in groups {
        assert_eq!(group_status(&server, &olive, group), Some((1, 2)), "{group}");
    }

    // She reads a message in each and is read in each.
    for (inviter, group) in inviters.iter().zip(groups) {
        assert_eq!(inviter.recv(&server), Vec::<String>::new());
        inviter.ok(&server, &["send", "--all", "--group-id", group, "--msg", &format!("welcome to {group}")]);
    }
    assert_eq!(olive.recv(&server), groups.map(|g| format!("welcome to {g}")));
    for (inviter, group) in inviters.iter().zip(groups) {
        olive.ok(&server, &["send", "--all", "--group-id", group, "--msg", &format!("olive in {group}")]);
        assert_eq!(inviter.recv(&server), [format!("olive in {group}")]);
    }

    // Her runs topped the pool up and replaced the used last-resort KeyPackage.
    let replaced = drain_pool(&server, &drainer, &olive);
    assert_ne!(replaced, last_resort, "the last-resort KeyPackage was used and must have been replaced");
}

// ---------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------

#[test]
fn crashes_during_invite_and_remove_lose_nothing() {
    let dir = TempDir::new("crash-commit");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob, carol, dave, erin] =
        ["alice", "bob", "carol", "dave", "erin"].map(|n| register(&server, &dir, n));
    form_group(&server, G, &[&alice, &bob, &carol]);

    // Invite, commit saved but not sent: the next run sends it.
    let out = alice.crash(&server, "commit-saved", &["invite", "--peer-key", &dave.key, "--group-id", G]);
    assert!(!stdout(&out).contains("invited"), "{}", stdout(&out));
    let out = dave.ok(&server, &["recv"]);
    assert!(!out.contains("invitation"), "nothing was sent yet: {out}");
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    join(&server, &dave, G);
    assert_eq!(all_read_all(&server, G, &[&alice, &bob, &carol, &dave], "invite, commit-saved"), (3, 4));

    // Invite, admitted by the relay but not merged: the resend is a duplicate and is merged.
    let out = alice.crash(&server, "commit-sent", &["invite", "--peer-key", &erin.key, "--group-id", G]);
    assert!(!stdout(&out).contains("invited"), "{}", stdout(&out));
    let out = erin.ok(&server, &["recv"]);
    assert!(out.contains(&format!("invitation to group {G} from {}", alice.short())), "{out}");
    // Bob moves on with the admitted commit; alice has not merged it yet.
    assert_eq!(bob.recv(&server), Vec::<String>::new());
    assert_eq!(group_status(&server, &bob, G), Some((4, 5)));
    assert_eq!(group_status(&server, &alice, G), Some((3, 4)));
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    join(&server, &erin, G);
    let five = [&alice, &bob, &carol, &dave, &erin];
    assert_eq!(all_read_all(&server, G, &five, "invite, commit-sent"), (4, 5));

    // Remove, both points.
    alice.crash(&server, "commit-saved", &["remove", &dave.key, "--group-id", G]);
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    gone(&server, &dave, G);
    assert_eq!(all_read_all(&server, G, &[&alice, &bob, &carol, &erin], "remove, commit-saved"), (5, 4));

    alice.crash(&server, "commit-sent", &["remove", &erin.key, "--group-id", G]);
    assert_eq!(bob.recv(&server), Vec::<String>::new());
    assert_eq!(group_status(&server, &bob, G), Some((6, 3)));
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    gone(&server, &erin, G);
    assert_eq!(all_read_all(&server, G, &[&alice, &bob, &carol], "remove, commit-sent"), (6, 3));
}

#[test]
fn crashes_during_update_send_recv_and_join_lose_nothing() {
    let dir = TempDir::new("crash-msg");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob, carol, dave, erin] =
        ["alice", "bob", "carol", "dave", "erin"].map(|n| register(&server, &dir, n));
    form_group(&server, G, &[&alice, &bob, &carol]);
    let three = [&alice, &bob, &carol];

    // Update by bob, both points; his next run finishes it.
    for (point, epoch) in [("commit-saved", 3), ("commit-sent", 4)] {
        let out = bob.crash(&server, point, &["update", "--group-id", G]);
        assert!(!stdout(&out).contains("key rotated"), "{}", stdout(&out));
        // Alice reads before bob runs again: his commit reached her only if it was sent.
        assert_eq!(alice.recv(&server), Vec::<String>::new());
        let sent = point == "commit-sent";
        assert_eq!(group_status(&server, &alice, G), Some((epoch - u64::from(!sent), 3)), "{point}");
        assert_eq!(bob.recv(&server), Vec::<String>::new());
        assert_eq!(all_read_all(&server, G, &three, &format!("update, {point}")), (epoch, 3));
    }

    // Send, saved but not sent: not at the relay yet; carol's next run sends it, once.
    let out = carol.crash(
        &server,
        "message-saved",
        &["send", "--all", "--group-id", G, "--msg", "saved, not sent"],
    );
    assert!(!stdout(&out).contains("message sent"), "{}", stdout(&out));
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    assert_eq!(carol.recv(&server), Vec::<String>::new());
    assert_eq!(alice.recv(&server), ["saved, not sent"]);
    assert_eq!(bob.recv(&server), ["saved, not sent"]);

    // Send, at the relay but not marked sent: the resend is dropped as a duplicate.
    carol.crash(&server, "message-sent", &["send", "--all", "--group-id", G, "--msg", "sent, not marked"]);
    assert_eq!(alice.recv(&server), ["sent, not marked"]);
    assert_eq!(carol.recv(&server), Vec::<String>::new());
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    assert_eq!(bob.recv(&server), ["sent, not marked"]);
    assert_eq!(all_read_all(&server, G, &three, "after the send crashes"), (4, 3));

    // Recv: across the crashed run and the next one, each message is shown once.
    for point in ["inbox-processed", "inbox-saved"] {
        let text = format!("read through a crash at {point}");
        bob.ok(&server, &["send", "--all", "--group-id", G, "--msg", &text]);
        let crashed = alice.crash(&server, point, &["recv"]);
        let mut shown = plaintexts(&stdout(&crashed));
        shown.extend(alice.recv(&server));
        assert_eq!(shown, std::slice::from_ref(&text), "alice, recv crashed at {point}");
        assert_eq!(carol.recv(&server), [text]);
    }
    assert_eq!(all_read_all(&server, G, &three, "after the recv crashes"), (4, 3));

    // Join, crashed while reading the queue: running join again joins.
    invite(&server, &alice, &dave, G);
    dave.crash(&server, "inbox-processed", &["join", "--group-id", G]);
    join(&server, &dave, G);
    invite(&server, &alice, &erin, G);
    erin.crash(&server, "inbox-saved", &["join", "--group-id", G]);
    // The invitation was saved but not yet accepted (join reads the queue first).
    join(&server, &erin, G);
    let five = [&alice, &bob, &carol, &dave, &erin];
    assert_eq!(all_read_all(&server, G, &five, "after the join crashes"), (6, 5));
}

/// Starts `qpc recv --stream` for `dev`; its stdout lines are collected.
fn stream(server: &Server, dev: &Dev) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = dev.command(server, &["recv", "--stream"]).spawn().expect("start qpc recv --stream");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, lines)
}

/// Waits until the collected lines show `text` as a plaintext; panics after 20 s.
#[track_caller]
fn shows(lines: &Mutex<Vec<String>>, text: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !plaintexts(&lines.lock().unwrap().join("\n")).iter().any(|t| t == text) {
        assert!(Instant::now() < deadline, "{what}: never shown {text:?}: {:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_message_shown_before_a_relay_crash_and_sent_again_is_shown_once() {
    let dir = TempDir::new("early-crash");
    let mut server = Server::start(&dir.join("data"), &[]);
    // Alice has a username: once bob knows it, reading her message needs no
    // lookup (a read of committed state, which would wait for the commit).
    let alice = account(&server, &dir, "alice", "phone", true);
    let bob = register(&server, &dir, "bob");
    form_group(&server, G, &[&alice, &bob]);
    catch_up(&server, &[&alice, &bob]);
    assert_eq!(server.stop(), Some(0));
    // A slow disk: every commit waits 2.5 s, while a waiting reader gets a
    // message as soon as the relay has accepted it.
    const DELAY_MS: u64 = 2500;
    server.restart_stopped_with_env(&[("QPC_TEST_COMMIT_DELAY_MS", &DELAY_MS.to_string())]);

    let (mut bob_stream, bob_lines) = stream(&server, &bob);
    // A first message puts bob's stream in its steady state (its set-up and
    // the ack of this page committed), parked in FetchWait.
    assert_eq!(
        alice.ok(&server, &["send", "--all", "--group-id", G, "--msg", "ready"]).trim(),
        "message sent"
    );
    shows(&bob_lines, "ready", "bob's stream");
    std::thread::sleep(Duration::from_millis(2 * DELAY_MS + 500));

    let mut sending = alice
        .command(&server, &["send", "--all", "--group-id", G, "--msg", "read early"])
        .spawn()
        .expect("start qpc send");
    // Bob sees it on his screen (his client shows a message once saved,
    // before its ack, which waits for the relay's commit).
    shows(&bob_lines, "read early", "bob's stream");
    // The relay dies before the message's commit is on disk.
    let _ = Command::new("kill").arg("-9").arg(server.pid().to_string()).status();
    // Nobody answers alice now; she gives up (her outbox keeps the message).
    let _ = sending.kill();
    let sent = sending.wait_with_output().unwrap();
    assert!(
        !stdout(&sent).contains("message sent"),
        "alice's send cannot have been answered: {}",
        stdout(&sent)
    );
    let _ = bob_stream.kill();
    let _ = bob_stream.wait();
    assert_eq!(server.stop(), None, "the relay was killed");
    server.restart_stopped_with_env(&[]);

    // The relay lost the message (bob saw it before its commit was on
    // disk); alice's next run sends it again from her outbox, and it
    // reaches bob's queue a second time.
    let state = State::load(&bob.state).unwrap();
    let bobs_queue =
        || block_on(async { signed_in(&server, &state.signing_key).await.peek(10).await.unwrap() });
    assert_eq!(bobs_queue().len(), 0, "the relay kept the message: bob was not shown it before its commit");
    assert_eq!(alice.recv(&server), Vec::<String>::new());
    assert_eq!(bobs_queue().len(), 1, "the message sent again is in bob's queue");
    // Bob is shown it once: the copy he saved, not the one sent again.
    let mut shown = plaintexts(&bob_lines.lock().unwrap().join("\n"));
    shown.extend(bob.recv(&server));
    assert_eq!(shown, ["ready", "read early"]);
    assert_eq!(bob.recv(&server), Vec::<String>::new());
    assert_eq!(all_read_all(&server, G, &[&alice, &bob], "after the relay crash"), (1, 2));
}

// ---------------------------------------------------------------------------
// Every device of a person
// ---------------------------------------------------------------------------

#[test]
fn every_device_of_a_person_shows_both_sides() {
    let dir = TempDir::new("devices");
    let server = Server::start(&dir.join("data"), &[]);
    let a1 = account(&server, &dir, "alice", "laptop", true);
    let a2 = account(&server, &dir, "alice", "phone", false);
    let b1 = account(&server, &dir, "bob", "laptop", true);
    let b2 = account(&server, &dir, "bob", "phone", false);
    let c1 = account(&server, &dir, "carol", "laptop", true);
    let by_other_device = |g: &str| format!("joined group: {g} (added by your other device)");

    // A DM: alice's laptop invites bob (both his devices get an invitation);
    // her phone is added by her laptop, without asking.
    a1.ok(&server, &["create-group", "--group-id", "dm"]);
    let out = a1.ok(&server, &["invite", "bob", "--group-id", "dm"]);
    assert!(out.contains("invited peer (welcome queued)"), "{out}");
    a1.ok(&server, &["recv"]);
    let out = a2.ok(&server, &["recv"]);
    assert!(out.contains(&by_other_device("dm")), "{out}");
    join(&server, &b1, "dm");
    join(&server, &b2, "dm");
    let dm = [&a1, &a2, &b1, &b2];
    catch_up(&server, &dm);
    let (to_bob, to_alice) = ("alice's laptop to bob", "bob's phone to alice");
    a1.ok(&server, &["send", "--to", "bob", "--group-id", "dm", "--msg", to_bob]);
    b2.ok(&server, &["send", "--to", "alice", "--group-id", "dm", "--msg", to_alice]);
    assert_eq!(a1.recv(&server), [to_alice]);
    assert_eq!(a2.recv(&server), [to_bob, to_alice], "alice's phone shows both sides");
    assert_eq!(b1.recv(&server), [to_bob, to_alice], "bob's laptop shows both sides");
    assert_eq!(b2.recv(&server), [to_bob]);
    assert_eq!(same_epoch(&server, "dm", &dm).1, 4);

    // A group of three people, five devices.
    b1.ok(&server, &["create-group", "--group-id", "team"]);
    for peer in ["alice", "carol"] {
        let out = b1.ok(&server, &["invite", peer, "--group-id", "team"]);
        assert!(out.contains("invited peer (welcome queued)"), "{out}");
    }
    b1.ok(&server, &["recv"]);
    for d in [&a1, &a2, &c1] {
        join(&server, d, "team");
    }
    let out = b2.ok(&server, &["recv"]);
    assert!(out.contains(&by_other_device("team")), "{out}");
    let (epoch, members) = all_read_all(&server, "team", &[&a1, &a2, &b1, &b2, &c1], "team");
    assert_eq!(members, 5);

    // A third device of alice: her laptop's next run adds it to her groups.
    let a3 = account(&server, &dir, "alice", "tablet", false);
    a1.ok(&server, &["recv"]);
    let out = a3.ok(&server, &["recv"]);
    assert!(out.contains(&by_other_device("dm")) && out.contains(&by_other_device("team")), "{out}");
    let team = [&a1, &a2, &a3, &b1, &b2, &c1];
    let (later, members) = all_read_all(&server, "team", &team, "team with the tablet");
    assert!(members == 6 && later > epoch, "{later} {members}");
    let (_, members) = all_read_all(&server, "dm", &[&a1, &a2, &a3, &b1, &b2], "dm with the tablet");
    assert_eq!(members, 5);

    // Removing a person removes all their devices.
    let out = a1.ok(&server, &["remove", "bob", "--group-id", "dm"]);
    assert!(out.trim().starts_with("removed ") && out.contains(" from group dm (epoch "), "{out}");
    gone(&server, &b1, "dm");
    gone(&server, &b2, "dm");
    assert_eq!(all_read_all(&server, "dm", &[&a1, &a2, &a3], "dm without bob").1, 3);
}

// ---------------------------------------------------------------------------
// The fence
// ---------------------------------------------------------------------------

/// The status and message of a GroupCommit the relay must refuse.
async fn refused(relay: &Relay, req: pb::GroupCommitRequest) -> (Option<Status>, String) {
    let err = relay.group_commit(req).await.expect_err("the relay must refuse this commit");
    (err.status(), err.to_string())
}

#[test]
fn a_stranger_cannot_pass_a_groups_fence() {
    let dir = TempDir::new("fence");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(&server, &dir, n));
    form_group(&server, G, &[&alice, &bob, &carol]);
    // Carol keeps a copy of her state of epoch 2, then is removed.
    let old_path = dir.join("carol-epoch-2.bin");
    std::fs::copy(&carol.state, &old_path).unwrap();
    let out = alice.ok(&server, &["remove", &carol.key, "--group-id", G]);
    assert!(
        out.trim().starts_with("removed ") && out.trim().ends_with(&format!(" from group {G} (epoch 3)")),
        "{out}"
    );
    gone(&server, &carol, G);
    // Both read what is queued (protocol traffic: delivery tokens), so the
    // queues are empty before the stranger tries.
    catch_up(&server, &[&bob, &alice]);

    let old = State::load(&old_path).unwrap();
    let route = old.member.route(G).unwrap();
    let old_fence = old.member.fence(G).unwrap();
    let members: Vec<Vec<u8>> = [&alice, &bob].iter().map(|d| hex::decode(&d.key).unwrap()).collect();
    let mut n = 0u32;
    let mut commit = |epoch: u64, fence: &[u8]| {
        n += 1;
        pb::GroupCommitRequest {
            group_route: route.to_vec(),
            epoch,
            fence: fence.to_vec(),
            next_fence_hash: vec![7; 32],
            commit_recipient_keys: members.clone(),
            commit: b"not an MLS commit".to_vec(),
            client_msg_id: format!("stranger-{n}").into_bytes(),
            ..Default::default()
        }
    };

    block_on(async {
        let former = signed_in(&server, &old.signing_key).await;
        // The fence of the epoch carol was a member of.
        let (status, why) = refused(&former, commit(2, &old_fence)).await;
        assert!(matches!(status, Some(Status::Conflict | Status::Forbidden)), "{why}");
        if status == Some(Status::Conflict) {
            assert!(why.contains("epoch 3"), "{why}");
        }
        // Her old fence, or a made-up one, at the group's epoch.
        for fence in [old_fence, [0x42; 32]] {
            let (status, why) = refused(&former, commit(3, &fence)).await;
            assert_eq!(status, Some(Status::Forbidden), "{why}");
            assert!(why.contains("fence"), "{why}");
        }
        // `open` does not reopen a group the relay holds.
        let mut reopen = commit(3, &[]);
        reopen.open = true;
        let (status, why) = refused(&former, reopen).await;
        assert_eq!(status, Some(Status::Forbidden), "{why}");
        // A future epoch.
        let (status, why) = refused(&former, commit(4, &[0x42; 32])).await;
        assert_eq!(status, Some(Status::Conflict), "{why}");
        assert!(why.contains("epoch 3"), "{why}");
        // A route the relay does not know, without `open`.
        let mut unknown = commit(0, &[0x42; 32]);
        unknown.group_route = vec![9; 32];
        let (status, why) = refused(&former, unknown).await;
        assert_eq!(status, Some(Status::NotFound), "{why}");
        assert!(why.contains("unknown group route"), "{why}");
        // Bad lengths, and no client message id.
        type Spoil = fn(&mut pb::GroupCommitRequest);
        let bad: [(&str, Spoil); 4] = [
            ("group_route", |r| r.group_route.truncate(31)),
            ("fence", |r| r.fence.push(0)),
            ("next_fence_hash", |r| r.next_fence_hash.clear()),
            ("client_msg_id", |r| r.client_msg_id.clear()),
        ];
        for (field, spoil) in bad {
            let mut req = commit(3, &[0x42; 32]);
            spoil(&mut req);
            let (status, why) = refused(&former, req).await;
            assert_eq!(status, Some(Status::BadRequest), "{field}: {why}");
            assert!(why.contains(field), "{field}: {why}");
        }
        // Someone who was never a member.
        let stranger = signed_in(&server, &SigningKey::from_bytes(&[0x5a; 32])).await;
        let (status, why) = refused(&stranger, commit(3, &[0x42; 32])).await;
        assert_eq!(status, Some(Status::Forbidden), "{why}");

        // Nothing of it was stored for the members.
        for dev in [&alice, &bob] {
            let state = State::load(&dev.state).unwrap();
            let relay = signed_in(&server, &state.signing_key).await;
            assert!(relay.peek(0).await.unwrap().is_empty(), "{}'s queue", dev.name);
        }
    });
    assert_eq!(all_read_all(&server, G, &[&alice, &bob], "after the stranger"), (3, 2));
}

// ---------------------------------------------------------------------------
// One process per state file; declined invitations
// ---------------------------------------------------------------------------

/// Starts `qpc recv --stream` for `dev` and returns once a second qpc on its
/// state file is refused; its output lines are collected.
fn hold_state(server: &Server, dev: &Dev, in_use: &str) -> (Child, Arc<Mutex<Vec<String>>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    'spawn: loop {
        let (mut child, lines) = stream(server, dev);
        loop {
            assert!(Instant::now() < deadline, "recv --stream never held {}", dev.state.display());
            std::thread::sleep(Duration::from_millis(200));
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                // Our probe held the file when the stream started: start it again.
                assert!(err.contains(in_use), "recv --stream exited ({status}): {err}");
                continue 'spawn;
            }
            let probe = dev.run(server, &["whoami"]);
            if !probe.status.success() {
                assert!(stderr(&probe).contains(in_use), "{}", stderr(&probe));
                return (child, lines);
            }
        }
    }
}

#[test]
fn a_second_qpc_on_a_state_file_in_use_is_refused_and_touches_nothing() {
    let dir = TempDir::new("lock");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob] = ["alice", "bob"].map(|n| register(&server, &dir, n));
    form_group(&server, G, &[&alice, &bob]);

    let in_use = format!("{} is in use by another qpc process", alice.state.display());
    let (mut stream, lines) = hold_state(&server, &alice, &in_use);
    // Let the stream finish its own start (it may save once).
    let mut before = std::fs::read(&alice.state).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = std::fs::read(&alice.state).unwrap();
        if now == before {
            break;
        }
        before = now;
    }
    let second: [&[&str]; 3] =
        [&["whoami"], &["recv"], &["send", "--all", "--group-id", G, "--msg", "from a second process"]];
    for args in second {
        let err = fails(alice.run(&server, args));
        assert!(err.contains(&in_use), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&alice.state).unwrap(), before, "the refused processes touched the state");
    assert_eq!(bob.recv(&server), Vec::<String>::new(), "the refused send sent nothing");

    // The first process goes on as before.
    bob.ok(&server, &["send", "--all", "--group-id", G, "--msg", "while the stream runs"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lines.lock().unwrap().iter().any(|l| l.ends_with("plaintext: while the stream runs")) {
        assert!(
            Instant::now() < deadline,
            "the stream did not show the message: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stream.kill().unwrap();
    stream.wait().unwrap();
    // A killed process leaves no lock behind.
    assert!(group_status(&server, &alice, G).is_some());
}

#[test]
fn a_declined_invitation_leaves_nothing_and_a_later_one_works() {
    let dir = TempDir::new("decline");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(&server, &dir, n));
    form_group(&server, G, &[&alice, &bob]);

    invite(&server, &alice, &carol, G);
    let out = carol.ok(&server, &["recv"]);
    let offer = format!(
        "invitation to group {G} from {}: qpc join --group-id {G}, or qpc decline {G}",
        alice.short()
    );
    assert!(out.lines().any(|l| l == offer), "{out}");
    assert_eq!(carol.ok(&server, &["invitations"]).trim(), format!("invitation: {G} from {}", alice.short()));
    assert_eq!(carol.ok(&server, &["decline", G]).trim(), format!("declined the invitation to {G}"));
    assert_eq!(carol.ok(&server, &["invitations"]).trim(), "no pending invitations");
    assert_eq!(group_status(&server, &carol, G), None);
    fails(carol.run(&server, &["join", "--group-id", G]));

    // The members commit her removal on their next runs.
    for d in [&alice, &bob, &alice] {
        assert_eq!(d.recv(&server), Vec::<String>::new());
    }
    assert_eq!(same_epoch(&server, G, &[&alice, &bob]), (3, 2));

    // A later invitation to the same group works.
    invite(&server, &alice, &carol, G);
    join(&server, &carol, G);
    assert_eq!(all_read_all(&server, G, &[&alice, &bob, &carol], "after the second invitation"), (4, 3));
}

// ---------------------------------------------------------------------------
// A damaged outbox entry
// ---------------------------------------------------------------------------

/// A protobuf field: its number, its whole encoding, and for a
/// length-delimited one, where its payload is.
struct Field {
    number: u64,
    whole: Range<usize>,
    payload: Option<Range<usize>>,
}

fn varint(buf: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = buf[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The top-level fields of an encoded protobuf message.
fn fields(buf: &[u8]) -> Vec<Field> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < buf.len() {
        let start = at;
        let key = varint(buf, &mut at);
        let payload = match key & 7 {
            0 => {
                varint(buf, &mut at);
                None
            }
            1 => {
                at += 8;
                None
            }
            2 => {
                let len = varint(buf, &mut at) as usize;
                at += len;
                Some(at - len..at)
            }
            5 => {
                at += 4;
                None
            }
            other => panic!("wire type {other} in a state body"),
        };
        out.push(Field { number: key >> 3, whole: start..at, payload });
    }
    out
}

/// `entry` cut in the middle of its longest length-delimited field.
fn truncated(entry: &[u8]) -> Vec<u8> {
    let cut = fields(entry)
        .into_iter()
        .filter_map(|f| f.payload)
        .max_by_key(|p| p.len())
        .map(|p| p.start + p.len() / 2)
        .unwrap_or(entry.len() / 2);
    entry[..cut].to_vec()
}

#[test]
fn a_truncated_outbox_entry_is_reported_and_the_rest_kept() {
    let dir = TempDir::new("outbox");
    let server = Server::start(&dir.join("data"), &[]);
    let [alice, bob] = ["alice", "bob"].map(|n| register(&server, &dir, n));
    form_group(&server, G, &[&alice, &bob]);

    // Bob's message stays in his outbox.
    bob.crash(&server, "message-saved", &["send", "--all", "--group-id", G, "--msg", "kept"]);
    let bytes = std::fs::read(&bob.state).unwrap();
    let body = bytes.strip_prefix(b"QPCSTATE\x01").expect("a plain state file, version 1");
    let body_fields = fields(body);
    let entries: Vec<&Field> = body_fields.iter().filter(|f| f.number == 6).collect();
    assert_eq!(entries.len(), 1, "one outbox entry after the crash at message-saved");
    // Before it, a damaged copy: the outbox holds [damaged, intact].
    let entry = &body[entries[0].payload.clone().unwrap()];
    let mut damaged_body = Vec::new();
    for f in &body_fields {
        if f.number == 6 {
            let cut = truncated(entry);
            put_varint(&mut damaged_body, 6 << 3 | 2);
            put_varint(&mut damaged_body, cut.len() as u64);
            damaged_body.extend_from_slice(&cut);
        }
        damaged_body.extend_from_slice(&body[f.whole.clone()]);
    }
    let mut damaged = b"QPCSTATE\x01".to_vec();
    damaged.extend_from_slice(&damaged_body);
    std::fs::write(&bob.state, &damaged).unwrap();

    // The next run says so, sends the intact entry, and the state works.
    let out = bob.run(&server, &["recv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("outbox entry") && err.contains("damaged"), "{err}");
    assert_eq!(alice.recv(&server), ["kept"]);
    assert_eq!(all_read_all(&server, G, &[&alice, &bob], "after the damaged outbox"), (1, 2));
}

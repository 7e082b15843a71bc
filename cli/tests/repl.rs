//! `qpc repl` and `qpc chat` as people and scripts use them: real relay,
//! real binaries, standard input piped line by line (the REPL does not need a
//! terminal), standard output read as it comes.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn relay(dir: &TempDir) -> Server {
    Server::start(&dir.join("data"), &["--registration", "open"])
}

#[test]
fn two_people_dm_and_keep_history_across_restarts() {
    let dir = TempDir::new("repl-dm");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    assert!(alice.output().contains("registered and signed in as alice"), "{}", alice.output());
    let mut bob = Repl::start(&server, &dir, "bob");

    alice.send("/dm bob");
    alice.expect("DM with bob started");
    alice.send("hello bob");
    // The invitation is an offer; once Bob accepts, the message is there.
    bob.expect("alice invites you to a DM @alice: /join @alice or /decline @alice");
    bob.send("/join @alice");
    bob.expect("joined @alice");
    bob.expect("[alice] hello bob");
    bob.send("hi alice");
    alice.expect("[bob] hi alice");

    // The notepad never leaves the machine.
    alice.send("/dm alice");
    alice.expect("notepad");
    alice.send("note to self");
    alice.send("/history");
    alice.expect("[alice] note to self");
    alice.send("/switch @bob");
    alice.expect("now talking in @bob");
    alice.send("/whoami");
    alice.expect("identity_key : ");
    alice.expect("active : @bob (epoch 1)");
    alice.quit();
    bob.quit();

    // A script writes through `qpc chat` while Alice's REPL is closed.
    let mut chat = start_args(&server, &dir, "alice", &["chat", "--to", "bob"]).spawn().unwrap();
    chat.stdin.take().unwrap().write_all(b"from a script\n").unwrap();
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut alice = Repl::start(&server, &dir, "alice");
    alice.send("/switch @bob");
    alice.send("/history");
    alice.expect("history of @bob (3 lines)");
    alice.expect("[alice] hello bob");
    alice.expect("[bob] hi alice");
    alice.expect("[alice] from a script");
    let mut bob = Repl::start(&server, &dir, "bob");
    bob.expect("(@alice) [alice] from a script");
    bob.send("/switch @alice");
    bob.send("/history 2");
    bob.expect("history of @alice (2 lines)");
    bob.expect("[bob] hi alice");
    bob.expect("[alice] from a script");
    bob.send("/ls");
    bob.expect("@alice (2 members, epoch 1)");

    // Bob leaves the DM; Alice's /dm bob invites him back.
    bob.send("/leave");
    bob.expect("you left @alice");
    alice.expect("committed the proposal (epoch 2)");
    alice.send("/dm bob");
    alice.expect("invited bob back to @bob");
    bob.expect("alice invites you to a DM @alice");
    bob.send("/join");
    alice.send("welcome back");
    bob.expect("[alice] welcome back");
    alice.quit();
    bob.quit();
}

#[test]
fn a_group_removes_updates_and_leaves() {
    let dir = TempDir::new("repl-team");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    let mut carol = Repl::start(&server, &dir, "carol");

    alice.send("/create-group team");
    alice.expect("created #team");
    alice.send("/invite bob");
    alice.expect("invited bob to #team (epoch 1)");
    bob.expect("alice invites you to #team: /join team or /decline team");
    bob.send("/invites");
    bob.expect("#team from alice");
    bob.send("/join team");
    bob.expect("joined #team");
    alice.send("/invite carol");
    alice.expect("invited carol to #team (epoch 2)");
    carol.expect("alice invites you to #team");
    carol.send("/join");
    carol.expect("joined #team");
    bob.expect("#team is now at epoch 2");

    alice.send("hello team");
    bob.expect("[alice] hello team");
    carol.expect("[alice] hello team");
    bob.send("bob here");
    alice.expect("[bob] bob here");
    carol.expect("[bob] bob here");
    carol.send("carol here");
    alice.expect("[carol] carol here");
    bob.expect("[carol] carol here");

    alice.send("/remove carol");
    alice.expect("removed carol from #team (epoch 3)");
    carol.expect("you were removed from #team");
    bob.expect("#team is now at epoch 3");
    alice.send("after carol left");
    bob.expect("[alice] after carol left");

    bob.send("/update");
    bob.expect("your key in #team is rotated (epoch 4)");
    alice.expect("#team is now at epoch 4");
    bob.send("after my update");
    alice.expect("[bob] after my update");
    alice.send("/members");
    alice.expect("members of #team: alice, bob");

    // Leaving is a proposal; the other member commits it.
    bob.send("/leave");
    bob.expect("you left #team");
    alice.expect("#team: proposal from bob");
    alice.expect("committed the proposal (epoch 5)");
    alice.send("/members");
    alice.expect("members of #team: alice");

    // Carol, removed, received none of what was said after.
    let carol_out = carol.quit();
    for secret in ["after carol left", "after my update"] {
        assert!(!carol_out.contains(secret), "carol read {secret:?}:\n{carol_out}");
    }
    alice.quit();
    bob.quit();
}

#[test]
fn an_offline_member_catches_up_ten_epochs() {
    let dir = TempDir::new("repl-dana");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut dana = Repl::start(&server, &dir, "dana");
    alice.send("/create-group club");
    alice.send("/invite dana");
    dana.expect("alice invites you to #club");
    dana.send("/join #club");
    dana.expect("joined #club");
    dana.quit();

    for epoch in 2..=11 {
        alice.send("/update");
        alice.expect(&format!("rotated (epoch {epoch})"));
    }
    alice.send("latest news");
    alice.send("/whoami");
    alice.expect("active : #club (epoch 11)");

    let mut dana = Repl::start(&server, &dir, "dana");
    dana.expect("#club is now at epoch 2");
    dana.expect("#club is now at epoch 11");
    dana.expect("(#club) [alice] latest news");
    dana.send("/switch #club");
    dana.send("caught up");
    alice.expect("[dana] caught up");
    alice.quit();
    dana.quit();
}

#[test]
fn bad_input_gets_a_clear_message_and_the_session_goes_on() {
    let dir = TempDir::new("repl-bad");
    let server = relay(&dir);
    let bob = Repl::start(&server, &dir, "bob");
    let mut alice = Repl::start(&server, &dir, "alice");

    alice.send("hello?");
    alice.expect("no active conversation");
    alice.send("/invite bob");
    alice.expect("/invite: no active conversation");
    alice.send("/create-group g");
    alice.expect("created #g");
    alice.send("alone");
    alice.expect("nobody else is in #g yet");
    alice.send("/invite nobody");
    alice.expect("no user named nobody");
    alice.send("/switch #nosuch");
    alice.expect("no conversation #nosuch");
    alice.send("/switch nosuch");
    alice.expect("usage: /switch @user|#group");
    alice.send("/remove bob");
    alice.expect("bob is not a member of #g");
    alice.send("/remove nobody");
    alice.expect("no user named nobody");
    alice.send("");
    alice.expect("empty line: nothing sent");
    alice.send("/frobnicate");
    alice.expect("unknown command /frobnicate");
    alice.send("/dm");
    alice.expect("usage: /dm <user>");
    alice.send("/invite a b");
    alice.expect("usage: /invite <user>");
    alice.send("/history lots");
    alice.expect("usage: /history [n]");
    alice.send("/create-group g");
    alice.expect("a group named g already exists");
    alice.send("/invite bob");
    alice.expect("invited bob to #g");
    alice.send(&"x".repeat(1024 * 1024));
    alice.expect("message too long (1048576 bytes");
    alice.send("/help");
    alice.expect("/switch @user|#group");

    // Garbage queued for Alice by some other identity: said, not a crash.
    alice.send("/whoami");
    let key = alice.expect("identity_key : ").rsplit(' ').next().unwrap().to_string();
    let key: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
    let fp = qpc::relay::cert_fingerprint(&std::fs::read(server.cert()).unwrap());
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let relay = qpc::relay::Relay::connect(&server.addr, &fp).await.unwrap();
        relay.authenticate(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])).await.unwrap();
        relay.enqueue(&key, b"g", b"not an MLS message".to_vec(), vec![1; 16]).await.unwrap();
        relay.close().await;
    });
    alice.expect("cannot be decrypted: cannot parse");
    alice.send("/whoami");
    alice.expect("active : #g (epoch 1)");
    let out = alice.quit();
    assert!(!out.contains("panicked"), "{out}");
    bob.quit();
}

#[test]
fn chat_reads_stdin_and_prints_incoming() {
    let dir = TempDir::new("repl-chat");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    bob.send("/create-group ops");
    bob.send("/invite alice");
    alice.expect("bob invites you to #ops");
    alice.send("/join ops");
    alice.expect("joined #ops");
    alice.quit();

    let mut chat = Repl::spawn(&server, &dir, "alice", &["chat", "--to", "#ops"]);
    bob.send("ping from the repl");
    chat.expect("[bob] ping from the repl");
    chat.send("/not-a-command in chat mode");
    bob.expect("[alice] /not-a-command in chat mode");
    // A chat with a user who does not exist ends with a clear message.
    let mut dm = start_args(&server, &dir, "erin", &["chat", "--to", "carol"]).spawn().unwrap();
    drop(dm.stdin.take());
    let out = dm.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no user named carol"));
    // End of input ends the chat.
    drop(chat.stdin.take());
    let deadline = Instant::now() + WAIT;
    while chat.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "chat did not end at end of input");
        std::thread::sleep(Duration::from_millis(20));
    }
    bob.quit();
}

#[test]
fn sessions_reconnect_when_the_relay_restarts() {
    let dir = TempDir::new("repl-restart");
    let mut server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    alice.send("/dm bob");
    bob.expect("alice invites you to a DM");
    bob.send("/join");
    bob.expect("joined @alice");
    server.restart();
    alice.expect("reconnected to the relay");
    bob.expect("reconnected to the relay");
    alice.send("after the restart");
    bob.expect("[alice] after the restart");
    alice.quit();
    bob.quit();
}

/// Two sessions at real terminals (tmux panes), typed into with send-keys.
#[test]
fn two_terminals_under_tmux() {
    let tmux_ok = Command::new("tmux").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(tmux_ok, "tmux is needed for this test: `make test` installs it (apt-get install tmux)");
    let dir = TempDir::new("repl-tmux");
    let server = relay(&dir);
    let socket = format!("qpc-test-{}", std::process::id());
    let tmux =
        |args: &[&str]| Command::new("tmux").arg("-L").arg(&socket).args(args).output().expect("run tmux");
    struct KillServer<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for KillServer<'_> {
        fn drop(&mut self) {
            (self.0)(&["kill-server"]);
        }
    }
    let _cleanup = KillServer(&tmux);
    for user in ["alice", "bob"] {
        let cmd = format!(
            "{} repl --state {} --server {} --ca-cert {} --username {user} --password pw-{user}; sleep 30",
            qpc_bin().display(),
            dir.join(&format!("qpc-{user}.bin")).display(),
            server.addr,
            server.cert().display()
        );
        let out = tmux(&["new-session", "-d", "-s", user, "-x", "150", "-y", "40", &cmd]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let screen = |user: &str| stdout(&tmux(&["capture-pane", "-p", "-t", user, "-S", "-100"]));
    let wait_for = |user: &str, needle: &str| {
        let deadline = Instant::now() + WAIT;
        while !screen(user).contains(needle) {
            assert!(Instant::now() < deadline, "{user}: no {needle:?} on screen:\n{}", screen(user));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let type_line = |user: &str, text: &str| {
        assert!(tmux(&["send-keys", "-t", user, "-l", text]).status.success());
        assert!(tmux(&["send-keys", "-t", user, "Enter"]).status.success());
    };
    wait_for("alice", "type /help");
    wait_for("bob", "type /help");
    type_line("alice", "/dm bob");
    wait_for("alice", "DM with bob started");
    type_line("alice", "hello from a terminal");
    wait_for("bob", "invites you to a DM @alice");
    type_line("bob", "/join");
    wait_for("bob", "[alice] hello from a terminal");
    type_line("bob", "typed back");
    wait_for("alice", "[bob] typed back");
    type_line("bob", "/history");
    wait_for("bob", "history of @alice (2 lines)");
    type_line("alice", "/quit");
    type_line("bob", "/quit");
}

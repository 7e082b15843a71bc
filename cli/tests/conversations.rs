//! Conversations people expect (issue 14), end to end: real relay, real
//! `qpc` binaries over loopback. Replies, reactions, edits and deletes agree
//! on every device and survive a restart; edits and deletes from anyone but
//! the author are refused; receipts; typing and presence travel without
//! touching the relay's disk; `qpc chat --json` and `qpc recv --json` for
//! scripts; the line being typed survives an incoming message; bad input.

mod common;

use std::process::{Command, Stdio};
use std::time::SystemTime;

use common::*;
use qpc::content::{Body, Content, Delete, Edit};
use qpc::relay::{cert_fingerprint, Relay};
use qpc::session::Session;
use qpc::state::State;
use serde_json::Value;

fn relay(dir: &TempDir) -> Server {
    Server::start(&dir.join("data"), &["--registration", "open"])
}

/// A history line as every device shows it: without the clock (`HH:MM `)
/// and without the receipt marks, which only the sender has.
fn agreed(line: &str) -> String {
    let line = line.trim_start();
    let line = line.split_once(' ').map_or(line, |(clock, rest)| {
        assert!(clock.len() == 5 && clock.as_bytes()[2] == b':', "a history line without a clock: {line:?}");
        rest
    });
    line.replace(" ✓✓", "").replace(" ✓", "")
}

fn agreed_all(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| agreed(l)).collect()
}

/// Alice's `/dm bob`, accepted by Bob: both are then in the DM.
fn dm(alice: &mut Repl, bob: &mut Repl) {
    alice.send(&format!("/dm {}", bob.user));
    alice.expect(&format!("DM with {} started", bob.user));
    bob.expect(&format!("{} invites you to a DM @{}", alice.user, alice.user));
    bob.send("/join");
    bob.expect(&format!("joined @{}", alice.user));
}

/// Alice creates `#name` and adds the others one by one.
fn group(name: &str, alice: &mut Repl, others: &mut [&mut Repl]) {
    alice.send(&format!("/create-group {name}"));
    alice.expect(&format!("created #{name}"));
    for (i, other) in others.iter_mut().enumerate() {
        alice.send(&format!("/invite {}", other.user));
        alice.expect(&format!("invited {} to #{name} (epoch {})", other.user, i + 1));
        other.expect(&format!("{} invites you to #{name}", alice.user));
        other.send(&format!("/join {name}"));
        other.expect(&format!("joined #{name}"));
    }
    // Everyone has seen every commit before anyone speaks.
    let last = others.len();
    for other in others.iter_mut().take(last.saturating_sub(1)) {
        other.expect(&format!("#{name} is now at epoch {last}"));
    }
}

/// Sends `line` from `from`; waits until each of `to` shows `shown`.
fn say(from: &mut Repl, line: &str, to: &mut [&mut Repl], shown: &str) {
    from.send(line);
    for r in to.iter_mut() {
        r.expect(shown);
    }
}

/// Opens `user`'s state (their REPL must be closed), lets `make` build
/// messages from it (group, content), sends them through the library as
/// that member, and saves the state.
fn send_as(server: &Server, dir: &TempDir, user: &str, make: impl FnOnce(&State) -> Vec<(String, Content)>) {
    let state = State::load_with_password(&state_path(dir, user), &format!("pw-{user}")).unwrap();
    let messages = make(&state);
    let fp = cert_fingerprint(&std::fs::read(server.cert()).unwrap());
    block_on(async {
        let relay = Relay::connect(&server.addr, &fp).await.unwrap();
        relay.authenticate(&state.signing_key).await.unwrap();
        let mut session = Session::new(state);
        for (group, content) in messages {
            session.send_content(&relay, &group, content).await.unwrap();
        }
        session.state.save().unwrap();
        relay.close().await;
    });
}

/// The id of message `seq` of `conversation` in `state`.
fn id_of(state: &State, conversation: &str, seq: u64) -> Vec<u8> {
    let entry = state.message_at(conversation, seq).unwrap_or_else(|| panic!("no #{seq} in {conversation}"));
    assert!(!entry.id.is_empty());
    entry.id.clone()
}

/// What the relay has stored of messages: `status --json`'s queued and
/// enqueued counts, and the size and modification time of its database
/// files (unchanged when nothing was written).
#[derive(Debug, PartialEq)]
struct Stored {
    queued_messages: u64,
    enqueued: u64,
    files: Vec<(u64, SystemTime)>,
}

fn stored(server: &Server) -> Stored {
    let out = ok(Command::new(server_bin())
        .args(["status", "--json", "--data-dir"])
        .arg(&server.data_dir)
        .env_remove("QPC_SOCKET")
        .env_remove("QPC_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap());
    let status: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"));
    let num = |key: &str| status[key].as_u64().unwrap_or_else(|| panic!("status has no {key}: {out}"));
    let files = ["qpc.db", "qpc.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(server.data_dir.join(f)).ok())
        .map(|m| (m.len(), m.modified().unwrap()))
        .collect();
    Stored { queued_messages: num("queued_messages"), enqueued: num("enqueued"), files }
}

/// The receipt mark at the end of the history line of message `seq`:
/// `"✓✓"`, `"✓"` or none.
fn mark_of(lines: &[String], seq: u64) -> &'static str {
    let line = lines.iter().find(|l| agreed(l).starts_with(&format!("#{seq} "))).expect("the message's line");
    if line.ends_with(" ✓✓") {
        "✓✓"
    } else if line.ends_with(" ✓") {
        "✓"
    } else {
        ""
    }
}

// ---------------------------------------------------------------------------

#[test]
fn replies_reactions_edits_and_deletes_agree_on_every_device_and_after_a_restart() {
    let dir = TempDir::new("conv-agree");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    let mut carol = Repl::start(&server, &dir, "carol");

    // A DM.
    dm(&mut alice, &mut bob);
    say(&mut alice, "how are you", &mut [&mut bob], "[alice] how are you #1");
    say(&mut bob, "/reply 1 fine, and you?", &mut [&mut alice], "[bob] (re #1) fine, and you? #2");
    say(&mut bob, "oops, wrong chat", &mut [&mut alice], "[bob] oops, wrong chat #3");
    alice.send("/react 2 👍");
    alice.expect("#2 [bob] (re #1) fine, and you?  [👍 alice]");
    bob.expect("* @alice: alice reacted 👍 to #2");
    say(&mut bob, "/react 1 ❤", &mut [&mut alice], "* @bob: bob reacted ❤ to #1");
    say(&mut bob, "/react 1 ❤", &mut [&mut alice], "* @bob: bob took back ❤ on #1");
    say(
        &mut alice,
        "/edit 1 how are you today",
        &mut [&mut bob],
        "* @alice: alice edited #1: how are you today",
    );
    say(&mut bob, "/delete 3", &mut [&mut alice], "* @bob: bob deleted #3");
    let dm_expected = [
        "#1 [alice] how are you today (edited)",
        "#2 [bob] (re #1) fine, and you?  [👍 alice]",
        "#3 [bob] deleted",
    ];
    assert_eq!(agreed_all(&alice.history("@bob")), dm_expected);
    assert_eq!(agreed_all(&bob.history("@alice")), dm_expected);

    // A group of three.
    group("team", &mut alice, &mut [&mut bob, &mut carol]);
    say(&mut alice, "plans for saturday?", &mut [&mut bob, &mut carol], "[alice] plans for saturday? #1");
    say(&mut carol, "/reply 1 hiking", &mut [&mut alice, &mut bob], "[carol] (re #1) hiking #2");
    say(&mut bob, "I bring food", &mut [&mut alice, &mut carol], "[bob] I bring food #3");
    // One reaction at a time, so that every device lists them in one order.
    say(&mut bob, "/react 2 👍", &mut [&mut alice, &mut carol], "* #team: bob reacted 👍 to #2");
    say(&mut alice, "/react 2 👍", &mut [&mut bob, &mut carol], "* #team: alice reacted 👍 to #2");
    say(&mut carol, "/react 3 🍕", &mut [&mut alice, &mut bob], "* #team: carol reacted 🍕 to #3");
    say(&mut carol, "/react 3 🍕", &mut [&mut alice, &mut bob], "* #team: carol took back 🍕 on #3");
    say(
        &mut alice,
        "/edit 1 plans for sunday?",
        &mut [&mut bob, &mut carol],
        "* #team: alice edited #1: plans for sunday?",
    );
    say(&mut bob, "never mind", &mut [&mut alice, &mut carol], "[bob] never mind #4");
    say(&mut bob, "/delete 4", &mut [&mut alice, &mut carol], "* #team: bob deleted #4");
    let team_expected = [
        "#1 [alice] plans for sunday? (edited)",
        "#2 [carol] (re #1) hiking  [👍 bob, 👍 alice]",
        "#3 [bob] I bring food",
        "#4 [bob] deleted",
    ];
    for r in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(agreed_all(&r.history("#team")), team_expected, "{}", r.user);
    }

    // After a restart, every device still shows the same.
    for r in [alice, bob, carol] {
        let out = r.quit();
        assert!(!out.contains("panicked"), "{out}");
    }
    for user in ["alice", "bob", "carol"] {
        let mut r = Repl::start(&server, &dir, user);
        if user != "carol" {
            let peer = if user == "alice" { "@bob" } else { "@alice" };
            r.send(&format!("/switch {peer}"));
            assert_eq!(agreed_all(&r.history(peer)), dm_expected, "{user} after a restart");
        }
        r.send("/switch #team");
        assert_eq!(agreed_all(&r.history("#team")), team_expected, "{user} after a restart");
        r.quit();
    }
}

/// Every device of a person is in the conversation from its start, and
/// what one device does (a reaction, an edit of the person's message)
/// reaches the others.
#[test]
fn a_second_device_shows_the_same_conversation() {
    let dir = TempDir::new("conv-devices");
    let phone_dir = TempDir::new("conv-phone");
    let server = relay(&dir);
    Repl::start(&server, &dir, "alice").quit();
    let mut phone = Repl::start(&server, &phone_dir, "alice");
    assert!(phone.output().contains("signed in as alice (new device)"), "{}", phone.output());
    let mut laptop = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");

    dm(&mut laptop, &mut bob);
    phone.expect("* joined @bob (added by your other device)");
    say(&mut laptop, "from the laptop", &mut [&mut bob, &mut phone], "[alice] from the laptop #1");
    say(&mut bob, "/reply 1 got it", &mut [&mut laptop, &mut phone], "[bob] (re #1) got it #2");
    say(&mut phone, "/react 2 👍", &mut [&mut bob, &mut laptop], "alice reacted 👍 to #2");
    say(
        &mut phone,
        "/edit 1 fixed on the phone",
        &mut [&mut bob, &mut laptop],
        "alice edited #1: fixed on the phone",
    );
    say(&mut bob, "a typo", &mut [&mut laptop, &mut phone], "[bob] a typo #3");
    say(&mut bob, "/delete 3", &mut [&mut laptop, &mut phone], "* @bob: bob deleted #3");
    let expected =
        ["#1 [alice] fixed on the phone (edited)", "#2 [bob] (re #1) got it  [👍 alice]", "#3 [bob] deleted"];
    assert_eq!(agreed_all(&laptop.history("@bob")), expected, "the laptop");
    assert_eq!(agreed_all(&phone.history("@bob")), expected, "the phone");
    assert_eq!(agreed_all(&bob.history("@alice")), expected, "bob");
    for r in [laptop, phone, bob] {
        r.quit();
    }
}

#[test]
fn an_edit_or_delete_from_someone_not_the_author_is_refused_and_reported() {
    let dir = TempDir::new("conv-forged");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    let mut carol = Repl::start(&server, &dir, "carol");
    dm(&mut alice, &mut bob);
    say(&mut alice, "the DM original", &mut [&mut bob], "[alice] the DM original #1");
    group("team", &mut alice, &mut [&mut bob, &mut carol]);
    say(&mut alice, "the team original", &mut [&mut bob, &mut carol], "[alice] the team original #1");
    say(&mut bob, "bob's own", &mut [&mut alice, &mut carol], "[bob] bob's own #2");
    alice.send("/switch @bob");
    let dm_before = alice.history("@bob");
    alice.send("/switch #team");
    let team_before = carol.history("#team");
    bob.quit();

    // Bob's state, driven through the library, edits and deletes Alice's messages.
    send_as(&server, &dir, "bob", |state| {
        let dm = qpc::session::dm_group("alice", "bob");
        let dm_msg = id_of(state, "@alice", 1);
        let team_msg = id_of(state, "#team", 1);
        vec![
            (dm.clone(), Content::new(Body::Edit(Edit { target: dm_msg.clone(), text: "forged".into() }))),
            (dm, Content::new(Body::Delete(Delete { target: dm_msg }))),
            (
                "team".into(),
                Content::new(Body::Edit(Edit { target: team_msg.clone(), text: "forged".into() })),
            ),
            ("team".into(), Content::new(Body::Delete(Delete { target: team_msg }))),
        ]
    });
    // Alice's and Carol's REPLs report each, active conversation or not.
    alice.expect("! @bob: bob tried to edit message 1 of alice: ignored");
    alice.expect("! @bob: bob tried to delete message 1 of alice: ignored");
    alice.expect("! #team: bob tried to edit message 1 of alice: ignored");
    alice.expect("! #team: bob tried to delete message 1 of alice: ignored");
    carol.expect("! #team: bob tried to edit message 1 of alice: ignored");
    carol.expect("! #team: bob tried to delete message 1 of alice: ignored");

    // Nothing changed anywhere.
    assert_eq!(carol.history("#team"), team_before);
    alice.send("/switch @bob");
    assert_eq!(agreed_all(&alice.history("@bob")), agreed_all(&dm_before));
    alice.send("/switch #team");
    assert_eq!(agreed_all(&alice.history("#team")), agreed_all(&team_before));
    for out in [alice.output(), carol.output()] {
        assert!(!out.contains("forged"), "a forged text was shown:\n{out}");
    }
    let mut bob = Repl::start(&server, &dir, "bob");
    bob.send("/switch #team");
    assert_eq!(agreed_all(&bob.history("#team")), agreed_all(&team_before));
    bob.send("/switch @alice");
    assert_eq!(agreed_all(&bob.history("@alice")), ["#1 [alice] the DM original"]);
    bob.quit();
    alice.quit();
    carol.quit();
}

#[test]
fn receipts_mark_what_was_delivered_and_what_was_read() {
    let dir = TempDir::new("conv-receipts");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    dm(&mut alice, &mut bob);

    // Bob has the DM open: he read it.
    say(&mut alice, "read me", &mut [&mut bob], "[alice] read me #1");
    alice.history_until("@bob", "✓✓ after #1", |h| mark_of(h, 1) == "✓✓");

    // Bob is in his notepad: the message reached him, he has not read it.
    bob.send("/dm bob");
    bob.expect("now talking in @bob");
    say(&mut alice, "only delivered", &mut [&mut bob], "(@alice) [alice] only delivered #2");
    let h = alice.history_until("@bob", "✓ after #2", |h| !mark_of(h, 2).is_empty());
    assert_eq!(mark_of(&h, 2), "✓", "{h:#?}");
    // Marks are for one's own messages: Bob's view of Alice's has none.
    bob.send("/switch @alice");
    let h = bob.history("@alice");
    assert_eq!((mark_of(&h, 1), mark_of(&h, 2)), ("", ""), "marks are for one's own messages: {h:#?}");

    // In a group, the marks wait for every other person.
    let mut carol = Repl::start(&server, &dir, "carol");
    group("team", &mut alice, &mut [&mut bob, &mut carol]);
    say(&mut alice, "all of you", &mut [&mut bob, &mut carol], "[alice] all of you #1");
    alice.history_until("#team", "✓✓ after #1", |h| mark_of(h, 1) == "✓✓");
    carol.send("/dm carol");
    carol.expect("now talking in @carol");
    say(&mut alice, "carol is elsewhere", &mut [&mut bob, &mut carol], "[alice] carol is elsewhere #2");
    let h = alice.history_until("#team", "a mark after #2", |h| !mark_of(h, 2).is_empty());
    assert_eq!(mark_of(&h, 2), "✓", "read by bob, only delivered to carol: {h:#?}");
    carol.quit();
    bob.quit();
    alice.send("/switch @bob");

    // `qpc recv` prints it: read.
    alice.send("read by recv");
    alice.history("@bob"); // it is sent once the next command is answered
    let recv = ok(server.qpc(&state_path(&dir, "bob"), &["recv", "--password", "pw-bob"]));
    assert!(plaintexts(&recv).contains(&"read by recv".to_string()), "{recv}");
    let h = alice.history_until("@bob", "✓✓ after #3", |h| mark_of(h, 3) == "✓✓");
    assert_eq!(mark_of(&h, 2), "✓", "{h:#?}");

    // The marks are kept.
    alice.quit();
    let mut alice = Repl::start(&server, &dir, "alice");
    alice.send("/switch @bob");
    let h = alice.history("@bob");
    assert_eq!(
        (mark_of(&h, 1), mark_of(&h, 2), mark_of(&h, 3)),
        ("✓✓", "✓", "✓✓"),
        "after a restart: {h:#?}"
    );
    alice.quit();
}

#[test]
fn typing_and_presence_reach_members_and_never_the_relays_disk() {
    let dir = TempDir::new("conv-signals");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    dm(&mut alice, &mut bob);
    say(&mut alice, "are you there?", &mut [&mut bob], "[alice] are you there? #1");

    // Bob shares presence; Alice (off, the default) neither sees nor shares it.
    bob.send("/presence on");
    bob.expect("* presence on");
    bob.send("/members");
    bob.expect_exact("members of @alice: alice, bob");
    say(&mut bob, "presence is on here", &mut [&mut alice], "[bob] presence is on here #2");
    alice.send("/members");
    alice.expect_exact("members of @bob: alice, bob");
    alice.quit();
    let mut alice = Repl::start(&server, &dir, "alice");
    alice.send("/switch @bob");
    say(&mut alice, "back", &mut [&mut bob], "[alice] back #3");
    bob.send("/members");
    bob.expect_exact("members of @alice: alice, bob");
    assert!(!alice.output().contains("is online"), "{}", alice.output());
    assert!(!bob.output().contains("is online"), "{}", bob.output());

    // Alice shares hers too.
    alice.send("/presence on");
    alice.expect("* presence on");
    bob.expect_exact("* alice is online");
    bob.send("/members");
    bob.expect_exact("members of @alice: alice (online), bob");
    // Nothing else is on its way: both have read everything.
    alice.history_until("@bob", "✓✓ after #3", |h| mark_of(h, 3) == "✓✓");
    bob.history_until("@alice", "✓✓ after #2", |h| mark_of(h, 2) == "✓✓");
    let before = stored(&server);

    bob.quit();
    alice.expect("* bob went away (");
    alice.send("/members");
    alice.expect_line("bob (last seen HH:MM)", |l| l.starts_with("members of @bob: alice, bob (last seen "));

    // A script of Bob's: online, typing.
    let mut script = Repl::spawn(&server, &dir, "bob", &["chat", "--to", "alice", "--json"]);
    alice.expect_exact("* bob is online");
    alice.send("/members");
    alice.expect_exact("members of @bob: alice, bob (online)");
    let quiet = stored(&server);
    script.send(r#"{"type":"typing","active":true}"#);
    alice.expect_exact("* bob is typing");
    script.send(r#"{"type":"typing","active":false}"#);
    script.send(r#"{"type":"typing","active":true}"#);
    alice.expect_exact("* bob is typing");
    let after = stored(&server);
    assert_eq!(after, quiet, "typing signals changed the relay's database");
    assert_eq!(
        (after.queued_messages, after.enqueued),
        (before.queued_messages, before.enqueued),
        "presence and typing left messages at the relay"
    );
    // Alice goes away: the script reads it as a JSON object.
    alice.quit();
    let away = script.expect_json("presence", |v| v["type"] == "presence");
    assert_eq!((away["by"].as_str(), away["online"].as_bool()), (Some("alice"), Some(false)), "{away}");
    assert!(away["last_seen"].as_u64().is_some_and(|t| t > 0), "{away}");
    drop(script.stdin.take());
    assert!(script.wait_exit(), "{}", script.output());
    let after = stored(&server);
    assert_eq!((after.queued_messages, after.enqueued), (before.queued_messages, before.enqueued));
}

#[test]
fn chat_json_round_trip_for_scripts() {
    let dir = TempDir::new("conv-json");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    // The script signs up, opens the DM and invites Alice.
    let mut bot = Repl::spawn(&server, &dir, "bot", &["chat", "--to", "alice", "--json"]);
    alice.expect("bot invites you to a DM @bot");
    alice.send("/join");
    alice.expect("joined @bot");

    bot.send(r#"{"type":"send","text":"hello from a script"}"#);
    let sent = bot.expect_json("sent", |v| v["type"] == "sent");
    assert_eq!((sent["conversation"].as_str(), sent["seq"].as_u64()), (Some("@alice"), Some(1)), "{sent}");
    assert_eq!(sent["id"].as_str().map(str::len), Some(32), "{sent}");
    alice.expect("[bot] hello from a script #1");
    let receipt = bot.expect_json("receipt", |v| v["type"] == "receipt");
    assert_eq!(receipt["seqs"], serde_json::json!([1]), "{receipt}");
    assert_eq!((receipt["by"].as_str(), receipt["read"].as_bool()), (Some("alice"), Some(true)), "{receipt}");

    alice.send("hi script");
    let got = bot.expect_json("received", |v| v["type"] == "received");
    assert_eq!(
        (got["conversation"].as_str(), got["from"].as_str(), got["text"].as_str(), got["seq"].as_u64()),
        (Some("@alice"), Some("alice"), Some("hi script"), Some(2)),
        "{got}"
    );
    assert!(got["reply_to"].is_null() && got["unsupported"] == false && got["file"].is_null(), "{got}");
    assert_eq!(got["id"].as_str().map(str::len), Some(32), "{got}");

    bot.send(r#"{"type":"react","seq":2,"emoji":"👍"}"#);
    alice.expect("* @bot: bot reacted 👍 to #2");
    alice.send("/react 1 🎉");
    let reaction = bot.expect_json("reaction", |v| v["type"] == "reaction");
    assert_eq!(
        (
            reaction["seq"].as_u64(),
            reaction["emoji"].as_str(),
            reaction["by"].as_str(),
            reaction["removed"].as_bool()
        ),
        (Some(1), Some("🎉"), Some("alice"), Some(false)),
        "{reaction}"
    );
    bot.send(r#"{"type":"send","text":"an answer","reply_to":2}"#);
    alice.expect("[bot] (re #2) an answer #3");
    bot.send(r#"{"type":"edit","seq":1,"text":"hello, edited by a script"}"#);
    alice.expect("* @bot: bot edited #1: hello, edited by a script");
    alice.send("/edit 2 hi script!");
    let edit = bot.expect_json("edit", |v| v["type"] == "edit");
    assert_eq!(
        (edit["seq"].as_u64(), edit["by"].as_str(), edit["text"].as_str()),
        (Some(2), Some("alice"), Some("hi script!"))
    );
    bot.send(r#"{"type":"delete","seq":3}"#);
    alice.expect("* @bot: bot deleted #3");
    alice.send("/reply 1 got it");
    let reply = bot.expect_json("a reply", |v| v["type"] == "received" && v["text"] == "got it");
    assert_eq!(reply["reply_to"].as_u64(), Some(1), "{reply}");

    // Malformed lines: an error object each, and the session goes on.
    for (line, says) in [
        ("this is not json", "not a JSON object"),
        (r#"{"type":"send"}"#, "send needs \"text\""),
        (r#"{"type":"react","emoji":"👍"}"#, "react needs \"seq\""),
        (r#"{"type":"react","seq":99,"emoji":"👍"}"#, "there is no message 99 in @alice"),
        (r#"{"type":"fly"}"#, "unknown \"type\""),
        (r#"{"type":"edit","seq":2,"text":"mine now"}"#, "is alice's, not yours"),
    ] {
        bot.send(line);
        let error = bot.expect_json(says, |v| v["type"] == "error");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{line}: {error}");
    }
    bot.send(r#"{"type":"send","text":"still here"}"#);
    alice.expect("[bot] still here #5");
    let h = alice.history("@bot");
    assert_eq!(
        agreed_all(&h),
        [
            "#1 [bot] hello, edited by a script (edited)  [🎉 alice]",
            "#2 [alice] hi script! (edited)  [👍 bot]",
            "#3 [bot] (re #2) deleted",
            "#4 [alice] (re #1) got it",
            "#5 [bot] still here",
        ]
    );
    drop(bot.stdin.take());
    assert!(bot.wait_exit(), "{}", bot.output());
    for line in bot.stdout_lines() {
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["type"].is_string(), "an object without a type: {line}");
    }

    // `qpc recv --json` while the script is away.
    alice.send("for recv");
    alice.send("/edit 6 for recv, edited");
    alice.expect("#6 [alice] for recv, edited (edited)");
    let out = ok(server.qpc(&state_path(&dir, "bot"), &["recv", "--password", "pw-bot", "--json"]));
    let values: Vec<Value> = out
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("recv --json: not JSON ({e}): {l}\n{out}"))
        })
        .collect();
    assert!(
        values.iter().any(|v| v["type"] == "received" && v["text"] == "for recv, edited" && v["seq"] == 6),
        "{out}"
    );
    assert!(values.iter().any(|v| v["type"] == "edit" && v["seq"] == 6 && v["by"] == "alice"), "{out}");
    // What recv printed was read.
    alice.history_until("@bot", "✓✓ after #6", |h| mark_of(h, 6) == "✓✓");
    alice.quit();
}

/// The REPL at a real terminal (a tmux pane): what is being typed survives
/// an incoming message, and sends typing signals that the relay never stores.
#[test]
fn the_line_being_typed_survives_an_incoming_message() {
    let dir = TempDir::new("conv-tmux");
    let server = relay(&dir);
    let tmux = Tmux::new("conv");
    let mut alice = Repl::start(&server, &dir, "alice");
    tmux.repl(&server, &dir, "bob");
    let wait_for = |needle: &str| tmux.wait_for("bob", needle);
    wait_for("type /help");

    alice.send("/dm bob");
    wait_for("invites you to a DM @alice");
    tmux.type_line("bob", "/join");
    wait_for("joined @alice");
    alice.send("first");
    wait_for("[alice] first #1");
    alice.history_until("@bob", "✓✓ after #1", |h| mark_of(h, 1) == "✓✓");
    let quiet = stored(&server);

    // Bob types half a line: Alice sees him typing; the relay stores nothing.
    tmux.keys("bob", "half a li");
    alice.expect_exact("* bob is typing");
    assert_eq!(stored(&server), quiet, "a typing signal changed the relay's database");

    alice.send("incoming while typing");
    wait_for("[alice] incoming while typing #2");
    assert_ne!(stored(&server), quiet, "a message is stored: the measure above can see one");
    let shown = tmux.screen("bob");
    let lines: Vec<&str> = shown.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let incoming = lines.iter().position(|l| *l == "[alice] incoming while typing #2");
    assert!(incoming.is_some(), "the incoming line is not intact:\n{shown}");
    assert_eq!(lines.last(), Some(&"> half a li"), "the line being typed is not intact below it:\n{shown}");

    tmux.type_line("bob", "ne");
    alice.expect("[bob] half a line #3");
    assert!(!alice.output().contains("[bob] half a li #"), "{}", alice.output());
    tmux.type_line("bob", "/quit");
    alice.quit();
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = TempDir::new("conv-bad");
    let server = relay(&dir);
    let mut alice = Repl::start(&server, &dir, "alice");
    let mut bob = Repl::start(&server, &dir, "bob");
    dm(&mut alice, &mut bob);
    say(&mut alice, "one", &mut [&mut bob], "[alice] one #1");
    say(&mut bob, "/reply 1 two", &mut [&mut alice], "[bob] (re #1) two #2");
    let before = alice.history("@bob");
    let bob_mark = bob.mark();

    for (line, says) in [
        ("/reply 9 into the void", "! /reply: there is no message 9 in @bob (see /history)"),
        ("/react 9 👍", "! /react: there is no message 9 in @bob (see /history)"),
        ("/react 0 👍", "! /react: there is no message 0 in @bob (see /history)"),
        ("/react x 👍", "! /react: there is no message x in @bob (see /history)"),
        ("/edit 7 nothing there", "! /edit: there is no message 7 in @bob (see /history)"),
        ("/delete 7", "! /delete: there is no message 7 in @bob (see /history)"),
        ("/edit 2 not mine", "! /edit: message 2 in @bob is bob's, not yours"),
        ("/delete 2", "! /delete: message 2 in @bob is bob's, not yours"),
        ("/react 1", "usage: /react <n> <emoji>"),
        ("/edit 1", "usage: /edit <n> <text>"),
    ] {
        alice.send(line);
        alice.expect(says);
    }
    assert_eq!(alice.history("@bob"), before);
    // Nothing went out: the next message is #3 and nothing came before it.
    say(&mut alice, "sentinel", &mut [&mut bob], "[alice] sentinel #3");
    let seen = bob.since(bob_mark);
    assert!(!seen.contains("* @alice:") && !seen.contains("void"), "{seen}");

    // A newer client's content (a body kind and a format version this
    // client does not know): shown as unsupported, not dropped, no crash.
    bob.quit();
    let mut future = vec![0x00, b'Q', qpc::content::FORMAT_VERSION, 0x0a, 16];
    future.extend_from_slice(&[9u8; 16]);
    future.extend_from_slice(&[0x7a, 2, 0x08, 1]);
    let newer_format = vec![0x00, b'Q', qpc::content::FORMAT_VERSION + 1, 0x0a, 1, 2];
    let mut state = State::load_with_password(&state_path(&dir, "bob"), "pw-bob").unwrap();
    let group = qpc::session::dm_group("alice", "bob");
    let me = state.identity_key();
    let recipients: Vec<[u8; 32]> =
        state.member.members(&group).unwrap().into_iter().filter(|k| *k != me).collect();
    let fp = cert_fingerprint(&std::fs::read(server.cert()).unwrap());
    block_on(async {
        let relay = Relay::connect(&server.addr, &fp).await.unwrap();
        relay.authenticate(&state.signing_key).await.unwrap();
        for (i, plaintext) in [future, newer_format].iter().enumerate() {
            let ciphertext = state.member.encrypt(&group, plaintext).unwrap();
            state.save().unwrap();
            relay
                .batch_enqueue(&recipients, group.as_bytes(), ciphertext, vec![i as u8 + 1; 16])
                .await
                .unwrap();
        }
        relay.close().await;
    });
    alice.expect("[bob] (unsupported message) #4");
    alice.expect("[bob] (unsupported message) #5");
    let h = alice.history("@bob");
    assert_eq!(agreed_all(&h[3..]), ["#4 [bob] (unsupported message)", "#5 [bob] (unsupported message)"]);
    // The conversation goes on.
    alice.send("after the future");
    let mut bob = Repl::start(&server, &dir, "bob");
    bob.expect("(@alice) [alice] after the future #4");
    let out = alice.quit();
    assert!(!out.contains("panicked"), "{out}");
    bob.quit();
}

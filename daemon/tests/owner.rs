//! The owner's side, through the real relay and the real binaries:
//! reports, bans and unbans (issue 11, item 8), and account recovery from
//! an encrypted bundle after every device is lost (item 9).

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use qpc_proto::{pb, Method, Status};

/// `qpc ARGS` as `user` with `password`, state `qpc-USER.bin` in `dir`.
fn as_user(server: &Server, dir: &TempDir, user: &str, password: &str, args: &[&str]) -> Output {
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["--username", user, "--password", password]);
    server.qpc(&dir.join(&format!("qpc-{user}.bin")), &full)
}

fn user(server: &Server, dir: &TempDir, name: &str, args: &[&str]) -> Output {
    as_user(server, dir, name, &format!("pw-{name}"), args)
}

/// `qpc recover --username USER --password PW` with the code in QPC_RECOVERY_CODE.
fn recover(server: &Server, dir: &TempDir, name: &str, password: &str, code: &str) -> Output {
    Command::new(qpc_bin())
        .args(["recover", "--state"])
        .arg(dir.join(&format!("qpc-{name}.bin")))
        .args(["--server", &server.addr, "--ca-cert"])
        .arg(server.cert())
        .args(["--username", name, "--password", password])
        .env("QPC_RECOVERY_CODE", code)
        .stdin(Stdio::null())
        .output()
        .expect("run qpc recover")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn queued(server: &Server, name: &str) -> u64 {
    let users = json(&ok(server.ctl(&["users", "--json"])));
    users.as_array().unwrap().iter().find(|u| u["username"] == name).expect("user listed")["queued"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_report_reaches_the_owner_and_a_ban_refuses_the_account_until_unban() {
    let dir = TempDir::new("owner-ban");
    let mut server = Server::start(&dir.join("data"), &[]);
    for name in ["alice", "bob", "mallory"] {
        ok(user(&server, &dir, name, &["register-user"]));
    }
    ok(user(&server, &dir, "bob", &["create-group", "--group-id", "chat"]));
    ok(user(&server, &dir, "bob", &["invite", "mallory"]));
    ok(user(&server, &dir, "mallory", &["join"]));

    // Reports: what the relay can act on, and bad ones refused with reasons.
    let out = ok(user(&server, &dir, "alice", &["report", "mallory", "spam", "in", "#general"]));
    assert!(out.contains("reported mallory to the relay's owner (report 1)"), "{out}");
    let err = fails(user(&server, &dir, "alice", &["report", "nobody"]));
    assert!(err.contains("not_found") && err.contains("no account named \"nobody\""), "{err}");
    let err = fails(user(&server, &dir, "alice", &["report", "alice"]));
    assert!(err.contains("your own account"), "{err}");
    let long = "x".repeat(501);
    let err = fails(user(&server, &dir, "alice", &["report", "mallory", &long]));
    assert!(err.contains("too_large") && err.contains("the most is 500"), "{err}");
    let listed = json(&ok(server.ctl(&["reports", "--json"])));
    let reports = listed["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{listed}");
    assert_eq!(
        (&reports[0]["reporter"], &reports[0]["reported"], &reports[0]["reason"]),
        (&"alice".into(), &"mallory".into(), &"spam in #general".into())
    );
    let table = ok(server.ctl(&["reports"]));
    assert!(table.contains("mallory") && table.contains("spam in #general"), "{table}");
    assert_eq!(num(&server.status(), "reports"), 1);

    // Ban of an unknown account: said, nothing changed.
    let err = fails(server.ctl(&["ban", "nobody"]));
    assert!(err.contains("no account named \"nobody\" on this relay; nothing was banned"), "{err}");
    assert_eq!(num(&server.status(), "banned"), 0);

    let out = ok(server.ctl(&["ban", "mallory", "--reason", "spam, see report 1"]));
    assert!(out.contains("banned account \"mallory\""), "{out}");
    assert_eq!(num(&server.status(), "banned"), 1);
    // Log in, prove the identity, read or send: forbidden, saying why.
    let err = fails(user(&server, &dir, "mallory", &["login"]));
    assert!(err.contains("forbidden"), "{err}");
    assert!(err.contains("banned by this relay's owner: spam, see report 1"), "{err}");
    let laptop = dir.join("mallory-laptop.bin");
    let err = fails(server.qpc(&laptop, &["login", "--username", "mallory", "--password", "pw-mallory"]));
    assert!(err.contains("forbidden") && err.contains("banned by this relay's owner"), "{err}");
    let err = fails(user(&server, &dir, "mallory", &["send", "--all", "--msg", "more spam"]));
    assert!(err.contains("forbidden") && err.contains("banned"), "{err}");
    let err = fails(user(&server, &dir, "mallory", &["recv"]));
    assert!(err.contains("forbidden") && err.contains("banned"), "{err}");
    let prom = ok(server.ctl(&["status", "--prometheus"]));
    assert!(prom.contains("qpc_banned_accounts 1\n") && prom.contains("qpc_reports 1\n"), "{prom}");

    // Messages for a banned account are kept for it.
    ok(user(&server, &dir, "bob", &["send", "--all", "--msg", "while you were banned"]));
    assert_eq!(queued(&server, "mallory"), 1);
    server.restart();
    assert_eq!(queued(&server, "mallory"), 1, "the ban and the queue survive a restart");
    let err = fails(user(&server, &dir, "mallory", &["recv"]));
    assert!(err.contains("banned"), "{err}");

    let err = fails(server.ctl(&["unban", "alice"]));
    assert!(err.contains("is not banned"), "{err}");
    ok(server.ctl(&["unban", "mallory"]));
    assert_eq!(plaintexts(&ok(user(&server, &dir, "mallory", &["recv"]))), ["while you were banned"]);
    ok(user(&server, &dir, "mallory", &["send", "--all", "--msg", "sorry"]));
    assert_eq!(plaintexts(&ok(user(&server, &dir, "bob", &["recv"]))), ["sorry"]);

    let err = fails(server.ctl(&["report-dismiss", "7"]));
    assert!(err.contains("no report number 7"), "{err}");
    ok(server.ctl(&["report-dismiss", "1"]));
    let listed = json(&ok(server.ctl(&["reports", "--json"])));
    assert_eq!(listed, json("{\"reports\":[],\"banned\":[]}"));
}

fn code_of(setup_output: &str) -> String {
    setup_output
        .lines()
        .find_map(|l| l.strip_prefix("recovery code : "))
        .expect("recovery code line")
        .trim()
        .to_string()
}

#[test]
fn recover_brings_the_account_back_after_every_device_is_lost() {
    let dir = TempDir::new("owner-recover");
    let server = Server::start(&dir.join("data"), &["--max-login-failures", "3"]);
    let registered = ok(user(&server, &dir, "alice", &["register-user"]));
    let key = identity_key(&registered);
    ok(user(&server, &dir, "bob", &["register-user"]));
    let laptop = dir.join("alice-laptop.bin");
    ok(server.qpc(&laptop, &["login", "--username", "alice", "--password", "pw-alice"]));
    ok(user(&server, &dir, "bob", &["create-group", "--group-id", "old"]));
    ok(user(&server, &dir, "bob", &["invite", "alice"]));
    ok(user(&server, &dir, "alice", &["join"]));

    let setup = ok(user(&server, &dir, "alice", &["recovery-setup"]));
    let code = code_of(&setup);
    assert_eq!(code.len(), 29, "{setup}");
    assert!(!server.log().contains(&code), "the relay never sees the code");
    // An account without a bundle.
    let elsewhere = TempDir::new("owner-recover-bob");
    let err = fails(recover(&server, &elsewhere, "bob", "x", &code));
    assert!(err.contains("not_found") && err.contains("no recovery bundle for \"bob\""), "{err}");

    // Every device lost.
    std::fs::remove_file(dir.join("qpc-alice.bin")).unwrap();
    std::fs::remove_file(&laptop).unwrap();

    // A wrong code is refused and counts as a failed login: with the
    // laptop's login (an address keeps counting logins), two make three, and
    // then even the right code (and the password) wait.
    let wrong = "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF";
    for _ in 0..2 {
        let err = fails(recover(&server, &dir, "alice", "new-pw", wrong));
        assert!(
            err.contains("unauthenticated") && err.contains("wrong recovery code for \"alice\""),
            "{err}"
        );
    }
    assert!(!dir.join("qpc-alice.bin").exists(), "nothing written after a wrong code");
    let err = fails(recover(&server, &dir, "alice", "new-pw", &code));
    assert!(err.contains("rate_limited") && err.contains("too many failed"), "{err}");
    let elsewhere = dir.join("elsewhere.bin");
    let err = fails(server.qpc(&elsewhere, &["login", "--username", "alice", "--password", "pw-alice"]));
    assert!(err.contains("rate_limited"), "{err}");

    // Once the back-off is over (it doubles with each failure), the right
    // code works; a refused attempt does not count again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let out = recover(&server, &dir, "alice", "new-pw", &code.to_lowercase());
        if out.status.success() || !stderr(&out).contains("rate_limited") {
            break ok(out);
        }
        assert!(std::time::Instant::now() < deadline, "still backing off: {}", stderr(&out));
    };
    assert!(out.contains("recovered account alice"), "{out}");
    assert_eq!(identity_key(&out), key, "the same identity key: peers see the same person");
    let who = ok(as_user(&server, &dir, "alice", "new-pw", &["whoami"]));
    assert!(who.contains(&key), "{who}");
    let users = json(&ok(server.ctl(&["users", "--json"])));
    let alice = users.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap().clone();
    assert_eq!(alice["devices"], 1, "the lost laptop is retired: {users}");

    // The account works with the new password, and reads new messages.
    ok(user(&server, &dir, "bob", &["create-group", "--group-id", "again"]));
    ok(user(&server, &dir, "bob", &["invite", "alice", "--group-id", "again"]));
    ok(user(&server, &dir, "bob", &["send", "--all", "--group-id", "again", "--msg", "welcome back"]));
    let mut read = ok(as_user(&server, &dir, "alice", "new-pw", &["join", "--group-id", "again"]));
    read += &ok(as_user(&server, &dir, "alice", "new-pw", &["recv"]));
    assert_eq!(plaintexts(&read), ["welcome back"], "{read}");
    let out =
        ok(server
            .qpc(&dir.join("new-device.bin"), &["login", "--username", "alice", "--password", "new-pw"]));
    assert!(out.contains("logged in as alice (new device)"), "{out}");
}

#[test]
fn a_recovery_bundle_over_its_limit_or_malformed_is_refused_and_loses_nothing() {
    let dir = TempDir::new("owner-bundle");
    let server = Server::start(&dir.join("data"), &[]);
    let key = new_key();
    let bundle = |ciphertext: Vec<u8>| pb::StoreRecoveryBundleRequest {
        version: 1,
        salt: vec![1; 16],
        m_cost_kib: 8,
        t_cost: 1,
        parallelism: 1,
        verifier: vec![2; 32],
        nonce: vec![3; 12],
        ciphertext,
    };
    runtime().block_on(async {
        let relay = connect(&server).await;
        qpc::account::register(&relay, "carol", "pw-carol", "", &key).await.unwrap();
        let stored: pb::StoreRecoveryBundleResponse =
            relay.call(Method::StoreRecoveryBundle, &bundle(vec![9; 100])).await.unwrap();
        assert!(!stored.replaced);

        let err = relay
            .call::<_, pb::StoreRecoveryBundleResponse>(
                Method::StoreRecoveryBundle,
                &bundle(vec![9; 64 * 1024 + 1]),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(Status::QuotaExceeded), "{err}");
        assert!(err.to_string().contains("65537 bytes; this relay keeps at most 65536"), "{err}");
        let mut bad = bundle(vec![9; 10]);
        bad.salt = vec![1; 3];
        let err = relay
            .call::<_, pb::StoreRecoveryBundleResponse>(Method::StoreRecoveryBundle, &bad)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(Status::BadRequest));
        assert!(err.to_string().contains("the salt must be 16 to 64 bytes, got 3"), "{err}");

        // The first bundle is still there, whole.
        let anonymous = connect(&server).await;
        let start: pb::RecoveryStartResponse = anonymous
            .call(Method::RecoveryStart, &pb::RecoveryStartRequest { username: "carol".into() })
            .await
            .unwrap();
        assert_eq!((start.salt, start.m_cost_kib), (vec![1; 16], 8));
        let err = anonymous
            .call::<_, pb::RecoveryFinishResponse>(
                Method::RecoveryFinish,
                &pb::RecoveryFinishRequest { username: "carol".into(), verifier_key: vec![0; 31] },
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(Status::BadRequest));

        // A new password needs the right code first.
        let err = qpc::account::register(&anonymous, "carol", "stolen", "", &new_key()).await.unwrap_err();
        assert!(err.to_string().contains("already taken"), "{err}");

        let deleted: pb::DeleteRecoveryBundleResponse =
            relay.call(Method::DeleteRecoveryBundle, &pb::DeleteRecoveryBundleRequest {}).await.unwrap();
        assert!(deleted.deleted);
        let err = anonymous
            .call::<_, pb::RecoveryStartResponse>(
                Method::RecoveryStart,
                &pb::RecoveryStartRequest { username: "carol".into() },
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(Status::NotFound));
    });
}

#[test]
fn the_repl_reports_with_slash_report() {
    let dir = TempDir::new("owner-repl");
    let server = Server::start(&dir.join("data"), &[]);
    let bob = Repl::start(&server, &dir, "bob");
    let mut alice = Repl::start(&server, &dir, "alice");
    alice.send("/report bob rude words in #team");
    alice.expect("* reported bob to the relay's owner (report 1)");
    alice.send("/report nobody");
    alice.expect("no account named \"nobody\"");
    alice.send("/report");
    alice.expect("usage: /report <user> [reason]");
    let listed = json(&ok(server.ctl(&["reports", "--json"])));
    assert_eq!(listed["reports"][0]["reason"], "rude words in #team", "{listed}");
    assert_eq!(listed["reports"][0]["reporter"], "alice");
    alice.quit();
    bob.quit();
}

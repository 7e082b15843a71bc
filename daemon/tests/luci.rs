//! luci-app-qpc against the real relay: the rpcd backend answers `list` and
//! `call status|users|invite_token|backup|restore` with valid JSON (written
//! with jshn; a stand-in of libubox's jshn.sh here), both the way the router
//! runs it (data directory from UCI) and with QPC_DATA_DIR; the view parses
//! as LuCI loads it (node --check); its form refuses what the init script
//! refuses (tests/openwrt/rules.txt); its QR code decodes to the invite
//! string (zbarimg); its strings are all in po/templates/qpc.pot; and
//! headless Chromium renders the page with the status of a running relay
//! into out/luci-qpc.png, then clicks Save and Save & Apply and checks
//! what reached uci.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use qpc::account::register;
use serde_json::Value;

fn app() -> PathBuf {
    root().join("openwrt/luci-app-qpc")
}

fn backend() -> PathBuf {
    app().join("root/usr/libexec/rpcd/qpc")
}

/// PATH with the freshly built qpc-server (and `extra`) first.
fn path_with(extra: Option<&Path>) -> String {
    let mut dirs = Vec::new();
    if let Some(e) = extra {
        dirs.push(e.to_string_lossy().into_owned());
    }
    dirs.push(server_bin().parent().unwrap().to_string_lossy().into_owned());
    dirs.push(std::env::var("PATH").unwrap_or_default());
    dirs.join(":")
}

/// Runs the rpcd backend as rpcd does: arguments, JSON on stdin.
fn rpcd(args: &[&str], env: &[(&str, &str)], path: &str) -> Output {
    rpcd_with(args, "{}", env, path)
}

/// As [`rpcd`], with `input` as the call's arguments.
fn rpcd_with(args: &[&str], input: &str, env: &[(&str, &str)], path: &str) -> Output {
    let mut child = Command::new("sh")
        .arg(backend())
        .args(args)
        .env("PATH", path)
        .env("JSHN", root().join("daemon/tests/luci/jshn.sh"))
        .env_remove("QPC_SOCKET")
        .env_remove("QPC_DB_KEY")
        .env_remove("QPC_DATA_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut stdin = child.stdin.take().unwrap();
    if args.first() == Some(&"call") {
        // `list` reads nothing, so only a call gets its arguments.
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn json(out: Output) -> serde_json::Map<String, Value> {
    let text = ok(out);
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => map,
        other => panic!("not a JSON object ({other:?}): {text}"),
    }
}

/// A relay with two accounts, a few queued messages, and a report of
/// alice's about bob.
fn busy_relay(dir: &TempDir) -> Server {
    let server =
        Server::start(&dir.join("data"), &["--registration", "token", "--store-cap-bytes", "33554432"]);
    let tokens: Vec<String> = (0..2).map(|_| ok(server.ctl(&["invite-token"])).trim().to_string()).collect();
    let rt = runtime();
    rt.block_on(async {
        let (alice_key, bob_key) = (new_key(), new_key());
        let alice = connect(&server).await;
        register(&alice, "alice", "pw-alice", &tokens[0], &alice_key).await.unwrap();
        let bob = connect(&server).await;
        register(&bob, "bob", "pw-bob", &tokens[1], &bob_key).await.unwrap();
        for i in 0..5u8 {
            let to = bob_key.verifying_key().to_bytes();
            alice.enqueue(&to, b"chat", vec![i; 300], vec![i]).await.unwrap();
        }
        alice.report("bob", "sends spam to #general").await.unwrap();
        alice.close().await;
        bob.close().await;
    });
    server.wait_status("the clients gone", |s| num(s, "connections") == 0);
    server
}

#[test]
fn rpcd_backend_answers_list_and_call_with_json_from_the_relay() {
    let dir = TempDir::new("rpcd");
    let server = busy_relay(&dir);
    let data = server.data_dir.to_string_lossy().into_owned();
    let path = path_with(None);
    let env = [("QPC_DATA_DIR", data.as_str())];

    let list = json(rpcd(&["list"], &[], &path));
    let methods: BTreeSet<&str> = list.keys().map(String::as_str).collect();
    assert_eq!(
        methods,
        BTreeSet::from([
            "status",
            "users",
            "reports",
            "report_dismiss",
            "ban",
            "unban",
            "invite_token",
            "backup",
            "restore"
        ])
    );
    assert_eq!(list["ban"], serde_json::json!({ "username": "", "reason": "" }), "{list:?}");
    assert_eq!(list["report_dismiss"], serde_json::json!({ "id": 0 }));
    assert_eq!(list["status"], serde_json::json!({}), "no arguments: {list:?}");

    let status = json(rpcd(&["call", "status"], &env, &path));
    assert_eq!(status["running"], true);
    let direct = server.status();
    for (key, value) in &direct {
        if key != "uptime_s" {
            assert_eq!(&status[key], value, "{key} as qpc-server status --json says");
        }
    }
    assert_eq!(status.len(), direct.len() + 1, "the status keys and `running`");
    assert_eq!(num(&status, "accounts"), 2);
    assert_eq!(num(&status, "queued_messages"), 5);
    assert_eq!(num(&status, "queued_bytes"), 1500);

    let users = json(rpcd(&["call", "users"], &env, &path));
    let names: Vec<&str> =
        users["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(users["users"][1]["queued"], 5);

    // Reports and bans, as the page's buttons ask for them.
    let reports = json(rpcd(&["call", "reports"], &env, &path));
    assert_eq!(reports["reports"][0]["reported"], "bob", "{reports:?}");
    assert_eq!(reports["reports"][0]["reason"], "sends spam to #general");
    assert_eq!(reports["banned"], serde_json::json!([]));
    let banned = json(rpcd_with(&["call", "ban"], r#"{"username":"bob","reason":"spam"}"#, &env, &path));
    assert!(banned["done"].as_str().unwrap().contains("banned account \"bob\""), "{banned:?}");
    let reports = json(rpcd(&["call", "reports"], &env, &path));
    assert_eq!(reports["banned"][0]["username"], "bob");
    assert_eq!(reports["banned"][0]["reason"], "spam");
    let unknown = json(rpcd_with(&["call", "ban"], r#"{"username":"nobody"}"#, &env, &path));
    assert!(unknown["error"].as_str().unwrap().contains("no account named \"nobody\""), "{unknown:?}");
    json(rpcd_with(&["call", "unban"], r#"{"username":"bob"}"#, &env, &path));
    let id = reports["reports"][0]["id"].to_string();
    let dismissed = json(rpcd_with(&["call", "report_dismiss"], &format!("{{\"id\":{id}}}"), &env, &path));
    assert!(dismissed["done"].as_str().unwrap().contains("dismissed"), "{dismissed:?}");
    let reports = json(rpcd(&["call", "reports"], &env, &path));
    assert_eq!(
        (reports["reports"].clone(), reports["banned"].clone()),
        (serde_json::json!([]), serde_json::json!([]))
    );

    let token = json(rpcd(&["call", "invite_token"], &env, &path));
    assert_eq!(token["token"].as_str().unwrap().len(), 32);
    assert_eq!(token["note"], "", "token mode: nothing to add");

    // On the router, rpcd sets no QPC_* variable: the data directory comes
    // from UCI. A stand-in `uci` answers as `uci -q get qpc.server.data_dir`.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let uci = bin.join("uci");
    std::fs::write(
        &uci,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"-q get qpc.server.data_dir\" ] && echo '{data}' && exit 0\nexit 1\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&uci, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let routed = json(rpcd(&["call", "status"], &[], &path_with(Some(&bin))));
    assert_eq!(routed["fingerprint"], direct["fingerprint"]);

    // A backup for the page to download, and its restore on another data
    // directory (the init script's stop and start stand in by a script
    // that notes them).
    let backup = json(rpcd(&["call", "backup"], &env, &path));
    let file = PathBuf::from(backup["path"].as_str().unwrap());
    assert_eq!(file, Path::new("/tmp/qpc-backup.qpcb"));
    assert_eq!(backup["size"].as_u64().unwrap(), std::fs::metadata(&file).unwrap().len());
    let restore_file = Path::new("/tmp/qpc-restore.qpcb");
    let missing = json(rpcd(&["call", "restore"], &env, &path));
    if !restore_file.exists() {
        assert!(missing["error"].as_str().unwrap().contains("no backup uploaded"), "{missing:?}");
    }
    std::fs::rename(&file, restore_file).unwrap();
    let init = dir.join("init");
    std::fs::write(&init, format!("#!/bin/sh\necho \"$1\" >> '{}'\n", dir.join("init.log").display()))
        .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let other = dir.join("restored");
    let other_s = other.to_string_lossy().into_owned();
    let init_s = init.to_string_lossy().into_owned();
    let restored = json(rpcd(
        &["call", "restore"],
        &[("QPC_DATA_DIR", other_s.as_str()), ("QPC_INIT_SCRIPT", init_s.as_str())],
        &path,
    ));
    assert_eq!(restored["restored"], true, "{restored:?}");
    assert_eq!(std::fs::read_to_string(dir.join("init.log")).unwrap(), "stop\nstart\n");
    assert_eq!(std::fs::read(other.join("server-cert.der")).unwrap(), std::fs::read(server.cert()).unwrap());
    assert!(!restore_file.exists(), "the upload is removed once restored");

    // A stopped relay: still JSON, saying so.
    let mut server = server;
    assert_eq!(server.stop(), Some(0));
    let down = json(rpcd(&["call", "status"], &env, &path));
    assert_eq!(down["running"], false);
    assert!(down["error"].as_str().unwrap().contains("no relay is running"), "{down:?}");
    let unknown = rpcd(&["call", "reboot"], &env, &path);
    assert!(!unknown.status.success());
}

/// `option`/`list` lines of the `server` section of uci/qpc, as the uci
/// module would hand them to the page.
fn uci_defaults() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(root().join("uci/qpc")).unwrap();
    let mut values = serde_json::Map::new();
    for line in text.lines().map(str::trim) {
        let mut words = line.splitn(3, char::is_whitespace);
        let (kind, name, value) = match (words.next(), words.next(), words.next()) {
            (Some(k), Some(n), Some(v)) => (k, n, v.trim().trim_matches('\'').to_string()),
            _ => continue,
        };
        match kind {
            "option" => {
                values.insert(name.into(), Value::String(value));
            }
            "list" => {
                let entry = values.entry(name).or_insert_with(|| Value::Array(Vec::new()));
                entry.as_array_mut().unwrap().push(Value::String(value));
            }
            _ => {}
        }
    }
    values
}

fn view_source() -> String {
    std::fs::read_to_string(app().join("htdocs/luci-static/resources/view/qpc.js")).unwrap()
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|n| path.split(':').map(|d| Path::new(d).join(n)).find(|p| p.is_file()))
}

#[test]
fn luci_view_parses_as_luci_loads_it() {
    let Some(node) = find_program(&["node", "nodejs"]) else {
        eprintln!("SKIPPED: node not found (apt-get install nodejs, or `make test-luci`)");
        return;
    };
    // LuCI compiles a view as the body of a function (hence its top-level
    // `return view.extend(...)`): check it the same way.
    let dir = TempDir::new("viewcheck");
    let wrapped = dir.join("qpc.js");
    std::fs::write(
        &wrapped,
        format!("(function(view, dom, poll, rpc, uci, ui, form, fs, qrcode) {{\n{}\n}});\n", view_source()),
    )
    .unwrap();
    let out = Command::new(&node).arg("--check").arg(&wrapped).output().unwrap();
    assert!(out.status.success(), "node --check: {}", stderr(&out));
    let qr = dir.join("qrcode.js");
    std::fs::write(&qr, format!("(function(baseclass) {{\n{}\n}});\n", qrcode_source())).unwrap();
    let out = Command::new(&node).arg("--check").arg(&qr).output().unwrap();
    assert!(out.status.success(), "node --check qrcode.js: {}", stderr(&out));
    let stubs = root().join("daemon/tests/luci/stubs.js");
    let out = Command::new(&node).arg("--check").arg(&stubs).output().unwrap();
    assert!(out.status.success(), "node --check stubs.js: {}", stderr(&out));
    for json in
        ["root/usr/share/luci/menu.d/luci-app-qpc.json", "root/usr/share/rpcd/acl.d/luci-app-qpc.json"]
    {
        let text = std::fs::read_to_string(app().join(json)).unwrap();
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{json}: {e}"));
    }
    // Every ubus method the view calls is granted by the ACL and offered
    // by the backend.
    let acl = std::fs::read_to_string(app().join("root/usr/share/rpcd/acl.d/luci-app-qpc.json")).unwrap();
    for method in ["status", "users", "invite_token", "backup", "restore"] {
        assert!(view_source().contains(&format!("method: '{method}'")));
        assert!(acl.contains(&format!("\"{method}\"")), "{method} in the ACL");
    }
    for file in ["/tmp/qpc-backup.qpcb", "/tmp/qpc-restore.qpcb"] {
        assert!(view_source().contains(&format!("'{file}'")), "{file} in the view");
        assert!(acl.contains(&format!("\"{file}\"")), "{file} in the ACL");
    }
}

fn qrcode_source() -> String {
    std::fs::read_to_string(app().join("htdocs/luci-static/resources/qpc/qrcode.js")).unwrap()
}

fn need(names: &[&str], package: &str) -> PathBuf {
    find_program(names).unwrap_or_else(|| {
        panic!("{} not found: `make status-deps` installs it (Debian package {package})", names[0])
    })
}

#[test]
fn luci_form_refuses_what_the_init_script_refuses() {
    let node = need(&["node", "nodejs"], "nodejs");
    let rules = root().join("tests/openwrt/rules.txt");
    let out = Command::new(node)
        .arg(root().join("daemon/tests/luci/rules.js"))
        .arg(app().join("htdocs/luci-static/resources/view/qpc.js"))
        .arg(&rules)
        .output()
        .unwrap();
    let got = ok(out);
    let want: String = std::fs::read_to_string(&rules)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, want, "the form's verdicts differ from tests/openwrt/rules.txt (the init script's)");
}

#[test]
fn invite_qr_code_decodes_to_the_invite_string() {
    let node = need(&["node", "nodejs"], "nodejs");
    let zbarimg = need(&["zbarimg"], "zbar-tools");
    let dir = TempDir::new("qr");
    let fp = "ab".repeat(32);
    for invite in [
        format!("qpc://192.168.1.1:7000#{fp}"),
        format!("qpc://[fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535#{fp}"),
        // With the key transparency log key, the longest the page makes.
        format!("qpc://[fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535#{fp};log={}", "cd".repeat(32)),
        "q".into(),
    ] {
        let pgm = dir.join("qr.pgm");
        ok(Command::new(&node)
            .arg(root().join("daemon/tests/luci/qr-pgm.js"))
            .arg(app().join("htdocs/luci-static/resources/qpc/qrcode.js"))
            .arg(&invite)
            .arg(&pgm)
            .output()
            .unwrap());
        let decoded = ok(Command::new(&zbarimg).args(["-q", "--raw"]).arg(&pgm).output().unwrap());
        assert_eq!(decoded.trim_end(), invite, "the QR code reads back");
    }
}

#[test]
fn every_string_of_the_view_is_in_the_translation_template() {
    let xgettext = need(&["xgettext"], "gettext");
    let dir = TempDir::new("pot");
    let fresh = dir.join("qpc.pot");
    ok(Command::new(xgettext)
        .args(["--language=JavaScript", "--keyword=_", "--from-code=UTF-8", "--omit-header", "--no-location"])
        .arg("--sort-output")
        .arg("-o")
        .arg(&fresh)
        .arg(app().join("htdocs/luci-static/resources/view/qpc.js"))
        .arg(app().join("htdocs/luci-static/resources/qpc/qrcode.js"))
        .output()
        .unwrap());
    let want = std::fs::read_to_string(&fresh).unwrap();
    assert!(want.matches("msgid").count() > 40, "xgettext found the strings:\n{want}");
    let shipped = std::fs::read_to_string(app().join("po/templates/qpc.pot")).unwrap();
    // After the header cross/luci-pot.sh writes.
    let body = shipped.splitn(4, '\n').nth(3).unwrap_or_default();
    assert_eq!(body, want, "po/templates/qpc.pot is stale: regenerate it with cross/luci-pot.sh");
}

/// Serves `page` at http://127.0.0.1:PORT/ (any path) from a thread, so the
/// page has a host name as it has on the router.
fn serve(page: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let wanted_page = head.starts_with(b"GET / ");
            let (status, body) = if wanted_page { ("200 OK", page.as_str()) } else { ("404 Not Found", "") };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Embeds JSON in a <script> without ending it early.
fn script_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap().replace("</", "<\\/")
}

#[test]
fn luci_page_renders_the_status_of_a_running_relay() {
    let required = std::env::var("QPC_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    let Some(chromium) = find_program(&["chromium", "chromium-browser", "google-chrome"]) else {
        assert!(!required, "chromium not found, and QPC_REQUIRE_CHROMIUM=1");
        eprintln!("SKIPPED: chromium not found: `make test-luci` installs it (Debian package chromium)");
        return;
    };
    let dir = TempDir::new("luci");
    let server = busy_relay(&dir);
    let data = server.data_dir.to_string_lossy().into_owned();
    let path = path_with(None);
    let env = [("QPC_DATA_DIR", data.as_str())];
    ok(server.ctl(&["ban", "bob", "--reason", "spam, see the report"]));
    let status = json(rpcd(&["call", "status"], &env, &path));
    let users = json(rpcd(&["call", "users"], &env, &path));
    let reports = json(rpcd(&["call", "reports"], &env, &path));

    let mut uci = uci_defaults();
    // As after the owner's first setup: enabled, with a key.
    uci.insert("enabled".into(), "1".into());
    uci.insert("db_key".into(), "set-by-uci-defaults".into());
    uci.insert("registration_token".into(), "the-relay-token".into());
    let fixture = serde_json::json!({
        "rpc": {
            "qpc.status": status,
            "qpc.users": users,
            "qpc.reports": reports,
            "qpc.invite_token": { "token": "0123456789abcdef0123456789abcdef", "note": "" }
        },
        "uci": { "qpc": { "server": uci } },
        "modules": { "qpc.qrcode": qrcode_source() }
    });
    // The same page, with a person's clicks: a port the relay cannot bind
    // and a subnet as listen address are refused on Save and on Save &
    // Apply (nothing reaches uci), good values are written, and only Save &
    // Apply applies.
    let mut driven = fixture.clone();
    driven["drive"] = serde_json::json!([
        { "set": { "port": "443" } }, { "click": "save" },
        { "set": { "port": "7443", "listen": ["::", "192.168.1.1:7001"] } }, { "click": "save" },
        { "set": { "listen": ["192.168.1.0/24"] } }, { "click": "apply" },
        { "set": { "listen": ["[fd00::1]:7002"], "max_queue_messages": "" } }, { "click": "apply" }
    ]);
    let css = std::fs::read_to_string(root().join("daemon/tests/luci/page.css")).unwrap();
    let stubs = std::fs::read_to_string(root().join("daemon/tests/luci/stubs.js")).unwrap();
    let page = |fixture: &Value| {
        format!(
            r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>qpc relay - LuCI</title><style>{css}</style></head>
<body>
<header><span class="brand">OpenWrt</span><span class="nav"><span>Status</span><span>System</span><span class="active">Services</span><span>Network</span><span>Logout</span></span></header>
<div id="maincontent"><div id="notifications"></div><div id="view"></div></div>
<script>var QPC_FIXTURE = {fixture};</script>
<script>{stubs}</script>
<script>loadView({source});</script>
</body></html>
"#,
            fixture = script_json(fixture),
            source = script_json(&Value::String(view_source())),
        )
    };
    let (page, driven_page) = (page(&fixture), page(&driven));
    let out_dir = root().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("luci-qpc.html"), &page).unwrap();
    let url = format!("http://127.0.0.1:{}/", serve(page));
    let driven_url = format!("http://127.0.0.1:{}/", serve(driven_page));
    let profile = dir.join("chromium-profile");
    let chrome = |extra: &[&str], url: &str| {
        Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
            .args(["--disable-dev-shm-usage", "--virtual-time-budget=5000", "--window-size=1100,2600"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .expect("run chromium")
    };

    // What the page shows, once rendered and refreshed by one poll.
    let dom = ok(chrome(&["--dump-dom"], &url));
    assert!(dom.contains("data-rendered=\"1\""), "the view rendered:\n{dom}");
    assert!(dom.contains("data-polled=\"1\""), "the poll refreshed it:\n{dom}");
    let fingerprint = status["fingerprint"].as_str().unwrap();
    let port_of_relay = server.addr.rsplit(':').next().unwrap();
    let log_key = status["log_key"].as_str().unwrap();
    let invite = format!("qpc://127.0.0.1:{port_of_relay}#{fingerprint};log={log_key}");
    assert!(dom.contains(&invite), "the invite string {invite}:\n{dom}");
    for shown in [
        "Running",
        "alice",
        "bob",
        "1.5 KiB",
        "Registration token",
        "Messages per recipient",
        "Files",
        "File lifetime (seconds)",
        "Download backup",
        "Reports",
        "sends spam to #general",
        "Dismiss",
        "Ban bob",
        "Banned accounts",
        "spam, see the report",
        "Unban",
        "1 reports waiting, 1 accounts banned",
        "Key transparency log",
        &format!("entries, head {}", status["log_head"].as_str().unwrap()),
    ] {
        assert!(dom.contains(shown), "{shown:?} on the page:\n{dom}");
    }
    assert!(
        dom.contains(&format!(">{invite}</textarea>")),
        "the invite string whole, not in a fixed-width input:\n{dom}"
    );
    assert!(
        dom.contains("class=\"qpc-invite-qr\" src=\"data:image/svg+xml"),
        "a QR code of the invite:\n{dom}"
    );

    let driven_dom = ok(chrome(&["--dump-dom"], &driven_url));
    assert!(driven_dom.contains("data-driven=\"1\""), "the clicks ran:\n{driven_dom}");
    let calls = driven_dom
        .split("<pre id=\"uci-calls\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no uci calls recorded:\n{driven_dom}"))
        .replace("&amp;", "&");
    let calls: Value = serde_json::from_str(&calls).unwrap();
    assert_eq!(
        calls,
        serde_json::json!([
            ["click", "save"],
            ["click", "save"],
            ["set", "qpc", "server", "port", "7443"],
            ["set", "qpc", "server", "listen", ["::", "192.168.1.1:7001"]],
            ["save"],
            ["click", "apply"],
            ["click", "apply"],
            ["set", "qpc", "server", "listen", ["[fd00::1]:7002"]],
            ["unset", "qpc", "server", "max_queue_messages"],
            ["save"],
            ["apply"]
        ]),
        "what reached uci"
    );
    assert!(
        driven_dom.contains("The port must be between 1024 and 65535")
            || driven_dom.contains("Expecting: and(uinteger,range(1024,65535))"),
        "the refusal of port 443 is shown:\n{driven_dom}"
    );
    assert!(driven_dom.contains("Not an IP address"), "the refusal of a subnet is shown:\n{driven_dom}");

    let png = out_dir.join("luci-qpc.png");
    let _ = std::fs::remove_file(&png);
    let shot = chrome(&[&format!("--screenshot={}", png.display())], &url);
    assert!(shot.status.success(), "chromium --screenshot: {}", stderr(&shot));
    let bytes = std::fs::read(&png).expect("out/luci-qpc.png written");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "a real picture: {} bytes", bytes.len());
    // The QR code as a phone would see it: in the rendered page.
    let zbarimg = need(&["zbarimg"], "zbar-tools");
    let decoded = ok(Command::new(zbarimg).args(["-q", "--raw"]).arg(&png).output().unwrap());
    assert_eq!(decoded.trim_end(), invite, "the QR code on the page reads back as the invite string");
    eprintln!("screenshot of the LuCI page: {}", png.display());
}

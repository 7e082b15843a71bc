//! Files through the relay with the real binaries: `qpc send-file`, `qpc
//! recv`, `qpc save-file` against a real `qpc-server`; both of Bob's
//! devices save Alice's 20 MiB file byte for byte, and an upload killed at a
//! random point, across a relay restart, resumes and completes without a
//! partial file ever being offered.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// A device of an account (password `pw-USER`).
struct Dev {
    state: PathBuf,
    auth: Vec<String>,
}

impl Dev {
    fn new(server: &Server, dir: &TempDir, user: &str, device: &str, first: bool) -> Dev {
        let dev = Dev {
            state: dir.join(&format!("{user}-{device}.bin")),
            auth: ["--username", user, "--password", &format!("pw-{user}")].map(String::from).to_vec(),
        };
        dev.ok(server, &[if first { "register-user" } else { "login" }]);
        dev
    }

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
            .env_remove("QPC_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, server: &Server, args: &[&str]) -> Output {
        self.command(server, args).output().expect("run qpc")
    }

    #[track_caller]
    fn ok(&self, server: &Server, args: &[&str]) -> String {
        ok(self.run(server, args))
    }
}

fn random_file(path: &Path, bytes: usize) -> Vec<u8> {
    let mut data = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut data);
    std::fs::write(path, &data).unwrap();
    data
}

/// The N of `[N] file: NAME (SIZE): qpc save-file N` in a recv output.
#[track_caller]
fn file_number(recv: &str, name: &str, size: &str) -> String {
    let line = recv
        .lines()
        .find(|l| l.contains(&format!("] file: {name} ({size}): qpc save-file ")))
        .unwrap_or_else(|| panic!("no file line for {name} in:\n{recv}"));
    let n = line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(line, format!("[{n}] file: {name} ({size}): qpc save-file {n}"));
    n
}

/// Alice and Bob (two devices) in the DM group `dm`.
fn dm(server: &Server, dir: &TempDir) -> (Dev, Dev, Dev) {
    let alice = Dev::new(server, dir, "alice", "laptop", true);
    let bob1 = Dev::new(server, dir, "bob", "laptop", true);
    let bob2 = Dev::new(server, dir, "bob", "phone", false);
    alice.ok(server, &["create-group", "--group-id", "dm"]);
    alice.ok(server, &["invite", "bob", "--group-id", "dm"]);
    for bob in [&bob1, &bob2] {
        let out = bob.ok(server, &["join", "--group-id", "dm"]);
        assert!(out.contains("joined group: dm"), "{out}");
    }
    for dev in [&alice, &bob1, &bob2] {
        dev.ok(server, &["recv"]);
    }
    (alice, bob1, bob2)
}

#[test]
fn a_20_mib_file_reaches_both_of_bobs_devices_byte_for_byte() {
    let dir = TempDir::new("files-20");
    let data_dir = dir.join("data");
    let server =
        Server::start(&data_dir, &["--blob-max-bytes", "33554432", "--blob-account-bytes", "67108864"]);
    let (alice, bob1, bob2) = dm(&server, &dir);
    let photo = dir.join("photo.bin");
    let data = random_file(&photo, 20 * MIB);

    let out = alice.run(&server, &["send-file", "--to", "bob", "--group-id", "dm", photo.to_str().unwrap()]);
    assert_eq!(ok(out.clone()).trim(), "file sent: photo.bin (20.0 MiB)");
    assert!(
        stderr(&out).contains("uploading: 100%"),
        "plain progress lines off a terminal: {}",
        stderr(&out)
    );

    let mut n_laptop = String::new();
    for (bob, name) in [(&bob1, "laptop"), (&bob2, "phone")] {
        let n = file_number(&bob.ok(&server, &["recv"]), "photo.bin", "20.0 MiB");
        let dest = dir.join(&format!("saved-{name}"));
        std::fs::create_dir_all(&dest).unwrap();
        let out = bob.ok(&server, &["save-file", &n, dest.to_str().unwrap()]);
        assert!(out.contains("saved photo.bin (20.0 MiB) to ") && out.contains("SHA-256 checked"), "{out}");
        let saved = std::fs::read(dest.join("photo.bin")).unwrap();
        assert_eq!(Sha256::digest(&saved), Sha256::digest(&data), "bob's {name} has the file byte for byte");
        if name == "laptop" {
            n_laptop = n;
        }
    }
    // Every recipient has it: the relay deleted it.
    let blobs: Vec<_> = std::fs::read_dir(data_dir.join("blobs")).unwrap().collect();
    assert!(blobs.is_empty(), "the blob is gone once both devices saved it");

    // Bad input: a clear error, nothing lost.
    let missing = dir.join("nope.jpg");
    let err = fails(alice.run(&server, &["send-file", "--to", "bob", missing.to_str().unwrap()]));
    assert!(err.contains("nope.jpg") && err.contains("No such file"), "{err}");
    let err = fails(alice.run(&server, &["send-file", "--to", "bob", dir.path().to_str().unwrap()]));
    assert!(err.contains("is not a regular file"), "{err}");
    let err = fails(bob1.run(&server, &["save-file", "999"]));
    assert!(err.contains("no received message [999]"), "{err}");
    // Saving again once the relay deleted it: said so; what was saved stays.
    let again = dir.join("again.bin");
    let err = fails(bob1.run(&server, &["save-file", &n_laptop, again.to_str().unwrap()]));
    assert!(err.contains("no blob with this id and read token"), "{err}");
    assert!(!again.exists() && dir.join("saved-laptop/photo.bin").exists());
}

#[test]
fn an_upload_killed_at_a_random_point_resumes_after_a_relay_restart() {
    let dir = TempDir::new("files-resume");
    let data_dir = dir.join("data");
    // A slow disk (each commit waits), so that the upload is still going
    // when it is killed.
    let mut server = Server::start_with_env(&data_dir, &[], &[("QPC_TEST_COMMIT_DELAY_MS", "40")]);
    let (alice, bob1, _bob2) = dm(&server, &dir);
    let doc = dir.join("report.pdf");
    let data = random_file(&doc, 12 * MIB);
    let blob_dir = data_dir.join("blobs");
    let stored = || -> u64 {
        std::fs::read_dir(&blob_dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum())
            .unwrap_or(0)
    };

    let stop_after = rand::thread_rng().gen_range(2..30) as u64 * 256 * 1024;
    let mut child = alice
        .command(&server, &["send-file", "--to", "bob", "--group-id", "dm", doc.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored() < stop_after {
        assert!(child.try_wait().unwrap().is_none(), "the upload ended before it could be killed");
        assert!(Instant::now() < deadline, "the upload never got {stop_after} bytes in");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let held = stored();
    assert!(held > 0 && held < data.len() as u64, "killed part way: {held} bytes on the relay");
    eprintln!("upload killed with {held} bytes on the relay");

    // Nothing partial is offered: Bob sees no file.
    let out = bob1.ok(&server, &["recv"]);
    assert!(!out.contains("file:"), "{out}");

    server.restart();
    let out = alice.run(&server, &["send-file", "--to", "bob", "--group-id", "dm", doc.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(ok(out).trim(), "file sent: report.pdf (12.0 MiB)");
    assert!(err.contains("resuming: the relay holds"), "it resumed rather than starting again: {err}");

    let n = file_number(&bob1.ok(&server, &["recv"]), "report.pdf", "12.0 MiB");
    let dest = dir.join("report-saved.pdf");
    bob1.ok(&server, &["save-file", &n, dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

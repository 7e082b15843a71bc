//! Instructions per delivered message, counted by valgrind's callgrind on
//! the relay process over a fixed small workload. Instruction counts hardly
//! move on a noisy machine and carry over to other CPUs (see
//! docs/performance.md for the router projection).
//!
//! The same count can come from any command the relay runs under that
//! writes its instruction total to a file ([`Counter::Wrapper`]): an
//! emulator with an instruction-count plugin counts a router build's own
//! instructions (qemu's `libinsn.so` under `qemu-mipsel`), with no scaling
//! from x86-64. The emulator is the user's to bring.
//!
//! Each relay runs the workload twice, once with no messages and once with
//! `messages`; the difference divided by `messages` leaves out start-up,
//! the handshakes, identity proofs and shutdown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::servers::{Kind, Launch, Server};
use crate::suite::{group, store_and_forward, GroupWorkload, SfWorkload};
use crate::util::TempDir;
use crate::Result;

/// What counts the relay's instructions.
#[derive(Debug, Clone)]
pub enum Counter {
    /// valgrind's callgrind, on the host's binaries.
    Callgrind,
    /// The relay runs under `command` (split at spaces, `{log}` standing for
    /// a file in the run's temporary directory), which writes the total to
    /// that file: the last word of its last line starting with `total`, as
    /// qemu's libinsn plugin prints it (`total insns: N`). For example
    /// `qemu-mipsel -cpu 24Kc -plugin PATH/libinsn.so -d plugin -D {log}`.
    /// `relay` is the binary started under it when the host's `qpc_server`
    /// is not the one to count (a router build).
    Wrapper { command: String, relay: Option<PathBuf> },
}

impl Counter {
    pub fn name(&self) -> &'static str {
        match self {
            Counter::Callgrind => "callgrind",
            Counter::Wrapper { .. } => "insn-wrapper",
        }
    }

    /// Whether the counter can run here: valgrind installed; a wrapper is
    /// taken as given (a missing one fails the first run, saying so).
    pub fn available(&self) -> bool {
        match self {
            Counter::Callgrind => std::process::Command::new("valgrind")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            Counter::Wrapper { .. } => true,
        }
    }

    /// The wrapper command for a run whose total goes to `out`.
    fn wrapper(&self, out: &Path) -> Vec<String> {
        match self {
            Counter::Callgrind => vec![
                "valgrind".into(),
                "--tool=callgrind".into(),
                format!("--callgrind-out-file={}", out.display()),
                "--dump-instr=no".into(),
                "--dump-line=no".into(),
                "--compress-strings=no".into(),
            ],
            Counter::Wrapper { command, .. } => command
                .split_whitespace()
                .map(|word| word.replace("{log}", &out.display().to_string()))
                .collect(),
        }
    }

    fn total_instructions(&self, out: &Path) -> Result<u64> {
        let text = std::fs::read_to_string(out)?;
        let total = match self {
            Counter::Callgrind => text
                .lines()
                .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
                .and_then(|v| v.split_whitespace().next()?.parse().ok()),
            Counter::Wrapper { .. } => text
                .lines()
                .rfind(|l| l.starts_with("total"))
                .and_then(|l| l.split_whitespace().next_back()?.parse().ok()),
        };
        total.ok_or_else(|| format!("no instruction total in {}", out.display()).into())
    }
}

#[derive(Debug, Clone)]
pub struct Count {
    pub kind: Kind,
    pub messages: usize,
    pub base: u64,
    pub loaded: u64,
}

impl Count {
    pub fn per_message(&self) -> f64 {
        self.loaded.saturating_sub(self.base) as f64 / self.messages.max(1) as f64
    }
}

/// What a counted run drives.
enum Workload<'a> {
    StoreAndForward(&'a SfWorkload),
    Group(&'a GroupWorkload),
}

impl Workload<'_> {
    fn messages(&self) -> usize {
        match self {
            Workload::StoreAndForward(w) => w.messages,
            Workload::Group(w) => w.messages,
        }
    }
}

async fn counted_run(
    kind: Kind,
    launch: &Launch,
    counter: &Counter,
    w: Workload<'_>,
    keep: Option<&Path>,
) -> Result<u64> {
    let dir = TempDir::new("callgrind")?;
    let out = dir.path().join("count.out");
    let mut launch = launch.clone();
    let wrapper = counter.wrapper(&out);
    launch.wrapper = wrapper.clone();
    launch.mosquitto_wrapper = wrapper;
    if let Counter::Wrapper { relay: Some(relay), .. } = counter {
        launch.qpc_run = Some(relay.clone());
    }
    launch.start_timeout = Duration::from_secs(300);
    let server = Server::start(kind, &launch)?;
    let tag = match &w {
        Workload::StoreAndForward(sf) => {
            store_and_forward(kind, &server, sf).await?;
            "sf"
        }
        Workload::Group(g) => {
            group(kind, &server, g).await?;
            "group"
        }
    };
    server.stop(Duration::from_secs(300))?;
    if let Some(keep) = keep {
        std::fs::create_dir_all(keep)?;
        let name = format!("{}.{}.{tag}.{}msgs.out", counter.name(), kind.name(), w.messages());
        std::fs::copy(&out, keep.join(name))?;
    }
    counter.total_instructions(&out)
}

/// Counts the relay's instructions per delivered message of `payload_size` bytes,
/// the sender keeping `window` messages awaiting the relay's answer.
/// With `keep`, the counter's output files are copied there.
pub async fn count(
    kind: Kind,
    launch: &Launch,
    counter: &Counter,
    messages: usize,
    payload_size: usize,
    window: usize,
    keep: Option<&Path>,
) -> Result<Count> {
    let w = |messages| SfWorkload {
        messages,
        payload_size,
        senders: 1,
        recipients: 1,
        window,
        measure_disk: false,
    };
    let base = counted_run(kind, launch, counter, Workload::StoreAndForward(&w(0)), keep).await?;
    let loaded = counted_run(kind, launch, counter, Workload::StoreAndForward(&w(messages)), keep).await?;
    Ok(Count { kind, messages, base, loaded })
}

/// Counts the relay's instructions per delivered message of a group send
/// (`w.messages` each delivered to `w.members - 1` readers).
pub async fn count_group(
    kind: Kind,
    launch: &Launch,
    counter: &Counter,
    w: &GroupWorkload,
    keep: Option<&Path>,
) -> Result<Count> {
    let empty = GroupWorkload { messages: 0, ..w.clone() };
    let base = counted_run(kind, launch, counter, Workload::Group(&empty), keep).await?;
    let loaded = counted_run(kind, launch, counter, Workload::Group(w), keep).await?;
    Ok(Count { kind, messages: w.delivered(), base, loaded })
}

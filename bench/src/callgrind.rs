//! Instructions per delivered message, counted by valgrind's callgrind on
//! the relay process over a fixed small workload. Instruction counts hardly
//! move on a noisy machine and carry over to other CPUs (see
//! docs/performance.md for the router projection).
//!
//! Each relay runs the workload twice, once with no messages and once with
//! `messages`; the difference divided by `messages` leaves out start-up,
//! the handshakes, identity proofs and shutdown.

use std::path::Path;
use std::time::Duration;

use crate::servers::{Kind, Launch, Server};
use crate::suite::{group, store_and_forward, GroupWorkload, SfWorkload};
use crate::util::TempDir;
use crate::Result;

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

pub fn available() -> bool {
    std::process::Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn total_instructions(out: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(out)?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no instruction total in {}", out.display()).into())
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

async fn counted_run(kind: Kind, launch: &Launch, w: Workload<'_>, keep: Option<&Path>) -> Result<u64> {
    let dir = TempDir::new("callgrind")?;
    let out = dir.path().join("callgrind.out");
    let mut launch = launch.clone();
    let wrapper = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
        "--dump-instr=no".into(),
        "--dump-line=no".into(),
        "--compress-strings=no".into(),
    ];
    launch.wrapper = wrapper.clone();
    launch.mosquitto_wrapper = wrapper;
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
        let name = format!("callgrind.{}.{tag}.{}msgs.out", kind.name(), w.messages());
        std::fs::copy(&out, keep.join(name))?;
    }
    total_instructions(&out)
}

/// Counts the relay's instructions per delivered message of `payload_size` bytes,
/// the sender keeping `window` messages awaiting the relay's answer.
/// With `keep`, the callgrind files are copied there.
pub async fn count(
    kind: Kind,
    launch: &Launch,
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
    let base = counted_run(kind, launch, Workload::StoreAndForward(&w(0)), keep).await?;
    let loaded = counted_run(kind, launch, Workload::StoreAndForward(&w(messages)), keep).await?;
    Ok(Count { kind, messages, base, loaded })
}

/// Counts the relay's instructions per delivered message of a group send
/// (`w.messages` each delivered to `w.members - 1` readers).
pub async fn count_group(
    kind: Kind,
    launch: &Launch,
    w: &GroupWorkload,
    keep: Option<&Path>,
) -> Result<Count> {
    let empty = GroupWorkload { messages: 0, ..w.clone() };
    let base = counted_run(kind, launch, Workload::Group(&empty), keep).await?;
    let loaded = counted_run(kind, launch, Workload::Group(w), keep).await?;
    Ok(Count { kind, messages: w.delivered(), base, loaded })
}

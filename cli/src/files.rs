//! `qpc send-file` and `qpc save-file`: a file through the relay's blob
//! store (see `qpc::blob`), announced inside an MLS application message;
//! with a progress bar on a terminal, plain lines otherwise.

use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use qpc::blob::{self, Step};
use qpc::content::{Body, Content, FileAnnouncement};
use qpc::relay::Relay;
use qpc::session::Session;

use crate::commands::{online, pick_group, resolve_peer};
use crate::render::size;
use crate::Common;

type Outcome = Result<(), Box<dyn Error>>;

/// Shows a transfer's progress: a bar on a terminal, else a line per tenth.
pub struct Progress {
    bar: Option<ProgressBar>,
    phase: &'static str,
    tenth: u64,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { bar: None, phase: "", tenth: u64::MAX }
    }

    pub fn step(&mut self, step: Step) {
        let (phase, done, total) = match step {
            Step::Hashing { done, total } => ("reading", done, total),
            Step::Uploading { done, total, .. } => ("uploading", done, total),
            Step::Downloading { done, total } => ("downloading", done, total),
        };
        if phase != self.phase {
            self.finish();
            self.phase = phase;
            self.tenth = u64::MAX;
            if let Step::Uploading { from, total, .. } = step {
                if from > 0 && from < total {
                    eprintln!("resuming: the relay holds {} of {}", size(from), size(total));
                }
            }
            if std::io::stderr().is_terminal() {
                let bar = ProgressBar::new(total);
                if let Ok(style) =
                    ProgressStyle::with_template("{msg:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(phase);
                self.bar = Some(bar);
            }
        }
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let tenth = (done * 10).checked_div(total).unwrap_or(10);
                if tenth != self.tenth {
                    self.tenth = tenth;
                    eprintln!("{phase}: {}% ({} of {})", tenth * 10, size(done), size(total));
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

pub async fn send_file(c: &Common, to: Option<&str>, path: &Path, group: Option<&str>) -> Outcome {
    // A missing or unreadable file is said before anything else happens.
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()).into());
    }
    std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (_lock, mut session, relay, _) = online(c).await?;
    let peers = match to {
        Some(to) => resolve_peer(&mut session, &relay, to).await?,
        None => Vec::new(),
    };
    let group = pick_group(&session, group, peers.first())?;
    let members = session.state.member.members(&group)?;
    if to.is_some() && !peers.iter().any(|p| members.contains(p)) {
        return Err(format!("{} is not a member of group {group}", to.unwrap_or_default()).into());
    }
    let (name, bytes) = upload_to_group(&mut session, &relay, &group, path).await?;
    relay.close().await;
    println!("file sent: {name} ({})", size(bytes));
    Ok(())
}

pub async fn save_file(c: &Common, number: u64, path: Option<&Path>) -> Outcome {
    let (_lock, session, relay, _) = online(c).await?;
    let entry = session
        .state
        .history
        .iter()
        .find(|e| e.number == Some(number))
        .ok_or_else(|| format!("no received message [{number}] (qpc recv numbers them)"))?;
    let file = match (&entry.file, entry.deleted) {
        (Some(file), false) => file.clone(),
        (Some(_), true) => return Err(format!("message [{number}] was deleted by its sender").into()),
        (None, _) => return Err(format!("message [{number}] is not a file").into()),
    };
    let dest = download_to(&relay, &file, path).await?;
    relay.close().await;
    println!("saved {} ({}) to {}: SHA-256 checked", file.name, size(file.size), dest.display());
    Ok(())
}

/// Encrypts and uploads `path` for the other members of `group` and
/// announces it there; the file's name and size.
pub async fn upload_to_group(
    session: &mut Session,
    relay: &Relay,
    group: &str,
    path: &Path,
) -> Result<(String, u64), Box<dyn Error>> {
    let me = session.state.identity_key();
    let recipients: Vec<[u8; 32]> =
        session.state.member.members(group)?.into_iter().filter(|m| *m != me).collect();
    if recipients.is_empty() {
        return Err(format!("group {group} has no other members yet").into());
    }
    let seed = session.state.signing_key.to_bytes();
    let mut progress = Progress::new();
    let announcement = blob::upload(relay, &seed, path, &recipients, &mut |s| progress.step(s)).await;
    progress.finish();
    let announcement = announcement?;
    let (name, bytes) = (announcement.name.clone(), announcement.size);
    session.send_content(relay, group, Content::new(Body::File(announcement))).await?;
    Ok((name, bytes))
}

/// Downloads `file` to `path` (default: its name here; a directory: its
/// name in there); where it was saved.
pub async fn download_to(
    relay: &Relay,
    file: &FileAnnouncement,
    path: Option<&Path>,
) -> Result<PathBuf, Box<dyn Error>> {
    let name = blob::safe_name(&file.name);
    let dest: PathBuf = match path {
        None => PathBuf::from(&name),
        Some(p) if p.is_dir() => p.join(&name),
        Some(p) => p.to_path_buf(),
    };
    let mut progress = Progress::new();
    let saved = blob::download(relay, file, &dest, &mut |s| progress.step(s)).await;
    progress.finish();
    saved?;
    Ok(dest)
}

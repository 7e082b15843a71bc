//! Reading one's own queue: peek (or wait), process each message with the
//! MLS member, save the state, and only then ack, so a crash between the
//! two loses nothing (the messages are read again next time).

use qpc_proto::pb;

use crate::mls::Incoming;
use crate::relay::{Relay, RelayError};
use crate::state::{State, StateError};

/// What one queued message turned out to be.
#[derive(Debug)]
pub enum Event {
    Message { group: String, sender: [u8; 32], text: String },
    Joined { group: String },
    EpochAdvanced { group: String, epoch: u64, removed_self: bool },
    Proposal { group: String },
    Undecryptable { seq: u64, sender: [u8; 32], reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    State(#[from] StateError),
}

fn key32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().unwrap_or([0u8; 32])
}

fn process(state: &mut State, env: &pb::Envelope) -> Event {
    let sender = key32(&env.sender_key);
    let undecryptable = |reason: String| Event::Undecryptable { seq: env.seq, sender, reason };
    match state.member.process(&env.payload) {
        Ok(Incoming::Application { group, plaintext, sender }) => {
            Event::Message { group, sender, text: String::from_utf8_lossy(&plaintext).into_owned() }
        }
        Ok(Incoming::Welcome(welcome)) => match state.member.join(&welcome) {
            Ok(group) => Event::Joined { group },
            Err(e) => undecryptable(format!("cannot join from this Welcome: {e}")),
        },
        Ok(Incoming::Commit { group, epoch, removed_self }) => {
            Event::EpochAdvanced { group, epoch, removed_self }
        }
        Ok(Incoming::Proposal { group }) => Event::Proposal { group },
        Err(e) => undecryptable(e.to_string()),
    }
}

/// Processes what is queued (waiting up to `wait_ms` when the queue is
/// empty, if given), saves the state, then acks. Returns the events in
/// queue order.
pub async fn drain(relay: &Relay, state: &mut State, wait_ms: Option<u32>) -> Result<Vec<Event>, InboxError> {
    let envelopes = match wait_ms {
        Some(ms) => relay.fetch_wait(0, ms).await?,
        None => relay.peek(0).await?,
    };
    let Some(last) = envelopes.last().map(|e| e.seq) else { return Ok(Vec::new()) };
    let events = envelopes.iter().map(|env| process(state, env)).collect();
    state.save()?;
    relay.ack(last).await?;
    Ok(events)
}

//! Signal (800): typing and presence, pushed to the recipients' connected
//! devices and forgotten. No row, no file, no flash write: a signal for
//! someone who is away is simply lost. The payload is end-to-end encrypted
//! by the clients; rate limits apply as to every request.

use qpc_proto::{pb, Status};

use super::auth::Proven;
use crate::refusal::{identity_key, Refusal};
use crate::server::Relay;

/// Bound on a signal's payload: typing and presence are a few dozen bytes.
const MAX_SIGNAL: usize = 4096;
/// Bound on recipients of one signal (the devices of one group).
const MAX_SIGNAL_RECIPIENTS: usize = 256;

pub fn signal(relay: &Relay, me: Proven, req: pb::SignalRequest) -> Result<pb::SignalResponse, Refusal> {
    if req.payload.is_empty() {
        return Err(Refusal::bad_request("payload is empty"));
    }
    if req.payload.len() > MAX_SIGNAL {
        return Err(Refusal::new(Status::TooLarge, format!("a signal carries at most {MAX_SIGNAL} bytes")));
    }
    if req.recipient_keys.len() > MAX_SIGNAL_RECIPIENTS {
        return Err(Refusal::new(
            Status::TooLarge,
            format!("at most {MAX_SIGNAL_RECIPIENTS} recipients per signal"),
        ));
    }
    let recipients = req
        .recipient_keys
        .iter()
        .map(|k| identity_key("recipient_keys[]", k))
        .collect::<Result<Vec<_>, _>>()?;
    let delivered = recipients.iter().map(|r| relay.hub.signal(*r, me.key(), &req.payload)).sum::<usize>();
    Ok(pb::SignalResponse { delivered: u32::try_from(delivered).unwrap_or(u32::MAX) })
}

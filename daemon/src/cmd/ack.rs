//! Ack (204): the caller has saved what it read; delete its messages up to
//! and including `up_to_seq` (in one channel when given).
//!
//! Answered as soon as the storage thread has run the deletion, without
//! waiting for its commit to sync: an ack promises nothing durable to the
//! reader. If that commit is lost, the messages stay queued and come again,
//! and readers drop duplicates; the reader's next read already sees them
//! gone, since reads run after the batch that holds the ack.

use std::rc::Rc;

use qpc_proto::pb;

use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::Relay;
use crate::store::queues;

pub async fn ack(relay: &Rc<Relay>, me: Proven, req: pb::AckRequest) -> Result<pb::AckResponse, Refusal> {
    let removed = relay
        .store
        .write(move |tx| {
            queues::delete_up_to(tx, &me.key(), req.up_to_seq, req.channel_id.as_deref())
                .map_err(Refusal::from)
        })
        .await?;
    relay.stats_delivered(removed as usize);
    Ok(pb::AckResponse { removed })
}

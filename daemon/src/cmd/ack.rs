//! Ack (204): the caller has saved what it read; delete its messages up to
//! and including `up_to_seq` (in one channel when given).
//!
//! Answered as soon as the storage thread has run the deletion, without
//! waiting for its commit to sync: an ack promises nothing durable to the
//! reader. If that commit is lost, the messages stay queued and come again,
//! and readers drop duplicates; the reader's next read already sees them
//! gone, since it runs on the storage thread after the ack (inside the
//! same gathering batch, or after its commit).

use std::rc::Rc;

use qpc_proto::pb;

use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::Relay;
use crate::store::queues;

pub async fn ack(relay: &Rc<Relay>, me: Proven, req: pb::AckRequest) -> Result<pb::AckResponse, Refusal> {
    let whole_queue = req.channel_id.is_none();
    let up_to = req.up_to_seq;
    // Two statements that fail only with the disk: no savepoint needed.
    let mut staged = relay.store.write_staged_checks_first(move |tx| {
        let removed = queues::delete_up_to(tx, &me.key(), req.up_to_seq, req.channel_id.as_deref())?;
        Ok::<_, Refusal>(((), removed))
    });
    let Some(removed) = staged.accepted().await else {
        // It failed: the reason.
        return staged.durable().await.map(|()| pb::AckResponse { removed: 0 });
    };
    if whole_queue {
        relay.hub.acked(me.key(), up_to);
    }
    let watcher = Rc::clone(relay);
    tokio::task::spawn_local(async move {
        if staged.durable().await.is_err() {
            watcher.hub.forget(me.key());
        }
    });
    relay.stats_delivered(removed as usize);
    Ok(pb::AckResponse { removed })
}

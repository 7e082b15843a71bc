//! Peek (203), Fetch (201) and FetchWait (202): read the caller's own queue
//! in sequence order. Peek and FetchWait leave messages queued until Ack;
//! Fetch acks what it returns in the same transaction. A waiting FetchWait
//! may get a message before its commit is durable (see `hub`).

use std::rc::Rc;
use std::time::Duration;

use qpc_proto::pb;

use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::Relay;
use crate::store::queues::{self, Page};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Bytes per page, a budget of its own (not `--max-payload`): enough to
/// amortise a round trip, small enough that several recipients draining at
/// once stay within a router's memory (a single larger message still goes
/// out alone).
const PAGE_BYTES: usize = 256 * 1024;

fn limit(asked: u32) -> u32 {
    match asked {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

async fn read_page(relay: &Relay, me: Proven, channel: Option<Vec<u8>>, limit: u32) -> Result<Page, Refusal> {
    Ok(relay
        .store
        .read_accepted(move |c| queues::page(c, &me.key(), channel.as_deref(), limit, PAGE_BYTES))
        .await?)
}

pub async fn peek(relay: &Rc<Relay>, me: Proven, req: pb::PeekRequest) -> Result<pb::PeekResponse, Refusal> {
    let messages = read_page(relay, me, req.channel_id, limit(req.limit)).await?.messages;
    Ok(pb::PeekResponse { messages })
}

pub async fn fetch(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::FetchRequest,
) -> Result<pb::FetchResponse, Refusal> {
    let limit = limit(req.limit);
    let messages = relay
        .store
        .write(move |tx| {
            let channel = req.channel_id.as_deref();
            let messages = queues::page(tx, &me.key(), channel, limit, PAGE_BYTES)?.messages;
            if let Some(last) = messages.last() {
                queues::delete_up_to(tx, &me.key(), last.seq, channel)?;
            }
            Ok::<_, Refusal>(messages)
        })
        .await?;
    relay.stats_delivered(messages.len());
    Ok(pb::FetchResponse { messages })
}

pub async fn fetch_wait(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::FetchWaitRequest,
) -> Result<pb::FetchWaitResponse, Refusal> {
    let limit = limit(req.limit);
    let waiter = relay.hub.wait(me.key(), req.channel_id.clone(), limit as usize);
    let messages = wait_for_messages(relay, me, &waiter, req.channel_id, limit, req.timeout_ms).await;
    relay.hub.release(me.key(), &waiter);
    Ok(pb::FetchWaitResponse { messages: messages? })
}

async fn wait_for_messages(
    relay: &Relay,
    me: Proven,
    waiter: &crate::hub::Waiter,
    channel: Option<Vec<u8>>,
    limit: u32,
    timeout_ms: u32,
) -> Result<Vec<pb::Envelope>, Refusal> {
    let wait = Duration::from_millis(timeout_ms.min(relay.limits.max_wait_ms).into());
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = relay.shutdown.clone();
    // A queue known to be empty needs no read (it would wait for the
    // commit that is syncing); only for the whole queue, not one channel.
    let mut known = if channel.is_none() { relay.hub.known_empty(&me.key()) } else { None };
    loop {
        let page = match known.take() {
            Some(last_seq) => Page { messages: Vec::new(), last_seq },
            // The waiter is registered before this read, so a message
            // accepted meanwhile makes it read again rather than be missed.
            None => read_page(relay, me, channel.clone(), limit).await?,
        };
        if !page.messages.is_empty() {
            return Ok(page.messages);
        }
        let ended = *shutdown.borrow() || tokio::time::Instant::now() >= deadline;
        if waiter.arm(page.last_seq) {
            if channel.is_none() {
                // Nothing was accepted for this queue during the read.
                relay.hub.read_empty(me.key(), page.last_seq);
            }
            if ended {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = waiter.woken() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
            let early = waiter.take_early();
            if !early.is_empty() {
                return Ok(early);
            }
            waiter.disarm();
        } else if ended {
            return Ok(read_page(relay, me, channel, limit).await?.messages);
        }
    }
}

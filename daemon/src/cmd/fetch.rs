//! Peek (203), Fetch (201) and FetchWait (202): read the caller's own queue
//! in sequence order. Peek and FetchWait leave messages queued until Ack;
//! Fetch acks what it returns in the same transaction.

use std::rc::Rc;
use std::time::Duration;

use qpc_proto::pb;
use rusqlite::Connection;

use super::ack::delete_up_to;
use super::auth::Proven;
use crate::refusal::Refusal;
use crate::server::Relay;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Messages of `recipient` in seq order, at most `limit`, and no more bytes
/// than `budget` (but always at least one, so any stored message can be read).
fn page(
    c: &Connection,
    recipient: &[u8; 32],
    channel: Option<&[u8]>,
    limit: u32,
    budget: usize,
) -> rusqlite::Result<Vec<pb::Envelope>> {
    let limit = match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let mut stmt = c.prepare_cached(
        "SELECT seq, sender, channel_id, payload, enqueued_at_ms FROM messages
         WHERE recipient = ?1 AND (?2 IS NULL OR channel_id = ?2)
         ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map((&recipient[..], channel, limit), |r| {
        Ok(pb::Envelope {
            seq: r.get(0)?,
            sender_key: r.get(1)?,
            channel_id: r.get(2)?,
            payload: r.get(3)?,
            enqueued_at_ms: r.get(4)?,
        })
    })?;
    let mut out = Vec::new();
    let mut used = 0;
    for row in rows {
        let e = row?;
        used += e.payload.len() + e.sender_key.len() + e.channel_id.len() + 32;
        if !out.is_empty() && used > budget {
            break;
        }
        out.push(e);
    }
    Ok(out)
}

/// Bytes of payload per page: enough to amortise a round trip, small
/// enough that several recipients draining at once stay within a router's
/// memory (a single larger message still goes out alone).
const PAGE_BYTES: u32 = 256 * 1024;

fn budget(relay: &Relay) -> usize {
    relay.limits.max_payload.min(PAGE_BYTES) as usize
}

pub fn peek(relay: &Rc<Relay>, me: Proven, req: pb::PeekRequest) -> Result<pb::PeekResponse, Refusal> {
    let messages =
        relay.store.read(|c| page(c, &me.key(), req.channel_id.as_deref(), req.limit, budget(relay)))?;
    Ok(pb::PeekResponse { messages })
}

pub async fn fetch(
    relay: &Rc<Relay>,
    me: Proven,
    req: pb::FetchRequest,
) -> Result<pb::FetchResponse, Refusal> {
    let budget = budget(relay);
    let messages = relay
        .store
        .write(move |c| {
            let channel = req.channel_id.as_deref();
            let messages = page(c, &me.key(), channel, req.limit, budget)?;
            if let Some(last) = messages.last() {
                delete_up_to(c, &me.key(), last.seq, channel)?;
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
    let channel = req.channel_id.as_deref();
    let read = || relay.store.read(|c| page(c, &me.key(), channel, req.limit, budget(relay)));
    let waiter = relay.hub.waiter(me.key());
    let messages = wait_for_messages(relay, &waiter, read, req.timeout_ms).await;
    relay.hub.release(me.key(), waiter);
    let messages = messages?;
    Ok(pb::FetchWaitResponse { messages })
}

async fn wait_for_messages(
    relay: &Relay,
    waiter: &tokio::sync::Notify,
    read: impl Fn() -> Result<Vec<pb::Envelope>, crate::store::StoreError>,
    timeout_ms: u32,
) -> Result<Vec<pb::Envelope>, Refusal> {
    // Registered before the first read, so an enqueue between the read and
    // the wait still wakes us.
    let notified = waiter.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let messages = read()?;
    if !messages.is_empty() {
        return Ok(messages);
    }
    let wait = Duration::from_millis(timeout_ms.min(relay.limits.max_wait_ms).into());
    let mut shutdown = relay.shutdown.clone();
    tokio::select! {
        _ = &mut notified => {}
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    Ok(read()?)
}

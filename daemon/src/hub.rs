//! Who is waiting for which queue: FetchWait callers parked on a
//! [`Waiter`], and proven connections that get a push event when a message
//! is stored.
//!
//! A message reaches a waiting FetchWait as soon as the storage thread has
//! accepted it (before its commit is durable; the sender's answer still
//! waits for the commit). That is safe for acks only because a waiter takes
//! a message early only if its sequence number directly follows the last
//! one the waiter read (or took early): then an ack of
//! it covers nothing the reader has not seen. Anything else (a gap, a
//! message that arrived while the waiter's read was in flight) only wakes
//! the waiter to read again. Push events are sent once the message is
//! durable.
//!
//! The hub also remembers, per queue, the last sequence number accepted
//! and how far its owner has acked (without a channel). When the ack has
//! reached the last accepted message, the queue is empty and a FetchWait
//! parks at once instead of reading behind the commit that is syncing.
//! Sequence numbers of one queue are handed out in order, so a message
//! accepted meanwhile is either contiguous (handed over) or a gap (read).
//! If an ack's commit is lost, the queue is forgotten and its waiters read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use prost::Message;
use qpc_proto::{pb, Event, PushFrame};
use tokio::sync::Notify;

pub type IdentityKey = [u8; 32];

/// A message the storage thread accepted, for the queues in `to`.
pub struct Accepted {
    pub sender: IdentityKey,
    pub channel_id: Vec<u8>,
    pub payload: Vec<u8>,
    pub enqueued_at_ms: u64,
    /// Recipient and the sequence number the message got there; duplicates
    /// (already stored under the same client message id) are left out.
    pub to: Vec<(IdentityKey, u64)>,
    /// Peer relays (fingerprints) whose outgoing queue got it.
    pub forwarded: Vec<String>,
}

/// One waiting FetchWait.
pub struct Waiter {
    notify: Notify,
    state: RefCell<WaitState>,
}

struct WaitState {
    channel: Option<Vec<u8>>,
    /// Messages the waiter may take at most.
    limit: usize,
    /// The last sequence number the waiter knows of: `None` while its read
    /// is in flight (anything accepted then makes the read stale).
    after: Option<u64>,
    stale: bool,
    early: Vec<pb::Envelope>,
}

impl Waiter {
    /// Parks the waiter after a read that ended at `last_seq`; false if the
    /// read is already stale (read again).
    pub fn arm(&self, last_seq: u64) -> bool {
        let mut s = self.state.borrow_mut();
        if std::mem::take(&mut s.stale) {
            return false;
        }
        s.after = Some(last_seq);
        true
    }

    /// Back to "read in flight".
    pub fn disarm(&self) {
        self.state.borrow_mut().after = None;
    }

    pub async fn woken(&self) {
        self.notify.notified().await
    }

    /// What was handed over early, if anything.
    pub fn take_early(&self) -> Vec<pb::Envelope> {
        std::mem::take(&mut self.state.borrow_mut().early)
    }

    fn offer(&self, seq: u64, m: &Accepted) {
        let mut s = self.state.borrow_mut();
        let ours = s.channel.as_ref().is_none_or(|c| *c == m.channel_id);
        match s.after {
            Some(after) if seq == after + 1 => {
                s.after = Some(seq);
                if !ours {
                    // Not for this reader, and its acks cannot reach it.
                    return;
                }
                if s.early.len() < s.limit {
                    s.early.push(pb::Envelope {
                        seq,
                        sender_key: if m.sender == crate::store::queues::SEALED {
                            Vec::new()
                        } else {
                            m.sender.to_vec()
                        },
                        channel_id: m.channel_id.clone(),
                        payload: m.payload.clone(),
                        enqueued_at_ms: m.enqueued_at_ms,
                    });
                }
            }
            // Already holding some: those go out, this one is read later.
            _ if !s.early.is_empty() => {}
            _ => s.stale = true,
        }
        drop(s);
        self.notify.notify_one();
    }
}

/// What the hub knows of one queue (see the module doc).
#[derive(Clone, Copy, Default)]
struct Known {
    last_accepted: u64,
    acked: u64,
}

#[derive(Default)]
pub struct Hub {
    waiters: RefCell<HashMap<IdentityKey, Vec<Rc<Waiter>>>>,
    known: RefCell<HashMap<IdentityKey, Known>>,
    listeners: RefCell<HashMap<IdentityKey, Vec<quinn::Connection>>>,
}

impl Hub {
    /// Registers a FetchWait of `recipient` (before its first read).
    pub fn wait(&self, recipient: IdentityKey, channel: Option<Vec<u8>>, limit: usize) -> Rc<Waiter> {
        let waiter = Rc::new(Waiter {
            notify: Notify::new(),
            state: RefCell::new(WaitState { channel, limit, after: None, stale: false, early: Vec::new() }),
        });
        self.waiters.borrow_mut().entry(recipient).or_default().push(Rc::clone(&waiter));
        waiter
    }

    pub fn release(&self, recipient: IdentityKey, waiter: &Rc<Waiter>) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(list) = waiters.get_mut(&recipient) {
            list.retain(|w| !Rc::ptr_eq(w, waiter));
            if list.is_empty() {
                waiters.remove(&recipient);
            }
        }
    }

    /// Forgets what it knows of `recipient`'s queue once nobody waits on it
    /// and none of its connections is logged in (bounds the memory).
    pub fn drop_known(&self, recipient: &IdentityKey) {
        if !self.waiters.borrow().contains_key(recipient) && !self.listeners.borrow().contains_key(recipient)
        {
            self.known.borrow_mut().remove(recipient);
        }
    }

    pub fn subscribe(&self, identity: IdentityKey, conn: &quinn::Connection) {
        let mut listeners = self.listeners.borrow_mut();
        let list = listeners.entry(identity).or_default();
        if !list.iter().any(|c| c.stable_id() == conn.stable_id()) {
            list.push(conn.clone());
        }
    }

    pub fn unsubscribe(&self, identity: IdentityKey, conn: &quinn::Connection) {
        let mut listeners = self.listeners.borrow_mut();
        if let Some(list) = listeners.get_mut(&identity) {
            list.retain(|c| c.stable_id() != conn.stable_id());
            if list.is_empty() {
                listeners.remove(&identity);
            }
        }
    }

    /// Closes the connections that speak for `identity` (its account is gone).
    pub fn disconnect(&self, identity: IdentityKey, reason: &str) {
        let conns = self.listeners.borrow_mut().remove(&identity).unwrap_or_default();
        for conn in conns {
            conn.close(0u32.into(), reason.as_bytes());
        }
    }

    /// The last sequence number of `recipient`'s queue if the queue is
    /// known to be empty now (acked up to its last accepted message).
    pub fn known_empty(&self, recipient: &IdentityKey) -> Option<u64> {
        let k = self.known.borrow().get(recipient).copied()?;
        (k.acked >= k.last_accepted).then_some(k.last_accepted)
    }

    /// A read found `recipient`'s queue empty up to `last_seq`.
    pub fn read_empty(&self, recipient: IdentityKey, last_seq: u64) {
        let mut known = self.known.borrow_mut();
        let k = known.entry(recipient).or_default();
        k.last_accepted = k.last_accepted.max(last_seq);
        k.acked = k.acked.max(last_seq);
    }

    /// The owner's ack of everything up to `seq` (all channels) has run.
    pub fn acked(&self, recipient: IdentityKey, seq: u64) {
        if let Some(k) = self.known.borrow_mut().get_mut(&recipient) {
            k.acked = k.acked.max(seq);
        }
    }

    /// An ack of `recipient` was lost with its commit: its messages are back.
    pub fn forget(&self, recipient: IdentityKey) {
        self.known.borrow_mut().remove(&recipient);
        for w in self.waiters.borrow().get(&recipient).into_iter().flatten() {
            w.state.borrow_mut().stale = true;
            w.notify.notify_one();
        }
    }

    /// The storage thread ran the write that stores `m` (not yet durable):
    /// hand it to waiting readers where that is safe.
    pub fn message_accepted(&self, m: &Accepted) {
        let mut known = self.known.borrow_mut();
        for (recipient, seq) in &m.to {
            if let Some(k) = known.get_mut(recipient) {
                k.last_accepted = k.last_accepted.max(*seq);
            }
        }
        drop(known);
        let waiters = self.waiters.borrow();
        for (recipient, seq) in &m.to {
            for w in waiters.get(recipient).into_iter().flatten() {
                w.offer(*seq, m);
            }
        }
    }

    /// A message for `recipient` is durable: wake its FetchWait callers
    /// that hold nothing yet (they read it now) and push an event to its
    /// connections.
    pub fn message_stored(&self, recipient: IdentityKey, seq: u64, channel_id: &[u8]) {
        for w in self.waiters.borrow().get(&recipient).into_iter().flatten() {
            if w.state.borrow().early.is_empty() {
                w.notify.notify_one();
            }
        }
        let event = pb::NewMessageEvent { seq, channel_id: channel_id.to_vec() }.encode_to_vec();
        self.push(recipient, Event::NewMessage, event);
    }

    /// Pushes an ephemeral signal to `recipient`'s connections; returns how
    /// many there were. Nothing is stored, nothing waits for one who is away.
    pub fn signal(&self, recipient: IdentityKey, sender: IdentityKey, payload: &[u8]) -> usize {
        let event =
            pb::SignalEvent { sender_key: sender.to_vec(), payload: payload.to_vec() }.encode_to_vec();
        self.push(recipient, Event::Signal, event)
    }

    fn push(&self, recipient: IdentityKey, event: Event, payload: Vec<u8>) -> usize {
        let Some(conns) = self.listeners.borrow().get(&recipient).cloned() else { return 0 };
        let frame = PushFrame::new(event.id(), payload).encode();
        for conn in &conns {
            let (conn, frame) = (conn.clone(), frame.clone());
            tokio::task::spawn_local(async move {
                // A push is a hint or a signal; a message itself waits in the queue.
                if let Ok(mut send) = conn.open_uni().await {
                    let _ = send.write_all(&frame).await;
                    let _ = send.finish();
                }
            });
        }
        conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(to: &[(IdentityKey, u64)], channel: &[u8]) -> Accepted {
        Accepted {
            forwarded: Vec::new(),
            sender: [9; 32],
            channel_id: channel.to_vec(),
            payload: b"m".to_vec(),
            enqueued_at_ms: 1,
            to: to.to_vec(),
        }
    }

    #[test]
    fn only_the_next_sequence_number_is_handed_over_early() {
        let hub = Hub::default();
        let me = [1u8; 32];
        let w = hub.wait(me, None, 10);
        // Accepted while the read is in flight: read again.
        hub.message_accepted(&accepted(&[(me, 5)], b""));
        assert!(!w.arm(4));
        assert!(w.arm(5));
        // A gap: read again, take nothing.
        hub.message_accepted(&accepted(&[(me, 7)], b""));
        assert!(w.take_early().is_empty());
        assert!(!w.arm(5));
        assert!(w.arm(7));
        hub.message_accepted(&accepted(&[(me, 8)], b""));
        hub.message_accepted(&accepted(&[([2; 32], 9)], b""));
        hub.message_accepted(&accepted(&[(me, 9)], b""));
        hub.message_accepted(&accepted(&[(me, 11)], b""));
        assert_eq!(w.take_early().iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9]);
        hub.release(me, &w);
        assert!(hub.waiters.borrow().is_empty());
    }

    #[test]
    fn a_queue_is_known_empty_once_acked_up_to_its_last_message() {
        let hub = Hub::default();
        let me = [1u8; 32];
        assert_eq!(hub.known_empty(&me), None, "nothing known before a read");
        hub.read_empty(me, 4);
        assert_eq!(hub.known_empty(&me), Some(4));
        hub.message_accepted(&accepted(&[(me, 5), (me, 6)], b""));
        assert_eq!(hub.known_empty(&me), None);
        hub.acked(me, 5);
        assert_eq!(hub.known_empty(&me), None);
        hub.acked(me, 6);
        assert_eq!(hub.known_empty(&me), Some(6));
        let w = hub.wait(me, None, 10);
        assert!(w.arm(6));
        hub.forget(me);
        assert_eq!(hub.known_empty(&me), None);
        assert!(!w.arm(6), "a waiter reads again after a lost ack");
    }

    #[test]
    fn a_channel_waiter_skips_other_channels_in_order() {
        let hub = Hub::default();
        let me = [1u8; 32];
        let w = hub.wait(me, Some(b"c".to_vec()), 1);
        assert!(w.arm(0));
        hub.message_accepted(&accepted(&[(me, 1)], b"other"));
        hub.message_accepted(&accepted(&[(me, 2)], b"c"));
        hub.message_accepted(&accepted(&[(me, 3)], b"c"));
        assert_eq!(w.take_early().iter().map(|e| e.seq).collect::<Vec<_>>(), [2], "limit 1");
    }
}

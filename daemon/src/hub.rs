//! Who is waiting for which queue: FetchWait callers parked on a `Notify`,
//! and proven connections that get a push event when a message arrives
//! (told only after it is durable) or a signal is sent to them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use prost::Message;
use qpc_proto::{pb, Event, PushFrame};
use tokio::sync::Notify;

pub type IdentityKey = [u8; 32];

#[derive(Default)]
pub struct Hub {
    waiters: RefCell<HashMap<IdentityKey, Rc<Notify>>>,
    listeners: RefCell<HashMap<IdentityKey, Vec<quinn::Connection>>>,
}

impl Hub {
    /// The notifier of `recipient`'s queue; hold it while waiting.
    pub fn waiter(&self, recipient: IdentityKey) -> Rc<Notify> {
        Rc::clone(self.waiters.borrow_mut().entry(recipient).or_default())
    }

    /// Drops the notifier of `recipient` once nobody else holds it.
    pub fn release(&self, recipient: IdentityKey, waiter: Rc<Notify>) {
        drop(waiter);
        let mut waiters = self.waiters.borrow_mut();
        if waiters.get(&recipient).is_some_and(|n| Rc::strong_count(n) == 1) {
            waiters.remove(&recipient);
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

    /// A message for `recipient` is durable: wake its FetchWait callers and
    /// push an event to its connections.
    pub fn message_stored(&self, recipient: IdentityKey, seq: u64, channel_id: &[u8]) {
        if let Some(n) = self.waiters.borrow().get(&recipient) {
            n.notify_waiters();
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

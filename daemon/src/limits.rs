//! Rate limits that live in memory: requests per second per connection and
//! per source address (token buckets), and failed-login backoff per account
//! and per address. Quotas on stored data are enforced in SQL by the
//! commands that store (enqueue, key_package).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Table sizes past which idle entries are dropped.
const MAX_TRACKED: usize = 4096;
/// Longest login backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// A token bucket holding up to one second of requests.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    /// Whether the refusal of the current burst was already logged.
    pub warned: bool,
}

impl Bucket {
    pub fn new(rate: u32) -> Bucket {
        Bucket { tokens: f64::from(rate), last: Instant::now(), warned: false }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(rate);
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.warned = false;
            true
        } else {
            false
        }
    }

    fn idle(&self, rate: u32) -> bool {
        self.last.elapsed().as_secs_f64() * f64::from(rate) + self.tokens >= f64::from(rate)
    }
}

/// One bucket per source address.
#[derive(Default)]
pub struct AddressBuckets {
    buckets: RefCell<HashMap<IpAddr, Bucket>>,
}

impl AddressBuckets {
    /// Whether `addr` may make another request; `Some(first)` when refused,
    /// with `first` true for the first refusal of a burst (worth a log line).
    pub fn check(&self, addr: IpAddr, rate: u32) -> Option<bool> {
        let mut buckets = self.buckets.borrow_mut();
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| !b.idle(rate));
        }
        let bucket = buckets.entry(addr).or_insert_with(|| Bucket::new(rate));
        if bucket.allow(rate) {
            return None;
        }
        Some(!std::mem::replace(&mut bucket.warned, true))
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
}

/// Failed logins per account and per address; past the allowance each new
/// failure doubles the wait.
#[derive(Default)]
pub struct LoginGuard {
    accounts: RefCell<HashMap<String, Failures>>,
    addresses: RefCell<HashMap<IpAddr, Failures>>,
}

fn remaining<K: std::hash::Hash + Eq>(map: &RefCell<HashMap<K, Failures>>, key: &K) -> Option<Duration> {
    let f = *map.borrow().get(key)?;
    f.until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}

fn record<K: std::hash::Hash + Eq>(map: &RefCell<HashMap<K, Failures>>, key: K, allowance: u32) {
    let mut map = map.borrow_mut();
    if map.len() >= MAX_TRACKED {
        let now = Instant::now();
        map.retain(|_, f| f.until > now);
    }
    let f = map.entry(key).or_insert(Failures { count: 0, until: Instant::now() });
    f.count += 1;
    if f.count >= allowance {
        let doublings = (f.count - allowance).min(10);
        f.until = Instant::now() + (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_BACKOFF);
    }
}

impl LoginGuard {
    /// How long `username` or `addr` must still wait, if at all.
    pub fn wait(&self, username: &str, addr: IpAddr) -> Option<(Duration, &'static str)> {
        remaining(&self.accounts, &username.to_string())
            .map(|d| (d, "this account"))
            .or_else(|| remaining(&self.addresses, &addr).map(|d| (d, "your address")))
    }

    pub fn failed(&self, username: &str, addr: IpAddr, allowance: u32) {
        record(&self.accounts, username.to_string(), allowance);
        record(&self.addresses, addr, allowance);
    }

    pub fn succeeded(&self, username: &str) {
        self.accounts.borrow_mut().remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_its_rate_then_refuses() {
        let mut b = Bucket::new(3);
        assert!(b.allow(3) && b.allow(3) && b.allow(3));
        assert!(!b.allow(3));
    }

    #[test]
    fn login_backoff_starts_at_the_allowance() {
        let guard = LoginGuard::default();
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        guard.failed("bob", addr, 2);
        assert!(guard.wait("bob", addr).is_none());
        guard.failed("bob", addr, 2);
        let (wait, who) = guard.wait("bob", addr).unwrap();
        assert!(wait <= Duration::from_secs(1) && who == "this account");
        guard.succeeded("bob");
        // The address still remembers.
        assert_eq!(guard.wait("bob", addr).map(|(_, who)| who), Some("your address"));
    }
}

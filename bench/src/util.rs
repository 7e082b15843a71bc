//! Small pieces shared by both load drivers: temporary directories, a
//! process-wide clock stamped into payloads, payload bytes, and bounded
//! concurrency on the local task set.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::sync::Semaphore;

use crate::Result;

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "qpc-bench-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Nanoseconds since the first call in this process; senders stamp it into
/// the first 8 bytes of a payload and receivers subtract it from their own
/// reading, so latency needs no clock shared across machines.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A payload of `size` bytes (at least 8): the send stamp, then random
/// bytes that stand for ciphertext (nothing compresses or deduplicates them).
pub fn payload(size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size.max(8)];
    rand::thread_rng().fill_bytes(&mut p[8..]);
    stamp(&mut p);
    p
}

/// Writes the current time into the payload's first 8 bytes.
pub fn stamp(p: &mut [u8]) {
    p[..8].copy_from_slice(&now_ns().to_be_bytes());
}

/// The latency of a payload stamped by `stamp`, in nanoseconds.
pub fn age_ns(p: &[u8]) -> Option<u64> {
    let sent = u64::from_be_bytes(p.get(..8)?.try_into().ok()?);
    Some(now_ns().saturating_sub(sent))
}

/// Runs `f(i)` for every i in 0..n on the local task set, at most `limit`
/// at a time, and returns the results in order (the first error wins).
pub async fn bounded<T, Fut>(n: usize, limit: usize, f: impl Fn(usize) -> Fut) -> Result<Vec<T>>
where
    T: 'static,
    Fut: Future<Output = Result<T>> + 'static,
{
    let gate = Arc::new(Semaphore::new(limit.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let fut = f(i);
        tasks.push(tokio::task::spawn_local(async move {
            let out = fut.await;
            drop(permit);
            out
        }));
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.map_err(|e| format!("task failed: {e}"))??);
    }
    Ok(out)
}

/// Awaits `fut` for at most `limit`, naming `what` when it takes longer.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{what}: no progress within {} s", limit.as_secs()).into()),
    }
}

/// Sorted-sample percentile (nearest rank), `q` in 0..=1.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn stamps_round_trip() {
        let p = payload(256);
        assert_eq!(p.len(), 256);
        assert!(age_ns(&p).unwrap() < 1_000_000_000);
    }
}

//! Files through the relay (issue 13): upload and download of one large
//! file with the qpc client library (encrypted, 256 KiB chunks, one chunk
//! per RPC), and the relay's peak RSS during it. No Mosquitto counterpart:
//! the anchor is a plain TCP copy of the same bytes on loopback, the
//! ceiling any copy on this machine reaches (no encryption, no disk), and
//! the client's ChaCha20-Poly1305 pass over the file alone.

use std::path::Path;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::qpc_load::{new_key, online};
use crate::servers::Server;
use crate::util::TempDir;
use crate::Result;

/// What one transfer measured.
#[derive(Debug, Clone, Copy)]
pub struct FileFigures {
    pub mib: u64,
    pub upload_mib_s: f64,
    pub download_mib_s: f64,
    /// The relay's resident memory before the transfer, and its peak during it.
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub tcp_copy_mib_s: f64,
}

fn mib_s(mib: u64, since: Instant) -> f64 {
    mib as f64 / since.elapsed().as_secs_f64()
}

fn random_file(path: &Path, mib: u64) -> Result<()> {
    use rand::RngCore;
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rand::rngs::OsRng.fill_bytes(&mut block);
        f.write_all(&block)?;
    }
    Ok(f.sync_all()?)
}

/// A plain TCP copy of `mib` MiB over loopback, in MiB/s.
async fn tcp_copy(mib: u64) -> Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sink = tokio::task::spawn_local(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0u64;
        loop {
            let got = s.read(&mut buf).await?;
            if got == 0 {
                return Ok::<u64, std::io::Error>(n);
            }
            n += got as u64;
        }
    });
    let started = Instant::now();
    let mut out = tokio::net::TcpStream::connect(addr).await?;
    let block = vec![0x5au8; 256 * 1024];
    for _ in 0..mib * 4 {
        out.write_all(&block).await?;
    }
    out.shutdown().await?;
    drop(out);
    let received = sink.await.map_err(|e| e.to_string())??;
    if received != mib << 20 {
        return Err(format!("TCP copy: {received} bytes arrived of {}", mib << 20).into());
    }
    Ok(mib_s(mib, started))
}

/// Uploads and downloads one file of `mib` MiB through `server`.
pub async fn transfer(server: &Server, mib: u64) -> Result<FileFigures> {
    let dir = TempDir::new("files")?;
    let relay = online(server, new_key()).await?;
    let seed: [u8; 32] = rand::random();
    // Warm up every path once (allocator, statement cache, QUIC windows).
    let warm = dir.path().join("warm.bin");
    random_file(&warm, 2)?;
    let ann = qpc::blob::upload(&relay, &seed, &warm, &[], &mut |_| {}).await?;
    qpc::blob::download(&relay, &ann, &dir.path().join("warm.out"), &mut |_| {}).await?;
    let pid = server.pid();
    let idle_rss_kib = crate::procfs::status_kib(pid, "VmRSS").unwrap_or(0);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(|e| format!("cannot reset the relay's peak RSS (/proc/{pid}/clear_refs): {e}"))?;

    let file = dir.path().join("file.bin");
    random_file(&file, mib)?;
    let started = Instant::now();
    let ann = qpc::blob::upload(&relay, &seed, &file, &[], &mut |_| {}).await?;
    let upload_mib_s = mib_s(mib, started);
    let out = dir.path().join("file.out");
    let started = Instant::now();
    qpc::blob::download(&relay, &ann, &out, &mut |_| {}).await?;
    let download_mib_s = mib_s(mib, started);
    let peak_rss_kib = crate::procfs::status_kib(pid, "VmHWM").unwrap_or(0);
    relay.close().await;
    Ok(FileFigures {
        mib,
        upload_mib_s,
        download_mib_s,
        idle_rss_kib,
        peak_rss_kib,
        tcp_copy_mib_s: tcp_copy(mib).await?,
    })
}

/// The lines `make bench` prints.
pub fn report(f: &FileFigures) -> String {
    format!(
        "files: {mib} MiB file, encrypted, 256 KiB chunks, one RPC each\n\
         file_upload_mib_s {:.1}\n\
         file_download_mib_s {:.1}\n\
         file_relay_rss_kib idle {} peak {} (+{} KiB during the upload and download)\n\
         file_anchor_tcp_copy_mib_s {:.1} (plain TCP on loopback: no encryption, no disk)\n",
        f.upload_mib_s,
        f.download_mib_s,
        f.idle_rss_kib,
        f.peak_rss_kib,
        f.peak_rss_kib.saturating_sub(f.idle_rss_kib),
        f.tcp_copy_mib_s,
        mib = f.mib,
    )
}

//! Federation peers (the relays this relay's owner chose to deliver to and
//! take from, by certificate fingerprint) and remote identities (which peer
//! a key of another relay's person lives on, learned from that peer).
//!
//! Invariant: a key of a local identity is never recorded as remote (see
//! [`learn`]), so a peer cannot draw a local person's messages away.

use rusqlite::{Connection, OptionalExtension};

/// One peer as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// SHA-256 of its certificate, lowercase hex: what both ends pin.
    pub fingerprint: String,
    pub host: String,
    pub port: u16,
    /// `admin` (qpc-server peer add) or `config` (--peer / UCI list peer).
    pub source: String,
}

impl Peer {
    /// `host:port`, brackets around an IPv6 address.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub fn list(c: &Connection) -> rusqlite::Result<Vec<Peer>> {
    let mut stmt =
        c.prepare_cached("SELECT fingerprint, host, port, source FROM peers ORDER BY added_at_ms, host")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Peer { fingerprint: r.get(0)?, host: r.get(1)?, port: r.get(2)?, source: r.get(3)? })
        })?
        .collect();
    rows
}

/// Adds `peer`, or changes its address; true when it is new.
pub fn upsert(c: &Connection, peer: &Peer, now_ms: i64) -> rusqlite::Result<bool> {
    let known: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM peers WHERE fingerprint = ?1)")?
        .query_row([&peer.fingerprint], |r| r.get(0))?;
    c.prepare_cached(
        "INSERT INTO peers (fingerprint, host, port, source, added_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (fingerprint) DO UPDATE SET host = excluded.host, port = excluded.port,
         source = excluded.source",
    )?
    .execute((&peer.fingerprint, &peer.host, peer.port, &peer.source, now_ms))?;
    Ok(!known)
}

/// Removes the peer and what was learnt from it; its queued messages are the
/// caller's to tell about (see `outbound::drop_peer`). True when it existed.
pub fn remove(c: &Connection, fingerprint: &str) -> rusqlite::Result<bool> {
    let n = c.prepare_cached("DELETE FROM peers WHERE fingerprint = ?1")?.execute([fingerprint])?;
    c.prepare_cached("DELETE FROM remote_identities WHERE peer = ?1")?.execute([fingerprint])?;
    c.prepare_cached("DELETE FROM remote_fences WHERE peer = ?1")?.execute([fingerprint])?;
    Ok(n > 0)
}

/// Peers from the configuration that it no longer lists.
pub fn configured_not_in(c: &Connection, wanted: &[String]) -> rusqlite::Result<Vec<String>> {
    Ok(list(c)?
        .into_iter()
        .filter(|p| p.source == "config" && !wanted.contains(&p.fingerprint))
        .map(|p| p.fingerprint)
        .collect())
}

/// Records that `key` is `username` on peer `fingerprint`. A key of a local
/// identity is left alone (false); a key first learnt from another peer
/// moves only when `overwrite` (a local person resolved it there on purpose).
pub fn learn(
    c: &Connection,
    key: &[u8; 32],
    fingerprint: &str,
    username: &str,
    overwrite: bool,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    if super::identities::exists(c, key)? {
        return Ok(false);
    }
    let sql = if overwrite {
        "INSERT INTO remote_identities (identity_key, peer, username, learned_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (identity_key) DO UPDATE SET peer = excluded.peer, username = excluded.username,
         learned_at_ms = excluded.learned_at_ms"
    } else {
        "INSERT INTO remote_identities (identity_key, peer, username, learned_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (identity_key) DO UPDATE SET username = excluded.username
         WHERE remote_identities.peer = excluded.peer AND excluded.username <> ''"
    };
    c.prepare_cached(sql)?.execute((&key[..], fingerprint, username, now_ms))?;
    Ok(true)
}

/// Where `key` lives when it is remote: the peer's fingerprint and the
/// person's username there.
pub fn remote_of(c: &Connection, key: &[u8; 32]) -> rusqlite::Result<Option<(String, String)>> {
    c.prepare_cached("SELECT peer, username FROM remote_identities WHERE identity_key = ?1")?
        .query_row([&key[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Records that the fence of group `route` lives on peer `fingerprint`,
/// unless this relay holds that fence itself.
pub fn learn_fence(c: &Connection, route: &[u8; 32], fingerprint: &str, now_ms: i64) -> rusqlite::Result<()> {
    let local: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM group_fences WHERE route = ?1)")?
        .query_row([&route[..]], |r| r.get(0))?;
    if !local {
        c.prepare_cached(
            "INSERT INTO remote_fences (route, peer, learned_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (route) DO UPDATE SET peer = excluded.peer, learned_at_ms = excluded.learned_at_ms",
        )?
        .execute((&route[..], fingerprint, now_ms))?;
    }
    Ok(())
}

/// The peer that holds the fence of group `route`, if it is not here.
pub fn fence_of(c: &Connection, route: &[u8; 32]) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT peer FROM remote_fences WHERE route = ?1")?
        .query_row([&route[..]], |r| r.get(0))
        .optional()
}

/// The keys of `username` on peer `fingerprint`, as last learnt.
pub fn keys_at(c: &Connection, fingerprint: &str, username: &str) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = c.prepare_cached(
        "SELECT identity_key FROM remote_identities WHERE peer = ?1 AND username = ?2 ORDER BY learned_at_ms",
    )?;
    let keys = stmt.query_map((fingerprint, username), |r| r.get(0))?.collect();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(fp: &str, source: &str) -> Peer {
        Peer { fingerprint: fp.into(), host: "::1".into(), port: 7001, source: source.into() }
    }

    #[test]
    fn peers_are_added_changed_and_removed() {
        let (c, _) = super::super::schema::memory();
        assert!(upsert(&c, &peer("aa", "admin"), 1).unwrap());
        assert!(!upsert(&c, &Peer { port: 7002, ..peer("aa", "admin") }, 2).unwrap());
        assert!(upsert(&c, &peer("bb", "config"), 3).unwrap());
        let all = list(&c).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].address(), "[::1]:7002");
        assert_eq!(configured_not_in(&c, &[]).unwrap(), vec!["bb".to_string()]);
        assert!(configured_not_in(&c, &["bb".into()]).unwrap().is_empty());
        learn(&c, &[5; 32], "aa", "bob", false, 1).unwrap();
        assert_eq!(keys_at(&c, "aa", "bob").unwrap(), vec![vec![5u8; 32]]);
        learn_fence(&c, &[9; 32], "aa", 1).unwrap();
        assert_eq!(fence_of(&c, &[9; 32]).unwrap(), Some("aa".into()));
        assert!(remove(&c, "aa").unwrap());
        assert!(!remove(&c, "aa").unwrap());
        assert_eq!(remote_of(&c, &[5; 32]).unwrap(), None, "what the peer told goes with it");
        assert_eq!(fence_of(&c, &[9; 32]).unwrap(), None);
    }

    #[test]
    fn a_local_key_is_never_remote_and_a_peer_cannot_take_anothers_key() {
        let (c, _) = super::super::schema::memory();
        super::super::identities::insert(&c, &[1; 32], 1).unwrap();
        assert!(!learn(&c, &[1; 32], "aa", "mallory", true, 1).unwrap());
        assert_eq!(remote_of(&c, &[1; 32]).unwrap(), None);
        learn(&c, &[2; 32], "aa", "bob", false, 1).unwrap();
        learn(&c, &[2; 32], "bb", "bob", false, 2).unwrap();
        assert_eq!(remote_of(&c, &[2; 32]).unwrap(), Some(("aa".into(), "bob".into())));
        learn(&c, &[2; 32], "bb", "bob", true, 3).unwrap();
        assert_eq!(remote_of(&c, &[2; 32]).unwrap(), Some(("bb".into(), "bob".into())));
    }
}

//! The two names federation reads from people: a peer URL,
//! `qpc://host:port#fingerprint` (what an owner adds), and a remote
//! address, `bob@host:port` or `bob@host` (what a client resolves).

use crate::config::defaults::PORT;

/// A parsed peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl {
    pub host: String,
    pub port: u16,
    pub fingerprint: String,
}

/// A parsed remote address; `port` is `None` for `bob@host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAddress {
    pub username: String,
    pub host: String,
    pub port: Option<u16>,
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("an IPv6 address needs its closing ']'")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("expected ':PORT' after ']'")?)),
        }
    } else if s.matches(':').count() > 1 {
        return Err("an IPv6 address goes in brackets: [::1]:7000".into());
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    let host_ok = host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !host_ok || host.len() > 253 {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port (1-65535)")),
        }),
    };
    Ok((host.to_ascii_lowercase(), port))
}

impl std::str::FromStr for PeerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerUrl, String> {
        let why = |reason: String| format!("peer URL {s:?}: {reason} (expected qpc://HOST:PORT#FINGERPRINT)");
        let rest = s.strip_prefix("qpc://").ok_or_else(|| why("it must start with qpc://".into()))?;
        let (place, fingerprint) = rest.split_once('#').ok_or_else(|| {
            why("the certificate fingerprint is missing: add #FINGERPRINT, the SHA-256 that \
                 `qpc-server status` shows on the peer"
                .into())
        })?;
        let fingerprint = fingerprint.to_ascii_lowercase();
        if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(why(format!(
                "the fingerprint must be 64 hex digits (a SHA-256), got {} characters",
                fingerprint.len()
            )));
        }
        let (host, port) = host_port(place.trim_end_matches('/')).map_err(why)?;
        Ok(PeerUrl { host, port: port.unwrap_or(PORT), fingerprint })
    }
}

impl std::str::FromStr for RemoteAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<RemoteAddress, String> {
        let why =
            |reason: String| format!("remote address {s:?}: {reason} (expected NAME@HOST or NAME@HOST:PORT)");
        let (username, place) = s.split_once('@').ok_or_else(|| why("there is no '@'".into()))?;
        crate::cmd::accounts::check_username(username).map_err(|r| why(r.message))?;
        let (host, port) = host_port(place).map_err(why)?;
        Ok(RemoteAddress { username: username.to_string(), host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn peer_urls() {
        let u: PeerUrl = format!("qpc://friends.example.net:7001#{}", FP.to_uppercase()).parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.fingerprint.as_str()), ("friends.example.net", 7001, FP));
        let u: PeerUrl = format!("qpc://[::1]#{FP}").parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        let e = "qpc://host:7000".parse::<PeerUrl>().unwrap_err();
        assert!(e.contains("fingerprint is missing"), "{e}");
        let e = "qpc://host:7000#abc".parse::<PeerUrl>().unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        assert!(format!("https://host#{FP}").parse::<PeerUrl>().unwrap_err().contains("qpc://"));
        assert!(format!("qpc://host:0#{FP}").parse::<PeerUrl>().unwrap_err().contains("not a port"));
        assert!(format!("qpc://::1:7000#{FP}").parse::<PeerUrl>().unwrap_err().contains("brackets"));
        assert!(format!("qpc://#{FP}").parse::<PeerUrl>().unwrap_err().contains("host is missing"));
    }

    #[test]
    fn remote_addresses() {
        let a: RemoteAddress = "bob@Friends.example.net".parse().unwrap();
        assert_eq!((a.username.as_str(), a.host.as_str(), a.port), ("bob", "friends.example.net", None));
        let a: RemoteAddress = "bob@127.0.0.1:7001".parse().unwrap();
        assert_eq!(a.port, Some(7001));
        assert!("bob".parse::<RemoteAddress>().unwrap_err().contains("no '@'"));
        assert!("Bob@x".parse::<RemoteAddress>().unwrap_err().contains("invalid username"));
        assert!("bob@".parse::<RemoteAddress>().unwrap_err().contains("host is missing"));
        assert!("bob@a b".parse::<RemoteAddress>().unwrap_err().contains("not a host"));
        assert!("bob@host:99999".parse::<RemoteAddress>().unwrap_err().contains("not a port"));
    }
}

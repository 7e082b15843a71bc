//! Key transparency, sans-IO: the log entry format, the Merkle tree over the
//! log (RFC 6962 hashing; proofs and their verification as in RFC 9162
//! 2.1.3 and 2.1.4), and signed tree heads. The relay builds proofs with
//! these functions and the client checks them with the same ones, so the two
//! cannot disagree about a byte.
//!
//! Leaf hash: SHA-256(0x00 || entry); interior node: SHA-256(0x01 || l || r);
//! the root of the empty tree is SHA-256 of nothing.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::pb;

pub type Hash = [u8; 32];

/// Longest audit path a tree of up to 2^64 leaves can need.
pub const MAX_PATH: usize = 64;
/// Longest username a log entry can carry (the relay allows 32).
pub const MAX_USERNAME: usize = 64;
/// What a tree head's signature covers, before the head's fields.
const HEAD_DOMAIN: &[u8] = b"qpc key transparency tree head v1\0";
const ENTRY_VERSION: u8 = 1;

/// Why something from the log does not verify or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KtError {
    #[error("the log entry does not decode: {0}")]
    BadEntry(String),
    #[error("the tree head does not decode: {0}")]
    BadHead(String),
    #[error("the tree head's signature does not verify with the log key")]
    BadSignature,
    #[error("the proof does not decode: {0}")]
    BadProof(String),
    #[error("leaf {index} is not in a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the inclusion proof of entry {index} does not lead to the signed root of {size} entries")]
    InclusionMismatch { index: u64, size: u64 },
    #[error("the log of {new} entries does not extend the one of {old} entries seen before (a forked or rewritten history)")]
    Inconsistent { old: u64, new: u64 },
    #[error("the log shrank from {old} to {new} entries")]
    Shrank { old: u64, new: u64 },
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]) over the leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    Tree::from_leaves(leaves).root_at(leaves.len())
}

/// PATH(index, D[n]): the audit path of leaf `index`, leaf to root.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    Tree::from_leaves(leaves).inclusion_proof(index, leaves.len())
}

/// PROOF(m, D[n]): that the first `m` leaves are a prefix of all of them.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Vec<Hash> {
    Tree::from_leaves(leaves).consistency_proof(m, leaves.len())
}

/// The tree's levels: `levels[l][i]` is the root of the complete subtree of
/// 2^l leaves starting at leaf i * 2^l. Appending costs O(log n) hashes and a
/// root or proof of any earlier size O(log² n), so the relay keeps one in
/// memory rather than rehashing the log for every request.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn from_leaves(leaves: &[Hash]) -> Tree {
        let mut t = Tree::default();
        leaves.iter().for_each(|l| t.push(*l));
        t
    }

    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let n = self.levels[level].len();
            if n % 2 == 1 {
                return;
            }
            hash = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            level += 1;
        }
    }

    /// The root of leaves `start .. start + n` (n >= 1), as RFC 6962 splits.
    fn subtree(&self, start: usize, n: usize) -> Hash {
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.levels[n.trailing_zeros() as usize][start / n];
        }
        let k = split(n);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, n - k))
    }

    /// The root of the first `size` leaves (size <= len).
    pub fn root_at(&self, size: usize) -> Hash {
        if size == 0 || size > self.len() {
            return Sha256::digest([]).into();
        }
        self.subtree(0, size)
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: usize, size: usize) -> Vec<Hash> {
        let mut out = Vec::new();
        if index >= size || size > self.len() {
            return out;
        }
        let (mut start, mut n, mut m) = (0, size, index);
        let mut rev = Vec::new();
        while n > 1 {
            let k = split(n);
            if m < k {
                rev.push(self.subtree(start + k, n - k));
                n = k;
            } else {
                rev.push(self.subtree(start, k));
                start += k;
                n -= k;
                m -= k;
            }
        }
        out.extend(rev.into_iter().rev());
        out
    }

    /// The consistency proof from the first `m` leaves to the first `size`.
    pub fn consistency_proof(&self, m: usize, size: usize) -> Vec<Hash> {
        let mut rev = Vec::new();
        if m == 0 || m >= size || size > self.len() {
            return rev;
        }
        let (mut start, mut n, mut m, mut complete) = (0, size, m, true);
        while m != n {
            let k = split(n);
            if m <= k {
                rev.push(self.subtree(start + k, n - k));
                n = k;
            } else {
                rev.push(self.subtree(start, k));
                start += k;
                n -= k;
                m -= k;
                complete = false;
            }
        }
        if !complete {
            rev.push(self.subtree(start, n));
        }
        rev.reverse();
        rev
    }
}

/// One step up the tree in RFC 9162's verification walks: whether the
/// proof's next hash is the left sibling here; moves `fn_` and `sn` (the
/// node's and the last node's index) to the parent level.
fn walk(fn_: &mut u64, sn: &mut u64) -> bool {
    let left = *fn_ & 1 == 1 || *fn_ == *sn;
    if left && *fn_ & 1 == 0 {
        while *fn_ & 1 == 0 && *fn_ != 0 {
            *fn_ >>= 1;
            *sn >>= 1;
        }
    }
    *fn_ >>= 1;
    *sn >>= 1;
    left
}

/// RFC 9162 2.1.3.2: checks that `leaf` is entry `index` of the tree of
/// `size` entries whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), KtError> {
    if index >= size {
        return Err(KtError::IndexOutOfRange { index, size });
    }
    let mismatch = KtError::InclusionMismatch { index, size };
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err(mismatch);
        }
        r = if walk(&mut fn_, &mut sn) { node_hash(p, &r) } else { node_hash(&r, p) };
    }
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(mismatch)
    }
}

/// RFC 9162 2.1.4.2: checks that the tree of `new_size` entries (root
/// `new_root`) extends the tree of `old_size` entries (root `old_root`).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), KtError> {
    let inconsistent = KtError::Inconsistent { old: old_size, new: new_size };
    if new_size < old_size {
        return Err(KtError::Shrank { old: old_size, new: new_size });
    }
    if old_size == new_size {
        return if path.is_empty() && old_root == new_root { Ok(()) } else { Err(inconsistent) };
    }
    if old_size == 0 {
        // Every tree extends the empty one.
        return if path.is_empty() { Ok(()) } else { Err(inconsistent) };
    }
    if path.is_empty() {
        return Err(inconsistent);
    }
    let mut path = path.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(inconsistent);
        }
        if walk(&mut fn_, &mut sn) {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    }
    if sn == 0 && fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(inconsistent)
    }
}

/// What a log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    AccountCreated = 1,
    DeviceAdded = 2,
    DeviceRevoked = 3,
    AccountDeleted = 4,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        [Kind::AccountCreated, Kind::DeviceAdded, Kind::DeviceRevoked, Kind::AccountDeleted]
            .into_iter()
            .find(|k| *k as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::AccountCreated => "account created",
            Kind::DeviceAdded => "device added",
            Kind::DeviceRevoked => "device revoked",
            Kind::AccountDeleted => "account deleted",
        }
    }

    /// Whether entries of this kind name a device key.
    fn has_key(self) -> bool {
        matches!(self, Kind::DeviceAdded | Kind::DeviceRevoked)
    }
}

/// One change to the directory. Encoded as
/// `[version 1][kind][time_ms: u64 BE][username len: u8][username][key: 32 bytes, device kinds only]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub time_ms: u64,
    pub username: String,
    pub key: Option<[u8; 32]>,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let name = self.username.as_bytes();
        let mut out = Vec::with_capacity(11 + name.len() + 32);
        out.push(ENTRY_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.push(name.len().min(MAX_USERNAME) as u8);
        out.extend_from_slice(&name[..name.len().min(MAX_USERNAME)]);
        if let Some(key) = &self.key {
            out.extend_from_slice(key);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, KtError> {
        let bad = |why: &str| KtError::BadEntry(why.to_string());
        let [version, kind, rest @ ..] = bytes else { return Err(bad("shorter than its header")) };
        if *version != ENTRY_VERSION {
            return Err(KtError::BadEntry(format!("unknown entry version {version}")));
        }
        let kind =
            Kind::from_u8(*kind).ok_or_else(|| KtError::BadEntry(format!("unknown entry kind {kind}")))?;
        if rest.len() < 9 {
            return Err(bad("shorter than its header"));
        }
        let time_ms = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        let name_len = rest[8] as usize;
        let rest = &rest[9..];
        if name_len == 0 || name_len > MAX_USERNAME || rest.len() < name_len {
            return Err(KtError::BadEntry(format!("username of {name_len} bytes does not fit")));
        }
        let username =
            std::str::from_utf8(&rest[..name_len]).map_err(|_| bad("the username is not UTF-8"))?.to_string();
        let rest = &rest[name_len..];
        let key = match (kind.has_key(), rest.len()) {
            (true, 32) => Some(rest.try_into().expect("32 bytes")),
            (false, 0) => None,
            (_, n) => {
                return Err(KtError::BadEntry(format!(
                    "{n} bytes where a {} entry has {}",
                    kind.name(),
                    if kind.has_key() { 32 } else { 0 }
                )))
            }
        };
        Ok(Entry { kind, time_ms, username, key })
    }
}

/// A tree head: the log's size and root at `time_ms`, with the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
    pub time_ms: u64,
    pub signature: [u8; 64],
}

impl TreeHead {
    /// What the log key signs: a domain label, then size, time and root.
    pub fn signed_message(size: u64, time_ms: u64, root: &Hash) -> Vec<u8> {
        let mut m = HEAD_DOMAIN.to_vec();
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&time_ms.to_be_bytes());
        m.extend_from_slice(root);
        m
    }

    pub fn sign(key: &SigningKey, size: u64, root: Hash, time_ms: u64) -> TreeHead {
        let signature = key.sign(&TreeHead::signed_message(size, time_ms, &root)).to_bytes();
        TreeHead { size, root, time_ms, signature }
    }

    pub fn verify(&self, log_key: &VerifyingKey) -> Result<(), KtError> {
        log_key
            .verify(
                &TreeHead::signed_message(self.size, self.time_ms, &self.root),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| KtError::BadSignature)
    }

    pub fn to_pb(&self) -> pb::TreeHead {
        pb::TreeHead {
            size: self.size,
            root: self.root.to_vec(),
            time_ms: self.time_ms,
            signature: self.signature.to_vec(),
        }
    }

    pub fn from_pb(head: &pb::TreeHead) -> Result<TreeHead, KtError> {
        let root = head
            .root
            .as_slice()
            .try_into()
            .map_err(|_| KtError::BadHead(format!("root of {} bytes, not 32", head.root.len())))?;
        let signature =
            head.signature.as_slice().try_into().map_err(|_| {
                KtError::BadHead(format!("signature of {} bytes, not 64", head.signature.len()))
            })?;
        Ok(TreeHead { size: head.size, root, time_ms: head.time_ms, signature })
    }

    /// Short hex of the root, as people compare it.
    pub fn root_hex(&self) -> String {
        self.root.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An audit path or consistency proof as it comes off the wire.
pub fn decode_path(path: &[Vec<u8>]) -> Result<Vec<Hash>, KtError> {
    if path.len() > MAX_PATH {
        return Err(KtError::BadProof(format!("{} hashes, more than {MAX_PATH}", path.len())));
    }
    path.iter()
        .enumerate()
        .map(|(i, h)| {
            h.as_slice()
                .try_into()
                .map_err(|_| KtError::BadProof(format!("hash {} is {} bytes, not 32", i + 1, h.len())))
        })
        .collect()
}

pub fn encode_path(path: &[Hash]) -> Vec<Vec<u8>> {
    path.iter().map(|h| h.to_vec()).collect()
}

/// Checks a signed tree head and that it extends the last head seen (if
/// any) with the relay's consistency proof between the two.
pub fn verify_head(
    head: &pb::TreeHead,
    log_key: &VerifyingKey,
    previous: Option<&TreeHead>,
    consistency: &[Vec<u8>],
) -> Result<TreeHead, KtError> {
    let head = TreeHead::from_pb(head)?;
    head.verify(log_key)?;
    if let Some(old) = previous {
        verify_consistency(old.size, head.size, &old.root, &head.root, &decode_path(consistency)?)?;
    }
    Ok(head)
}

/// What one verified leaf of an inclusion answer says.
pub fn verify_leaf(leaf: &pb::LogLeaf, head: &TreeHead) -> Result<Entry, KtError> {
    let entry = Entry::decode(&leaf.entry)?;
    let path = decode_path(&leaf.path)?;
    verify_inclusion(leaf.index, head.size, &leaf_hash(&leaf.entry), &path, &head.root)?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962's recursive definitions, to check the level-cached tree by.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Sha256::digest([]).into(),
            1 => d[0],
            n => node_hash(&mth(&d[..split(n)]), &mth(&d[split(n)..])),
        }
    }

    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            [path(m, &d[..k]), vec![mth(&d[k..])]].concat()
        } else {
            [path(m - k, &d[k..]), vec![mth(&d[..k])]].concat()
        }
    }

    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(n);
        if m <= k {
            [subproof(m, &d[..k], b), vec![mth(&d[k..])]].concat()
        } else {
            [subproof(m - k, &d[k..], false), vec![mth(&d[..k])]].concat()
        }
    }

    #[test]
    fn the_cached_tree_matches_the_rfc_definitions() {
        let all = leaves(300);
        let tree = Tree::from_leaves(&all);
        for n in 1..=300 {
            assert_eq!(tree.root_at(n), mth(&all[..n]), "{n}");
            for i in (0..n).step_by(7) {
                assert_eq!(tree.inclusion_proof(i, n), path(i, &all[..n]), "{i}/{n}");
            }
            for m in (1..n).step_by(5) {
                assert_eq!(tree.consistency_proof(m, n), subproof(m, &all[..n], true), "{m}->{n}");
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
    }

    fn flip(h: &mut Hash, bit: usize) {
        h[bit / 8 % 32] ^= 1 << (bit % 8);
    }

    /// Sizes 1..=1000 would be slow for every index; these cover every
    /// shape near powers of two, and a sweep over all sizes up to 1000
    /// checks a few indices each.
    #[test]
    fn inclusion_proofs_verify_and_any_flipped_bit_fails() {
        let all = leaves(1000);
        for n in 1..=1000usize {
            let tree = &all[..n];
            let r = root(tree);
            let indices: Vec<usize> =
                if n <= 70 { (0..n).collect() } else { vec![0, 1, n / 3, n / 2, n - 2, n - 1] };
            for i in indices {
                let proof = inclusion_proof(tree, i);
                verify_inclusion(i as u64, n as u64, &tree[i], &proof, &r)
                    .unwrap_or_else(|e| panic!("{n}/{i}: {e}"));
                if n > 1 {
                    assert!(verify_inclusion(i as u64, n as u64, &tree[(i + 1) % n], &proof, &r).is_err());
                }
                for (j, _) in proof.iter().enumerate() {
                    let mut bad = proof.clone();
                    flip(&mut bad[j], i + j * 7);
                    assert!(verify_inclusion(i as u64, n as u64, &tree[i], &bad, &r).is_err());
                }
                let mut bad_root = r;
                flip(&mut bad_root, i);
                assert!(verify_inclusion(i as u64, n as u64, &tree[i], &proof, &bad_root).is_err());
                if !proof.is_empty() {
                    assert!(verify_inclusion(i as u64, n as u64, &tree[i], &proof[1..], &r).is_err());
                }
                let mut longer = proof.clone();
                longer.push(r);
                assert!(verify_inclusion(i as u64, n as u64, &tree[i], &longer, &r).is_err());
            }
            assert!(verify_inclusion(n as u64, n as u64, &tree[0], &[], &r).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_flipped_bit_fails() {
        let all = leaves(1000);
        let sizes: Vec<usize> = (1..=70).chain([127, 128, 129, 255, 256, 257, 500, 999, 1000]).collect();
        for &n in &sizes {
            let tree = &all[..n];
            let new_root = root(tree);
            for m in (0..=n).filter(|m| n <= 70 || [0, 1, 2, 3, n / 2, n - 1, n].contains(m)) {
                let old_root = root(&tree[..m]);
                let proof = consistency_proof(tree, m);
                verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof)
                    .unwrap_or_else(|e| panic!("{m}->{n}: {e}"));
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    flip(&mut bad[j], m + j);
                    assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &new_root, &bad).is_err(),
                        "{m}->{n}"
                    );
                }
                if m > 0 && m < n {
                    let mut bad = old_root;
                    flip(&mut bad, n);
                    assert!(verify_consistency(m as u64, n as u64, &bad, &new_root, &proof).is_err());
                    let mut bad = new_root;
                    flip(&mut bad, m);
                    assert!(verify_consistency(m as u64, n as u64, &old_root, &bad, &proof).is_err());
                    // The right proof for the wrong size.
                    if m + 1 < n {
                        assert!(
                            verify_consistency(m as u64 + 1, n as u64, &old_root, &new_root, &proof).is_err()
                        );
                    }
                    // A smaller new size can share the proof's shape (1 -> 4 as 1 -> 3);
                    // the signed head binds the size to its root, so that is caught there.
                }
            }
            assert!(matches!(
                verify_consistency(n as u64, n as u64 - 1, &new_root, &new_root, &[]),
                Err(KtError::Shrank { .. })
            ));
        }
        // A forked history: the same size with one leaf changed.
        let mut forked = all[..10].to_vec();
        forked[9] = leaf_hash(b"fork");
        let proof = consistency_proof(&all[..12], 10);
        assert!(verify_consistency(10, 12, &root(&forked), &root(&all[..12]), &proof).is_err());
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_named() {
        let e = Entry { kind: Kind::DeviceAdded, time_ms: 7, username: "bob".into(), key: Some([9; 32]) };
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        let c = Entry { kind: Kind::AccountCreated, time_ms: 1, username: "bob".into(), key: None };
        assert_eq!(Entry::decode(&c.encode()).unwrap(), c);
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            assert!(matches!(Entry::decode(&bytes[..cut]), Err(KtError::BadEntry(_))), "{cut}");
        }
        let mut bad = bytes.clone();
        bad[1] = 9;
        assert_eq!(
            Entry::decode(&bad).unwrap_err().to_string(),
            "the log entry does not decode: unknown entry kind 9"
        );
        let mut longer = bytes;
        longer.push(0);
        assert!(Entry::decode(&longer).is_err());
    }

    #[test]
    fn heads_verify_only_with_their_key_and_bits() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let head = TreeHead::sign(&key, 3, [1; 32], 99);
        head.verify(&key.verifying_key()).unwrap();
        let back = TreeHead::from_pb(&head.to_pb()).unwrap();
        assert_eq!(back, head);
        assert_eq!(
            head.verify(&SigningKey::from_bytes(&[6; 32]).verifying_key()),
            Err(KtError::BadSignature)
        );
        for bit in 0..(32 + 64) * 8 {
            let mut bad = head.clone();
            if bit < 256 {
                bad.root[bit / 8] ^= 1 << (bit % 8);
            } else {
                bad.signature[(bit - 256) / 8] ^= 1 << (bit % 8);
            }
            assert!(bad.verify(&key.verifying_key()).is_err(), "bit {bit}");
        }
        for bad in [TreeHead { size: 4, ..head.clone() }, TreeHead { time_ms: 98, ..head.clone() }] {
            assert!(bad.verify(&key.verifying_key()).is_err());
        }
        let mut short = head.to_pb();
        short.signature.pop();
        assert!(matches!(TreeHead::from_pb(&short), Err(KtError::BadHead(_))));
    }

    #[test]
    fn paths_decode_only_when_every_hash_is_whole() {
        assert_eq!(decode_path(&[vec![0; 32]]).unwrap(), vec![[0; 32]]);
        assert!(decode_path(&[vec![0; 31]]).is_err());
        assert!(decode_path(&vec![vec![0; 32]; MAX_PATH + 1]).is_err());
    }
}

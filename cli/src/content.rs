//! What travels inside an MLS application message: a small versioned
//! protobuf the relay never sees. Every message has a stable id (16 random
//! bytes, the same on every device of every member) that replies,
//! reactions, edits, deletes and receipts refer to.
//!
//! Encoding: the byte `0x00`, the byte `'Q'`, a format version (1), then the
//! protobuf [`Content`]. Older clients sent bare UTF-8 text, which never
//! starts with a NUL byte, so such a message still reads as text. A body of a
//! kind this client does not know (from a newer one) decodes to `None` and
//! is shown as `(unsupported message)`, never dropped or fatal.

use prost::Message;
use rand::RngCore;

const MAGIC: [u8; 2] = [0x00, b'Q'];
pub const FORMAT_VERSION: u8 = 1;

/// A message's stable id.
pub type MessageId = [u8; 16];

pub fn new_id() -> MessageId {
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

#[derive(Clone, PartialEq, Message)]
pub struct Content {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(oneof = "Body", tags = "2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub body: Option<Body>,
    /// Zeros that bring the encoded message up to a size bucket.
    #[prost(bytes = "vec", tag = "63")]
    pub padding: Vec<u8>,
}

/// The sizes an encoded message is padded up to, so that the relay sees a
/// handful of sizes instead of message lengths: every chat line up to about
/// 250 bytes looks the same. Beyond the last bucket, whole multiples of it.
/// What each costs is in docs/security.md.
pub const PADDING_BUCKETS: [usize; 5] = [256, 1024, 4096, 16384, 65536];

/// The bucket a message of `len` encoded bytes is padded to.
pub fn bucket_for(len: usize) -> usize {
    let last = PADDING_BUCKETS[PADDING_BUCKETS.len() - 1];
    PADDING_BUCKETS.iter().copied().find(|b| *b >= len).unwrap_or(len.div_ceil(last) * last)
}

fn varint_len(n: usize) -> usize {
    prost::encoding::encoded_len_varint(n as u64)
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "2")]
    Text(Text),
    #[prost(message, tag = "3")]
    Reaction(Reaction),
    #[prost(message, tag = "4")]
    Edit(Edit),
    #[prost(message, tag = "5")]
    Delete(Delete),
    #[prost(message, tag = "6")]
    Receipt(Receipt),
    #[prost(message, tag = "7")]
    File(FileAnnouncement),
    #[prost(message, tag = "8")]
    Typing(Typing),
    #[prost(message, tag = "9")]
    Presence(Presence),
    #[prost(message, tag = "10")]
    DeliveryToken(DeliveryToken),
}

/// Sealed sender: the token that lets the group's members enqueue to the
/// sending device's queue without telling the relay who they are; an empty
/// token takes the device's earlier one back.
#[derive(Clone, PartialEq, Message)]
pub struct DeliveryToken {
    #[prost(bytes = "vec", tag = "1")]
    pub token: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Text {
    #[prost(string, tag = "1")]
    pub text: String,
    /// The id of the message this one answers, if any.
    #[prost(bytes = "vec", tag = "2")]
    pub reply_to: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Reaction {
    #[prost(bytes = "vec", tag = "1")]
    pub target: Vec<u8>,
    #[prost(string, tag = "2")]
    pub emoji: String,
    /// Takes the sender's earlier reaction with `emoji` back.
    #[prost(bool, tag = "3")]
    pub remove: bool,
}

/// Replaces the text of `target`; only its author's edit counts.
#[derive(Clone, PartialEq, Message)]
pub struct Edit {
    #[prost(bytes = "vec", tag = "1")]
    pub target: Vec<u8>,
    #[prost(string, tag = "2")]
    pub text: String,
}

/// Deletes `target` for everyone; only its author's delete counts.
#[derive(Clone, PartialEq, Message)]
pub struct Delete {
    #[prost(bytes = "vec", tag = "1")]
    pub target: Vec<u8>,
}

/// The sender's device has received (or, with `read`, shown) `targets`.
#[derive(Clone, PartialEq, Message)]
pub struct Receipt {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub targets: Vec<Vec<u8>>,
    #[prost(bool, tag = "2")]
    pub read: bool,
}

/// A file uploaded (encrypted) to the relay's blob store: everything a
/// reader needs to fetch, decrypt and check it.
#[derive(Clone, PartialEq, Message)]
pub struct FileAnnouncement {
    /// The blob's capability id at the relay.
    #[prost(bytes = "vec", tag = "1")]
    pub blob_id: Vec<u8>,
    /// The ChaCha20-Poly1305 key the file was encrypted with.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    /// Plaintext size in bytes.
    #[prost(uint64, tag = "3")]
    pub size: u64,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub media_type: String,
    /// SHA-256 of the plaintext.
    #[prost(bytes = "vec", tag = "6")]
    pub sha256: Vec<u8>,
    /// Plaintext bytes per encrypted chunk.
    #[prost(uint32, tag = "7")]
    pub chunk_size: u32,
    #[prost(bytes = "vec", tag = "8")]
    pub reply_to: Vec<u8>,
}

/// Ephemeral: the sender is typing (or stopped) in this conversation.
#[derive(Clone, PartialEq, Message)]
pub struct Typing {
    #[prost(bool, tag = "1")]
    pub active: bool,
}

/// Ephemeral: the sender came online or went away.
#[derive(Clone, PartialEq, Message)]
pub struct Presence {
    #[prost(bool, tag = "1")]
    pub online: bool,
    /// Unix seconds, when going away.
    #[prost(uint64, tag = "2")]
    pub last_seen: u64,
}

impl Content {
    pub fn new(body: Body) -> Content {
        Content { id: new_id().to_vec(), body: Some(body), padding: Vec::new() }
    }

    pub fn text(text: &str, reply_to: Option<MessageId>) -> Content {
        Content::new(Body::Text(Text {
            text: text.into(),
            reply_to: reply_to.map(|r| r.to_vec()).unwrap_or_default(),
        }))
    }

    /// The bytes to encrypt, padded to a size bucket ([`PADDING_BUCKETS`]).
    pub fn to_plaintext(&self) -> Vec<u8> {
        let mut padded = Content { padding: Vec::new(), ..self.clone() };
        let bare = 3 + padded.encoded_len();
        // The padding field itself: a 2-byte key, its length, its zeros.
        let mut target = bucket_for(bare + 3);
        let pad = loop {
            let room = target - bare - 2;
            if let Some(pad) = (1..=3).map(|k| room.saturating_sub(k)).find(|p| varint_len(*p) + p == room) {
                break pad;
            }
            target = bucket_for(target + 1);
        };
        padded.padding = vec![0; pad];
        let mut out = Vec::with_capacity(target);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        padded.encode_raw(&mut out);
        debug_assert_eq!(out.len(), target);
        out
    }

    /// Reads decrypted bytes. Bare text from an older client gets an id
    /// derived from its bytes and the sender's position (`fallback_id`);
    /// a format version from the future, or a body that does not decode,
    /// reads as an unsupported message rather than an error.
    pub fn from_plaintext(bytes: &[u8], fallback_id: MessageId) -> Content {
        match bytes.strip_prefix(&MAGIC[..]) {
            None => Content {
                id: fallback_id.to_vec(),
                body: Some(Body::Text(Text {
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    reply_to: Vec::new(),
                })),
                padding: Vec::new(),
            },
            Some([version, rest @ ..]) if *version == FORMAT_VERSION => {
                let mut content = Content::decode_message(rest).unwrap_or_default();
                if content.id.len() != 16 {
                    content.id = fallback_id.to_vec();
                }
                content.padding = Vec::new();
                content
            }
            Some(_) => Content { id: fallback_id.to_vec(), body: None, padding: Vec::new() },
        }
    }

    fn decode_message(bytes: &[u8]) -> Option<Content> {
        <Content as Message>::decode(bytes).ok()
    }
    pub fn id(&self) -> MessageId {
        self.id.as_slice().try_into().unwrap_or([0; 16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_bare_text_still_reads() {
        let id = [7u8; 16];
        let kinds = [
            Content::text("hi", Some(id)),
            Content::new(Body::Reaction(Reaction {
                target: id.to_vec(), emoji: "👍".into(), remove: true
            })),
            Content::new(Body::Edit(Edit { target: id.to_vec(), text: "fixed".into() })),
            Content::new(Body::Delete(Delete { target: id.to_vec() })),
            Content::new(Body::Receipt(Receipt { targets: vec![id.to_vec()], read: true })),
            Content::new(Body::Typing(Typing { active: true })),
            Content::new(Body::Presence(Presence { online: false, last_seen: 5 })),
        ];
        for content in kinds {
            assert_eq!(Content::from_plaintext(&content.to_plaintext(), [0; 16]), content);
        }
        let old = Content::from_plaintext("hello from 0.1".as_bytes(), id);
        assert_eq!(
            old,
            Content {
                id: id.to_vec(),
                body: Some(Body::Text(Text { text: "hello from 0.1".into(), reply_to: vec![] })),
                padding: vec![],
            }
        );
    }

    #[test]
    fn the_future_and_garbage_are_unsupported_not_errors() {
        let fallback = [1u8; 16];
        // A body kind this version does not know (field 15).
        let mut future = vec![0x00, b'Q', FORMAT_VERSION, 0x0a, 16];
        future.extend_from_slice(&[9u8; 16]);
        future.extend_from_slice(&[0x7a, 2, 0x08, 1]);
        let read = Content::from_plaintext(&future, fallback);
        assert_eq!(read.body, None);
        assert_eq!(read.id(), [9u8; 16]);
        assert_eq!(Content::from_plaintext(&[0x00, b'Q', 9, 1, 2, 3], fallback).body, None);
        assert_eq!(Content::from_plaintext(&[0x00, b'Q', FORMAT_VERSION, 0xff, 0xff], fallback).body, None);
        assert_eq!(Content::from_plaintext(&[0x00, b'Q'], fallback).body, None);
    }

    #[test]
    fn every_message_is_padded_to_a_bucket() {
        let mut seen = std::collections::BTreeSet::new();
        for len in (0..70_000).step_by(37).chain([0, 1, 50, 200, 250, 900, 4090, 65_530, 200_000]) {
            let text = "x".repeat(len);
            let content = Content::text(&text, Some([1; 16]));
            let plaintext = content.to_plaintext();
            assert!(
                PADDING_BUCKETS.contains(&plaintext.len()) || plaintext.len().is_multiple_of(65536),
                "{len}: {}",
                plaintext.len()
            );
            assert_eq!(Content::from_plaintext(&plaintext, [0; 16]), content, "{len}");
            seen.insert(plaintext.len());
        }
        assert_eq!(Content::text("1", None).to_plaintext().len(), 256);
        assert_eq!(Content::text(&"y".repeat(900), None).to_plaintext().len(), 1024);
        assert!(seen.len() <= PADDING_BUCKETS.len() + 3, "{seen:?}");
    }
}

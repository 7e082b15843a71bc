//! A refused request: the status and the sentence the caller sees.

use qpc_proto::Status;

use crate::store::StoreError;

#[derive(Debug)]
pub struct Refusal {
    pub status: Status,
    pub message: String,
}

impl Refusal {
    pub fn new(status: Status, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(Status::BadRequest, message)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::Closed => {
                Refusal::new(Status::Unavailable, "the relay is shutting down; retry shortly")
            }
            e if e.is_unavailable() => {
                log::error!("store: {e}");
                Refusal::new(
                    Status::Unavailable,
                    "the relay could not write to its disk (full or failing); nothing of this request was stored; retry later",
                )
            }
            other => {
                log::error!("store: {other}");
                Refusal::new(Status::Internal, "the relay could not store this request; nothing was changed")
            }
        }
    }
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Refusal {
        Refusal::from(StoreError::Sqlite(e))
    }
}

/// Decodes a request payload, naming the message type when it is garbage.
pub fn decode<M: prost::Message + Default>(payload: &[u8]) -> Result<M, Refusal> {
    M::decode(payload).map_err(|e| {
        Refusal::bad_request(format!(
            "malformed {} payload: {e}",
            std::any::type_name::<M>().rsplit("::").next().unwrap_or("request")
        ))
    })
}

/// Checks that `bytes` is a 32-byte identity key.
pub fn identity_key(field: &str, bytes: &[u8]) -> Result<[u8; 32], Refusal> {
    bytes.try_into().map_err(|_| {
        Refusal::bad_request(format!(
            "{field} must be a 32-byte Ed25519 identity key, got {} bytes",
            bytes.len()
        ))
    })
}

//! The checks the fuzz targets share, and the seed messages the corpus
//! generator (`examples/gen_corpus.rs`) encodes.
//!
//! Every check is: decoding arbitrary bytes may fail but never panics, and
//! whatever decodes re-encodes to something that decodes to the same value.

use std::fmt::Debug;

use prost::Message;
use qpc_proto::frame::{Frame, FrameError, Header, PushHeader, RequestHeader, ResponseHeader};
use qpc_proto::{kt, pb, Event, Method, Status, DEFAULT_MAX_PAYLOAD};

/// Payload bounds every frame input is decoded against: none allowed, a small
/// one (so `TooLarge` is reached often), the relay default, and no bound.
pub const BOUNDS: [u32; 4] = [0, 64, DEFAULT_MAX_PAYLOAD, u32::MAX];

/// The `frame_request` target: request frames as the relay reads them; a
/// known method's payload goes through that method's request decoder.
pub fn frame_request(data: &[u8]) {
    for max in BOUNDS {
        check_frames::<RequestHeader>(data, max, |frame| {
            if let Some(method) = Method::from_u16(frame.header.method) {
                check_request(method, &frame.payload);
            }
        });
    }
}

/// The `frame_response` target: response frames as the client reads them; an
/// error's payload goes through the `ErrorDetail` decoder, a success's
/// through every method's response decoder (the frame does not say which
/// method it answers).
pub fn frame_response(data: &[u8]) {
    for max in BOUNDS {
        check_frames::<ResponseHeader>(data, max, |frame| {
            if frame.header.status == Status::Ok {
                for &method in Method::ALL {
                    check_response(method, &frame.payload);
                }
            } else {
                round_trip::<pb::ErrorDetail>(&frame.payload);
            }
        });
    }
}

/// The `frame_push` target: push frames as the client reads them; a known
/// event's payload goes through that event's decoder.
pub fn frame_push(data: &[u8]) {
    for max in BOUNDS {
        check_frames::<PushHeader>(data, max, |frame| check_push(frame.header.event, &frame.payload));
    }
}

/// The `request_decoders` target: the first byte picks the method (modulo
/// the number of methods), the rest is decoded as that method's request.
pub fn request_decoders(data: &[u8]) {
    if let Some((method, payload)) = split_method(data) {
        check_request(method, payload);
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus generator's self-check.
pub const TARGETS: [(&str, Target); 5] = [
    ("frame_request", frame_request),
    ("frame_response", frame_response),
    ("frame_push", frame_push),
    ("request_decoders", request_decoders),
    ("kt_decoders", kt_decoders),
];

/// Decodes frames back to back from `data` under `max` until one fails,
/// checking each decoded frame re-encodes to exactly the bytes it came from
/// and each error describes the input truthfully. `each` sees every frame.
pub fn check_frames<H>(data: &[u8], max: u32, mut each: impl FnMut(&Frame<H>))
where
    H: Header + Debug + PartialEq,
{
    let mut rest = data;
    loop {
        if let Ok(header) = H::parse(rest) {
            let mut out = Vec::new();
            header.write(&mut out);
            assert_eq!(out, rest[..H::LEN], "header re-encodes differently");
        }
        match Frame::<H>::decode(rest, max) {
            Ok((frame, used)) => {
                assert_eq!(used, H::LEN + frame.payload.len());
                assert!(used <= rest.len());
                assert_eq!(frame.header.declared_len() as usize, frame.payload.len());
                assert!(frame.payload.len() as u64 <= u64::from(max), "payload over the bound accepted");
                let bytes = frame.encode();
                assert_eq!(bytes, rest[..used], "re-encoded frame differs from the decoded prefix");
                let (again, used_again) = Frame::<H>::decode(&bytes, max).expect("re-encoded frame decodes");
                assert_eq!(again, frame);
                assert_eq!(used_again, used);
                each(&frame);
                rest = &rest[used..];
            }
            Err(FrameError::Truncated { needed, have }) => {
                assert_eq!(have, rest.len());
                assert!(needed > have, "truncated with {have} of {needed} bytes");
                return;
            }
            Err(FrameError::TooLarge { len, max: bound }) => {
                assert_eq!(bound, max);
                assert!(len > max);
                return;
            }
            Err(FrameError::UnknownStatus(code)) => {
                assert_eq!(rest.first(), Some(&code));
                assert_eq!(Status::from_u8(code), None);
                return;
            }
        }
    }
}

/// Decodes `bytes` as `M`; when that succeeds, the re-encoding must decode to
/// the same message and encode again to the same bytes (prost need not
/// reproduce the input: unknown fields are dropped, varints canonicalised).
pub fn round_trip<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) {
    let Ok(msg) = M::decode(bytes) else { return };
    let encoded = msg.encode_to_vec();
    assert_eq!(encoded.len(), msg.encoded_len());
    let again = M::decode(encoded.as_slice()).expect("re-encoded message decodes");
    assert_eq!(again, msg);
    assert_eq!(again.encode_to_vec(), encoded, "encoding is not deterministic");
}

/// The request decoder the relay uses for `method`, on `payload`. The match
/// has no wildcard: a new method does not compile until it is fuzzed.
pub fn check_request(method: Method, payload: &[u8]) {
    match method {
        Method::OpaqueRegisterStart => round_trip::<pb::OpaqueRegisterStartRequest>(payload),
        Method::OpaqueRegisterFinish => round_trip::<pb::OpaqueRegisterFinishRequest>(payload),
        Method::OpaqueLoginStart => round_trip::<pb::OpaqueLoginStartRequest>(payload),
        Method::OpaqueLoginFinish => round_trip::<pb::OpaqueLoginFinishRequest>(payload),
        Method::Enqueue => round_trip::<pb::EnqueueRequest>(payload),
        Method::Fetch => round_trip::<pb::FetchRequest>(payload),
        Method::FetchWait => round_trip::<pb::FetchWaitRequest>(payload),
        Method::Peek => round_trip::<pb::PeekRequest>(payload),
        Method::Ack => round_trip::<pb::AckRequest>(payload),
        Method::BatchEnqueue => round_trip::<pb::BatchEnqueueRequest>(payload),
        Method::UploadKeyPackage => round_trip::<pb::UploadKeyPackageRequest>(payload),
        Method::FetchKeyPackage => round_trip::<pb::FetchKeyPackageRequest>(payload),
        Method::UploadHybridKey => round_trip::<pb::UploadHybridKeyRequest>(payload),
        Method::FetchHybridKey => round_trip::<pb::FetchHybridKeyRequest>(payload),
        Method::FetchHybridKeys => round_trip::<pb::FetchHybridKeysRequest>(payload),
        Method::AuthChallenge => round_trip::<pb::AuthChallengeRequest>(payload),
        Method::AuthProve => round_trip::<pb::AuthProveRequest>(payload),
        Method::ResolveUser => round_trip::<pb::ResolveUserRequest>(payload),
        Method::ResolveIdentity => round_trip::<pb::ResolveIdentityRequest>(payload),
        Method::KeyPackageStatus => round_trip::<pb::KeyPackageStatusRequest>(payload),
        Method::GroupCommit => round_trip::<pb::GroupCommitRequest>(payload),
        Method::BlobUploadStart => round_trip::<pb::BlobUploadStartRequest>(payload),
        Method::BlobUploadChunk => round_trip::<pb::BlobUploadChunkRequest>(payload),
        Method::BlobUploadFinish => round_trip::<pb::BlobUploadFinishRequest>(payload),
        Method::BlobStatus => round_trip::<pb::BlobStatusRequest>(payload),
        Method::BlobDownload => round_trip::<pb::BlobDownloadRequest>(payload),
        Method::BlobReceived => round_trip::<pb::BlobReceivedRequest>(payload),
        Method::Signal => round_trip::<pb::SignalRequest>(payload),
        Method::RegisterDeliveryToken => round_trip::<pb::RegisterDeliveryTokenRequest>(payload),
        Method::RevokeDeliveryToken => round_trip::<pb::RevokeDeliveryTokenRequest>(payload),
        Method::SealedEnqueue => round_trip::<pb::SealedEnqueueRequest>(payload),
        Method::Report => round_trip::<pb::ReportRequest>(payload),
        Method::StoreRecoveryBundle => round_trip::<pb::StoreRecoveryBundleRequest>(payload),
        Method::RecoveryStart => round_trip::<pb::RecoveryStartRequest>(payload),
        Method::RecoveryFinish => round_trip::<pb::RecoveryFinishRequest>(payload),
        Method::DeleteRecoveryBundle => round_trip::<pb::DeleteRecoveryBundleRequest>(payload),
        Method::LogHead => round_trip::<pb::LogHeadRequest>(payload),
        Method::LogInclusion => round_trip::<pb::LogInclusionRequest>(payload),
        Method::LogConsistency => round_trip::<pb::LogConsistencyRequest>(payload),
        Method::LogEntries => round_trip::<pb::LogEntriesRequest>(payload),
        Method::ListDevices => round_trip::<pb::ListDevicesRequest>(payload),
        Method::RevokeDevice => round_trip::<pb::RevokeDeviceRequest>(payload),
        Method::ResolveRemoteUser => round_trip::<pb::ResolveRemoteUserRequest>(payload),
        Method::Undelivered => round_trip::<pb::UndeliveredRequest>(payload),
        Method::PeerResolveUser => round_trip::<pb::PeerResolveUserRequest>(payload),
        Method::PeerFetchKeyPackage => round_trip::<pb::FetchKeyPackageRequest>(payload),
        Method::PeerDeliver => round_trip::<pb::PeerDeliverRequest>(payload),
        Method::PeerGroupCommit => round_trip::<pb::PeerGroupCommitRequest>(payload),
    }
}

/// The response decoder the client uses for `method`, on `payload`.
pub fn check_response(method: Method, payload: &[u8]) {
    match method {
        Method::OpaqueRegisterStart => round_trip::<pb::OpaqueRegisterStartResponse>(payload),
        Method::OpaqueRegisterFinish => round_trip::<pb::OpaqueRegisterFinishResponse>(payload),
        Method::OpaqueLoginStart => round_trip::<pb::OpaqueLoginStartResponse>(payload),
        Method::OpaqueLoginFinish => round_trip::<pb::OpaqueLoginFinishResponse>(payload),
        Method::Enqueue => round_trip::<pb::EnqueueResponse>(payload),
        Method::Fetch => round_trip::<pb::FetchResponse>(payload),
        Method::FetchWait => round_trip::<pb::FetchWaitResponse>(payload),
        Method::Peek => round_trip::<pb::PeekResponse>(payload),
        Method::Ack => round_trip::<pb::AckResponse>(payload),
        Method::BatchEnqueue => round_trip::<pb::BatchEnqueueResponse>(payload),
        Method::UploadKeyPackage => round_trip::<pb::UploadKeyPackageResponse>(payload),
        Method::FetchKeyPackage => round_trip::<pb::FetchKeyPackageResponse>(payload),
        Method::UploadHybridKey => round_trip::<pb::UploadHybridKeyResponse>(payload),
        Method::FetchHybridKey => round_trip::<pb::FetchHybridKeyResponse>(payload),
        Method::FetchHybridKeys => round_trip::<pb::FetchHybridKeysResponse>(payload),
        Method::AuthChallenge => round_trip::<pb::AuthChallengeResponse>(payload),
        Method::AuthProve => round_trip::<pb::AuthProveResponse>(payload),
        Method::ResolveUser => round_trip::<pb::ResolveUserResponse>(payload),
        Method::ResolveIdentity => round_trip::<pb::ResolveIdentityResponse>(payload),
        Method::KeyPackageStatus => round_trip::<pb::KeyPackageStatusResponse>(payload),
        Method::GroupCommit => round_trip::<pb::GroupCommitResponse>(payload),
        Method::BlobUploadStart => round_trip::<pb::BlobUploadStartResponse>(payload),
        Method::BlobUploadChunk => round_trip::<pb::BlobUploadChunkResponse>(payload),
        Method::BlobUploadFinish => round_trip::<pb::BlobUploadFinishResponse>(payload),
        Method::BlobStatus => round_trip::<pb::BlobStatusResponse>(payload),
        Method::BlobDownload => round_trip::<pb::BlobDownloadResponse>(payload),
        Method::BlobReceived => round_trip::<pb::BlobReceivedResponse>(payload),
        Method::Signal => round_trip::<pb::SignalResponse>(payload),
        Method::RegisterDeliveryToken => round_trip::<pb::RegisterDeliveryTokenResponse>(payload),
        Method::RevokeDeliveryToken => round_trip::<pb::RevokeDeliveryTokenResponse>(payload),
        Method::SealedEnqueue => round_trip::<pb::SealedEnqueueResponse>(payload),
        Method::Report => round_trip::<pb::ReportResponse>(payload),
        Method::StoreRecoveryBundle => round_trip::<pb::StoreRecoveryBundleResponse>(payload),
        Method::RecoveryStart => round_trip::<pb::RecoveryStartResponse>(payload),
        Method::RecoveryFinish => round_trip::<pb::RecoveryFinishResponse>(payload),
        Method::DeleteRecoveryBundle => round_trip::<pb::DeleteRecoveryBundleResponse>(payload),
        Method::LogHead => {
            round_trip::<pb::LogHeadResponse>(payload);
            if let Ok(r) = pb::LogHeadResponse::decode(payload) {
                check_head(&r.head.unwrap_or_default());
            }
        }
        Method::LogInclusion => {
            round_trip::<pb::LogInclusionResponse>(payload);
            if let Ok(r) = pb::LogInclusionResponse::decode(payload) {
                check_inclusion(&r);
            }
        }
        Method::LogConsistency => {
            round_trip::<pb::LogConsistencyResponse>(payload);
            if let Ok(r) = pb::LogConsistencyResponse::decode(payload) {
                check_consistency(&r);
            }
        }
        Method::LogEntries => {
            round_trip::<pb::LogEntriesResponse>(payload);
            if let Ok(r) = pb::LogEntriesResponse::decode(payload) {
                r.entries.iter().for_each(|e| check_entry(e));
            }
        }
        Method::ListDevices => round_trip::<pb::ListDevicesResponse>(payload),
        Method::RevokeDevice => round_trip::<pb::RevokeDeviceResponse>(payload),
        Method::ResolveRemoteUser => {
            round_trip::<pb::ResolveRemoteUserResponse>(payload);
            if let Ok(r) = pb::ResolveRemoteUserResponse::decode(payload) {
                r.proof.iter().for_each(check_directory_proof);
            }
        }
        Method::Undelivered => round_trip::<pb::UndeliveredResponse>(payload),
        Method::PeerResolveUser => {
            round_trip::<pb::PeerResolveUserResponse>(payload);
            if let Ok(r) = pb::PeerResolveUserResponse::decode(payload) {
                r.proof.iter().for_each(check_directory_proof);
            }
        }
        Method::PeerFetchKeyPackage => round_trip::<pb::FetchKeyPackageResponse>(payload),
        Method::PeerDeliver => round_trip::<pb::PeerDeliverResponse>(payload),
        Method::PeerGroupCommit => round_trip::<pb::GroupCommitResponse>(payload),
    }
}

/// The decoder a client uses for a push with event id `event`.
pub fn check_push(event: u16, payload: &[u8]) {
    match Event::from_u16(event) {
        Some(Event::NewMessage) => round_trip::<pb::NewMessageEvent>(payload),
        Some(Event::Signal) => round_trip::<pb::SignalEvent>(payload),
        None => {}
    }
}

/// `request_decoders` input: the first byte picks the method, modulo the
/// number of methods; the rest is the payload.
pub fn split_method(data: &[u8]) -> Option<(Method, &[u8])> {
    let (&pick, payload) = data.split_first()?;
    Some((Method::ALL[usize::from(pick) % Method::ALL.len()], payload))
}

fn key(tag: u8) -> Vec<u8> {
    (0..32).map(|i| tag.wrapping_add(i)).collect()
}

fn sig(tag: u8) -> Vec<u8> {
    (0..64).map(|i| tag ^ i).collect()
}

/// A well-formed request for `method`, every field set.
pub fn sample_request(method: Method) -> Vec<u8> {
    match method {
        Method::OpaqueRegisterStart => pb::OpaqueRegisterStartRequest {
            username: "alice".into(),
            registration_request: key(1),
            registration_token: "invite-token".into(),
        }
        .encode_to_vec(),
        Method::OpaqueRegisterFinish => pb::OpaqueRegisterFinishRequest {
            username: "alice".into(),
            registration_upload: vec![7; 96],
            identity_key: key(2),
            signature: sig(3),
        }
        .encode_to_vec(),
        Method::OpaqueLoginStart => {
            pb::OpaqueLoginStartRequest { username: "bob".into(), credential_request: vec![5; 64] }
                .encode_to_vec()
        }
        Method::OpaqueLoginFinish => pb::OpaqueLoginFinishRequest {
            credential_finalization: vec![6; 64],
            identity_key: key(4),
            signature: sig(5),
        }
        .encode_to_vec(),
        Method::Enqueue => pb::EnqueueRequest {
            recipient_key: key(6),
            payload: b"ciphertext".to_vec(),
            channel_id: vec![1; 16],
            client_msg_id: vec![2; 16],
        }
        .encode_to_vec(),
        Method::Fetch => pb::FetchRequest { channel_id: Some(vec![1; 16]), limit: 10 }.encode_to_vec(),
        Method::FetchWait => {
            pb::FetchWaitRequest { channel_id: Some(vec![1; 16]), limit: 10, timeout_ms: 30_000 }
                .encode_to_vec()
        }
        Method::Peek => pb::PeekRequest { channel_id: Some(vec![]), limit: 5 }.encode_to_vec(),
        Method::Ack => pb::AckRequest { up_to_seq: 1 << 40, channel_id: Some(vec![1; 16]) }.encode_to_vec(),
        Method::BatchEnqueue => pb::BatchEnqueueRequest {
            recipient_keys: vec![key(7), key(8), key(9)],
            payload: b"group ciphertext".to_vec(),
            channel_id: vec![3; 16],
            client_msg_id: vec![4; 16],
        }
        .encode_to_vec(),
        Method::UploadKeyPackage => {
            pb::UploadKeyPackageRequest { key_package: vec![0x4b; 200], last_resort: true, ciphersuite: 0x004d }.encode_to_vec()
        }
        Method::FetchKeyPackage => pb::FetchKeyPackageRequest { identity_key: key(10), ciphersuite: 0x004d }.encode_to_vec(),
        Method::UploadHybridKey => pb::UploadHybridKeyRequest { public_key: vec![0x48; 120] }.encode_to_vec(),
        Method::FetchHybridKey => pb::FetchHybridKeyRequest { identity_key: key(11) }.encode_to_vec(),
        Method::FetchHybridKeys => {
            pb::FetchHybridKeysRequest { identity_keys: vec![key(12), key(13)] }.encode_to_vec()
        }
        Method::AuthChallenge => pb::AuthChallengeRequest {}.encode_to_vec(),
        Method::AuthProve => {
            pb::AuthProveRequest { identity_key: key(14), signature: sig(15) }.encode_to_vec()
        }
        Method::ResolveUser => pb::ResolveUserRequest { username: "bob".into() }.encode_to_vec(),
        Method::ResolveIdentity => pb::ResolveIdentityRequest { identity_key: key(16) }.encode_to_vec(),
        Method::KeyPackageStatus => pb::KeyPackageStatusRequest { ciphersuite: 1 }.encode_to_vec(),
        Method::GroupCommit => pb::GroupCommitRequest {
            group_route: vec![0x52; 32],
            epoch: 7,
            fence: vec![0x46; 32],
            next_fence_hash: vec![0x4e; 32],
            commit_recipient_keys: vec![key(17), key(18)],
            commit: b"commit ciphertext".to_vec(),
            welcome_recipient_keys: vec![key(19)],
            welcome: b"welcome".to_vec(),
            channel_id: vec![3; 16],
            client_msg_id: vec![4; 16],
            open: true,
        }
        .encode_to_vec(),
        Method::BlobUploadStart => pb::BlobUploadStartRequest {
            blob_id: vec![0x42; 16],
            size: 20 << 20,
            chunk_size: 256 * 1024,
            blob_sha256: key(22),
            read_token_hash: key(23),
            recipient_keys: vec![key(24), key(25)],
        }
        .encode_to_vec(),
        Method::BlobUploadChunk => pb::BlobUploadChunkRequest {
            blob_id: vec![0x42; 16],
            index: 79,
            sha256: key(26),
            data: vec![0xc7; 300],
        }
        .encode_to_vec(),
        Method::BlobUploadFinish => pb::BlobUploadFinishRequest { blob_id: vec![0x42; 16] }.encode_to_vec(),
        Method::BlobStatus => pb::BlobStatusRequest { blob_id: vec![0x42; 16] }.encode_to_vec(),
        Method::BlobDownload => pb::BlobDownloadRequest {
            blob_id: vec![0x42; 16],
            read_token: key(27),
            offset: 5 << 20,
            length: 256 * 1024,
        }
        .encode_to_vec(),
        Method::BlobReceived => {
            pb::BlobReceivedRequest { blob_id: vec![0x42; 16], read_token: key(27) }.encode_to_vec()
        }
        Method::Signal => {
            pb::SignalRequest { recipient_keys: vec![key(20), key(21)], payload: vec![0x53; 120] }.encode_to_vec()
        }
        Method::RegisterDeliveryToken => {
            pb::RegisterDeliveryTokenRequest { token_hash: vec![0x54; 32] }.encode_to_vec()
        }
        Method::RevokeDeliveryToken => pb::RevokeDeliveryTokenRequest { token_hash: vec![] }.encode_to_vec(),
        Method::SealedEnqueue => pb::SealedEnqueueRequest {
            recipient_key: key(23),
            token: vec![0x54; 32],
            payload: b"sealed ciphertext".to_vec(),
            channel_id: vec![3; 16],
            client_msg_id: vec![4; 16],
        }
        .encode_to_vec(),
        Method::Report => {
            pb::ReportRequest { username: "mallory".into(), reason: "spam in #general".into() }.encode_to_vec()
        }
        Method::StoreRecoveryBundle => pb::StoreRecoveryBundleRequest {
            version: 1,
            salt: vec![0x73; 16],
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            parallelism: 1,
            verifier: key(28),
            nonce: vec![0x6e; 12],
            ciphertext: vec![0xc1; 120],
        }
        .encode_to_vec(),
        Method::RecoveryStart => pb::RecoveryStartRequest { username: "alice".into() }.encode_to_vec(),
        Method::RecoveryFinish => {
            pb::RecoveryFinishRequest { username: "alice".into(), verifier_key: key(29) }.encode_to_vec()
        }
        Method::DeleteRecoveryBundle => pb::DeleteRecoveryBundleRequest {}.encode_to_vec(),
        Method::LogHead => pb::LogHeadRequest {}.encode_to_vec(),
        Method::LogInclusion => pb::LogInclusionRequest { username: "bob".into() }.encode_to_vec(),
        Method::LogConsistency => pb::LogConsistencyRequest { from_size: 3, to_size: 7 }.encode_to_vec(),
        Method::LogEntries => pb::LogEntriesRequest { start: 2, count: 1000 }.encode_to_vec(),
        Method::ListDevices => pb::ListDevicesRequest {}.encode_to_vec(),
        Method::RevokeDevice => pb::RevokeDeviceRequest { identity_key: key(28) }.encode_to_vec(),
        Method::ResolveRemoteUser => {
            pb::ResolveRemoteUserRequest { address: "bob@friends.example.net:7000".into(), known_size: 5 }
                .encode_to_vec()
        }
        Method::Undelivered => pb::UndeliveredRequest {}.encode_to_vec(),
        Method::PeerResolveUser => {
            pb::PeerResolveUserRequest { username: "bob".into(), known_size: 5 }.encode_to_vec()
        }
        Method::PeerFetchKeyPackage => {
            pb::FetchKeyPackageRequest { identity_key: key(28), ciphersuite: 0x004d }.encode_to_vec()
        }
        Method::PeerDeliver => pb::PeerDeliverRequest {
            message_id: vec![0x4d; 16],
            sender_key: key(29),
            sender_username: "alice".into(),
            recipient_key: key(30),
            channel_id: vec![3; 16],
            client_msg_id: vec![4; 16],
            payload: b"ciphertext from a peer".to_vec(),
            group_route: vec![0x52; 32],
            delivery_token: vec![],
        }
        .encode_to_vec(),
        Method::PeerGroupCommit => pb::PeerGroupCommitRequest {
            sender_key: key(33),
            commit: pb::GroupCommitRequest::decode(sample_request(Method::GroupCommit).as_slice()).ok(),
        }
        .encode_to_vec(),
    }
}

fn envelopes() -> Vec<pb::Envelope> {
    (1..=2)
        .map(|seq| pb::Envelope {
            seq,
            sender_key: key(seq as u8),
            channel_id: vec![1; 16],
            payload: b"ciphertext".to_vec(),
            enqueued_at_ms: 1_790_000_000_000 + seq,
        })
        .collect()
}

/// A well-formed successful response to `method`, every field set.
pub fn sample_response(method: Method) -> Vec<u8> {
    match method {
        Method::OpaqueRegisterStart => {
            pb::OpaqueRegisterStartResponse { registration_response: vec![8; 64] }.encode_to_vec()
        }
        Method::OpaqueRegisterFinish => pb::OpaqueRegisterFinishResponse {}.encode_to_vec(),
        Method::OpaqueLoginStart => {
            pb::OpaqueLoginStartResponse { credential_response: vec![9; 192] }.encode_to_vec()
        }
        Method::OpaqueLoginFinish => pb::OpaqueLoginFinishResponse { username: "bob".into() }.encode_to_vec(),
        Method::Enqueue => pb::EnqueueResponse { seq: 42, duplicate: true }.encode_to_vec(),
        Method::Fetch => pb::FetchResponse { messages: envelopes() }.encode_to_vec(),
        Method::FetchWait => pb::FetchWaitResponse { messages: envelopes() }.encode_to_vec(),
        Method::Peek => pb::PeekResponse { messages: envelopes() }.encode_to_vec(),
        Method::Ack => pb::AckResponse { removed: 2 }.encode_to_vec(),
        Method::BatchEnqueue => pb::BatchEnqueueResponse { seqs: vec![1, 300, 70_000] }.encode_to_vec(),
        Method::UploadKeyPackage => {
            pb::UploadKeyPackageResponse { fingerprint: vec![0xf0; 32], available: 3 }.encode_to_vec()
        }
        Method::FetchKeyPackage => {
            pb::FetchKeyPackageResponse { key_package: vec![0x4b; 200], last_resort: true }.encode_to_vec()
        }
        Method::UploadHybridKey => pb::UploadHybridKeyResponse {}.encode_to_vec(),
        Method::FetchHybridKey => pb::FetchHybridKeyResponse { public_key: vec![0x48; 120] }.encode_to_vec(),
        Method::FetchHybridKeys => pb::FetchHybridKeysResponse {
            keys: vec![pb::HybridKey { identity_key: key(12), public_key: vec![0x48; 120] }],
        }
        .encode_to_vec(),
        Method::AuthChallenge => pb::AuthChallengeResponse { nonce: vec![0x6e; 32] }.encode_to_vec(),
        Method::AuthProve => pb::AuthProveResponse {}.encode_to_vec(),
        Method::ResolveUser => {
            pb::ResolveUserResponse { identity_keys: vec![key(20), key(21)] }.encode_to_vec()
        }
        Method::ResolveIdentity => pb::ResolveIdentityResponse { username: "alice".into() }.encode_to_vec(),
        Method::KeyPackageStatus => {
            pb::KeyPackageStatusResponse { available: 4, last_resort: true, last_resort_used: true }.encode_to_vec()
        }
        Method::GroupCommit => pb::GroupCommitResponse { epoch: 8, duplicate: true }.encode_to_vec(),
        Method::BlobUploadStart => pb::BlobUploadStartResponse {
            received_chunks: 37,
            complete: true,
            expires_at_ms: 1_790_000_000_000,
        }
        .encode_to_vec(),
        Method::BlobUploadChunk => pb::BlobUploadChunkResponse { received_chunks: 80 }.encode_to_vec(),
        Method::BlobUploadFinish => {
            pb::BlobUploadFinishResponse { expires_at_ms: 1_790_000_000_000 }.encode_to_vec()
        }
        Method::BlobStatus => pb::BlobStatusResponse {
            exists: true,
            size: 20 << 20,
            chunk_size: 256 * 1024,
            received_chunks: 37,
            complete: true,
            expires_at_ms: 1_790_000_000_000,
        }
        .encode_to_vec(),
        Method::BlobDownload => pb::BlobDownloadResponse {
            data: vec![0xc7; 300],
            size: 20 << 20,
            chunk_size: 256 * 1024,
            blob_sha256: key(22),
            chunk_sha256: key(26),
        }
        .encode_to_vec(),
        Method::BlobReceived => pb::BlobReceivedResponse { deleted: true }.encode_to_vec(),
        Method::Signal => pb::SignalResponse { delivered: 2 }.encode_to_vec(),
        Method::RegisterDeliveryToken => pb::RegisterDeliveryTokenResponse { tokens: 1 }.encode_to_vec(),
        Method::RevokeDeliveryToken => pb::RevokeDeliveryTokenResponse { revoked: 3 }.encode_to_vec(),
        Method::SealedEnqueue => pb::SealedEnqueueResponse { seq: 9, duplicate: false }.encode_to_vec(),
        Method::Report => pb::ReportResponse { report_id: 12 }.encode_to_vec(),
        Method::StoreRecoveryBundle => pb::StoreRecoveryBundleResponse { replaced: true }.encode_to_vec(),
        Method::RecoveryStart => pb::RecoveryStartResponse {
            version: 1,
            salt: vec![0x73; 16],
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            parallelism: 1,
        }
        .encode_to_vec(),
        Method::RecoveryFinish => {
            pb::RecoveryFinishResponse { version: 1, nonce: vec![0x6e; 12], ciphertext: vec![0xc1; 120] }
                .encode_to_vec()
        }
        Method::DeleteRecoveryBundle => pb::DeleteRecoveryBundleResponse { deleted: true }.encode_to_vec(),
        Method::ResolveRemoteUser => pb::ResolveRemoteUserResponse {
            identity_keys: vec![key(3)],
            address: "bob@friends.example.net:7000".into(),
            proof: Some(sample_directory_proof()),
        }
        .encode_to_vec(),
        Method::Undelivered => pb::UndeliveredResponse {
            messages: vec![pb::UndeliveredMessage {
                client_msg_id: vec![4; 16],
                recipient_key: key(32),
                peer: "friends.example.net:7000".into(),
                reason: "not delivered within the TTL".into(),
                at_ms: 1_790_000_000_000,
            }],
        }
        .encode_to_vec(),
        Method::PeerResolveUser => {
            pb::PeerResolveUserResponse { identity_keys: vec![key(3)], proof: Some(sample_directory_proof()) }
                .encode_to_vec()
        }
        Method::PeerFetchKeyPackage => {
            pb::FetchKeyPackageResponse { key_package: vec![0x4b; 200], last_resort: false }.encode_to_vec()
        }
        Method::PeerDeliver => pb::PeerDeliverResponse { duplicate: true }.encode_to_vec(),
        Method::PeerGroupCommit => pb::GroupCommitResponse { epoch: 8, duplicate: false }.encode_to_vec(),
        Method::LogHead => {
            pb::LogHeadResponse { head: Some(sample_head()), log_key: key(29) }.encode_to_vec()
        }
        Method::LogInclusion => sample_inclusion().encode_to_vec(),
        Method::LogConsistency => pb::LogConsistencyResponse {
            path: kt::encode_path(&kt::consistency_proof(&kt_leaves(&sample_tree()), 3)),
        }
        .encode_to_vec(),
        Method::LogEntries => pb::LogEntriesResponse { entries: sample_tree() }.encode_to_vec(),
        Method::ListDevices => pb::ListDevicesResponse {
            devices: vec![pb::Device { identity_key: key(30), added_at_ms: 1_790_000_000_000, last_seen_ms: 1_790_000_100_000 }],
        }
        .encode_to_vec(),
        Method::RevokeDevice => pb::RevokeDeviceResponse { log_index: 6 }.encode_to_vec(),
    }
}

/// Seven log entries: bob's account and devices, one revoked.
pub fn sample_tree() -> Vec<Vec<u8>> {
    use kt::{Entry, Kind};
    let e = |kind, username: &str, k: Option<u8>| {
        Entry { kind, time_ms: 1_790_000_000_000, username: username.into(), key: k.map(|t| key(t).try_into().unwrap()) }
            .encode()
    };
    vec![
        e(Kind::AccountCreated, "bob", None),
        e(Kind::DeviceAdded, "bob", Some(1)),
        e(Kind::AccountCreated, "alice", None),
        e(Kind::DeviceAdded, "alice", Some(2)),
        e(Kind::DeviceAdded, "bob", Some(3)),
        e(Kind::DeviceRevoked, "bob", Some(1)),
        e(Kind::AccountDeleted, "alice", None),
    ]
}

fn kt_leaves(tree: &[Vec<u8>]) -> Vec<kt::Hash> {
    tree.iter().map(|e| kt::leaf_hash(e)).collect()
}

fn sample_inclusion() -> pb::LogInclusionResponse {
    let tree = sample_tree();
    let leaves = kt_leaves(&tree);
    pb::LogInclusionResponse {
        head: Some(sample_head()),
        leaves: [0usize, 1, 6]
            .iter()
            .map(|&i| pb::LogLeaf {
                index: i as u64,
                entry: tree[i].clone(),
                path: kt::encode_path(&kt::inclusion_proof(&leaves, i)),
            })
            .collect(),
    }
}

/// A peer's proof for bob (`kt_decoders` seed too): the sample inclusion answer, a log key and a
/// consistency path from 5 entries to the head's 7.
pub fn sample_directory_proof() -> pb::DirectoryProof {
    let leaves = kt_leaves(&sample_tree());
    pb::DirectoryProof {
        inclusion: Some(sample_inclusion()),
        log_key: key(29),
        consistency: Some(pb::LogConsistencyResponse { path: kt::encode_path(&kt::consistency_proof(&leaves, 5)) }),
    }
}

fn sample_head() -> pb::TreeHead {
    pb::TreeHead { size: 7, root: kt::root(&kt_leaves(&sample_tree())).to_vec(), time_ms: 1_790_000_000_000, signature: sig(31) }
}

/// An inclusion answer's head decodes (or fails) and its leaves are checked
/// against it without panicking.
pub fn check_inclusion(r: &pb::LogInclusionResponse) {
    let head = r.head.clone().unwrap_or_default();
    check_head(&head);
    if let Ok(head) = kt::TreeHead::from_pb(&head) {
        for leaf in &r.leaves {
            let _ = kt::verify_leaf(leaf, &head);
        }
    }
}

/// A consistency path decodes (or fails) and is checked without panicking.
pub fn check_consistency(r: &pb::LogConsistencyResponse) {
    if let Ok(path) = kt::decode_path(&r.path) {
        let _ = kt::verify_consistency(3, 7, &[1; 32], &[2; 32], &path);
    }
}

/// A peer relay's proof (ResolveRemoteUser field 3, PeerResolveUser field
/// 2): its parts go through the same checks as the local answers.
pub fn check_directory_proof(p: &pb::DirectoryProof) {
    if let Some(inclusion) = &p.inclusion {
        check_inclusion(inclusion);
    }
    if let Some(consistency) = &p.consistency {
        check_consistency(consistency);
    }
    if let Ok(key) = <[u8; 32]>::try_from(p.log_key.as_slice()) {
        let _ = ed25519_dalek::VerifyingKey::from_bytes(&key);
    }
}

/// Decoding a tree head may fail but never panics; a decoded one encodes back.
pub fn check_head(head: &pb::TreeHead) {
    if let Ok(h) = kt::TreeHead::from_pb(head) {
        assert_eq!(&h.to_pb(), head);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&[0xd7; 32]);
        if let Ok(key) = key {
            let _ = h.verify(&key);
        }
    }
}

/// A log entry decodes to one that encodes to exactly its bytes, or fails.
pub fn check_entry(bytes: &[u8]) {
    if let Ok(entry) = kt::Entry::decode(bytes) {
        assert_eq!(entry.encode(), bytes, "a decoded log entry re-encodes differently");
    }
}

/// The `kt_decoders` target: the first byte picks a decoder of key
/// transparency (entry, tree head, audit path and inclusion check,
/// consistency check, a peer relay's whole proof), the rest is its input.
pub fn kt_decoders(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    match pick % 5 {
        0 => check_entry(rest),
        1 => {
            if let Ok(head) = pb::TreeHead::decode(rest) {
                check_head(&head);
            }
        }
        2 => {
            if let Ok(leaf) = pb::LogLeaf::decode(rest) {
                let head = kt::TreeHead::from_pb(&sample_head()).expect("sample head");
                if let Ok(entry) = kt::verify_leaf(&leaf, &head) {
                    // Only the real leaves of the sample tree can verify.
                    assert_eq!(sample_tree()[leaf.index as usize], entry.encode());
                }
            }
        }
        4 => {
            // A peer relay's proof, as the client takes it from its relay.
            round_trip::<pb::DirectoryProof>(rest);
            if let Ok(p) = pb::DirectoryProof::decode(rest) {
                check_directory_proof(&p);
            }
        }
        _ => {
            // A proof off the wire against the sample tree's true roots:
            // it may verify only if it is the true proof.
            if let Ok(r) = pb::LogConsistencyResponse::decode(rest) {
                let tree = kt_leaves(&sample_tree());
                if let Ok(path) = kt::decode_path(&r.path) {
                    if kt::verify_consistency(3, 7, &kt::root(&tree[..3]), &kt::root(&tree), &path).is_ok() {
                        assert_eq!(path, kt::consistency_proof(&tree, 3));
                    }
                }
            }
        }
    }
}

/// A well-formed push of `event`.
pub fn sample_push(event: Event) -> Vec<u8> {
    match event {
        Event::NewMessage => pb::NewMessageEvent { seq: 7, channel_id: vec![1; 16] }.encode_to_vec(),
        Event::Signal => pb::SignalEvent { sender_key: key(22), payload: vec![0x53; 120] }.encode_to_vec(),
    }
}

/// An error response's payload.
pub fn sample_error(status: Status) -> Vec<u8> {
    pb::ErrorDetail { message: format!("{}: details", status.name()) }.encode_to_vec()
}

//! The key transparency decoders and checks (`qpc_proto::kt`): log entries,
//! signed tree heads, audit paths with their inclusion check, and the
//! consistency check, and a peer relay's `DirectoryProof`. The first byte picks one; errors are fine, panics are
//! not, and only the real proofs verify. The checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpc_proto_fuzz::kt_decoders(data));

//! Push frames as the client reads them: decode never panics, a decoded
//! frame re-encodes to the bytes it came from, and a known event's payload
//! goes through that event's decoder.
//! The checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpc_proto_fuzz::frame_push(data));

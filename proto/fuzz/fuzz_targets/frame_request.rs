//! Request frames as the relay reads them: decode never panics, a decoded
//! frame re-encodes to the bytes it came from, and a known method's payload
//! goes through that method's request decoder.
//! The checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpc_proto_fuzz::frame_request(data));

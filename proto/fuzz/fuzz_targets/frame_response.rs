//! Response frames as the client reads them: decode never panics, a decoded
//! frame re-encodes to the bytes it came from, an error's payload goes
//! through the `ErrorDetail` decoder and a success's through every method's
//! response decoder.
//! The checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpc_proto_fuzz::frame_response(data));

//! Every request decoder of the relay, without the frame around it: the
//! first byte picks the method (modulo the number of methods), the rest is
//! decoded as that method's request. Errors are fine, panics are not, and a
//! successful decode round-trips through encode.
//! The checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpc_proto_fuzz::request_decoders(data));

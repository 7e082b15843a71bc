//! No code: this crate only names SQLCipher's include directory for
//! libsqlite3-sys (see Cargo.toml and README.md beside it).
#![no_std]

//! Gives libsqlite3-sys (DEP_OPENSSL_INCLUDE) this directory as SQLCipher's
//! include path: the CommonCrypto-shaped headers that
//! daemon/src/store/crypto.rs implements.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:include={dir}");
    println!("cargo:rerun-if-changed=build.rs");
}

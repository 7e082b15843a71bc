//! The generated protobuf code is checked in (so router builds need no
//! protoc); this test regenerates it from `qpc/v1/*.proto` and fails when the
//! checked-in copy is stale. `QPC_BLESS=1` rewrites it (`make proto`).

use std::path::Path;

#[test]
fn generated_code_matches_the_proto_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("qpc-proto-gen-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let protos: Vec<_> = [
        "common",
        "auth",
        "accounts",
        "keys",
        "delivery",
        "groups",
        "blobs",
        "signals",
        "moderation",
        "recovery",
        "kt",
        "federation",
    ]
    .iter()
    .map(|n| root.join(format!("qpc/v1/{n}.proto")))
    .collect();
    prost_build::Config::new()
        .out_dir(&out)
        .compile_protos(&protos, &[root.to_path_buf()])
        .expect("protoc must be installed (make test installs protobuf-compiler)");
    let fresh = std::fs::read_to_string(out.join("qpc.v1.rs")).unwrap();
    let checked_in = root.join("src/gen/qpc.v1.rs");
    if std::env::var_os("QPC_BLESS").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    std::fs::remove_dir_all(&out).ok();
    assert!(current == fresh, "proto/src/gen/qpc.v1.rs is stale: run `make proto`");
}

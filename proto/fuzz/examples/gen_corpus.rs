//! Writes the seed corpus: valid frames and messages for every method, status
//! and event, into `corpus/<target>/`. `make fuzz-corpus`, or from
//! `proto/fuzz`: `cargo run --example gen_corpus --no-default-features`
//! (`-- --check` only verifies the committed files are current). File names
//! are stable, so regenerating after a schema change shows as a plain diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use qpc_proto::{Event, Method, PushFrame, RequestFrame, ResponseFrame, Status};
use qpc_proto_fuzz::{sample_error, sample_push, sample_request, sample_response, TARGETS};

fn name(id: impl std::fmt::Debug) -> String {
    let debug = format!("{id:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn corpus() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut put = |target: &str, file: String, bytes: Vec<u8>| {
        files.insert(Path::new(target).join(file), bytes);
    };

    for (index, &method) in Method::ALL.iter().enumerate() {
        let request = sample_request(method);
        let frame = RequestFrame::new(method.id(), index as u32 + 1, request.clone()).encode();
        put("frame_request", name(method), frame);
        let mut picked = vec![index as u8];
        picked.extend_from_slice(&request);
        put("request_decoders", name(method), picked);
        let response = ResponseFrame::new(Status::Ok, index as u32 + 1, sample_response(method)).encode();
        put("frame_response", format!("ok_{}", name(method)), response);
    }
    // Frames back to back, as on a stream, and the shapes the relay refuses.
    let mut two =
        RequestFrame::new(Method::AuthChallenge.id(), 1, sample_request(Method::AuthChallenge)).encode();
    two.extend(RequestFrame::new(Method::AuthProve.id(), 2, sample_request(Method::AuthProve)).encode());
    put("frame_request", "two_frames".into(), two);
    put(
        "frame_request",
        "unknown_method".into(),
        RequestFrame::new(9999, 3, vec![0x0a, 0x01, 0x41]).encode(),
    );
    put("frame_request", "over_bound".into(), vec![0, 200, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);

    for status in Status::ALL.into_iter().filter(|s| *s != Status::Ok) {
        let frame = ResponseFrame::new(status, 7, sample_error(status)).encode();
        put("frame_response", format!("err_{}", status.name()), frame);
    }
    for &event in Event::ALL {
        put("frame_push", name(event), PushFrame::new(event.id(), sample_push(event)).encode());
    }
    let mut two = PushFrame::new(Event::NewMessage.id(), sample_push(Event::NewMessage)).encode();
    two.extend(PushFrame::new(Event::NewMessage.id(), vec![]).encode());
    put("frame_push", "two_frames".into(), two);
    // Key transparency: one seed per decoder the first byte picks.
    let tree = qpc_proto_fuzz::sample_tree();
    put("kt_decoders", "entry_device_added".into(), [vec![0], tree[1].clone()].concat());
    put("kt_decoders", "entry_account_created".into(), [vec![0], tree[0].clone()].concat());
    let head = qpc_proto::pb::LogHeadResponse::decode(sample_response(Method::LogHead).as_slice()).unwrap();
    put("kt_decoders", "tree_head".into(), [vec![1], head.head.unwrap().encode_to_vec()].concat());
    let inclusion =
        qpc_proto::pb::LogInclusionResponse::decode(sample_response(Method::LogInclusion).as_slice()).unwrap();
    for (n, leaf) in inclusion.leaves.iter().enumerate() {
        put("kt_decoders", format!("inclusion_{n}"), [vec![2], leaf.encode_to_vec()].concat());
    }
    put("kt_decoders", "consistency".into(), [vec![3], sample_response(Method::LogConsistency)].concat());
    let proof = qpc_proto_fuzz::sample_directory_proof().encode_to_vec();
    put("kt_decoders", "directory_proof".into(), [vec![4], proof].concat());
    files
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut stale = 0;
    for (path, bytes) in corpus() {
        // Every seed passes its own target's checks.
        let target = path.iter().next().and_then(|t| t.to_str()).unwrap();
        let (_, run) = TARGETS.iter().find(|(name, _)| *name == target).expect("seed of a known target");
        run(&bytes);
        let path = root.join(path);
        if check {
            if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                eprintln!("stale or missing: {}", path.display());
                stale += 1;
            }
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).expect("create corpus directory");
        std::fs::write(&path, bytes).expect("write corpus file");
    }
    if stale > 0 {
        eprintln!("{stale} corpus file(s) out of date: run `make fuzz-corpus`");
        std::process::exit(1);
    }
}

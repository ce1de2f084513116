//! The contract compiles with stock `protoc`, not only with protox: integrators
//! generate their clients (Python, Java, C#, Go, grpcurl -proto) with protoc.
//! `ops/bin/test` finds or installs Debian's protoc and names it in
//! `HANDOFF_PROTOC`; without it this test fails, saying how to get it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use prost_types::FileDescriptorSet;

fn protoc() -> PathBuf {
    std::env::var_os("HANDOFF_PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("protoc"))
}

#[test]
fn the_contract_compiles_with_stock_protoc_to_the_same_messages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("handoff/v1"))
        .expect("proto/handoff/v1")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    let protoc = protoc();
    let resolved = which(&protoc);
    // The well-known types (google/protobuf/*.proto) lie in ../include beside protoc.
    let include = resolved
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("include"))
        .unwrap_or_default();
    let out = tempfile::tempdir().expect("tmp");
    let set = out.path().join("contract.binpb");
    let run = Command::new(&protoc)
        .arg("-I")
        .arg(&root)
        .arg("-I")
        .arg(&include)
        .arg("--include_imports")
        .arg("-o")
        .arg(&set)
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run ops/bin/find-protoc, or set HANDOFF_PROTOC",
                protoc.display()
            )
        });
    assert!(
        run.status.success(),
        "protoc refuses the contract:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&set).expect("descriptor set");
    let from_protoc = FileDescriptorSet::decode(bytes.as_slice()).expect("a descriptor set");
    let names = |set: &FileDescriptorSet| -> BTreeSet<String> {
        set.file
            .iter()
            .filter(|f| f.package() == "handoff.v1")
            .flat_map(|f| {
                let messages = f.message_type.iter().map(|m| m.name().to_string());
                let services = f.service.iter().flat_map(|s| {
                    s.method
                        .iter()
                        .map(move |m| format!("{}.{} -> {}", s.name(), m.name(), m.output_type()))
                });
                messages.chain(services).collect::<Vec<_>>()
            })
            .collect()
    };
    let from_protox = FileDescriptorSet::decode(handoff_contract::FILE_DESCRIPTOR_SET)
        .expect("the built-in descriptor set");
    assert_eq!(names(&from_protoc), names(&from_protox));
}

/// `path` as found on PATH when it names no directory.
fn which(path: &Path) -> PathBuf {
    if path.components().count() > 1 {
        return path.to_path_buf();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(path))
        .find(|p| p.is_file())
        .unwrap_or_else(|| path.to_path_buf())
}

//! The contract passes buf's STANDARD lint rules, and `buf breaking` against the
//! committed baseline (proto/baseline/handoff-v1.json) finds no breaking change.
//! A deliberate breaking change re-records the baseline (ops/bin/contract-baseline)
//! in the same commit, with a CHANGELOG.md entry for integrators.
//! `ops/bin/test` finds or installs the pinned buf and names it in `HANDOFF_BUF`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn buf() -> PathBuf {
    std::env::var_os("HANDOFF_BUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("buf"))
}

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let buf = buf();
    Command::new(&buf)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run ops/bin/find-buf, or set HANDOFF_BUF",
                buf.display()
            )
        })
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_contract_passes_buf_lint() {
    let out = run(&proto_dir(), &["lint"]);
    assert!(out.status.success(), "buf lint:\n{}", said(&out));
}

#[test]
fn the_contract_has_no_breaking_change_against_the_baseline() {
    let out = run(
        &proto_dir(),
        &["breaking", "--against", "baseline/handoff-v1.json"],
    );
    assert!(
        out.status.success(),
        "buf breaking against proto/baseline/handoff-v1.json:\n{}\n\
         A deliberate breaking change: run ops/bin/contract-baseline and say in \
         CHANGELOG.md what integrators must change (after a release: handoff.v2).",
        said(&out)
    );
}

/// The check is only worth its place if it fails: a copy of the contract with a
/// field renamed and one removed must be refused, naming both.
#[test]
fn a_breaking_change_is_caught() {
    let copy = tempfile::tempdir().expect("tmp");
    let from = proto_dir();
    std::fs::copy(from.join("buf.yaml"), copy.path().join("buf.yaml")).expect("buf.yaml");
    std::fs::create_dir_all(copy.path().join("handoff/v1")).expect("dirs");
    for entry in std::fs::read_dir(from.join("handoff/v1")).expect("proto/handoff/v1") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        std::fs::copy(&path, copy.path().join("handoff/v1").join(name)).expect("copy");
    }
    let exchange = copy.path().join("handoff/v1/exchange.proto");
    let text = std::fs::read_to_string(&exchange).expect("exchange.proto");
    let broken = text
        .replacen("string next_page_token = 2;", "string page_token = 2;", 1)
        .replacen(
            "  string purpose = 8;               // as the caller stated it\n",
            "",
            1,
        );
    assert_ne!(
        text, broken,
        "the test's edits must apply to exchange.proto"
    );
    std::fs::write(&exchange, broken).expect("write");
    let baseline = from.join("baseline/handoff-v1.json");
    let baseline = baseline.to_str().expect("utf-8 path");
    let out = run(copy.path(), &["breaking", "--against", baseline]);
    let said = said(&out);
    assert!(
        !out.status.success(),
        "buf breaking let a rename through:\n{said}"
    );
    assert!(
        said.contains("next_page_token"),
        "names the renamed field:\n{said}"
    );
    assert!(
        said.contains("AccessRecord"),
        "names the message that lost a field:\n{said}"
    );
}

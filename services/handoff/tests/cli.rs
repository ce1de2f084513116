//! The `handoff` command line: it explains itself, and refuses bad input with
//! messages that say what to fix.

use std::process::Command;

fn handoff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
}

#[test]
fn help_lists_the_commands() {
    let out = handoff().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "adapter", "case", "quarantine", "demo"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
}

#[test]
fn a_broken_config_names_the_file_line_and_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[store]\ndata_dir = \"d\"\n[query]\nlisten = \"not an address\"\n").expect("write");
    let out = handoff()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.toml:6:") && err.contains("IP:PORT"),
        "{err}"
    );
}

#[test]
fn an_adapter_refuses_an_unreadable_file_without_publishing() {
    let out = handoff()
        .args([
            "adapter",
            "police",
            "--agency",
            "police-north",
            "--nats",
            "nats://127.0.0.1:1",
            "/no/such/file.json",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
}

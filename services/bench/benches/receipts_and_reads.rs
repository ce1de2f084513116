//! Criterion benchmarks of what issue 17 moved: signing a committed batch's receipts
//! as one Merkle tree (against one Ed25519 signature per receipt, the old way),
//! verifying one receipt offline, and recording a read durably (the access record a
//! GetCase writes and flushes before it answers) against its floor, 512 bytes
//! written and fdatasync'd on the same disk.

use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use handoff_audit::{ExchangeKey, verify_receipt};
use handoff_contract::v1::{AccessRecord, Receipt};
use handoff_log::Log;

/// Short runs: these are smoke measurements for CI, not a lab.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

/// `n` accepted receipts of one agency, as one committed batch answers them.
fn receipts(n: u64) -> Vec<Receipt> {
    (0..n)
        .map(|i| Receipt {
            event_id: format!("01JD6X8Y9Z0A1B2C3D4E5F{i:04}"),
            status: 1,
            stream_sequence: 1_000 + i,
            case_id: format!("case-{}", i % 64),
            case_version: i + 1,
            ..Receipt::default()
        })
        .collect()
}

fn receipts_signing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = ExchangeKey::load_or_create(dir.path()).expect("a signing key");
    let mut g = c.benchmark_group("receipts");
    // A quiet exchange's batch of one, and a full tree (RECEIPTS_PER_TREE).
    for n in [1, 256] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::new("sign as one tree", n), |b| {
            b.iter_batched(
                || receipts(n),
                |mut r| {
                    key.sign_receipts(&mut r);
                    r
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("sign each (before)", n), |b| {
            b.iter_batched(
                || receipts(n),
                |mut r| {
                    for one in &mut r {
                        key.sign_receipt(one);
                    }
                    r
                },
                BatchSize::SmallInput,
            )
        });
    }
    let mut signed = receipts(256);
    key.sign_receipts(&mut signed);
    let public = key.public_key();
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify one of 256", |b| {
        b.iter(|| verify_receipt(black_box(&signed[100]), &public).expect("verifies"))
    });
    g.finish();
}

fn durable_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Log::open(&dir.path().join("log")).expect("a fresh log");
    // As `handoff serve` runs: two workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut g = c.benchmark_group("durable-read");
    g.bench_function("access record (durable)", |b| {
        b.iter(|| {
            let record = AccessRecord {
                at_unix_ms: 1_767_225_600_000,
                agency: "policie-jc".into(),
                rpc: "GetCase".into(),
                case_ids: vec!["case-7".into()],
                subjects: vec!["subject-7".into()],
                fields: vec!["reasons".into()],
                purpose: "benchmark".into(),
                outcome: "ok".into(),
                ..AccessRecord::default()
            };
            runtime
                .block_on(log.access().record(record))
                .expect("recorded")
        })
    });
    let path = dir.path().join("fdatasync-probe");
    let mut file = std::fs::File::create(&path).expect("a probe file");
    let block = [0x5au8; 512];
    let mut i = 0u64;
    g.bench_function("512 B + fdatasync (floor)", |b| {
        b.iter(|| {
            i += 1;
            file.seek(SeekFrom::Start((i % 64) * 4096)).expect("seek");
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = receipts_signing, durable_reads
}
criterion_main!(benches);

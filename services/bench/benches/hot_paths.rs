//! Criterion benchmarks of Handoff's hot functions, fed by the deterministic workload
//! (`handoff_bench::workload`) so that every run measures the same realistic events.
//!
//! Groups: `envelope` (protobuf codec), `fold` (the domain's `evolve` over whole
//! cases), `chain` (record hashing, staging into a log batch, committing it flushed,
//! reading records one at a time),
//! `verify` (the offline audit verifier against plain SHA-256 of the same bytes),
//! `policy` (field need-to-know on case views and events) and `transport` (sealing
//! an event's private parts to the transport key at the agency, opening them and
//! re-sealing them under the subject's key at ingest).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use handoff_audit::ExchangeKey;
use handoff_audit::export::{ExportWriter, verify};
use handoff_bench::workload::{self, CENTRE, POLICE, PROGRAMME};
use handoff_contract::v1::{CaseView, Envelope, LogRecord, SealedDetails};
use handoff_domain::policy::{FieldGroup, FieldPolicy};
use handoff_domain::private::take_private;
use handoff_domain::{Agency, AgencyKind, Position, Registry, evolve};
use handoff_keyring::{Kek, Keyring};
use handoff_log::{GENESIS, Log, NewRecord, record_hash};
use handoff_transport::{Opener, Sealer, TransportKeys};
use prost::Message;
use sha2::{Digest, Sha256};

/// The workload's seed: the same events in every run.
const SEED: u64 = 42;
/// The workload's first event time (2026-01-01), as the load tool uses.
const EPOCH_MS: i64 = 1_767_225_600_000;
/// Cases progressing at once in the interleaved stream.
const CONCURRENT: usize = 64;
/// Envelopes per iteration of the codec and hashing benchmarks.
const STREAM_EVENTS: u64 = 1_000;
/// Whole cases per iteration of the fold and policy benchmarks.
const CASES: u64 = 100;
/// Records in the export the verifier reads.
const EXPORT_RECORDS: u64 = 100_000;
/// Ingest's default `batch_max`: the most messages committed in one flush.
const INGEST_BATCH_MAX: usize = 512;

/// Short runs: these are smoke measurements for CI, not a lab.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

/// The three agencies the workload's cases pass through.
fn registry() -> Registry {
    Registry::new(
        [
            (POLICE, AgencyKind::Police),
            (CENTRE, AgencyKind::InterventionCentre),
            (PROGRAMME, AgencyKind::ProgrammeProvider),
        ]
        .map(|(id, kind)| Agency {
            id: id.into(),
            name: id.into(),
            kind,
        }),
    )
    .expect("the workload's agencies form a valid registry")
}

/// The record time of an event: its own time, as JetStream would stamp it moments later.
fn recorded_at(envelope: &Envelope) -> i64 {
    envelope
        .occurred_at
        .as_ref()
        .map_or(EPOCH_MS, handoff_contract::time::to_unix_ms)
}

/// The interleaved stream of `n` events, in publishing order.
fn stream(n: u64) -> Vec<Envelope> {
    workload::events(SEED, n, CONCURRENT).collect()
}

/// Whole cases, each its events in order.
fn cases(n: u64) -> Vec<Vec<Envelope>> {
    (0..n)
        .map(|case| workload::case_events(SEED, case, EPOCH_MS))
        .collect()
}

/// Folds one case's events into the view after its last one.
fn fold(events: &[Envelope], registry: &Registry) -> CaseView {
    let mut view: Option<CaseView> = None;
    for (i, e) in events.iter().enumerate() {
        let at = Position {
            sequence: i as u64 + 1,
            recorded_at_ms: recorded_at(e),
        };
        view = Some(
            evolve(view.as_ref(), e, registry, at)
                .expect("the domain accepts every workload event"),
        );
    }
    view.expect("every workload case has events")
}

/// An event as ingest logs it: the envelope encoded without personal details, which are sealed.
struct Sealed {
    /// The encoded envelope without personal details (what the hash chain covers).
    facts: Vec<u8>,
    /// Its event id.
    event_id: String,
    /// Its agency.
    agency: String,
    /// The personal details it carried, sealed under the subject's key.
    sealed: Option<SealedDetails>,
}

/// Seals the personal details of `envelopes` as ingest does (keys in a throwaway keyring).
fn seal_all(envelopes: &[Envelope], keyring: &Keyring) -> Vec<Sealed> {
    envelopes
        .iter()
        .map(|e| {
            let mut facts = e.clone();
            let sealed = take_private(&mut facts, 0).map(|d| {
                keyring
                    .seal(
                        &facts.subject_pseudonym,
                        &facts.source_agency,
                        &facts.event_id,
                        &d,
                    )
                    .expect("sealing with a fresh keyring")
            });
            Sealed {
                facts: facts.encode_to_vec(),
                event_id: facts.event_id,
                agency: facts.source_agency,
                sealed,
            }
        })
        .collect()
}

/// A throwaway keyring in `dir`.
fn keyring(dir: &std::path::Path) -> Keyring {
    Keyring::load(dir, Kek::generate().expect("a random KEK")).expect("a fresh keyring")
}

/// Protobuf encode and decode of a realistic mix of envelopes (with personal details).
fn envelope(c: &mut Criterion) {
    let envelopes = stream(STREAM_EVENTS);
    let encoded: Vec<Vec<u8>> = envelopes.iter().map(Message::encode_to_vec).collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    eprintln!(
        "envelope: {} envelopes, {bytes} B encoded ({} B each on average)",
        envelopes.len(),
        bytes / envelopes.len()
    );

    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(envelopes.len() as u64));
    // encode_to_vec allocates, as ingest's re-encoding of the facts does.
    g.bench_function(BenchmarkId::new("encode", envelopes.len()), |b| {
        b.iter(|| {
            for e in &envelopes {
                black_box(e.encode_to_vec());
            }
        })
    });
    g.bench_function(BenchmarkId::new("decode", encoded.len()), |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(Envelope::decode(bytes.as_slice()).expect("a valid envelope"));
            }
        })
    });
    g.finish();
}

/// The domain fold: `evolve` over every event of whole cases, from nothing to the last view.
fn fold_cases(c: &mut Criterion) {
    let registry = registry();
    let cases = cases(CASES);
    let events: usize = cases.iter().map(Vec::len).sum();

    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function(
        BenchmarkId::new("evolve", format!("{CASES} cases, {events} events")),
        |b| {
            b.iter(|| {
                for case in &cases {
                    black_box(fold(case, &registry));
                }
            })
        },
    );
    g.finish();
}

/// One event ready to be appended: what ingest has in hand after deciding it.
struct Decided {
    /// The logged form of the event.
    sealed: Sealed,
    /// The JetStream sequence it came with.
    stream_sequence: u64,
    /// JetStream's time for it.
    recorded_at: i64,
    /// The case before it (for the inbox projection).
    before: Option<CaseView>,
    /// The case after it.
    view: CaseView,
}

/// Decides `envelopes` in stream order (fold and seal), outside any timing.
fn decide_all(envelopes: &[Envelope], registry: &Registry, keyring: &Keyring) -> Vec<Decided> {
    let mut views: HashMap<String, CaseView> = HashMap::new();
    let sealed = seal_all(envelopes, keyring);
    envelopes
        .iter()
        .zip(sealed)
        .enumerate()
        .map(|(i, (e, sealed))| {
            let before = views.get(&e.case_id).cloned();
            let at = Position {
                sequence: i as u64 + 1,
                recorded_at_ms: recorded_at(e),
            };
            let view = evolve(before.as_ref(), e, registry, at)
                .expect("the domain accepts every workload event");
            views.insert(e.case_id.clone(), view.clone());
            Decided {
                sealed,
                stream_sequence: i as u64 + 1,
                recorded_at: at.recorded_at_ms,
                before,
                view,
            }
        })
        .collect()
}

/// Stages `decided` into a batch of `log`, the views handed over as `evolve` would.
fn stage<'a>(
    log: &'a Log,
    decided: &[Decided],
    views: Vec<CaseView>,
) -> handoff_log::WriteBatch<'a> {
    let mut batch = log.batch();
    for (d, view) in decided.iter().zip(views) {
        batch
            .append(
                NewRecord {
                    stream_sequence: d.stream_sequence,
                    recorded_at_unix_ms: d.recorded_at,
                    envelope: &d.sealed.facts,
                    event_id: &d.sealed.event_id,
                    agency: &d.sealed.agency,
                    sealed_details: d.sealed.sealed.as_ref(),
                },
                Some(handoff_domain::CaseChange {
                    before: d.before.clone(),
                    after: view,
                }),
            )
            .expect("appending a decided event");
    }
    batch
}

/// The hash chain (`record_hash` alone), staging records into a sled batch, and
/// committing that batch, which flushes to disk.
fn chain(c: &mut Criterion) {
    let registry = registry();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keyring = keyring(dir.path());
    let envelopes = stream(STREAM_EVENTS);
    let sealed = seal_all(&envelopes, &keyring);
    let bytes: usize = sealed.iter().map(|s| s.facts.len()).sum();
    eprintln!(
        "chain: {} records, {bytes} B of envelopes without personal details ({} B each on average)",
        sealed.len(),
        bytes / sealed.len()
    );

    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(sealed.len() as u64));
    g.bench_function(BenchmarkId::new("record_hash", sealed.len()), |b| {
        b.iter(|| {
            let mut prev = GENESIS;
            for (i, s) in sealed.iter().enumerate() {
                let seq = i as u64 + 1;
                prev = record_hash(&prev, seq, seq, EPOCH_MS + seq as i64, &s.facts);
            }
            black_box(prev)
        })
    });

    // A real log. It grows with every iteration, and event ids repeat across
    // iterations (appending does not look for duplicates; ingest does before it),
    // so later samples write into a bigger store, as a long-running exchange does.
    let log = Log::open(&dir.path().join("log")).expect("a fresh log");
    let decided = decide_all(&stream(INGEST_BATCH_MAX as u64), &registry, &keyring);
    let views = |n: usize| {
        decided[..n]
            .iter()
            .map(|d| d.view.clone())
            .collect::<Vec<_>>()
    };

    // Staging only: hashing, encoding, projections, all in memory. The batch is
    // dropped uncommitted, outside the timing.
    g.throughput(Throughput::Elements(decided.len() as u64));
    g.bench_function(BenchmarkId::new("append (staged)", decided.len()), |b| {
        b.iter_batched(
            || views(decided.len()),
            |v| stage(&log, &decided, v),
            BatchSize::SmallInput,
        )
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // One event per flush (a quiet exchange) and a full ingest batch (under load).
    for n in [1, INGEST_BATCH_MAX] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("append + commit (flushed)", n), |b| {
            b.iter_batched(
                || views(n),
                |v| {
                    let batch = stage(&log, &decided[..n], v);
                    runtime.block_on(log.commit(batch)).expect("commit")
                },
                BatchSize::SmallInput,
            )
        });
    }
    // Reading records one at a time, as a case's history, a duplicate's receipt and
    // the sealed free text of a view do: spread over a log of at least 10,240.
    while log.head().sequence < 20 * INGEST_BATCH_MAX as u64 {
        let batch = stage(&log, &decided, views(decided.len()));
        runtime.block_on(log.commit(batch)).expect("commit");
    }
    let head = log.head().sequence;
    let lookups: Vec<u64> = (0..1_000u64).map(|i| 1 + (i * 7_919) % head).collect();
    g.throughput(Throughput::Elements(lookups.len() as u64));
    g.bench_function(
        BenchmarkId::new("record (one at a time)", lookups.len()),
        |b| {
            b.iter(|| {
                for &seq in &lookups {
                    black_box(log.record(seq).expect("read").expect("present"));
                }
            })
        },
    );
    g.finish();
}

/// An export of `n` records, as `handoff audit export` writes it, and the public key to check it.
fn export(n: u64) -> (Vec<u8>, [u8; 32]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keyring = keyring(dir.path());
    let key = ExchangeKey::load_or_create(dir.path()).expect("a fresh exchange key");
    let envelopes = stream(n);
    let mut out = ExportWriter::new(Vec::new(), 1, n).expect("writing to memory");
    let mut prev = GENESIS;
    let mut last_at = EPOCH_MS;
    for (i, (e, s)) in envelopes
        .iter()
        .zip(seal_all(&envelopes, &keyring))
        .enumerate()
    {
        let sequence = i as u64 + 1;
        last_at = recorded_at(e);
        let hash = record_hash(&prev, sequence, sequence, last_at, &s.facts);
        out.record(&LogRecord {
            sequence,
            stream_sequence: sequence,
            recorded_at_unix_ms: last_at,
            envelope: s.facts,
            prev_hash: prev.to_vec(),
            hash: hash.to_vec(),
            sealed_details: s.sealed,
        })
        .expect("writing to memory");
        prev = hash;
    }
    let bytes = out
        .finish(&key.checkpoint(n, &prev, last_at))
        .expect("writing to memory");
    (bytes, key.public_key())
}

/// The offline verifier over a whole export, against SHA-256 of the same bytes as the floor.
fn verify_export(c: &mut Criterion) {
    let (bytes, public_key) = export(EXPORT_RECORDS);
    // Checked once, untimed: a benchmark of a verifier that fails early would mislead.
    let verified = verify(bytes.as_slice(), &public_key).expect("the export verifies");
    assert_eq!(verified.records, EXPORT_RECORDS);
    eprintln!(
        "verify: export of {EXPORT_RECORDS} records, {} B ({} B per record)",
        bytes.len(),
        bytes.len() as u64 / EXPORT_RECORDS
    );

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(BenchmarkId::new("verify", EXPORT_RECORDS), |b| {
        b.iter(|| black_box(verify(bytes.as_slice(), &public_key).expect("the export verifies")))
    });
    g.bench_function(BenchmarkId::new("sha256 (baseline)", EXPORT_RECORDS), |b| {
        b.iter(|| black_box(Sha256::digest(&bytes)))
    });
    g.finish();
}

/// The field policy of `ops/policy.toml`, built from domain types (loading the file
/// belongs to the binary crate).
fn shipped_policy() -> FieldPolicy {
    use FieldGroup::*;
    FieldPolicy::new(
        [
            (
                AgencyKind::Police,
                vec![
                    Reasons,
                    Incidents,
                    Evictions,
                    Engagement,
                    Attendance,
                    Risk,
                    PersonalDetails,
                ],
            ),
            (
                AgencyKind::SocialServices,
                vec![
                    Reasons,
                    Incidents,
                    Evictions,
                    Engagement,
                    Attendance,
                    Risk,
                    PersonalDetails,
                    ContactDetails,
                ],
            ),
            // Every group.
            (AgencyKind::InterventionCentre, FieldGroup::ALL.to_vec()),
            (
                AgencyKind::ProgrammeProvider,
                vec![
                    Reasons,
                    Engagement,
                    Attendance,
                    Risk,
                    PersonalDetails,
                    ContactDetails,
                    Notes,
                ],
            ),
            (
                AgencyKind::Probation,
                vec![Reasons, Engagement, Attendance, Risk, PersonalDetails],
            ),
            (AgencyKind::Court, vec![Engagement, Attendance]),
            (
                AgencyKind::Auditor,
                vec![
                    Reasons, Incidents, Evictions, Engagement, Attendance, Risk, Notes,
                ],
            ),
        ],
        [Incidents, Evictions, Engagement, Attendance, Risk],
    )
}

/// Need to know: `grant` + `redact_case` per case view, and `redact_event` over a case's
/// events with one grant per case, as the query service applies them.
fn policy(c: &mut Criterion) {
    let registry = registry();
    let policy = shipped_policy();
    let cases = cases(CASES);
    // Views with their personal details opened, as the query service holds them.
    let views: Vec<CaseView> = cases.iter().map(|case| fold(case, &registry)).collect();
    let events: usize = cases.iter().map(Vec::len).sum();
    // A broad, a mixed and a narrow reader.
    let readers = [
        ("intervention_centre", AgencyKind::InterventionCentre),
        ("programme_provider", AgencyKind::ProgrammeProvider),
        ("court", AgencyKind::Court),
    ];

    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(views.len() as u64));
    for (name, kind) in readers {
        g.bench_function(BenchmarkId::new("grant + redact_case", name), |b| {
            b.iter_batched(
                || views.clone(),
                |mut views| {
                    for v in &mut views {
                        policy
                            .grant(kind, v.consent(), handoff_domain::policy::Side::of(v))
                            .redact_case(v);
                    }
                    views
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.throughput(Throughput::Elements(events as u64));
    for (name, kind) in readers {
        g.bench_function(
            BenchmarkId::new("grant per case + redact_event", name),
            |b| {
                b.iter_batched(
                    || cases.clone(),
                    |mut cases| {
                        for (case, view) in cases.iter_mut().zip(&views) {
                            let grant = policy.grant(
                                kind,
                                view.consent(),
                                handoff_domain::policy::Side::of(view),
                            );
                            for e in case.iter_mut() {
                                grant.redact_event(e);
                            }
                        }
                        cases
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

/// Sealed before it leaves the agency: the publisher's seal to the transport key, the
/// exchange's opening (one key agreement per publisher session, cached) and its
/// re-sealing under the subject's key, per event of the workload.
fn transport(c: &mut Criterion) {
    let envelopes = stream(STREAM_EVENTS);
    let keys = TransportKeys::generate(1_790_000_000).expect("transport keys");
    let sealer = Sealer::new(&keys.current_public()).expect("sealer");
    let opener = Opener::new(keys.clone());
    let sealed: Vec<Envelope> = envelopes
        .iter()
        .map(|e| {
            let mut s = e.clone();
            sealer.seal(&mut s).expect("sealed");
            s
        })
        .collect();
    let private = sealed.iter().filter(|e| e.transport_seal.is_some()).count();
    eprintln!(
        "transport: {} envelopes, {private} carry private parts (details or free text)",
        envelopes.len()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let ring = keyring(dir.path());

    let mut g = c.benchmark_group("transport");
    g.throughput(Throughput::Elements(envelopes.len() as u64));
    g.bench_function(BenchmarkId::new("seal", envelopes.len()), |b| {
        b.iter_batched(
            || envelopes.clone(),
            |mut batch| {
                for e in &mut batch {
                    sealer.seal(e).expect("sealed");
                }
                batch
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function(BenchmarkId::new("open", envelopes.len()), |b| {
        b.iter_batched(
            || sealed.clone(),
            |mut batch| {
                for e in &mut batch {
                    opener.open(e).expect("opens");
                }
                batch
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function(BenchmarkId::new("seal+open", envelopes.len()), |b| {
        b.iter_batched(
            || envelopes.clone(),
            |mut batch| {
                for e in &mut batch {
                    sealer.seal(e).expect("sealed");
                    opener.open(e).expect("opens");
                }
                batch
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function(BenchmarkId::new("open+reseal", envelopes.len()), |b| {
        b.iter_batched(
            || sealed.clone(),
            |mut batch| {
                for e in &mut batch {
                    opener.open(e).expect("opens");
                    if let Some(parts) = take_private(e, 1) {
                        black_box(
                            ring.seal(&e.subject_pseudonym, &e.source_agency, &e.event_id, &parts)
                                .expect("sealed"),
                        );
                    }
                }
                batch
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let mut g = c.benchmark_group("transport-agreement");
    g.bench_function("hpke setup (sender)", |b| {
        b.iter(|| black_box(Sealer::new(&keys.current_public()).expect("sealer")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = envelope, fold_cases, chain, verify_export, policy, transport
}
criterion_main!(benches);

//! The sled store on real files: append, indexes, quarantine, atomic commits,
//! reopen, and refusal of a damaged store.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::{Agency, AgencyKind, Effects, Position, Registry, admit};
use handoff_log::{
    CaseFilter, Log, LogError, NewRecord, StoreOptions, WriteBatch, is_intact, runs,
};
use prost::Message;

fn registry() -> Registry {
    Registry::new([
        Agency {
            id: "police".into(),
            name: "P".into(),
            kind: AgencyKind::Police,
        },
        Agency {
            id: "ic".into(),
            name: "IC".into(),
            kind: AgencyKind::InterventionCentre,
        },
    ])
    .expect("registry")
}

/// Test case `name`'s id: the police open every test case, under their own id.
fn case(name: &str) -> String {
    format!("police/{name}")
}

fn envelope(n: u64, name: &str, event: Event) -> Envelope {
    Envelope {
        event_id: uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000 + n, &[n as u8; 10])
            .into_uuid()
            .to_string(),
        source_agency: "police".into(),
        case_id: case(name),
        subject_pseudonym: format!("police/subj-{name}"),
        occurred_at: Some(handoff_contract::time::from_unix_ms(1_700_000_000_000)),
        schema_version: 1,
        event: Some(event),
        ..Envelope::default()
    }
}

fn incident() -> Event {
    Event::IncidentReported(IncidentReported::default())
}

/// Stages one event the way ingest does: admitted against the log plus the batch,
/// appended with the case it changes, then the listing it changes.
fn stage(batch: &mut WriteBatch<'_>, e: &Envelope, stream_sequence: u64) {
    let at = Position {
        sequence: batch.next_sequence(),
        recorded_at_ms: 1_700_000_000_000,
    };
    let Effects { case, listing, .. } = admit(&*batch, e, &registry(), at)
        .expect("read")
        .expect("accepted");
    batch
        .append(
            NewRecord {
                stream_sequence,
                recorded_at_unix_ms: at.recorded_at_ms,
                envelope: &e.encode_to_vec(),
                event_id: &e.event_id,
                agency: &e.source_agency,
                sealed_details: None,
            },
            case.map(|c| *c),
        )
        .expect("append");
    if let Some(change) = listing {
        batch.directory(change);
    }
}

/// Appends envelopes the way ingest does, one stream sequence each, in one commit.
async fn append_all(log: &Log, envelopes: &[Envelope], first_stream_seq: u64) {
    let mut batch = log.batch();
    for (i, e) in envelopes.iter().enumerate() {
        stage(&mut batch, e, first_stream_seq + i as u64);
    }
    log.commit(batch).await.expect("commit");
}

#[tokio::test]
async fn appended_records_chain_and_index_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let events: Vec<Envelope> = (1..=5)
        .map(|n| envelope(n, &format!("c{}", n % 2), incident()))
        .collect();
    {
        let log = Log::open(dir.path()).expect("open");
        append_all(&log, &events[..3], 10).await;
        append_all(&log, &events[3..], 20).await;
        let head = log.head();
        assert_eq!(head.sequence, 5);
        assert_eq!(head.stream_position, 21);
    }
    let log = Log::open(dir.path()).expect("reopen");
    assert_eq!(log.head().sequence, 5);
    let records: Vec<LogRecord> = log
        .records(0, 0)
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(
        records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert!(records.iter().all(is_intact));
    assert_eq!(log.case_records(&case("c1")).expect("c1").len(), 3);
    assert_eq!(
        log.case(&case("c0")).expect("c0").expect("exists").version,
        2
    );
    let receipt = log
        .receipt_for("police", &events[2].event_id)
        .expect("lookup")
        .expect("found");
    assert_eq!(receipt.sequence, 3);
    assert!(
        log.receipt_for("ic", &events[2].event_id)
            .expect("lookup")
            .is_none(),
        "another agency's receipt is not shown"
    );
    {
        let batch = log.batch();
        assert!(
            batch
                .duplicate_of("police", &events[2].event_id)
                .expect("read")
                .is_some()
        );
        assert!(
            batch
                .duplicate_of("ic", &events[2].event_id)
                .expect("read")
                .is_none(),
            "event ids are scoped to the agency that published them"
        );
    }
    let all_of = |v: CaseView| Ok(CaseFilter::default().matches(&v).then_some(v));
    let (all, more) = log.list_cases("", 1, all_of).expect("list");
    assert_eq!((all.len(), more), (1, true));
    let (rest, more) = log.list_cases(&all[0].case_id, 10, all_of).expect("list");
    assert_eq!((rest.len(), more), (1, false));
    // The past is re-folded from the records: c1 after its first event, at sequence 1.
    let past = log
        .case_as_of(&case("c1"), 2, &registry())
        .expect("as of")
        .expect("existed");
    assert_eq!(past.version, 1);
    let now = log.case(&case("c1")).expect("c1").expect("exists");
    let refolded = log
        .case_as_of(&case("c1"), 5, &registry())
        .expect("as of")
        .expect("exists");
    assert_eq!(
        refolded, now,
        "re-folding all records gives the stored projection"
    );
}

#[tokio::test]
async fn inbox_follows_referrals() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path()).expect("open");
    let referral = Event::ReferralMade(ReferralMade {
        referral_id: "r1".into(),
        to_agency: "ic".into(),
        ..Default::default()
    });
    append_all(
        &log,
        &[envelope(1, "c", incident()), envelope(2, "c", referral)],
        1,
    )
    .await;
    assert_eq!(log.inbox("ic").expect("inbox").len(), 1);
    let mut accept = envelope(
        3,
        "c",
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r1".into(),
        }),
    );
    accept.source_agency = "ic".into();
    append_all(&log, &[accept], 3).await;
    assert!(log.inbox("ic").expect("inbox").is_empty());
}

#[tokio::test]
async fn an_uncommitted_batch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path()).expect("open");
    append_all(&log, &[envelope(1, "c", incident())], 1).await;
    {
        let mut batch = log.batch();
        stage(&mut batch, &envelope(2, "d", incident()), 2);
        batch
            .quarantine(
                QuarantineEntry {
                    stream_sequence: 3,
                    ..Default::default()
                },
                &Receipt::default(),
                "police",
            )
            .expect("staged");
        // dropped without commit, as when the process dies before the flush
    }
    assert_eq!(log.head().sequence, 1);
    assert_eq!(log.head().stream_position, 1);
    assert!(log.case(&case("d")).expect("read").is_none());
    assert!(log.quarantine(0, 10).expect("q").is_empty());
}

#[tokio::test]
async fn a_damaged_record_is_reported_not_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = Log::open(dir.path()).expect("open");
        append_all(
            &log,
            &[envelope(1, "c", incident()), envelope(2, "d", incident())],
            1,
        )
        .await;
    }
    // Tamper through sled itself (the on-disk format is sled's): rewrite record 1's envelope.
    tamper(dir.path(), |tree| {
        edit_record(tree, 1, |rec| {
            if let Some(rec) = rec {
                rec.envelope[0] ^= 0xff;
            }
        })
    });
    match Log::open(dir.path()) {
        Err(LogError::Corrupt { what, .. }) => assert_eq!(what, "record 1"),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

/// Rewrites entries of the log tree through sled itself, the exchange stopped.
fn tamper(dir: &std::path::Path, edit: impl FnOnce(&sled::Tree)) {
    // The log just closed may hold sled's file lock a moment longer (see open_sled).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("sled: {e}"),
        }
    };
    edit(&db.open_tree("log").expect("tree"));
    db.flush().expect("flush");
}

/// Rewrites the run holding record `seq` with that record edited (`None`: removed).
/// A run that loses its first record is stored under the next one's sequence.
fn edit_record(tree: &sled::Tree, seq: u64, edit: impl FnOnce(&mut Option<LogRecord>)) {
    let (run_key, run) = tree
        .range(key(b'r', &0u64.to_be_bytes())..=key(b'r', &seq.to_be_bytes()))
        .next_back()
        .expect("a run")
        .expect("read");
    let first = u64::from_be_bytes(run_key[1..].try_into().expect("a run key"));
    let mut records: Vec<Option<LogRecord>> = runs::records_of(first, &run)
        .expect("a run")
        .into_iter()
        .map(|(_, encoded)| Some(LogRecord::decode(encoded).expect("a record")))
        .collect();
    let at = (seq - first) as usize;
    edit(&mut records[at]);
    let start = if at == 0 && records[0].is_none() {
        seq + 1
    } else {
        first
    };
    let kept: Vec<LogRecord> = records.into_iter().flatten().collect();
    tree.remove(&run_key).expect("remove the run");
    let mut builder = runs::RunBuilder::default();
    let mut rewritten: Vec<_> = kept
        .iter()
        .filter_map(|rec| builder.push(rec.sequence, &rec.encode_to_vec()))
        .collect();
    rewritten.extend(builder.finish());
    assert!(rewritten.len() <= 1, "one run in, at most one out");
    if let Some((_, value)) = rewritten.pop() {
        tree.insert(key(b'r', &start.to_be_bytes()), value)
            .expect("write the run");
    }
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(rest);
    k
}

#[tokio::test]
async fn a_rebuild_puts_back_dropped_altered_and_extra_projection_entries_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let events: Vec<Envelope> = (1..=9)
        .map(|n| envelope(n, &format!("c{}", n % 3), incident()))
        .collect();
    let exact = {
        let log = Log::open(dir.path()).expect("open");
        append_all(&log, &events, 1).await;
        log.projection_digest().expect("digest")
    };
    // Damage three projection entries (layout in lib.rs): one dropped, one altered, one extra.
    tamper(dir.path(), |tree| {
        tree.remove(key(b'v', case("c1").as_bytes()))
            .expect("drop a view");
        let id = uuid::Uuid::parse_str(&events[0].event_id).expect("uuid");
        let mut event_key = b"police\0".to_vec();
        event_key.extend_from_slice(id.as_bytes());
        tree.insert(key(b'e', &event_key), &b"garbage"[..])
            .expect("alter an index entry");
        let mut ghost = key(b'c', b"ghost\0");
        ghost.extend_from_slice(&99u64.to_be_bytes());
        tree.insert(ghost, &[] as &[u8]).expect("add an entry");
    });
    let log = Log::open(dir.path()).expect("open");
    assert_ne!(log.projection_digest().expect("digest"), exact);

    let rebuilt = log.rebuild_projections(&registry()).expect("rebuild");
    assert_eq!(
        (rebuilt.records, rebuilt.cases, rebuilt.corrected),
        (9, 3, 3)
    );
    assert_eq!(log.projection_digest().expect("digest"), exact);
    let again = log.rebuild_projections(&registry()).expect("rebuild");
    assert_eq!(again.corrected, 0);
}

#[tokio::test]
async fn a_rebuild_names_the_first_damaged_or_missing_record_in_any_chunk() {
    // More records than the tail that opening checks (1024) and than a reader's chunk
    // (1024), so damage early on is found only by the rebuild, in each reader's chunks.
    let events: Vec<Envelope> = (1..=4000)
        .map(|n| envelope(n, &format!("c{}", n % 50), incident()))
        .collect();
    type Damage = fn(&sled::Tree);
    let cases: [(&str, Damage); 4] = [
        ("record 5", |tree: &sled::Tree| {
            edit_record(tree, 5, |rec| {
                if let Some(rec) = rec {
                    rec.envelope[3] ^= 0x01;
                }
            });
        }),
        ("record 1500", |tree: &sled::Tree| {
            edit_record(tree, 1500, |rec| *rec = None);
        }),
        ("record 2049", |tree: &sled::Tree| {
            // The first of a reader's chunk, and of a run.
            edit_record(tree, 2049, |rec| *rec = None);
        }),
        (
            // Two damages: the earlier one is named, whichever reader finds it.
            "record 700",
            |tree: &sled::Tree| {
                edit_record(tree, 1800, |rec| *rec = None);
                edit_record(tree, 700, |rec| *rec = None);
            },
        ),
    ];
    for (expected, damage) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let log = Log::open(dir.path()).expect("open");
            append_all(&log, &events, 1).await;
        }
        tamper(dir.path(), damage);
        let log = Log::open(dir.path()).expect("the tail is intact, so it opens");
        match log.rebuild_projections(&registry()) {
            Err(LogError::Corrupt { what, .. }) => assert_eq!(what, expected),
            other => panic!("expected {expected} to be named, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_store_whose_rebuild_was_cut_off_is_not_served_until_rebuilt() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = Log::open(dir.path()).expect("open");
        append_all(&log, &[envelope(1, "c", incident())], 1).await;
    }
    // As if a rebuild had started and the process died.
    tamper(dir.path(), |tree| {
        tree.insert(&b"mrebuilding"[..], &[] as &[u8])
            .expect("marker");
    });
    match Log::open(dir.path()) {
        Err(LogError::RebuildUnfinished { .. }) => {}
        other => panic!("expected RebuildUnfinished, got {other:?}"),
    }
    let log = Log::open_with(
        dir.path(),
        &StoreOptions {
            rebuilding: true,
            ..Default::default()
        },
    )
    .expect("open to rebuild");
    let rebuilt = log.rebuild_projections(&registry()).expect("rebuild");
    assert_eq!((rebuilt.records, rebuilt.corrected), (1, 0));
    drop(log);
    Log::open(dir.path()).expect("served again after the rebuild");
}

#[tokio::test]
async fn a_rebuild_puts_back_a_dropped_directory_listing() {
    let dir = tempfile::tempdir().expect("tmp");
    let listing = |n: u64, event: Event| Envelope {
        source_agency: "ic".into(),
        case_id: String::new(),
        subject_pseudonym: String::new(),
        ..envelope(n, "", event)
    };
    let offer = |n: u64, id: &str| {
        listing(
            n,
            Event::ServiceOffered(ServiceOffered {
                service_id: id.into(),
                name: format!("service {id} v{n}"),
                phone: "+420 387 000 000".into(),
                ..ServiceOffered::default()
            }),
        )
    };
    let events = [
        offer(1, "a"),
        offer(2, "b"),
        offer(3, "c"),
        offer(4, "a"),
        listing(
            5,
            Event::ServiceWithdrawn(ServiceWithdrawn {
                service_id: "c".into(),
                reason: "closed".into(),
            }),
        ),
    ];
    let exact = {
        let log = Log::open(dir.path()).expect("open");
        append_all(&log, &[envelope(6, "case-1", incident())], 1).await;
        append_all(&log, &events, 2).await;
        let names: Vec<String> = log
            .directory()
            .expect("directory")
            .into_iter()
            .map(|l| l.offer.unwrap_or_default().name)
            .collect();
        assert_eq!(names, ["service a v4", "service b v2"]);
        log.projection_digest().expect("digest")
    };
    tamper(dir.path(), |tree| {
        tree.remove(key(b'd', b"ic\0a")).expect("drop a listing");
        tree.insert(key(b'd', b"ic\0c"), &b"stale"[..])
            .expect("bring back a withdrawn one");
    });
    let log = Log::open(dir.path()).expect("open");
    assert_ne!(log.projection_digest().expect("digest"), exact);
    let rebuilt = log.rebuild_projections(&registry()).expect("rebuild");
    assert_eq!(
        (
            rebuilt.records,
            rebuilt.cases,
            rebuilt.listings,
            rebuilt.corrected
        ),
        (6, 1, 2, 2)
    );
    assert_eq!(log.projection_digest().expect("digest"), exact);
    assert_eq!(log.directory().expect("directory").len(), 2);
}

#[tokio::test]
async fn an_import_of_a_stores_records_into_a_fresh_store_has_the_same_projections() {
    // More records than a chunk (1024), over cases on both folders.
    let events: Vec<Envelope> = (1..=3000)
        .map(|n| envelope(n, &format!("c{}", n % 40), incident()))
        .collect();
    let from = tempfile::tempdir().expect("tmp");
    let log = Log::open(from.path()).expect("open");
    append_all(&log, &events, 1).await;
    let records: Vec<LogRecord> = log.records(1, 0).map(|r| r.expect("record")).collect();

    let to = tempfile::tempdir().expect("tmp");
    let copy = Log::open(to.path()).expect("open");
    let imported = copy
        .import_records(records.into_iter().map(Ok::<_, String>), &registry())
        .expect("import");
    assert_eq!((imported.records, imported.cases), (3000, 40));
    assert_eq!(copy.head(), log.head());
    assert_eq!(
        copy.projection_digest().expect("digest"),
        log.projection_digest().expect("digest")
    );
    // What the import wrote is what a rebuild derives.
    assert_eq!(
        copy.rebuild_projections(&registry())
            .expect("rebuild")
            .corrected,
        0
    );
    drop(copy);
    Log::open(to.path()).expect("served after the import");
}

#[tokio::test]
async fn an_import_cut_off_leaves_a_store_that_is_not_served() {
    let events: Vec<Envelope> = (1..=50)
        .map(|n| envelope(n, &format!("c{}", n % 5), incident()))
        .collect();
    let from = tempfile::tempdir().expect("tmp");
    let log = Log::open(from.path()).expect("open");
    append_all(&log, &events, 1).await;
    let mut records: Vec<Result<LogRecord, String>> =
        log.records(1, 0).map(|r| Ok(r.expect("record"))).collect();
    records.insert(30, Err("line 32 is not JSON".into()));

    let to = tempfile::tempdir().expect("tmp");
    let copy = Log::open(to.path()).expect("open");
    match copy.import_records(records, &registry()) {
        Err(LogError::Corrupt { what, detail }) => {
            assert_eq!(what, "record 31");
            assert!(detail.contains("line 32 is not JSON"), "{detail}");
        }
        other => panic!("expected the unreadable line to stop the import, got {other:?}"),
    }
    drop(copy);
    assert!(
        Log::open(to.path()).is_err(),
        "a half-imported store opened"
    );
}

#[tokio::test]
async fn a_long_case_committed_in_uneven_batches_reads_back_whole_and_rebuilds_unchanged() {
    // 600 events of one case across three chunks of its index (256 each), beside a
    // short case, in batches that end on, before and after a chunk's end.
    let events: Vec<Envelope> = (1..=640)
        .map(|n| envelope(n, if n % 16 == 0 { "short" } else { "long" }, incident()))
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path()).expect("open");
    let mut at = 0;
    for size in [100, 173, 1, 1, 300, 65] {
        append_all(&log, &events[at..at + size], at as u64 + 1).await;
        at += size;
    }
    assert_eq!(at, events.len());

    let long = log.case_records(&case("long")).expect("the long case");
    let expected: Vec<u64> = (1..=640).filter(|n| n % 16 != 0).collect();
    assert_eq!(
        long.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        expected
    );
    assert!(long.iter().all(is_intact));
    // Records read from the middle of a run, across runs and batches.
    let middle: Vec<u64> = log
        .records(250, 290)
        .map(|r| r.expect("record").sequence)
        .collect();
    assert_eq!(middle, (250..=290).collect::<Vec<_>>());
    for seq in [1, 16, 17, 273, 274, 275, 640] {
        assert_eq!(
            log.record(seq).expect("read").map(|r| r.sequence),
            Some(seq)
        );
    }
    assert_eq!(log.record(641).expect("read"), None);
    // The commits wrote the case index exactly as a rebuild derives it.
    assert_eq!(
        log.rebuild_projections(&registry())
            .expect("rebuild")
            .corrected,
        0
    );
    drop(log);
    let log = Log::open(dir.path()).expect("reopen");
    assert_eq!(log.case_records(&case("short")).expect("short").len(), 40);
}

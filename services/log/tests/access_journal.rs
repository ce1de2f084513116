//! The access journal on real files: a read whose record sled had not yet written
//! to disk is still in the access log after a restart, with its hash, and a torn
//! journal tail costs nothing that was answered.

use handoff_contract::v1::AccessRecord;
use handoff_log::Log;

fn read_of(case: &str) -> AccessRecord {
    AccessRecord {
        at_unix_ms: 1_767_225_600_000,
        agency: "police".into(),
        rpc: "GetCase".into(),
        case_ids: vec![case.into()],
        subjects: vec![format!("subject-of-{case}")],
        purpose: "assessment".into(),
        outcome: "ok".into(),
        ..AccessRecord::default()
    }
}

/// The journal's frames of `records`: length, then the record.
fn frames(records: &[AccessRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let body = prost::Message::encode_to_vec(r);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// Opens the store at `dir` with `journal` as its access journal (as a crash left it).
fn opened_with_journal(dir: &std::path::Path, journal: &[u8]) -> Log {
    std::fs::write(dir.join("access.journal"), journal).expect("the journal in place");
    Log::open(dir).expect("reopens")
}

/// Every read the store's access log holds (all by the police here).
fn reads(log: &Log) -> Vec<AccessRecord> {
    log.access().report_by_agency("police").expect("a report")
}

/// Records reads of `cases` in a store at `dir`, returns the journal as it stood
/// after the last one was answered, and the records as the access log holds them.
async fn journal_after(dir: &std::path::Path, cases: &[&str]) -> (Vec<u8>, Vec<AccessRecord>) {
    let log = Log::open(dir).expect("a fresh log");
    for case in cases {
        log.access().record(read_of(case)).await.expect("recorded");
    }
    let journal = std::fs::read(dir.join("access.journal")).expect("the journal");
    let recorded = reads(&log);
    // The file is kept long, zeros after the frames; the frames are the records as stored.
    let used = frames(&recorded);
    assert_eq!(journal[..used.len()], used[..]);
    assert!(journal[used.len()..].iter().all(|b| *b == 0));
    (journal, recorded)
}

#[tokio::test]
async fn reads_that_sled_never_wrote_come_back_from_the_journal() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (journal, recorded) = journal_after(&tmp.path().join("a"), &["c1", "c2", "c3"]).await;
    assert_eq!(recorded.len(), 3);

    // A store whose sled has none of them (as after a crash before sled's own
    // write), beside the journal the crash left.
    let b = tmp.path().join("b");
    drop(Log::open(&b).expect("an empty log"));
    let log = opened_with_journal(&b, &journal);
    assert_eq!(reads(&log), recorded);
    assert_eq!(
        log.access().report("c2", false).expect("by case"),
        vec![recorded[1].clone()]
    );
    assert_eq!(
        log.access()
            .report("subject-of-c3", true)
            .expect("by subject"),
        vec![recorded[2].clone()]
    );
    // Taken in, flushed, and the journal emptied; the chain goes on from the recovered head.
    let emptied = std::fs::read(b.join("access.journal")).expect("journal");
    assert!(emptied.iter().all(|b| *b == 0));
    let next = log.access().record(read_of("c4")).await.expect("recorded");
    assert_eq!(next, 4);
    let all = reads(&log);
    assert_eq!(all[3].prev_hash, recorded[2].hash);
}

#[tokio::test]
async fn a_torn_tail_keeps_every_whole_read_and_a_journal_sled_already_has_adds_nothing() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (journal, recorded) = journal_after(&tmp.path().join("a"), &["c1", "c2"]).await;

    let b = tmp.path().join("b");
    drop(Log::open(&b).expect("an empty log"));
    let whole = frames(&recorded);
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..whole.len() / 3]); // a third frame cut mid-write
    torn.resize(journal.len(), 0);
    let log = opened_with_journal(&b, &torn);
    assert_eq!(reads(&log), recorded);
    drop(log);

    // The same frames again, now that sled holds them: nothing is doubled.
    let log = opened_with_journal(&b, &journal);
    assert_eq!(reads(&log), recorded);
}

#[tokio::test]
async fn a_forged_journal_adds_no_read_to_the_access_log() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let b = tmp.path().join("b");
    let (_, recorded) = journal_after(&b, &["c1"]).await;
    // An insider with disk access writes a frame of a read that never happened,
    // hashed right but not linked to the log's head.
    let mut forged = read_of("c-forged");
    forged.sequence = 2;
    forged.prev_hash = vec![0; 32];
    forged.hash = handoff_log::access::access_hash(&forged).to_vec();
    let frame = frames(&[forged]);
    let log = opened_with_journal(&b, &frame);
    assert_eq!(reads(&log), recorded);
    assert!(
        log.access()
            .report("c-forged", false)
            .expect("by case")
            .is_empty()
    );
}

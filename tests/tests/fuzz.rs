//! Fuzzing, proptest-style, on a time budget: the envelope decoder and the
//! whole per-message decision (real sled log, real keyring), the adapters'
//! JSON, JSON Lines and CSV readers and mappers, and the domain fold. No
//! input may panic; every message must end decided.
//!
//! Each target runs for `HANDOFF_FUZZ_SECS` seconds (default 4; CI uses the
//! default, `HANDOFF_FUZZ_SECS=600 cargo test -p handoff-e2e --test fuzz` runs
//! longer) with a fresh random seed per round, and prints how many inputs ran.

use std::time::{Duration, Instant};

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::{Agency, AgencyKind, Position, Registry, evolve};
use handoff_e2e::events::{agency_secret, incident, referral};
use handoff_e2e::{CENTRE, POLICE};
use handoff_ingest::{Incoming, decide};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

/// Runs `test` on inputs from `strategy` until the time budget is spent; returns the count.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl FnMut(S::Value)) -> u64 {
    let budget = Duration::from_secs(
        std::env::var("HANDOFF_FUZZ_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4),
    );
    let started = Instant::now();
    // proptest's runner takes an `Fn`; the targets keep state (a log batch, counters).
    let test = std::cell::RefCell::new(test);
    let runs = std::cell::Cell::new(0u64);
    while started.elapsed() < budget {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |v| {
                (test.borrow_mut())(v);
                runs.set(runs.get() + 1);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    eprintln!(
        "{name}: {} inputs in {:.1} s, no panic",
        runs.get(),
        started.elapsed().as_secs_f64()
    );
    runs.get()
}

fn registry() -> Registry {
    Registry::new(handoff_e2e::AGENCIES.iter().map(|(id, kind)| Agency {
        id: (*id).into(),
        name: (*id).into(),
        kind: kind.parse::<AgencyKind>().expect("kind"),
    }))
    .expect("registry")
}

fn valid_envelopes() -> Vec<Vec<u8>> {
    let mut with_details = incident(1, "f1");
    if let Some(Event::IncidentReported(i)) = with_details.event.as_mut() {
        i.subject_details = Some(PersonalDetails {
            full_name: "Fuzz Person".into(),
            ..Default::default()
        });
    }
    [
        with_details,
        referral(2, "f1", "r1", CENTRE),
        incident(3, "f2"),
    ]
    .iter()
    // Sealed as publishers seal them, so mutations reach the transport seal too.
    .map(|e| handoff_e2e::seal(e).encode_to_vec())
    .collect()
}

/// Bytes that are nearly valid envelopes: a valid one with bytes flipped, cut or appended.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = valid_envelopes();
    (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<Option<usize>>(),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(move |(i, flips, cut, tail)| {
            let mut b = seeds[i].clone();
            for (at, byte) in flips {
                if !b.is_empty() {
                    let at = at % b.len();
                    b[at] ^= byte;
                }
            }
            if let Some(cut) = cut {
                b.truncate(cut % (b.len() + 1));
            }
            b.extend(tail);
            b
        })
}

fn subjects() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("handoff.events.police-north.incident_reported".to_string()),
        Just("handoff.events.police-north.referral_made".to_string()),
        Just("handoff.events.exchange.subject_erasure_requested".to_string()),
        "handoff\\.events\\.[a-z.-]{0,30}",
        ".{0,40}",
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_is_decided_and_nothing_panics() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = handoff_log::Log::open(dir.path()).expect("log");
    let keyring =
        handoff_keyring::Keyring::load(dir.path(), handoff_keyring::Kek::generate().expect("kek"))
            .expect("keyring");
    let registry = registry();
    let opener = handoff_transport::Opener::new(handoff_e2e::transport_keys().clone());
    let input = (
        prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), mutated()],
        subjects(),
        proptest::option::of("[ -~]{0,40}"),
    );
    let mut stream_sequence = 0u64;
    let mut decided = 0u64;
    let mut batch = log.batch();
    fuzz("decide", input, |(payload, subject, msg_id)| {
        stream_sequence += 1;
        let incoming = Incoming {
            subject: &subject,
            payload: &payload,
            msg_id: msg_id.as_deref(),
            stream_sequence,
            recorded_at_unix_ms: 1_790_000_000_000 + stream_sequence as i64,
            ingress: None,
        };
        let limits = handoff_ingest::Limits {
            max_message_bytes: 1 << 20,
            quarantine_quota_bytes: 1 << 20,
        };
        let decision = decide(&mut batch, &registry, &keyring, &opener, limits, &incoming)
            .expect("a log or key store fault, not an input problem");
        assert_ne!(
            decision.receipt.status,
            receipt::Status::Unspecified as i32,
            "every message ends decided"
        );
        assert_eq!(batch.stream_position(), stream_sequence, "and is consumed");
        decided += 1;
    });
    let head = log.commit(batch).await.expect("commit");
    assert_eq!(head.stream_position, decided);
    // What was accepted still chains.
    let records: Vec<_> = log
        .records(1, head.sequence)
        .collect::<Result<_, _>>()
        .expect("read");
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
}

#[test]
fn the_envelope_decoder_never_panics() {
    fuzz(
        "decode",
        prop_oneof![proptest::collection::vec(any::<u8>(), 0..2000), mutated()],
        |bytes| {
            if let Ok(e) = Envelope::decode(bytes.as_slice()) {
                let _ = handoff_domain::validate::validate_envelope(&e);
                let _ = e.encode_to_vec();
            }
        },
    );
}

/// JSON-ish text: valid documents with fields changed, arbitrary text, deep nesting.
fn json_texts() -> impl Strategy<Value = String> {
    let example = include_str!("../../schemas/examples/police-eviction.json").to_string();
    prop_oneof![
        ".{0,300}",
        "[\\[\\]{}\",:0-9a-z ]{0,300}",
        (0usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n / 2))),
        (any::<usize>(), ".{0,20}").prop_map(move |(at, junk)| {
            let mut t = example.clone();
            let mut at = at % (t.len() + 1);
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            t.insert_str(at, &junk);
            t
        }),
    ]
}

#[test]
fn the_adapters_take_any_json_without_panicking() {
    let kinds = [
        handoff_adapters::AdapterKind::Police {
            refer_to: Some(CENTRE.into()),
        },
        handoff_adapters::AdapterKind::Programme,
        handoff_adapters::AdapterKind::Referral,
        handoff_adapters::AdapterKind::Generic,
    ];
    let secret = agency_secret(POLICE);
    fuzz("adapters-json", json_texts(), |text| {
        for document in handoff_adapters::document::json_documents(&text) {
            let Ok(value) = &document.value else { continue };
            for kind in &kinds {
                let _ = kind.events(POLICE, &secret, value);
            }
        }
    });
}

#[test]
fn the_police_csv_reader_takes_any_bytes_without_panicking() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("records.csv");
    let example = include_str!("../../schemas/examples/police-records.csv").to_string();
    let kind = handoff_adapters::AdapterKind::Police { refer_to: None };
    let secret = agency_secret(POLICE);
    let input = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        (any::<usize>(), "[,\"\\n a-z0-9:-]{0,30}").prop_map(move |(at, junk)| {
            let mut t = example.clone().into_bytes();
            let at = at % (t.len() + 1);
            t.splice(at..at, junk.into_bytes());
            t
        }),
    ];
    fuzz("adapters-csv", input, |bytes| {
        std::fs::write(&path, &bytes).expect("write");
        if let Ok(documents) = kind.read(&path) {
            for d in documents {
                if let Ok(value) = &d.value {
                    let _ = kind.events(POLICE, &secret, value);
                }
            }
        }
    });
}

#[test]
fn the_fold_takes_any_envelope_sequence_without_panicking() {
    let registry = registry();
    let seeds = valid_envelopes();
    let any_envelope = prop_oneof![
        mutated().prop_filter_map("decodes", |b| Envelope::decode(b.as_slice()).ok()),
        (0..seeds.len()).prop_map(move |i| Envelope::decode(seeds[i].as_slice()).expect("seed")),
    ];
    fuzz(
        "fold",
        proptest::collection::vec(any_envelope, 0..12),
        |events| {
            let mut view: Option<CaseView> = None;
            for (i, e) in events.iter().enumerate() {
                let at = Position {
                    sequence: i as u64 + 1,
                    recorded_at_ms: 0,
                };
                if let Ok(next) = evolve(view.as_ref(), e, &registry, at) {
                    view = Some(next);
                }
            }
        },
    );
}

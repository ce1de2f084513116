//! A realistic synthetic workload, the same for the same seed: cases that move
//! from the police through the intervention centre to the programme provider,
//! 10-20 lifecycle events each, with personal details, interleaved as many
//! cases progress at once.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;

/// The police, who open every case.
pub const POLICE: &str = "police-north";
/// The intervention centre, the police's first referral.
pub const CENTRE: &str = "ic-north";
/// The programme provider the centre refers on to.
pub const PROGRAMME: &str = "ngo-men-north";

/// Fewest and most events of one case.
pub const EVENTS_PER_CASE: std::ops::RangeInclusive<usize> = 10..=20;

/// A small deterministic generator (SplitMix64): the workload must not depend on a
/// crate's idea of randomness changing between versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (inclusive).
    pub fn between(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        let span = range.end() - range.start() + 1;
        range.start() + self.next_u64() % span
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

const FIRST_NAMES: &[&str] = &[
    "Marek", "Jan", "Tomas", "Peter", "Lukas", "Andrej", "Milan", "Josef", "Karel", "Martin",
];
const LAST_NAMES: &[&str] = &[
    "Novak",
    "Svoboda",
    "Dvorak",
    "Cerny",
    "Prochazka",
    "Kucera",
    "Vesely",
    "Horak",
    "Nemec",
];
const AREAS: &[&str] = &["North", "North-East", "Riverside", "Old Town", "Hills"];
const NARRATIVES: &[&str] = &[
    "Neighbours called at night after shouting and a door being broken; the partner had bruises on her arm and asked for protection.",
    "Second call-out this month. Threats against the partner in front of the children; the subject was intoxicated and left before the patrol arrived.",
    "The partner reported repeated control of money and phone and one push against the wall; she does not want to press charges yet.",
];

/// Every event of case number `case` for `seed`, in the order they happen.
/// Event times start at `epoch_ms` and advance by hours and days as a real case would.
pub fn case_events(seed: u64, case: u64, epoch_ms: i64) -> Vec<Envelope> {
    let mut rng = Rng::new(seed ^ case.wrapping_mul(0xA24B_AED4_963E_E407));
    let length = rng.between(*EVENTS_PER_CASE.start() as u64..=*EVENTS_PER_CASE.end() as u64);
    // The police open every case, under their own id, about a subject they introduce.
    let case_id = format!("{POLICE}/case-{seed}-{case}");
    let subject = format!("{POLICE}/subj-{seed}-{case}");
    let details = PersonalDetails {
        full_name: format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
        date_of_birth: format!(
            "19{:02}-{:02}-{:02}",
            rng.between(60..=99),
            rng.between(1..=12),
            rng.between(1..=28)
        ),
        phone: format!(
            "+420 {:03} {:03} {:03}",
            rng.between(600..=799),
            rng.between(0..=999),
            rng.between(0..=999)
        ),
        address: format!(
            "{} {}, {}",
            rng.pick(LAST_NAMES),
            rng.between(1..=120),
            rng.pick(AREAS)
        ),
    };
    let mut at = epoch_ms + (case as i64 % 10_000) * 60_000;
    let mut events: Vec<(&str, Event)> = Vec::new();
    let incident_ref = format!("PN-{seed}-{case}");

    events.push((
        POLICE,
        Event::IncidentReported(IncidentReported {
            incident_ref: incident_ref.clone(),
            narrative: (*rng.pick(NARRATIVES)).into(),
            area: (*rng.pick(AREAS)).into(),
            linked_persons: vec![LinkedPerson {
                role: linked_person::Role::Victim as i32,
                age_band: "30-39".into(),
            }],
            subject_details: Some(details.clone()),
        }),
    ));
    if rng.chance(70) {
        events.push((
            POLICE,
            Event::EvictionOrdered(EvictionOrdered {
                incident_ref,
                ordered_at: Some(handoff_contract::time::from_unix_ms(at)),
                duration_days: 10,
                protected_area: "the shared flat and 100 m around it".into(),
                ..Default::default()
            }),
        ));
    }
    events.push((
        POLICE,
        Event::ReferralMade(ReferralMade {
            referral_id: "r1".into(),
            to_agency: CENTRE.into(),
            reason: "Eviction order: notice to the intervention centre".into(),
            court_ordered: false,
            subject_details: Some(details.clone()),
            ..Default::default()
        }),
    ));
    events.push((
        CENTRE,
        Event::ReferralAcknowledged(ReferralAcknowledged {
            referral_id: "r1".into(),
        }),
    ));
    events.push((
        CENTRE,
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r1".into(),
        }),
    ));
    for attempt in 0..rng.between(1..=2) {
        let reached = attempt > 0 || rng.chance(60);
        events.push((
            CENTRE,
            Event::ContactAttempted(ContactAttempted {
                channel: ContactChannel::Phone as i32,
                outcome: if reached {
                    ContactOutcome::Reached
                } else {
                    ContactOutcome::NoAnswer
                } as i32,
                note: if reached {
                    "Explained the order and the programme.".into()
                } else {
                    String::new()
                },
            }),
        ));
        if reached {
            break;
        }
    }
    events.push((
        CENTRE,
        Event::RiskAssessed(RiskAssessed {
            instrument: "ODARA".into(),
            level: *rng.pick(&[RiskLevel::Medium, RiskLevel::High, RiskLevel::VeryHigh]) as i32,
            note: String::new(),
        }),
    ));
    events.push((
        CENTRE,
        Event::ReferralMade(ReferralMade {
            referral_id: "r2".into(),
            to_agency: PROGRAMME.into(),
            reason: "Agreed to attend the perpetrator programme".into(),
            court_ordered: false,
            subject_details: Some(details),
            ..Default::default()
        }),
    ));
    events.push((
        PROGRAMME,
        Event::ReferralAcknowledged(ReferralAcknowledged {
            referral_id: "r2".into(),
        }),
    ));
    events.push((
        PROGRAMME,
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r2".into(),
        }),
    ));
    events.push((
        PROGRAMME,
        Event::ContactAttempted(ContactAttempted {
            channel: ContactChannel::Phone as i32,
            outcome: ContactOutcome::Reached as i32,
            note: String::new(),
        }),
    ));
    events.push((
        PROGRAMME,
        Event::IntakeCompleted(IntakeCompleted {
            note: "Motivated; works shifts.".into(),
        }),
    ));
    events.push((
        PROGRAMME,
        Event::ConsentGiven(ConsentGiven {
            scope: "share attendance with referrers".into(),
        }),
    ));
    events.push((
        PROGRAMME,
        Event::Enrolled(Enrolled {
            programme: "Responsibility group (24 sessions)".into(),
            planned_sessions: 24,
        }),
    ));
    // Sessions fill the case up to its length; the last two events end it.
    let sessions = length.saturating_sub(events.len() as u64 + 2);
    for n in 1..=sessions {
        let event = if rng.chance(85) {
            Event::SessionAttended(SessionAttended {
                session_number: n as u32,
                note: String::new(),
            })
        } else {
            Event::SessionMissed(SessionMissed {
                session_number: n as u32,
                reason: "ill".into(),
                excused: rng.chance(50),
            })
        };
        events.push((PROGRAMME, event));
    }
    if rng.chance(75) {
        events.push((
            PROGRAMME,
            Event::ProgrammeCompleted(ProgrammeCompleted {
                note: String::new(),
            }),
        ));
    } else {
        events.push((
            PROGRAMME,
            Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
                reason: "moved away".into(),
                reason_code: OutcomeReason::MovedOutOfRegion as i32,
            }),
        ));
    }
    events.push((
        PROGRAMME,
        Event::CaseClosed(CaseClosed {
            reason: "programme ended".into(),
            reason_code: OutcomeReason::Unspecified as i32,
        }),
    ));
    // Cases still in progress: the lifecycle stops at its length.
    events.truncate(length as usize);

    events
        .into_iter()
        .enumerate()
        .map(|(i, (agency, event))| {
            at += rng.between(10 * 60_000..=36 * 3_600_000) as i64;
            Envelope {
                event_id: event_id(seed, case, i as u64, at, &mut rng),
                source_agency: agency.into(),
                case_id: case_id.clone(),
                subject_pseudonym: subject.clone(),
                occurred_at: Some(handoff_contract::time::from_unix_ms(at)),
                actor: format!("{agency}-staff-{}", rng.between(1..=20)),
                correlation_id: case_id.clone(),
                schema_version: handoff_contract::SCHEMA_VERSION,
                event: Some(event),
                ..Envelope::default()
            }
        })
        .collect()
}

/// A UUIDv7 at `at_ms` whose random part is drawn from the workload's generator.
fn event_id(seed: u64, case: u64, index: u64, at_ms: i64, rng: &mut Rng) -> String {
    let mut random = [0u8; 10];
    random[..8]
        .copy_from_slice(&(rng.next_u64() ^ seed ^ case.rotate_left(20) ^ index).to_be_bytes());
    random[8..].copy_from_slice(&(index as u16).to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(at_ms.max(0) as u64, &random)
        .into_uuid()
        .to_string()
}

/// The workload's events in publishing order: `concurrent` cases progress at once,
/// each case's events in its own order, until `events` events are out.
pub fn events(seed: u64, events: u64, concurrent: usize) -> impl Iterator<Item = Envelope> {
    const EPOCH_MS: i64 = 1_767_225_600_000; // 2026-01-01
    let mut rng = Rng::new(seed);
    let mut next_case = 0u64;
    let mut lanes: Vec<std::collections::VecDeque<Envelope>> = Vec::new();
    let mut left = events;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        while lanes.len() < concurrent.max(1) {
            lanes.push(case_events(seed, next_case, EPOCH_MS).into());
            next_case += 1;
        }
        let lane = (rng.next_u64() % lanes.len() as u64) as usize;
        let event = lanes[lane].pop_front();
        if lanes[lane].is_empty() {
            lanes.swap_remove(lane);
        }
        left -= 1;
        event
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_domain::{Agency, AgencyKind, Known, Position, Registry, admit};

    /// What admission knows in these tests: the cases admitted so far.
    #[derive(Default)]
    struct Admitted(std::collections::HashMap<String, CaseView>);

    impl Known for Admitted {
        type Error = std::convert::Infallible;
        fn case(&self, case_id: &str) -> Result<Option<CaseView>, Self::Error> {
            Ok(self.0.get(case_id).cloned())
        }
        fn listing(&self, _: &str, _: &str) -> Result<Option<ServiceListing>, Self::Error> {
            Ok(None)
        }
        fn knows_subject(&self, agency: &str, subject: &str) -> Result<bool, Self::Error> {
            Ok(self.0.values().any(|v| {
                v.subject_pseudonym == subject && v.parties.iter().any(|p| p.agency == agency)
            }))
        }
        fn revoked(&self, _: &str) -> Result<bool, Self::Error> {
            Ok(false)
        }
    }

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
        .expect("registry")
    }

    #[test]
    fn the_same_seed_gives_the_same_workload_and_another_seed_another() {
        let a: Vec<_> = events(7, 500, 16).collect();
        let b: Vec<_> = events(7, 500, 16).collect();
        let c: Vec<_> = events(8, 500, 16).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_case_has_10_to_20_events_and_the_domain_accepts_all_of_them() {
        let registry = registry();
        let mut lengths = std::collections::BTreeSet::new();
        let mut known = Admitted::default();
        for case in 0..300 {
            let case_events = case_events(3, case, 1_767_225_600_000);
            assert!(EVENTS_PER_CASE.contains(&case_events.len()));
            lengths.insert(case_events.len());
            for (i, e) in case_events.iter().enumerate() {
                let at = Position {
                    sequence: i as u64 + 1,
                    recorded_at_ms: 1_767_225_600_000,
                };
                // Admission, as ingest decides: who may write to the case, ids owned by
                // their opener, and the fold.
                let effects = admit(&known, e, &registry, at)
                    .unwrap_or_else(|never| match never {})
                    .unwrap_or_else(|r| {
                        panic!("case {case} event {i} ({:?}) refused: {r}", e.event)
                    });
                let change = effects
                    .case
                    .expect("every workload event is about its case");
                known.0.insert(e.case_id.clone(), change.after);
            }
        }
        assert_eq!(lengths.len(), 11, "every length from 10 to 20 occurs");
    }

    #[test]
    fn interleaved_events_keep_each_cases_order_and_ids_are_unique() {
        let all: Vec<_> = events(1, 5_000, 64).collect();
        assert_eq!(all.len(), 5_000);
        let ids: std::collections::HashSet<_> = all.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), all.len());
        let mut last_time = std::collections::HashMap::new();
        for e in &all {
            let t = e.occurred_at.map(|t| t.seconds).unwrap_or_default();
            let prev = last_time.insert(e.case_id.clone(), t);
            assert!(
                prev.is_none_or(|p| p < t),
                "case {} out of order",
                e.case_id
            );
        }
    }
}

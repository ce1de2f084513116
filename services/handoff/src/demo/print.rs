//! How the demo prints what an agency sees: a case (with its eviction's statutory
//! clocks and what bears on the endangered person's safety) and an inbox.

use handoff_contract::v1::*;
use handoff_domain::status_name;

/// One case as the reading agency may see it.
pub fn case(view: &CaseView) {
    println!(
        "  status {} | held by {} | version {}",
        status_name(view.status()),
        view.holder,
        view.version
    );
    // Stored sealed under the subject's key; opened per read, then cut to what the caller's kind may see.
    let who = if view.protected_person.is_some() {
        "endangered person"
    } else {
        "subject"
    };
    match (&view.subject_details, view.subject_details_erased) {
        (_, true) => println!(
            "  {who} {}: personal details ERASED",
            view.subject_pseudonym
        ),
        (Some(d), false) => println!(
            "  {who} {}: {:?} born {:?} | phone {:?} | address {:?}",
            view.subject_pseudonym, d.full_name, d.date_of_birth, d.phone, d.address
        ),
        (None, false) => println!(
            "  {who} {}: personal details not shown to this agency",
            view.subject_pseudonym
        ),
    }
    if let Some(p) = &view.protected_person {
        println!(
            "  protection case: {} | shelter {:?} | school {:?}",
            p.role().as_str_name(),
            p.shelter,
            p.school
        );
    }
    println!(
        "  opened {} by {} | first contact {} | intake {}",
        ts(&view.opened_at),
        view.opened_by,
        ts(&view.first_contact_at),
        ts(&view.intake_at)
    );
    if !view.programme.is_empty() || view.planned_sessions > 0 {
        println!(
            "  programme {:?} ({}, reports to {:?}): {} attended, {} missed of {} | risk {} ({})",
            view.programme,
            view.participation().as_str_name(),
            view.reports_to,
            view.sessions_attended,
            view.sessions_missed,
            view.planned_sessions,
            view.risk_level().as_str_name(),
            view.risk_instrument
        );
    }
    for r in &view.referrals {
        println!(
            "  referral {} {} -> {}: {}",
            r.referral_id,
            r.from_agency,
            r.to_agency,
            r.state().as_str_name()
        );
    }
    for e in &view.evictions {
        println!(
            "  eviction {} ordered {} by {} | ends {} ({}) | protected home {:?}",
            e.incident_ref,
            ts(&e.ordered_at),
            e.ordered_by,
            ts(&e.ends_at),
            e.duration_source,
            e.protected_area
        );
        for c in &e.clocks {
            println!(
                "    {:<36} {:<18} due {} met {} {}",
                c.rule,
                c.state().as_str_name().trim_start_matches("CLOCK_STATE_"),
                ts(&c.due_at),
                ts(&c.met_at),
                if c.duty_of.is_empty() {
                    String::new()
                } else {
                    format!("(duty of {})", c.duty_of)
                }
            );
        }
    }
    if !view.endangered.is_empty() || !view.safety_facts.is_empty() {
        println!(
            "  safety: {} linked protection case(s), support {:?}; {} safety fact(s) and alert(s)",
            view.endangered.len(),
            view.endangered
                .iter()
                .map(|l| l.support_agency.as_str())
                .collect::<Vec<_>>(),
            view.safety_facts.len()
        );
    }
    for r in &view.compliance_reports {
        println!(
            "  compliance report to {}: {} ({} attended, {} missed)",
            r.to_agency,
            r.report().as_str_name(),
            r.sessions_attended,
            r.sessions_missed
        );
    }
}

/// An agency's inbox, one line per item.
pub fn inbox(items: &[InboxItem]) {
    for i in items {
        let due = match (&i.due_at, i.overdue) {
            (_, true) => " OVERDUE".to_string(),
            (Some(due), false) => format!(" due {due}"),
            (None, false) => String::new(),
        };
        let basis = if i.basis.is_empty() {
            String::new()
        } else {
            format!(" | basis: {}", i.basis)
        };
        println!(
            "  inbox: {} {} {} from {} (case {}){due}{basis}",
            i.kind().as_str_name().trim_start_matches("KIND_"),
            i.rule,
            i.item_id,
            i.from_agency,
            i.case_id
        );
    }
}

/// A time, or "-".
pub fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
}

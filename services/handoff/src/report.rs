//! `handoff report`: the coordinator's funnel statistics as CSV, JSON or
//! Markdown, and optionally a bar chart (hand-written SVG).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use handoff_contract::json::to_json;
use handoff_contract::v1::statistics_service_client::StatisticsServiceClient;
use handoff_contract::v1::{GetStatsRequest, OutcomeReason, StatsCell, StatsReport, StatsRow};
use handoff_domain::reason;
use tonic::transport::Channel;

use crate::query_cli::ServerArgs;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Comma-separated, one row per month and referring kind.
    Csv,
    /// The report as the exchange sent it (handoff.v1.StatsReport in JSON).
    Json,
    /// A Markdown table.
    Md,
}

/// `handoff report`'s arguments.
#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// First month, YYYY-MM (UTC, month of each case's first referral).
    #[arg(long)]
    month: String,
    /// Last month, YYYY-MM (inclusive); default: the first month only.
    #[arg(long)]
    to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Also write the funnel over time as an SVG bar chart to this file.
    #[arg(long)]
    chart: Option<PathBuf>,
}

/// The stages as columns: (header, label in the chart, cell).
/// Reads one stage's cell from a row.
type Column = fn(&StatsRow) -> Option<StatsCell>;

const STAGES: [(&str, &str, Column); 7] = [
    ("referred", "Referred", |r| r.referred),
    ("acknowledged", "Acknowledged", |r| r.acknowledged),
    ("contacted", "First contact", |r| r.contacted),
    ("intake", "Intake", |r| r.intake),
    ("enrolled", "Enrolled", |r| r.enrolled),
    ("completed", "Completed", |r| r.completed),
    ("dropped_out", "Dropped out", |r| r.dropped_out),
];

async fn connect(args: &ServerArgs) -> anyhow::Result<StatisticsServiceClient<Channel>> {
    let read = |name: String| {
        let path = args.certs.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut endpoint = Channel::from_shared(args.server.clone())
        .with_context(|| format!("bad server address {}", args.server))?;
    if args.server.starts_with("https://") {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(
                "ca.pem".into(),
            )?))
            .identity(tonic::transport::Identity::from_pem(
                read(format!("{}.pem", args.agency))?,
                read(format!("{}.key", args.agency))?,
            ));
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the exchange at {}", args.server))?;
    Ok(StatisticsServiceClient::new(channel))
}

/// Fetches the report, prints it, and writes the chart if asked.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let report = connect(&args.server)
        .await?
        .get_stats(GetStatsRequest {
            from_month: args.month.clone(),
            to_month: args.to.clone().unwrap_or_default(),
            purpose: "handoff report".into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("the exchange refused the report: {}", s.message()))?
        .into_inner()
        .report
        .context("the exchange answered without a report")?;
    let text = match args.format {
        Format::Csv => csv(&report),
        Format::Json => serde_json::to_string_pretty(&to_json(&report, "handoff.v1.StatsReport"))?,
        Format::Md => markdown(&report),
    };
    println!("{}", text.trim_end());
    if let Some(path) = &args.chart {
        std::fs::write(path, svg(&report))
            .with_context(|| format!("cannot write the chart to {}", path.display()))?;
    }
    Ok(())
}

/// The cell of one reason code in a row (absent from an older exchange's answer: suppressed).
fn reason_cell(row: &StatsRow, code: OutcomeReason) -> Option<StatsCell> {
    row.reasons
        .iter()
        .find(|c| c.reason == code as i32)
        .and_then(|c| c.cell)
}

/// A cell as text: its value, or "<threshold" when suppressed.
fn shown(cell: Option<StatsCell>, threshold: u32) -> String {
    match cell {
        Some(c) if !c.suppressed => c.value.to_string(),
        _ => format!("<{threshold}"),
    }
}

/// A median in seconds as text, in whole hours for people to read.
fn hours(cell: Option<StatsCell>, threshold: u32) -> String {
    match cell {
        Some(c) if !c.suppressed => format!("{:.1}", c.value as f64 / 3600.0),
        _ => format!("n<{threshold}"),
    }
}

/// The report as CSV (suppressed cells as "<threshold").
pub fn csv(report: &StatsReport) -> String {
    let t = report.suppress_below;
    let mut out = String::from("month,referring_kind");
    for (name, _, _) in STAGES {
        out.push(',');
        out.push_str(name);
    }
    out.push_str(",median_to_first_contact_secs,median_to_intake_secs");
    for code in reason::ALL {
        let _ = write!(out, ",fell_out_{}", reason::name(code));
    }
    out.push('\n');
    for row in &report.rows {
        let _ = write!(out, "{},{}", row.month, row.referring_kind);
        for (_, _, get) in STAGES {
            let _ = write!(out, ",{}", shown(get(row), t));
        }
        let _ = write!(
            out,
            ",{},{}",
            shown(row.median_to_first_contact_secs, t),
            shown(row.median_to_intake_secs, t)
        );
        for code in reason::ALL {
            let _ = write!(out, ",{}", shown(reason_cell(row, code), t));
        }
        out.push('\n');
    }
    out
}

/// The report as a Markdown table (medians in hours).
pub fn markdown(report: &StatsReport) -> String {
    let t = report.suppress_below;
    let mut out = format!(
        "## Referral funnel {} to {}\n\nCounts below {t} are suppressed (shown as <{t}).\n\n| month | referring kind |",
        report.from_month, report.to_month
    );
    for (name, _, _) in STAGES {
        let _ = write!(out, " {name} |");
    }
    out.push_str(" median h to first contact | median h to intake |\n|---|---|");
    out.push_str(&"---:|".repeat(STAGES.len() + 2));
    out.push('\n');
    for row in &report.rows {
        let _ = write!(out, "| {} | {} |", row.month, row.referring_kind);
        for (_, _, get) in STAGES {
            let _ = write!(out, " {} |", shown(get(row), t));
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            hours(row.median_to_first_contact_secs, t),
            hours(row.median_to_intake_secs, t)
        );
    }
    out.push_str(
        "\n### Why cases fell out\n\nDeclined at their last referral and taken up by nobody, dropped out (or excluded), or closed without completion, by reason code.\n\n| month | referring kind |",
    );
    for code in reason::ALL {
        let _ = write!(out, " {} |", reason::name(code));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---:|".repeat(reason::ALL.len()));
    out.push('\n');
    for row in &report.rows {
        let _ = write!(out, "| {} | {} |", row.month, row.referring_kind);
        for code in reason::ALL {
            let _ = write!(out, " {} |", shown(reason_cell(row, code), t));
        }
        out.push('\n');
    }
    out.push_str(
        "\n### Statutory deadlines\n\nThe deadlines of evictions (policy.toml `[[statutory]]`) by the month they fell due and the kind of agency whose duty they were.\n\n| month | duty of | fell due | met in time | met late | overdue | % met in time |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for row in &report.deadlines {
        let percent = match &row.met_in_time_percent {
            Some(c) if !c.suppressed => format!("{} %", c.value),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {percent} |",
            row.month,
            row.duty_kind,
            shown(row.fell_due, t),
            shown(row.met_in_time, t),
            shown(row.met_late, t),
            shown(row.overdue, t),
        );
    }
    out
}

/// Escapes text for XML content and attribute values.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const COLOURS: [&str; 7] = [
    "#1f4e79", "#2e75b6", "#4a9fd8", "#70ad47", "#548235", "#2f6b2f", "#c55a11",
];

/// The funnel over time (the "all" row of each month): one group of bars per
/// month, one bar per stage; suppressed values drawn hatched grey at the
/// threshold's height and labelled "<threshold".
pub fn svg(report: &StatsReport) -> String {
    let t = report.suppress_below;
    let rows: Vec<&StatsRow> = report
        .rows
        .iter()
        .filter(|r| r.referring_kind == "all")
        .collect();
    let max = rows
        .iter()
        .flat_map(|r| STAGES.iter().filter_map(|(_, _, get)| get(r)))
        .map(|c| if c.suppressed { u64::from(t) } else { c.value })
        .max()
        .unwrap_or(0)
        .max(u64::from(t))
        .max(1);
    let (bar, gap, left, top, plot_h) = (22.0, 30.0, 70.0, 60.0, 300.0);
    let group = bar * STAGES.len() as f64 + gap;
    let width = left + group * rows.len().max(1) as f64 + 180.0;
    let height = top + plot_h + 80.0;
    let base = top + plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<defs><pattern id="suppressed" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#d9d9d9"/><line x1="0" y1="0" x2="0" y2="6" stroke="#808080" stroke-width="2"/></pattern></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" font-size="18" text-anchor="middle">{}</text>"##,
        width / 2.0,
        xml(&format!(
            "Referral funnel by month of first referral, {} to {}",
            report.from_month, report.to_month
        ))
    );
    // Axes, ticks and labels.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="black"/>
<line x1="{left}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>"##,
        width - 170.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        xml("Cases"),
        left + (width - 250.0) / 2.0,
        base + 50.0,
        xml("Month of first referral (UTC)")
    );
    for i in 0..=4 {
        let v = max as f64 * f64::from(i) / 4.0;
        let y = base - plot_h * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{left}" y2="{y}" stroke="black"/><text x="{}" y="{}" text-anchor="end">{:.0}</text>"##,
            left - 4.0,
            left - 6.0,
            y + 4.0,
            v
        );
    }
    for (g, row) in rows.iter().enumerate() {
        let x0 = left + gap / 2.0 + group * g as f64;
        for (i, (_, label, get)) in STAGES.iter().enumerate() {
            let cell = get(row);
            let (value, suppressed) = match cell {
                Some(c) if !c.suppressed => (c.value, false),
                _ => (u64::from(t), true),
            };
            let h = plot_h * value as f64 / max as f64;
            let x = x0 + bar * i as f64;
            let fill = if suppressed {
                "url(#suppressed)".to_string()
            } else {
                COLOURS[i].to_string()
            };
            let text = if suppressed {
                format!("<{t}")
            } else {
                value.to_string()
            };
            let _ = writeln!(
                s,
                r##"<rect x="{x}" y="{}" width="{}" height="{h}" fill="{fill}" stroke="{}"><title>{}</title></rect><text x="{}" y="{}" font-size="9" text-anchor="middle">{}</text>"##,
                base - h,
                bar - 2.0,
                if suppressed { "#808080" } else { "none" },
                xml(&format!("{} {label}: {text}", row.month)),
                x + (bar - 2.0) / 2.0,
                base - h - 3.0,
                xml(&text)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{}</text>"##,
            x0 + bar * STAGES.len() as f64 / 2.0,
            base + 18.0,
            xml(&row.month)
        );
    }
    // Legend.
    let lx = width - 160.0;
    for (i, (_, label, _)) in STAGES.iter().enumerate() {
        let y = top + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"##,
            COLOURS[i],
            lx + 18.0,
            y + 10.0,
            xml(label)
        );
    }
    let y = top + 20.0 * STAGES.len() as f64;
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{y}" width="12" height="12" fill="url(#suppressed)" stroke="#808080"/><text x="{}" y="{}">{}</text>
</svg>"##,
        lx + 18.0,
        y + 10.0,
        xml(&format!("suppressed (<{t})"))
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatsReport {
        let c = |v: Option<u64>| {
            Some(StatsCell {
                suppressed: v.is_none(),
                value: v.unwrap_or(0),
            })
        };
        StatsReport {
            from_month: "2026-03".into(),
            to_month: "2026-03".into(),
            suppress_below: 5,
            rows: vec![StatsRow {
                month: "2026-03".into(),
                referring_kind: "all".into(),
                referred: c(Some(12)),
                acknowledged: c(Some(10)),
                contacted: c(None),
                median_to_intake_secs: c(Some(7200)),
                reasons: vec![handoff_contract::v1::ReasonCell {
                    reason: OutcomeReason::NoCapacity as i32,
                    cell: c(Some(6)),
                }],
                ..StatsRow::default()
            }],
            deadlines: vec![handoff_contract::v1::DeadlineRow {
                month: "2026-03".into(),
                duty_kind: "police".into(),
                fell_due: c(Some(18)),
                met_in_time: c(Some(6)),
                met_late: c(Some(5)),
                overdue: c(Some(7)),
                met_in_time_percent: c(Some(33)),
            }],
        }
    }

    #[test]
    fn csv_and_markdown_show_suppressed_cells_as_below_the_threshold() {
        let text = csv(&report());
        assert!(text.starts_with("month,referring_kind,referred,"), "{text}");
        assert!(
            text.contains("2026-03,all,12,10,<5,<5,<5,<5,<5,<5,7200"),
            "{text}"
        );
        // Then one column per reason code, the ones the row lacks suppressed.
        assert!(text.contains(",7200,6,<5,<5,"), "{text}");
        assert!(
            text.lines()
                .next()
                .is_some_and(|h| h.ends_with(",fell_out_other,fell_out_unspecified")),
            "{text}"
        );
        let md = markdown(&report());
        assert!(md.contains("| 2026-03 | all | 12 | 10 | <5 |"), "{md}");
        assert!(md.contains("| n<5 | 2.0 |"), "{md}");
        assert!(md.contains("| no_capacity | not_eligible |"), "{md}");
        assert!(md.contains("| 2026-03 | all | 6 | <5 |"), "{md}");
        assert!(
            md.contains("| 2026-03 | police | 18 | 6 | 5 | 7 | 33 % |"),
            "{md}"
        );
    }

    #[test]
    fn the_chart_escapes_text_and_labels_suppressed_bars() {
        let chart = svg(&report());
        assert!(chart.starts_with("<?xml") && chart.trim_end().ends_with("</svg>"));
        assert!(chart.contains("&lt;5") && !chart.contains(">>"));
        // Pattern tile and background, seven bars, eight legend keys.
        assert_eq!(chart.matches("<rect").count(), 2 + 7 + 8);
        assert_eq!(xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}

//! `handoff directory …`: the public service directory, read over gRPC and
//! exported as a static, self-contained HTML page and Open Referral HSDS 3 JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use handoff_contract::v1::directory_service_client::DirectoryServiceClient;
use handoff_contract::v1::{ListServicesRequest, ServiceListing};
use serde_json::{Value, json};

use crate::query_cli::ServerArgs;

/// Service directory commands.
#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Write DIR/index.html (a static public page) and DIR/hsds.json (Open Referral HSDS 3).
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the current listings as JSON.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only services serving this area.
        #[arg(long, default_value = "")]
        area: String,
        /// Only services offered in this language.
        #[arg(long, default_value = "")]
        language: String,
        /// Only services whose name, description or eligibility contain this.
        #[arg(long, default_value = "")]
        text: String,
    },
}

/// Runs a directory command.
pub async fn run(cmd: DirectoryCommand) -> anyhow::Result<()> {
    match cmd {
        DirectoryCommand::Export { server, out } => {
            let listings = fetch(&server, ListServicesRequest::default()).await?;
            export(&listings, &out)?;
            println!(
                "wrote {} services to {} and {}",
                listings.len(),
                out.join("index.html").display(),
                out.join("hsds.json").display()
            );
            Ok(())
        }
        DirectoryCommand::List {
            server,
            area,
            language,
            text,
        } => {
            let req = ListServicesRequest {
                area,
                language,
                text,
            };
            let listings = fetch(&server, req).await?;
            println!("{}", serde_json::to_string_pretty(&hsds(&listings))?);
            Ok(())
        }
    }
}

async fn fetch(
    server: &ServerArgs,
    req: ListServicesRequest,
) -> anyhow::Result<Vec<ServiceListing>> {
    let channel =
        crate::query_cli::channel_as(&server.server, &server.certs, &server.agency).await?;
    let response = DirectoryServiceClient::new(channel)
        .list_services(req)
        .await
        .context("the exchange refused to list the directory")?;
    Ok(response.into_inner().services)
}

/// Writes `index.html` and `hsds.json` for `listings` into `out`.
pub fn export(listings: &[ServiceListing], out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = |name: &str, body: String| {
        let path = out.join(name);
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))
    };
    write("index.html", html(listings))?;
    write(
        "hsds.json",
        serde_json::to_string_pretty(&hsds(listings))? + "\n",
    )?;
    Ok(())
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A stable UUID-shaped id for a name (HSDS ids are UUIDs; the same listing gets
/// the same id in every export).
fn id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The listings as Open Referral HSDS 3: `organizations` and `services`, each service
/// carrying its `service_areas`, `languages`, `phones` and `schedules`.
pub fn hsds(listings: &[ServiceListing]) -> Value {
    let mut organizations: BTreeMap<&str, Value> = BTreeMap::new();
    let mut services = Vec::new();
    for l in listings {
        let Some(o) = &l.offer else { continue };
        let org_id = id(&["organization", &l.agency]);
        let name = if l.agency_name.is_empty() {
            &l.agency
        } else {
            &l.agency_name
        };
        organizations.entry(&l.agency).or_insert_with(|| {
            json!({
                "id": org_id,
                "name": name,
                "description": "",
                "identifiers": [{
                    "id": id(&["identifier", &l.agency]),
                    "identifier_scheme": "handoff-agency",
                    "identifier_type": "Handoff agency id",
                    "identifier": l.agency,
                }],
            })
        });
        let service_id = id(&["service", &l.agency, &o.service_id]);
        let areas: Vec<Value> = o
            .areas
            .iter()
            .map(|a| json!({"id": id(&["area", &service_id, a]), "service_id": service_id, "name": a}))
            .collect();
        let languages: Vec<Value> = o
            .languages
            .iter()
            .map(|code| json!({"id": id(&["language", &service_id, code]), "service_id": service_id, "name": code, "code": code}))
            .collect();
        let phones: Vec<Value> = (!o.phone.is_empty())
            .then(|| json!({"id": id(&["phone", &service_id]), "service_id": service_id, "number": o.phone}))
            .into_iter()
            .collect();
        let schedules: Vec<Value> = (!o.opening_hours.is_empty())
            .then(|| json!({"id": id(&["schedule", &service_id]), "service_id": service_id, "description": o.opening_hours}))
            .into_iter()
            .collect();
        services.push(json!({
            "id": service_id,
            "organization_id": org_id,
            "name": o.name,
            "description": o.description,
            "url": o.url,
            "email": o.email,
            "status": "active",
            "application_process": o.how_to_refer,
            "eligibility_description": o.eligibility,
            "service_areas": areas,
            "languages": languages,
            "phones": phones,
            "schedules": schedules,
            "contacts": [],
        }));
    }
    json!({
        "organizations": organizations.into_values().collect::<Vec<_>>(),
        "services": services,
    })
}

/// The listings as one self-contained page: no external resources, every text escaped,
/// a card per service grouped by area, and a small filter that works without a server.
pub fn html(listings: &[ServiceListing]) -> String {
    // A service serving several areas is shown under each; one without any under "All areas".
    let mut by_area: BTreeMap<String, Vec<&ServiceListing>> = BTreeMap::new();
    for l in listings {
        let Some(o) = &l.offer else { continue };
        if o.areas.is_empty() {
            by_area.entry("All areas".into()).or_default().push(l);
        }
        for a in &o.areas {
            by_area.entry(a.clone()).or_default().push(l);
        }
    }
    let mut body = String::new();
    if by_area.is_empty() {
        body.push_str("<p>No services are listed at the moment.</p>\n");
    }
    for (area, items) in &by_area {
        body.push_str(&format!(
            "<section aria-labelledby=\"{a}\">\n<h2 id=\"{a}\">{}</h2>\n",
            esc(area),
            a = esc(&format!("area-{}", id(&[area])))
        ));
        for l in items {
            body.push_str(&card(l));
        }
        body.push_str("</section>\n");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Help for people who use violence: service directory</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;line-height:1.5;color:#111;background:#fff}}
article{{border:1px solid #666;border-radius:.5rem;padding:.75rem 1rem;margin:.75rem 0}}
h3{{margin:.2rem 0}} dt{{font-weight:bold}} dd{{margin:0 0 .4rem 0}}
a{{color:#0645ad}} label{{font-weight:bold}} input{{font-size:1rem;padding:.3rem;width:100%;max-width:30rem}}
</style>
</head>
<body>
<header>
<h1>Service directory</h1>
<p>Services in the region for people who use violence in close relationships, as the organisations offering them publish them.</p>
<p><label for="filter">Search services</label><br><input id="filter" type="search" autocomplete="off"></p>
</header>
<main>
{body}</main>
<script>
document.getElementById('filter').addEventListener('input',function(e){{var q=e.target.value.toLowerCase();document.querySelectorAll('article').forEach(function(a){{a.hidden=q!==''&&a.textContent.toLowerCase().indexOf(q)<0;}});}});
</script>
</body>
</html>
"#
    )
}

fn card(l: &ServiceListing) -> String {
    let Some(o) = &l.offer else {
        return String::new();
    };
    let by = if l.agency_name.is_empty() {
        &l.agency
    } else {
        &l.agency_name
    };
    let mut s = format!(
        "<article>\n<h3>{}</h3>\n<p>Offered by {}</p>\n",
        esc(&o.name),
        esc(by)
    );
    if !o.description.is_empty() {
        s.push_str(&format!("<p>{}</p>\n", esc(&o.description)));
    }
    s.push_str("<dl>\n");
    let mut field = |label: &str, html: String| {
        s.push_str(&format!("<dt>{label}</dt><dd>{html}</dd>\n"));
    };
    if !o.eligibility.is_empty() {
        field("Who it is for", esc(&o.eligibility));
    }
    if !o.languages.is_empty() {
        field("Languages", esc(&o.languages.join(", ")));
    }
    if !o.how_to_refer.is_empty() {
        field("How to get referred", esc(&o.how_to_refer));
    }
    if !o.opening_hours.is_empty() {
        field("Opening hours", esc(&o.opening_hours));
    }
    if !o.phone.is_empty() {
        let tel: String = o
            .phone
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        field(
            "Phone",
            format!("<a href=\"tel:{}\">{}</a>", esc(&tel), esc(&o.phone)),
        );
    }
    if !o.email.is_empty() {
        field(
            "Email",
            format!("<a href=\"mailto:{0}\">{0}</a>", esc(&o.email)),
        );
    }
    // The exchange accepts only http(s) addresses; checked again so no other scheme is linked.
    if o.url.starts_with("https://") || o.url.starts_with("http://") {
        field("Website", format!("<a href=\"{0}\">{0}</a>", esc(&o.url)));
    }
    s.push_str("</dl>\n</article>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_contract::v1::ServiceOffered;

    #[test]
    fn the_page_escapes_what_agencies_write() {
        let listing = ServiceListing {
            agency: "ngo".into(),
            agency_name: "NGO & Co".into(),
            offer: Some(ServiceOffered {
                service_id: "s".into(),
                name: "<script>alert(1)</script>".into(),
                areas: vec!["North \"1\"".into()],
                ..ServiceOffered::default()
            }),
            ..ServiceListing::default()
        };
        let page = html(std::slice::from_ref(&listing));
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("NGO &amp; Co"));
        assert!(page.contains("North &quot;1&quot;"));
        let doc = hsds(&[listing]);
        assert_eq!(doc["services"][0]["name"], "<script>alert(1)</script>");
        assert_eq!(doc["organizations"][0]["name"], "NGO & Co");
    }
}

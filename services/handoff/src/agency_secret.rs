//! `handoff agency-secret`: the secret an agency's adapter keys its case ids,
//! pseudonyms and event ids with. It is created at the agency, kept beside its
//! adapter's config and in its own backups, and never sent to the exchange.

use std::path::Path;

use anyhow::{Context, bail};
use handoff_adapters::AgencySecret;

/// Creates a new secret for `agency` in `out` (0600); refuses to replace one.
pub(crate) fn create(agency: &str, out: &Path) -> anyhow::Result<AgencySecret> {
    if !handoff_contract::names::is_valid_agency_id(agency) {
        bail!(
            "{agency:?} is not an agency id: use the id of its [[agency]] entry (lower-case letters, digits, '-' and '_')"
        );
    }
    if out.exists() {
        // Replacing it would silently start new case ids and pseudonyms for every record.
        bail!(
            "{} exists: refusing to overwrite an agency secret. Keep using it; to rotate on purpose \
             (new ids and pseudonyms, not linked to the old ones), move it away first",
            out.display()
        );
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let secret = AgencySecret::generate()?;
    crate::certs::write_private(out, &format!("{}\n", secret.to_hex()))?;
    Ok(secret)
}

/// The secret in `path`, created for `agency` first if there is none (the demo's agencies).
pub(crate) fn load_or_create(agency: &str, path: &Path) -> anyhow::Result<AgencySecret> {
    if path.exists() {
        Ok(AgencySecret::from_file(path)?)
    } else {
        create(agency, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secrets/police-north.secret");
        let secret = create("police-north", &path).expect("created");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().len(), 64);
        assert_eq!(
            AgencySecret::from_file(&path).expect("loads").to_hex(),
            secret.to_hex()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = create("police-north", &path)
            .expect_err("exists")
            .to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        assert_eq!(
            load_or_create("police-north", &path)
                .expect("loads")
                .to_hex(),
            secret.to_hex()
        );
        assert!(create("Not An Id", &dir.path().join("x")).is_err());
    }
}

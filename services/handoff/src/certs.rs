//! `handoff certs`: a development CA and one client certificate per agency
//! (rcgen; no openssl needed), plus the exchange's server certificate.
//!
//! Existing files are kept, so re-running after adding an agency issues only
//! the new certificate. The agency id is the certificate's common name.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::config::Config;

/// Writes a new file readable by its owner only (private keys, the KEK).
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Handoff");
    dn.push(DnType::CommonName, "Handoff development CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn load_or_create_key(path: &Path) -> anyhow::Result<(KeyPair, bool)> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok((
            KeyPair::from_pem(&pem).with_context(|| format!("{} is not a key", path.display()))?,
            false,
        ))
    } else {
        let key = KeyPair::generate()?;
        write_private(path, &key.serialize_pem())?;
        Ok((key, true))
    }
}

/// Issues what is missing in `out`; returns the files written.
pub fn issue(config: &Config, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let (ca_key, new_key) = load_or_create_key(&out.join("ca.key"))?;
    let params = ca_params()?;
    let ca_pem = out.join("ca.pem");
    if new_key || !ca_pem.exists() {
        if ca_pem.exists() {
            anyhow::bail!(
                "{} exists but ca.key was just created; remove both to start a new CA",
                ca_pem.display()
            );
        }
        std::fs::write(&ca_pem, params.self_signed(&ca_key)?.pem())?;
        written.push(ca_pem);
    }
    // The CA is rebuilt from the same name and key, so it signs as the ca.pem on disk.
    let issuer = Issuer::from_params(&params, &ca_key);

    let mut leaf = |name: &str, common_name: &str, org: &str, server: bool| -> anyhow::Result<()> {
        let cert_path = out.join(format!("{name}.pem"));
        if cert_path.exists() {
            return Ok(());
        }
        let key_path = out.join(format!("{name}.key"));
        if key_path.exists() {
            std::fs::remove_file(&key_path)?;
        }
        let (key, _) = load_or_create_key(&key_path)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if server {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.subject_alt_names = vec![SanType::URI(
                format!("urn:handoff:agency:{common_name}").try_into()?,
            )];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        std::fs::write(&cert_path, params.signed_by(&key, &issuer)?.pem())?;
        written.push(cert_path);
        written.push(key_path);
        Ok(())
    };
    leaf("server", "handoff-exchange", "Handoff", true)?;
    for agency in &config.agencies {
        leaf(&agency.id, &agency.id, &agency.name, false)?;
    }
    Ok(written)
}

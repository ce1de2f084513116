//! The transport keys of the exchanges under test: one set per test process, so
//! that every exchange a test starts (a cluster's nodes too) opens what the test
//! support seals, as a deployment's nodes share one keys file.

use std::path::Path;
use std::sync::OnceLock;

use handoff_contract::v1::Envelope;
use handoff_transport::{Sealer, TransportKeys, TransportPublic};

/// The transport keys every exchange of this test process holds.
pub fn transport_keys() -> &'static TransportKeys {
    static KEYS: OnceLock<TransportKeys> = OnceLock::new();
    KEYS.get_or_init(|| TransportKeys::generate(1_790_000_000).expect("transport keys"))
}

/// The public key publishers of the tests seal to.
pub fn transport_public() -> TransportPublic {
    transport_keys().current_public()
}

/// Seals an envelope's private parts as an adapter does before publishing.
pub fn seal(envelope: &Envelope) -> Envelope {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    let sealer = SEALER.get_or_init(|| Sealer::new(&transport_public()).expect("sealer"));
    let mut sealed = envelope.clone();
    sealer.seal(&mut sealed).expect("sealed");
    sealed
}

/// Writes the keys file (`keys`) and the public key file (`public`) an exchange and
/// its publishers read.
pub fn write_transport_files(keys: &Path, public: &Path) {
    if let Some(dir) = keys.parent() {
        std::fs::create_dir_all(dir).expect("secrets dir");
    }
    transport_keys().save(keys).expect("write transport keys");
    // Owner-only like everything beside it, whatever the test's umask.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(public).expect("open transport public key");
    std::io::Write::write_all(
        &mut file,
        format!("{}\n", transport_public().to_line()).as_bytes(),
    )
    .expect("write transport public key");
}

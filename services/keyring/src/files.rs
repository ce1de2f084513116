//! The key store's files: opening sled (waiting out its lock after a rewrite) and
//! finishing a rewrite a crash interrupted.

use std::path::Path;

use crate::{KEYS_DIR, KeyringError};

pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, KeyringError> {
    // sled releases its file lock from a background thread after the last handle
    // drops; a reopen right after a rewrite may briefly find it held.
    let mut tries = 0;
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return Ok(db),
            Err(e) if tries < 50 && matches!(e, sled::Error::Io(_)) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(source) => {
                return Err(KeyringError::Store {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Finishes or undoes a rewrite that a crash interrupted: the new store is complete
/// before the old one is moved away, so whichever exists whole wins.
pub(crate) fn recover(data_dir: &Path) -> Result<(), KeyringError> {
    let dir = data_dir.join(KEYS_DIR);
    let next = data_dir.join(format!("{KEYS_DIR}.next"));
    let old = data_dir.join(format!("{KEYS_DIR}.old"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyringError::Io { path, source }
    };
    if !dir.exists() && next.exists() {
        std::fs::rename(&next, &dir).map_err(io(&next))?;
    }
    if !dir.exists() && old.exists() {
        std::fs::rename(&old, &dir).map_err(io(&old))?;
    }
    for leftover in [&next, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(io(leftover))?;
        }
    }
    Ok(())
}

//! Private by default: `main` sets the umask so whatever the binary creates is its
//! owner's only; directories it finds already there are tightened here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Makes `dir` (`what` names it in the log) its owner's only, 0700, if group or
/// others may read, write or enter it; a directory it may not change is only warned about.
pub fn tighten_dir(dir: &Path, what: &str) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => tracing::warn!(
            dir = %dir.display(),
            was = %format!("{mode:04o}"),
            "{what} was open to group or others; tightened to 0700"
        ),
        Err(e) => tracing::warn!(
            dir = %dir.display(),
            mode = %format!("{mode:04o}"),
            error = %e,
            "{what} is open to group or others and cannot be tightened: chmod 0700 it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_directory_is_tightened_and_a_private_one_left() {
        let dir = tempfile::tempdir().expect("tmp");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        tighten_dir(&open, "test dir");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&open), 0o700);
        let private = dir.path().join("private");
        std::fs::create_dir(&private).expect("mkdir");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        tighten_dir(&private, "test dir");
        assert_eq!(mode(&private), 0o500, "already private: left as it is");
    }
}

//! The exchange's local admin socket, `<data dir>/admin.sock` (mode 0600): how
//! `handoff admin backup` asks the running exchange, which holds the store's
//! locks, for a consistent copy. Local on purpose: whoever may read the data
//! dir may back it up; nobody else can reach it.
//!
//! Protocol: one request line, one answer line (`ok …` or `error …`):
//! `backup <directory>`, or `revocations` (the agencies the log records as
//! revoked, space-separated, for `handoff nats-auth`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use handoff_keyring::Keyring;
use handoff_log::{Log, hex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::restore_gate::BackupInfo;

/// The socket's file name in the data dir.
pub const SOCKET: &str = "admin.sock";

/// Makes a backup of the log, the access log and the keyring at `out` (a new
/// directory), at one point of the stream: commits wait while it copies. It records
/// when it was made and at which position (`backup.json`), for the restore's age check.
pub async fn backup(log: &Log, keyring: &Keyring, out: &Path) -> anyhow::Result<String> {
    let paused = log.pause_commits().await;
    let head = log.copy_to(&paused, out)?;
    crate::private::tighten_dir(out, "the backup");
    keyring.copy_to(out)?;
    drop(paused);
    let info = BackupInfo::now(&head);
    info.write(out)?;
    Ok(format!(
        "ok sequence={} stream_position={} head={} made_at={}",
        head.sequence,
        head.stream_position,
        hex(&head.hash),
        info.made_at
    ))
}

async fn answer(line: &str, log: &Log, keyring: &Keyring) -> String {
    match line.trim().split_once(' ') {
        Some(("backup", path)) => match backup(log, keyring, Path::new(path.trim())).await {
            Ok(ok) => {
                tracing::info!(to = path.trim(), answer = %ok, "backup written");
                ok
            }
            Err(e) => format!("error {e:#}"),
        },
        _ if line.trim() == "revocations" => match log.revocations() {
            Ok(list) => {
                let names: Vec<String> = list.into_iter().map(|(agency, _)| agency).collect();
                format!("ok {}", names.join(" ")).trim_end().to_string()
            }
            Err(e) => format!("error {e}"),
        },
        _ => format!(
            "error unknown request {:?}; expected: backup <directory>, or revocations",
            line.trim()
        ),
    }
}

/// Serves admin requests until shutdown.
pub async fn serve(
    data_dir: PathBuf,
    log: Log,
    keyring: Arc<Keyring>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let path = data_dir.join(SOCKET);
    // A socket left by a killed process would block the bind.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let (reader, mut writer) = stream.into_split();
        let mut line = String::new();
        if BufReader::new(reader).read_line(&mut line).await.is_ok() {
            let reply = answer(&line, &log, &keyring).await;
            let _ = writer.write_all(format!("{reply}\n").as_bytes()).await;
        }
    }
}

/// Sends one request to the exchange serving `data_dir` and returns its answer.
pub async fn request(data_dir: &Path, line: &str) -> anyhow::Result<String> {
    let path = data_dir.join(SOCKET);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "cannot reach the exchange's admin socket {} (is `handoff serve` running with this config?)",
            path.display()
        )
    })?;
    let (reader, mut writer) = stream.into_split();
    writer.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(reader).read_line(&mut answer).await?;
    Ok(answer.trim().to_string())
}

/// Copies a backup younger than `max_age` into an empty data dir and checks that it
/// opens: the chain's tail verifies and the configured KEK opens the keyring. It leaves
/// the restore marker, so `serve` answers no read before it has caught up.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    kek: handoff_keyring::Kek,
    max_age: std::time::Duration,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        from.join("db").exists() && from.join(handoff_keyring::KEYS_DIR).exists(),
        "{} is not a Handoff backup (no store and keyring in it)",
        from.display()
    );
    let info = BackupInfo::read(from)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    info.check_age(max_age, now)
        .with_context(|| format!("{} is refused", from.display()))?;
    if data_dir.exists() {
        anyhow::ensure!(
            std::fs::read_dir(data_dir)?.next().is_none(),
            "{} is not empty: restore into a new data dir",
            data_dir.display()
        );
    }
    copy_dir(from, data_dir)?;
    let log = Log::open(data_dir).context("the restored log does not open")?;
    Keyring::load(data_dir, kek).context("the restored keyring does not open with this KEK")?;
    crate::restore_gate::leave_marker(data_dir)?;
    let head = log.head();
    Ok(format!(
        "restored to {}: sequence {} stream position {} head {}, backup made {} ago; start `handoff serve` to catch up from the stream (it makes its own signing key, and answers no read before it has caught up)",
        data_dir.display(),
        head.sequence,
        head.stream_position,
        hex(&head.hash),
        handoff_ingest::describe_age(info.age(now)),
    ))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy to {}", target.display()))?;
        }
    }
    Ok(())
}

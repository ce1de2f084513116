//! Restore cannot resurrect. A backup records when it was made and at which
//! stream position (`backup.json`); `handoff admin restore` refuses one older
//! than the streams' max age (the messages after it have aged out) and leaves a
//! marker in the data dir. `serve` on a store with the marker answers no read
//! (UNAVAILABLE, health NOT_SERVING) until ingest's stored position has reached
//! the events stream's last sequence as first observed after the start, so every
//! erasure published since the backup is applied before anything is shown; then
//! it removes the marker. The same gate stays shut for good when ingest halts
//! because messages aged out before it consumed them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use handoff_log::{Head, Log, hex};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What a backup records about itself, in `<backup>/backup.json`.
pub const BACKUP_INFO: &str = "backup.json";

/// The marker a restore leaves in the data dir (the backup's record, moved there).
pub const RESTORED_MARKER: &str = "restored-from-backup.json";

/// When and at which point of the stream a backup was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// When it was made, milliseconds since the Unix epoch (the age check reads this).
    pub made_at_unix_ms: i64,
    /// The same, RFC 3339, for people.
    pub made_at: String,
    /// The log's head sequence in the backup.
    pub sequence: u64,
    /// The last events-stream sequence the backup holds.
    pub stream_position: u64,
    /// The log's head hash in the backup.
    pub head: String,
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl BackupInfo {
    /// The record of a backup of `head` made now.
    pub fn now(head: &Head) -> BackupInfo {
        let made_at_unix_ms = now_unix_ms();
        BackupInfo {
            made_at_unix_ms,
            made_at: handoff_contract::time::from_unix_ms(made_at_unix_ms).to_string(),
            sequence: head.sequence,
            stream_position: head.stream_position,
            head: hex(&head.hash),
        }
    }

    /// Writes it into the backup directory `dir`, flushed.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(BACKUP_INFO);
        let text = serde_json::to_string_pretty(self)?;
        write_synced(&path, text.as_bytes())
    }

    /// Reads the record of the backup in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<BackupInfo> {
        let path = dir.join(BACKUP_INFO);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} records neither when it was made nor its stream position (no {BACKUP_INFO}; made by an older version?), so it cannot be shown younger than the stream's max age: make a new backup with `handoff admin backup`",
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not readable", path.display()))
    }

    /// How old the backup is at `now_unix_ms` (zero if its clock was ahead).
    pub fn age(&self, now_unix_ms: i64) -> Duration {
        let ms = now_unix_ms.saturating_sub(self.made_at_unix_ms).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Refuses a backup older than `max_age` at `now_unix_ms`: the stream no longer holds
    /// every message after it, so the restored node would miss some, erasures among them.
    pub fn check_age(&self, max_age: Duration, now_unix_ms: i64) -> anyhow::Result<()> {
        let age = self.age(now_unix_ms);
        anyhow::ensure!(
            age <= max_age,
            "the backup was made {} ago ({}), longer ago than the streams keep messages ({}, [nats] max_age_days): messages after its stream position {} have aged out, so a node restored from it would miss them, erasures among them. Restore a backup younger than {}",
            handoff_ingest::describe_age(age),
            self.made_at,
            handoff_ingest::describe_age(max_age),
            self.stream_position,
            handoff_ingest::describe_age(max_age),
        );
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Makes the restored data dir `data_dir` wait for the stream: the backup's record
/// becomes the marker `serve` looks for.
pub fn leave_marker(data_dir: &Path) -> anyhow::Result<()> {
    let (from, to) = (data_dir.join(BACKUP_INFO), data_dir.join(RESTORED_MARKER));
    std::fs::rename(&from, &to)
        .with_context(|| format!("cannot write the restore marker {}", to.display()))?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

/// The marker's record, if the store in `data_dir` was restored and has not caught up yet.
pub fn pending(data_dir: &Path) -> anyhow::Result<Option<BackupInfo>> {
    let path = data_dir.join(RESTORED_MARKER);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the restore marker {}", path.display()))?;
    let info = serde_json::from_str(&text)
        .with_context(|| format!("the restore marker {} is not readable", path.display()))?;
    Ok(Some(info))
}

/// What a refused read says while the node catches up: where it stands, nothing else.
pub fn catching_up(position: u64, last: Option<u64>) -> String {
    let of = last.map_or_else(
        || "an unknown last sequence (NATS not reached yet)".to_string(),
        |l| l.to_string(),
    );
    format!("restored from a backup; catching up with the stream: position {position} of {of}")
}

/// What the gate watches.
pub struct Watched {
    /// The data dir holding the marker.
    pub data_dir: PathBuf,
    /// The log whose stored position counts.
    pub log: Log,
    /// The NATS connection, to read the events stream's last sequence.
    pub client: async_nats::Client,
    /// The events stream's name.
    pub stream: String,
    /// Whether the store was restored and has not caught up (the marker was there at start).
    pub restored: bool,
}

/// How often the position is compared with the stream's last sequence.
const EVERY: Duration = Duration::from_secs(1);

/// Keeps `gate` shut (a reason in it) while the restored store catches up, opens it
/// once the stored position reaches the stream's last sequence as first observed,
/// and shuts it for good if ingest halts (`halted`). Runs until shutdown.
pub async fn run(
    w: Watched,
    gate: watch::Sender<Option<String>>,
    mut halted: watch::Receiver<Option<String>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let js = async_nats::jetstream::new(w.client.clone());
    let mut waiting = w.restored;
    let mut target: Option<u64> = None;
    let mut halted_alive = true;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick(), if waiting => {
                if target.is_none() {
                    // Observed after the start: every erasure published before it is at or below.
                    match js.get_stream(&w.stream).await {
                        Ok(s) => {
                            let last = s.cached_info().state.last_sequence;
                            tracing::info!(last_sequence = last, "restored store: catching up with the stream before answering reads");
                            target = Some(last);
                        }
                        Err(e) => tracing::debug!(error = %e, "cannot read the stream's last sequence yet"),
                    }
                }
                let position = w.log.head().stream_position;
                match target {
                    Some(last) if position >= last => {
                        waiting = false;
                        if let Err(e) = std::fs::remove_file(w.data_dir.join(RESTORED_MARKER)) {
                            tracing::warn!(error = %e, "cannot remove the restore marker; the next start catches up again first");
                        }
                        if halted.borrow().is_none() {
                            gate.send_replace(None);
                            tracing::info!(stream_position = position, "restored store caught up with the stream; answering reads");
                        }
                    }
                    _ if halted.borrow().is_none() => {
                        gate.send_replace(Some(catching_up(position, target)));
                    }
                    _ => {}
                }
            }
            changed = halted.changed(), if halted_alive => {
                halted_alive = changed.is_ok();
                let why = halted.borrow().clone();
                if let Some(why) = why {
                    waiting = false;
                    gate.send_replace(Some(why));
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(made_at_unix_ms: i64) -> BackupInfo {
        BackupInfo {
            made_at_unix_ms,
            made_at: "then".into(),
            sequence: 7,
            stream_position: 9,
            head: "00".into(),
        }
    }

    #[test]
    fn a_backup_older_than_the_max_age_is_refused_naming_both() {
        let day = 86_400_000;
        let month = Duration::from_secs(30 * 86_400);
        assert!(info(0).check_age(month, 29 * day).is_ok());
        assert!(info(0).check_age(month, 30 * day).is_ok());
        let e = info(0)
            .check_age(month, 31 * day)
            .expect_err("too old")
            .to_string();
        assert!(e.contains("31 days ago") && e.contains("(30 days,"), "{e}");
        // A clock ahead of ours makes it no older than now.
        assert!(info(5 * day).check_age(month, day).is_ok());
    }

    #[test]
    fn the_marker_is_the_backups_record() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(pending(dir.path()).expect("no marker"), None);
        let record = info(1234);
        record.write(dir.path()).expect("write");
        assert_eq!(BackupInfo::read(dir.path()).expect("read"), record);
        leave_marker(dir.path()).expect("marker");
        assert_eq!(pending(dir.path()).expect("marker"), Some(record));
        assert!(
            BackupInfo::read(dir.path())
                .expect_err("moved")
                .to_string()
                .contains("make a new backup")
        );
    }

    #[test]
    fn a_refusal_tells_only_where_the_node_stands() {
        assert_eq!(
            catching_up(5, Some(9)),
            "restored from a backup; catching up with the stream: position 5 of 9"
        );
        assert!(catching_up(5, None).contains("position 5 of an unknown"));
    }
}

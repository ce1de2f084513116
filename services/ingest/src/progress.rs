//! Is ingest keeping up? Compares the stream's last sequence with the stored
//! position: the difference is the consumer lag, and a lag that does not shrink
//! for `stuck_after` means ingest is stuck (health NOT_SERVING).

use std::time::{Duration, Instant};

use handoff_log::Log;
use tokio::sync::watch;

use crate::IngestMetrics;

/// Decides "stuck" from successive observations; pure, the time is an argument.
#[derive(Debug, Clone)]
pub struct StuckDetector {
    after: Duration,
    position: u64,
    since: Instant,
}

impl StuckDetector {
    /// A detector that calls ingest stuck when messages wait and `position` has not
    /// moved for `after`, starting from `position` observed at `now`.
    pub fn new(after: Duration, position: u64, now: Instant) -> Self {
        StuckDetector {
            after,
            position,
            since: now,
        }
    }

    /// Records the stored `position` and the `lag` seen at `now`; true while stuck.
    pub fn observe(&mut self, position: u64, lag: u64, now: Instant) -> bool {
        if position != self.position || lag == 0 {
            // Progress, or nothing to do: the clock starts again.
            self.position = position;
            self.since = now;
            return false;
        }
        now.saturating_duration_since(self.since) >= self.after
    }

    /// How long the position has stood still, as of `now`.
    pub fn still_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

/// What the watchdog looks at.
pub(crate) struct Watched {
    pub client: async_nats::Client,
    pub stream: String,
    pub log: Log,
    pub metrics: IngestMetrics,
    pub stuck_after: Duration,
    /// Told when ingest becomes stuck or advances again, so the loop can recreate a
    /// consumer that stopped delivering.
    pub stuck: watch::Sender<bool>,
}

/// How often the stream's last sequence is asked for (one STREAM.INFO request).
const EVERY: Duration = Duration::from_secs(2);

/// Publishes `consuming && !stuck` to `health` until shutdown, and keeps the lag
/// and stuck metrics current.
pub(crate) async fn watch(
    w: Watched,
    mut consuming: watch::Receiver<bool>,
    health: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let js = async_nats::jetstream::new(w.client.clone());
    let mut detector =
        StuckDetector::new(w.stuck_after, w.log.head().stream_position, Instant::now());
    let mut stuck = false;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let position = w.log.head().stream_position;
                // The stream unreachable (NATS down): the lag is unknown, and the loop
                // itself reports not consuming; leave the verdict as it was.
                let last = match js.get_stream(&w.stream).await {
                    Ok(s) => Some(s.cached_info().state.last_sequence),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the stream's state for the lag");
                        None
                    }
                };
                if let Some(last) = last {
                    let lag = last.saturating_sub(position);
                    w.metrics.consumer_lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
                    let now_stuck = detector.observe(position, lag, Instant::now());
                    if now_stuck && !stuck {
                        tracing::warn!(
                            lag,
                            stream_position = position,
                            still_secs = detector.still_for(Instant::now()).as_secs(),
                            paused_low_disk = w.metrics.paused_low_disk.get() == 1,
                            paused_unwritable = w.metrics.paused_unwritable.get() == 1,
                            "ingest stuck: messages wait in the stream but the stored position has not advanced (see the paused_* fields; else the consumer is not delivering or commits hang); health NOT_SERVING"
                        );
                    } else if !now_stuck && stuck {
                        tracing::info!(stream_position = position, lag, "ingest advancing again; health follows consuming");
                    }
                    stuck = now_stuck;
                    w.metrics.stuck.set(i64::from(stuck));
                    w.stuck.send_if_modified(|s| std::mem::replace(s, stuck) != stuck);
                }
            }
            changed = consuming.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => return,
        }
        let healthy = *consuming.borrow() && !stuck;
        health.send_if_modified(|h| std::mem::replace(h, healthy) != healthy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_when_messages_wait_and_the_position_stands_still() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut d = StuckDetector::new(Duration::from_secs(30), 10, t0);
        assert!(!d.observe(10, 5, s(10)));
        assert!(!d.observe(10, 5, s(29)));
        assert!(
            d.observe(10, 5, s(30)),
            "30 s without progress with 5 waiting"
        );
        assert!(d.observe(10, 5, s(100)));
        // It moves again: not stuck, and the clock restarts.
        assert!(!d.observe(11, 4, s(101)));
        assert!(!d.observe(11, 4, s(130)));
        assert!(d.observe(11, 4, s(131)));
        // Nothing waiting: idle, never stuck however long.
        assert!(!d.observe(11, 0, s(500)));
        assert!(!d.observe(11, 0, s(5000)));
        // Messages arrive after a long idle spell: the 30 s count from when they were seen.
        assert!(!d.observe(11, 3, s(5001)));
        assert!(d.observe(11, 3, s(5030)));
    }
}

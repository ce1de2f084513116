//! Small measuring tools: publishing with a window of acknowledgements in
//! flight, percentiles, a process's memory, a directory's size on disk.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// One message ready to publish: the encoding is done before the clock starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The agency's event subject (`handoff.events.<agency>.<type>`).
    pub subject: String,
    /// Nats-Msg-Id (the event id).
    pub msg_id: String,
    /// The encoded envelope.
    pub body: bytes::Bytes,
}

/// Publishes every message (subject rewritten by `subject`) with at most `window`
/// acknowledgements outstanding; returns the time until the last was acknowledged
/// and the highest stream sequence.
pub async fn publish_acknowledged(
    js: &jetstream::Context,
    messages: &[Prepared],
    subject: impl Fn(&Prepared) -> String,
    window: usize,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut last = 0u64;
    for m in messages {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", m.msg_id.as_str());
        let ack = js
            .publish_with_headers(subject(m), headers, m.body.clone())
            .await?;
        in_flight.push(ack.into_future());
        while in_flight.len() >= window.max(1) {
            if let Some(ack) = in_flight.next().await {
                last = last.max(ack?.sequence);
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        last = last.max(ack?.sequence);
    }
    Ok((started.elapsed(), last))
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// How many samples.
    pub samples: usize,
}

impl Percentiles {
    /// Of these durations (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return f64::NAN;
            }
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1e3
        };
        Percentiles {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
            samples: samples.len(),
        }
    }
}

/// Resident memory of process `pid` in bytes (Linux `/proc`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, as `du` counts).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The disk's durable-write floor: `n` times, 512 bytes written and `fdatasync`ed in
/// a file in `dir`. A read recorded durably before it is answered costs at least this.
pub fn fdatasync_latency(dir: &Path, n: usize) -> std::io::Result<Percentiles> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 512];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        file.seek(SeekFrom::Start((i % 64) as u64 * 4096))?;
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Percentiles::of(&mut samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut s: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut s);
        assert_eq!(
            (p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms),
            (500.0, 990.0, 999.0, 1000.0)
        );
    }
}

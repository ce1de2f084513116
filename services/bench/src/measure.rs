//! Small measuring tools: publishing with a window of acknowledgements in
//! flight (as agencies do: an agency's event that follows another agency's on
//! the same case waits until that one is decided), percentiles, a process's
//! memory, a directory's size on disk.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use handoff_e2e::events::Sent;

/// One message ready to publish: the encoding is done before the clock starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The agency's event subject (`handoff.events.<agency>.<type>`).
    pub subject: String,
    /// Nats-Msg-Id (the event id).
    pub msg_id: String,
    /// The encoded envelope.
    pub body: bytes::Bytes,
    /// Its case.
    pub case_id: String,
    /// The event id of the case's event before it when another agency published that
    /// one: each agency publishes into its own ingress stream, so this one may go out
    /// only once that one is decided (its receipt seen), as an adapter would wait.
    pub after: Option<String>,
}

/// Messages for `envelopes` in publishing order, each knowing what it must follow.
pub fn prepare(envelopes: impl Iterator<Item = handoff_contract::v1::Envelope>) -> Vec<Prepared> {
    use prost::Message;
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    envelopes
        .map(|e| {
            let after = last
                .insert(
                    e.case_id.clone(),
                    (e.source_agency.clone(), e.event_id.clone()),
                )
                .filter(|(agency, _)| *agency != e.source_agency)
                .map(|(_, id)| id);
            Prepared {
                subject: handoff_e2e::events::subject(&e),
                msg_id: e.event_id.clone(),
                // Sealed as an adapter seals it: the broker and the baselines carry ciphertext.
                body: handoff_e2e::seal(&e).encode_to_vec().into(),
                case_id: e.case_id,
                after,
            }
        })
        .collect()
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

/// The agency a `handoff.events.<agency>.…` subject names.
fn agency_of(subject: &str) -> String {
    handoff_e2e::events::agency_of(subject)
}

/// Publishes with at most `window` acknowledgements outstanding, remembering the
/// highest ingress sequence each agency's stream acknowledged.
struct Pipeline<'a> {
    js: &'a jetstream::Context,
    window: usize,
    in_flight:
        FuturesUnordered<futures::future::BoxFuture<'static, (String, Result<u64, anyhow::Error>)>>,
    top: BTreeMap<String, u64>,
}

impl Pipeline<'_> {
    async fn send(&mut self, m: &Prepared) -> anyhow::Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", m.msg_id.as_str());
        let ack = self
            .js
            .publish_with_headers(m.subject.clone(), headers, m.body.clone())
            .await?;
        let agency = agency_of(&m.subject);
        self.in_flight.push(
            async move {
                let sequence = ack.await.map(|a| a.sequence).map_err(anyhow::Error::from);
                (agency, sequence)
            }
            .boxed(),
        );
        while self.in_flight.len() >= self.window.max(1) {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> anyhow::Result<()> {
        if let Some((agency, sequence)) = self.in_flight.next().await {
            let top = self.top.entry(agency).or_default();
            *top = (*top).max(sequence?);
        }
        Ok(())
    }

    async fn finish(mut self) -> anyhow::Result<Vec<Sent>> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(self
            .top
            .into_iter()
            .map(|(agency, sequence)| Sent { agency, sequence })
            .collect())
    }
}

/// Publishes every message on its agency's subject with at most `window`
/// acknowledgements outstanding, holding back a case's message that must follow
/// another agency's until that one's receipt arrives (on `client`, which may read
/// every agency's receipts) while other cases' messages go on. Returns the time until
/// the last was acknowledged and, per agency, the highest ingress sequence taken.
pub async fn publish_causal(
    js: &jetstream::Context,
    client: &async_nats::Client,
    messages: &[Prepared],
    window: usize,
) -> anyhow::Result<(Duration, Vec<Sent>)> {
    use handoff_contract::v1::Receipts;
    use prost::Message;
    let mut receipts = client.subscribe("handoff.receipts.>").await?;
    client.flush().await?;
    let started = Instant::now();
    // Only the ids something waits for are remembered.
    let awaited: HashSet<&str> = messages.iter().filter_map(|m| m.after.as_deref()).collect();
    let mut decided: HashSet<String> = HashSet::new();
    // Cases held back: their messages in order, the first waiting for `waiting_on`.
    let mut held: HashMap<&str, VecDeque<&Prepared>> = HashMap::new();
    let mut waiting_on: HashMap<String, Vec<&str>> = HashMap::new();
    let mut pipeline = Pipeline {
        js,
        window,
        in_flight: FuturesUnordered::new(),
        top: BTreeMap::new(),
    };

    // Publishes what a case holds until its next message must wait again.
    async fn release<'m>(
        case: &'m str,
        held: &mut HashMap<&'m str, VecDeque<&'m Prepared>>,
        waiting_on: &mut HashMap<String, Vec<&'m str>>,
        decided: &HashSet<String>,
        pipeline: &mut Pipeline<'_>,
    ) -> anyhow::Result<()> {
        while let Some(next) = held.get_mut(case).and_then(|q| q.front().copied()) {
            if let Some(dep) = next.after.as_deref().filter(|d| !decided.contains(*d)) {
                waiting_on.entry(dep.to_string()).or_default().push(case);
                return Ok(());
            }
            pipeline.send(next).await?;
            if let Some(q) = held.get_mut(case) {
                q.pop_front();
            }
        }
        held.remove(case);
        Ok(())
    }

    // A receipt arrived: the cases that waited for it may go on.
    fn take<'m>(
        msg: &async_nats::Message,
        awaited: &HashSet<&str>,
        decided: &mut HashSet<String>,
        waiting_on: &mut HashMap<String, Vec<&'m str>>,
    ) -> Vec<&'m str> {
        let Ok(receipts) = Receipts::decode(msg.payload.as_ref()) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        for receipt in receipts.receipts {
            if awaited.contains(receipt.event_id.as_str()) {
                ready.extend(waiting_on.remove(&receipt.event_id).unwrap_or_default());
                decided.insert(receipt.event_id);
            }
        }
        ready
    }

    for m in messages {
        let case = m.case_id.as_str();
        if let Some(queue) = held.get_mut(case) {
            queue.push_back(m);
        } else if let Some(dep) = m.after.as_deref().filter(|d| !decided.contains(*d)) {
            held.insert(case, VecDeque::from([m]));
            waiting_on.entry(dep.to_string()).or_default().push(case);
        } else {
            pipeline.send(m).await?;
        }
        // Take the receipts that arrived meanwhile, without waiting for any.
        while let Some(Some(msg)) = receipts.next().now_or_never() {
            for ready in take(&msg, &awaited, &mut decided, &mut waiting_on) {
                release(ready, &mut held, &mut waiting_on, &decided, &mut pipeline).await?;
            }
        }
    }
    // What is still held waits for receipts of what is already out.
    while !held.is_empty() {
        let msg = tokio::select! {
            msg = receipts.next() => msg,
            _ = tokio::time::sleep(Duration::from_secs(120)) => None,
        };
        let Some(msg) = msg else {
            anyhow::bail!(
                "{} cases still wait for receipts after 120 s (first: {:?})",
                held.len(),
                waiting_on.keys().next()
            );
        };
        for ready in take(&msg, &awaited, &mut decided, &mut waiting_on) {
            release(ready, &mut held, &mut waiting_on, &decided, &mut pipeline).await?;
        }
    }
    let sent = pipeline.finish().await?;
    Ok((started.elapsed(), sent))
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

"""Draws docs/benchmarks.png from the load tool's JSON figures (target/bench/*.json).

Left: ingest throughput of Handoff and its baselines per run. Right: latencies
(publish to receipt under steady load, GetCase and the empty RPC beside it).
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(f):
    sync = "fsync always" if f["nats_sync_always"] else "default sync"
    n = f["events"]
    size = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n // 1000}k"
    return f"{size} events\nnats {sync}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def tables(runs):
    """The tables of docs/BENCHMARKS.md, in Markdown."""
    out = []
    for f in runs:
        sync = "fsync every message (as shipped)" if f["nats_sync_always"] else "JetStream default sync"
        g, e, d, l = f.get("get_case") or {}, f.get("empty_rpc") or {}, f.get("fdatasync") or {}, f.get("publish_to_queryable") or {}
        out.append(f"### {f['events']:,} events, {f['cases']:,} cases, nats-server: {sync}\n")
        out.append("| measure | Handoff | baseline | ratio |")
        out.append("|---|---|---|---|")
        out.append(f"| ingest, events/s | {f['handoff_ingest_events_per_sec']:,.0f} | raw JetStream {f['raw_jetstream_events_per_sec']:,.0f} | {ratio(f['handoff_ingest_events_per_sec'], f['raw_jetstream_events_per_sec'])} |")
        if f.get("message_db_events_per_sec"):
            out.append(f"| ingest, events/s | {f['handoff_ingest_events_per_sec']:,.0f} | Message DB {f['message_db_events_per_sec']:,.0f} | {ratio(f['handoff_ingest_events_per_sec'], f['message_db_events_per_sec'])} |")
        out.append(f"| audit verify, MB/s | {f['verify_mb_per_sec']:,.0f} | SHA-256 {f['sha256_mb_per_sec']:,.0f} | {ratio(f['verify_mb_per_sec'], f['sha256_mb_per_sec'])} |")
        out.append(f"| GetCase p99, ms | {g.get('p99_ms', 0):.2f} | empty RPC {e.get('p99_ms', 0):.2f} | {ratio(g.get('p99_ms'), e.get('p99_ms'))} |")
        out.append(f"| GetCase p50, ms | {g.get('p50_ms', 0):.2f} | empty RPC {e.get('p50_ms', 0):.2f} | {ratio(g.get('p50_ms'), e.get('p50_ms'))} |")
        out.append(f"| (floor) 512 B write + fdatasync p50 / p99, ms | | {d.get('p50_ms', 0):.2f} / {d.get('p99_ms', 0):.2f} | |")
        bound = 1.2 * (e.get('p99_ms', 0) + d.get('p99_ms', 0))
        out.append(f"| GetCase p99 vs 1.2 × (empty RPC p99 + fdatasync p99), ms | {g.get('p99_ms', 0):.2f} | {bound:.2f} | {ratio(g.get('p99_ms'), bound)} |")
        out.append(f"| publish to receipt at {f['steady_rate']}/s, p50 / p99 / p99.9, ms | {l.get('p50_ms', 0):.1f} / {l.get('p99_ms', 0):.1f} / {l.get('p999_ms', 0):.1f} | | |")
        out.append(f"| CPU per event during ingest, µs | exchange {f['handoff_cpu_us_per_event']:.0f} | nats-server {f['nats_cpu_us_per_event']:.0f} | |")
        out.append(f"| RSS after ingest, MB | {f['rss_bytes'] / 1e6:.0f} | | |")
        out.append(f"| disk, bytes per event | {f['disk_bytes_per_event']:,.0f} | | |")
        if "stop_ms" in f:
            out.append(f"| stop (SIGTERM, settles the store), ms | {f['stop_ms']:.0f} | | |")
        out.append(f"| cold start to SERVING, ms | {f['cold_start_ms']:.0f} | | |")
        out.append(f"| rebuild every projection in place, s | {f['rebuild_secs']:.2f} | | |")
        out.append(f"| audit replay of the export into a fresh dir, s | {f['replay_secs']:.2f} | rebuild {f['rebuild_secs']:.2f} | {ratio(f['replay_secs'], f['rebuild_secs'])} |")
        out.append("")
        if f.get("keyspaces"):
            out.append(f"Live bytes per logged event by keyspace (of {f['disk_bytes_per_event']:,.0f} on disk):\n")
            out.append("| keyspace | keys | bytes per event |")
            out.append("|---|---:|---:|")
            for k in f["keyspaces"]:
                out.append(f"| {k['name']} | {k['keys']:,} | {k['bytes_per_event']:,.0f} |")
            total = sum(k["bytes_per_event"] for k in f["keyspaces"])
            out.append(f"| all live data | | {total:,.0f} |")
            out.append("")
    return "\n".join(out)


def main(out, paths):
    runs = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    runs.sort(key=lambda f: (not f["nats_sync_always"], f["events"]))
    text = tables(runs)
    pathlib.Path("target/bench/tables.md").write_text(text)
    print(text)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))

    names = ["raw JetStream", "Handoff ingest", "Message DB"]
    keys = ["raw_jetstream_events_per_sec", "handoff_ingest_events_per_sec", "message_db_events_per_sec"]
    width = 0.8 / len(names)
    for i, (name, key) in enumerate(zip(names, keys)):
        xs, ys = [], []
        for j, f in enumerate(runs):
            if f.get(key):
                xs.append(j + (i - 1) * width)
                ys.append(f[key])
        bars = left.bar(xs, ys, width, label=name)
        left.bar_label(bars, fmt="%.0f", fontsize=7)
    left.set_xticks(range(len(runs)), [label(f) for f in runs], fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("events/s (log scale)")
    left.set_title("Ingest throughput, same run, same machine")
    left.legend(fontsize=8)

    series = [
        ("publish→receipt p50", lambda f: (f.get("publish_to_queryable") or {}).get("p50_ms")),
        ("publish→receipt p99", lambda f: (f.get("publish_to_queryable") or {}).get("p99_ms")),
        ("publish→receipt p99.9", lambda f: (f.get("publish_to_queryable") or {}).get("p999_ms")),
        ("GetCase p99", lambda f: (f.get("get_case") or {}).get("p99_ms")),
        ("empty RPC p99", lambda f: (f.get("empty_rpc") or {}).get("p99_ms")),
    ]
    width = 0.8 / len(series)
    for i, (name, get) in enumerate(series):
        xs, ys = [], []
        for j, f in enumerate(runs):
            v = get(f)
            if v is not None:
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(v)
        bars = right.bar(xs, ys, width, label=name)
        right.bar_label(bars, fmt="%.1f", fontsize=6)
    right.set_xticks(range(len(runs)), [label(f) for f in runs], fontsize=8)
    right.set_ylabel("milliseconds")
    right.set_title(f"Latency (steady load {runs[0]['steady_rate']} events/s; queries)")
    right.legend(fontsize=7)

    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot written to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

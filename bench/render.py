#!/usr/bin/env python3
"""The results file's Markdown from the JSON document that bench/run.py
collects, and nothing else: no process is started, nothing is measured.
bench/run.py calls `render` at the end of a run; `python3 bench/render.py
RESULTS.json` re-renders an earlier run's .md beside its .json (after a change
to the tables, say). Stdlib only."""
import json
import os
import sys

from cases import DEFLATE_CASES, DISTURBED, MESSAGE_CASES, RESUME_STORES, disturbance


def pct(u):
    return f"{u['cpu_percent']:.1f} % ({u['user_percent']:.1f} + {u['sys_percent']:.1f})"


def us(w):
    v = w.get("target_us_per_message")
    if v is None:
        return "—"
    return f"{v:.2f} ({w['target_user_us_per_message']:.2f} + {w['target_sys_us_per_message']:.2f})"


def sysc(w):
    v = w.get("syscalls_per_message")
    return f"{v:.2f}" if v is not None else w.get("syscalls_note") or "n/a"


def ctxsw(w):
    v = w.get("target_context_switches_per_message")
    return f"{v:.2f}" if v is not None else "n/a"


def ratio(a, b):
    return f"{a / b:.2f}×" if b > 0 else "—"


def core_busy(w, plan):
    b = w.get("cpu_busy_percent") or []
    return b[plan["core"]] if plan["core"] < len(b) else None


def load_saturated(r, plan):
    """The load's CPU was full (or ws-bench fell behind) in this run's window."""
    w = r.get("window") or {}
    busy = w.get("cpu_busy_percent") or []
    full = plan["pinned"] and plan["load"] < len(busy) and busy[plan["load"]] > 97
    return bool(full or r.get("bench_saturated"))


def message_keys(results):
    """The message cases this run measured (all of them, or those --only chose), in their order."""
    return [key for key, *_ in MESSAGE_CASES if key in results]


def message_rows(results, plan):
    rows = []
    for key in message_keys(results):
        c = results[key]
        g, f = c["gateway"], c["floor"]
        gw, fw = g["window"], f["window"]
        lat = "—"
        if c["echo"]:
            lat = (f"{g['rtt_us']['p50']} / {g['rtt_us']['p99']} µs (floor {f['rtt_us']['p50']} / "
                   f"{f['rtt_us']['p99']} µs)")
            if load_saturated(g, plan) or load_saturated(f, plan):
                lat += " — load CPU saturated: latency is the bench's queueing"
        rows.append(
            f"| {c['label']} | {c['users']:,} × {c['rate_per_conn']} msg/s ({gw['messages_per_s']:,.0f}/s) | "
            f"{pct(gw['target'])} | {pct(fw['target'])} | **{ratio(gw['target']['cpu_percent'], fw['target']['cpu_percent'])}** | "
            f"{ratio(gw['target']['user_percent'], fw['target']['user_percent'])} / "
            f"{ratio(gw['target']['sys_percent'], fw['target']['sys_percent'])} | "
            f"{us(gw)} | {us(fw)} | {sysc(gw)} / {sysc(fw)} | {ctxsw(gw)} / {ctxsw(fw)} | "
            f"{core_busy(gw, plan) or 0:.1f} / {core_busy(fw, plan) or 0:.1f} % | "
            f"{g['gateway']['rss_peak_mib']:.1f} / {f['gateway']['rss_peak_mib']:.1f} MiB | {lat} |")
    return rows


def wire(c, way):
    """Bytes per message on the wire / before compression for one direction ("in": client to gateway) of a
    compressed run, from the gateway's counters; and how many messages went compressed."""
    k = c["compression"]
    n = k.get(f"compressed_messages_{way}", 0)
    if not n:
        return "sent plain (under `--compression-min-size`)"
    wire_b, plain_b = ((k["compression_in_before_bytes"], k["compression_in_after_bytes"]) if way == "in" else
                       (k["compression_out_after_bytes"], k["compression_out_before_bytes"]))
    return f"{wire_b / n:,.0f} / {plain_b / n:,.0f} B ({plain_b / max(1, wire_b):.2f}×), {n:,.0f} messages"


def deflate_section(results, plan):
    keys = [key for key, *_ in DEFLATE_CASES if key in results]
    idle = results.get("deflate-idle")
    if not keys and not idle:
        return []
    rows = []
    for key in keys:
        c = results[key]
        p, d = c["plain"], c["deflate"]
        pw, dw = p["window"], d["window"]
        lat = "—"
        if c["echo"]:
            lat = f"{p['rtt_us']['p50']} / {p['rtt_us']['p99']} → {d['rtt_us']['p50']} / {d['rtt_us']['p99']} µs"
            if load_saturated(p, plan) or load_saturated(d, plan):
                lat += " — load CPU saturated"
        rows.append(
            f"| {c['label']} | {c['users']:,} × {c['rate_per_conn']} msg/s ({dw['messages_per_s']:,.0f}/s) | "
            f"{pct(pw['target'])} | {pct(dw['target'])} | **{ratio(dw['target']['cpu_percent'], pw['target']['cpu_percent'])}** | "
            f"{us(pw)} → {us(dw)} | {wire(d, 'in')} | {wire(d, 'out') if c['echo'] else '—'} | "
            f"{p['gateway']['rss_peak_mib']:.1f} / {d['gateway']['rss_peak_mib']:.1f} MiB | {lat} |")
    lines = [
        "## Compression (permessage-deflate)",
        "",
        "Each load against the gateway without, then with, `--compression deflate` (level 1, messages under "
        "256 B sent plain, no context takeover), ws-bench `--compression` compressing every message it sends (as "
        "a browser does once negotiated; compressed once, before the load) and inflating what comes back "
        "compressed. Ratio = compressed / uncompressed gateway CPU over the steady window (as above). Bytes: wire / "
        "uncompressed per compressed message, from the gateway's own counters.",
        "",
    ]
    if rows:
        lines += [
            "| case | load (steady rate) | CPU uncompressed | CPU compressed | ratio | µs/msg uncompressed → "
            "compressed | client → gateway: wire / plain | gateway → client: wire / plain | RSS peak uncompressed "
            "/ compressed | round trip p50 / p99 uncompressed → compressed |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    if idle:
        p, d = idle["plain"], idle["deflate"]
        lines += [
            f"Idle, {d['connections_established']:,} connections held, every one with permessage-deflate "
            f"negotiated: **{d['rss_per_connection_kib']:.2f} KiB per connection** against "
            f"{p['rss_per_connection_kib']:.2f} KiB uncompressed "
            f"({d['rss_per_connection_kib'] - p['rss_per_connection_kib']:+.2f} KiB); RSS "
            f"{d['gateway']['rss_settled_mib']:.1f} / {p['gateway']['rss_settled_mib']:.1f} MiB; failed "
            f"{d['connections_failed']} / {p['connections_failed']}.",
            "",
        ]
    return lines


def disturbed(results, plan):
    """Windows where a CPU was much busier than the processes measured on it, and reruns."""
    out, reruns = [], []
    for key in message_keys(results):
        c = results[key]
        if c.get("attempts", 1) > 1:
            reruns.append(f"{key} ×{c['attempts']}")
        for kind in ("gateway", "floor"):
            d = disturbance(plan, c[kind])
            if d > DISTURBED:
                out.append(f"{key}/{kind} (+{d:.0f} points)")
    lines = []
    if reruns:
        lines.append("Run again because another process disturbed a window (the cleanest attempt is shown): "
                     + ", ".join(reruns) + ".")
    if out:
        lines.append(f"Still disturbed (a CPU busier than the processes measured on it by more than {DISTURBED} "
                     "points: other processes, or interrupt time not charged to them): " + ", ".join(out) + ".")
    return lines


def json_vs_protobuf(results):
    lines = []
    for j, p in (("case1", "case1-pb"), ("40k", "40k-pb")):
        if j not in results or p not in results:
            continue
        what = f"{results[j]['users']:,} × {results[j]['rate_per_conn']} msg/s"
        gj, gp = results[j]["gateway"]["window"], results[p]["gateway"]["window"]
        fj, fp = results[j]["floor"]["window"], results[p]["floor"]["window"]
        if None in (gj["target_us_per_message"], gp["target_us_per_message"], fj["target_us_per_message"],
                    fp["target_us_per_message"]):
            continue
        dg = gj["target_us_per_message"] - gp["target_us_per_message"]
        df = fj["target_us_per_message"] - fp["target_us_per_message"]
        du = gj["target_user_us_per_message"] - gp["target_user_us_per_message"]
        lines.append(f"- {what}: JSON costs the gateway {dg:+.2f} µs per message more than protobuf "
                     f"({du:+.2f} µs of it user time); the floor, which decodes neither, moves {df:+.2f} µs "
                     f"(50 B text vs 31 B binary frames on the wire). The gateway's own JSON-path cost is about "
                     f"{dg - df:+.2f} µs per message.")
    return lines


def saturation_rows(sat):
    rows = []
    floor = {s["offered"]: s for s in sat.get("floor", [])}
    for s in sat.get("gateway", []):
        w = s["report"]["window"]
        fs = floor.get(s["offered"])
        fw = fs["report"]["window"] if fs else None
        api = w.get("api") or {}
        load = "" if s["load_busy"] is None else f"{s['load_busy']:.0f} % "
        rows.append(
            f"| {s['offered']:,} | {w['messages_per_s']:,.0f} | {pct(w['target'])} | {us(w)} | "
            f"{sysc(w)} / {sysc(fw) if fw else '—'} | "
            f"{(s['core_busy'] or 0):.0f} % | {load}"
            f"(ws-bench {w['bench_cpu_percent']:.0f} %, ws-api {api.get('cpu_percent', 0):.0f} %) | "
            f"{pct(fw['target']) if fw else '—'} | {us(fw) if fw else '—'} | "
            f"{ratio(w['target']['cpu_percent'], fw['target']['cpu_percent']) if fw else '—'} | "
            f"{', '.join(s['stopped_by']) or '—'}{' (disturbed)' if s['disturbance'] > DISTURBED else ''} |")
    extra = [s for s in sat.get("floor", []) if s["offered"] not in {g["offered"] for g in sat.get("gateway", [])}]
    for s in extra:
        w = s["report"]["window"]
        rows.append(f"| {s['offered']:,} | {w['messages_per_s']:,.0f} (floor only) | — | — | — | — | "
                    f"(ws-bench {w['bench_cpu_percent']:.0f} %) | {pct(w['target'])} | {us(w)} | — | "
                    f"{', '.join(s['stopped_by']) or '—'} |")
    return rows


def saturation_summary(sat):
    out = []
    for kind in ("gateway", "floor"):
        steps = sat.get(kind, [])
        if not steps:
            continue
        last = steps[-1]
        best = max(steps, key=lambda s: s["report"]["window"]["messages_per_s"])
        w = best["report"]["window"]
        first = ", ".join(last["stopped_by"]) if last["stopped_by"] else "nothing (rates exhausted)"
        load = "" if best["load_busy"] is None else f", the load CPU {best['load_busy']:.0f} % busy"
        out.append(f"- {kind}: highest rate {w['messages_per_s']:,.0f} msg/s, with the {kind} at "
                   f"{w['target']['cpu_percent']:.0f} % of its core ({best['core_busy'] or 0:.0f} % busy){load}; "
                   f"the climb stopped on: {first}.")
    return out


def other_rows(results):
    """The rows of the idle, push and broadcast cases that ran (`--only` may run some)."""
    rows = []
    if idle := results.get("idle"):
        g, f = idle["gateway"], idle["floor"]
        rows.append(f"| idle: {g['connections_established']:,} connections held | RSS {g['gateway']['rss_settled_mib']:.1f} MiB, "
                    f"**{g['rss_per_connection_kib']:.2f} KiB per connection** (floor {f['gateway']['rss_settled_mib']:.1f} MiB, "
                    f"{f['rss_per_connection_kib']:.2f} KiB); connect {g['connect_rate_per_s']:,.0f}/s, handshake p99 "
                    f"{g['handshake_us']['p99']} µs; failed {g['connections_failed']} (floor {f['connections_failed']}) |")
    for key, what in (("push", "push fan-out to {n:,} users, 3 rounds"),
                      ("broadcast", "broadcast to {n:,} sessions, 10 rounds")):
        if not (r := results.get(key)):
            continue
        gu, name = r["gateway"], key.capitalize()
        per = 1e6 * gu["cpu_seconds"] / max(1, r["messages_received"])
        floor = ""
        if f := r.get("floor"):
            fper = 1e6 * f["gateway"]["cpu_seconds"] / max(1, f["messages_received"])
            floor = (f"; floor (`ws-bench sink --push-users`, the same deliveries at that rate) "
                     f"{f['gateway']['cpu_percent_of_one_core']:.1f} % CPU, {fper:.2f} µs per delivery, "
                     f"{f['messages_lost']} lost: **{ratio(per, fper)} the floor**")
        rows.append(f"| {what.format(n=r['connections_established'])} | {gu['cpu_percent_of_one_core']:.1f} % CPU, "
                    f"{gu['rss_peak_mib']:.1f} MiB; {r['received_per_s']:,.0f} deliveries/s, {r['messages_lost']} lost; "
                    f"**{per:.2f} µs gateway CPU per delivery**{floor}; {name}→delivery p50 {r['rtt_us']['p50']} µs, "
                    f"p99 {r['rtt_us']['p99']} µs |")
    return rows




def replay_cell(r):
    p = r.get("replay_us")
    return f"{p['p50'] / 1e3:.1f} / {p['p99'] / 1e3:.0f} ms" if p else "—"


def connect_rpc(c):
    rpc = c.get("connect_rpc")
    if not rpc:
        return "Connect latency not recorded"

    def bound(v):
        return "∞" if v in (None, float("inf")) else f"{v * 1e3:g} ms"
    return (f"{rpc['calls']:,.0f} Connect calls to ws-api, mean {rpc['mean_s'] * 1e3:.1f} ms, p50 ≤ "
            f"{bound(rpc['p50_le_s'])}, p99 ≤ {bound(rpc['p99_le_s'])}")


def resume_section(results, doc_cpus):
    """The resume storm's table and per-store notes; nothing when the run had no storm."""
    cases = [results[f"resume-{st}"] for st in RESUME_STORES if f"resume-{st}" in results]
    if not cases:
        return []
    rows, notes = [], []
    for c in cases:
        if "skipped" in c:
            notes.append(f"- {c['store']}: not run ({c['skipped']}).")
            continue
        r, cpu, w = c["report"], c["cpu_s"], c["window_s"]

        def share(n):
            return f"{cpu[n]:.2f} s ({100 * cpu[n] / max(w, 1e-9):.0f} %)" if n in cpu else "—"
        ops = "—" if c["redis_ops"] is None else f"{c['redis_ops']:,} ({c['redis_ops'] / max(1, r['reconnected']):.1f} per client)"
        ru = r["resume_us"]
        rows.append(
            f"| {c['store']} | {r['users']:,} × {r['messages_per_user']} | **{r['storm_seconds']:.2f} s** | "
            f"{ru['p50'] / 1e3:.0f} / {ru['p99'] / 1e3:.0f} / {ru['max'] / 1e3:.0f} ms | "
            f"{r['storm_handshake_us']['p50'] / 1e3:.0f} / {r['storm_handshake_us']['p99'] / 1e3:.0f} ms | "
            f"{replay_cell(r)} | "
            f"{r['resumed']:,} / {r['resume_failed']} / {sum(r['errors'].values())} | "
            f"{r['replayed']:,} of {r['expected_replayed']:,} ({r['duplicates']} dup, {r['missing']} missing) | "
            f"{share('gateway')} | {share('api')} | {share('redis')} | {share('bench')} | {ops} | "
            f"{c.get('tcp', {}).get('ListenOverflows', '—')} | {sum(r['retries'].values())} |")
        push_ops = ("" if c["push_redis_ops"] is None else
                    f", {c['push_redis_ops']:,} Redis commands with the old gateway's disconnects "
                    f"({c['push_redis_ops'] / max(1, r['pushed']):.2f} per push: {c.get('push_redis_calls')})")
        notes.append(
            f"- {c['store']}: first connections {r['connections_established']:,} in {r['connect_seconds']:.1f} s, "
            f"ended by {r['lost']}; gateway SIGTERM to exit {c['shutdown_s']:.1f} s, to the new one ready "
            f"{c['restart_s']:.1f} s; {r['pushed']:,} pushes meanwhile in {r['push_seconds']:.1f} s{push_ops}; "
            f"storm window {w:.2f} s"
            + (f", Redis commands in it {c['redis_calls']}" if c.get("redis_calls") else "")
            + f"; {connect_rpc(c)}; upgrades refused {c.get('rejected') or 0}; kernel TCP counters over it {c.get('tcp')}; gateway_resumes_total {c['resumes']}; reconnect retries {r['retries'] or 0}; "
            f"errors {r['errors'] or 0}; {c['gateway_warnings']} warnings in the new gateway's log"
            + (f"; 1-min load average {c['loadavg'][0]:.1f} → {c['loadavg'][1]:.1f} on "
               f"{doc_cpus} CPUs" if c.get("loadavg") else "")
            + (f"; DEADLINE during {r['deadline_hit']}" if r.get("deadline_hit") else "") + ".")
    return [
        "## Resume storm",
        "",
        "Users connect (one per uid) and read their position from one Push each; the gateway gets SIGTERM "
        "(1001 closes over its --drain-window) and a new one starts on the same port; K messages are pushed "
        "to every user meanwhile; then all reconnect at once with `X-Resume-Since` (`ws-bench resume "
        "--restart`). Time: first reconnect attempt to the last `resumed`; per client: its attempt to its "
        "`resumed` (a refused or 503 attempt is retried after 20–100 ms), split into the handshake (TCP connect "
        "to 101, which waits for the gateway's Connect call to ws-api) and 101 → `resumed` (the replay as the "
        "client sees it). CPU: /proc/<pid>/stat from the "
        "bench's start signal to its last `resumed` (% of one core over that window); ws-api `--threads 1`, "
        "redis-server and ws-bench share the load CPU. Redis commands: INFO stats total_commands_processed "
        "over the same window. Listen overflows: the kernel's TcpExt ListenOverflows over the window (a full accept "
        "queue drops the handshake's last ACK, and the gateway's SYN-ACK is sent again 1, 3, 7 s later); the "
        "whole machine's, but nothing else here accepts that fast.",
        "",
        "| store | users × K | all resumed in | per client p50 / p99 / max | reconnect handshake p50 / p99 | "
        "101 → resumed p50 / p99 | "
        "resumed / failed / errors | replayed | gateway CPU | ws-api CPU | Redis CPU | ws-bench CPU | Redis commands | "
        "listen overflows | retries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *notes,
        "",
    ]


def render(doc):
    """The results file's Markdown (its lines), from the JSON document alone."""
    m, results, timings, plan = doc["machine"], doc["results"], doc["case_seconds"], doc["plan"]
    scale, quiet, smoke = doc["scale_params"], doc["quiet"], doc["scale"] == "smoke"
    command = "make bench-smoke" if smoke else "make bench"
    if doc.get("only"):
        command = f"python3 bench/run.py{' --smoke' if smoke else ''} --only {doc['only']}"
    # The gateway's flags given by environment change what was measured: they go in the command.
    env = " ".join(f"{k}={v}" for k, v in sorted(doc.get("gateway_env", {}).items()))
    command = f"{env} {command}" if env else command
    perf_note = "" if m["perf"] else " perf is absent here, so syscalls per message are n/a."
    wait_note = (" Before each pair the run waits (up to 5 min) for the machine to be 90 % idle, and reruns a pair "
                 f"(twice at most) when a CPU was busier than the processes measured on it by more than {DISTURBED} "
                 "points." if quiet else "")
    return [
        f"# ws-gateway benchmark ({doc['scale']}), {doc['date']}",
        "",
        f"Machine: {m['host']}: {m['cpu']}, {m['cores']} CPUs ({m['cpus_usable']} usable), kernel {m['kernel']}, "
        f"open-files hard limit {m['nofile_hard']}. Tree: {doc['commit']}.",
        f"Placement: {plan['placement']}. The floor is `ws-bench sink` (one thread, level-triggered epoll, one "
        "`read` per readiness into a shared 64 KiB buffer, frames parsed only to skip them), run right after the "
        "gateway under the same ws-bench load.",
        f"Command: `{command}` ({doc['elapsed_s']:.0f} s; per case: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ").",
        "",
    ] + ([
        "## Per-message cost against the floor",
        "",
        f"Each load runs {scale['duration']} (seed one-way cases) or {scale['short_duration']} (the others) after "
        f"every connection is up. CPU is one core's share over the steady window (after a {scale['warmup']} "
        "warm-up, before the last quarter, at most 5 s, of the rest), from /proc/<pid>/stat utime + stime; "
        "ratio = gateway / floor (total, then user / sys). µs per message = CPU seconds / messages ws-bench sent "
        "in the window (user + sys). Syscalls per message: `perf stat -e raw_syscalls:sys_enter -p PID` over "
        "that last stretch (kept out of the CPU window: the tracepoint costs the traced process a little per "
        f"syscall).{perf_note}{wait_note} Context switches per message: every thread's voluntary + involuntary "
        "switches over the CPU window (/proc/<pid>/task/*/status) per message sent. Core CPU busy: the whole core's busy share from /proc/stat over the "
        "same window (the process, interrupts, and anything else on that CPU). Seed cases are one-way like the "
        "Go original (ws-api `--handler discard`, ws-bench `--no-echo`); echo rows are round trips through "
        "ws-api (floor: `ws-bench sink --echo`), with ws-bench's round-trip p50 / p99 after the warm-up.",
        "",
        "| case | load (steady rate) | gateway CPU (user + sys) | floor CPU (user + sys) | ratio | ratio user / sys | "
        "gateway µs/msg (user + sys) | floor µs/msg | syscalls/msg gateway / floor | "
        "context switches/msg gateway / floor | core CPU busy gateway / floor | "
        "RSS peak gateway / floor | round trip p50 / p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *message_rows(results, plan),
        "",
        *disturbed(results, plan),
        "",
        *json_vs_protobuf(results),
        "",
    ] if message_keys(results) else []) + ([
        "## Saturation, one-way, one core",
        "",
        f"{scale['sat_users']} connections, 50 B JSON frames, ws-api `--handler discard`; each step "
        f"{scale['sat_duration']} (window after {scale['sat_warmup']}); the same steps against the floor. "
        "Core / load CPU busy: /proc/stat for the gateway's CPU and for the CPU that ws-bench and ws-api share.",
        "",
        "| offered msg/s | sent msg/s | gateway CPU (user + sys) | gateway µs/msg (user + sys) | "
        "syscalls/msg gateway / floor | "
        "core CPU busy | load CPU busy | floor CPU | floor µs/msg | ratio | stopped by |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *saturation_rows(results["saturation"]),
        "",
        *saturation_summary(results["saturation"]),
        "",
    ] if "saturation" in results else []) + ([
        "## Other cases (gateway only)",
        "",
        "| case | result |",
        "|---|---|",
        *other_rows(results),
        "",
    ] if other_rows(results) else []) + deflate_section(results, plan) + resume_section(results, m["cpus_usable"])


def rerender(path):
    """Writes the .md beside the results file `path` (.json) from it alone; returns the .md's path."""
    with open(path) as f:
        doc = json.load(f)
    md = os.path.splitext(path)[0] + ".md"
    with open(md, "w") as f:
        f.write("\n".join(render(doc)))
    return md


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: python3 bench/render.py RESULTS.json  (writes RESULTS.md beside it)", file=sys.stderr)
        return 2
    print(f"wrote {rerender(sys.argv[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

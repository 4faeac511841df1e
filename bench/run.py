#!/usr/bin/env python3
"""`make bench` / `make bench-smoke`: start ws-api and ws-gateway with the
gateway pinned to CPU 0 and everything else on CPU 1, run the benchmark
cases with ws-bench, and write bench/results/<date>-<host>.{md,json}.

Stdlib only. Every case is bounded in connections and time."""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
GW, ADMIN, API = "127.0.0.1:18080", "127.0.0.1:19090", "127.0.0.1:18081"


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "host": socket.gethostname(),
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_line(proc, marker, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before printing {marker!r}")
        if marker in line:
            return line
    raise RuntimeError(f"no {marker!r} within {timeout}s")


class Stack:
    """ws-api on CPU 1, ws-gateway pinned to CPU 0 (glommio pins itself)."""

    def __init__(self, handler, extra=()):
        self.api = subprocess.Popen(
            ["taskset", "-c", "1", f"{REL}/ws-api", "--listen", API, "--handler", handler, "--threads", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        wait_line(self.api, "ws-api listening on")
        self.gw = subprocess.Popen(
            [f"{REL}/ws-gateway", "--listen", GW, "--admin-listen", ADMIN, "--upstream", API,
             "--cpus", "0", "--log", "warn", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        wait_line(self.gw, "ws-gateway listening on")
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://{ADMIN}/readyz", timeout=1).status == 200:
                    break
            except Exception:
                time.sleep(0.05)
        self.baseline_rss_kib = rss_kib(self.gw.pid)

    def metric(self, name):
        text = urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=5).read().decode()
        return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def close(self):
        for p in (self.gw, self.api):
            p.terminate()
        for p in (self.gw, self.api):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def bench(stack, args, name):
    out = f"/tmp/ws-bench-{os.getpid()}-{name}.json"
    cmd = ["taskset", "-c", "1", f"{REL}/ws-bench", *args, "--host", GW, "--gateway-pid", str(stack.gw.pid),
           "--json", out, "--name", name]
    print("$", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    with open(out) as f:
        report = json.load(f)
    os.unlink(out)
    return report


def seed_case(scale, data, name):
    stack = Stack("echo")
    try:
        r = bench(stack, ["message", "--user", str(scale["users"]), "--file", f"{ROOT}/testdata/{data}",
                          "--interval", "1s", "--duration", scale["duration"], "--warmup", scale["warmup"],
                          "--threads", "1"], name)
    finally:
        stack.close()
    return r


def idle_case(scale, limits):
    users = min(scale["idle_users"], limits["nofile_hard"] - 500)
    stack = Stack("echo", ["--max-connections-per-core", str(users + 10)])
    try:
        r = bench(stack, ["conn", "--user", str(users), "--sleep", scale["idle_hold"], "--concurrency", "256",
                          "--source", "127.0.0.1-127.0.0.8"], "idle")
        g = r["gateway"]
        r["gateway_baseline_rss_mib"] = stack.baseline_rss_kib / 1024
        r["rss_per_connection_kib"] = (g["rss_settled_mib"] * 1024 - stack.baseline_rss_kib) / max(1, r["connections_established"])
    finally:
        stack.close()
    return r


def saturation(scale, handler):
    """Raise the offered rate until loss > 1 %, the bench saturates, or the rates run out."""
    echo = handler == "echo"
    stack = Stack(handler)
    steps = []
    try:
        for total in scale["rates"]:
            users = scale["sat_users"]
            args = ["message", "--user", str(users), "--content", '{"type":"message","payload":"eyJrZXkiOiJYVmxCemdiYWlDIn0="}',
                    "--rate", str(total / users), "--duration", scale["sat_duration"], "--threads", "1"]
            if not echo:
                args.append("--no-echo")
            before = stack.metric("gateway_messages_in_total")
            r = bench(stack, args, f"saturation-{handler}-{total}")
            handled = stack.metric("gateway_messages_in_total") - before
            g = r["gateway"]
            r["gateway_messages"] = handled
            r["gateway_cpu_us_per_message"] = 1e6 * g["cpu_seconds"] / max(1, handled)
            loss = r["messages_lost"] / max(1, r["messages_sent"])
            r["loss_ratio"] = loss
            steps.append(r)
            if loss > 0.01 or r["bench_saturated"] or g["cpu_percent_of_one_core"] > 95:
                break
    finally:
        stack.close()
    ok = [s for s in steps if s["loss_ratio"] <= 0.01]
    best = max(ok, key=lambda s: s["received_per_s" if echo else "sent_per_s"]) if ok else None
    return {"handler": handler, "steps": steps, "best": best}


def push_case(scale, broadcast=False):
    stack = Stack("echo")
    extra, name = (["--broadcast", "--rounds", "10"], "broadcast") if broadcast else (["--rounds", "3"], "push")
    try:
        return bench(stack, ["push", "--user", str(scale["push_users"]), "--api", API, "--threads", "1", *extra], name)
    finally:
        stack.close()


SCALES = {
    "full": {"users": 10000, "duration": "60s", "warmup": "5s", "idle_users": 19000, "idle_hold": "20s", "sat_users": 200,
             "sat_duration": "8s", "rates": [20000, 40000, 80000, 120000, 160000, 240000, 320000], "push_users": 10000},
    "smoke": {"users": 200, "duration": "2s", "warmup": "0s", "idle_users": 500, "idle_hold": "1s", "sat_users": 50,
              "sat_duration": "1s", "rates": [2000, 8000], "push_users": 200},
}


def warm(r):
    w = r.get("rtt_warmup_seconds", 0)
    return f" (after {w:g} s warm-up)" if w else ""


def fmt_rows(results):
    c1, c2, idle, sat_rt, sat_ow, push, bcast = (results[k] for k in (
        "case1", "case2", "idle", "saturation_echo", "saturation_discard", "push", "broadcast"))
    rows = []
    for label, r in (("1: 10k clients, 1 msg/s, 50 B", c1), ("2: 10k clients, 1 msg/s, 1 KiB", c2)):
        g = r["gateway"]
        rows.append(f"| {label} ({r['users']} clients, {r['load_seconds']:.0f} s) | {g['cpu_percent_of_one_core']:.2f} % | "
                    f"{g['rss_peak_mib']:.1f} MiB | {r['messages_lost']} lost of {r['messages_sent']}; rtt{warm(r)} p50 {r['rtt_us']['p50']} µs, "
                    f"p99 {r['rtt_us']['p99']} µs, p99.9 {r['rtt_us']['p99.9'] if 'p99.9' in r['rtt_us'] else r['rtt_us']['p999']} µs |")
    rows.append(f"| 3: idle, {idle['connections_established']} connections held | — | {idle['gateway']['rss_settled_mib']:.1f} MiB | "
                f"{idle['rss_per_connection_kib']:.2f} KiB RSS per connection; connect {idle['connect_rate_per_s']:.0f}/s, "
                f"handshake p99 {idle['handshake_us']['p99']} µs; failed {idle['connections_failed']} |")
    for label, s in (("4a: saturation, round trip (echo)", sat_rt), ("4b: saturation, one-way (discard)", sat_ow)):
        b = s["best"]
        if b is None:
            rows.append(f"| {label} | — | — | no step within 1 % loss |")
            continue
        rate = b["received_per_s"] if s["handler"] == "echo" else b["sent_per_s"]
        limiter = "bench/ws-api core saturated" if b["bench_saturated"] else "rates exhausted or loss"
        rows.append(f"| {label} | {b['gateway']['cpu_percent_of_one_core']:.1f} % | {b['gateway']['rss_peak_mib']:.1f} MiB | "
                    f"{rate:,.0f} msg/s sustained; **{b['gateway_cpu_us_per_message']:.2f} µs gateway CPU per message**; "
                    f"rtt p99 {b['rtt_us']['p99']} µs; stopped by: {limiter} |")
    g = push["gateway"]
    rows.append(f"| 5: push fan-out to {push['connections_established']} users | {g['cpu_percent_of_one_core']:.1f} % | "
                f"{g['rss_peak_mib']:.1f} MiB | {push['received_per_s']:,.0f} deliveries/s, {push['messages_lost']} lost; "
                f"Push→delivery p50 {push['rtt_us']['p50']} µs, p99 {push['rtt_us']['p99']} µs |")
    g = bcast["gateway"]
    per = 1e6 * g["cpu_seconds"] / max(1, bcast["messages_received"])
    rows.append(f"| 6: broadcast to {bcast['connections_established']} sessions, 10 rounds | {g['cpu_percent_of_one_core']:.1f} % | "
                f"{g['rss_peak_mib']:.1f} MiB | {bcast['received_per_s']:,.0f} deliveries/s, {bcast['messages_lost']} lost; "
                f"{per:.2f} µs gateway CPU per delivery; Broadcast→delivery p50 {bcast['rtt_us']['p50']} µs, p99 {bcast['rtt_us']['p99']} µs |")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="every case scaled down to seconds")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    scale = SCALES["smoke" if args.smoke else "full"]
    m = machine()
    started = time.time()
    results = {
        "case1": seed_case(scale, "50b.txt", "case1-50b"),
        "case2": seed_case(scale, "1k.txt", "case2-1k"),
        "idle": idle_case(scale, m),
        "saturation_echo": saturation(scale, "echo"),
        "saturation_discard": saturation(scale, "discard"),
        "push": push_case(scale),
        "broadcast": push_case(scale, broadcast=True),
    }
    elapsed = time.time() - started
    kind = "smoke" if args.smoke else "full"
    stamp = datetime.date.today().isoformat()
    doc = {"machine": m, "scale": kind, "elapsed_s": elapsed, "results": results}
    lines = [
        f"# ws-gateway benchmark ({kind}), {stamp}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, open-files hard limit {m['nofile_hard']}.",
        "Placement: ws-gateway pinned to CPU 0 (`--cpus 0`); ws-api (`--threads 1`) and ws-bench on CPU 1 (taskset).",
        f"Command: `{'make bench-smoke' if args.smoke else 'make bench'}` ({elapsed:.0f} s).",
        "",
        "| case | gateway CPU (one core) | gateway RSS (peak) | result |",
        "|---|---|---|---|",
        *fmt_rows(results),
        "",
        "Gateway CPU is read from /proc/<pid>/stat over the load phase only (after every client connected).",
        "µs per message = gateway CPU seconds / messages the gateway counted in that step.",
        "",
    ]
    if kind == "full":
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, f"{stamp}-{m['host']}")
        with open(base + ".json", "w") as f:
            json.dump(doc, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write("\n".join(lines))
        print(f"wrote {base}.md and .json")
    print("\n".join(lines))
    bad = [k for k in ("case1", "case2") if results[k]["connections_failed"] or results[k]["messages_lost"]]
    if bad:
        print(f"FAILED: connection failures or lost messages in {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

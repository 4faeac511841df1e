#!/usr/bin/env python3
"""`make bench` / `make bench-smoke`: run the benchmark cases with ws-bench
against ws-gateway (pinned to the first CPU, ws-api and ws-bench on the
second) and, under exactly the same load in the same run, against the floor
(`ws-bench sink`: a single-threaded epoll WebSocket server that reads and
discards every frame, pinned like the gateway). Writes
bench/results/<date>-<host>.{md,json}.

Every process listens on a port the kernel picks (port 0; the address is read
from its banner). On a 1-CPU machine nothing is pinned apart and the results
say so. Stdlib only; every case is bounded in connections and time.

This file runs the cases and collects their JSON; bench/render.py writes the
Markdown from that JSON alone, and bench/cases.py holds what both need."""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from cases import DEFLATE_CASES, DISTURBED, MESSAGE_CASES, RESUME_STORES, disturbance
from render import render, rerender

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
LOCAL = "127.0.0.1:0"


def cpu_plan():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return {"core": cpus[0], "load": cpus[1], "pinned": True,
                "placement": f"ws-gateway and the floor pinned to CPU {cpus[0]}; ws-api (`--threads 1`), "
                             f"ws-bench and perf on CPU {cpus[1]} (taskset)"}
    return {"core": cpus[0], "load": None, "pinned": False,
            "placement": f"pinning was not possible: one CPU ({cpus[0]}), so ws-gateway (or the floor), "
                         "ws-api and ws-bench all share it; CPU figures include contention"}


def machine(plan):
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "host": socket.gethostname(),
        "cpu": model,
        "cores": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "perf": shutil.which("perf") is not None,
        "pinned": plan["pinned"],
        "placement": plan["placement"],
    }


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def spawn(cmd, pattern, timeout=30):
    """Starts cmd and waits for the banner line matching pattern; returns (proc, match)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{os.path.basename(cmd[0])} exited before printing its banner")
        m = re.search(pattern, line)
        if m:
            return proc, m
    proc.kill()
    raise RuntimeError(f"{os.path.basename(cmd[0])}: no banner within {timeout}s")


def stop(proc):
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


class Gateway:
    """ws-api on the load CPU, ws-gateway pinned to the core CPU (glommio pins itself)."""
    kind = "gateway"

    def __init__(self, plan, handler, extra=()):
        self.api, m = spawn([*taskset(plan), f"{REL}/ws-api", "--listen", LOCAL, "--handler", handler,
                             "--threads", "1", "--auth", "insecure-dev"], r"ws-api listening on (\S+)")
        self.api_addr = m.group(1)
        self.proc = subprocess.Popen(
            [f"{REL}/ws-gateway", "--listen", LOCAL, "--admin-listen", LOCAL, "--upstream", self.api_addr,
             "--cpus", str(plan["core"]), "--log", "warn", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.admin = self.addr = None
        deadline = time.time() + 30
        while self.addr is None and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.close()
                raise RuntimeError("ws-gateway exited before printing its banner")
            if m := re.search(r"admin listening on http://(\S+)", line):
                self.admin = m.group(1)
            if m := re.search(r"ws-gateway listening on wss?://([^/\s]+)", line):
                self.addr = m.group(1)
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://{self.admin}/readyz", timeout=1).status == 200:
                    break
            except Exception:
                time.sleep(0.05)
        self.pid, self.api_pid = self.proc.pid, self.api.pid
        self.baseline_rss_kib = rss_kib(self.pid)

    def metrics(self):
        return urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5).read().decode()

    def received(self):
        return sum(float(m.group(1)) for m in
                   re.finditer(r"^gateway_messages_in_total(?:{[^}]*})? (\S+)$", self.metrics(), re.M))

    def compression(self):
        """The gateway's permessage-deflate counters (name without `gateway_` and `_total`: value)."""
        return {m.group(1): float(m.group(2)) for m in
                re.finditer(r"^gateway_(compress\w*?)(?:_total)? (\S+)$", self.metrics(), re.M)}

    def close(self):
        for p in (self.proc, self.api):
            stop(p)


class Floor:
    """`ws-bench sink` pinned to the core CPU."""
    kind = "floor"

    def __init__(self, plan, echo=False, push=None):
        """push: (users, rounds, rate, broadcast) for the push and broadcast floor."""
        extra = ["--echo"] if echo else []
        if push:
            users, rounds, rate, broadcast = push
            extra += ["--push-users", str(users), "--push-rounds", str(rounds), "--push-rate", f"{rate:.0f}",
                      *(["--push-broadcast"] if broadcast else [])]
        self.proc, m = spawn([f"{REL}/ws-bench", "sink", "--listen", LOCAL, "--cpu", str(plan["core"]), *extra],
                             r"ws-bench sink listening on (\S+)")
        self.addr, self.pid, self.api_pid = m.group(1), self.proc.pid, None
        self.baseline_rss_kib = rss_kib(self.pid)
        self.summary = {}

    def received(self):
        return None

    def close(self):
        out = stop(self.proc)
        m = re.search(r"frames (\d+) messages (\d+)", out)
        if m:
            self.summary = {"frames": int(m.group(1)), "messages": int(m.group(2))}


def taskset(plan):
    return ["taskset", "-c", str(plan["load"])] if plan["pinned"] else []


def bench(plan, target, args, name):
    out = f"/tmp/ws-bench-{os.getpid()}-{name}.json"
    cmd = [*taskset(plan), f"{REL}/ws-bench", *args, "--host", target.addr, "--gateway-pid", str(target.pid),
           "--json", out, "--name", name]
    if target.api_pid:
        cmd += ["--api-pid", str(target.api_pid)]
    if args[0] == "message":
        cmd.append("--syscalls")
    print("$", " ".join(cmd[len(taskset(plan)):]), flush=True)
    before = target.received()
    subprocess.run(cmd, check=True)
    with open(out) as f:
        report = json.load(f)
    os.unlink(out)
    after = target.received()
    report["target"] = target.kind
    if before is not None:
        report["target_messages_in"] = after - before
    return report


def message_args(scale, users, rate, data, protobuf, echo, duration=None, warmup=None, burst=False):
    args = ["message", "--user", str(users), "--file", f"{ROOT}/testdata/{data}", "--rate", str(rate),
            "--duration", duration or scale["duration"], "--warmup", warmup or scale["warmup"], "--threads", "1"]
    if protobuf:
        args.append("--protobuf")
    if not echo:
        args.append("--no-echo")
    if burst:
        args.append("--burst")
    return args


def cpu_idle():
    """(idle, total) jiffies over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[3] + v[4], sum(v)


def wait_quiet(quiet, log):
    """Waits (at most quiet['max_wait'] s) until the CPUs are >= quiet['idle'] % idle over 3 s.
    Returns the seconds waited. Others compiling on a shared machine skew every figure."""
    if not quiet:
        return 0.0
    t0 = time.time()
    while True:
        i0, a0 = cpu_idle()
        time.sleep(3)
        i1, a1 = cpu_idle()
        idle = 100 * (i1 - i0) / max(1, a1 - a0)
        if idle >= quiet["idle"] or time.time() - t0 > quiet["max_wait"]:
            waited = time.time() - t0 - 3
            if waited > 1:
                log.append(f"waited {waited:.0f} s for a quiet machine ({idle:.0f} % idle)")
            return waited
        time.sleep(10)


def cleanest(quiet, attempt):
    """attempt() -> a case's dict with a "disturbance"; on a shared machine it is run again (up to
    quiet['retries'] times) while its windows were disturbed, and the cleanest attempt is kept."""
    best, log = None, []
    for n in range(1 + (quiet["retries"] if quiet else 0)):
        wait_quiet(quiet, log)
        out = attempt()
        if best is None or out["disturbance"] < best["disturbance"]:
            best = out
        if out["disturbance"] <= DISTURBED:
            break
        log.append(f"attempt {n + 1} disturbed by {out['disturbance']:.0f} points")
    best["attempts"] = n + 1
    best["quiet_log"] = log
    return best


def paired_case(plan, scale, case, quiet):
    """The same load against the gateway, then against the floor (the cleanest of up to three pairs)."""
    key, label, users_key, rate, data, protobuf, echo, burst = case
    # The seed one-way cases get the longest window; the rest have more messages or are variants.
    duration = scale["duration"] if key in ("case1", "case1-pb", "case2") else scale["short_duration"]
    args = message_args(scale, scale[users_key], rate, data, protobuf, echo, duration=duration, burst=burst)

    def attempt():
        out = {"label": label, "echo": echo, "protobuf": protobuf, "burst": burst, "users": scale[users_key],
               "rate_per_conn": rate}
        for make in (lambda: Gateway(plan, "echo" if echo else "discard"), lambda: Floor(plan, echo)):
            target = make()
            try:
                r = bench(plan, target, args, f"{key}-{target.kind}")
            finally:
                target.close()
            if target.kind == "floor":
                r["target_messages_in"] = target.summary.get("messages")
            out[target.kind] = r
        out["disturbance"] = max(disturbance(plan, out["gateway"]), disturbance(plan, out["floor"]))
        return out

    return cleanest(quiet, attempt)


DEFLATE = ["--compression", "deflate"]


def deflate_case(plan, scale, case, quiet):
    """The same load against the gateway without, then with, permessage-deflate (the cleanest of up to three
    pairs); the compressed run's counters say what went over the wire."""
    key, label, users_key, rate, data, echo, more = case
    args = message_args(scale, scale[users_key], rate, data, False, echo, duration=scale["short_duration"])

    def attempt():
        out = {"label": label, "echo": echo, "users": scale[users_key], "rate_per_conn": rate, "file": data}
        for variant, extra in (("plain", []), ("deflate", DEFLATE + list(more))):
            target = Gateway(plan, "echo" if echo else "discard", extra)
            try:
                client = ["--compression"] if extra else []
                if "--compression-context-takeover" in more and extra:
                    client.append("--compression-takeover")
                r = bench(plan, target, args + client, f"{key}-{variant}")
                r["compression"] = target.compression()
            finally:
                target.close()
            out[variant] = r
        out["disturbance"] = max(disturbance(plan, out["plain"]), disturbance(plan, out["deflate"]))
        return out

    return cleanest(quiet, attempt)


def idle_case(plan, scale, limits, compared=None):
    """Idle connections' memory on the gateway and on the floor, or (compared="deflate") on the gateway without
    and with permessage-deflate negotiated on every connection."""
    users = min(scale["idle_users"], limits["nofile_hard"] - 500)
    out = {"users": users}
    room = ["--max-connections-per-core", str(users + 10)]
    conn = ["conn", "--user", str(users), "--sleep", scale["idle_hold"], "--concurrency", "256", "--source",
            "127.0.0.1-127.0.0.8"]
    runs = [("gateway", lambda: Gateway(plan, "echo", room), []), ("floor", lambda: Floor(plan), [])]
    if compared == "deflate":
        runs = [("plain", lambda: Gateway(plan, "echo", room), []),
                ("deflate", lambda: Gateway(plan, "echo", room + DEFLATE), ["--compression"])]
    for name, make, extra in runs:
        target = make()
        try:
            r = bench(plan, target, conn + extra, f"idle-{name}")
            r["baseline_rss_mib"] = target.baseline_rss_kib / 1024
            r["rss_per_connection_kib"] = ((r["gateway"]["rss_settled_mib"] * 1024 - target.baseline_rss_kib)
                                           / max(1, r["connections_established"]))
        finally:
            target.close()
        out[name] = r
    return out


def saturation_steps(plan, scale, target):
    """Raise the offered one-way rate until loss, a saturated core or the bench, or the rates run out."""
    steps = []
    for total in scale["rates"]:
        users = scale["sat_users"]
        args = message_args(scale, users, total / users, "50b.txt", False, False,
                            duration=scale["sat_duration"], warmup=scale["sat_warmup"])
        r = bench(plan, target, args, f"saturation-{target.kind}-{total}")
        w = r["window"]
        busy = w["cpu_busy_percent"]
        core_busy = busy[plan["core"]] if plan["core"] < len(busy) else None
        load_busy = busy[plan["load"]] if plan["pinned"] and plan["load"] < len(busy) else None
        got = r.get("target_messages_in")
        loss = 0 if got is None else max(0.0, 1 - got / max(1, r["messages_sent"]))
        stopped = []
        if w["target"]["cpu_percent"] > 95:
            stopped.append(f"{target.kind} core saturated")
        load_procs = w["bench_cpu_percent"] + (w.get("api") or {}).get("cpu_percent", 0)
        # Open loop: a load that falls behind sends late and then in bursts; it has saturated
        # once it cannot keep the offered rate or its CPU is full.
        if w["messages_per_s"] < 0.95 * total or load_procs > 90 or (load_busy or 0) > 97:
            stopped.append("load CPU saturated (ws-bench" + (" + ws-api)" if target.kind == "gateway" else ")"))
        if loss > 0.01:
            stopped.append(f"{loss:.1%} of messages not counted by the gateway")
        steps.append({"offered": total, "report": r, "core_busy": core_busy, "load_busy": load_busy,
                      "loss": loss, "stopped_by": stopped, "disturbance": disturbance(plan, r)})
        if stopped:
            break
    return steps


def saturation(plan, scale, quiet):
    out = {}
    for make in (lambda: Gateway(plan, "discard"), lambda: Floor(plan)):
        wait_quiet(quiet, out.setdefault("quiet_log", []))
        target = make()
        try:
            out[target.kind] = saturation_steps(plan, scale, target)
        finally:
            target.close()
    return out


def push_case(plan, scale, broadcast=False):
    """ws-api's Push (or Broadcast) fan-out through the gateway, then the same deliveries at the rate the
    gateway reached written by `ws-bench sink --push-users`, pinned like the gateway: its floor."""
    rounds = 10 if broadcast else 3
    extra, name = (["--broadcast"], "broadcast") if broadcast else ([], "push")
    args = ["push", "--user", str(scale["push_users"]), "--threads", "1", "--rounds", str(rounds), *extra]
    stack = Gateway(plan, "echo")
    try:
        report = bench(plan, stack, [*args, "--api", stack.api_addr], name)
    finally:
        stack.close()
    floor = Floor(plan, push=(report["connections_established"], rounds, max(report["received_per_s"], 1.0),
                              broadcast))
    try:
        report["floor"] = bench(plan, floor, args, f"{name}-floor")
    finally:
        floor.close()
    for r in (report, report["floor"]):
        r["target_us_per_delivery"] = 1e6 * r["gateway"]["cpu_seconds"] / max(1, r["messages_received"])
    return report


# ---- resume storm (issue 12) ----

RESUME_LINES = ("ws-bench resume: positions read", "ws-bench resume: pushed, waiting for a line on stdin",
                "ws-bench resume: storm over")  # resume.rs: POSITIONS_READ, WAITING_FOR_GO, STORM_OVER


def start_logged(cmd, pattern, log, timeout=30):
    """Starts cmd with stdout and stderr to the file log (a storm's warnings must not fill a pipe nobody reads)
    and waits for the banner line matching pattern; returns (proc, match)."""
    out = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    deadline = time.time() + timeout
    with open(log) as f:
        while time.time() < deadline:
            line = f.readline()
            if m := re.search(pattern, line):
                return proc, m
            if not line:
                if proc.poll() is not None:
                    raise RuntimeError(f"{os.path.basename(cmd[0])} exited before printing its banner (see {log})")
                time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"{os.path.basename(cmd[0])}: no banner within {timeout}s (see {log})")


def wait_ready(admin, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://{admin}/readyz", timeout=1).status == 200:
                return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"ws-gateway at {admin} not ready within {timeout}s")


def cpu_seconds(pid):
    """utime + stime of pid from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_call(port, *args):
    """One command over a raw socket (RESP); returns the reply's text."""
    req = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req.encode())
        data = s.recv(65536)
        if data.startswith(b"$"):
            size = int(data[1:data.index(b"\r\n")])
            head = data.index(b"\r\n") + 2
            while len(data) < head + size:
                data += s.recv(65536)
            return data[head:head + size].decode()
        return data.decode().strip()


def redis_ops(port):
    return int(re.search(r"total_commands_processed:(\d+)", redis_call(port, "INFO", "stats")).group(1))


def redis_calls(port):
    """Calls per command name (INFO commandstats)."""
    text = redis_call(port, "INFO", "commandstats")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_([^:]+):calls=(\d+)", text)}


def calls_since(port, before):
    return {k: v - before.get(k, 0) for k, v in redis_calls(port).items() if v - before.get(k, 0)}


def start_redis(plan, log):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc, _ = start_logged([*taskset(plan), "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no"], r"[Rr]eady to accept connections", log)
    return proc, port


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPReqQFullDoCookies", "TCPReqQFullDrop")


def tcp_counters():
    """The kernel's accept-queue counters (TcpExt in /proc/net/netstat; the whole machine's)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return {k: values.get(k, 0) for k in TCP_COUNTERS}


def metric_by(text, name, label):
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(rf'^{name}{{[^}}]*{label}="([^"]*)"[^}}]*}} (\S+)$', text, re.M)}


def rpc_latency(text, method):
    """The gateway's histogram of one unary call to ws-api: calls, mean, and the bucket bounds below which
    half and 99 % of them finished (seconds)."""
    name = "gateway_upstream_rpc_duration_seconds"
    total = metric_by(text, f"{name}_count", "method").get(method, 0)
    mean = metric_by(text, f"{name}_sum", "method").get(method, 0) / max(1, total)
    buckets = [(float(m.group(1)), float(m.group(2))) for m in
               re.finditer(rf'^{name}_bucket{{le="([^"]+)",method="{method}"}} (\S+)$', text, re.M)]

    def within(q):
        return next((le for le, n in buckets if n >= q * total), None)
    return {"calls": total, "mean_s": mean, "p50_le_s": within(0.5), "p99_le_s": within(0.99)}


def resume_case(plan, scale, store):
    """A resume storm: users connect and learn their position, the gateway restarts (SIGTERM, 1001 closes
    spread over its --drain-window; the same port at once), K messages are pushed to each user meanwhile, and
    all reconnect at once with X-Resume-Since. CPU and Redis commands are counted from the bench's 'go' to
    its last 'resumed'."""
    users, k = scale["resume_users"], scale["resume_messages"]
    logs = f"/tmp/ws-bench-{os.getpid()}-resume-{store}"
    procs, out = [], f"{logs}.json"
    try:
        redis = None
        if store == "redis":
            rp, port = start_redis(plan, f"{logs}-redis.log")
            procs.append(rp)
            redis = (rp, port)
        api, m = start_logged([*taskset(plan), f"{REL}/ws-api", "--listen", LOCAL, "--handler", "discard", "--auth", "insecure-dev",
                               "--threads", "1", *(["--redis", f"redis://127.0.0.1:{redis[1]}"] if redis else [])],
                              r"ws-api listening on (\S+)", f"{logs}-api.log")
        procs.append(api)
        api_addr = m.group(1)

        def gateway(listen, n):
            proc, m = start_logged([f"{REL}/ws-gateway", "--listen", listen, "--admin-listen", LOCAL, "--upstream",
                                    api_addr, "--cpus", str(plan["core"]), "--log", "warn"],
                                   r"ws-gateway listening on wss?://([^/\s]+)", f"{logs}-gateway{n}.log")
            procs.append(proc)
            with open(f"{logs}-gateway{n}.log") as f:
                admin = re.search(r"admin listening on http://(\S+)", f.read()).group(1)
            wait_ready(admin)
            return proc, m.group(1), admin

        gw, addr, _ = gateway(LOCAL, 1)
        cmd = [f"{REL}/ws-bench", "resume", "--host", addr, "--api", api_addr, "--user", str(users),
               "--messages", str(k), "--restart", "--threads", "1", "--deadline", scale["resume_deadline"],
               "--json", out, "--name", f"resume-{store}"]
        print("$", " ".join(cmd), flush=True)
        bench_proc = subprocess.Popen([*taskset(plan), *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        procs.append(bench_proc)

        def expect(line):
            for got in bench_proc.stdout:
                print(got, end="", flush=True)
                if got.strip() == line:
                    return
            raise RuntimeError(f"ws-bench resume ended before '{line}'")

        who = [("api", api.pid)] + ([("redis", redis[0].pid)] if redis else [])
        expect(RESUME_LINES[0])
        before_push = {"redis_ops": redis_ops(redis[1]) if redis else None,
                       "calls": redis_calls(redis[1]) if redis else None}
        t = time.time()
        gw.terminate()
        gw.wait(timeout=60)
        shutdown_s = time.time() - t
        gw, _, admin = gateway(addr, 2)
        restart_s = time.time() - t
        expect(RESUME_LINES[1])
        if redis:
            before_push["redis_ops"] = redis_ops(redis[1]) - before_push["redis_ops"]
            before_push["calls"] = calls_since(redis[1], before_push["calls"])
        who += [("gateway", gw.pid), ("bench", bench_proc.pid)]
        a = {n: cpu_seconds(pid) for n, pid in who}
        tcp0 = tcp_counters()
        ops0 = redis_ops(redis[1]) if redis else None
        calls0 = redis_calls(redis[1]) if redis else None
        load0 = os.getloadavg()[0]
        t0 = time.time()
        bench_proc.stdin.write("\n")
        bench_proc.stdin.flush()
        expect(RESUME_LINES[2])
        window = time.time() - t0
        b = {n: cpu_seconds(pid) for n, pid in who}
        tcp = {k: v - tcp0[k] for k, v in tcp_counters().items()}
        ops = redis_ops(redis[1]) - ops0 if redis else None
        calls = calls_since(redis[1], calls0) if redis else None
        for line in bench_proc.stdout:
            print(line, end="", flush=True)
        bench_proc.wait(timeout=60)
        with open(out) as f:
            r = json.load(f)
        os.unlink(out)
        metrics = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
        with open(f"{logs}-gateway2.log") as f:
            warnings = sum(1 for line in f if " WARN " in line or " ERROR " in line)
        return {"store": store, "report": r, "window_s": window, "shutdown_s": shutdown_s, "restart_s": restart_s,
                "cpu_s": {n: b[n] - a[n] for n in b}, "tcp": tcp,
                "loadavg": [load0, os.getloadavg()[0]], "redis_ops": ops, "push_redis_ops": before_push["redis_ops"],
                "redis_calls": calls, "push_redis_calls": before_push["calls"],
                "resumes": metric_by(metrics, "gateway_resumes_total", "outcome"),
                "rejected": {k: v for k, v in metric_by(metrics, "gateway_handshakes_rejected_total", "reason").items()
                             if v}, "connect_rpc": rpc_latency(metrics, "Connect"), "gateway_warnings": warnings,
                "logs": logs}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                stop(p)


SCALES = {
    "full": {"users": 10000, "users40k": 2000, "duration": "30s", "short_duration": "20s", "warmup": "5s", "idle_users": 19000,
             "idle_hold": "10s", "sat_users": 200, "sat_duration": "8s", "sat_warmup": "2s",
             "rates": [20000, 40000, 80000, 120000, 160000, 240000], "push_users": 10000,
             "resume_users": 10000, "resume_messages": 10, "resume_deadline": "180s"},
    "smoke": {"users": 200, "users40k": 100, "duration": "3s", "short_duration": "3s", "warmup": "1s", "idle_users": 300,
              "idle_hold": "1s", "sat_users": 50, "sat_duration": "2s", "sat_warmup": "500ms",
              "rates": [2000, 6000], "push_users": 200, "resume_users": 200, "resume_messages": 3,
              "resume_deadline": "60s"},
}


def check(results):
    """Failures that make the run (and `make test`) fail."""
    bad = []
    for key, *_ in MESSAGE_CASES:
        for kind in ("gateway", "floor") if key in results else ():
            r = results[key][kind]
            if r["connections_failed"] or r["messages_lost"] or r["connections_closed_early"]:
                bad.append(f"{key}/{kind}: {r['connections_failed']} failed, {r['messages_lost']} lost, "
                           f"{r['connections_closed_early']} closed early")
            got = r.get("target_messages_in")
            if got is not None and got < r["messages_sent"]:
                bad.append(f"{key}/{kind}: sent {r['messages_sent']}, {kind} counted {got:.0f}")
    for key, *_ in DEFLATE_CASES:
        for kind in ("plain", "deflate") if key in results else ():
            r = results[key][kind]
            if r["connections_failed"] or r["messages_lost"] or r["connections_closed_early"]:
                bad.append(f"{key}/{kind}: {r['connections_failed']} failed, {r['messages_lost']} lost, "
                           f"{r['connections_closed_early']} closed early")
        if key in results and results[key]["deflate"]["compression"].get("compressed_messages_in", 0) == 0:
            bad.append(f"{key}/deflate: the gateway inflated no message (was it negotiated?)")
    for idle, kinds in (("idle", ("gateway", "floor")), ("deflate-idle", ("plain", "deflate"))):
        for kind in kinds if idle in results else ():
            if results[idle][kind]["connections_failed"]:
                bad.append(f"{idle}/{kind}: {results[idle][kind]['connections_failed']} connections failed")
    for key in ("push", "broadcast"):
        for kind, r in (("gateway", results[key]), ("floor", results[key].get("floor"))) if key in results else ():
            if r and (r["connections_failed"] or r["messages_lost"] or r["messages_received"] > r["messages_sent"]):
                bad.append(f"{key}/{kind}: {r['connections_failed']} failed, sent {r['messages_sent']}, "
                           f"received {r['messages_received']}")
    for store in RESUME_STORES:
        r = results.get(f"resume-{store}", {}).get("report")
        if r and (r["resumed"] != r["positions_read"] or r["positions_read"] != r["users"] or r["duplicates"]
                  or r["missing"] or r["wrong_resumed_offset"] or r["replayed"] != r["expected_replayed"]
                  or r.get("deadline_hit")):
            bad.append(f"resume-{store}: {r['resumed']} of {r['users']} resumed, {r['duplicates']} duplicates, "
                       f"{r['missing']} missing, deadline {r.get('deadline_hit')}")
    return bad


def git_commit():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def free_base(out, name):
    """out/name, or out/name-2, -3, ...: a second run on the same day keeps the first one's files."""
    base, n = os.path.join(out, name), 1
    while os.path.exists(base + ".md") or os.path.exists(base + ".json"):
        n += 1
        base = os.path.join(out, f"{name}-{n}")
    return base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="every case scaled down to seconds")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--no-wait", action="store_true",
                    help="full run: do not wait for a quiet machine nor rerun disturbed cases")
    ap.add_argument("--only", metavar="PREFIXES",
                    help="only the cases whose key starts with one of these (comma-separated, e.g. resume); "
                         "the results file gets -<PREFIXES> in its name")
    ap.add_argument("--render", metavar="JSON",
                    help="only write the .md of an earlier run's .json beside it (as bench/render.py JSON does)")
    args = ap.parse_args()
    if args.render:
        print(f"wrote {rerender(args.render)}")
        return 0
    kind = "smoke" if args.smoke else "full"
    scale = SCALES[kind]
    plan = cpu_plan()
    m = machine(plan)
    started = time.time()
    results, timings = {}, {}

    def timed(key, fn):
        t = time.time()
        results[key] = fn()
        timings[key] = round(time.time() - t, 1)
        print(f"-- {key}: {timings[key]} s", flush=True)

    quiet = None if args.smoke or args.no_wait else {"idle": 90, "max_wait": 300, "retries": 2}
    cases = [(c[0], lambda c=c: paired_case(plan, scale, c, quiet)) for c in MESSAGE_CASES]
    cases += [(c[0], lambda c=c: deflate_case(plan, scale, c, quiet)) for c in DEFLATE_CASES]
    cases += [("deflate-idle", lambda: idle_case(plan, scale, m, compared="deflate"))]
    cases += [("saturation", lambda: saturation(plan, scale, quiet)), ("idle", lambda: idle_case(plan, scale, m)),
              ("push", lambda: push_case(plan, scale)), ("broadcast", lambda: push_case(plan, scale, broadcast=True))]
    for store in RESUME_STORES:
        if store == "redis" and shutil.which("redis-server") is None:
            cases.append((f"resume-{store}", lambda: {"store": "redis", "skipped": "redis-server absent: make deps"}))
        else:
            cases.append((f"resume-{store}", lambda st=store: resume_case(plan, scale, st)))
    prefixes = args.only.split(",") if args.only else [""]
    for key, fn in cases:
        if any(key.startswith(p) for p in prefixes):
            if key.startswith("resume"):
                wait_quiet(quiet, [])
            timed(key, fn)
    doc = {"machine": m, "plan": plan, "scale": kind, "scale_params": scale, "quiet": quiet,
           "date": datetime.date.today().isoformat(), "commit": git_commit(), "only": args.only,
           "gateway_env": {k: v for k, v in os.environ.items() if k.startswith("WS_GATEWAY_")},
           "elapsed_s": time.time() - started, "case_seconds": timings, "results": results}
    lines = render(doc)
    if kind == "full":
        os.makedirs(args.out, exist_ok=True)
        suffix = f"-{args.only.replace(',', '+')}" if args.only else ""
        base = free_base(args.out, f"{doc['date']}-{m['host']}{suffix}")
        with open(base + ".json", "w") as f:
            json.dump(doc, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write("\n".join(lines))
        print(f"wrote {base}.md and .json")
    print("\n".join(lines))
    bad = check(results)
    if bad:
        print("FAILED:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`make bench` / `make bench-smoke`: run the benchmark cases with ws-bench
against ws-gateway (pinned to the first CPU, ws-api and ws-bench on the
second) and, under exactly the same load in the same run, against the floor
(`ws-bench sink`: a single-threaded epoll WebSocket server that reads and
discards every frame, pinned like the gateway). Writes
bench/results/<date>-<host>.{md,json}.

Every process listens on a port the kernel picks (port 0; the address is read
from its banner). On a 1-CPU machine nothing is pinned apart and the results
say so. Stdlib only; every case is bounded in connections and time."""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

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
                             "--threads", "1"], r"ws-api listening on (\S+)")
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

    def received(self):
        text = urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5).read().decode()
        return sum(float(m.group(1)) for m in
                   re.finditer(r"^gateway_messages_in_total(?:{[^}]*})? (\S+)$", text, re.M))

    def close(self):
        for p in (self.proc, self.api):
            stop(p)


class Floor:
    """`ws-bench sink` pinned to the core CPU."""
    kind = "floor"

    def __init__(self, plan, echo=False):
        self.proc, m = spawn([f"{REL}/ws-bench", "sink", "--listen", LOCAL, "--cpu", str(plan["core"]),
                              *(["--echo"] if echo else [])], r"ws-bench sink listening on (\S+)")
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


# One-way like the Go original (ws-api --handler discard, ws-bench --no-echo) unless echo.
MESSAGE_CASES = [
    # key, label, connections key, msg/s per connection, frame file, protobuf, echo
    ("case1", "1: 50 B JSON, one-way", "users", 1, "50b.txt", False, False),
    ("case1-pb", "1pb: 31 B protobuf, one-way", "users", 1, "50b.txt", True, False),
    ("case2", "2: 1 KiB JSON, one-way", "users", 1, "1k.txt", False, False),
    ("40k", "40k: 50 B JSON, one-way", "users40k", 20, "50b.txt", False, False),
    ("40k-pb", "40k pb: 31 B protobuf, one-way", "users40k", 20, "50b.txt", True, False),
    ("case1-echo", "1 echo: 50 B JSON, round trip", "users", 1, "50b.txt", False, True),
    ("case2-echo", "2 echo: 1 KiB JSON, round trip", "users", 1, "1k.txt", False, True),
    ("40k-echo", "40k echo: 50 B JSON, round trip", "users40k", 20, "50b.txt", False, True),
]


def message_args(scale, users, rate, data, protobuf, echo, duration=None, warmup=None):
    args = ["message", "--user", str(users), "--file", f"{ROOT}/testdata/{data}", "--rate", str(rate),
            "--duration", duration or scale["duration"], "--warmup", warmup or scale["warmup"], "--threads", "1"]
    if protobuf:
        args.append("--protobuf")
    if not echo:
        args.append("--no-echo")
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


def disturbance(plan, r):
    """How much busier the two CPUs were than the processes measured on them, in points (0: clean)."""
    w = r.get("window")
    if not w:
        return 0.0
    busy = w.get("cpu_busy_percent") or []
    worst = 0.0
    if plan["core"] < len(busy):
        worst = max(worst, busy[plan["core"]] - w["target"]["cpu_percent"])
    if plan["pinned"] and plan["load"] < len(busy):
        ours = w["bench_cpu_percent"] + (w.get("api") or {}).get("cpu_percent", 0)
        worst = max(worst, busy[plan["load"]] - ours)
    return worst


DISTURBED = 15  # points of CPU busy not explained by the measured processes


def paired_case(plan, scale, case, quiet):
    """The same load against the gateway, then against the floor; on a shared machine, the pair is
    run again (up to quiet['retries'] times) when either window was disturbed, keeping the cleanest."""
    key, label, users_key, rate, data, protobuf, echo = case
    # The seed one-way cases get the longest window; the rest have more messages or are variants.
    duration = scale["duration"] if key in ("case1", "case1-pb", "case2") else scale["short_duration"]
    args = message_args(scale, scale[users_key], rate, data, protobuf, echo, duration=duration)
    best, log = None, []
    for attempt in range(1 + (quiet["retries"] if quiet else 0)):
        wait_quiet(quiet, log)
        out = {"label": label, "echo": echo, "protobuf": protobuf, "users": scale[users_key], "rate_per_conn": rate}
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
        if best is None or out["disturbance"] < best["disturbance"]:
            best = out
        if out["disturbance"] <= DISTURBED:
            break
        log.append(f"attempt {attempt + 1} disturbed by {out['disturbance']:.0f} points")
    best["attempts"] = attempt + 1
    best["quiet_log"] = log
    return best


def idle_case(plan, scale, limits):
    users = min(scale["idle_users"], limits["nofile_hard"] - 500)
    out = {"users": users}
    for make in (lambda: Gateway(plan, "echo", ["--max-connections-per-core", str(users + 10)]), lambda: Floor(plan)):
        target = make()
        try:
            r = bench(plan, target, ["conn", "--user", str(users), "--sleep", scale["idle_hold"], "--concurrency",
                                     "256", "--source", "127.0.0.1-127.0.0.8"], f"idle-{target.kind}")
            r["baseline_rss_mib"] = target.baseline_rss_kib / 1024
            r["rss_per_connection_kib"] = ((r["gateway"]["rss_settled_mib"] * 1024 - target.baseline_rss_kib)
                                           / max(1, r["connections_established"]))
        finally:
            target.close()
        out[target.kind] = r
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
    stack = Gateway(plan, "echo")
    extra, name = (["--broadcast", "--rounds", "10"], "broadcast") if broadcast else (["--rounds", "3"], "push")
    try:
        return bench(plan, stack, ["push", "--user", str(scale["push_users"]), "--api", stack.api_addr,
                                   "--threads", "1", *extra], name)
    finally:
        stack.close()


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
        api, m = start_logged([*taskset(plan), f"{REL}/ws-api", "--listen", LOCAL, "--handler", "discard",
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


# ---- formatting ----

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


def message_rows(results, plan):
    rows = []
    for key, *_ in MESSAGE_CASES:
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
            f"{us(gw)} | {us(fw)} | {sysc(gw)} / {sysc(fw)} | "
            f"{core_busy(gw, plan) or 0:.1f} / {core_busy(fw, plan) or 0:.1f} % | "
            f"{g['gateway']['rss_peak_mib']:.1f} / {f['gateway']['rss_peak_mib']:.1f} MiB | {lat} |")
    return rows


def disturbed(results, plan):
    """Windows where a CPU was much busier than the processes measured on it, and reruns."""
    out, reruns = [], []
    for key, *_ in MESSAGE_CASES:
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
    if push := results.get("push"):
        gu = push["gateway"]
        rows.append(f"| push fan-out to {push['connections_established']:,} users | {gu['cpu_percent_of_one_core']:.1f} % CPU, "
                    f"{gu['rss_peak_mib']:.1f} MiB; {push['received_per_s']:,.0f} deliveries/s, {push['messages_lost']} lost; "
                    f"Push→delivery p50 {push['rtt_us']['p50']} µs, p99 {push['rtt_us']['p99']} µs |")
    if bcast := results.get("broadcast"):
        gu = bcast["gateway"]
        per = 1e6 * gu["cpu_seconds"] / max(1, bcast["messages_received"])
        rows.append(f"| broadcast to {bcast['connections_established']:,} sessions, 10 rounds | {gu['cpu_percent_of_one_core']:.1f} % CPU, "
                    f"{gu['rss_peak_mib']:.1f} MiB; {bcast['received_per_s']:,.0f} deliveries/s, {bcast['messages_lost']} lost; "
                    f"{per:.2f} µs gateway CPU per delivery; Broadcast→delivery p50 {bcast['rtt_us']['p50']} µs, "
                    f"p99 {bcast['rtt_us']['p99']} µs |")
    return rows


RESUME_STORES = ("memory", "redis")


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
    for kind in ("gateway", "floor") if "idle" in results else ():
        if results["idle"][kind]["connections_failed"]:
            bad.append(f"idle/{kind}: {results['idle'][kind]['connections_failed']} connections failed")
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


def render(doc):
    """The results file's Markdown, from the JSON document alone (see --render)."""
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
        f"syscall).{perf_note}{wait_note} Core CPU busy: the whole core's busy share from /proc/stat over the "
        "same window (the process, interrupts, and anything else on that CPU). Seed cases are one-way like the "
        "Go original (ws-api `--handler discard`, ws-bench `--no-echo`); echo rows are round trips through "
        "ws-api (floor: `ws-bench sink --echo`), with ws-bench's round-trip p50 / p99 after the warm-up.",
        "",
        "| case | load (steady rate) | gateway CPU (user + sys) | floor CPU (user + sys) | ratio | ratio user / sys | "
        "gateway µs/msg (user + sys) | floor µs/msg | syscalls/msg gateway / floor | core CPU busy gateway / floor | "
        "RSS peak gateway / floor | round trip p50 / p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *message_rows(results, plan),
        "",
        *disturbed(results, plan),
        "",
        *json_vs_protobuf(results),
        "",
    ] if all(k in results for k, *_ in MESSAGE_CASES) else []) + ([
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
    ] if other_rows(results) else []) + resume_section(results, m["cpus_usable"])


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
    ap.add_argument("--render", metavar="JSON", help="only write the .md of an earlier run's .json beside it")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            doc = json.load(f)
        md = os.path.splitext(args.render)[0] + ".md"
        with open(md, "w") as f:
            f.write("\n".join(render(doc)))
        print(f"wrote {md}")
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

"""What bench/run.py measures and bench/render.py reports, in one place: the
message cases (their keys, labels and loads), the resume stores, and when a
measured window counts as disturbed by other processes. Stdlib only."""

# One-way like the Go original (ws-api --handler discard, ws-bench --no-echo) unless echo. Sends are
# spread evenly over each period unless burst: then every connection sends in the same instant, as the
# Go original's bench tool does (ws-bench --burst).
MESSAGE_CASES = [
    # key, label, connections key, msg/s per connection, frame file, protobuf, echo, burst
    ("case1", "1: 50 B JSON, one-way", "users", 1, "50b.txt", False, False, False),
    ("case1-pb", "1pb: 31 B protobuf, one-way", "users", 1, "50b.txt", True, False, False),
    ("case1-burst", "1 burst: 50 B JSON, one-way, all in the same instant", "users", 1, "50b.txt", False, False,
     True),
    ("case2", "2: 1 KiB JSON, one-way", "users", 1, "1k.txt", False, False, False),
    ("case2-burst", "2 burst: 1 KiB JSON, one-way, all in the same instant", "users", 1, "1k.txt", False, False,
     True),
    ("40k", "40k: 50 B JSON, one-way", "users40k", 20, "50b.txt", False, False, False),
    ("40k-pb", "40k pb: 31 B protobuf, one-way", "users40k", 20, "50b.txt", True, False, False),
    ("case1-echo", "1 echo: 50 B JSON, round trip", "users", 1, "50b.txt", False, True, False),
    ("case1-echo-burst", "1 echo burst: 50 B JSON, round trip, all in the same instant", "users", 1, "50b.txt",
     False, True, True),
    ("case2-echo", "2 echo: 1 KiB JSON, round trip", "users", 1, "1k.txt", False, True, False),
    ("40k-echo", "40k echo: 50 B JSON, round trip", "users40k", 20, "50b.txt", False, True, False),
]

# Compression: the same load against the gateway without, then with, `--compression deflate` (defaults: level 1,
# messages under 256 B sent plain), ws-bench `--compression` compressing every message it sends as a browser does
# once it is negotiated; a row's ratio is to its uncompressed twin, not to the floor.
TAKEOVER = ("--compression-context-takeover", "--compression-window-bits", "12")
DEFLATE_CASES = [
    # key, label, connections key, msg/s per connection, frame file, echo, more gateway flags (compressed run);
    # with context takeover, ws-bench --compression-takeover
    ("deflate-case1", "1: 50 B JSON, one-way", "users", 1, "50b.txt", False, ()),
    ("deflate-case1-echo", "1 echo: 50 B JSON, round trip", "users", 1, "50b.txt", True, ()),
    ("deflate-40k", "40k: 50 B JSON, one-way", "users40k", 20, "50b.txt", False, ()),
    ("deflate-40k-echo", "40k echo: 50 B JSON, round trip", "users40k", 20, "50b.txt", True, ()),
    ("deflate-2k", "2k: 2.5 KiB JSON (1.8 KiB body), one-way", "users", 1, "2k-json.txt", False, ()),
    ("deflate-2k-echo", "2k echo: 2.5 KiB JSON (1.8 KiB body), round trip", "users", 1, "2k-json.txt", True, ()),
    # Every message of a connection is the same one here: takeover's best case for bytes; its CPU is the point.
    ("deflate-2k-echo-takeover", "2k echo, context takeover, 4 KiB window (`--compression-context-takeover "
     "--compression-window-bits 12`; the same message every time: the best case for bytes)", "users", 1,
     "2k-json.txt", True, TAKEOVER),
]


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


RESUME_STORES = ("memory", "redis")

#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (RFC 6455 conformance, and
# RFC 7692 permessage-deflate in cases 12.* and 13.*) against ws-gateway in
# raw frame mode with `--compression deflate`, ws-api echoing behind it,
# then checks that every case ended OK, NON-STRICT or INFORMATIONAL, and
# every 12.* and 13.* case OK. Needs Python 2.7 (pyenv) for
# autobahntestsuite.
#
#   make autobahn                     (report in target/autobahn/index.html)
#   CASES='"12.*","13.*"' make autobahn   (some cases only)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/autobahn
VENV=target/autobahn-venv
GW=127.0.0.1:28080 API=127.0.0.1:28081 ADMIN=127.0.0.1:29090
CASES=${CASES:-'"*"'}
PY27=${PY27:-$(pyenv root 2>/dev/null)/versions/2.7.18/bin/python}

if [ ! -x "$VENV/bin/wstest" ] && [ ! -x "$PY27" ]; then
    # autobahntestsuite runs on Python 2.7 only (pyenv's, on this project's
    # machines): CI must have it; elsewhere say so loudly and skip.
    if [ "${CI:-}" = true ]; then
        echo "autobahn: Python 2.7 not found at '$PY27' (set PY27)" >&2
        exit 1
    fi
    echo "autobahn: SKIPPED, Python 2.7 not found at '$PY27' (set PY27)" >&2
    exit 0
fi
if [ ! -x "$VENV/bin/wstest" ]; then
    "$PY27" -m pip install -q 'virtualenv<20.22'
    "$PY27" -m virtualenv -q "$VENV"
    "$VENV/bin/pip" install -q autobahntestsuite
fi
cargo build --release -p ws-gateway -p ws-api --bins
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
./target/release/ws-api --listen "$API" --handler echo --max-message-size 67108864 --auth insecure-dev >/dev/null 2>&1 & pids+=($!)
./target/release/ws-gateway --listen "$GW" --admin-listen "$ADMIN" --upstream "$API" --frame-format raw \
    --compression deflate --compression-min-size 0 --max-message-size 20000000 --max-frame-size 20000000 --upstream-buffer 67108864 --ping-interval 0 \
    --log warn >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p "$OUT"
cat > "$OUT/fuzzingclient.json" <<JSON
{
  "outdir": "$PWD/$OUT",
  "servers": [{"agent": "ws-gateway", "url": "ws://$GW/gateway/ws?token=1"}],
  "cases": [$CASES],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$OUT" && ../../"$VENV"/bin/wstest -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1)

python3 - "$OUT/index.json" <<'PY'
import collections, json, sys
report = json.load(open(sys.argv[1]))["ws-gateway"]
by = collections.Counter()
bad = []
for case, r in sorted(report.items()):
    b = r["behavior"]
    by[b] += 1
    compression = case.split(".")[0] in ("12", "13")
    if b == "OK" or (b in ("NON-STRICT", "INFORMATIONAL") and not compression):
        continue
    bad.append((case, b, r.get("behaviorClose")))
print(f"Autobahn|Testsuite fuzzingclient: {len(report)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
for case, b, c in bad:
    print(f"  case {case}: {b} (close: {c})")
sys.exit(1 if bad else 0)
PY

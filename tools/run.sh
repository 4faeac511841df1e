#!/usr/bin/env bash
# `make run` (AUTH=jwt for real tokens): starts ws-api (chat) and ws-gateway on loopback, and a static
# server for clients/js (the JS client's chat demo), prints where to connect
# once the gateway answers /readyz, and stops them all on Ctrl-C. If a
# process fails to start, says which and exits non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
GW_LISTEN=${GW_LISTEN:-127.0.0.1:8080}
API_LISTEN=${API_LISTEN:-127.0.0.1:8081}
ADMIN_LISTEN=${ADMIN_LISTEN:-127.0.0.1:9090}
DEMO_LISTEN=${DEMO_LISTEN:-127.0.0.1:8000}
READY_WITHIN=${READY_WITHIN:-10}
AUTH=${AUTH:-insecure-dev}
bin=target/release

# insecure-dev: any token, a number is the uid. jwt: ws-api verifies HS256
# tokens with a secret made here once (target/run/jwt-secret), and the
# banner's token for uid 42 is one `ws-api token` signed with it.
case "$AUTH" in
    insecure-dev)
        auth=(--auth insecure-dev)
        token=42
        how="insecure-dev: a number is the uid" ;;
    jwt)
        secret=target/run/jwt-secret
        mkdir -p target/run
        [ -s "$secret" ] || (umask 077 && head -c 32 /dev/urandom | base64 >"$secret")
        auth=(--auth jwt --jwt-hmac-secret-file "$secret")
        token=$(./$bin/ws-api token --uid 42 --hmac-secret-file "$secret" --ttl 24h) || exit 1
        how="--auth jwt: uid 42's, from ./$bin/ws-api token --uid 42 --hmac-secret-file $secret" ;;
    *)
        echo "make run: AUTH is insecure-dev or jwt, not '$AUTH'" >&2
        exit 2 ;;
esac

# chat: the demo's rooms (join/say); any other message is echoed.
./$bin/ws-api --listen "$API_LISTEN" --handler chat "${auth[@]}" & api=$!
./$bin/ws-gateway --listen "$GW_LISTEN" --upstream "$API_LISTEN" --admin-listen "$ADMIN_LISTEN" & gw=$!
# The demo imports ../wsgw.js, so the server's root is clients/js.
python3 -m http.server --bind "${DEMO_LISTEN%:*}" "${DEMO_LISTEN##*:}" --directory clients/js \
    >/dev/null 2>&1 & demo=$!
trap 'kill $api $gw $demo 2>/dev/null; wait 2>/dev/null' EXIT
# Ctrl-C reaches every process of the terminal's group: ws-api and the
# gateway stop gracefully on their own, and a second signal from here would
# cut the gateway's drain short. A TERM (or an INT sent to this script
# alone) is passed on once; either way this waits for them to finish.
stop() {
    trap '' INT TERM
    [ "$1" = TERM ] && kill -TERM "$api" "$gw" 2>/dev/null
    kill "$demo" 2>/dev/null
    local until=$((SECONDS + 2))
    while kill -0 "$gw" 2>/dev/null || kill -0 "$api" 2>/dev/null; do
        # Not stopping by itself: the signal was this script's alone.
        [ "$1" = INT ] && [ "$SECONDS" -ge "$until" ] && { kill -TERM "$api" "$gw" 2>/dev/null; set -- TERM; }
        sleep 0.1
    done
    trap - EXIT
    echo "make run: stopped" >&2
    exit 0
}
trap 'stop INT' INT
trap 'stop TERM' TERM

# GET /readyz with bash's /dev/tcp: 0 once it answers 200.
ready() {
    { exec 3<>"/dev/tcp/${ADMIN_LISTEN%:*}/${ADMIN_LISTEN##*:}"; } 2>/dev/null || return 1
    printf 'GET /readyz HTTP/1.1\r\nHost: run\r\nConnection: close\r\n\r\n' >&3
    local status
    read -r _ status _ <&3
    exec 3<&-
    [ "$status" = 200 ]
}

alive() {
    kill -0 "$api" 2>/dev/null || { echo "make run: ws-api did not start (its error is above)" >&2; return 1; }
    kill -0 "$gw" 2>/dev/null || { echo "make run: ws-gateway did not start (its error is above)" >&2; return 1; }
    kill -0 "$demo" 2>/dev/null || { echo "make run: the demo's web server did not start on $DEMO_LISTEN (in use? set DEMO_LISTEN)" >&2; return 1; }
}

deadline=$((SECONDS + READY_WITHIN))
while alive || exit 1; ! ready; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "make run: ws-gateway not ready within ${READY_WITHIN}s (http://$ADMIN_LISTEN/readyz)" >&2
        exit 1
    fi
    sleep 0.1
done
# One that failed a moment after the gateway became ready (a port in use, say).
alive || exit 1

cat <<BANNER

Connect to ws://$GW_LISTEN/gateway/ws with a token ($how), e.g. type into:
  target/venv/bin/python3 -m websockets 'ws://$GW_LISTEN/gateway/ws?token=$token'
  {"type":"message","payload":"aGVsbG8="}            (ws-api's chat handler echoes it)
Push to that user from another shell:
  ./$bin/ws-api push --api $API_LISTEN --uid 42 --type notice --payload hello
Browsers: new WebSocket('ws://$GW_LISTEN/gateway/ws?token=$token').
JS client (clients/js/wsgw.js) chat demo: http://$DEMO_LISTEN/demo/?gw=ws://$GW_LISTEN/gateway/ws in two tabs, two uids, one room$([ "$AUTH" = jwt ] && echo " (its uid is its token: insecure-dev only)").
Metrics and probes: http://$ADMIN_LISTEN/metrics /readyz. Ctrl-C stops them all.
BANNER

wait -n "$api" "$gw"
if kill -0 "$api" 2>/dev/null; then who=ws-gateway; else who=ws-api; fi
echo "make run: $who exited; stopping" >&2
exit 1

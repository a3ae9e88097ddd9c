#!/usr/bin/env bash
# ingest_wrk.sh: custom-event ingestion throughput, in events/s, through
#   /v1/batch (Segment, 1,000 track messages per request, admin listener),
#   /api/events (NDJSON, 1,000 events per request, admin listener),
#   /_tollgate/e (one browser event per request, keep-alive, proxy listener).
# Every answer comes after the commit, so these are committed events per second.
# Segment messages carry a messageId (new in every request), as the official clients send, so
# each is checked against the deduplication keys; the NDJSON events carry no key of their own.
# Then a kill -9 in the middle of a /v1/batch load, a restart, and a count (ingest_crash.py).
#
# Usage: cargo test --release --no-run && benches/ingest_wrk.sh
# Environment: DURATION=10 (seconds per run), CONNS=4 (wrk connections),
#   TOLLGATE_BIN (default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate),
#   CRASH_AFTER=5 (seconds of load before the kill -9),
#   KEEP_TMP=1 (keep the temp dir with the payloads and tollgate's log; kept on failure too)
set -euo pipefail
DURATION=${DURATION:-10}
CONNS=${CONNS:-4}
log() { printf '[ingest_wrk] %s\n' "$*" >&2; }
die() { printf '[ingest_wrk] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tollgate
command -v wrk >/dev/null || bash "$(dirname "$0")/../.ci/deps" bench
make_tmp ingest_wrk
trap_cleanup

python3 - "$TMP" <<'PY'
import json, sys
d = sys.argv[1]
ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
# Every message has a messageId, as the official clients send: "@@" stands for the request's
# number in the run, which the Lua script below puts in, so that no two requests repeat one.
batch = {"batch": [{"type": "track", "messageId": "@@-%d" % i, "userId": "u%d" % i,
                    "event": "Order Completed",
                    "properties": {"revenue": i, "sku": "X100"},
                    "context": {"userAgent": ua, "ip": "203.0.113.%d" % (i % 250),
                                "page": {"url": "https://shop.example/checkout?utm_source=newsletter&utm_medium=email"}}}
                   for i in range(1000)]}
open(d + "/batch.json", "w").write(json.dumps(batch))
open(d + "/events.ndjson", "w").write("\n".join(json.dumps(
    {"name": "purchase", "user_id": "u%d" % i, "props": {"value": i},
     "url": "https://shop.example/checkout?utm_source=newsletter&utm_medium=email"}) for i in range(1000)))
open(d + "/beacon.json", "w").write(json.dumps({"name": "click", "props": {"id": "buy-x100"}}))
for name, path, ctype, auth in [("batch", "batch.json", "application/json", True),
                                ("events", "events.ndjson", "application/x-ndjson", False),
                                ("beacon", "beacon.json", "text/plain", False)]:
    lua = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "%s"\n' % ctype
    if auth:
        lua += 'wrk.headers["Authorization"] = "Basic YmVuY2gta2V5Og=="\n'  # "bench-key:"
    lua += 'local f = io.open("%s/%s", "rb"); wrk.body = f:read("*a"); f:close()\n' % (d, path)
    if name == "batch":
        # The body cut at each "@@"; request() joins the pieces with this request's number
        # (prefixed by a per-run nonce, so that the runs do not repeat each other's ids).
        lua += """
local parts, n, nonce = {}, 0, tostring(os.time()) .. tostring(math.random(1e9))
for piece in (wrk.body .. "@@"):gmatch("(.-)@@") do parts[#parts + 1] = piece end
local buf = {}
request = function()
  n = n + 1
  local id = nonce .. "-" .. n
  for i = 1, #parts - 1 do buf[2 * i - 1] = parts[i]; buf[2 * i] = id end
  buf[2 * #parts - 1] = parts[#parts]
  buf[2 * #parts] = nil
  return wrk.format(nil, nil, nil, table.concat(buf))
end
"""
    open("%s/%s.lua" % (d, name), "w").write(lua)
PY

read -r listen admin < <(free_ports 2)
listen=127.0.0.1:$listen admin=127.0.0.1:$admin
start_tollgate ingest "$TMP/log" TOLLGATE_WRITE_KEYS=bench-key -- --upstream http://127.0.0.1:9 \
  --listen "$listen" --admin "$admin" --data "$TMP/data"
sleep 1

run() { # name url events-per-request
  local out rps total non2xx p50
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/$1.lua" "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  # Events are counted from the 2xx answers only: a refused request committed nothing.
  printf '| %s | %s | %.0f | %.0f | %s | %s |\n' "$1" "$3" "$rps" \
    "$(python3 -c "print($rps * ($total - ${non2xx:-0}) / max($total, 1) * $3)")" "$p50" "${non2xx:-0}"
}
echo "## tollgate ingestion benchmark (wrk -t1 -c$CONNS -d${DURATION}s), $(date -u +%FT%TZ), $(nproc) CPUs"
echo
echo "| endpoint | events/request | requests/s | events/s (2xx) | p50 | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
run batch "http://$admin/v1/batch" 1000
run events "http://$admin/api/events" 1000
run beacon "http://$listen/_tollgate/e" 1
echo
echo "stored: $("$BIN" query --data "$TMP/data" --format csv 'SELECT count(*) FROM events' | tail -1) events"

# A 2xx means durable: kill -9 tollgate under /v1/batch load (four clients, a messageId on
# every message), restart it on the same store, and count; then resend what was not
# acknowledged, as a Segment client retries, and count again (benches/ingest_crash.py).
CRASH_AFTER=${CRASH_AFTER:-5}
read -r listen admin < <(free_ports 2)
crash_args=(TOLLGATE_WRITE_KEYS=bench-key -- --upstream http://127.0.0.1:9
  --listen "127.0.0.1:$listen" --admin "127.0.0.1:$admin" --data "$TMP/crash")
start_tollgate crash "$TMP/crash.log" "${crash_args[@]}"
# bash reports its child's kill -9 on its own stderr ("Killed"): expected here, so not shown.
exec 3>&2 2>/dev/null
python3 "$(dirname "$0")/ingest_crash.py" load "$TG_ADMIN" "$TG_PID" "$CRASH_AFTER" "$TMP/crash.json" 2>&3
wait "$TG_PID" || true
exec 2>&3 3>&-
forget_server "$TG_PID"
start_tollgate restarted "$TMP/crash.log" "${crash_args[@]}"
crash=$(python3 "$(dirname "$0")/ingest_crash.py" verify "$TG_ADMIN" "$TMP/crash.json")
echo
echo "kill -9 after ${CRASH_AFTER} s of /v1/batch load: $crash"

#!/usr/bin/env bash
# ingest_wrk.sh: custom-event ingestion throughput, in events/s, through
#   /v1/batch (Segment, 1,000 track messages per request, admin listener),
#   /api/events (NDJSON, 1,000 events per request, admin listener),
#   /_tollgate/e (one browser event per request, keep-alive, proxy listener).
# Every answer comes after the commit, so these are committed events per second.
# Messages carry no messageId: each request writes new events (the dedup check still runs).
#
# Usage: cargo test --release --no-run && benches/ingest_wrk.sh
# Environment: DURATION=10 (seconds per run), CONNS=4 (wrk connections),
#   TOLLGATE_BIN (default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate),
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
batch = {"batch": [{"type": "track", "userId": "u%d" % i, "event": "Order Completed",
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

#!/usr/bin/env bash
# reports_bench.sh: how fast does every report answer on a large store?
#
# Generates N synthetic events (`tollgate generate --events N --days 30 --seed 1`: sessions,
# campaigns, a long tail of pages, API calls, registrations and purchases, bots) into DATA
# (reused when it already holds a store, so the 10M-event store is built once: ~3 minutes),
# starts `tollgate serve` on it (admin on a free loopback port; the upstream is never called),
# then asks every report RUNS times over the whole 30-day range, unfiltered and then with a
# dashboard filter (a page, a campaign, a country, ...), in interleaved rounds (each
# report once per round), after one warm-up round. Each time is curl's time_total for
# `GET /api/reports/...` on loopback, so it includes HTTP and JSON. Reported per report:
# median, min and max seconds, and the median as a multiple of the baseline's: one plain
# `count(*), count(DISTINCT visitor_id)` over the same page views through the SQL console.
# Last, the most memory tollgate held over the runs (VmHWM).
#
# Usage:
#   bash benches/reports_bench.sh            (needs the release binary, see TOLLGATE_BIN)
#   N=1000000 RUNS=5 bash benches/reports_bench.sh
#
# Environment:
#   N=10000000     events to generate
#   RUNS=7         timed runs per report
#   DATA=DIR       the store's directory (default $HOME/.cache/tollgate/bench-reports-$N)
#   TOLLGATE_BIN   default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate
#   OUT=FILE       also write the report to FILE
#   KEEP_TMP=1     keep the temp dir (tollgate's log, the raw times; kept on failure too)
#   TOLLGATE_STORE_MEMORY_LIMIT=4GiB   passed on to tollgate (`store.memory_limit`; the default
#                  512 MiB is too little for some reports on 100M events: they answer 503)
set -euo pipefail

N=${N:-10000000}
RUNS=${RUNS:-7}
DATA=${DATA:-$HOME/.cache/tollgate/bench-reports-$N}
log() { printf '[reports_bench] %s\n' "$*" >&2; }
die() { printf '[reports_bench] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tollgate
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

if [ ! -f "$DATA/tollgate.duckdb" ]; then
  echo "Generating $N events into $DATA ..." >&2
  "$BIN" generate --data "$DATA" --events "$N" --days 30 --seed 1 >&2
fi
rows=$("$BIN" query --data "$DATA" --format csv "SELECT count(*) FROM events" | tail -1)

make_tmp reports_bench
trap_cleanup
port=$(free_ports 1)
TG_GRACE=600   # tenths of a second: a large store may take a while to close
start_tollgate reports "$TMP/tollgate.log" TOLLGATE_LOG=warn -- --upstream http://127.0.0.1:9 --data "$DATA" \
  --listen 127.0.0.1:0 --admin "127.0.0.1:$port"

to=$(date -u +%F)
from=$(date -u -d "$to - 29 days" +%F)
enc() { python3 -c 'import json,sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
funnel4=$(enc '[{"type":"path","pattern":"/product/*"},{"type":"path","pattern":"/register"},{"type":"event","name":"registered"},{"type":"event","name":"purchased","props":{"category":"cameras"}}]')
# The baseline: one plain aggregate over the page views through the SQL console (the least a
# report over every page view costs), timed the same way.
BASELINE="SELECT count(*), count(DISTINCT visitor_id) FROM events WHERE name = 'page_view' AND ts >= TIMESTAMP '$from' AND ts < TIMESTAMP '$to' + INTERVAL 1 DAY AND is_bot IS NOT TRUE"
reports=(
  "baseline"
  "overview"
  "overview?interval=hour&days=7"
  "overview?utm_source=facebook&device_type=mobile"
  "pages"
  "acquisition?dimension=channel"
  "acquisition?dimension=utm_campaign"
  "acquisition?dimension=all"
  "audience"
  "api"
  "events?event=purchased&property=category"
  "funnel?steps=$funnel4&window=1d"
  "funnel?steps=$funnel4&window=1d&breakdown=utm_source"
  "attribution?event=registered&by=utm_campaign"
  "retention"
  "realtime"
  # With a filter, as the dashboard sends them: a page, a campaign, a country, a device, a
  # source, a route.
  "overview?path=/products"
  "overview?utm_campaign=ads_cameras"
  "pages?country=DE"
  "acquisition?dimension=all&device_type=mobile"
  "audience?utm_source=facebook"
  "api?route=/api/cart"
  "events?event=purchased&property=category&utm_source=facebook"
  "funnel?steps=$funnel4&window=1d&country=DE"
  "attribution?event=registered&by=utm_campaign&device_type=mobile"
  "retention?utm_source=facebook"
)
week=$(date -u -d "$to - 6 days" +%F)
url() {
  local r=$1 f=$from
  case "$r" in *"&days=7") r=${r%&days=7}; f=$week;; esac
  case "$r" in *\?*) echo "http://127.0.0.1:$port/api/reports/$r&from=$f&to=$to";;
               *) echo "http://127.0.0.1:$port/api/reports/$r?from=$f&to=$to";; esac
}
fetch() {   # fetch REPORT OUTPUT FORMAT: the baseline is a POST to the SQL console
  if [ "$1" = baseline ]; then
    curl -s -o "$2" -w "$3" -H 'content-type: application/json' \
      -d "$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$BASELINE")" \
      "http://127.0.0.1:$port/api/query"
  else
    curl -s -o "$2" -w "$3" "$(url "$1")"
  fi
}
# The writer builds the page sketches of each day that is over when it is at rest (a store
# generated by this build has them already; an older one gets them now, ~0.7 s a day of 10M/30
# events, ~8 s of 100M/30): wait until their count holds for 12 s, so that `pages`,
# `acquisition` and `audience` are timed as they run from then on.
sketch_days() {
  curl -s -H 'content-type: application/json' -d '{"sql": "SELECT count(*) AS n FROM page_sketch_days"}' \
    "http://127.0.0.1:$port/api/query" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("rows", [["none"]])[0][0])'
}
last=-1
same=0
for _ in $(seq 400); do
  n=$(sketch_days)
  # "none": a build from before the sketches (TOLLGATE_BIN), which has no such table.
  [ "$n" = none ] && break
  if [ "$n" = "$last" ] && [ "$n" != 0 ]; then
    same=$((same + 1))
    [ "$same" -ge 4 ] && break
  else
    same=0
  fi
  last=$n
  sleep 3
done
log "page sketches: $n days"
# Warm-up: every report must answer 200, or 503 for running out of store.memory_limit (then it
# is listed as such and left out of the timed runs).
skip=" "
for i in "${!reports[@]}"; do
  r=${reports[$i]}
  code=$(fetch "$r" "$TMP/body" '%{http_code}')
  if [ "$code" = 503 ] && grep -q 'store.memory_limit' "$TMP/body"; then
    log "$r: out of memory under store.memory_limit"
    skip="$skip$i "
    continue
  fi
  [ "$code" = 200 ] || { echo "$r answered $code: $(head -c 300 "$TMP/body")" >&2; exit 1; }
done
for _ in $(seq "$RUNS"); do
  for i in "${!reports[@]}"; do
    case "$skip" in *" $i "*) continue;; esac
    t=$(fetch "${reports[$i]}" /dev/null '%{time_total}')
    echo "$i $t" >>"$TMP/times"
  done
done

report=$(python3 - "$TMP/times" "$rows" "$RUNS" "${reports[@]}" <<'PY'
import statistics, sys
path, rows, runs, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
times = {}
for line in open(path):
    i, t = line.split()
    times.setdefault(int(i), []).append(float(t))
print(f"{rows:,} events, the whole 30-day range unless marked, {runs} runs per report\n")
base = statistics.median(times[0])
print("| report | median s | min s | max s | median / baseline |")
print("|---|---:|---:|---:|---:|")
for i, n in enumerate(names):
    ts = times.get(i)
    if n == "baseline":
        n = "baseline: SELECT count(*), count(DISTINCT visitor_id) over the page views (POST /api/query)"
    short = n.replace("&days=7", " (7 days)")
    if "steps=" in short:
        name, query = short.split("?", 1)
        extra = [p for p in query.split("&") if not p.startswith(("steps=", "window="))]
        short = name + " (4 steps, window=1d" + "".join(", " + p for p in extra) + ")"
    if ts is None:
        print(f"| `{short}` | 503: out of memory under store.memory_limit | | | |")
        continue
    print(f"| `{short}` | {statistics.median(ts):.3f} | {min(ts):.3f} | {max(ts):.3f} | {statistics.median(ts) / base:.1f} |")
PY
)
# The most memory tollgate held while it answered them (the kernel's high-water mark).
peak=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$TG_PID/status")
report="$report

Peak RSS of tollgate over the runs: $peak MiB (store.memory_limit: ${TOLLGATE_STORE_MEMORY_LIMIT:-the default, 512 MiB})."
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
out="$report

Machine: $machine. Date: $(date -u +%F). Command: N=$N RUNS=$RUNS bash benches/reports_bench.sh"
echo "$out"
[ -z "${OUT:-}" ] || echo "$out" >"$OUT"

#!/usr/bin/env bash
# inject_wrk.sh: what does injecting the tracker cost? Throughput of HTML pages through
# tollgate with `inject.enabled = true` against the same pages through tollgate with
# injection off, both in front of the same nginx upstream with gzip on.
#
#   off  wrk -> tollgate (inject off: nginx's gzip passes through)  -> nginx
#   on   wrk -> tollgate (inject on: asks nginx for the page uncompressed, inserts the tag,
#               gzips it)                                            -> nginx
#
# The page is a generated shop page of PAGE_BYTES (default 32 KiB) of HTML: a head with
# meta, link and script tags, then product cards. nginx compresses it (gzip_comp_level 1,
# its default). Every request sends `Accept: text/html` and `Accept-Encoding: gzip, deflate,
# br, zstd` as Chromium does. Runs are `wrk -t1 -c32 -d${DURATION}s --latency`, interleaved
# off, on, off, on, ... so that drift hits both alike. Capture stays on in both (the default).
#
# Usage:
#   cargo test --release --no-run && benches/inject_wrk.sh
#
# Environment:
#   RUNS=5  DURATION=10  PAGE_BYTES=32768  PROXY_THREADS=2
#   LEVEL=1           inject.compression_level of the "on" tollgate (1 is the default)
#   TOLLGATE_BIN      default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate
#   OUT=FILE          also write the report to FILE;  KEEP_TMP=1 keeps the temp dir

set -euo pipefail

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
PAGE_BYTES=${PAGE_BYTES:-32768}
PROXY_THREADS=${PROXY_THREADS:-2}
LEVEL=${LEVEL:-1}
WARMUP=2

log() { printf '[inject_wrk] %s\n' "$*" >&2; }
die() { printf '[inject_wrk] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for v in RUNS DURATION PAGE_BYTES PROXY_THREADS LEVEL; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
command -v python3 >/dev/null || die "python3 is required"
need_nginx_wrk
need_tollgate

make_tmp inject_wrk
trap_cleanup

read -r UP OFF OFF_ADMIN ON ON_ADMIN < <(free_ports 5)

# ------------------------------------------------------------------------- upstream nginx

mkdir -p "$TMP/nginx/html" "$TMP/nginx/tmp"
python3 - "$TMP/nginx/html/index.html" "$PAGE_BYTES" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
head = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<title>Cameras | Example Shop</title>\n<link rel="stylesheet" href="/assets/site.css">\n'
        '<script src="/assets/app.js" defer></script>\n</head>\n<body>\n<main>\n')
tail = '</main>\n</body></html>\n'
cards, i = [], 0
while len(head) + len(tail) + sum(map(len, cards)) < n:
    cards.append(f'<article class="card"><a href="/product/{i}"><h2>Camera model {i}</h2></a>'
                 f'<p>{i % 7 + 2} megapixel sensor, {i % 5 + 1}x zoom, ships in {i % 3 + 1} days.</p>'
                 f'<button data-tg-event="add_to_cart" data-tg-prop-sku="SKU-{i}">Add</button></article>\n')
    i += 1
body = (head + ''.join(cards))[: n - len(tail)] + tail
open(path, 'w').write(body)
EOF
{
  nginx_common "$TMP/nginx"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$TMP/nginx")
    keepalive_requests 1000000;
    gzip on;
    gzip_types text/html;
    gzip_vary on;
    server { listen 127.0.0.1:$UP; root $TMP/nginx/html; }
}
EOF
} >"$TMP/nginx/nginx.conf"
chmod -R a+rX "$TMP"
start_nginx upstream "$TMP/nginx"

# ------------------------------------------------------------------------------ tollgates

inject_tollgate() {   # name port admin inject(true|false)
  mkdir -p "$TMP/data-$1"
  start_tollgate "$1" "$TMP/tollgate-$1.log" TOLLGATE_SERVER_THREADS="$PROXY_THREADS" \
    TOLLGATE_INJECT_ENABLED="$4" TOLLGATE_INJECT_COMPRESSION_LEVEL="$LEVEL" -- \
    --upstream "http://127.0.0.1:$UP" --listen "127.0.0.1:$2" --admin "127.0.0.1:$3" --data "$TMP/data-$1"
}
inject_tollgate off "$OFF" "$OFF_ADMIN" false
inject_tollgate on "$ON" "$ON_ADMIN" true

HEADERS=(-H "Accept: text/html,application/xhtml+xml,*/*;q=0.8" -H "Accept-Encoding: gzip, deflate, br, zstd")
declare -A URL=([off]="http://127.0.0.1:$OFF/index.html" [on]="http://127.0.0.1:$ON/index.html")

# Sanity: both answer gzip; "on" has the tag exactly once, "off" has the upstream's bytes.
curl -s "${HEADERS[@]}" -o "$TMP/direct.gz" "http://127.0.0.1:$UP/index.html"
for s in off on; do
  curl -s "${HEADERS[@]}" -D "$TMP/$s.headers" -o "$TMP/$s.gz" "${URL[$s]}"
  grep -qi '^content-encoding: gzip' "$TMP/$s.headers" || die "$s: not gzip-encoded"
done
cmp -s "$TMP/direct.gz" "$TMP/off.gz" || die "off: body differs from the upstream's"
n=$(gzip -dc "$TMP/on.gz" | grep -o '/_tollgate/t.js' | wc -l)
[[ $n == 1 ]] || die "on: the tag appears $n times"
GZ_OFF=$(wc -c <"$TMP/off.gz"); GZ_ON=$(wc -c <"$TMP/on.gz")

# ---------------------------------------------------------------------------------- runs

run() {   # setup seconds out
  wrk -t1 -c32 -d"$2s" --latency "${HEADERS[@]}" "${URL[$1]}" >"$3" 2>&1 || { cat "$3" >&2; die "wrk failed"; }
}
for s in off on; do run "$s" "$WARMUP" "$TMP/warmup-$s.txt"; done
RESULTS=$TMP/results.tsv
: >"$RESULTS"
for (( r = 1; r <= RUNS; r++ )); do
  for s in off on; do
    log "round $r/$RUNS: $s (${DURATION}s)"
    run "$s" "$DURATION" "$TMP/wrk-$s-$r.txt"
    python3 - "$s" "$TMP/wrk-$s-$r.txt" >>"$RESULTS" <<'EOF'
import re, sys
s, path = sys.argv[1:3]
t = open(path).read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def lat(p):
    m = re.search(r"^\s*%s%%\s+([0-9.]+)(us|ms|s)\s*$" % p, t, re.M)
    return float(m.group(1)) * unit[m.group(2)]
if re.search(r"Non-2xx or 3xx responses", t):
    sys.exit(f"[inject_wrk] ERROR: {s}: non-2xx responses")
rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", t, re.M).group(1))
print(s, f"{rps:.1f}", f"{lat(50):.3f}", f"{lat(99):.3f}", sep="\t")
EOF
  done
done

REPORT=$TMP/report.md
{
  echo "## Injection benchmark (wrk)"
  echo
  echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); machine: $(nproc) CPUs, $(cpu_model)"
  echo "- command: \`RUNS=$RUNS DURATION=$DURATION PAGE_BYTES=$PAGE_BYTES LEVEL=$LEVEL benches/inject_wrk.sh\`"
  echo "- page: $PAGE_BYTES bytes of HTML; gzip from nginx (level 1): $GZ_OFF bytes; injected and gzipped by tollgate at level $LEVEL: $GZ_ON bytes"
  echo "- wrk -t1 -c32, $RUNS runs of ${DURATION}s per setup, interleaved; tollgate with $PROXY_THREADS threads, capture on"
  echo
  python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, rps, p50, p99 = line.split("\t")
    rows.setdefault(s, []).append((float(rps), float(p50), float(p99)))
print("| setup | median req/s | median p50 ms | median p99 ms | runs (req/s) |")
print("|---|---:|---:|---:|---|")
med = {}
for s, label in (("off", "inject off (nginx gzips)"), ("on", "inject on (tollgate injects and gzips)")):
    r = rows[s]
    med[s] = statistics.median(x[0] for x in r)
    runs = ", ".join(f"{x[0]:.0f}" for x in r)
    print(f"| {label} | {med[s]:.0f} | {statistics.median(x[1] for x in r):.3f} | "
          f"{statistics.median(x[2] for x in r):.3f} | {runs} |")
print()
print(f"- on/off median req/s: **{med['on'] / med['off']:.3f}** (goal: at least 0.85)")
EOF
} >"$REPORT"
cat "$REPORT"
[[ -n ${OUT:-} ]] && cp "$REPORT" "$OUT"
exit 0

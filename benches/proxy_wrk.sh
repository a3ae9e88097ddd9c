#!/usr/bin/env bash
# proxy_wrk.sh: what does tollgate cost on the request path, compared with nginx?
#
# Four setups, all on 127.0.0.1, all in front of the same nginx upstream that serves a
# generated 2 KiB HTML page (/index.html, exactly 2048 bytes):
#   a  wrk -> upstream nginx (1 worker)                          the ceiling
#   b  wrk -> proxy nginx (proxy_pass, keepalive 64) -> upstream   the reference proxy
#   c  wrk -> tollgate, capture off (TOLLGATE_CAPTURE_ENABLED=false) -> upstream
#   d  wrk -> tollgate, capture on (the default) -> upstream
# Each run is `wrk -t1 -c32 -d${DURATION}s --latency URL` (keep-alive). Setups are
# interleaved per round (a b c d, a b c d, ...) so that drift hits all of them alike.
# The report (markdown) gives per setup the median req/s, p50 and p99 latency, the max RSS
# under load (proxy nginx workers summed; the tollgate process), then d/b and d/c.
#
# Usage:
#   cargo test --release --no-run && benches/proxy_wrk.sh
#
# Environment:
#   RUNS=5            runs per setup
#   DURATION=10       seconds per wrk run (integer)
#   PROXY_THREADS=2   proxy nginx worker_processes and tollgate's TOLLGATE_SERVER_THREADS
#   TOLLGATE_BIN      default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate
#   SKIP_TOLLGATE=1   run only a and b (no tollgate binary needed)
#   OUT=FILE          also write the report to FILE
#   KEEP_TMP=1        keep the temp dir (configs, logs, raw wrk output) for inspection
#
# Needs bash, coreutils, python3, curl, nginx, wrk; installs nginx and wrk with .ci/deps bench
# if they are missing. nginx and tollgate are stopped on exit by their pids only.

set -euo pipefail

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
PROXY_THREADS=${PROXY_THREADS:-2}
SKIP_TOLLGATE=${SKIP_TOLLGATE:-0}
WRK_THREADS=1
WRK_CONNS=32
WARMUP=2
PAGE_BYTES=2048

CMDLINE="$(printf '%q ' env RUNS="$RUNS" DURATION="$DURATION" PROXY_THREADS="$PROXY_THREADS" \
  SKIP_TOLLGATE="$SKIP_TOLLGATE" ${TOLLGATE_BIN:+TOLLGATE_BIN="$TOLLGATE_BIN"} \
  ${OUT:+OUT="$OUT"} "$0" "$@")"
CMDLINE=${CMDLINE% }

log() { printf '[proxy_wrk] %s\n' "$*" >&2; }
die() { printf '[proxy_wrk] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer of seconds (got '$DURATION')"
[[ $PROXY_THREADS =~ ^[1-9][0-9]*$ ]] || die "PROXY_THREADS must be a positive integer (got '$PROXY_THREADS')"
(( RUNS <= 100 && DURATION <= 3600 )) || die "RUNS <= 100 and DURATION <= 3600, please"

# ---------------------------------------------------------------------------------- tools

for t in python3 curl; do
  command -v "$t" >/dev/null || die "$t is required"
done
need_nginx_wrk

BIN=${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate}
if [[ $SKIP_TOLLGATE != 1 ]]; then
  [[ -x $BIN ]] || die "tollgate binary not found at '$BIN': run 'cargo test --release --no-run' first \
(or set TOLLGATE_BIN, or SKIP_TOLLGATE=1 to benchmark only the nginx setups)"
  case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac
fi

# ------------------------------------------------------------------------- temp + cleanup

TMP=$(mktemp -d "${TMPDIR:-/tmp}/proxy_wrk.XXXXXX")
chmod 755 "$TMP"   # nginx workers may run as another user
NGINX_PIDFILES=()
TOLLGATE_PIDS=()
WRK_PID=

cleanup() {
  local rc=$? pf pid
  trap - EXIT INT TERM
  set +e
  if [[ -n $WRK_PID ]]; then kill "$WRK_PID" 2>/dev/null; wait "$WRK_PID" 2>/dev/null; fi
  for pid in "${TOLLGATE_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null && { wait_gone "$pid" 100 || kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
  done
  for pf in "${NGINX_PIDFILES[@]}"; do
    [[ -s $pf ]] || continue
    pid=$(<"$pf")
    [[ $pid =~ ^[0-9]+$ ]] || continue
    kill -QUIT "$pid" 2>/dev/null && { wait_gone "$pid" 50 || kill -TERM "$pid" 2>/dev/null; }
  done
  if [[ ${KEEP_TMP:-0} == 1 || $rc != 0 ]]; then
    log "temp dir kept: $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------- ports

# Bind all sockets at once so the ports are distinct, then release them.
read -r UP_PORT NGX_PORT C_PORT C_ADMIN D_PORT D_ADMIN < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(6)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss:
    s.close()
')
[[ -n ${D_ADMIN:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------------------- nginx

NGINX_USER_LINE=""
(( EUID == 0 )) && NGINX_USER_LINE="user root;"   # workers must read the temp dir

nginx_common() {   # prefix dir
  cat <<EOF
$NGINX_USER_LINE
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_http_common() {   # prefix dir
  cat <<EOF
    access_log off;
    client_body_temp_path $1/tmp/client_body;
    proxy_temp_path       $1/tmp/proxy;
    fastcgi_temp_path     $1/tmp/fastcgi;
    uwsgi_temp_path       $1/tmp/uwsgi;
    scgi_temp_path        $1/tmp/scgi;
    types { text/html html; }
    default_type application/octet-stream;
EOF
}

start_nginx() {   # name prefix-dir
  local name=$1 dir=$2 i
  local errlog=()
  [[ $("$NGINX" -h 2>&1 || true) == *"-e filename"* ]] && errlog=(-e "$dir/error.log")
  "$NGINX" -p "$dir" "${errlog[@]}" -c "$dir/nginx.conf" -t >"$dir/configtest.log" 2>&1 \
    || { cat "$dir/configtest.log" >&2; die "nginx config test failed for $name"; }
  NGINX_PIDFILES+=("$dir/nginx.pid")
  "$NGINX" -p "$dir" "${errlog[@]}" -c "$dir/nginx.conf" -g "daemon on; pid $dir/nginx.pid;" \
    >"$dir/start.log" 2>&1 \
    || { cat "$dir/start.log" "$dir/error.log" >&2 2>/dev/null; die "nginx ($name) failed to start"; }
  for (( i = 0; i < 50; i++ )); do
    [[ -s $dir/nginx.pid ]] && break
    sleep 0.1
  done
  [[ -s $dir/nginx.pid ]] || die "nginx ($name) wrote no pid file"
}

UP_DIR=$TMP/nginx-upstream
NGX_DIR=$TMP/nginx-proxy
mkdir -p "$UP_DIR/html" "$UP_DIR/tmp" "$NGX_DIR/tmp"

python3 - "$UP_DIR/html/index.html" "$PAGE_BYTES" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
head = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<title>tollgate bench page</title></head>\n<body>\n<h1>Bench</h1>\n<p>')
tail = '</p>\n</body></html>\n'
fill = ('Lorem ipsum dolor sit amet, consectetur adipiscing elit. ' * 64)[: n - len(head) - len(tail)]
page = (head + fill + tail).encode()
assert len(page) == n, len(page)
open(path, 'wb').write(page)
EOF
[[ $(wc -c <"$UP_DIR/html/index.html") -eq $PAGE_BYTES ]] || die "generated page is not $PAGE_BYTES bytes"
chmod -R a+rX "$TMP"

{
  nginx_common "$UP_DIR"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$UP_DIR")
    sendfile on;
    keepalive_timeout 75s;
    # Let proxies reuse their upstream connections instead of reconnecting every 1000.
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        root $UP_DIR/html;
        location / { }
    }
}
EOF
} >"$UP_DIR/nginx.conf"

{
  nginx_common "$NGX_DIR"
  cat <<EOF
worker_processes $PROXY_THREADS;
http {
$(nginx_http_common "$NGX_DIR")
    keepalive_timeout 60s;       # tollgate: server.keepalive_secs = 60
    keepalive_requests 1000;     # tollgate: server.keepalive_requests = 1000
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
} >"$NGX_DIR/nginx.conf"

log "starting upstream nginx on 127.0.0.1:$UP_PORT, proxy nginx on 127.0.0.1:$NGX_PORT"
start_nginx upstream "$UP_DIR"
start_nginx proxy "$NGX_DIR"

# ---------------------------------------------------------------------------- tollgate

start_tollgate() {   # name listen-port admin-port capture(on|off)
  local name=$1 port=$2 admin=$3 capture=$4 i pid
  local envs=(env -u TOLLGATE_CAPTURE_ENABLED TOLLGATE_SERVER_THREADS="$PROXY_THREADS")
  [[ $capture == off ]] && envs+=(TOLLGATE_CAPTURE_ENABLED=false)
  mkdir -p "$TMP/data-$name"
  "${envs[@]}" "$BIN" serve --upstream "http://127.0.0.1:$UP_PORT" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$admin" --data "$TMP/data-$name" >"$TMP/tollgate-$name.log" 2>&1 &
  pid=$!
  TOLLGATE_PIDS+=("$pid")
  for (( i = 0; i < 150; i++ )); do   # 30 s
    if [[ ! -d /proc/$pid ]]; then
      tail -n 40 "$TMP/tollgate-$name.log" >&2 || true
      die "tollgate ($name) exited during startup; log above"
    fi
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$admin/readyz" && break
    sleep 0.2
  done
  curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$admin/readyz" || {
    tail -n 40 "$TMP/tollgate-$name.log" >&2 || true
    die "tollgate ($name) not ready on 127.0.0.1:$admin/readyz after 30 s; log above"
  }
  printf '%s' "$pid" >"$TMP/tollgate-$name.pid"
}

SETUPS=(a b)
declare -A URL LABEL
URL[a]="http://127.0.0.1:$UP_PORT/index.html"
URL[b]="http://127.0.0.1:$NGX_PORT/index.html"
URL[c]="http://127.0.0.1:$C_PORT/index.html"
URL[d]="http://127.0.0.1:$D_PORT/index.html"
LABEL[a]="a: nginx upstream direct"
LABEL[b]="b: nginx proxy_pass (keepalive 64, ${PROXY_THREADS} workers)"
LABEL[c]="c: tollgate, capture off"
LABEL[d]="d: tollgate, capture on"

if [[ $SKIP_TOLLGATE != 1 ]]; then
  log "starting tollgate (capture off) on 127.0.0.1:$C_PORT, admin $C_ADMIN"
  start_tollgate c "$C_PORT" "$C_ADMIN" off
  log "starting tollgate (capture on) on 127.0.0.1:$D_PORT, admin $D_ADMIN"
  start_tollgate d "$D_PORT" "$D_ADMIN" on
  SETUPS+=(c d)
fi

# ----------------------------------------------------------------------- sanity checks

for s in "${SETUPS[@]}"; do
  out=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "${URL[$s]}") \
    || die "setup $s: request to ${URL[$s]} failed"
  [[ $out == "200 $PAGE_BYTES" ]] \
    || die "setup $s: expected '200 $PAGE_BYTES' (status, body bytes) from ${URL[$s]}, got '$out'"
done

# --------------------------------------------------------------------------------- RSS

children_of() {   # pid -> child pids, one per line
  local f line rest
  if [[ -r /proc/$1/task/$1/children ]]; then
    local kids
    read -r -a kids <"/proc/$1/task/$1/children" || true
    (( ${#kids[@]} )) && printf '%s\n' "${kids[@]}"
    return 0
  fi
  for f in /proc/[0-9]*/stat; do
    read -r line <"$f" 2>/dev/null || continue
    rest=${line##*) }            # after "pid (comm) "
    read -r _ ppid _ <<<"$rest"
    [[ $ppid == "$1" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}

rss_kib() {   # pids... -> summed VmRSS in KiB (0 if none readable)
  local total=0 pid key val _
  for pid in "$@"; do
    [[ -r /proc/$pid/status ]] || continue
    while read -r key val _; do
      [[ $key == VmRSS: ]] && { total=$(( total + val )); break; }
    done <"/proc/$pid/status" || true
  done
  echo "$total"
}

rss_of_setup() {   # setup -> KiB, or "-" when not applicable
  case $1 in
    a) echo - ;;
    b) local m; m=$(<"$NGX_DIR/nginx.pid"); mapfile -t w < <(children_of "$m"); rss_kib "${w[@]}" ;;
    c|d) rss_kib "$(<"$TMP/tollgate-$1.pid")" ;;
  esac
}

alive_or_die() {   # setup
  case $1 in
    a) [[ -d /proc/$(<"$UP_DIR/nginx.pid") ]] || die "upstream nginx died; see $UP_DIR/error.log" ;;
    b) [[ -d /proc/$(<"$NGX_DIR/nginx.pid") ]] || die "proxy nginx died; see $NGX_DIR/error.log" ;;
    c|d) [[ -d /proc/$(<"$TMP/tollgate-$1.pid") ]] \
           || { tail -n 40 "$TMP/tollgate-$1.log" >&2 || true; die "tollgate ($1) died; log above"; } ;;
  esac
  [[ -d /proc/$(<"$UP_DIR/nginx.pid") ]] || die "upstream nginx died; see $UP_DIR/error.log"
}

# --------------------------------------------------------------------------------- wrk

WRK_CMD_DESC="wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency URL"

RUN_RSS=-
run_wrk() {   # setup duration outfile; sets RUN_RSS to the max RSS KiB sampled while running
  local s=$1 dur=$2 out=$3 max=0 r i rc
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${dur}s" --latency "${URL[$s]}" >"$out" 2>&1 &
  WRK_PID=$!
  # Sample RSS once a second while wrk runs (bounded); the max is ~the end of the run.
  for (( i = 0; i < dur + 5; i++ )); do
    sleep 1
    [[ -d /proc/$WRK_PID ]] || break
    r=$(rss_of_setup "$s")
    [[ $r != - ]] && (( r > max )) && max=$r
  done
  rc=0
  if [[ -d /proc/$WRK_PID ]]; then
    kill "$WRK_PID" 2>/dev/null || true
  fi
  wait "$WRK_PID" || rc=$?
  WRK_PID=
  (( rc == 0 )) || { cat "$out" >&2; die "wrk failed (exit $rc) for setup $s"; }
  alive_or_die "$s"
  if [[ $s == a ]]; then RUN_RSS=-; else RUN_RSS=$max; fi
}

log "warming up (${WARMUP}s each): ${SETUPS[*]}"
for s in "${SETUPS[@]}"; do
  run_wrk "$s" "$WARMUP" "$TMP/warmup-$s.txt"
done

RESULTS=$TMP/results.tsv
: >"$RESULTS"
for (( round = 1; round <= RUNS; round++ )); do
  for s in "${SETUPS[@]}"; do
    log "round $round/$RUNS setup $s (${DURATION}s)"
    out=$TMP/wrk-$s-$round.txt
    run_wrk "$s" "$DURATION" "$out"
    python3 - "$s" "$round" "$RUN_RSS" "$out" >>"$RESULTS" <<'EOF' || { cat "$out" >&2; exit 1; }
import re, sys
s, rnd, rss, path = sys.argv[1:5]
text = open(path).read()
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
def lat(pct):
    m = re.search(r"^\s*%s%%\s+([0-9.]+)(us|ms|s|m|h)\s*$" % pct, text, re.M)
    if not m:
        sys.exit(f"[proxy_wrk] ERROR: setup {s}: no {pct}% latency line in wrk output")
    return float(m.group(1)) * UNIT[m.group(2)]
m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
if not m:
    sys.exit(f"[proxy_wrk] ERROR: setup {s}: no Requests/sec line in wrk output")
rps = float(m.group(1))
non2xx = 0
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if m:
    non2xx = int(m.group(1))
sock = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    sock = sum(int(x) for x in m.groups())
if non2xx:
    sys.exit(f"[proxy_wrk] ERROR: setup {s}: {non2xx} non-2xx/3xx responses; results would be meaningless")
print(s, rnd, f"{rps:.2f}", f"{lat(50):.4f}", f"{lat(99):.4f}", rss, sock, sep="\t")
EOF
  done
done

# ------------------------------------------------------------------------------ report

CPU=
while IFS=: read -r key val; do
  [[ $key == "model name"* ]] && { CPU=${val# }; break; }
done </proc/cpuinfo
NGINX_VER=$("$NGINX" -v 2>&1 | head -n1)
WRK_VER=$(wrk -v 2>&1 | head -n1 || true)
WRK_VER=${WRK_VER%% Copyright*}
TG_VER=-
if [[ $SKIP_TOLLGATE != 1 ]]; then
  TG_VER=$("$BIN" --version 2>/dev/null | head -n1 || true)
  TG_VER=${TG_VER:-$BIN}
fi

REPORT=$TMP/report.md
{
  echo "## tollgate proxy benchmark (wrk)"
  echo
  echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "- machine: $(nproc) CPUs, ${CPU:-unknown CPU}, kernel $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- wrk: \`$WRK_CMD_DESC\`, $RUNS run(s) per setup, interleaved a,b,c,d per round, ${WARMUP}s warm-up each"
  echo "- page: /index.html, $PAGE_BYTES bytes, from nginx upstream (1 worker)"
  echo "- versions: $NGINX_VER; $WRK_VER; tollgate: $TG_VER"
  echo
  python3 - "$RESULTS" "${SETUPS[*]}" \
    "${LABEL[a]}" "${LABEL[b]}" "${LABEL[c]}" "${LABEL[d]}" <<'EOF'
import statistics, sys
path, setups = sys.argv[1], sys.argv[2].split()
labels = dict(zip("abcd", sys.argv[3:7]))
rows = {}
for line in open(path):
    s, rnd, rps, p50, p99, rss, sock = line.rstrip("\n").split("\t")
    rows.setdefault(s, []).append((float(rps), float(p50), float(p99), rss, int(sock)))
med = {}
print("| setup | median req/s | median p50 ms | median p99 ms | max RSS MiB | socket errors |")
print("|---|---:|---:|---:|---:|---:|")
for s in setups:
    r = rows.get(s, [])
    if not r:
        sys.exit(f"[proxy_wrk] ERROR: no results for setup {s}")
    rps = statistics.median(x[0] for x in r)
    med[s] = rps
    p50 = statistics.median(x[1] for x in r)
    p99 = statistics.median(x[2] for x in r)
    rss = [int(x[3]) for x in r if x[3] != "-"]
    rss_s = f"{max(rss) / 1024:.1f}" if rss else "–"
    err = sum(x[4] for x in r)
    print(f"| {labels[s]} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {rss_s} | {err} |")
print()
def ratio(x, y):
    return f"{med[x] / med[y]:.3f}" if x in med and y in med and med[y] > 0 else "n/a (tollgate skipped)"
print(f"- d/b median req/s: {ratio('d', 'b')}")
print(f"- d/c median req/s: {ratio('d', 'c')}")
print()
print("RSS: sum of the proxy nginx worker processes (b), the tollgate process (c, d); "
      "max of once-a-second VmRSS samples during the runs. Latencies in ms.")
EOF
} >"$REPORT"

cat "$REPORT"
if [[ -n ${OUT:-} ]]; then
  cp "$REPORT" "$OUT" || die "cannot write report to $OUT"
  log "report written to $OUT"
fi

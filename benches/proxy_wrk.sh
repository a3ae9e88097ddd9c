#!/usr/bin/env bash
# proxy_wrk.sh: what does tollgate cost on the request path, compared with nginx, and what
# does its foundation (hyper) cost by itself?
#
# Setups, all on 127.0.0.1, all in front of the same nginx upstream that serves a generated
# 2 KiB HTML page (/index.html, exactly 2048 bytes):
#   a  wrk -> upstream nginx (1 worker)                               the ceiling
#   b  wrk -> proxy nginx (proxy_pass, keepalive 64) -> upstream        the reference proxy
#   h  wrk -> bare hyper 1.x, tollgate's layout (a thread per core, nothing shared, a
#      per-thread upstream pool) -> upstream
#   c  wrk -> tollgate, capture off (TOLLGATE_CAPTURE_ENABLED=false) -> upstream
#   d  wrk -> tollgate, capture on (the default) -> upstream
#   i  wrk -> tollgate, capture on, [inject] on -> upstream (wrk's requests are not
#      navigations, so nothing is injected: the cost of the injection hooks on other traffic)
# "Bare" is examples/bare_proxy.rs: a proxy that only forwards, on the same hyper version and
# layout as tollgate's: it separates what tollgate costs from what its foundation costs. (Until
# issue 16 tollgate ran on Pingora, and this script measured bare Pingora too: BENCHMARKS.md.)
#
# Saturation: each run is `wrk -t1 -c32 -d${DURATION}s --latency URL` (keep-alive), every
# request with a returning visitor's cookies (taken from each tollgate's first answer; the
# same header goes to the nginx and bare setups so that every request has the same bytes).
# Setups are interleaved per round (a b h c d, a b h c d, ...) so that drift hits all alike.
# Paced (RATE > 0): the same, at a fixed rate below saturation (wrk's Lua delay() per
# connection), where the p99 is what users feel.
#
# Per setup the report gives the median req/s, p50 and p99 latency, CPU per request (user +
# sys ticks of the server's processes from /proc/PID/stat, over the requests wrk counted), the
# max RSS under load, and the ratios to nginx proxy_pass (b). Then the heap allocations per
# request (tests/allocs.rs: a counting allocator around tollgate's proxy and the bare one).
#
# Usage:
#   cargo test --release --no-run && cargo build --release --example bare_proxy && benches/proxy_wrk.sh
#
# Environment:
#   RUNS=5            runs per setup
#   DURATION=10       seconds per wrk run (integer)
#   SETUPS="a b h c d"  which setups, in round order (any of a b h c d i)
#   RATE=10000        paced phase: total req/s per setup (0: skip the phase)
#   ALLOCS=1          print allocations per request (runs `cargo test --test allocs`; 0: skip)
#   PROXY_THREADS=2   proxy nginx worker_processes, bare hyper and tollgate threads
#   TOLLGATE_BIN      default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate
#   BARE_BIN          default ${CARGO_TARGET_DIR:-...}/release/examples/bare_proxy
#   SKIP_TOLLGATE=1   the same as SETUPS="a b" (no binaries needed)
#   OUT=FILE          also write the report to FILE
#   KEEP_TMP=1        keep the temp dir (configs, logs, raw wrk output) for inspection
#
# Needs bash, coreutils, python3, curl, nginx, wrk; installs nginx and wrk with .ci/deps bench
# if they are missing. Servers are stopped on exit by their pids only.

set -euo pipefail

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
PROXY_THREADS=${PROXY_THREADS:-2}
SKIP_TOLLGATE=${SKIP_TOLLGATE:-0}
SETUPS_ENV=${SETUPS:-}
RATE=${RATE:-10000}
ALLOCS=${ALLOCS:-1}
WRK_THREADS=1
WRK_CONNS=32
WARMUP=2
PAGE_BYTES=2048

CMDLINE="$(printf '%q ' env RUNS="$RUNS" DURATION="$DURATION" PROXY_THREADS="$PROXY_THREADS" \
  ${SETUPS_ENV:+SETUPS="$SETUPS_ENV"} RATE="$RATE" ALLOCS="$ALLOCS" \
  SKIP_TOLLGATE="$SKIP_TOLLGATE" ${TOLLGATE_BIN:+TOLLGATE_BIN="$TOLLGATE_BIN"} \
  ${BARE_BIN:+BARE_BIN="$BARE_BIN"} ${OUT:+OUT="$OUT"} "$0" "$@")"
CMDLINE=${CMDLINE% }

log() { printf '[proxy_wrk] %s\n' "$*" >&2; }
die() { printf '[proxy_wrk] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer of seconds (got '$DURATION')"
[[ $PROXY_THREADS =~ ^[1-9][0-9]*$ ]] || die "PROXY_THREADS must be a positive integer (got '$PROXY_THREADS')"
[[ $RATE =~ ^[0-9]+$ ]] || die "RATE must be a whole number of requests per second (got '$RATE')"
(( RUNS <= 100 && DURATION <= 3600 && RATE <= 1000000 )) \
  || die "RUNS <= 100, DURATION <= 3600 and RATE <= 1000000, please"

if [[ -n $SETUPS_ENV ]]; then
  read -r -a SETUPS <<<"$SETUPS_ENV"
elif [[ $SKIP_TOLLGATE == 1 ]]; then
  SETUPS=(a b)
else
  SETUPS=(a b h c d)
fi
for s in "${SETUPS[@]}"; do
  [[ $s =~ ^[abhcdi]$ ]] || die "unknown setup '$s' in SETUPS (any of a b h c d i)"
done
has() { [[ " ${SETUPS[*]} " == *" $1 "* ]]; }
[[ " ${SETUPS[*]} " == *" b "* ]] || die "SETUPS must include b (nginx proxy_pass): every ratio is against it"

# ---------------------------------------------------------------------------------- tools

for t in python3 curl; do
  command -v "$t" >/dev/null || die "$t is required"
done
need_nginx_wrk

TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
BIN=$(absolute "${TOLLGATE_BIN:-$TARGET/release/tollgate}")
BARE=$(absolute "${BARE_BIN:-$TARGET/release/examples/bare_proxy}")
if has c || has d || has i; then
  [[ -x $BIN ]] || die "tollgate binary not found at '$BIN': run 'cargo test --release --no-run' first \
(or set TOLLGATE_BIN, or SETUPS=\"a b\" to benchmark only the nginx setups)"
fi
if has h; then
  [[ -x $BARE ]] || die "bare proxy not found at '$BARE': run 'cargo build --release --example bare_proxy' first (or set BARE_BIN)"
fi
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------------------- temp + cleanup

make_tmp proxy_wrk
trap_cleanup

# ------------------------------------------------------------------------------- ports

# Bind all sockets at once so the ports are distinct, then release them.
read -r UP_PORT NGX_PORT H_PORT C_PORT C_ADMIN D_PORT D_ADMIN I_PORT I_ADMIN < <(free_ports 9)
[[ -n ${I_ADMIN:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------------------- nginx

UP_DIR=$TMP/nginx-upstream
NGX_DIR=$TMP/nginx-proxy
mkdir -p "$UP_DIR/html" "$UP_DIR/tmp" "$NGX_DIR/tmp"

bench_page "$UP_DIR/html/index.html" "$PAGE_BYTES"
chmod -R a+rX "$TMP"

upstream_nginx_conf "$UP_DIR" "$UP_PORT" >"$UP_DIR/nginx.conf"

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

# -------------------------------------------------------------------------- bare hyper

declare -A PID_OF
start_bare() {   # setup port
  local s=$1 port=$2
  spawn_server "bare proxy ($s)" "$TMP/bare-$s.log" TERM 100 \
    "$BARE" "$PROXY_THREADS" "127.0.0.1:$port" "127.0.0.1:$UP_PORT"
  PID_OF[$s]=$SERVER_PID
  wait_ready "bare proxy ($s)" "${PID_OF[$s]}" "$TMP/bare-$s.log" 100 \
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/index.html"
}

# ---------------------------------------------------------------------------- tollgate

setup_tollgate() {   # setup listen-port admin-port capture(on|off) inject(on|off)
  local s=$1 port=$2 admin=$3 capture=$4 inject=$5
  local envs=(-u TOLLGATE_CAPTURE_ENABLED -u TOLLGATE_INJECT_ENABLED
    TOLLGATE_SERVER_THREADS="$PROXY_THREADS")
  [[ $capture == off ]] && envs+=(TOLLGATE_CAPTURE_ENABLED=false)
  [[ $inject == on ]] && envs+=(TOLLGATE_INJECT_ENABLED=true)
  mkdir -p "$TMP/data-$s"
  start_tollgate "$s" "$TMP/tollgate-$s.log" "${envs[@]}" -- --upstream "http://127.0.0.1:$UP_PORT" \
    --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --data "$TMP/data-$s"
  PID_OF[$s]=$TG_PID
}

declare -A URL LABEL ADMIN
URL[a]="http://127.0.0.1:$UP_PORT/index.html"
URL[b]="http://127.0.0.1:$NGX_PORT/index.html"
URL[h]="http://127.0.0.1:$H_PORT/index.html"
URL[c]="http://127.0.0.1:$C_PORT/index.html"
URL[d]="http://127.0.0.1:$D_PORT/index.html"
URL[i]="http://127.0.0.1:$I_PORT/index.html"
ADMIN[c]=$C_ADMIN
ADMIN[d]=$D_ADMIN
ADMIN[i]=$I_ADMIN
LABEL[a]="a: nginx upstream direct"
LABEL[b]="b: nginx proxy_pass (keepalive 64, ${PROXY_THREADS} workers)"
LABEL[h]="h: bare hyper, a thread per core (tollgate's layout)"
LABEL[c]="c: tollgate, capture off"
LABEL[d]="d: tollgate, capture on"
LABEL[i]="i: tollgate, capture on, inject on (not navigations)"

has h && { log "starting bare hyper (per core) on 127.0.0.1:$H_PORT"; start_bare h "$H_PORT"; }
has c && { log "starting tollgate (capture off) on 127.0.0.1:$C_PORT"; setup_tollgate c "$C_PORT" "$C_ADMIN" off off; }
has d && { log "starting tollgate (capture on) on 127.0.0.1:$D_PORT"; setup_tollgate d "$D_PORT" "$D_ADMIN" on off; }
has i && { log "starting tollgate (capture on, inject on) on 127.0.0.1:$I_PORT"; setup_tollgate i "$I_PORT" "$I_ADMIN" on on; }

# ------------------------------------------------------------- cookies + sanity checks

# A returning visitor: the cookies a tollgate set on its first answer. Each tollgate signs with
# its own key, so each gets its own; the others get d's (or c's), so all requests weigh alike.
declare -A COOKIE
cookies_from() {   # url -> "name=value; name=value" of the Set-Cookie headers
  curl -s -D - -o /dev/null --max-time 5 "$1" | python3 -c '
import sys
pairs = [l.split(":", 1)[1].split(";", 1)[0].strip() for l in sys.stdin
         if l.lower().startswith("set-cookie:")]
print("; ".join(pairs))'
}
for s in c d i; do
  has "$s" || continue
  COOKIE[$s]=$(cookies_from "${URL[$s]}")
  [[ ${COOKIE[$s]} == *tg_vid=* ]] || die "tollgate ($s) set no visitor cookie (got '${COOKIE[$s]}')"
done
OTHER_COOKIE=${COOKIE[d]:-${COOKIE[c]:-tg_vid=00000000-0000-4000-8000-000000000000.AAAAAAAAAAAAAAAAAAAAAA}}
for s in "${SETUPS[@]}"; do
  [[ -n ${COOKIE[$s]:-} ]] || COOKIE[$s]=$OTHER_COOKIE
  out=$(curl -s -o /dev/null --max-time 5 -H "Cookie: ${COOKIE[$s]}" \
    -w '%{http_code} %{size_download}' "${URL[$s]}") \
    || die "setup $s: request to ${URL[$s]} failed"
  [[ $out == "200 $PAGE_BYTES" ]] \
    || die "setup $s: expected '200 $PAGE_BYTES' (status, body bytes) from ${URL[$s]}, got '$out'"
done
# A returning visitor is not given a new visitor cookie.
for s in c d i; do
  has "$s" || continue
  again=$(curl -s -D - -o /dev/null --max-time 5 -H "Cookie: ${COOKIE[$s]}" "${URL[$s]}")
  [[ $again != *"tg_vid="* ]] || die "tollgate ($s) did not accept its own visitor cookie"
done

# ------------------------------------------------------------------------ RSS and CPU

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

# The processes that serve a setup: nginx workers, or the one server process.
pids_of_setup() {
  local m
  case $1 in
    a) m=$(<"$UP_DIR/nginx.pid"); children_of "$m" ;;
    b) m=$(<"$NGX_DIR/nginx.pid"); children_of "$m" ;;
    *) echo "${PID_OF[$1]}" ;;
  esac
}

cpu_ticks() {   # pids... -> summed utime + stime (clock ticks)
  local total=0 pid line rest
  local -a f
  for pid in "$@"; do
    read -r line <"/proc/$pid/stat" 2>/dev/null || continue
    rest=${line##*) }
    read -r -a f <<<"$rest"
    # after "pid (comm) ": state is f[0], utime f[11], stime f[12] (fields 14 and 15)
    total=$(( total + f[11] + f[12] ))
  done
  echo "$total"
}

alive_or_die() {   # setup
  case $1 in
    a) ;;
    b) [[ -d /proc/$(<"$NGX_DIR/nginx.pid") ]] || die "proxy nginx died; see $NGX_DIR/error.log" ;;
    *) [[ -d /proc/${PID_OF[$1]} ]] || die "setup $1 died; see its log in $TMP" ;;
  esac
  [[ -d /proc/$(<"$UP_DIR/nginx.pid") ]] || die "upstream nginx died; see $UP_DIR/error.log"
}

# --------------------------------------------------------------------------------- wrk

WRK_CMD_DESC="wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency -H 'Cookie: …' URL"
# Paced: each connection waits DELAY ms before each request; the rate is about
# conns * 1000 / (DELAY + latency). wrk's delay() is in whole milliseconds.
PACED_DELAY_MS=4
PACED_CONNS=0
if (( RATE > 0 )); then
  PACED_CONNS=$(( (RATE * (PACED_DELAY_MS + 1) + 999) / 1000 ))
  printf 'function delay() return %d end\n' "$PACED_DELAY_MS" >"$TMP/paced.lua"
fi

RUN_RSS=-
RUN_TICKS=0
run_wrk() {   # setup duration outfile conns [wrk args...]; sets RUN_RSS (max KiB) and RUN_TICKS
  local s=$1 dur=$2 out=$3 conns=$4 max=0 r i rc t0 t1
  shift 4
  local -a pids
  mapfile -t pids < <(pids_of_setup "$s")
  t0=$(cpu_ticks "${pids[@]}")
  wrk -t"$WRK_THREADS" -c"$conns" -d"${dur}s" --latency -H "Cookie: ${COOKIE[$s]}" "$@" \
    "${URL[$s]}" >"$out" 2>&1 &
  WRK_PID=$!
  # Sample RSS once a second while wrk runs (bounded); the max is ~the end of the run.
  for (( i = 0; i < dur + 5; i++ )); do
    sleep 1
    [[ -d /proc/$WRK_PID ]] || break
    r=$(rss_kib "${pids[@]}")
    (( r > max )) && max=$r
  done
  rc=0
  if [[ -d /proc/$WRK_PID ]]; then
    kill "$WRK_PID" 2>/dev/null || true
  fi
  wait "$WRK_PID" || rc=$?
  WRK_PID=
  t1=$(cpu_ticks "${pids[@]}")
  (( rc == 0 )) || { cat "$out" >&2; die "wrk failed (exit $rc) for setup $s"; }
  alive_or_die "$s"
  RUN_TICKS=$(( t1 - t0 ))
  if [[ $s == a ]]; then RUN_RSS=-; else RUN_RSS=$max; fi
}

parse_wrk() {   # setup round phase rss ticks file -> one TSV line
  python3 - "$@" "$CLK_TCK" <<'EOF'
import re, sys
s, rnd, phase, rss, ticks, path, clk = sys.argv[1:8]
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
m = re.search(r"^\s*(\d+) requests in", text, re.M)
if not m:
    sys.exit(f"[proxy_wrk] ERROR: setup {s}: no request count in wrk output")
requests = int(m.group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if m and int(m.group(1)):
    sys.exit(f"[proxy_wrk] ERROR: setup {s}: {m.group(1)} non-2xx/3xx responses; results would be meaningless")
sock = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    sock = sum(int(x) for x in m.groups())
cpu_us = int(ticks) * 1e6 / int(clk) / max(requests, 1)
print(s, rnd, phase, f"{rps:.2f}", f"{lat(50):.4f}", f"{lat(99):.4f}", rss, sock,
      f"{cpu_us:.3f}", sep="\t")
EOF
}

log "warming up (${WARMUP}s each): ${SETUPS[*]}"
for s in "${SETUPS[@]}"; do
  run_wrk "$s" "$WARMUP" "$TMP/warmup-$s.txt" "$WRK_CONNS"
done

RESULTS=$TMP/results.tsv
: >"$RESULTS"
for (( round = 1; round <= RUNS; round++ )); do
  for s in "${SETUPS[@]}"; do
    log "round $round/$RUNS setup $s saturated (${DURATION}s)"
    out=$TMP/wrk-$s-$round.txt
    run_wrk "$s" "$DURATION" "$out" "$WRK_CONNS"
    parse_wrk "$s" "$round" sat "$RUN_RSS" "$RUN_TICKS" "$out" >>"$RESULTS" \
      || { cat "$out" >&2; exit 1; }
  done
done
if (( RATE > 0 )); then
  for (( round = 1; round <= RUNS; round++ )); do
    for s in "${SETUPS[@]}"; do
      log "round $round/$RUNS setup $s paced at ~$RATE req/s (${DURATION}s)"
      out=$TMP/paced-$s-$round.txt
      run_wrk "$s" "$DURATION" "$out" "$PACED_CONNS" -s "$TMP/paced.lua"
      parse_wrk "$s" "$round" paced "$RUN_RSS" "$RUN_TICKS" "$out" >>"$RESULTS" \
        || { cat "$out" >&2; exit 1; }
    done
  done
fi

# Events lost to a full queue while tollgate captured (must stay 0).
DROPS=()
for s in d i; do
  has "$s" || continue
  n=$(curl -s --max-time 5 "http://127.0.0.1:${ADMIN[$s]}/metrics" \
    | awk '/^tollgate_events_dropped_total/ { s += $2 } END { print s + 0 }')
  DROPS+=("$s: $n")
done
DROPPED=-
(( ${#DROPS[@]} )) && { DROPPED=$(printf '%s, ' "${DROPS[@]}"); DROPPED=${DROPPED%, }; }

ALLOC_LINE="not measured (ALLOCS=0)"
if [[ $ALLOCS == 1 ]]; then
  log "counting allocations per request (cargo test --release --locked --test allocs)"
  # shellcheck disable=SC2015  # no line (a failed cd, build or test) is said below
  ALLOC_LINE=$(cd "$REPO" && CARGO_TARGET_DIR="$TARGET" cargo test --release --locked --test allocs -- --nocapture 2>&1 \
    | grep -m1 'allocs per request' || true)
  [[ -n $ALLOC_LINE ]] || ALLOC_LINE="not measured: tests/allocs.rs printed no 'allocs per request' line"
fi

# ------------------------------------------------------------------------------ report

NGINX_VER=$("$NGINX" -v 2>&1 | head -n1)
WRK_VER=$(wrk -v 2>&1 | head -n1 || true)
WRK_VER=${WRK_VER%% Copyright*}
TG_VER=-
if has c || has d || has i; then
  TG_VER=$("$BIN" --version 2>/dev/null | head -n1 || true)
  TG_VER=${TG_VER:-$BIN}
fi

LABELS=$TMP/labels.tsv
for s in "${SETUPS[@]}"; do printf '%s\t%s\n' "$s" "${LABEL[$s]}"; done >"$LABELS"

REPORT=$TMP/report.md
{
  echo "## tollgate proxy benchmark (wrk)"
  echo
  echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "- machine: $(nproc) CPUs, $(cpu_model), kernel $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- saturated: \`$WRK_CMD_DESC\`, $RUNS run(s) per setup, interleaved ${SETUPS[*]} per round, ${WARMUP}s warm-up each"
  (( RATE > 0 )) && echo "- paced: ~$RATE req/s: $PACED_CONNS connections, each waiting ${PACED_DELAY_MS} ms before each request (wrk Lua \`delay()\`)"
  echo "- page: /index.html, $PAGE_BYTES bytes, from nginx upstream (1 worker); requests carry a returning visitor's cookies"
  echo "- versions: $NGINX_VER; $WRK_VER; tollgate: $TG_VER; hyper: $(grep -m1 -A1 '^name = "hyper"$' "$REPO/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')"
  echo
  python3 - "$RESULTS" "$LABELS" <<'EOF'
import statistics, sys
path, labels_path = sys.argv[1:3]
labels = dict(l.rstrip("\n").split("\t", 1) for l in open(labels_path))
setups = list(labels)
rows = {}
for line in open(path):
    s, rnd, phase, rps, p50, p99, rss, sock, cpu = line.rstrip("\n").split("\t")
    rows.setdefault((phase, s), []).append(
        (float(rps), float(p50), float(p99), rss, int(sock), float(cpu)))
def med(phase, s, i):
    return statistics.median(x[i] for x in rows[(phase, s)])
def ratio(x, y):
    return f"{x / y:.2f}" if y > 0 else "n/a"
for phase, title in (("sat", "Saturated"), ("paced", "Paced")):
    if not any(k[0] == phase for k in rows):
        continue
    print(f"### {title}")
    print()
    print("| setup | req/s | ×b | p50 ms | p99 ms | p99 ×b | CPU µs/req | CPU ×b | max RSS MiB | socket errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    b = {i: med(phase, "b", i) for i in (0, 2, 5)}
    for s in setups:
        r = rows.get((phase, s))
        if not r:
            sys.exit(f"[proxy_wrk] ERROR: no {phase} results for setup {s}")
        rps, p50, p99, cpu = med(phase, s, 0), med(phase, s, 1), med(phase, s, 2), med(phase, s, 5)
        rss = [int(x[3]) for x in r if x[3] != "-"]
        rss_s = f"{max(rss) / 1024:.1f}" if rss else "–"
        err = sum(x[4] for x in r)
        print(f"| {labels[s]} | {rps:.0f} | {ratio(rps, b[0])} | {p50:.3f} | {p99:.3f} | "
              f"{ratio(p99, b[2])} | {cpu:.1f} | {ratio(cpu, b[5])} | {rss_s} | {err} |")
    print()
    if ("sat", "d") in rows and ("sat", "c") in rows and phase == "sat":
        print(f"- d/c median req/s: {ratio(med('sat', 'd', 0), med('sat', 'c', 0))}")
        print()
print("Medians over the runs. CPU: user + sys ticks of the setup's server processes (nginx "
      "workers; the bare hyper or tollgate process, all its threads) during the run, over "
      "the requests wrk counted. RSS: max of once-a-second VmRSS samples. Latencies in ms.")
EOF
  echo
  echo "- events tollgate dropped (whole benchmark, per capturing setup): $DROPPED"
  echo "- heap allocations: $ALLOC_LINE"
} >"$REPORT"

cat "$REPORT"
if [[ -n ${OUT:-} ]]; then
  cp "$REPORT" "$OUT" || die "cannot write report to $OUT"
  log "report written to $OUT"
fi

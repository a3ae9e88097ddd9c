# benches/lib.sh: helpers the benchmark scripts share. Source it after defining log() and die().
#
# Every server a script starts goes through the supervisor below, as tests/common/process.rs
# does for the tests: its own directory under the script's $TMP (make_tmp), free loopback ports
# (free_ports), a log file, a start that waits until the server answers and dies with the log's
# tail when it does not, and a stop by its own pid when the script exits (stop_servers in the
# script's cleanup, installed by trap_cleanup). start_tollgate, start_nginx, start_clickhouse
# and start_postgres start the four kinds; spawn_server is the part they share.
# shellcheck shell=bash

# The servers spawn_server started, in start order: "pid signal tenths name".
SERVERS=()
# The pid files of the nginx masters start_nginx started (nginx runs as a daemon).
NGINX_PIDFILES=()
# Set by need_clickhouse and need_postgres (start_clickhouse and start_postgres call them).
CH_CMD=()
PG_BIN=

# The nginx binary, wherever the distribution put it.
find_nginx() {
  command -v nginx 2>/dev/null && return 0
  local p
  for p in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx; do
    [[ -x $p ]] && { echo "$p"; return 0; }
  done
  return 1
}

# nginx, wrk and curl from the project's own installer when any is missing; sets NGINX.
need_nginx_wrk() {
  if ! find_nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
    bash "$(dirname "${BASH_SOURCE[0]}")/../.ci/deps" bench
  fi
  NGINX=$(find_nginx) || die "nginx not found after install"
  command -v wrk >/dev/null || die "wrk not found after install"
}

# The release tollgate binary (built by `cargo test --release --no-run`), absolute; sets BIN.
need_tollgate() {
  BIN=${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate}
  [[ -x $BIN ]] || die "tollgate binary not found at '$BIN': run 'cargo test --release --no-run' first (or set TOLLGATE_BIN)"
  case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac
}

# Wait for a pid to exit: pid, tenths of a second. Fails when it is still there.
wait_gone() {
  local i
  for (( i = 0; i < $2; i++ )); do
    [[ -d /proc/$1 ]] || return 0
    sleep 0.1
  done
  return 1
}

# Stop a process: signal (default TERM), wait up to tenths of a second, then SIGKILL; reaped
# when it is this shell's child.
stop_pid() {   # pid tenths [signal]
  [[ $1 =~ ^[0-9]+$ ]] || return 0
  kill -"${3:-TERM}" "$1" 2>/dev/null && { wait_gone "$1" "$2" || kill -KILL "$1" 2>/dev/null; }
  wait "$1" 2>/dev/null || true
}

# Stop the nginx of a pid file: QUIT (finish what it serves), TERM after 5 s.
stop_nginx() {   # pid-file
  local pid
  [[ -s $1 ]] || return 0
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null && { wait_gone "$pid" 50 || kill -TERM "$pid" 2>/dev/null; }
  return 0
}

# The script's temp dir, $TMP: a fresh directory named after the script under base (default
# $TMPDIR or /tmp), readable by all (nginx workers and PostgreSQL may run as other users).
make_tmp() {   # name [base]
  TMP=$(mktemp -d "${2:-${TMPDIR:-/tmp}}/$1.XXXXXX")
  chmod 755 "$TMP"
}

# ------------------------------------------------------------------------------ supervisor

# Poll a probe (a command and its arguments) every 0.1 s: 0 once it succeeds, 1 when the
# process exits first, 2 when tenths of a second pass.
probe_until() {   # pid tenths probe...
  local pid=$1 tenths=$2 i
  shift 2
  for (( i = 0; i < tenths; i++ )); do
    [[ -d /proc/$pid ]] || return 1
    "$@" && return 0
    sleep 0.1
  done
  return 2
}

# Wait until a server just started answers, that is until the probe succeeds. Dies with the
# tail of its log when the process exits first, or after tenths of a second (the cleanup then
# stops it). The log may be a glob (several logs).
wait_ready() {   # name pid log tenths probe...
  local name=$1 pid=$2 log=$3 tenths=$4 rc=0
  shift 3
  probe_until "$pid" "$@" || rc=$?
  (( rc == 0 )) && return 0
  # shellcheck disable=SC2086  # a glob
  tail -n 40 $log >&2 2>/dev/null
  (( rc == 1 )) && die "$name exited during start-up; log above"
  die "$name not ready after $(( tenths / 10 )) s; log above"
}

# Start a server, the command and its arguments, in the background with stdin closed and its
# output appended to log; sets SERVER_PID. It is this shell's child (so the command must exec
# the server, not fork it), and stop_servers stops it with the signal, then SIGKILL after
# tenths of a second.
spawn_server() {   # name log signal tenths command...
  local name=$1 log=$2 sig=$3 tenths=$4
  shift 4
  "$@" >>"$log" 2>&1 </dev/null &
  SERVER_PID=$!
  SERVERS+=("$SERVER_PID $sig $tenths $name")
}

# Run a command in a directory, by exec: `spawn_server ... in_dir DIR COMMAND...` starts a
# server that works in DIR, under its own pid.
in_dir() {   # dir command...
  cd "$1" && shift && exec "$@"
}

# Take a pid out of SERVERS (after the script stopped it itself).
forget_server() {   # pid
  local keep=() e
  for e in "${SERVERS[@]}"; do
    [[ ${e%% *} == "$1" ]] || keep+=("$e")
  done
  SERVERS=("${keep[@]}")
}

# Stop one server from SERVERS with its own signal and grace, and forget it.
stop_server() {   # pid
  local e pid sig tenths
  for e in "${SERVERS[@]}"; do
    read -r pid sig tenths _ <<<"$e"
    [[ $pid == "$1" ]] && stop_pid "$pid" "$tenths" "$sig"
  done
  forget_server "$1"
}

# Stop every server, the last started first, then every nginx: the scripts' cleanup calls it.
stop_servers() {
  local i pid sig tenths pf
  for (( i = ${#SERVERS[@]} - 1; i >= 0; i-- )); do
    read -r pid sig tenths _ <<<"${SERVERS[i]}"
    stop_pid "$pid" "$tenths" "$sig"
  done
  SERVERS=()
  for pf in "${NGINX_PIDFILES[@]}"; do stop_nginx "$pf"; done
  NGINX_PIDFILES=()
}

# ------------------------------------------------------------------------------- tollgate

# The probe for a tollgate: its admin listener (host:port) answers /readyz.
tollgate_ready() {   # admin-address
  curl -sf -o /dev/null --max-time 2 "http://$1/readyz"
}

# Start `$BIN serve` without waiting for it: env gets the ENV words (VAR=value, -u VAR), serve
# gets the ARGS, which must hold --admin HOST:PORT; output goes to log. Sets TG_PID, TG_ADMIN
# (HOST:PORT) and TG_LOG. On exit it gets SIGTERM and TG_GRACE tenths of a second (default
# 100) before SIGKILL.
spawn_tollgate() {   # name log [ENV...] -- ARGS...
  local name=$1 prev='' a
  TG_LOG=$2
  shift 2
  local envs=()
  while (( $# )) && [[ $1 != -- ]]; do envs+=("$1"); shift; done
  (( $# )) || die "spawn_tollgate $name: no -- before serve's arguments"
  shift
  TG_ADMIN=
  for a in "$@"; do
    [[ $prev == --admin ]] && TG_ADMIN=$a
    [[ $a == --admin=* ]] && TG_ADMIN=${a#--admin=}
    prev=$a
  done
  [[ -n $TG_ADMIN ]] || die "spawn_tollgate $name: serve's arguments have no --admin"
  spawn_server "tollgate ($name)" "$TG_LOG" TERM "${TG_GRACE:-100}" env "${envs[@]}" "$BIN" serve "$@"
  TG_PID=$SERVER_PID
}

# Wait until the tollgate spawn_tollgate started last answers /readyz (30 s); dies with its
# log's tail when it does not.
wait_tollgate() {   # name
  wait_ready "tollgate ($1)" "$TG_PID" "$TG_LOG" 300 tollgate_ready "$TG_ADMIN"
}

# spawn_tollgate, then wait_tollgate.
start_tollgate() {   # name log [ENV...] -- ARGS...
  spawn_tollgate "$@"
  wait_tollgate "$1"
}

# The end of a script's cleanup: keep $TMP when asked (KEEP_TMP=1) or when keep is 1 (after a
# failure), else remove it.
keep_or_remove_tmp() {   # keep(0|1)
  if [[ ${KEEP_TMP:-0} == 1 || $1 == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
}

# The load generator and sampler a script runs in the background, while they run: the cleanup
# kills them before it stops the servers. Set them to the pid on start, empty once reaped.
WRK_PID=
SAMPLER_PID=
# The exit status that keeps the temp dir: "fail" (any but 0, the default) or one status.
KEEP_TMP_ON=fail

# On exit: kill the background load, stop the servers (newest first), keep the temp dir when
# the run failed (or KEEP_TMP=1), and exit with the script's own status.
cleanup() {
  local rc=$? pid keep
  trap - EXIT INT TERM
  set +e
  for pid in "$WRK_PID" "$SAMPLER_PID"; do
    [[ -n $pid ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
  done
  stop_servers
  if [[ $KEEP_TMP_ON == fail ]]; then keep=$(( rc != 0 )); else keep=$(( rc == KEEP_TMP_ON )); fi
  keep_or_remove_tmp "$keep"
  exit "$rc"
}

# Run cleanup() on exit, and exit (so run it) on INT and TERM.
trap_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# "model name" of the first CPU.
cpu_model() {
  local key val
  while IFS=: read -r key val; do
    [[ $key == "model name"* ]] && { echo "${val# }"; return 0; }
  done </proc/cpuinfo
  echo unknown
}

# Distinct free loopback ports: count -> space-separated. They are bound all at once (so they
# differ), then released.
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss:
    s.close()
' "$1"
}

# The benchmark page: path, bytes. A plain HTML page of exactly that many bytes.
bench_page() {
  python3 - "$1" "$2" <<'EOF'
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
  [[ $(wc -c <"$1") -eq $2 ]] || die "generated page is not $2 bytes"
}

# nginx configuration shared by the benchmarks' servers: the main context for a prefix dir
# (as root, workers run as root: they must read the temp dir).
nginx_common() {   # prefix dir
  local user=""
  (( EUID == 0 )) && user="user root;"
  cat <<EOF
$user
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

# The http context's common part: no access log, temp paths under the prefix dir.
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

# Start nginx on prefix-dir/nginx.conf (config-tested first) and wait for its pid file; the
# pid file is added to NGINX_PIDFILES.
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

# The benchmarks' upstream: one worker serving prefix-dir/html on 127.0.0.1:port, keep-alive
# connections reused (nearly) forever so that proxies in front of it need not reconnect. The
# optional third argument goes into `location / { }`.
upstream_nginx_conf() {   # prefix-dir port [location-directives]
  nginx_common "$1"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$1")
    sendfile on;
    keepalive_timeout 75s;
    # Let proxies reuse their upstream connections instead of reconnecting every 1000.
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$2;
        root $1/html;
        location / { ${3:-} }
    }
}
EOF
}

# ----------------------------------------------------------------------------- ClickHouse

# The ClickHouse server binary, found as tests/common/clickhouse.rs finds it
# ($TOLLGATE_CLICKHOUSE_SERVER, /usr/sbin or /usr/bin clickhouse-server, $PATH, the multi-tool
# /usr/bin/clickhouse); sets CH_CMD (the binary, and `server` for the multi-tool).
need_clickhouse() {
  local p
  for p in "${TOLLGATE_CLICKHOUSE_SERVER:-}" /usr/sbin/clickhouse-server /usr/bin/clickhouse-server \
    "$(command -v clickhouse-server 2>/dev/null || true)" /usr/bin/clickhouse; do
    [[ -n $p && -x $p ]] || continue
    CH_CMD=("$p")
    [[ ${p##*/} == clickhouse ]] && CH_CMD+=(server)
    return 0
  done
  die "clickhouse-server not found: run 'bash .ci/deps test' (or set TOLLGATE_CLICKHOUSE_SERVER)"
}

# Start ClickHouse in dir (made here, under $TMP) with the tests' config
# (tests/fixtures/clickhouse/, log level warning) on free loopback ports, and wait until
# /ping answers "Ok." (30 s). Like the tests it tries again on new ports, up to 3 times, when a
# port was taken in between. Sets CH_PID, CH_URL (http://127.0.0.1:PORT), CH_HTTP, CH_TCP.
start_clickhouse() {   # dir
  local dir=$1 fixtures attempt rc
  fixtures=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/fixtures/clickhouse" && pwd)
  (( ${#CH_CMD[@]} )) || need_clickhouse
  mkdir -p "$dir/data"
  cp "$fixtures/users.xml" "$dir/users.xml"
  for (( attempt = 1; attempt <= 3; attempt++ )); do
    read -r CH_HTTP CH_TCP < <(free_ports 2)
    sed -e "s|@DIR@|$dir|g" -e "s|@HTTP_PORT@|$CH_HTTP|g" -e "s|@TCP_PORT@|$CH_TCP|g" \
      -e "s|@LOG_LEVEL@|warning|g" "$fixtures/config.xml" >"$dir/config.xml"
    CH_URL=http://127.0.0.1:$CH_HTTP
    # In its dir: ClickHouse writes files into its working directory.
    spawn_server ClickHouse "$dir/clickhouse.log" TERM 300 \
      in_dir "$dir" "${CH_CMD[@]}" --config-file="$dir/config.xml"
    CH_PID=$SERVER_PID
    rc=0
    probe_until "$CH_PID" 300 clickhouse_ping || rc=$?
    (( rc == 0 )) && return 0
    stop_server "$CH_PID"
    (( attempt < 3 )) && grep -qs 'Address already in use' "$dir"/*.log && continue
    tail -n 40 "$dir"/*.log >&2 2>/dev/null
    die "ClickHouse (${CH_CMD[*]}) did not become ready on $CH_URL; logs above"
  done
}

clickhouse_ping() {
  [[ $(curl -s --max-time 2 "$CH_URL/ping" || true) == "Ok." ]]
}

# ----------------------------------------------------------------------------- PostgreSQL

# PostgreSQL's server binaries and psql, found as tests/common/postgres.rs finds them
# ($TOLLGATE_PG_BIN, the highest /usr/lib/postgresql/*/bin, initdb on $PATH); sets PG_BIN,
# PSQL, and PG_AS: as root, the command prefix that runs a program as the `postgres` user
# (PostgreSQL refuses root). setpriv execs, where runuser or su would fork: the server's pid is
# then the postmaster's own, as in the tests.
need_postgres() {
  local d dirs=()
  [[ -n ${TOLLGATE_PG_BIN:-} ]] && dirs+=("$TOLLGATE_PG_BIN")
  mapfile -t -O "${#dirs[@]}" dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  d=$(command -v initdb 2>/dev/null || true)
  [[ -n $d ]] && dirs+=("${d%/*}")
  PG_BIN=
  for d in "${dirs[@]}"; do
    [[ -x $d/initdb && -x $d/postgres ]] && { PG_BIN=$d; break; }
  done
  [[ -n $PG_BIN ]] || die "PostgreSQL server binaries (initdb, postgres) not found in \$TOLLGATE_PG_BIN, /usr/lib/postgresql/*/bin or \$PATH: run 'bash .ci/deps test'"
  PSQL=$PG_BIN/psql
  [[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found: run 'bash .ci/deps test'"
  PG_AS=()
  if (( EUID == 0 )); then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run PostgreSQL as"
    command -v setpriv >/dev/null || die "running as root and setpriv (util-linux) is missing: it runs PostgreSQL as 'postgres'"
    PG_AS=(setpriv --reuid=postgres --regid=postgres --clear-groups)
  fi
}

# Start PostgreSQL as the tests do: initdb into dir/data (made here, under $TMP; trust auth,
# superuser tollgate, UTF8, locale C), then the postmaster on a free loopback port with
# fsync, synchronous_commit and full_page_writes off, and wait until psql gets in (30 s); up to
# 3 ports when one was taken in between. Sets PG_PID and PG_PORT. On exit it gets SIGINT (a
# fast shutdown, as `pg_ctl stop -m fast`) and 30 s.
start_postgres() {   # dir
  local dir=$1 attempt rc as
  [[ -n $PG_BIN ]] || need_postgres
  as=("${PG_AS[@]}")
  mkdir -p "$dir/sock"
  if (( EUID == 0 )); then
    chown -R postgres: "$dir"
    as+=(env HOME="$dir" USER=postgres)
  fi
  ( cd "$dir" && "${as[@]}" "$PG_BIN/initdb" -D "$dir/data" -A trust -U tollgate -E UTF8 --locale=C --no-sync \
      >"$dir/initdb.log" 2>&1 ) || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  for (( attempt = 1; attempt <= 3; attempt++ )); do
    PG_PORT=$(free_ports 1)
    spawn_server PostgreSQL "$dir/postgres.log" INT 300 \
      in_dir "$dir" "${as[@]}" "$PG_BIN/postgres" -D "$dir/data" \
      -p "$PG_PORT" -k "$dir/sock" -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
      -c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB
    PG_PID=$SERVER_PID
    rc=0
    probe_until "$PG_PID" 300 pg_sql postgres 'SELECT 1' >/dev/null 2>&1 || rc=$?
    (( rc == 0 )) && return 0
    stop_server "$PG_PID"
    (( attempt < 3 )) && grep -qs 'already in use' "$dir/postgres.log" && continue
    tail -n 40 "$dir/initdb.log" "$dir/postgres.log" >&2 2>/dev/null
    die "PostgreSQL did not become ready on 127.0.0.1:$PG_PORT; logs above"
  done
}

# Run SQL in a database of the server start_postgres started, as the tests' psql does: prints
# the rows unaligned, without headers; fails on the first error.
pg_sql() {   # db sql
  env -u PGPASSWORD -u PGSERVICE -u PGOPTIONS PGCONNECT_TIMEOUT=5 "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U tollgate -d "$1" -c "$2"
}

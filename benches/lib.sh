# benches/lib.sh: helpers the benchmark scripts share. Source it after defining log() and die().
# shellcheck shell=bash

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
  wait "$1" 2>/dev/null
  return 0
}

# Stop the nginx of a pid file: QUIT (finish what it serves), TERM after 5 s.
stop_nginx() {   # pid-file
  local pid
  [[ -s $1 ]] || return 0
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null && { wait_gone "$pid" 50 || kill -TERM "$pid" 2>/dev/null; }
  return 0
}

# Wait until a server just started answers, that is until the probe (a command and its
# arguments) succeeds. Dies with the tail of its log when the process exits first, or after
# tenths of a second. The log may be a glob (several logs).
wait_ready() {   # name pid log tenths probe...
  local name=$1 pid=$2 log=$3 tenths=$4 i
  shift 4
  for (( i = 0; i < tenths; i++ )); do
    if [[ ! -d /proc/$pid ]]; then
      # shellcheck disable=SC2086  # a glob
      tail -n 40 $log >&2 2>/dev/null
      die "$name exited during start-up; log above"
    fi
    "$@" && return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086  # a glob
  tail -n 40 $log >&2 2>/dev/null
  die "$name not ready after $(( tenths / 10 )) s; log above"
}

# The probe for a tollgate: its admin listener (host:port) answers /readyz.
tollgate_ready() {   # admin-address
  curl -sf -o /dev/null --max-time 2 "http://$1/readyz"
}

# The end of a script's cleanup: keep $TMP when asked (KEEP_TMP=1) or when keep is 1 (after a
# failure), else remove it.
keep_or_remove_tmp() {   # keep(0|1)
  if [[ ${KEEP_TMP:-0} == 1 || $1 == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
}

# Run the script's cleanup() on exit, and exit (so run it) on INT and TERM.
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

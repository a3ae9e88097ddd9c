#!/usr/bin/env bash
# sink_bench.sh: how fast do the sinks ship, and how far behind are they under live traffic?
#
# Real servers on 127.0.0.1, free ports, everything in one temp dir, started by benches/lib.sh
# the way the test suite starts them (tests/common/): ClickHouse (/usr/sbin/clickhouse-server,
# the tests' XML config from tests/fixtures/clickhouse/), PostgreSQL (/usr/lib/postgresql/*/bin,
# initdb + postgres, as the `postgres` user when root; trust auth, fsync=off,
# synchronous_commit=off, full_page_writes=off), and an nginx upstream (1 worker) answering
# every path with the same 2 KiB HTML page.
#
# 1. Backlog shipping throughput, per sink type. tollgate runs once with no sinks and takes a
#    backlog of N events through POST /api/events (NDJSON, 5,000 events per request, generated
#    up front with a fixed seed: 7 event names, ~30k user ids or ~20k visitor ids, shop URLs
#    with and without utm_* parameters, 10 user agents, referrers, IPs, props per event name;
#    `ts` is the ingestion time). It is stopped (SIGTERM). Then, for each sink type in turn
#    (clickhouse, postgres, files/parquet, files/ndjson; interleaved per round), tollgate
#    starts again on the same data dir with only that sink configured (batch_size = SINK_BATCH_SIZE, a sink name
#    never used before so it starts from seq 0, a fresh ClickHouse table / PostgreSQL database /
#    directory) and the time from launching the process until GET /api/sinks shows
#    lag_events == 0 and offset >= the backlog's last seq (polled every 100 ms) is measured:
#    events/s = N / seconds, start-up included ("startup" is the time to the first answer from
#    /api/sinks). Then the destination is counted (ClickHouse count() and uniqExact(event_id),
#    PostgreSQL count(*), the files' rows from the Parquet footers / gunzipped NDJSON lines,
#    and that the files' seq ranges cover 1..last seq), and dropped.
# 2. Lag under live traffic. A fresh tollgate with all four sinks (default batch settings:
#    batch_size 10000, batch_age_ms 1000) in front of nginx; wrk drives RATE requests/s
#    (`Accept: text/html` page views, varied paths, utm parameters, user agents, referrers,
#    and a tg_vid cookie from a pool of returning visitors on 70 % of requests) for DURATION
#    seconds, paced by a Lua delay() per connection (the mean delay is calibrated by three 5 s
#    runs first, then the sinks drain). /api/sinks is sampled once a second during the run and
#    then until every sink has drained. Reported per sink: median and max lag_seconds and
#    lag_events over the load samples, the time to drain after the load stops, retries and
#    dead letters; and the achieved req/s from wrk's output.
#
# Usage:
#   bash benches/sink_bench.sh        (needs the release binary, see TOLLGATE_BIN)
#
# Environment:
#   N=500000            backlog events for part 1 (a multiple of BATCH is neatest)
#   RUNS=3              part-1 runs per sink type (median reported, all runs listed)
#   SINKS="clickhouse postgres parquet ndjson"   part-1 sink types, in this order per round
#   SINK_BATCH_SIZE=10000   part 1's batch_size
#   BATCH=5000          events per POST /api/events while ingesting the backlog
#   RUN_TIMEOUT=900     seconds one part-1 run may take before it is reported as a timeout
#   DURATION=60         seconds of load in part 2 (integer)
#   RATE=5000           target requests/s in part 2
#   CONNS=200           wrk connections in part 2 (one wrk thread); many connections with a
#                       long delay keep the rate steady when the proxy's latency moves
#   SKIP_BACKLOG=1 / SKIP_LIVE=1   run only one part
#   TOLLGATE_BIN        default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate
#   TOLLGATE_CLICKHOUSE_SERVER, TOLLGATE_PG_BIN   the servers' binaries, as for the tests
#   OUT=FILE            also write the report to FILE
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw results) for inspection
#
# Needs bash, coreutils, python3, curl, psql, nginx, wrk, clickhouse-server and PostgreSQL's
# server binaries; installs nginx-light and wrk with apt-get when missing (the database
# servers: `bash .ci/deps test`). Runs tollgate with TOLLGATE_LOG=warn. Every process it starts
# is stopped on exit by its own pid.

set -euo pipefail

N=${N:-500000}
RUNS=${RUNS:-3}
SINKS=${SINKS:-clickhouse postgres parquet ndjson}
SINK_BATCH_SIZE=${SINK_BATCH_SIZE:-10000}
BATCH=${BATCH:-5000}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
DURATION=${DURATION:-60}
RATE=${RATE:-5000}
CONNS=${CONNS:-200}
SKIP_BACKLOG=${SKIP_BACKLOG:-0}
SKIP_LIVE=${SKIP_LIVE:-0}
PAGE_BYTES=2048
CALIBRATE_SECS=5
CALIBRATE_ROUNDS=3

CMDLINE="$(printf '%q ' env N="$N" RUNS="$RUNS" SINKS="$SINKS" SINK_BATCH_SIZE="$SINK_BATCH_SIZE" \
  BATCH="$BATCH" DURATION="$DURATION" RATE="$RATE" CONNS="$CONNS" \
  ${TOLLGATE_BIN:+TOLLGATE_BIN="$TOLLGATE_BIN"} ${OUT:+OUT="$OUT"} \
  SKIP_BACKLOG="$SKIP_BACKLOG" SKIP_LIVE="$SKIP_LIVE" bash "$0" "$@")"
CMDLINE=${CMDLINE% }

log() { printf '[sink_bench] %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[sink_bench] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer (got '$2')"; }
posint N "$N"; posint RUNS "$RUNS"; posint SINK_BATCH_SIZE "$SINK_BATCH_SIZE"; posint BATCH "$BATCH"
posint RUN_TIMEOUT "$RUN_TIMEOUT"; posint DURATION "$DURATION"; posint RATE "$RATE"; posint CONNS "$CONNS"
for s in $SINKS; do
  case $s in clickhouse|postgres|parquet|ndjson) ;; *) die "unknown sink type in SINKS: '$s'" ;; esac
done

# ---------------------------------------------------------------------------------- tools

need_nginx_wrk
need_clickhouse
need_postgres
need_tollgate

# ------------------------------------------------------------------------- temp + cleanup

make_tmp sink_bench /tmp   # under /tmp: the postgres user must reach it
TG_PID=
TG_GRACE=300   # tenths of a second the cleanup gives a tollgate to stop
trap_cleanup


# ------------------------------------------------------------------------- python helper

HELPER=$TMP/helper.py
cat >"$HELPER" <<'PY'
"""sink_bench.sh's helper: event generation, polling, sampling, parsing and the report."""
import gzip, json, os, random, re, statistics, sys, time, urllib.request, uuid

def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())

def get_text(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
]
SOURCES = [("google", "cpc", "winter_sale"), ("facebook", "paid_social", "retarget_q4"),
           ("newsletter", "email", "weekly_2026_47"), ("tiktok", "paid_social", "ugc_boots"),
           ("bing", "cpc", "brand"), ("partner_blog", "referral", "review_x100")]
REFERRERS = ["https://www.google.com/", "https://www.bing.com/search?q=boots",
             "https://t.co/abc123", "https://www.facebook.com/", "https://news.ycombinator.com/item?id=1"]
CATS = ["boots", "jackets", "hats", "gloves", "bags", "socks"]
WORDS = ["red", "winter", "waterproof", "wool", "leather", "sale", "kids", "xl"]

def page_url(rng, host="https://shop.example"):
    r = rng.random()
    if r < 0.35:
        path = "/p/%d" % rng.randint(1, 5000)
    elif r < 0.55:
        path = "/c/" + rng.choice(CATS)
    elif r < 0.65:
        path = "/search?q=" + "+".join(rng.sample(WORDS, 2))
    elif r < 0.75:
        path = "/checkout"
    elif r < 0.85:
        path = "/blog/%s-guide-%d" % (rng.choice(CATS), rng.randint(1, 40))
    else:
        path = "/"
    if rng.random() < 0.4:
        s, m, c = rng.choice(SOURCES)
        q = "utm_source=%s&utm_medium=%s&utm_campaign=%s" % (s, m, c)
        if rng.random() < 0.2:
            q += "&gclid=Cj0KCQiA%d" % rng.randint(10**8, 10**9)
        path += ("&" if "?" in path else "?") + q
    return host + path

def gen(outdir, n, batch):
    """Write ceil(n / batch) NDJSON files of custom events."""
    rng = random.Random(42)
    names = ["product_viewed"] * 8 + ["add_to_cart"] * 3 + ["search"] * 3 + ["purchase", "signup",
             "checkout_started", "checkout_started", "login"]
    vids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20000)]
    written, k = 0, 0
    while written < n:
        m = min(batch, n - written)
        lines = []
        for _ in range(m):
            name = rng.choice(names)
            ev = {"name": name}
            if rng.random() < 0.7:   # server events need a user_id or a visitor_id
                ev["user_id"] = "u%d" % rng.randint(1, 30000)
            else:
                ev["visitor_id"] = vids[rng.randrange(len(vids))]
            ev["url"] = page_url(rng)
            if rng.random() < 0.5:
                ev["referrer"] = rng.choice(REFERRERS)
            ev["user_agent"] = rng.choice(UAS)
            ev["ip"] = rng.choice(["203.0.113.%d", "198.51.100.%d", "192.0.2.%d"]) % rng.randint(1, 254)
            if name == "purchase":
                ev["props"] = {"order_id": "o%d" % rng.randint(1, 10**7), "value": round(rng.uniform(5, 500), 2),
                               "currency": rng.choice(["EUR", "USD", "GBP"]), "items": rng.randint(1, 6)}
            elif name in ("product_viewed", "add_to_cart"):
                ev["props"] = {"sku": "X%04d" % rng.randint(1, 5000), "price": round(rng.uniform(5, 300), 2),
                               "category": rng.choice(CATS)}
            elif name == "search":
                ev["props"] = {"query": " ".join(rng.sample(WORDS, rng.randint(1, 3))), "results": rng.randint(0, 200)}
            elif name == "signup":
                ev["props"] = {"plan": rng.choice(["free", "pro", "team"]), "newsletter": rng.random() < 0.5}
            else:
                ev["props"] = {"step": rng.randint(1, 4)}
            lines.append(json.dumps(ev, separators=(",", ":")))
        k += 1
        with open(os.path.join(outdir, "batch-%05d.ndjson" % k), "w") as f:
            f.write("\n".join(lines) + "\n")
        written += m

def drain(admin, sink, t0, pid, min_offset, timeout, out):
    """Poll /api/sinks every 100 ms until `sink` has lag_events 0 and offset >= min_offset."""
    t0, min_offset, timeout = float(t0), int(min_offset), float(timeout)
    first_ok, errors, last, done = None, set(), None, False
    while True:
        now = time.time()
        if now - t0 > timeout:
            break
        if not os.path.isdir("/proc/%s" % pid):
            errors.add("tollgate exited")
            break
        try:
            st = get_json("http://%s/api/sinks" % admin, timeout=5)
            s = next((x for x in st["sinks"] if x["name"] == sink), None)
            if s is not None:
                if first_ok is None:
                    first_ok = time.time() - t0
                last = s
                if s.get("last_error"):
                    errors.add(s["last_error"])
                if s["lag_events"] == 0 and s["offset"] >= min_offset:
                    done = True
                    break
        except Exception:
            pass
        time.sleep(max(0.0, now + 0.1 - time.time()))
    res = {"done": done, "seconds": time.time() - t0, "startup": first_ok,
           "offset": last and last["offset"], "lag_events": last and last["lag_events"],
           "dead_letters": last and last["dead_letters"], "errors_seen": sorted(errors)}
    json.dump(res, open(out, "w"))

def metrics(admin, out):
    """The sink counters from /metrics, by sink, plus the pipeline's counters."""
    text = get_text("http://%s/metrics" % admin)
    sinks, other = {}, {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^(tollgate_[a-z_]+)(\{[^}]*\})?\s+(\S+)$', line)
        if not m:
            continue
        name, labels, val = m.group(1), m.group(2) or "", float(m.group(3))
        sm = re.search(r'sink="([^"]*)"', labels)
        if sm:
            sinks.setdefault(sm.group(1), {})
            key = name[len("tollgate_sink_"):] if name.startswith("tollgate_sink_") else name
            if "_bucket" in key:
                continue
            sinks[sm.group(1)][key] = sinks[sm.group(1)].get(key, 0) + val
        elif name in ("tollgate_requests_total", "tollgate_events_dropped_total",
                      "tollgate_events_captured_total", "tollgate_events_written_total",
                      "tollgate_store_batches_failed_total", "tollgate_upstream_errors_total"):
            other[name] = other.get(name, 0) + val
    json.dump({"sinks": sinks, "other": other}, open(out, "w"))

# ---- files: rows and seq coverage

def _varint(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1
        r |= (x & 0x7F) << s; s += 7
        if not x & 0x80:
            return r, i

def _zz(n):
    return (n >> 1) ^ -(n & 1)

def _skip(b, i, t):   # Thrift compact protocol
    if t in (1, 2):
        return i
    if t == 3:
        return i + 1
    if t in (4, 5, 6):
        return _varint(b, i)[1]
    if t == 7:
        return i + 8
    if t == 8:
        n, i = _varint(b, i); return i + n
    if t in (9, 10):
        h = b[i]; i += 1; n, et = h >> 4, h & 15
        if n == 15:
            n, i = _varint(b, i)
        for _ in range(n):
            i = i + 1 if et in (1, 2) else _skip(b, i, et)
        return i
    if t == 11:
        n, i = _varint(b, i)
        if n == 0:
            return i
        kv = b[i]; i += 1
        for _ in range(n):
            i = _skip(b, i, kv >> 4); i = _skip(b, i, kv & 15)
        return i
    if t == 12:
        fid = 0
        while True:
            h = b[i]; i += 1
            if h == 0:
                return i
            d, ft = h >> 4, h & 15
            if d:
                fid += d
            else:
                v, i = _varint(b, i); fid = _zz(v)
            i = _skip(b, i, ft)
    raise ValueError("thrift type %d" % t)

def parquet_rows(path):
    """FileMetaData.num_rows (field 3) from the footer."""
    with open(path, "rb") as f:
        f.seek(-8, 2); tail = f.read(8)
        if tail[4:] != b"PAR1":
            raise ValueError("%s: not a Parquet file" % path)
        n = int.from_bytes(tail[:4], "little")
        f.seek(-8 - n, 2); b = f.read(n)
    i = fid = 0
    while True:
        h = b[i]; i += 1
        if h == 0:
            raise ValueError("%s: no num_rows" % path)
        d, ft = h >> 4, h & 15
        if d:
            fid += d
        else:
            v, i = _varint(b, i); fid = _zz(v)
        if fid == 3 and ft == 6:
            return _zz(_varint(b, i)[0])
        i = _skip(b, i, ft)

def files_check(d, fmt, last_seq, out):
    ext = ".parquet" if fmt == "parquet" else ".ndjson.gz"
    pat = re.compile(r"^events-(\d{20})-(\d{20})" + re.escape(ext) + "$")
    rows = nbytes = nfiles = dot = 0
    ranges = []
    for root, _, names in os.walk(d):
        for nm in names:
            p = os.path.join(root, nm)
            if nm.startswith("."):
                dot += 1
                continue
            m = pat.match(nm)
            if not m:
                continue
            nfiles += 1
            nbytes += os.path.getsize(p)
            ranges.append((int(m.group(1)), int(m.group(2))))
            if fmt == "parquet":
                rows += parquet_rows(p)
            else:
                with gzip.open(p, "rb") as f:
                    rows += sum(1 for _ in f)
    covered, gaps = 0, 0
    for a, b in sorted(ranges):
        if a > covered + 1:
            gaps += 1
        covered = max(covered, b)
    json.dump({"rows": rows, "files": nfiles, "bytes": nbytes, "dot_files": dot,
               "covers": covered >= int(last_seq) and gaps == 0}, open(out, "w"))

def merge(out, *parts):
    """Append one JSON object: the given JSON files' objects and k=v pairs, merged."""
    rec = {}
    for p in parts:
        if "=" in p and not os.path.exists(p):
            k, v = p.split("=", 1)
            try:
                v = json.loads(v)
            except ValueError:
                pass
            rec[k] = v
        else:
            rec.update(json.load(open(p)))
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")

# ---- wrk

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}

def wrkparse(path, out):
    t = open(path).read()
    def num(rx, default=None):
        m = re.search(rx, t, re.M)
        return float(m.group(1)) if m else default
    def lat(p):
        m = re.search(r"^\s*%s%%\s+([0-9.]+)(us|ms|s|m)\s*$" % p, t, re.M)
        return float(m.group(1)) * UNIT[m.group(2)] if m else None
    m = re.search(r"Latency\s+([0-9.]+)(us|ms|s|m)", t)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    res = {"rps": num(r"^Requests/sec:\s+([0-9.]+)"),
           "requests": num(r"^\s*(\d+) requests in"),
           "seconds": None,
           "mean_ms": float(m.group(1)) * UNIT[m.group(2)] if m else None,
           "p50_ms": lat(50), "p99_ms": lat(99),
           "non2xx": int(num(r"Non-2xx or 3xx responses:\s+(\d+)", 0)),
           "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0}
    m = re.search(r"requests in ([0-9.]+)(us|ms|s|m)", t)
    if m:
        res["seconds"] = float(m.group(1)) * UNIT[m.group(2)] / 1e3
    if res["rps"] is None:
        sys.exit("no Requests/sec line in %s" % path)
    json.dump(res, open(out, "w"))

def calibrate(wrk_json, conns, d0, rate):
    """Mean delay (ms) so that conns connections make `rate` requests/s, from a run at d0."""
    r0 = json.load(open(wrk_json))["rps"]
    conns, d0, rate = int(conns), float(d0), float(rate)
    overhead = conns * 1000.0 / r0 - d0          # ms per request besides the delay
    print("%.3f" % max(0.0, conns * 1000.0 / rate - overhead))

def lua(path, delay_ms, seed):
    """The part-2 wrk script: varied page views, paced by delay()."""
    rng = random.Random(int(seed))
    d = float(delay_ms)
    lo = int(d); frac = d - lo
    paths = []
    for _ in range(400):
        u = page_url(rng, host="")
        paths.append(u if u else "/")
    vids = ["%08x-%04x-4%03x-a%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
            rng.getrandbits(12), rng.getrandbits(48)) for _ in range(2000)]
    q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    L = ["local paths = {" + ",".join(q(p) for p in paths) + "}",
         "local uas = {" + ",".join(q(u) for u in UAS) + "}",
         "local refs = {" + ",".join(q(r) for r in REFERRERS) + "}",
         "local vids = {" + ",".join(q(v) for v in vids) + "}",
         "local lo, frac = %d, %.6f" % (lo, frac),
         "local accept = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'",
         "math.randomseed(%d)" % rng.randint(1, 10**9),
         "function request()",
         "  local h = {['Accept'] = accept, ['User-Agent'] = uas[math.random(#uas)],",
         "             ['Accept-Language'] = 'en-GB,en;q=0.9'}",
         "  if math.random() < 0.5 then h['Referer'] = refs[math.random(#refs)] end",
         "  if math.random() < 0.7 then h['Cookie'] = 'tg_vid=' .. vids[math.random(#vids)] end",
         "  return wrk.format('GET', paths[math.random(#paths)], h)",
         "end",
         "function delay()",
         "  if math.random() < frac then return lo + 1 end",
         "  return lo",
         "end"]
    open(path, "w").write("\n".join(L) + "\n")

def sample(admin, out, stopfile, drain_timeout):
    """Sample /api/sinks once a second; phase 'load' until stopfile exists, then 'drain'
    until every sink has lag_events 0 (or drain_timeout seconds)."""
    drain_timeout = float(drain_timeout)
    stop_at = None
    nxt = time.time()
    with open(out, "w") as f:
        while True:
            phase = "load"
            if os.path.exists(stopfile):
                phase = "drain"
                if stop_at is None:
                    stop_at = os.path.getmtime(stopfile)
            t = time.time()
            try:
                st = get_json("http://%s/api/sinks" % admin, timeout=5)
                rec = {"t": t, "phase": phase, "took": time.time() - t, "sinks": st["sinks"]}
            except Exception as e:
                rec = {"t": t, "phase": phase, "error": str(e)}
            f.write(json.dumps(rec) + "\n"); f.flush()
            if phase == "drain":
                if "sinks" in rec and all(s["lag_events"] == 0 for s in rec["sinks"]):
                    f.write(json.dumps({"drained_after": t - stop_at}) + "\n")
                    return
                if t - stop_at > drain_timeout:
                    f.write(json.dumps({"drained_after": None}) + "\n")
                    return
            nxt += 1.0
            time.sleep(max(0.0, nxt - time.time()))

def logsummary(path):
    """WARN/ERROR lines of a tollgate log, grouped by message (timestamps, colours, details cut)."""
    counts = {}
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        m = re.match(r"^\S+\s+(WARN|ERROR)\s+(.*)$", line)
        if not m:
            continue
        msg = re.split(r" context: | cause: |, status:", m.group(2))[0][:100]
        counts[m.group(1) + " " + msg] = counts.get(m.group(1) + " " + msg, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    print("%d warning/error lines%s" % (sum(counts.values()), (": " + "; ".join(
        "%d× `%s`" % (n, k) for k, n in top[:4])) if top else ""))

def cpu_snap(out, *groups):
    """CPU jiffies now: the machine's busy and total, and per name=pid group (the process and
    its descendants)."""
    kids, ticks = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        kids.setdefault(int(f[1]), []).append(int(d))
        ticks[int(d)] = int(f[11]) + int(f[12])
    res = {}
    for g in groups:
        name, pid = g.split("=")
        if not pid.isdigit():
            continue
        todo, tot = [int(pid)], 0
        while todo:
            p = todo.pop()
            tot += ticks.get(p, 0)
            todo.extend(kids.get(p, []))
        res[name] = tot
    cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    res["_total"] = sum(cpu[:8])
    res["_idle"] = cpu[3] + cpu[4]
    json.dump(res, open(out, "w"))

def cpu_line(a, b):
    a, b = json.load(open(a)), json.load(open(b))
    total = b["_total"] - a["_total"]
    ncpu = os.cpu_count() or 1
    busy = total - (b["_idle"] - a["_idle"])
    pct = lambda t: 100.0 * ncpu * t / total
    groups = {k: b[k] - a[k] for k in b if not k.startswith("_") and k in a}
    parts = ["%s %.0f%%" % (k, pct(v)) for k, v in groups.items()]
    parts.append("everything else (wrk, the sampler, the kernel) %.0f%%" % pct(busy - sum(groups.values())))
    print("machine %.0f%% busy (of %d CPUs); in %% of one CPU: %s" % (
        100.0 * busy / total, ncpu, ", ".join(parts)))

# ---- report

def fmt(x, nd=0):
    if x is None:
        return "–"
    return "%.*f" % (nd, float(x))

def report_backlog(path, n, sinks):
    recs = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    print("### 1. Shipping a backlog of %s events, one sink at a time" % fmt(n))
    print()
    print("| sink | median events/s | runs (events/s) | median s | median startup s | retries | dead letters | rows at destination |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for s in sinks:
        rs = [r for r in recs if r["sink_type"] == s]
        if not rs:
            continue
        ok = [r for r in rs if r["done"]]
        eps = [n / r["seconds"] for r in ok]
        runs = ", ".join(fmt(n / r["seconds"]) if r["done"] else "timeout" for r in rs)
        dest = []
        for r in rs:
            if s == "clickhouse":
                dest.append("%s (%s distinct)" % (fmt(r.get("dest_rows")), fmt(r.get("dest_distinct"))))
            elif s == "postgres":
                dest.append(fmt(r.get("dest_rows")))
            else:
                dest.append("%s in %s files, %.1f MB%s" % (fmt(r.get("rows")), r.get("files"), (r.get("bytes") or 0) / 1e6,
                                                         "" if r.get("covers") else ", seq GAP"))
        uniq = sorted(set(dest))
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s, fmt(statistics.median(eps)) if eps else "–", runs,
            fmt(statistics.median(r["seconds"] for r in ok), 1) if ok else "–",
            fmt(statistics.median(r["startup"] for r in ok if r["startup"] is not None), 2) if ok else "–",
            "/".join(str(int(r.get("retries") or 0)) for r in rs),
            "/".join(str(r.get("dead_letters") or 0) for r in rs),
            "; ".join(uniq)))
    print()
    odd = [r for r in recs if r.get("errors_seen") or not r["done"] or r.get("warn_lines")]
    for r in odd:
        print("- %s run %s: done=%s, errors seen: %s, warning/error log lines: %s%s" % (
            r["sink_type"], r["run"], r["done"], r.get("errors_seen") or "none", r.get("warn_lines", 0),
            (" (first: `%s`)" % r["first_warn"]) if r.get("first_warn") else ""))
    if odd:
        print()

def report_live(samples, wrkj, metj, conns, delay_ms, rate, duration, calj):
    w = json.load(open(wrkj))
    cal = json.load(open(calj)) if calj and os.path.exists(calj) else None
    met = json.load(open(metj))
    recs = [json.loads(l) for l in open(samples)]
    load = [r for r in recs if r.get("phase") == "load" and "sinks" in r]
    bad = [r for r in recs if "error" in r]
    drained = next((r["drained_after"] for r in recs if "drained_after" in r), None)
    print("### 2. Lag while the proxy captures ~%s requests/s (all four sinks, default batches)" % fmt(rate))
    print()
    print("- wrk: `-t1 -c%s -d%ss`, Lua delay() mean %.2f ms per connection (calibrated; last calibration run: %s), "
          "**achieved %s req/s** (%s requests, p50 %s ms, p99 %s ms, non-2xx %d, socket errors %d)" % (
              conns, duration, float(delay_ms),
              ("%s req/s in %.0f s" % (fmt(cal["rps"]), cal.get("seconds") or 0)) if cal else "–",
              fmt(w["rps"]), fmt(w["requests"]), fmt(w["p50_ms"], 2), fmt(w["p99_ms"], 2), w["non2xx"], w["socket_errors"]))
    o = met["other"]
    print("- tollgate counters (calibration runs included): %s requests, %s events captured, %s written, %s dropped, %s store batches failed; "
          "%d samples of /api/sinks under load (%d failed), median answer time %s ms" % (
              fmt(o.get("tollgate_requests_total")), fmt(o.get("tollgate_events_captured_total")),
              fmt(o.get("tollgate_events_written_total")), fmt(o.get("tollgate_events_dropped_total", 0)),
              fmt(o.get("tollgate_store_batches_failed_total", 0)), len(load), len(bad),
              fmt(statistics.median(r["took"] * 1e3 for r in load), 1) if load else "–"))
    print("- drained (every sink lag_events 0) %s after the load stopped" % (
        ("%.1f s" % drained) if drained is not None else "NOT within the drain timeout"))
    print()
    print("| sink | median lag s | max lag s | median lag events | max lag events | batches | retries | dead letters | last error |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    names = [s["name"] for s in load[0]["sinks"]] if load else []
    for nm in names:
        xs = [next(s for s in r["sinks"] if s["name"] == nm) for r in load]
        ls = [x["lag_seconds"] for x in xs]
        le = [x["lag_events"] for x in xs]
        m = met["sinks"].get(nm, {})
        errs = sorted({x["last_error"] for r in recs if "sinks" in r for x in r["sinks"]
                       if x["name"] == nm and x.get("last_error")})
        print("| %s | %.2f | %.2f | %s | %s | %s | %s | %s | %s |" % (
            nm, statistics.median(ls), max(ls), fmt(statistics.median(le)), fmt(max(le)),
            fmt(m.get("batches_total")), fmt(m.get("retries_total", 0)), xs[-1]["dead_letters"],
            ("`%s`" % errs[-1][:120]) if errs else "none"))
    print()

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"gen": lambda a: gen(a[0], int(a[1]), int(a[2])), "drain": lambda a: drain(*a),
     "metrics": lambda a: metrics(*a), "files_check": lambda a: files_check(*a),
     "merge": lambda a: merge(*a), "wrkparse": lambda a: wrkparse(*a),
     "calibrate": lambda a: calibrate(*a), "lua": lambda a: lua(*a), "sample": lambda a: sample(*a),
     "report_backlog": lambda a: report_backlog(a[0], int(a[1]), a[2].split()),
     "report_live": lambda a: report_live(*a), "logsummary": lambda a: logsummary(*a),
     "cpu_snap": lambda a: cpu_snap(*a), "cpu_line": lambda a: cpu_line(*a)}[cmd](args)
PY
helper() { python3 "$HELPER" "$@"; }

# ------------------------------------------------------------------------------- nginx

UP_PORT=$(free_ports 1)
UP_DIR=$TMP/nginx
mkdir -p "$UP_DIR/html" "$UP_DIR/tmp"
bench_page "$UP_DIR/html/index.html" "$PAGE_BYTES"
chmod -R a+rX "$UP_DIR"
# Every path answers with the page.
# shellcheck disable=SC2016  # nginx's $uri
upstream_nginx_conf "$UP_DIR" "$UP_PORT" 'try_files $uri /index.html;' >"$UP_DIR/nginx.conf"
UP_PIDFILE=$UP_DIR/nginx.pid
start_nginx upstream "$UP_DIR"
out=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "http://127.0.0.1:$UP_PORT/p/1?x=1") || true
[[ $out == "200 $PAGE_BYTES" ]] || die "nginx upstream answered '$out' (status, bytes), expected '200 $PAGE_BYTES'"
UPSTREAM=http://127.0.0.1:$UP_PORT
log "nginx upstream on $UPSTREAM"

# -------------------------------------------------------------------------- ClickHouse

start_clickhouse "$TMP/clickhouse"   # sets CH_PID and CH_URL
ch() { curl -sS --fail-with-body --max-time 120 --data-binary "$1" "$CH_URL/"; }
CH_VER=$(ch 'SELECT version()')
log "ClickHouse $CH_VER on $CH_URL"

# -------------------------------------------------------------------------- PostgreSQL

start_postgres "$TMP/postgres"   # sets PG_PID and PG_PORT
PG_VER=$(pg_sql postgres 'SHOW server_version')
log "PostgreSQL $PG_VER on 127.0.0.1:$PG_PORT"

# ----------------------------------------------------------------------------- tollgate

# Launch tollgate on fresh loopback ports without waiting for it (part 1 times its start-up);
# sets TG_PID, TG_ADMIN, TG_LISTEN, TG_T0 (the launch time), TG_LOG.
sink_tollgate() {   # tag data-dir config
  local listen admin
  read -r listen admin < <(free_ports 2)
  TG_LISTEN=127.0.0.1:$listen
  TG_T0=$(date +%s.%N)
  spawn_tollgate "$1" "$TMP/tollgate-$1.log" TOLLGATE_LOG=warn -- --upstream "$UPSTREAM" \
    --listen "$TG_LISTEN" --admin "127.0.0.1:$admin" --data "$2" --config "$3"
}

stop_tollgate() {
  local rc=0
  [[ -n $TG_PID ]] || return 0
  kill -TERM "$TG_PID" 2>/dev/null || true
  wait_gone "$TG_PID" 600 || { log "WARNING: tollgate did not exit 60 s after SIGTERM; SIGKILL"; kill -KILL "$TG_PID" 2>/dev/null || true; }
  wait "$TG_PID" 2>/dev/null || rc=$?
  (( rc == 0 )) || log "WARNING: tollgate exited with status $rc after SIGTERM (log: $TG_LOG)"
  forget_server "$TG_PID"
  TG_PID=
}

base_config() {   # file
  cat >"$1" <<EOF
[upstream]
url = "$UPSTREAM"
EOF
}

sink_config() {   # type name dest [batch_size] >> file
  local type=$1 name=$2 dest=$3 bs=${4:-}
  echo
  echo '[[sinks]]'
  case $type in
    clickhouse) printf 'type = "clickhouse"\nname = "%s"\nurl = "%s"\ntable = "%s"\n' "$name" "$CH_URL" "$dest" ;;
    postgres)   printf 'type = "postgres"\nname = "%s"\nurl = "postgres://tollgate@127.0.0.1:%s/%s"\ntable = "events"\n' \
                  "$name" "$PG_PORT" "$dest" ;;
    parquet|ndjson) printf 'type = "files"\nname = "%s"\ndir = "%s"\nformat = "%s"\n' "$name" "$dest" "$type" ;;
  esac
  [[ -n $bs ]] && printf 'batch_size = %s\n' "$bs"
  return 0
}

check_config() {
  "$BIN" check --config "$1" >"$1.check" 2>&1 || { cat "$1.check" >&2; die "tollgate check failed for $1"; }
}

warn_lines() {   # log -> count of WARN/ERROR lines
  grep -cE 'WARN|ERROR' "$1" 2>/dev/null || true
}
first_warn() {
  grep -m1 -E 'WARN|ERROR' "$1" 2>/dev/null | sed -e 's/\x1b\[[0-9;]*m//g' | cut -c1-200 || true
}

REPORT=$TMP/report.md
PART1=$TMP/part1.jsonl
: >"$PART1"

# ------------------------------------------------------------------- part 1: the backlog

if [[ $SKIP_BACKLOG != 1 ]]; then
  BATCH_DIR=$TMP/batches
  mkdir -p "$BATCH_DIR"
  log "generating $N events in NDJSON files of $BATCH"
  helper gen "$BATCH_DIR" "$N" "$BATCH"
  DATA=$TMP/data-backlog
  CFG=$TMP/backlog-nosinks.toml
  base_config "$CFG"
  check_config "$CFG"
  sink_tollgate ingest "$DATA" "$CFG"
  wait_tollgate ingest
  log "ingesting the backlog through http://$TG_ADMIN/api/events"
  total=0
  t_ing=$(date +%s.%N)
  for f in "$BATCH_DIR"/batch-*.ndjson; do
    resp=$(curl -sS --fail-with-body --max-time 300 -H 'content-type: application/x-ndjson' \
      --data-binary "@$f" "http://$TG_ADMIN/api/events") || die "POST /api/events failed for $f: $resp"
    [[ $resp =~ \"written\":([0-9]+) ]] || die "no \"written\" in the answer for $f: ${resp:0:300}"
    total=$(( total + BASH_REMATCH[1] ))
  done
  t_ing=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t_ing" "$(date +%s.%N)")
  (( total == N )) || die "the store took $total of $N events"
  read -r STORE_COUNT LAST_SEQ < <(curl -sS --fail-with-body -H 'content-type: application/json' \
    --data '{"sql":"SELECT count(*) AS n, max(seq) AS m FROM events"}' "http://$TG_ADMIN/api/query" \
    | python3 -c '
import json, sys
r = json.load(sys.stdin)
row = r["rows"][0]
print(*(row.values() if isinstance(row, dict) else row))')
  (( STORE_COUNT == N )) || die "store has $STORE_COUNT events, expected $N"
  INGEST_NOTE="backlog: $N events ingested in ${t_ing}s ($(python3 -c "print('%.0f' % ($N / $t_ing))") events/s), last seq $LAST_SEQ"
  log "$INGEST_NOTE"
  stop_tollgate
  rm -rf "$BATCH_DIR"
  DB_BYTES=$(du -sb "$DATA" | cut -f1)

  for (( run = 1; run <= RUNS; run++ )); do
    for s in $SINKS; do
      name=${s}_r$run
      case $s in
        clickhouse) dest=bench_ch_r$run ;;
        postgres)   dest=bench_r$run; pg_sql postgres "CREATE DATABASE $dest" ;;
        *)          dest=$TMP/files/$name ;;
      esac
      CFG=$TMP/backlog-$name.toml
      base_config "$CFG"
      sink_config "$s" "$name" "$dest" "$SINK_BATCH_SIZE" >>"$CFG"
      check_config "$CFG"
      log "run $run/$RUNS: $s (sink '$name')"
      sink_tollgate "$name" "$DATA" "$CFG"
      helper drain "$TG_ADMIN" "$name" "$TG_T0" "$TG_PID" "$LAST_SEQ" "$RUN_TIMEOUT" "$TMP/drain-$name.json"
      if [[ -d /proc/$TG_PID ]]; then
        helper metrics "$TG_ADMIN" "$TMP/metrics-$name.json" || echo '{"sinks":{}}' >"$TMP/metrics-$name.json"
      else
        echo '{"sinks":{}}' >"$TMP/metrics-$name.json"
      fi
      stop_tollgate
      python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2])).get("sinks", {}).get(sys.argv[3], {})
print("[sink_bench]   %s s (startup %s s), done=%s, offset %s, retries %d, dead letters %s, errors %s" % (
    round(d["seconds"], 2), d["startup"] and round(d["startup"], 2), d["done"], d["offset"],
    m.get("retries_total", 0), d["dead_letters"], d["errors_seen"] or "none"))' \
        "$TMP/drain-$name.json" "$TMP/metrics-$name.json" "$name" >&2
      extra=()
      case $s in
        clickhouse)
          read -r rows distinct < <(ch "SELECT count(), uniqExact(event_id) FROM $dest FORMAT TSV" || echo "- -")
          extra=(dest_rows="${rows:-null}" dest_distinct="${distinct:-null}")
          ch "DROP TABLE IF EXISTS $dest" >/dev/null || log "WARNING: could not drop ClickHouse table $dest"
          ;;
        postgres)
          rows=$(pg_sql "$dest" 'SELECT count(*) FROM events' || echo null)
          extra=(dest_rows="$rows")
          pg_sql postgres "DROP DATABASE $dest" >/dev/null || log "WARNING: could not drop database $dest"
          ;;
        *)
          helper files_check "$dest" "$s" "$LAST_SEQ" "$TMP/files-$name.json"
          extra=("$TMP/files-$name.json")
          [[ ${KEEP_TMP:-0} == 1 ]] || rm -rf "$dest"
          ;;
      esac
      retries=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["sinks"].get(sys.argv[2], {}).get("retries_total", 0)))' \
        "$TMP/metrics-$name.json" "$name")
      helper merge "$PART1" "$TMP/drain-$name.json" sink_type="$s" run="$run" retries="$retries" \
        warn_lines="$(warn_lines "$TG_LOG")" first_warn="$(first_warn "$TG_LOG" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')" \
        "${extra[@]}"
    done
  done
fi

# ---------------------------------------------------------------- part 2: live traffic

if [[ $SKIP_LIVE != 1 ]]; then
  DATA=$TMP/data-live
  CFG=$TMP/live.toml
  pg_sql postgres "CREATE DATABASE bench_live"
  base_config "$CFG"
  {
    sink_config clickhouse clickhouse bench_live
    sink_config postgres postgres bench_live
    sink_config parquet parquet "$TMP/files/live-parquet"
    sink_config ndjson ndjson "$TMP/files/live-ndjson"
  } >>"$CFG"
  check_config "$CFG"
  sink_tollgate live "$DATA" "$CFG"
  wait_tollgate live
  URL=http://$TG_LISTEN/
  for (( i = 0; i < 50; i++ )); do
    out=$(curl -sS -o /dev/null --max-time 5 -H 'accept: text/html' -w '%{http_code} %{size_download}' "$URL" 2>"$TMP/curl.err") || true
    [[ $out == "200 $PAGE_BYTES" ]] && break
    sleep 0.1
  done
  (( i == 0 )) || log "NOTE: the proxy listener answered only after $i retries (curl: $(head -c 200 "$TMP/curl.err"))"
  [[ $out == "200 $PAGE_BYTES" ]] || die "tollgate proxy answered '$out' ($(cat "$TMP/curl.err")), expected '200 $PAGE_BYTES'"

  # Calibrate the mean delay: rate = CONNS / (delay + time per request), the latter measured.
  DELAY=$(python3 -c "print('%.3f' % ($CONNS * 1000.0 / $RATE))")
  for (( round = 1; round <= CALIBRATE_ROUNDS; round++ )); do
    helper lua "$TMP/live-cal.lua" "$DELAY" "$round"
    wrk -t1 -c"$CONNS" -d"${CALIBRATE_SECS}s" --latency -s "$TMP/live-cal.lua" "$URL" >"$TMP/wrk-cal.txt" 2>&1 \
      || { cat "$TMP/wrk-cal.txt" >&2; die "wrk (calibration) failed"; }
    helper wrkparse "$TMP/wrk-cal.txt" "$TMP/wrk-cal.json"
    CAL_RPS=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["rps"]))' "$TMP/wrk-cal.json")
    NEW_DELAY=$(helper calibrate "$TMP/wrk-cal.json" "$CONNS" "$DELAY" "$RATE")
    log "calibration $round/$CALIBRATE_ROUNDS (${CALIBRATE_SECS}s): $CAL_RPS req/s at a mean delay of $DELAY ms -> $NEW_DELAY ms"
    DELAY=$NEW_DELAY
  done
  helper lua "$TMP/live.lua" "$DELAY" 99
  # Let the sinks ship the calibration's events first.
  for (( i = 0; i < 600; i++ )); do
    python3 -c '
import json, sys, urllib.request
st = json.load(urllib.request.urlopen("http://%s/api/sinks" % sys.argv[1], timeout=5))
sys.exit(0 if all(s["lag_events"] == 0 for s in st["sinks"]) else 1)' "$TG_ADMIN" && break
    sleep 0.1
  done
  sleep 2

  STOPFILE=$TMP/live.stop
  rm -f "$STOPFILE"
  helper sample "$TG_ADMIN" "$TMP/samples.jsonl" "$STOPFILE" 120 &
  SAMPLER_PID=$!
  log "load: wrk -t1 -c$CONNS -d${DURATION}s with a mean delay of $DELAY ms (target $RATE req/s)"
  rc=0
  cpu_groups() {
    echo tollgate="$TG_PID" clickhouse="$CH_PID" postgres="$PG_PID" \
      nginx="$(<"$UP_PIDFILE")"
  }
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/live.lua" "$URL" >"$TMP/wrk-live.txt" 2>&1 &
  WRK_PID=$!
  # shellcheck disable=SC2046
  helper cpu_snap "$TMP/cpu-start.json" $(cpu_groups)
  sleep $(( DURATION - 1 ))
  # shellcheck disable=SC2046
  helper cpu_snap "$TMP/cpu-end.json" $(cpu_groups)
  wait "$WRK_PID" || rc=$?
  WRK_PID=
  touch "$STOPFILE"
  (( rc == 0 )) || { cat "$TMP/wrk-live.txt" >&2; die "wrk failed (exit $rc)"; }
  log "load done; waiting for the sinks to drain"
  wait "$SAMPLER_PID" || die "the /api/sinks sampler failed"
  SAMPLER_PID=
  helper wrkparse "$TMP/wrk-live.txt" "$TMP/wrk-live.json"
  helper metrics "$TG_ADMIN" "$TMP/metrics-live.json"
  LIVE_LOG=$(helper logsummary "$TG_LOG")
  LIVE_CPU=$(helper cpu_line "$TMP/cpu-start.json" "$TMP/cpu-end.json")
  stop_tollgate
  LIVE_CH=$(ch "SELECT count(), uniqExact(event_id) FROM bench_live FORMAT TSV" | tr '\t' ' ' || echo "?")
  LIVE_PG=$(pg_sql bench_live 'SELECT count(*) FROM events' || echo "?")
  helper files_check "$TMP/files/live-parquet" parquet 0 "$TMP/files-live-parquet.json"
  helper files_check "$TMP/files/live-ndjson" ndjson 0 "$TMP/files-live-ndjson.json"
  LIVE_FILES=$(python3 -c 'import json,sys; print(", ".join("%s %d rows in %d files" % (n, json.load(open(p))["rows"], json.load(open(p))["files"]) for n, p in zip(("parquet", "ndjson"), sys.argv[1:])))' \
    "$TMP/files-live-parquet.json" "$TMP/files-live-ndjson.json")
fi

# ------------------------------------------------------------------------------ report

CPU=
while IFS=: read -r key val; do
  [[ $key == "model name"* ]] && { CPU=${val# }; break; }
done </proc/cpuinfo
TG_VER=$("$BIN" --version 2>/dev/null | head -n1 || true)
{
  echo "## tollgate sink benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "- machine: $(nproc) CPUs, ${CPU:-unknown CPU}, kernel $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- versions: ${TG_VER:-tollgate} ($BIN, built $(date -u -r "$BIN" '+%Y-%m-%dT%H:%MZ')); ClickHouse $CH_VER; PostgreSQL $PG_VER (fsync=off, synchronous_commit=off); $("$NGINX" -v 2>&1 | head -n1); $(wrk -v 2>&1 | head -n1 | sed 's/ Copyright.*//')"
  echo
  if [[ $SKIP_BACKLOG != 1 ]]; then
    echo "- $INGEST_NOTE; store $(( DB_BYTES / 1000000 )) MB; sink batch_size $SINK_BATCH_SIZE; seconds are from launching tollgate until lag_events 0 (start-up included)"
    echo
    helper report_backlog "$PART1" "$N" "$SINKS"
  fi
  if [[ $SKIP_LIVE != 1 ]]; then
    helper report_live "$TMP/samples.jsonl" "$TMP/wrk-live.json" "$TMP/metrics-live.json" "$CONNS" "$DELAY" \
      "$RATE" "$DURATION" "$TMP/wrk-cal.json"
    echo "- at the destinations afterwards (calibration run included): ClickHouse ${LIVE_CH/ / rows, } distinct; PostgreSQL $LIVE_PG rows; $LIVE_FILES"
    echo "- CPU during the load (second 0 to $(( DURATION - 1 )) of wrk): $LIVE_CPU"
    echo "- tollgate log (TOLLGATE_LOG=warn): $LIVE_LOG"
    echo
  fi
} >"$REPORT"

cat "$REPORT"
if [[ -n ${OUT:-} ]]; then
  cp "$REPORT" "$OUT" || die "cannot write the report to $OUT"
  log "report written to $OUT"
fi

#!/usr/bin/env python3
"""ingest_crash.py: does a 2xx from /v1/batch mean durable, across a kill -9?

Run by benches/ingest_wrk.sh, in two phases around a restart of tollgate:

  load   ADMIN PID SECONDS STATE  Four clients post Segment batches of 1,000 `track` messages,
                                  each with its own messageId, as fast as tollgate answers.
                                  After SECONDS, PID gets SIGKILL. Writes to STATE which
                                  batches were acknowledged (2xx) and which were not (an
                                  error, a refusal, or in flight at the kill).
  verify ADMIN STATE              Against the restarted tollgate: every acknowledged batch is
                                  in the store whole, and no event is there twice. Then resends
                                  every batch that was not acknowledged, as a Segment client
                                  retries, and checks again: every batch exactly once.

Prints one line of figures; exits 1 (with the reason) when a check fails.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time

CLIENTS = 4
BATCH = 1000
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/131.0.0.0 Safari/537.36")
AUTH = "Basic YmVuY2gta2V5Og=="  # the write key "bench-key", as Basic auth with no password


def body(batch_id):
    return json.dumps({"batch": [
        {"type": "track", "messageId": "%s-%d" % (batch_id, i), "userId": "u%d" % i,
         "event": "Order Completed", "properties": {"b": batch_id, "revenue": i},
         "context": {"userAgent": UA, "ip": "203.0.113.%d" % (i % 250)}}
        for i in range(BATCH)]}).encode()


def post(conn, batch_id):
    conn.request("POST", "/v1/batch", body(batch_id),
                 {"Content-Type": "application/json", "Authorization": AUTH})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def connect(admin):
    host, port = admin.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)


def load(admin, pid, seconds, state):
    acked, unacked, lock = [], [], threading.Lock()
    killed = threading.Event()

    def client(c):
        conn, n = connect(admin), 0
        while True:
            batch_id = "c%d-%d" % (c, n)
            n += 1
            try:
                ok = 200 <= post(conn, batch_id) < 300
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = connect(admin)
            with lock:
                (acked if ok else unacked).append(batch_id)
            if killed.is_set():
                return

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    os.kill(pid, signal.SIGKILL)
    killed.set()
    for t in threads:
        t.join()
    json.dump({"acked": acked, "unacked": unacked}, open(state, "w"))


def batches(admin):
    """{batch id: (events, distinct event ids)} as the store holds them."""
    conn = connect(admin)
    sql = ("SELECT json_extract_string(props, '$.b') AS b, count(*) AS n, "
           "count(DISTINCT event_id) AS d FROM events "
           "WHERE json_extract_string(props, '$.b') IS NOT NULL GROUP BY b")
    conn.request("POST", "/api/query", json.dumps({"sql": sql}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read())
    if resp.status != 200:
        sys.exit("ingest_crash: the SQL console answered %d: %s" % (resp.status, out))
    if out.get("truncated"):
        sys.exit("ingest_crash: the SQL console truncated the answer (console.max_rows)")
    return {r[0]: (r[1], r[2]) for r in out["rows"]}


def check(stored, expected, when):
    for b, (n, d) in stored.items():
        if n != d:
            sys.exit("ingest_crash: %s: batch %s holds %d events but %d ids" % (when, b, n, d))
        if n > BATCH:
            sys.exit("ingest_crash: %s: batch %s holds %d events (of %d)" % (when, b, n, BATCH))
    for b in expected:
        if stored.get(b, (0, 0))[0] != BATCH:
            sys.exit("ingest_crash: %s: acknowledged batch %s holds %d events, not %d"
                     % (when, b, stored.get(b, (0, 0))[0], BATCH))


def verify(admin, state):
    s = json.load(open(state))
    acked, unacked = s["acked"], s["unacked"]
    stored = batches(admin)
    check(stored, acked, "after the restart")
    committed_unacked = sum(1 for b in unacked if b in stored)
    conn = connect(admin)
    for b in unacked:
        status = post(conn, b)
        if not 200 <= status < 300:
            sys.exit("ingest_crash: resending batch %s got HTTP %d" % (b, status))
    stored = batches(admin)
    check(stored, acked + unacked, "after the resend")
    total = sum(n for n, _ in stored.values())
    print("acknowledged %d batches (%d events) before the kill -9: all %d in the store after the "
          "restart; %d not acknowledged (%d of them committed anyway), resent: %d events, "
          "each once" % (len(acked), len(acked) * BATCH, len(acked) * BATCH, len(unacked),
                         committed_unacked, total))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "load":
        load(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 4 and sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)

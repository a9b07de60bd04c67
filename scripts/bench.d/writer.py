#!/usr/bin/env python3
"""writer.py URL RATE LOG PREFIX: put PREFIXNNNNNNNN (1 KiB values) at RATE per
second through the v3 gateway, one keep-alive connection, on a fixed
schedule (a slow put delays the next ones; they are not skipped). After
each acknowledged put (HTTP 200 from etcd, i.e. committed by the cluster) it
appends "seq unix_time" to LOG and flushes, so a SIGKILL loses nothing that
was acknowledged. Runs until killed; exits 1 on the first failed put."""
import base64, http.client, json, os, sys, time, urllib.parse

url, rate, logf, prefix = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
log = open(logf, "a", buffering=1)
pad = os.urandom(384).hex()[:1000]
t0 = time.monotonic()
seq = 0
while True:
    key = f"{prefix}{seq:08d}"
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(f"{seq} {time.time():.6f} {pad}".encode()).decode()})
    try:
        c.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
    except OSError as e:
        sys.exit(f"writer: put {key}: {e}")
    if r.status != 200:
        sys.exit(f"writer: put {key}: HTTP {r.status}")
    log.write(f"{seq} {time.time():.6f}\n")
    seq += 1
    delay = t0 + seq / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)

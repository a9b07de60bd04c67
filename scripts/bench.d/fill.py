#!/usr/bin/env python3
"""fill.py COUNT V3_URL|- V2_URL|- > HASHES: write COUNT keys /bench/NNNNNN of 512 KiB;
print "key sha256-of-value" for each, for verify.py.

Every value is unique (no cross-value repeats a large zstd window could
exploit): half random base64 (compresses ~1.3x), half Kubernetes-like Pod
JSON objects whose names, uids, IPs and versions vary (the structure repeats,
so that half compresses well). The same value goes to the v3 keyspace of one
member (gRPC gateway /v3/kv/put) and the v2 keyspace of another (/v2/keys),
over one keep-alive HTTP connection each: spawning etcdctl per key would cost
more than the data.
"""
import base64, hashlib, http.client, json, os, random, sys, urllib.parse

VAL = 512 * 1024


def obj(rnd):
    uid = os.urandom(16).hex()
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"web-{uid[:10]}", "namespace": rnd.choice(["default", "kube-system", "prod", "staging"]),
                     "uid": f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}",
                     "resourceVersion": str(rnd.randrange(10**9)),
                     "labels": {"app": "web", "tier": rnd.choice(["frontend", "backend"]), "pod-template-hash": uid[:10]}},
        "spec": {"nodeName": f"node-{rnd.randrange(200)}", "containers": [{"name": "app", "image": f"registry.example.com/web:{rnd.randrange(1000)}",
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}, "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}",
                   "startTime": f"2024-{rnd.randrange(1,13):02d}-{rnd.randrange(1,29):02d}T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z"},
    }, separators=(",", ":")) + "\n"


def value(rnd):
    rand_half = base64.encodebytes(os.urandom(VAL // 2 * 3 // 4)).decode()[: VAL // 2]
    parts, n = [], 0
    while n < VAL - len(rand_half):
        s = obj(rnd)
        parts.append(s)
        n += len(s)
    return (rand_half + "".join(parts))[:VAL]


def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def check(resp, what):
    body = resp.read()
    if resp.status >= 300:
        sys.exit(f"fill.py: {what}: HTTP {resp.status}: {body[:200]!r}")


def main():
    count, v3, v2 = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rnd = random.Random(count)
    c3 = conn(v3) if v3 != "-" else None
    c2 = conn(v2) if v2 != "-" else None
    for k in range(count):
        key = f"/bench/{k:06d}"
        val = value(rnd)
        if c3:
            body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                               "value": base64.b64encode(val.encode()).decode()})
            c3.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
            check(c3.getresponse(), f"v3 put {key}")
        if c2:
            body = urllib.parse.urlencode({"value": val})
            c2.request("PUT", "/v2/keys" + key, body, {"Content-Type": "application/x-www-form-urlencoded"})
            check(c2.getresponse(), f"v2 put {key}")
        print(key, hashlib.sha256(val.encode()).hexdigest())


if __name__ == "__main__":
    main()

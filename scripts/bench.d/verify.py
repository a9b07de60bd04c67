#!/usr/bin/env python3
"""verify.py v2|v3 HASHES URL... (or check() from recover.py): every key of HASHES, read from every member
(serializable/local reads: each member's own copy), must hold a value with
the recorded sha256, and /bench/ must hold no other key. Exit 1 naming the
first difference."""
import base64, hashlib, http.client, json, sys, urllib.parse


def check(api, hashes, urls):
    """None if every member holds exactly the keys of HASHES, else what differs."""
    with open(hashes) as f:
        want = dict(l.split() for l in f if l.strip())
    for url in urls:
        u = urllib.parse.urlparse(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        for key, h in want.items():
            if api == "v3":
                body = json.dumps({"key": base64.b64encode(key.encode()).decode(), "serializable": True})
                c.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
                r = c.getresponse(); data = r.read()
                kvs = json.loads(data).get("kvs", []) if r.status == 200 else []
                val = base64.b64decode(kvs[0]["value"]) if kvs else None
            else:
                c.request("GET", "/v2/keys" + key + "?quorum=false")
                r = c.getresponse(); data = r.read()
                val = json.loads(data)["node"]["value"].encode() if r.status == 200 else None
            if val is None or hashlib.sha256(val).hexdigest() != h:
                return f"verify: {url}: {key} is {'missing' if val is None else 'different'}"
        # no extra keys
        if api == "v3":
            body = json.dumps({"key": base64.b64encode(b"/bench/").decode(),
                               "range_end": base64.b64encode(b"/bench0").decode(),
                               "count_only": True, "serializable": True})
            c.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
            n = int(json.loads(c.getresponse().read()).get("count", 0))
        else:
            c.request("GET", "/v2/keys/bench?quorum=false")
            n = len(json.loads(c.getresponse().read())["node"].get("nodes", []))
        if n != len(want):
            return f"verify: {url}: {n} keys under /bench/, expected {len(want)}"
    return None


def main():
    api, hashes, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
    err = check(api, hashes, urls)
    if err:
        sys.exit(err)
    with open(hashes) as f:
        n = sum(1 for l in f if l.strip())
    print(f"verify: {n} keys correct on {len(urls)} member(s)")


if __name__ == "__main__":
    main()

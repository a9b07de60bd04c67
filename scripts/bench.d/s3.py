#!/usr/bin/env python3
"""The bench's S3 bucket on moto_server, through boto3 (run by the venv's
python, build/venv/bin/python, which moto[server] brings boto3 into):

  s3.py URL create BUCKET   make BUCKET, versioned (moto refuses a streamed
                            multipart upload in an unversioned bucket: it
                            answers with version id "null", then rejects
                            rclone's HEAD of ?versionId=null)
  s3.py URL uploads BUCKET SEEN.json
                            print {key: bytes} of every object version not
                            listed in SEEN.json (what the run just measured
                            uploaded or copied: every PUT, completed multipart
                            upload and server-side copy makes one version),
                            then delete every noncurrent version (and every
                            object whose newest version is a delete marker),
                            so the bucket holds what rclone sees and the
                            server's disk does not grow with the repetitions;
                            SEEN.json is rewritten with the versions kept.

Any key pair works with moto. Outside the measured time: scripts/bench runs
it between contenders.
"""
import json
import os
import sys

import boto3


def client(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="AKIDBENCH", aws_secret_access_key="BENCHSECRET")


def versions(s, bucket):
    vs, dms = [], []
    for page in s.get_paginator("list_object_versions").paginate(Bucket=bucket):
        vs += page.get("Versions", [])
        dms += page.get("DeleteMarkers", [])
    return vs, dms


def main():
    url, op, bucket = sys.argv[1:4]
    s = client(url)
    if op == "create":
        s.create_bucket(Bucket=bucket)
        s.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return
    if op != "uploads":
        sys.exit(f"s3.py: unknown operation {op}")
    seen_f = sys.argv[4]
    seen = set()
    if os.path.exists(seen_f):
        with open(seen_f) as f:
            seen = set(json.load(f))
    vs, dms = versions(s, bucket)
    new = {}
    for v in vs:
        if v["VersionId"] not in seen:
            new[v["Key"]] = new.get(v["Key"], 0) + v["Size"]
    gone = {d["Key"] for d in dms if d["IsLatest"]}
    doomed = [(v["Key"], v["VersionId"]) for v in vs + dms if v["Key"] in gone or not v["IsLatest"]]
    for i in range(0, len(doomed), 1000):
        s.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
            {"Key": k, "VersionId": vid} for k, vid in doomed[i:i + 1000]]})
    kept = [v["VersionId"] for v in vs if v["IsLatest"] and v["Key"] not in gone]
    with open(seen_f, "w") as f:
        json.dump(kept, f)
    print(json.dumps(new))


if __name__ == "__main__":
    main()

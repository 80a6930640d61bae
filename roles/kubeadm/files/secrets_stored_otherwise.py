"""Prints the etcd key of each Secret that etcd does not store under the prefix given as the
only argument (k8s:enc:PROVIDER:v1:KEY:, how the API server marks a value it encrypted with KEY);
with an empty prefix, of each Secret that is encrypted. Runs on an etcd member with etcdctl's
environment set; no value leaves the member."""

import base64
import json
import subprocess
import sys

ENCRYPTED = b"k8s:enc:"

prefix = sys.argv[1].encode()
listing = subprocess.run(["etcdctl", "get", "--prefix", "/registry/secrets/", "--write-out", "json"],
                         check=True, capture_output=True).stdout
for stored in json.loads(listing).get("kvs", []):
    value = base64.b64decode(stored["value"])
    if (not value.startswith(prefix)) if prefix else value.startswith(ENCRYPTED):
        print(base64.b64decode(stored["key"]).decode())

"""Secrets encryption at rest on single-master's shared `site` lab, whose topology turns it on
(issue 13 §8): a Secret is stored in etcd encrypted with the cluster's key (read back raw with
etcdctl on the etcd member), `kubestrata rotate-secrets-key` rotates to a new key (added,
encrypting, every Secret rewritten, the old key retired, one API server restart per step) and
verifies every layer, the Secret is then stored under the new key's name and still reads back, and
the rotation run again changes nothing. The test leaves the cluster as it found it: encrypting
with one key (a new one), without its Secret."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.harness import VENV_BIN, needs_root

pytestmark = [pytest.mark.lab, needs_root]

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
SECRET = "encryption-check"


def keys_never_logged(keys: list[str], output: str, run_dirs: list[Path]) -> bool:
    """No key in the output, nor in any file of the runs (ansible-runner's events and output)."""
    files = [f for d in run_dirs for f in d.rglob("*") if f.is_file()]
    return not [key for key in keys if key in output
                or any(key.encode() in f.read_bytes() for f in files)]


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_a_secret_stays_encrypted_and_readable_through_a_key_rotation(site):
    cp = site.topology.with_role("control_plane")[0].name
    member = site.topology.with_role("etcd")[0].name
    keys_file = site.work / "pki" / "secrets-encryption.yaml"

    def kubectl(args: str) -> str:
        return site.ssh(cp, f"{KUBECTL} {args}").strip()

    def stored() -> str:
        """How etcd holds the Secret: the start of its raw value (the API server's prefix)."""
        return site.etcdctl(member, f"get /registry/secrets/default/{SECRET} --print-value-only "
                                    "| head --bytes 80 | tr -c '[:print:]' .")

    assert keys_file.stat().st_mode & 0o777 == 0o600
    before = yaml.safe_load(keys_file.read_text())
    old = before["write"]
    assert [key["name"] for key in before["keys"]] == [old]
    kubectl(f"create secret generic {SECRET} --namespace default --from-literal=word=sesame")
    try:
        assert stored().startswith(f"k8s:enc:secretbox:v1:{old}:"), stored()

        new = time.strftime("key-test-%Y%m%dT%H%M%SZ", time.gmtime())
        started = time.monotonic()
        rotation = subprocess.run(
            [str(VENV_BIN / "kubestrata"), "rotate-secrets-key", str(site.topology.source),
             "--key", new, "-e", f"@{site.variables_file()}"],
            capture_output=True, text=True, timeout=900, cwd=site.work)
        print(f"rotation and verify: {time.monotonic() - started:.0f} s")
        print(rotation.stdout)
        assert rotation.returncode == 0, rotation.stdout + rotation.stderr
        assert "Secrets encryption" in rotation.stdout
        assert ": kubernetes verified" in rotation.stdout, "the rotation verifies the Kubernetes layer"

        assert stored().startswith(f"k8s:enc:secretbox:v1:{new}:"), stored()
        assert kubectl(f"get secret {SECRET} --namespace default "
                       "--output jsonpath='{.data.word}' | base64 --decode") == "sesame"
        after = yaml.safe_load(keys_file.read_text())
        assert (after["write"], [key["name"] for key in after["keys"]]) == (new, [new])
        assert old in [key["name"] for key in after["retired"]]
        run_dir = Path(re.search(r"JUnit XML: (\S+)/verify-junit.xml", rotation.stdout).group(1))
        assert keys_never_logged([key["secret"] for key in after["keys"] + after["retired"]],
                                 rotation.stdout + rotation.stderr, [run_dir, site.work / "runs"])

        started = time.monotonic()
        again = site.play("secrets-key-rotate.yml", kubeadm_secrets_encryption_key=new)
        print(f"rotation run again: {time.monotonic() - started:.0f} s")
        assert again.ok, again.failures
        assert again.changes == 0, [task for play in again.layers for task in play.changed_tasks]
    finally:
        site.ssh(cp, f"{KUBECTL} delete secret {SECRET} --namespace default --ignore-not-found",
                 check=False)

"""The offline install source's refusals, on the shared all-in-one lab of tests/conftest.py
(fixture `site`) after site.yml installed Kubernetes from the bundle the lab serves: a bundle
whose index is not the one pinned, an etcd too old for the Kubernetes version, and a missing
signing key each stop the layer in its preflight with a message naming the problem, having
changed nothing on the node."""

from __future__ import annotations

import hashlib

import pytest

from kubestrata.lab.lab import BUNDLE_PORT
from tests.harness import needs_root
from tests.kubernetes.conftest import node_state, on_all_in_one_site

pytestmark = [pytest.mark.lab, needs_root, on_all_in_one_site]


def refused(site, task: str, **extravars) -> str:
    """Run the layer with extravars; it fails at task on every node, changing nothing. Its
    message."""
    before = node_state(site)
    result = site.play("kubernetes.yml", **extravars)
    assert not result.ok
    assert [f.task for f in result.failures] == [task], result.failures
    assert result.changes == 0
    assert node_state(site) == before
    return result.failures[0].message


def served_index_sha256(site) -> str:
    """The sha256 of the bundle.json the lab serves, fetched from the node."""
    url = f"http://{site.topology.gateway}:{BUNDLE_PORT}/{site.lab.bundle.name}/bundle.json"
    return site.ssh(site.topology.nodes[0].name,
                    f"python3 -c 'import hashlib, urllib.request; print(hashlib.sha256("
                    f"urllib.request.urlopen(\"{url}\").read()).hexdigest())'").strip()


def test_a_bundle_other_than_the_pinned_one_is_refused(site):
    served = served_index_sha256(site)
    pinned = hashlib.sha256(b"another bundle").hexdigest()

    message = refused(site, "Refuse a bundle whose index is not the one pinned",
                      kube_offline_bundle_sha256=pinned)

    assert f"has sha256 {served}, not {pinned} (kube_offline_bundle_sha256)" in message
    assert "Nothing was changed" in message


def test_an_etcd_too_old_for_the_kubernetes_version_is_refused(site):
    message = refused(site, "Refuse an etcd too old for the Kubernetes version",
                      etcd_version="3.4.23")

    assert message.startswith("etcd 3.4.23 is older than Kubernetes needs"), message
    assert "Nothing of the Kubernetes layer was changed" in message


def test_an_offline_source_without_its_signing_key_is_refused(site):
    message = refused(site, "Refuse an offline source without its signing key",
                      kube_offline_signing_key="")

    assert message.startswith('kube_offline_signing_key is "":'), message
    assert "signing-key.asc" in message and "Nothing was changed" in message

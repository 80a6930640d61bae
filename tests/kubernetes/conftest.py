"""Helpers of the Kubernetes layer's tests: running its roles against an inventory rendered
from a topology on this machine (ansible_connection=local: the variables of a real run, no node
touched), and a one-node lab serving a test offline bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubestrata import inventory, topology
from kubestrata.lab import network
from kubestrata.paths import PLAYBOOK_DIR, PROJECT_ROOT
from tests.harness import lab_cluster, renamed_topology
from tests.layers import offline_image

HERE = Path(__file__).parent
ROLES = PROJECT_ROOT / "roles"
BUNDLE_PORT = 3143


def write_bundle(directory):
    """A bundle as `kubestrata bundle` lays it out, holding one test image and no package."""
    image = directory / "images" / "busybox-test-image.tar"
    image.parent.mkdir(parents=True)
    shutil.copy(offline_image.tarball(), image)
    (directory / "Packages").write_text("")
    (directory / "bundle.json").write_text(json.dumps({
        "format": 1, "kubernetes_version": "1.31.4", "arch": "amd64", "packages": [],
        "images": [{"name": offline_image.TEST_IMAGE, "file": "images/busybox-test-image.tar",
                    "sha256": hashlib.sha256(image.read_bytes()).hexdigest()}],
        "manifests": []}))


@pytest.fixture(scope="package")
def one_node_lab(tmp_path_factory):
    """A one-node lab (all-in-one) as a tests.harness.Cluster; its bundle_url serves a test
    offline bundle inside the lab."""
    work = tmp_path_factory.mktemp("k8s-one-node")
    with lab_cluster(renamed_topology("all-in-one", work, "k8s"), work) as cluster:
        bundle = work / "bundle"
        write_bundle(bundle)
        gateway = str(cluster.topology.gateway)
        server = subprocess.Popen(["ip", "netns", "exec", network.lab_namespace(cluster.lab.name),
                                   sys.executable, "-m", "http.server", str(BUNDLE_PORT),
                                   "--bind", gateway, "--directory", str(bundle)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cluster.bundle_url = f"http://{gateway}:{BUNDLE_PORT}/"
        try:
            yield cluster
        finally:
            server.terminate()
            server.wait(timeout=10)


def local_inventory(name: str, directory: Path, overrides: dict | None = None) -> Path:
    """The inventory of a topology, with every host reached as this machine."""
    rendered = inventory.render(topology.load(name, overrides),
                                common={"ansible_connection": "local",
                                        "ansible_python_interpreter": sys.executable})
    return inventory.write(rendered, directory / "hosts.yml")


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def plays(playbook_name: str) -> list[dict]:
    return yaml.safe_load((PLAYBOOK_DIR / playbook_name).read_text())

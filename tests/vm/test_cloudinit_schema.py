"""Every seed the program renders passes cloud-init's own schema validator (Debian trixie's)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubestrata import cloudinit, hostkeys, topology

ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin"


@pytest.mark.parametrize("name", topology.NAMES)
def test_every_seed_passes_cloud_init_schema(name, cloud_init_schema, tmp_path):
    topo = topology.load(name)
    keys = hostkeys.ensure(tmp_path / "keys", [n.name for n in topo.nodes])
    files = []
    for node in topo.nodes:
        seed = cloudinit.render(topo, node, "kubestrata", ADMIN_KEY, keys[node.name])
        for kind, text in (("cloud-config", seed.user_data),
                           ("network-config", seed.network_config)):
            path = tmp_path / f"{node.name}.{kind}.yaml"
            path.write_text(text)
            files.append((kind, path))
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        results = pool.map(lambda file: (file, cloud_init_schema(*file)), files)
        for (kind, path), result in results:
            assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"
            assert "Valid schema" in result.stdout


@pytest.mark.parametrize("kind, text, error", [
    ("cloud-config", "#cloud-config\nhostname: a\nssh_pwauht: false\n", "ssh_pwauht"),
    ("cloud-config", "#cloud-config\nusers:\n  - name: a\n    lock_passwd: 'no'\n", "lock_passwd"),
    ("network-config", "version: 2\nethernets:\n  eth0:\n    addresses: 10.0.0.2/24\n",
     "addresses"),
], ids=["misspelt-key", "quoted-boolean", "address-not-a-list"])
def test_the_validator_rejects_mistakes(kind, text, error, cloud_init_schema, tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text(text)
    result = cloud_init_schema(kind, path)
    assert result.returncode != 0 and error in result.stdout + result.stderr

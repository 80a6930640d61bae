"""`upgrade.yml --tags upgrade` runs the etcd upgrade too (etcd's plays carry tag etcd; the
import gives them tag upgrade as well): ansible-playbook --list-tasks shows them."""

from kubestrata import inventory, topology
from kubestrata.paths import PLAYBOOK_DIR
from tests.harness import ansible_playbook


def test_tags_upgrade_keeps_the_etcd_upgrade(tmp_path):
    hosts = inventory.write(inventory.render(topology.load("ha-external-etcd", {})),
                            tmp_path / "hosts.yml")
    listed = ansible_playbook(PLAYBOOK_DIR / "upgrade.yml", hosts, None,
                              "--list-tasks", "--tags", "upgrade")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    etcd_tasks = [line for line in listed.stdout.splitlines()
                  if line.strip().startswith("etcd : ") and "upgrade" in line.split("TAGS:")[-1]]
    assert len(etcd_tasks) > 10, listed.stdout

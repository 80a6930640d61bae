"""`kubestrata replace NAME NODE`: what it refuses before anything changes, what it does with the
node it replaces (drain or not, which nodes it acts from, where site.yml runs) and the order of
its phases, against inventories rendered from the topologies and a probe's findings."""

import json

import pytest

from kubestrata import inventory, orchestrate, playbook, replace, topology, verify
from kubestrata.cli import main
from kubestrata.paths import PLAYBOOK_DIR


def groups_of(name: str, **overrides) -> dict[str, list[str]]:
    rendered = inventory.render(topology.load(name, overrides))
    return {group: list((members.get("hosts") or {}))
            for group, members in rendered["all"]["children"].items()}


def health(answering=(), etcd_members=(), etcd_healthy=(), api_ready=()) -> replace.Health:
    return replace.Health(frozenset(answering), frozenset(etcd_members), frozenset(etcd_healthy),
                          frozenset(api_ready))


HA = groups_of("ha-external-etcd")
HA_ALIVE = {"etcd-2", "etcd-3", "cp-1", "cp-2", "cp-3", "worker-1", "worker-2"}
ALL_READY = health(answering=HA_ALIVE, etcd_members={"etcd-1", "etcd-2", "etcd-3"},
                   etcd_healthy={"etcd-2", "etcd-3"}, api_ready={"cp-1", "cp-2", "cp-3"})


# ---- refusals ------------------------------------------------------------------------------

def test_a_node_not_in_the_inventory_is_refused():
    with pytest.raises(replace.Refused, match=r"cp-4 is not in the inventory; .*kubestrata up"):
        replace.plan(HA, "cp-4", ALL_READY)


def test_the_only_control_plane_is_refused():
    groups = groups_of("single-master")
    found = health(answering={"worker-1", "worker-2"}, etcd_members={"cp-1"})
    with pytest.raises(replace.Refused, match=r"cp-1 is the only control plane"):
        replace.plan(groups, "cp-1", found)


def test_a_control_plane_is_refused_when_no_other_one_reaches_a_ready_api():
    found = health(answering={"cp-2", "etcd-1", "etcd-2", "etcd-3"},
                   etcd_members={"etcd-1", "etcd-2", "etcd-3"},
                   etcd_healthy={"etcd-1", "etcd-2", "etcd-3"}, api_ready=set())
    with pytest.raises(replace.Refused, match=r"no other control plane reaches a ready API "
                                              r"\(cp-2: API not ready; cp-3: no SSH\)"):
        replace.plan(HA, "cp-1", found)


def test_a_worker_needs_a_control_plane_to_take_it_out():
    found = health(answering={"worker-2"}, api_ready=set())
    with pytest.raises(replace.Refused, match="no other control plane reaches a ready API"):
        replace.plan(HA, "worker-1", found)


def test_the_only_etcd_member_is_refused():
    groups = groups_of("multi-master")
    found = health(answering={"cp-1", "cp-2", "cp-3"}, etcd_members={"etcd-1"},
                   api_ready={"cp-1"})
    with pytest.raises(replace.Refused, match=r"etcd-1 is the only etcd member.*restore"):
        replace.plan(groups, "etcd-1", found)


def test_an_etcd_member_is_refused_when_the_healthy_rest_would_lose_the_quorum():
    found = health(answering=HA_ALIVE, etcd_members={"etcd-1", "etcd-2", "etcd-3"},
                   etcd_healthy={"etcd-3"}, api_ready={"cp-1"})
    with pytest.raises(replace.Refused, match=r"1 of the 2 other etcd members is healthy \(etcd-3\)"
                                              r" and etcd needs 2.*bring etcd-2 back first"):
        replace.plan(HA, "etcd-1", found)


def test_a_healthy_member_is_refused_while_another_one_is_down():
    found = health(answering=HA_ALIVE | {"etcd-1"}, etcd_members={"etcd-1", "etcd-2", "etcd-3"},
                   etcd_healthy={"etcd-1", "etcd-3"}, api_ready={"cp-1"})
    with pytest.raises(replace.Refused, match="bring etcd-2 back first"):
        replace.plan(HA, "etcd-3", found)


def test_an_etcd_member_is_refused_when_no_member_answers():
    found = replace.Health(frozenset(HA_ALIVE), None, frozenset(), frozenset({"cp-1"}))
    with pytest.raises(replace.Refused, match="no etcd member answers"):
        replace.plan(HA, "etcd-1", found)


# ---- what a replace does -------------------------------------------------------------------

def test_a_dead_etcd_member_is_removed_and_joined_through_the_healthy_ones():
    chosen = replace.plan(HA, "etcd-1", ALL_READY)
    assert not chosen.drain
    assert chosen.acting == {"kube_first_control_plane": "cp-1",
                             "remove_node_etcd_member": "etcd-2"}
    assert chosen.limit == ["etcd-1", "etcd-2", "etcd-3"]


def test_a_member_already_removed_counts_no_more():
    found = health(answering=HA_ALIVE, etcd_members={"etcd-2", "etcd-3"},
                   etcd_healthy={"etcd-2", "etcd-3"}, api_ready={"cp-1"})
    assert replace.plan(HA, "etcd-1", found).limit == ["etcd-1", "etcd-2", "etcd-3"]


def test_a_dead_first_control_plane_gives_its_place_to_a_ready_one():
    found = health(answering=HA_ALIVE - {"cp-1"}, etcd_members={"etcd-1", "etcd-2", "etcd-3"},
                   etcd_healthy={"etcd-1", "etcd-2", "etcd-3"}, api_ready={"cp-2", "cp-3"})
    chosen = replace.plan(HA, "cp-1", found)
    assert not chosen.drain
    assert chosen.acting == {"kube_first_control_plane": "cp-2"}
    # The lb layer checks that exactly one of the lb nodes (here the control planes) holds the
    # virtual IP: it runs on all of them.
    assert chosen.limit == ["cp-1", "cp-2", "cp-3"]


def test_a_worker_that_answers_is_drained_and_joins_through_the_first_ready_control_plane():
    found = health(answering=HA_ALIVE, api_ready={"cp-2", "cp-3"})
    chosen = replace.plan(HA, "worker-1", found)
    assert chosen.drain
    assert chosen.acting == {"kube_first_control_plane": "cp-2"}
    assert chosen.limit == ["cp-2", "worker-1"]


def test_etcd_lists_its_members_by_their_peer_addresses():
    listing = json.dumps({"header": {"member_id": 1}, "members": [
        {"ID": 11, "name": "etcd-1", "peerURLs": ["https://10.40.4.10:2380"]},
        {"ID": 12, "peerURLs": ["https://10.40.4.11:2380"]},       # added, not started yet
        {"ID": 13, "name": "stranger", "peerURLs": ["https://10.40.4.99:2380"]}]})
    addresses = {"etcd-1": "10.40.4.10", "etcd-2": "10.40.4.11", "etcd-3": "10.40.4.12"}
    assert replace.member_nodes(listing, addresses) == \
        {"etcd-1", "etcd-2", "https://10.40.4.99:2380"}


class FakeProvider:
    name = "fake"

    def __init__(self, directory, calls):
        self.directory, self.calls = directory, calls

    def create(self, log, retire=frozenset(), renew=frozenset()):
        self.calls.append(("create", sorted(retire), sorted(renew)))
        return ["etcd-1: booted"]

    def inventory_path(self):
        return self.directory / "hosts.yml"


def test_the_phases_remove_the_node_renew_its_machine_run_and_verify_the_layers(
        tmp_path, monkeypatch):
    calls = []

    plays = {layer: name for name, layer in playbook.play_layers(PLAYBOOK_DIR / "site.yml").items()}

    def run(path, inventory_path, *, extravars=None, limit=None, **options):
        calls.append((path.name, inventory_path.name, limit, extravars))
        ran = [playbook.Layer(plays[layer], 0.0, hosts={"etcd-1"}) for layer in ("prepare", "etcd")]
        return playbook.Result(True, tmp_path, ran + [playbook.Layer(plays["kubernetes"], 0.0)],
                               [], 1)

    def checks(inventory_path, layers, junit, nodes):
        calls.append(("verify", layers))
        return verify.Collector()
    monkeypatch.setattr(playbook, "run", run)
    monkeypatch.setattr(verify, "run", checks)
    provider = FakeProvider(tmp_path, calls)
    chosen = replace.plan(HA, "etcd-1", ALL_READY)
    phases = replace.phases(topology.load("ha-external-etcd"), provider, chosen,
                            out=lambda line: None, extravars={"kubestrata_pki_dir": "/pki"})
    assert [p.name for p in phases] == ["remove", "machines", "layers", "verify"]
    orchestrate.execute(phases, out=lambda line: None)
    acting = {"kubestrata_pki_dir": "/pki", "kube_first_control_plane": "cp-1",
              "remove_node_etcd_member": "etcd-2"}
    assert calls == [
        ("remove-node.yml", "hosts.yml", None,
         {**acting, "remove_node": "etcd-1", "remove_node_drain": False}),
        ("create", [], ["etcd-1"]),
        ("site.yml", "hosts.yml", "etcd-1,etcd-2,etcd-3", acting),
        ("verify", ["prepare", "etcd"])]     # the layers that ran, on every node
    assert (PLAYBOOK_DIR / "remove-node.yml").exists()


def test_a_node_in_neither_etcd_nor_kubernetes_has_nothing_to_leave(tmp_path):
    groups = {**HA, "lb": ["lb-1"]}
    chosen = replace.plan(groups, "lb-1", health(answering={"lb-1"}))
    assert chosen.limit == ["lb-1"]
    [remove] = [p for p in replace.phases(topology.load("ha-external-etcd"), FakeProvider(
        tmp_path, []), chosen, out=print) if p.name == "remove"]
    assert not remove.needed()


# ---- the command line ----------------------------------------------------------------------

def test_an_unknown_node_is_named_with_the_nodes_there_are(capsys):
    assert main(["replace", "single-master", "cp-9", "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("kubestrata: cp-9 is not a node of single-master; its nodes are "
                           "cp-1, worker-1, worker-2")


def test_without_an_inventory_there_is_nothing_to_replace(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("kubestrata.paths.INVENTORY_DIR", tmp_path)
    monkeypatch.setattr("kubestrata.lab.lab.INVENTORY_DIR", tmp_path)
    assert main(["replace", "single-master", "worker-1", "--yes"]) == 1
    assert "no lab inventory for single-master" in capsys.readouterr().err


@pytest.fixture
def lab_inventory(monkeypatch, tmp_path):
    """ha-external-etcd's lab inventory under tmp_path, its lock there too, and a probe that
    finds what the test sets."""
    monkeypatch.setattr("kubestrata.lab.lab.INVENTORY_DIR", tmp_path / "inventories")
    monkeypatch.setattr("kubestrata.lab.lab.STATE_DIR", tmp_path / "state")
    inventory.write(inventory.render(topology.load("ha-external-etcd")),
                    tmp_path / "inventories" / "lab" / "ha-external-etcd" / "hosts.yml")
    found = {}
    monkeypatch.setattr(replace, "probe", lambda path, node: found["health"])
    return found


def test_a_refusal_is_one_line_naming_the_fix_and_nothing_changes(lab_inventory, capsys):
    lab_inventory["health"] = health(answering=HA_ALIVE, etcd_members={"etcd-1", "etcd-2",
                                     "etcd-3"}, etcd_healthy={"etcd-3"}, api_ready={"cp-1"})
    assert main(["replace", "ha-external-etcd", "etcd-1", "--yes"]) == 1
    out, err = capsys.readouterr()
    assert "probe      etcd-1 does not answer SSH; etcd members healthy: etcd-3 of etcd-1, " \
           "etcd-2, etcd-3; API ready from cp-1" in out
    assert err.endswith("bring etcd-2 back first; nothing was changed\n")
    assert len(err.splitlines()) == 1 and "Traceback" not in out + err


def test_replace_asks_before_destroying_anything(lab_inventory, capsys, monkeypatch):
    lab_inventory["health"] = ALL_READY
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["replace", "ha-external-etcd", "etcd-1"]) == 1
    assert "replace takes etcd-1 out of the cluster and destroys its machine; confirm with " \
           "--yes" in capsys.readouterr().err


def test_a_protected_disk_on_libvirt_is_refused_before_anything_changes(capsys):
    assert main(["replace", "ha-external-etcd", "cp-1", "--provider", "libvirt",
                 "--set", "protect_disks=true", "--yes"]) == 1
    assert capsys.readouterr().err == (
        "kubestrata: protect_disks is on, so Pulumi will not replace the disk of cp-1; set it "
        "to false in the topology for the replace; nothing was changed\n")

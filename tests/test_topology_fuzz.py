"""Fuzzing the loader and the validator (hypothesis): whatever a topology file or a --set holds,
the answer is a topology or a TopologyError of one-line problems, never another exception.

Random YAML documents, random bytes, the built-in topologies with values replaced by random
ones (of any type, or strings shaped like addresses, CIDRs and versions), keys deleted and
added, and random --set assignments. Derandomized and without an example database, so every
run tries the same inputs."""

import copy
import ipaddress
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubestrata import cli, topology

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BUILT_IN = {name: yaml.safe_load(topology.resolve(name).read_text()) for name in topology.NAMES}

octets = st.integers(0, 300)
near = st.builds("10.40.{}.{}".format, st.integers(1, 4), st.integers(0, 255))  # the built-ins'
addresses = st.one_of(near, st.builds("{}.{}.{}.{}".format, octets, octets, octets, octets))
cidrs = st.builds("{}/{}".format, addresses, st.integers(0, 40))
networks = st.builds(lambda address, prefix: str(ipaddress.ip_network(f"{address}/{prefix}",
                                                                      strict=False)),
                     st.one_of(near, st.just("255.255.255.255"), st.ip_addresses(v=4).map(str)),
                     st.one_of(st.integers(0, 32), st.sampled_from([24, 28, 30, 31, 32])))
versions = st.builds("{}.{}.{}".format, *[st.integers(0, 40)] * 3)
field_like = st.one_of(addresses, cidrs, versions, st.sampled_from(
    ["etcd", "control_plane", "worker", "lb", "containerd", "cri-o", "bridge", "qemu:///system",
     "::1", "fe80::/64", "1.36.3", "0.0.0.0/0", "255.255.255.255/32"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 70000), st.integers(),
                    st.floats(), st.text(max_size=12), field_like)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
keys = st.one_of(st.sampled_from(["name", "count", "roles", "addresses", "port", "virtual_ip",
                                  "gateway", "cidr", "first_host", "libvirt_uri", "etcd"]),
                 st.text(max_size=8))
yaml_text = st.text(st.sampled_from("[]{}:-,&*!|>'\"#%@?\n\t abc019./_"), max_size=200)
# values under YAML's own tags, which PyYAML builds (and fails to build) in many ways
tagged_yaml = st.builds("name: {} {}\n".format, st.sampled_from(
    ["!!int", "!!float", "!!bool", "!!null", "!!str", "!!timestamp", "!!binary", "!!set", "!!omap",
     "!!pairs", "!!seq", "!!map", "!!merge", "!!value", ""]),
    st.text(st.sampled_from("0123456789-+:._ xobeEtTZinfa=<[]{}'"), max_size=30))

# Values a field takes, so that a mutation gets past the structural checks to the semantic ones
# (address plans, counts, ports), and values of the field's kind, which mostly do not.
FIELD_VALUES = {
    "count": st.integers(0, 6), "cpus": st.integers(1, 4), "memory_mib": st.integers(128, 8192),
    "disk_gib": st.integers(1, 40), "first_host": st.integers(2, 300),
    "node_prefix": st.integers(8, 28), "cidr": networks, "gateway": near, "virtual_ip": near,
    "port": st.one_of(st.integers(1, 65535), st.sampled_from([2379, 2380, 6443, 8443, 10250])),
    "addresses": st.lists(near, max_size=3),
    "roles": st.lists(st.sampled_from(["etcd", "control_plane", "worker", "lb"]), min_size=1,
                      max_size=4, unique=True),
    "runtime": st.sampled_from(["containerd", "cri-o"]), "cni": st.sampled_from(["bridge"]),
    **{component: versions for component in ("kubernetes", "etcd", "containerd", "runc")},
}
OF_KIND = {int: st.integers(-2, 70000), str: st.one_of(field_like, st.text(max_size=12)),
           list: st.lists(field_like, max_size=4)}


def value_for(key, value):
    """A value for the field key (now value): one it takes, one of its kind, or any."""
    return st.one_of(FIELD_VALUES.get(key, values), OF_KIND.get(type(value), values), values)


@pytest.fixture(scope="module")
def topology_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "topology.yaml"


def load_or_refuse(load, *args):
    """Call load; a refusal must be a TopologyError of non-empty one-line problems."""
    try:
        load(*args)
    except topology.TopologyError as error:
        assert error.problems
        assert all(len(problem.splitlines()) == 1 for problem in error.problems), error.problems


def place_in(draw, spec):
    """A container somewhere inside spec and a key (or index) of it, walked to at random."""
    container = spec
    while True:
        key = draw(st.sampled_from(list(container) if isinstance(container, dict)
                                   else range(len(container))))
        inner = container[key]
        if not (isinstance(inner, (dict, list)) and inner and draw(st.booleans())):
            return container, key
        container = inner


@st.composite
def mutated_topologies(draw):
    """A built-in topology with values replaced, keys deleted and keys or items added."""
    spec = copy.deepcopy(BUILT_IN[draw(st.sampled_from(topology.NAMES))])
    for _ in range(draw(st.integers(1, 4))):
        container, key = place_in(draw, spec)
        change = draw(st.sampled_from(["replace", "delete", "add"]))
        if change == "replace":
            container[key] = draw(value_for(key, container[key]))
        elif change == "delete":
            del container[key]
        elif isinstance(container, dict):
            new_key = draw(keys)
            container[new_key] = draw(value_for(new_key, container[key]))
        else:
            container.append(copy.deepcopy(container[key]) if draw(st.booleans())
                             else draw(values))
        if not spec:
            break
    return spec


@st.composite
def retuned_topologies(draw):
    """A built-in topology with fields set to values they take and groups copied: past the
    structural checks, into the address plan, counts, sizes, ports and versions."""
    spec = copy.deepcopy(BUILT_IN[draw(st.sampled_from(topology.NAMES))])
    for _ in range(draw(st.integers(1, 6))):
        container, key = place_in(draw, spec)
        if key in FIELD_VALUES:
            container[key] = draw(FIELD_VALUES[key])
        elif isinstance(container, list) and isinstance(container[key], dict):
            group = copy.deepcopy(container[key])
            group["name"] = draw(st.sampled_from(["extra", "lb", "more", "cp"]))
            container.append(group)
    return spec


@FUZZ
@given(st.one_of(mutated_topologies(), retuned_topologies()))
def test_mutated_builtin_topologies(topology_file, spec):
    topology_file.write_text(yaml.safe_dump(spec))
    load_or_refuse(topology.load, str(topology_file))


@FUZZ
@given(st.sampled_from(topology.NAMES), st.lists(
    st.builds("{}={}".format, st.lists(keys, min_size=1, max_size=3).map(".".join),
              st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
                        yaml_text)), max_size=3))
def test_random_set_assignments(name, assignments):
    load_or_refuse(cli._load, SimpleNamespace(topology=name, set=assignments))


@FUZZ
@given(st.one_of(yaml_text, tagged_yaml))
def test_random_yaml_text(topology_file, text):
    topology_file.write_text(text)
    load_or_refuse(topology.load, str(topology_file))


@FUZZ
@given(st.one_of(st.binary(max_size=200), values.map(
    lambda v: yaml.safe_dump(v, allow_unicode=True).encode())))
def test_random_bytes_and_documents(topology_file, data):
    topology_file.write_bytes(data)
    load_or_refuse(topology.load, str(topology_file))

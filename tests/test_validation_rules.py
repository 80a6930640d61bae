"""The topology's JSON Schema, and one refusal per validation rule: each rule of the schema and
of the semantic checks is needed by some test here or in test_validation.py (deleting any one of
them makes a test fail)."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from kubestrata import topology, validation

SCHEMA_FILE = Path(validation.__file__).with_name("topology.schema.json")
BUILT_IN = {name: yaml.safe_load(topology.resolve(name).read_text()) for name in topology.NAMES}
DELETE = object()


def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("name", topology.NAMES)
def test_the_built_in_topologies_validate_against_the_schema(name):
    # as an editor sees it (a JSON Schema validator of its own), and as kubestrata does
    editor = Draft202012Validator(json.loads(SCHEMA_FILE.read_text()),
                                  format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [error.message for error in editor.iter_errors(BUILT_IN[name])] == []
    assert validation.check(BUILT_IN[name]) == []


@pytest.mark.parametrize("name", topology.NAMES)
def test_each_built_in_topology_names_the_schema_for_editors(name):
    path = topology.resolve(name)
    first, _, _ = path.read_text().partition("\n")
    assert first == "# yaml-language-server: $schema=../src/kubestrata/topology.schema.json"
    assert (path.parent / first.partition("$schema=")[2]).resolve() == SCHEMA_FILE.resolve()


def _keywords(schema):
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            if key in ("properties", "$defs"):
                for inner in value.values():
                    yield from _keywords(inner)
            elif key == "items":
                yield from _keywords(value)


def test_every_constraint_of_the_schema_has_the_words_of_its_error_line():
    handled = {"type", "required", "additionalProperties", "properties", "items", "$ref"}
    annotations = {"$schema", "$defs", "$comment", "title", "description", "default"}
    constraints = {key for key in _keywords(validation.SCHEMA)
                   if key not in handled | annotations and not key.startswith("x-")}
    assert constraints and constraints <= set(validation.PROBLEMS)


def test_the_roles_of_the_schema_each_have_a_minimum_size_and_their_ports():
    roles = validation.SCHEMA["properties"]["node_groups"]["items"]["properties"]["roles"]
    assert set(roles["items"]["enum"]) == set(validation.MINIMUM_SIZE) == set(validation.ROLE_PORTS)


def edited(base: str, edits: dict) -> dict:
    """A built-in topology with fields (dotted paths, list indexes as numbers) set or deleted."""
    spec = copy.deepcopy(BUILT_IN[base])
    for path, value in edits.items():
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        container = spec
        for part in parents:
            container = container[part]
        if value is DELETE:
            del container[last]
        else:
            container[last] = value
    return spec


def refusal(tmp_path, text: str) -> list[str]:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    with pytest.raises(topology.TopologyError) as error:
        topology.load(str(path))
    return error.value.problems


MISSING = "missing; add it (see topologies/*.yaml)"
# (base topology, fields set or deleted, a line of the refusal)
REFUSED = [
    # the schema: keys a topology must have ...
    *[("single-master", {key: DELETE}, f"{key}: {MISSING}")
      for key in ("name", "network", "pods", "services", "runtime", "cni", "versions",
                  "node_groups")],
    *[("single-master", {f"network.{key}": DELETE}, f"network.{key}: {MISSING}")
      for key in ("cidr", "first_host", "domain")],
    ("single-master", {"pods.cidr": DELETE}, f"pods.cidr: {MISSING}"),
    ("single-master", {"pods.node_prefix": DELETE}, f"pods.node_prefix: {MISSING}"),
    ("single-master", {"services.cidr": DELETE}, f"services.cidr: {MISSING}"),
    *[("single-master", {f"versions.{key}": DELETE}, f"versions.{key}: {MISSING}")
      for key in ("kubernetes", "etcd", "containerd", "runc", "cni_plugins")],
    *[("single-master", {f"node_groups.1.{key}": DELETE}, f"node_groups[1].{key}: {MISSING}")
      for key in ("name", "roles", "count", "cpus", "memory_mib", "disk_gib")],
    # ... no other keys ...
    ("single-master", {"network.cdir": "10.40.2.0/24"}, "network.cdir: unknown key; known keys "
     "here are cidr, gateway, first_host, domain (check the spelling)"),
    ("single-master", {"pods.prefix": 24}, "pods.prefix: unknown key; known keys here are cidr, "
     "node_prefix (check the spelling)"),
    ("single-master", {"services.range": "10.96.0.0/12"}, "services.range: unknown key; known "
     "keys here are cidr (check the spelling)"),
    ("single-master", {"api.vip": "10.40.2.5"}, "api.vip: unknown key; known keys here are "
     "virtual_ip, port (check the spelling)"),
    ("single-master", {"versions.crio": "1.36.0"}, "versions.crio: unknown key; known keys here "
     "are kubernetes, etcd, containerd, runc, cni_plugins (check the spelling)"),
    ("single-master", {"security.encryption": True}, "security.encryption: unknown key; known "
     "keys here are secrets_encryption, audit_log, audit_log_max_age_days, audit_log_max_backups, "
     "audit_log_max_size_mib (check the spelling)"),
    # ... of their types ...
    ("single-master", {"name": 5}, "name: must be a string, got int 5"),
    ("single-master", {"description": 5}, "description: must be a string, got int 5"),
    ("single-master", {"network": "10.40.2.0/24"}, "network: must be a mapping of cidr, gateway, "
     "first_host, domain, got str '10.40.2.0/24'"),
    ("single-master", {"network.cidr": 24}, "network.cidr: must be a string, got int 24"),
    ("single-master", {"network.gateway": 1}, "network.gateway: must be a string, got int 1"),
    ("single-master", {"network.first_host": "10"}, "network.first_host: must be a whole "
     "number, got str '10' (remove the quotes)"),
    ("single-master", {"network.domain": 5}, "network.domain: must be a string, got int 5"),
    ("single-master", {"pods": []}, "pods: must be a mapping of cidr, node_prefix, got list []"),
    ("single-master", {"pods.cidr": 16}, "pods.cidr: must be a string, got int 16"),
    ("single-master", {"pods.node_prefix": "24"}, "pods.node_prefix: must be a whole number, "
     "got str '24' (remove the quotes)"),
    ("single-master", {"services": "10.96.0.0/12"}, "services: must be a mapping of cidr, got "
     "str '10.96.0.0/12'"),
    ("single-master", {"services.cidr": 12}, "services.cidr: must be a string, got int 12"),
    ("single-master", {"api": 6443}, "api: must be a mapping of virtual_ip, port, got int 6443"),
    ("multi-master", {"api.virtual_ip": 5}, "api.virtual_ip: must be a string, got int 5"),
    ("single-master", {"api.port": "6443"}, "api.port: must be a whole number, got str '6443' "
     "(remove the quotes)"),
    ("single-master", {"runtime": 5}, "runtime: must be a string, got int 5"),
    ("single-master", {"cni": 5}, "cni: must be a string, got int 5"),
    ("single-master", {"versions": "1.36.3"}, "versions: must be a mapping of kubernetes, etcd, "
     "containerd, runc, cni_plugins, got str '1.36.3'"),
    *[("single-master", {f"versions.{key}": 1.5}, f"versions.{key}: must be a string, got "
       "float 1.5") for key in ("kubernetes", "etcd", "containerd", "runc", "cni_plugins")],
    ("single-master", {"security": True}, "security: must be a mapping of secrets_encryption, "
     "audit_log, audit_log_max_age_days, audit_log_max_backups, audit_log_max_size_mib, got bool "
     "True"),
    ("single-master", {"security.secrets_encryption": "true"}, "security.secrets_encryption: "
     "must be true or false, got str 'true' (remove the quotes)"),
    ("single-master", {"security.audit_log": 1}, "security.audit_log: must be true or false, got "
     "int 1"),
    *[("single-master", {f"security.{key}": "30"}, f"security.{key}: must be a whole number, got "
       "str '30' (remove the quotes)")
      for key in ("audit_log_max_age_days", "audit_log_max_backups", "audit_log_max_size_mib")],
    ("single-master", {"protect_disks": "true"}, "protect_disks: must be true or false, got "
     "str 'true' (remove the quotes)"),
    ("single-master", {"node_groups.1": "worker"}, "node_groups[1]: must be a mapping of name, "
     "roles, count, cpus, memory_mib, disk_gib, addresses, libvirt_uri, got str 'worker'"),
    ("single-master", {"node_groups.1.name": 7}, "node_groups[1].name: must be a string, got int 7"),
    ("single-master", {"node_groups.1.roles": "worker"}, "node_groups[1].roles: must be a list, "
     "got str 'worker'"),
    ("single-master", {"node_groups.1.roles": [1]}, "node_groups[1].roles[0]: must be a string, "
     "got int 1"),
    ("single-master", {"node_groups.1.count": 2.0}, "node_groups[1].count: must be a whole "
     "number, got float 2.0"),
    ("single-master", {"node_groups.1.cpus": "2"}, "node_groups[1].cpus: must be a whole number, "
     "got str '2' (remove the quotes)"),
    ("single-master", {"node_groups.1.memory_mib": "2048"}, "node_groups[1].memory_mib: must be "
     "a whole number, got str '2048' (remove the quotes)"),
    ("single-master", {"node_groups.1.disk_gib": "20"}, "node_groups[1].disk_gib: must be a "
     "whole number, got str '20' (remove the quotes)"),
    ("single-master", {"node_groups.1.addresses": "10.40.2.50"}, "node_groups[1].addresses: "
     "must be a list, got str '10.40.2.50'"),
    ("single-master", {"node_groups.1.addresses": [50]}, "node_groups[1].addresses[0]: must be "
     "a string, got int 50"),
    ("single-master", {"node_groups.1.libvirt_uri": 1}, "node_groups[1].libvirt_uri: must be a "
     "string, got int 1"),
    # ... their ranges ...
    ("single-master", {"network.first_host": 1}, "network.first_host: must be between 2 and "
     "65534, got 1"),
    ("single-master", {"network.first_host": 65535}, "network.first_host: must be between 2 and "
     "65534, got 65535"),
    ("single-master", {"pods.node_prefix": 7}, "pods.node_prefix: must be between 8 and 28, got 7"),
    ("single-master", {"pods.node_prefix": 29}, "pods.node_prefix: must be between 8 and 28, "
     "got 29"),
    ("single-master", {"api.port": 0}, "api.port: must be between 1 and 65535, got 0"),
    ("single-master", {"api.port": 65536}, "api.port: must be between 1 and 65535, got 65536"),
    ("single-master", {"node_groups.1.count": -1}, "node_groups[1].count: must be between 0 and "
     "250, got -1"),
    ("single-master", {"node_groups.1.count": 251}, "node_groups[1].count: must be between 0 and "
     "250, got 251"),
    ("single-master", {"node_groups.1.cpus": 0}, "node_groups[1].cpus: must be between 1 and 512, "
     "got 0"),
    ("single-master", {"node_groups.1.cpus": 513}, "node_groups[1].cpus: must be between 1 and "
     "512, got 513"),
    ("single-master", {"node_groups.1.memory_mib": 127}, "node_groups[1].memory_mib: must be "
     "between 128 and 4194304, got 127"),
    ("single-master", {"node_groups.1.memory_mib": 4194305}, "node_groups[1].memory_mib: must be "
     "between 128 and 4194304, got 4194305"),
    ("single-master", {"node_groups.1.disk_gib": 0}, "node_groups[1].disk_gib: must be between 1 "
     "and 65536, got 0"),
    ("single-master", {"node_groups.1.disk_gib": 65537}, "node_groups[1].disk_gib: must be "
     "between 1 and 65536, got 65537"),
    *[("single-master", {f"security.{key}": value}, f"security.{key}: must be between {low} and "
       f"{high}, got {value}")
      for key, low, high in (("audit_log_max_age_days", 1, 3650), ("audit_log_max_backups", 1, 1000),
                             ("audit_log_max_size_mib", 1, 102400))
      for value in (low - 1, high + 1)],
    # ... and formats
    ("single-master", {"node_groups.1.name": "Worker"}, "node_groups[1].name: 'Worker' is "
     "malformed; write it like my-cluster or worker (lowercase letters, digits and dashes, "
     "starting with a letter)"),
    ("single-master", {"network.gateway": "10.40.2.256"}, "network.gateway: '10.40.2.256' is "
     "malformed; write an IPv4 address, e.g. 10.40.1.5"),
    ("multi-master", {"api.virtual_ip": "10.40.3.256"}, "api.virtual_ip: '10.40.3.256' is "
     "malformed; write an IPv4 address, e.g. 10.40.1.5"),
    ("single-master", {"network.domain": "Kubestrata_internal"}, "network.domain: "
     "'Kubestrata_internal' is malformed; write it like kubestrata.internal"),
    ("single-master", {"pods.cidr": "10.244.0.1/16"}, "pods.cidr: '10.244.0.1/16' is malformed; "
     "write an IPv4 network in CIDR form with host bits zero, e.g. 10.40.1.0/24"),
    ("single-master", {"services.cidr": "fd00::/108"}, "services.cidr: 'fd00::/108' is "
     "malformed; write an IPv4 network in CIDR form with host bits zero, e.g. 10.40.1.0/24"),
    *[("single-master", {f"versions.{key}": "1.2"}, f"versions.{key}: '1.2' is malformed; write "
       "it like 1.36.3") for key in ("etcd", "containerd", "runc", "cni_plugins")],
    ("single-master", {"node_groups.1.roles": []}, "node_groups[1].roles: is empty; give the group "
     "one or more roles, each once"),
    ("single-master", {"node_groups.1.roles": ["worker", "worker"]}, "node_groups[1].roles: lists "
     "an item twice; give the group one or more roles, each once"),
    ("single-master", {"node_groups.1.libvirt_uri": "host/system"}, "node_groups[1].libvirt_uri: "
     "'host/system' is malformed; write it like qemu+ssh://admin@host/system"),
    # the semantic checks
    ("single-master", {"node_groups.0.roles": ["etcd"]}, "node_groups: no node has the "
     "control_plane role; give one group roles: [control_plane]"),
    ("single-master", {"node_groups.1.roles": ["worker", "lb"]}, "api.virtual_ip: lb nodes are "
     "given but no virtual IP; set api.virtual_ip or drop the lb role"),
    ("single-master", {"node_groups.1.addresses": ["10.40.2.50", "10.40.2.51", "10.40.2.52"]},
     "node_groups[1].addresses: 3 addresses for 2 nodes; list at most count addresses"),
    ("single-master", {"network.gateway": "10.40.3.1"}, "network.gateway: 10.40.3.1 is not a host "
     "of 10.40.2.0/24; leave it out (the first host is used) or give one inside the network"),
    ("single-master", {"pods.node_prefix": 8}, "pods.node_prefix: /8 is wider than pods.cidr "
     "10.244.0.0/16; use a prefix of at least 16"),
    ("multi-master", {"api.virtual_ip": "10.40.3.1"}, "api.virtual_ip: 10.40.3.1 is the gateway "
     "address; choose a free address"),
    *[("single-master", {"security.audit_log": False, f"security.{key}": 5}, f"security.{key}: "
       "set, but security.audit_log is off; turn the audit log on (audit_log: true) or remove "
       "the setting")
      for key in ("audit_log_max_age_days", "audit_log_max_backups", "audit_log_max_size_mib")],
]


@pytest.mark.parametrize("base,edits,line", REFUSED, ids=[case[2][:70] for case in REFUSED])
def test_a_broken_rule_is_refused_in_a_line_naming_the_field_and_the_fix(base, edits, line,
                                                                          tmp_path):
    assert line in refusal(tmp_path, yaml.safe_dump(edited(base, edits)))


@pytest.mark.parametrize("base,edits", [
    ("single-master", {"description": None}),
    ("single-master", {"api": None}),
    ("single-master", {"api.port": None}),
    ("single-master", {"network.gateway": None}),
    ("single-master", {"node_groups.1.addresses": None}),
    ("single-master", {"node_groups.1.libvirt_uri": None}),
    ("single-master", {"security": None}),
    ("single-master", {"security.secrets_encryption": None}),
    ("single-master", {"security.audit_log_max_age_days": None}),
])
def test_an_optional_key_set_to_null_counts_as_left_out(base, edits, tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(edited(base, edits)))
    assert topology.load(str(path)).api_port == 6443


def test_a_wrong_type_is_the_one_line_of_its_field(tmp_path):
    assert refusal(tmp_path, yaml.safe_dump(edited("single-master", {"runtime": 5}))) == \
        ["runtime: must be a string, got int 5"]


def test_a_top_level_that_is_no_mapping_is_named():
    assert validation.check(["name"]) == [
        "topology: must be a mapping of name, description, network, pods, services, api, "
        "runtime, cni, versions, security, protect_disks, node_groups, got list ['name']"]


def test_values_that_refer_to_themselves_are_one_line(tmp_path):
    text = topology.resolve("single-master").read_text().replace(
        "roles: [worker]", "roles: [&a [*a], &b [*b]]")
    assert refusal(tmp_path, text) == [
        "topology: a value refers to itself too deeply to check; remove the YAML aliases "
        "(*name) inside what they refer to"]


def test_aliases_that_repeat_a_large_part_are_refused_before_they_are_expanded(tmp_path):
    # 10^5 values with the aliases expanded: an error line that printed them would be long;
    # one more level (10^6) and printing them takes a while, one more again and it hangs.
    laughs = "x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"x{level}: &x{level} [{', '.join([f'*x{level - 1}'] * 10)}]\n" for level in range(1, 5))
    text = topology.resolve("single-master").read_text() + laughs + "name: *x4\n"
    assert refusal(tmp_path, text) == [
        "topology: holds more than 10000 values once its YAML aliases (*name) are expanded; "
        "write it out without the aliases that repeat large parts"]

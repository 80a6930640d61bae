"""The kubeadm configuration of every node, rendered by the kubeadm role for each topology and
checked field by field against the topology, the runtime's fact and the etcd role's files; unknown
keys are refused too, and `kubeadm config validate` checks each control plane's configuration
when the cache holds the kubeadm the bundle was built with."""

from __future__ import annotations

import subprocess

import jinja2
import pytest
import yaml

from kubestrata import topology
from kubestrata.cachedir import entry_is_complete
from kubestrata.paths import CACHE_DIR
from tests.harness import ansible_playbook
from tests.kubernetes.conftest import HERE, local_inventory, role_defaults

KUBEADM = "kubeadm.k8s.io/v1beta4"
CONTAINERD = {"runtime": "containerd", "cri_socket": "unix:///run/containerd/containerd.sock",
              "cgroup_driver": "systemd"}
CRI_O = {"runtime": "cri-o", "cri_socket": "unix:///var/run/crio/crio.sock",
         "cgroup_driver": "cgroupfs"}
JOIN = {"token": "abcdef.0123456789abcdef", "ca_cert_hash": "sha256:" + "0" * 64,
        "certificate_key": "f" * 64}

# The fields of kubeadm v1beta4, kubelet v1beta1 and kube-proxy v1alpha1 this layer may write.
KNOWN_KEYS = {
    "InitConfiguration": {"apiVersion", "kind", "bootstrapTokens", "localAPIEndpoint",
                          "nodeRegistration"},
    "ClusterConfiguration": {"apiVersion", "kind", "clusterName", "kubernetesVersion",
                             "controlPlaneEndpoint", "networking", "etcd", "apiServer",
                             "controllerManager", "scheduler"},
    "JoinConfiguration": {"apiVersion", "kind", "discovery", "controlPlane", "nodeRegistration"},
    "KubeletConfiguration": {"apiVersion", "kind", "cgroupDriver"},
    "KubeProxyConfiguration": {"apiVersion", "kind", "mode", "clusterCIDR"},
    "nodeRegistration": {"name", "criSocket", "kubeletExtraArgs", "ignorePreflightErrors", "taints"},
    "localAPIEndpoint": {"advertiseAddress", "bindPort"},
    "networking": {"dnsDomain", "podSubnet", "serviceSubnet"},
    "etcd.external": {"endpoints", "caFile", "certFile", "keyFile"},
    "bootstrapToken": {"apiServerEndpoint", "token", "caCertHashes"},
    "apiServer": {"certSANs", "extraArgs", "extraVolumes"},
    "extraVolume": {"name", "hostPath", "mountPath", "readOnly", "pathType"},
}
# The controller's Secrets encryption keys of a cluster whose API servers encrypt (names only
# matter here).
KEYS = {"write": "key-2", "keys": [{"name": "key-1", "secret": "MQ=="}, {"name": "key-2", "secret": "Mg=="}],
        "retired": []}
KUBEADM_BINARY = next((d / "kubeadm" for d in sorted((CACHE_DIR / "gobuild").glob("kubernetes-v1.36.*"))
                if entry_is_complete(d)), None)


def etcd_role_file(name: str) -> str:
    """A file path as the layers' shared defaults name it (the etcd layer writes it)."""
    defaults = role_defaults("cluster_defaults")
    return jinja2.Template(defaults[name]).render(**defaults)


def render(name: str, tmp_path, runtime: dict, keys: dict | None = None,
           overrides: dict | None = None) -> dict[str, list[dict]]:
    """Each node's kubeadm configuration; keys: the controller's Secrets encryption keys."""
    inventory = local_inventory(name, tmp_path, overrides)
    t = topology.load(name, overrides)
    for node in t.nodes:
        (tmp_path / node.name).mkdir()
    (tmp_path / "pki").mkdir()
    if keys:
        (tmp_path / "pki" / "secrets-encryption.yaml").write_text(yaml.safe_dump(keys))
    result = ansible_playbook(HERE / "render.yml", inventory, {
        "kube_config_dir": str(tmp_path / "{{ inventory_hostname }}"),
        "ansible_local": {"kubestrata_runtime": runtime},
        "kubeadm_join": JOIN,
        "kubestrata_pki_dir": str(tmp_path / "pki"),
    })
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    rendered = {}
    for node in t.nodes:
        files = sorted((tmp_path / node.name).glob("kubeadm-*.yaml"))
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in files), "configs hold secrets: 0600"
        rendered[node.name] = [doc for f in files for doc in yaml.safe_load_all(f.read_text())]
    return rendered


def by_kind(documents: list[dict]) -> dict[str, dict]:
    kinds = [d["kind"] for d in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in documents}


def assert_known(kind: str, mapping: dict) -> None:
    unknown = set(mapping) - KNOWN_KEYS[kind]
    assert not unknown, f"{kind}: unknown fields {unknown}"


def assert_kubeadm_accepts(path) -> None:
    if KUBEADM_BINARY is None:
        return
    checked = subprocess.run([str(KUBEADM_BINARY), "config", "validate", "--config", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def assert_args(args: list) -> None:
    """v1beta4's extra arguments: a list of {name, value}, both strings."""
    assert isinstance(args, list)
    for arg in args:
        assert set(arg) == {"name", "value"} and all(isinstance(v, str) for v in arg.values()), arg


def assert_node_registration(registration: dict, node, runtime: dict, untainted: bool) -> None:
    assert_known("nodeRegistration", registration)
    assert registration["name"] == node.name
    assert registration["criSocket"] == runtime["cri_socket"]
    assert_args(registration["kubeletExtraArgs"])
    assert {"name": "node-ip", "value": str(node.address)} in registration["kubeletExtraArgs"]
    assert registration["ignorePreflightErrors"] == []
    if untainted:
        assert registration["taints"] == []      # all-in-one: the node runs workloads
    else:
        assert "taints" not in registration     # kubeadm's default: control planes tainted


@pytest.mark.parametrize("name", topology.NAMES)
def test_each_topology_gets_the_configuration_it_needs(name, tmp_path):
    t = topology.load(name)
    rendered = render(name, tmp_path, CONTAINERD)
    first = t.with_role("control_plane")[0]
    api_port = 6443 if t.is_ha else t.api_port
    endpoint = f"{t.virtual_ip}:{t.api_port}" if t.is_ha else f"{first.address}:{t.api_port}"

    kinds = by_kind(rendered[first.name])
    assert set(kinds) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                          "KubeProxyConfiguration"}
    for kind, document in kinds.items():
        assert_known(kind, document)

    init = kinds["InitConfiguration"]
    assert init["apiVersion"] == KUBEADM
    assert_known("localAPIEndpoint", init["localAPIEndpoint"])
    assert init["localAPIEndpoint"] == {"advertiseAddress": str(first.address), "bindPort": api_port}
    assert_node_registration(init["nodeRegistration"], first, CONTAINERD,
                             untainted=first.has("worker"))
    assert [set(token) for token in init["bootstrapTokens"]] == [{"ttl", "description"}]

    cluster = kinds["ClusterConfiguration"]
    assert cluster["apiVersion"] == KUBEADM
    assert cluster["clusterName"] == t.name
    assert cluster["kubernetesVersion"] == "v" + t.versions["kubernetes"]
    assert cluster["controlPlaneEndpoint"] == endpoint
    assert_known("networking", cluster["networking"])
    assert cluster["networking"] == {"podSubnet": str(t.pod_cidr),
                                     "serviceSubnet": str(t.service_cidr),
                                     "dnsDomain": "cluster.local"}
    assert list(cluster["etcd"]) == ["external"]            # external etcd in every topology
    etcd = cluster["etcd"]["external"]
    assert_known("etcd.external", etcd)
    assert etcd["endpoints"] == [f"https://{n.address}:2379" for n in t.with_role("etcd")]
    assert etcd["caFile"] == etcd_role_file("etcd_ca_file")
    assert etcd["certFile"] == etcd_role_file("etcd_apiserver_client_cert")
    assert etcd["keyFile"] == etcd_role_file("etcd_apiserver_client_key")
    sans = cluster["apiServer"]["certSANs"]
    for cp in t.with_role("control_plane"):
        assert {str(cp.address), cp.name, f"{cp.name}.{t.domain}"} <= set(sans)
    if t.is_ha:
        assert str(t.virtual_ip) in sans
    assert_known("apiServer", cluster["apiServer"])
    if not t.security.audit_log:                    # the encryption flag needs keys (below)
        assert set(cluster["apiServer"]) == {"certSANs"}
    assert_args(cluster["controllerManager"]["extraArgs"])
    assert {"name": "allocate-node-cidrs", "value": "false"} in cluster["controllerManager"]["extraArgs"]

    kubelet = kinds["KubeletConfiguration"]
    assert kubelet["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert kubelet["cgroupDriver"] == CONTAINERD["cgroup_driver"]
    proxy = kinds["KubeProxyConfiguration"]
    assert proxy["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1"
    assert proxy == {**proxy, "mode": "iptables", "clusterCIDR": str(t.pod_cidr)}

    for cp in t.with_role("control_plane"):
        control_plane = by_kind(rendered[cp.name])
        assert control_plane["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == str(cp.address)
        assert control_plane["ClusterConfiguration"] == cluster      # one cluster, one configuration
        assert_kubeadm_accepts(tmp_path / cp.name / "kubeadm-init.yaml")

    joining = [n for n in t.nodes if n.is_kubernetes_node and n is not first]
    for node in joining:
        join = by_kind(rendered[node.name])["JoinConfiguration"]
        assert_known("JoinConfiguration", join)
        assert join["apiVersion"] == KUBEADM
        token = join["discovery"]["bootstrapToken"]
        assert_known("bootstrapToken", token)
        assert token == {"apiServerEndpoint": endpoint, "token": JOIN["token"],
                         "caCertHashes": [JOIN["ca_cert_hash"]]}
        if node.has("control_plane"):
            assert join["controlPlane"] == {
                "localAPIEndpoint": {"advertiseAddress": str(node.address), "bindPort": api_port},
                "certificateKey": JOIN["certificate_key"]}
        else:
            assert "controlPlane" not in join
        assert_node_registration(join["nodeRegistration"], node, CONTAINERD,
                                 untainted=node.has("control_plane") and node.has("worker"))
    for node in t.nodes:
        if not node.is_kubernetes_node:
            assert rendered[node.name] == [], f"{node.name} is no Kubernetes node"


def test_the_kubelet_and_nodes_follow_the_runtime_fact(tmp_path):
    rendered = render("single-master", tmp_path, CRI_O)
    init = by_kind(rendered["cp-1"])
    assert init["KubeletConfiguration"]["cgroupDriver"] == "cgroupfs"
    assert init["InitConfiguration"]["nodeRegistration"]["criSocket"] == CRI_O["cri_socket"]
    join = by_kind(rendered["worker-1"])["JoinConfiguration"]
    assert join["nodeRegistration"]["criSocket"] == CRI_O["cri_socket"]


def test_the_api_server_reads_the_encryption_configuration_and_writes_the_audit_log(tmp_path):
    overrides = {"security": {"audit_log_max_backups": 3}}
    rendered = render("single-master", tmp_path, CONTAINERD, keys=KEYS, overrides=overrides)
    api_server = by_kind(rendered["cp-1"])["ClusterConfiguration"]["apiServer"]
    assert_args(api_server["extraArgs"])
    etc = tmp_path / "cp-1"           # the node's /etc/kubernetes in this rendering
    assert {a["name"]: a["value"] for a in api_server["extraArgs"]} == {
        "encryption-provider-config": f"{etc}/encryption/config.yaml",
        "audit-policy-file": f"{etc}/audit/policy.yaml",
        "audit-log-path": "/var/log/kubernetes/audit/audit.log",
        "audit-log-maxage": "30", "audit-log-maxbackup": "3", "audit-log-maxsize": "100"}
    for volume in api_server["extraVolumes"]:
        assert_known("extraVolume", volume)
    assert [(v["name"], v["hostPath"], v["mountPath"], v.get("readOnly", False), v["pathType"])
            for v in api_server["extraVolumes"]] == [
        ("encryption", f"{etc}/encryption", f"{etc}/encryption", True, "Directory"),
        ("audit-policy", f"{etc}/audit", f"{etc}/audit", True, "Directory"),
        ("audit-log", "/var/log/kubernetes/audit", "/var/log/kubernetes/audit", False, "Directory")]
    assert_kubeadm_accepts(etc / "kubeadm-init.yaml")


def test_without_keys_or_security_the_api_server_gets_neither(tmp_path):
    rendered = render("single-master", tmp_path, CONTAINERD, keys={"write": "identity", "keys": [],
                                                                   "retired": KEYS["keys"]},
                      overrides={"security": {"audit_log": False}})
    assert set(by_kind(rendered["cp-1"])["ClusterConfiguration"]["apiServer"]) == {"certSANs"}


@pytest.mark.parametrize("joined, refused", [
    (["cp-2", "cp-3", "worker-1"], True),        # cp-1's machine died and came back empty
    ([], False),                                  # a new cluster
    (["cp-1", "cp-2", "cp-3"], False),            # a running one
    (["cp-1"], False),                            # the others join it
])
def test_a_new_first_control_plane_beside_a_running_cluster_is_refused(tmp_path, joined, refused):
    inventory = local_inventory("ha-external-etcd", tmp_path)
    result = ansible_playbook(HERE / "one_cluster.yml", inventory, {"joined": joined})
    assert (result.returncode != 0) == refused, result.stdout[-3000:]
    if refused:
        assert "cp-1 is not part of a cluster but cp-2, cp-3 run one" in result.stdout
        assert "kubestrata replace ha-external-etcd cp-1" in result.stdout

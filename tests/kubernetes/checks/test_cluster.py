"""The cluster as its users see it, checked once through kubectl on the first control plane:
every node Ready; the API server, controller manager and scheduler Running on each control
plane, kube-proxy on every node, CoreDNS Running; and a workload: a Deployment of the offline
test image, one replica per worker (per node when there are no workers), behind a ClusterIP
Service that a pod on every node reaches by its DNS name, a NodePort the lab network reaches
on every node, and pods that reach each other across nodes by pod address."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from tests.layers import offline_image, remote

pytestmark = pytest.mark.kubernetes

NAMESPACE = "kubestrata-checks"
SERVER_PORT = 8080
READY_TIMEOUT = 180


class Kubectl:
    def __init__(self, hostvars: dict):
        self.hostvars = hostvars
        escalate = "" if hostvars.get("ansible_user", "root") == "root" else "sudo -n "
        self.prefix = f"{escalate}kubectl --kubeconfig /etc/kubernetes/admin.conf "

    def __call__(self, args: str, manifest: str | None = None, check: bool = True) -> str:
        command = self.prefix + args
        if manifest is not None:
            command = f"printf %s {shlex.quote(manifest)} | {command}"
        if check:
            result = remote.eventually(lambda: remote.run(self.hostvars, command))
        else:
            result = remote.run(self.hostvars, command)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {args}: {result.stderr.decode().strip()}")
        return result.stdout.decode()

    def json(self, args: str) -> dict:
        return json.loads(self(args + " -o json"))


@pytest.fixture(scope="module")
def kubectl(inventory) -> Kubectl:
    first = inventory.get_hosts("kube_control_plane")[0]
    return Kubectl(inventory.get_variables(first))


@pytest.fixture(scope="module")
def k8s_hosts(inventory) -> list[dict]:
    return [inventory.get_variables(name) for name in inventory.get_hosts("k8s_cluster")]


def _pods(kubectl: Kubectl, namespace: str, selector: str = "") -> list[dict]:
    return kubectl.json(f"get pods -n {namespace} {selector}")["items"]


def _running_and_ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


def _wait(probe, timeout: float = READY_TIMEOUT):
    """probe() until it is truthy or the time is up; its last answer."""
    return remote.eventually(probe, timeout, succeeded=bool)


def test_every_node_is_ready(kubectl, k8s_hosts):
    def ready() -> dict:
        nodes = kubectl.json("get nodes")["items"]
        return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                            if c["type"] == "Ready") for n in nodes}
    expected = {h["inventory_hostname"]: "True" for h in k8s_hosts}
    assert _wait(lambda: ready() == expected) or ready() == expected


def test_the_control_plane_kube_proxy_and_coredns_run(kubectl, inventory, k8s_hosts):
    def missing() -> list[str]:
        pods = {p["metadata"]["name"]: p for p in _pods(kubectl, "kube-system")}
        wanted = [f"{c}-{cp}" for cp in inventory.get_hosts("kube_control_plane")
                  for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
        gaps = [name for name in wanted if not (name in pods and _running_and_ready(pods[name]))]
        proxies = {p["spec"].get("nodeName") for p in pods.values()
                   if p["metadata"]["name"].startswith("kube-proxy-") and _running_and_ready(p)}
        gaps += [f"kube-proxy on {h['inventory_hostname']}" for h in k8s_hosts
                 if h["inventory_hostname"] not in proxies]
        if not any(n.startswith("coredns-") and _running_and_ready(p) for n, p in pods.items()):
            gaps.append("coredns")
        return gaps
    _wait(lambda: not missing())
    assert missing() == []


def _workload(servers: int) -> str:
    labels = {"app": "echo"}
    serve = (f"mkdir -p /www && hostname > /www/index.html && "
             f"exec httpd -f -p {SERVER_PORT} -h /www")
    container = {"image": offline_image.TEST_IMAGE, "imagePullPolicy": "Never"}
    tolerate = [{"operator": "Exists"}]       # every node, control planes included
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "echo", "namespace": NAMESPACE},
         "spec": {"replicas": servers, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      # httpd is PID 1 and ignores SIGTERM: no 30 s wait when the checks end
                      "terminationGracePeriodSeconds": 0,
                      "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                          {"labelSelector": {"matchLabels": labels},
                           "topologyKey": "kubernetes.io/hostname"}]}},
                      "containers": [{**container, "name": "echo", "command": ["sh", "-c", serve],
                                      "ports": [{"containerPort": SERVER_PORT}],
                                      "readinessProbe": {"tcpSocket": {"port": SERVER_PORT},
                                                         "periodSeconds": 2}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": SERVER_PORT}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "echo-nodeport", "namespace": NAMESPACE},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"port": 80, "targetPort": SERVER_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "client", "namespace": NAMESPACE},
         "spec": {"selector": {"matchLabels": {"app": "client"}},
                  "template": {"metadata": {"labels": {"app": "client"}}, "spec": {
                      "tolerations": tolerate, "terminationGracePeriodSeconds": 0,
                      "containers": [{**container, "name": "client",
                                      "command": ["sleep", "infinity"]}]}}}},
    ]
    return yaml.safe_dump_all(documents)


@pytest.fixture(scope="module")
def workload(kubectl, inventory, k8s_hosts):
    """The echo Deployment and Services and a client pod on every node; all removed after."""
    image = offline_image.tarball()
    for node in k8s_hosts:
        imported = remote.run(node, "ctr -n k8s.io images import -", stdin=image)
        assert imported.returncode == 0, imported.stderr.decode()
    workers = [h for h in inventory.get_hosts("kube_node")
               if h not in inventory.get_hosts("kube_control_plane")]
    servers = len(workers) or len(k8s_hosts)
    kubectl("apply -f -", manifest=_workload(servers))
    try:
        def ready() -> bool:
            pods = _pods(kubectl, NAMESPACE)
            return (len(pods) == servers + len(k8s_hosts)
                    and all(_running_and_ready(p) for p in pods))
        assert _wait(ready), kubectl(f"get pods -n {NAMESPACE} -o wide")
        yield {"servers": _pods(kubectl, NAMESPACE, "-l app=echo"),
               "clients": _pods(kubectl, NAMESPACE, "-l app=client"),
               "node_port": kubectl.json(f"get service -n {NAMESPACE} echo-nodeport")
                                  ["spec"]["ports"][0]["nodePort"]}
    finally:
        kubectl(f"delete namespace {NAMESPACE} --wait=true --timeout=120s", check=False)
        for node in k8s_hosts:
            remote.run(node, f"ctr -n k8s.io images rm {offline_image.TEST_IMAGE}")


# A new Service's rules reach every node's kube-proxy a moment after its pods are Ready (longer
# just after API servers restarted: CI saw a rotation's verify time out at 30 s).
SERVICE_SYNC_TIMEOUT = remote.SETTLE_SECONDS


def _answer(fetch, good) -> str:
    """fetch() until good(answer) or SERVICE_SYNC_TIMEOUT is up; the last answer."""
    return remote.eventually(fetch, SERVICE_SYNC_TIMEOUT, succeeded=good)


def _fetch(kubectl: Kubectl, client: dict, url: str) -> str:
    """The page's text, or what kubectl exec and wget said when there was none."""
    result = remote.run(kubectl.hostvars, kubectl.prefix + f"exec -n {NAMESPACE} "
                        f"{client['metadata']['name']} -- wget -q -T 5 -O - {url}")
    answer = result.stdout.decode().strip()
    return answer if result.returncode == 0 else f"{answer} {result.stderr.decode().strip()}".strip()


def test_the_workload_has_a_replica_on_each_worker(workload, inventory, k8s_hosts):
    workers = [h for h in inventory.get_hosts("kube_node")
               if h not in inventory.get_hosts("kube_control_plane")]
    nodes = sorted(p["spec"]["nodeName"] for p in workload["servers"])
    assert nodes == sorted(workers or [h["inventory_hostname"] for h in k8s_hosts])


def _dns_diagnosis(kubectl: Kubectl, client: dict, node: dict, name: str) -> str:
    """What the client's lookup says, where CoreDNS runs and what it logged last, and whether
    the client's node has the DNS Service's rules (kube-proxy's)."""
    lookup = remote.run(kubectl.hostvars, kubectl.prefix + f"exec -n {NAMESPACE} "
                        f"{client['metadata']['name']} -- nslookup {name}")
    coredns = kubectl("get pods -n kube-system -l k8s-app=kube-dns -o wide", check=False)
    logged = kubectl("logs -n kube-system -l k8s-app=kube-dns --tail 5 --prefix", check=False)
    rules = remote.run(node, "iptables-save -t nat | grep -c 'kube-system/kube-dns:dns '")
    return (f"nslookup: {(lookup.stdout + lookup.stderr).decode().strip()}\n{coredns.strip()}\n"
            f"CoreDNS's last lines:\n{logged.strip()}\n"
            f"kube-dns rules in {node['inventory_hostname']}'s nat table: "
            f"{rules.stdout.decode().strip() or 0}")


def test_a_pod_on_every_node_reaches_the_service_by_its_dns_name(kubectl, workload, k8s_hosts):
    names = {p["metadata"]["name"] for p in workload["servers"]}
    name = f"echo.{NAMESPACE}.svc.cluster.local"
    hosts = {h["inventory_hostname"]: h for h in k8s_hosts}
    for client in workload["clients"]:
        node = client["spec"]["nodeName"]
        answer = _answer(lambda: _fetch(kubectl, client, f"http://{name}/"), lambda a: a in names)
        assert answer in names, (f"{node}: http://{name}/ answered {answer!r}\n"
                                 + _dns_diagnosis(kubectl, client, hosts[node], name))


def test_pods_reach_each_other_across_nodes_by_pod_address(kubectl, workload):
    for client in workload["clients"]:
        for server in workload["servers"]:
            url = f"http://{server['status']['podIP']}:{SERVER_PORT}/"
            answer = _answer(lambda: _fetch(kubectl, client, url),
                             lambda a: a == server["metadata"]["name"])
            assert answer == server["metadata"]["name"], (
                f"{client['spec']['nodeName']} -> {server['spec']['nodeName']} {url}: {answer!r}")


def test_the_node_port_answers_on_every_node_from_the_lab_network(workload, k8s_hosts):
    names = {p["metadata"]["name"] for p in workload["servers"]}
    asking = k8s_hosts[-1]
    for node in k8s_hosts:
        url = f"http://{node['node_address']}:{workload['node_port']}/"
        answer = _answer(lambda: remote.run(asking, f"curl -sS --max-time 5 {url}")
                         .stdout.decode().strip(), lambda a: a in names)
        assert answer in names, f"{url} from {asking['inventory_hostname']}: {answer!r}"

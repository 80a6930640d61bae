"""prepare: names, swap, kernel modules and parameters, time sync, base packages."""

import pytest

from tests.layers.remote import eventually

pytestmark = pytest.mark.prepare

# kubeadm's preflight looks for these (conntrack, iptables, socat, ethtool, ebtables).
KUBERNETES_TOOLS = ["conntrack", "iptables", "socat", "ethtool", "ebtables"]
SYSCTLS = {"net.bridge.bridge-nf-call-iptables": 1, "net.bridge.bridge-nf-call-ip6tables": 1,
           "net.ipv4.ip_forward": 1}
# Where the kernel shows each module's function (see the prepare role's vars).
MODULE_MARKS = {"overlay": "/sys/module/overlay", "br_netfilter": "/proc/sys/net/bridge"}


def test_hostname_is_the_inventory_name(host, hostvars):
    assert host.check_output("hostname") == hostvars["inventory_hostname"]


def test_every_node_name_resolves_to_its_node_address(host, hostvars, inventory):
    # ahostsv4: an IPv4 lookup, answered from /etc/hosts without asking any DNS server
    for name in hostvars["groups"]["all"]:
        address = inventory.get_variables(name)["node_address"]
        for alias in (name, f"{name}.{hostvars['cluster_domain']}"):
            assert host.check_output(f"getent ahostsv4 {alias}").split()[0] == address, alias


def test_swap_is_off_and_stays_off(host):
    assert host.file("/proc/swaps").content_string.strip().splitlines()[1:] == []
    assert host.check_output("systemctl is-enabled swap.target || true") == "masked"
    active_fstab_swap = host.run("grep -E '^[^#]\\S*\\s+\\S+\\s+swap\\s' /etc/fstab")
    assert active_fstab_swap.rc == 1, active_fstab_swap.stdout


def test_kernel_modules_are_declared_for_boot_and_present(host):
    declared = host.file("/etc/modules-load.d/kubestrata.conf").content_string.split()
    for module, mark in MODULE_MARKS.items():
        assert module in declared
        assert host.file(mark).exists, f"{module}: the kernel does not provide it ({mark})"


def test_kubernetes_networking_sysctls(host):
    persisted = host.file("/etc/sysctl.d/90-kubestrata.conf").content_string
    for name, value in SYSCTLS.items():
        assert host.sysctl(name) == value
        assert f"{name}={value}" in persisted.replace(" ", "")


def test_time_is_synchronised_to_a_configured_source(host):
    """chrony runs and has selected one of its sources (`^*`); `chronyc tracking` exits 0
    without any. A source is selected a few polls after chrony starts."""
    chrony = host.service("chrony")
    assert chrony.is_running and chrony.is_enabled
    sources = eventually(lambda: host.run("chronyc -n -c sources"),
                         succeeded=lambda r: any(line.startswith("^,*,")
                                                 for line in r.stdout.splitlines()))
    assert any(line.startswith("^,*,") for line in sources.stdout.splitlines()), \
        f"no selected time source: {sources.stdout or sources.stderr}"


def test_kubernetes_tools_are_installed(host):
    for tool in KUBERNETES_TOOLS:
        assert host.exists(tool), tool

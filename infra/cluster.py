"""The libvirt resources of one topology, as ComponentResources that read like the topology.

Cluster
  Hypervisor (one per libvirt URI): provider, storage pool, base image, ClusterNetwork
  Node (one per topology node): copy-on-write disk, cloud-init seed volume, domain
"""

from __future__ import annotations

import pulumi
import pulumi_libvirt as libvirt

from kubestrata import cloudinit, vmimage, vms
from kubestrata.hostkeys import HostKey
from kubestrata.topology import Node, Topology

GIB = 1024 ** 3
SERIAL_CONSOLE = {"type": "pty", "target_type": "serial", "target_port": "0"}
# VNC on the hypervisor's loopback only: without graphics the provider adds SPICE (which
# RHEL 9-family qemu refuses); reach it with an SSH tunnel or `virsh vncdisplay`.
VNC_GRAPHICS = {"type": "vnc", "listen_type": "address", "listen_address": "127.0.0.1",
                "autoport": True}


def xslt(*templates: str) -> str:
    """An xml.xslt transform (the provider runs it with xsltproc on the machine running Pulumi):
    the provider's XML as it is, but for these templates."""
    return ("""<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy><xsl:apply-templates select="node()|@*"/></xsl:copy>
  </xsl:template>
""" + "".join(templates) + "</xsl:stylesheet>\n")


def console_log_xslt(path: str) -> str:
    """The domain XML transform that logs the serial console to path: the provider's console
    block has no log file; the console stays `virsh console`-able and everything the VM printed
    since boot is kept in the log."""
    return xslt(f"""  <xsl:template match="/domain/devices/console[target/@type='serial']">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
      <log file="{path}" append="on"/>
    </xsl:copy>
  </xsl:template>
""")


# The provider makes every volume mode 0644, and a seed holds its node's private SSH host key:
# volumes are 0600 (libvirt hands each to qemu's user when a domain starts), and the pool's
# directory 0711 (qemu's user may open the files in it, nobody may list it).
VOLUME_XSLT = xslt("""  <xsl:template match="/volume/target/permissions/mode">
    <mode>0600</mode>
  </xsl:template>
""")
POOL_XSLT = xslt("""  <xsl:template match="/pool/target">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
      <permissions><mode>0711</mode></permissions>
    </xsl:copy>
  </xsl:template>
""")


def domain_arguments(topology: Topology, node: Node, settings: vms.Settings) -> dict:
    """The Domain arguments that depend on the settings, not on other resources."""
    arguments = {
        "type": settings.domain_type,
        "graphics": VNC_GRAPHICS,
        "consoles": [SERIAL_CONSOLE],
        "xml": {"xslt": console_log_xslt(vms.console_log(topology, node))},
    }
    if settings.domain_type == "kvm":
        # Software emulation (qemu) has no host CPU to pass through: libvirt's default model.
        arguments["cpu"] = {"mode": "host-passthrough"}
    return arguments


class ClusterNetwork(pulumi.ComponentResource):
    """A NAT network with the topology's CIDR; its DNS answers for every node name."""

    def __init__(self, name: str, topology: Topology, opts: pulumi.ResourceOptions):
        super().__init__("kubestrata:libvirt:ClusterNetwork", name, None, opts)
        self.network = libvirt.Network(
            name,
            name=vms.network_name(topology),
            bridge=vms.bridge_name(topology),
            mode="nat",
            domain=topology.domain,
            addresses=[str(topology.network)],
            # Addresses are static (network-config); no DHCP range to collide with them.
            dhcp={"enabled": False},
            dns={"enabled": True, "local_only": True,
                 "hosts": [{"hostname": node.name, "ip": str(node.address)}
                           for node in topology.nodes]},
            autostart=True,
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"id": self.network.id})


class Hypervisor(pulumi.ComponentResource):
    """One libvirt host: its provider, the storage pool, the base image and the network."""

    def __init__(self, name: str, uri: str, topology: Topology, settings: vms.Settings,
                 opts: pulumi.ResourceOptions):
        super().__init__("kubestrata:libvirt:Hypervisor", name, None, opts)
        self.provider = libvirt.Provider(name, uri=uri, opts=pulumi.ResourceOptions(parent=self))
        resources = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.pool = libvirt.Pool(
            f"{name}-pool", name=vms.pool_name(topology), type="dir",
            target={"path": vms.pool_path(topology, settings)}, xml={"xslt": POOL_XSLT},
            opts=resources)
        self.base_image = libvirt.Volume(
            f"{name}-base-image", name=vms.image_volume_name(settings.image),
            pool=self.pool.name, source=vmimage.source(settings.image, settings.image_checksum),
            format=settings.image_format,
            xml={"xslt": VOLUME_XSLT}, opts=resources)
        self.network = None if settings.bridge else ClusterNetwork(
            f"{name}-network", topology,
            pulumi.ResourceOptions(parent=self, providers=[self.provider]))
        self.register_outputs({})

    def interface(self, mac: str, settings: vms.Settings) -> dict:
        if self.network is None:
            return {"bridge": settings.bridge, "mac": mac}
        return {"network_id": self.network.network.id, "mac": mac}


class NodeVM(pulumi.ComponentResource):
    """One node: a copy-on-write disk of the role's size, its cloud-init seed and its domain.
    A new generation (vms.renew, with a new host key, hence a new seed) names the disk anew:
    Pulumi makes a new disk, seed and domain."""

    def __init__(self, topology: Topology, node: Node, hypervisor: Hypervisor,
                 settings: vms.Settings, host_key: HostKey, generation: int,
                 opts: pulumi.ResourceOptions):
        super().__init__("kubestrata:libvirt:Node", node.name, None, opts)
        resources = pulumi.ResourceOptions(parent=self, provider=hypervisor.provider)
        disk = libvirt.Volume(
            f"{node.name}-disk", name=vms.disk_name(node, generation), pool=hypervisor.pool.name,
            base_volume_id=hypervisor.base_image.id, format="qcow2",
            size=node.disk_gib * GIB, xml={"xslt": VOLUME_XSLT},
            opts=pulumi.ResourceOptions.merge(resources, pulumi.ResourceOptions(
                protect=vms.disk_protected(topology, node))))
        # The seed ISO is made here (the provider's CloudInitDisk would be mode 0644 on the
        # hypervisor) and uploaded as a volume named by its content: a changed seed is a new
        # volume, hence a new domain.
        seed = cloudinit.render(topology, node, settings.admin_user, settings.ssh_public_key,
                                host_key)
        seed_file = vms.seed_path(topology, node)
        if not pulumi.runtime.is_dry_run():
            try:
                seed.write_iso(seed_file)
            except cloudinit.SeedError as error:
                raise pulumi.RunError(str(error)) from None
        seed_volume = libvirt.Volume(
            f"{node.name}-seed", name=f"{node.name}-seed-{seed.digest}.iso",
            pool=hypervisor.pool.name, source=str(seed_file), format="raw",
            xml={"xslt": VOLUME_XSLT},
            # uploaded raw, read back by a refresh as libvirt sees the file: iso
            opts=pulumi.ResourceOptions.merge(resources, pulumi.ResourceOptions(
                ignore_changes=["format"])))
        self.domain = libvirt.Domain(
            f"{node.name}-domain",
            name=vms.domain_name(topology, node),
            vcpu=node.cpus,
            memory=node.memory_mib,
            disks=[{"volume_id": disk.id}, {"volume_id": seed_volume.id}],
            # The MAC in upper case, as a refresh reads it back from libvirt.
            network_interfaces=[hypervisor.interface(vms.mac_address(topology, node).upper(),
                                                     settings)],
            **domain_arguments(topology, node, settings),
            # The provider gives every domain the guest-agent channel (org.qemu.guest_agent.0).
            # qemu_agent=True would only make it ask the agent for addresses, which fails the
            # domain's creation while the agent is not up yet (provider 0.7.6,
            # dmacvicar/terraform-provider-libvirt#1050); the addresses are static anyway.
            qemu_agent=False,
            autostart=True,
            # A new seed (a new disk: the provider replaces the domain) or network means a new
            # domain; the provider would update the interface in place, unseen by the guest.
            # The name is fixed, so the old domain goes first.
            opts=pulumi.ResourceOptions.merge(resources, pulumi.ResourceOptions(
                replace_on_changes=["networkInterfaces"], delete_before_replace=True)))
        self.register_outputs({"domain": self.domain.id})


class Cluster(pulumi.ComponentResource):
    """All VMs of a topology, across the hypervisors its node groups name."""

    def __init__(self, topology: Topology, settings: vms.Settings,
                 host_keys: dict[str, HostKey], generations: dict[str, int]):
        super().__init__("kubestrata:libvirt:Cluster", topology.name)
        self.nodes: list[NodeVM] = []
        for uri, nodes in vms.hypervisors(topology, settings).items():
            hypervisor = Hypervisor(vms.hypervisor_label(uri), uri, topology, settings,
                                    pulumi.ResourceOptions(parent=self))
            for node in nodes:
                self.nodes.append(NodeVM(topology, node, hypervisor, settings,
                                         host_keys[node.name], generations.get(node.name, 0),
                                         pulumi.ResourceOptions(parent=self)))
        self.ready = pulumi.Output.all(*(vm.domain.id for vm in self.nodes))
        self.register_outputs({})


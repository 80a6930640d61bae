"""kubestrata on libvirt: the VMs of one topology (docs/libvirt.md), as a function.

`program()` reads the stack configuration, loads and checks the topology, builds the cluster,
exports the Ansible inventory and an ssh line per node. `pulumi up` runs it through
__main__.py; `kubestrata up --provider libvirt` runs it as an inline Automation API program
(providers.LibvirtProvider), which needs no Python language host.
"""

import pulumi

from cluster import Cluster
from kubestrata import hostkeys, inventory, paths, topology, vmimage, vms


def program() -> None:
    config = pulumi.Config("kubestrata")
    topology_ref = config.require("topology")
    if topology_ref not in topology.NAMES:
        topology_ref = str(paths.PROJECT_ROOT / topology_ref)   # not the working directory
    image = config.get("image") or vms.DEFAULT_IMAGE
    settings = vms.Settings(
        ssh_public_key=config.get("sshPublicKey") or vms.default_public_key() or "",
        uri=config.get("libvirtUri") or vms.DEFAULT_URI,
        image=image,
        # Given, or detected: qemu-img's answer for a local file, the suffix of a URL.
        image_format=config.get("imageFormat") or vms.image_format(image),
        admin_user=config.get("adminUser") or vms.DEFAULT_ADMIN_USER,
        pool_path=config.get("poolPath"),
        bridge=config.get("bridge"),
        domain_type=config.get("domainType") or vms.DEFAULT_DOMAIN_TYPE,
        ssh_proxy_command=config.get("sshProxyCommand"),
        image_checksum=config.get("imageChecksum"),
    )

    try:
        cluster_topology = topology.load(topology_ref, config.get_object("overrides") or {})
        problems = vms.check(cluster_topology, settings) or vms.preflight(cluster_topology,
                                                                          settings)
        if pulumi.get_stack() != cluster_topology.name:
            # One key for everything: libvirt names, host keys, the inventory and the stack.
            problems.append(f"pulumi stack {pulumi.get_stack()}: runs topology "
                            f"{cluster_topology.name}, whose VMs, host keys and inventory are "
                            f"named after the topology; run it as the stack "
                            f"{cluster_topology.name} (pulumi stack select "
                            f"{cluster_topology.name}), or copy the topology file and give the "
                            "copy another name for a second cluster")
        if problems:
            raise topology.TopologyError(problems)
    except topology.TopologyError as error:
        raise pulumi.RunError(f"topology {topology_ref} cannot be used:\n  "
                              + "\n  ".join(error.problems)) from None

    if vmimage.is_url(image) and not pulumi.runtime.is_dry_run():
        try:                 # into the cache, checked: the provider uploads the cached file
            vmimage.fetch(image, settings.image_checksum, log=pulumi.log.info)
        except vmimage.ImageError as error:
            raise pulumi.RunError(str(error)) from None

    host_keys = hostkeys.ensure(vms.state_dir(cluster_topology.name),
                                [node.name for node in cluster_topology.nodes])
    cluster = Cluster(cluster_topology, settings, host_keys,
                      vms.generations(cluster_topology.name))

    pulumi.export("inventory", inventory.dump(vms.inventory_for(cluster_topology, settings)))
    pulumi.export("inventoryFile", str(vms.inventory_path(cluster_topology)))
    pulumi.export("ssh", vms.ssh_commands(cluster_topology, settings))
    if not pulumi.runtime.is_dry_run():
        # hosts.yml and known_hosts land once every domain exists.
        cluster.ready.apply(
            lambda _: vms.write_access_files(cluster_topology, settings, host_keys))

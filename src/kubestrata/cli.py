"""The kubestrata command line."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kubestrata import sourcebundle, topology as topo, validation
from kubestrata.lab.lab import Lab, LabError, exclusive as hold_lab, lab_dir, remove as remove_lab
from kubestrata.locks import Busy
from kubestrata.providers import ProviderError, provider_for
from kubestrata.shell import CommandError, require, run


def _load(args) -> topo.Topology:
    overrides: dict = {}
    for assignment in args.set or []:
        overrides = topo.merge(overrides, topo.parse_assignment(assignment))
    return topo.load(args.topology, overrides)


def cmd_validate(args) -> int:
    t = _load(args)
    roles = {}
    for node in t.nodes:
        roles.setdefault(",".join(node.roles), []).append(node.name)
    print(f"{t.name}: valid ({len(t.nodes)} nodes; API endpoint {':'.join(map(str, t.api_endpoint))})")
    for role, names in roles.items():
        print(f"  {role}: {', '.join(names)}")
    if t.cni not in sourcebundle.POD_NETWORKS:
        print(f"  cni {t.cni}: upstream only: its images come from docker.io and quay.io and are not "
              f"built from Go modules, so lab nodes and the bundle built from source carry "
              f"{' and '.join(sourcebundle.POD_NETWORKS)} only")
    return 0


def cmd_inventory(args) -> int:
    t = _load(args)
    path = provider_for(args.provider, t).inventory_path()
    if not path.exists():
        print(f"kubestrata: no {args.provider} inventory for {t.name} yet; run "
              f"`kubestrata up {t.name} --provider {args.provider}`", file=sys.stderr)
        return 1
    print(path)
    return 0


def cmd_lab_up(args) -> int:
    t = _load(args)
    lab = Lab(t)
    started = time.monotonic()
    with hold_lab(t.name, args.command_line):
        changes = lab.up(log=lambda msg: print(f"  {msg}", flush=True))
    elapsed = time.monotonic() - started
    if changes:
        for change in changes:
            print(f"  {change}")
        print(f"lab {t.name}: up in {elapsed:.1f} s")
    else:
        print(f"lab {t.name}: already up, nothing changed ({elapsed:.1f} s)")
    _print_access(lab)
    return 0


def _print_access(lab: Lab) -> None:
    print(f"  inventory: {lab.inventory_path}")
    for node in lab.topology.nodes:
        print(f"  {node.name:<12} {str(node.address):<15} {','.join(node.roles)}")
    named = lab.topology.reference
    print(f"  shell on a node:  kubestrata lab exec {named} {lab.topology.nodes[0].name} -- bash")
    print(f"  ansible:          kubestrata lab run {named} -- ansible all -m ping")


def cmd_lab_status(args) -> int:
    lab = Lab(_load(args))
    rows = lab.status()
    print(f"{'node':<12} {'address':<15} {'roles':<28} {'state':<8} {'ssh':<4} {'rss MiB':>8}")
    for row in rows:
        print(f"{row.name:<12} {row.address:<15} {row.roles:<28} "
              f"{'running' if row.running else 'stopped':<8} {'ok' if row.ssh else '-':<4} "
              f"{row.rss_mib:>8.0f}")
    return 0 if all(r.running and r.ssh for r in rows) else 1


def cmd_lab_exec(args) -> int:
    return Lab(_load(args)).exec(args.node, _command(args))


def cmd_lab_run(args) -> int:
    return Lab(_load(args)).run(_command(args))


def _command(args) -> list[str]:
    first = args.command[0] if args.command else ""
    if first != "--" and first.startswith("-") and "--" in args.command:
        options = " ".join(args.command[:args.command.index("--")])
        raise LabError(f"put {options} before the topology: what follows the topology is the "
                       "command (given after --)")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("give the command after --, e.g. -- hostname")
    return command


def cmd_lab_down(args) -> int:
    try:
        name = _load(args).name
    except topo.TopologyError:
        # A lab outlives its topology file (a copy since deleted): its name is enough.
        if args.set or not validation.is_name(args.topology) \
                or not lab_dir(args.topology).is_dir():
            raise
        name = args.topology
    with hold_lab(name, args.command_line):
        removed = remove_lab(name)
    for line in removed:
        print(f"  {line}")
    print(f"lab {name}: down" if removed else f"lab {name}: nothing to remove")
    return 0


def cmd_graph(args) -> int:
    from kubestrata import graph
    svg = graph.render(_load(args))
    if args.output is None:
        sys.stdout.write(svg)
    elif args.output.endswith(".png"):
        require({"rsvg-convert": "librsvg2-bin"})
        run(["rsvg-convert", "-o", args.output], input=svg)
    else:
        with open(args.output, "w") as out:
            out.write(svg)
    return 0


def _status_line():
    """A transient 'what runs now' line on a terminal; nothing when output is a file or pipe."""
    if not sys.stdout.isatty():
        return None
    return lambda text: print(f"\r\033[K{text}", end="", flush=True)


def _out(line: str) -> None:
    print(f"\r\033[K{line}" if sys.stdout.isatty() else line, flush=True)


class UsageError(Exception):
    pass


def _extra_vars(values: list[str]) -> dict:
    """-e @FILE (YAML) or -e NAME=VALUE, as ansible-playbook takes them; later ones win."""
    extravars: dict = {}
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise UsageError(f"-e {value}: no file {path}")
            loaded = topo.parse_yaml(path.read_bytes(), f"-e {value}: the file")
            if not isinstance(loaded, dict):
                raise UsageError(f"-e {value}: the file must hold a mapping of variables")
            extravars.update(loaded)
        elif "=" in value:
            name, _, setting = value.partition("=")
            extravars[name] = setting
        else:
            raise UsageError(f"-e {value}: give NAME=VALUE or @FILE")
    return extravars


def _playbook_options(args) -> dict:
    return {"out": _out, "status": _status_line(), "verbose": args.verbose,
            "extravars": _extra_vars(args.extra_vars)}


def _run_phases(t, provider, phases) -> int:
    from kubestrata import orchestrate
    try:
        orchestrate.execute(phases, out=_out)
    except orchestrate.PhaseFailed as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1
    for line in orchestrate.summary(t, provider):
        print(line)
    return 0


def cmd_up(args) -> int:
    from kubestrata import orchestrate
    t = _load(args)
    provider = provider_for(args.provider, t)
    with provider.exclusive(args.command_line):
        try:
            orchestrate.check_nodes_stay(t, provider.inventory_path())
            retire = orchestrate.retiring_nodes(t, provider.inventory_path())
        except orchestrate.ChangeRefused as exc:
            print(f"kubestrata: {exc}; nothing was changed", file=sys.stderr)
            return 1
        if retire and not _confirmed(
                args, f"up would remove {', '.join(retire)}, which the topology no longer has",
                f"Drain {', '.join(retire)}, delete from the cluster and destroy?"):
            return 1
        phases = orchestrate.up_phases(t, provider, plan=args.plan, retire=retire,
                                       **_playbook_options(args))
        _out(f"{t.name}: {len(t.nodes)} nodes on {provider.name}; topology valid")
        return _run_phases(t, provider, phases)


def cmd_plan(args) -> int:
    from kubestrata import orchestrate
    t = _load(args)
    provider = provider_for(args.provider, t)
    phase = orchestrate.plan_phase(provider, **_playbook_options(args))
    with provider.exclusive(args.command_line):
        if not provider.inventory_path().exists():
            print(f"kubestrata: no {provider.name} inventory for {t.name}; run `kubestrata up` "
                  "first", file=sys.stderr)
            return 1
        _out(f"{t.name}: what a re-run of the layers would change on its {len(t.nodes)} nodes "
             "(Ansible's check mode: nothing is changed)")
        try:
            orchestrate.execute([phase], out=_out)
        except orchestrate.PhaseFailed as exc:
            print(f"kubestrata: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_upgrade(args) -> int:
    from kubestrata import orchestrate
    t = _load(args)
    provider = provider_for(args.provider, t)
    phases = orchestrate.upgrade_phases(t, provider, **_playbook_options(args))
    with provider.exclusive(args.command_line):
        if not provider.inventory_path().exists():
            print(f"kubestrata: no {provider.name} inventory for {t.name}; run `kubestrata up` "
                  "first", file=sys.stderr)
            return 1
        try:
            orchestrate.check_nodes_stay(t, provider.inventory_path())
        except orchestrate.ChangeRefused as exc:
            print(f"kubestrata: {exc}; nothing was changed", file=sys.stderr)
            return 1
        versions = ", ".join(f"{k} {v}" for k, v in t.versions.items())
        _out(f"{t.name}: upgrading to {versions}")
        return _run_phases(t, provider, phases)


def cmd_kubectl(args) -> int:
    """kubectl of the topology's Kubernetes version against its cluster, from this machine."""
    from kubestrata import gobuild
    t = _load(args)
    provider = provider_for(args.provider, t)
    if not provider.kubeconfig_path().exists():
        print(f"kubestrata: no kubeconfig for {t.name} ({provider.kubeconfig_path()}); run "
              f"`kubestrata up {args.topology}` first", file=sys.stderr)
        return 1
    version = t.versions["kubernetes"]
    try:
        kubectl = str(gobuild.build("kubernetes", version, log=lambda _: None) / "kubectl")
    except gobuild.GoBuildError:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            print(f"kubestrata: no kubectl: build it (`kubestrata bundle {args.topology} "
                  f"--from-source`) or install kubectl {version}", file=sys.stderr)
            return 1
    args_ = args.kubectl_args[1:] if args.kubectl_args[:1] == ["--"] else args.kubectl_args
    return subprocess.call(provider.kubectl_argv(kubectl, args_))


def cmd_console(args) -> int:
    """The node's console: virsh console of its domain (libvirt), a root shell (lab)."""
    argv = provider_for(args.provider, _load(args)).console_argv(args.node)
    if shutil.which(argv[0]) is None:
        raise ProviderError(f"{argv[0]} is not installed on this machine (virsh: apt-get "
                            "install libvirt-clients)")
    print(shlex.join(argv), file=sys.stderr, flush=True)
    return subprocess.call(argv)


def cmd_rotate_secrets_key(args) -> int:
    from kubestrata import orchestrate
    t = _load(args)
    if not t.security.secrets_encryption:
        print(f"kubestrata: Secrets encryption is off in {t.name}: turn it on (security: "
              f"secrets_encryption: true) and run `kubestrata up {t.reference}` first",
              file=sys.stderr)
        return 1
    provider = provider_for(args.provider, t)
    key = args.key or time.strftime("key-%Y%m%dT%H%M%SZ", time.gmtime())
    options = _playbook_options(args)
    options["extravars"] = {**options["extravars"], "kubeadm_secrets_encryption_key": key}
    phases = orchestrate.layer_phases(t, provider, "secrets-key-rotate.yml",
                                      checked=("kubernetes",), **options)
    with provider.exclusive(args.command_line):
        if _inventory(args, t) is None:
            return 1
        _out(f"{t.name}: the Secrets encryption key becomes {key}")
        return _run_phases(t, provider, phases)


def _inventory(args, t) -> Path | None:
    """The provider's inventory of the topology, or None after saying there is none."""
    inventory = provider_for(args.provider, t).inventory_path()
    if inventory.exists():
        return inventory
    print(f"kubestrata: no {args.provider} inventory for {t.name}; bring it up first",
          file=sys.stderr)
    return None


def cmd_verify(args) -> int:
    from kubestrata import playbook, verify
    t = _load(args)
    inventory = _inventory(args, t)
    if inventory is None:
        return 1
    layers = args.layers.split(",") if args.layers else list(verify.LAYERS)
    unknown = [layer for layer in layers if layer not in verify.LAYERS]
    if unknown:
        print(f"kubestrata: unknown layer {unknown[0]!r}; layers: {', '.join(verify.LAYERS)}",
              file=sys.stderr)
        return 2
    junit = playbook.new_run_dir("verify") / "junit.xml"
    collector = verify.run(inventory, layers, junit, [n.name for n in t.nodes])
    for line in verify.report(collector, layers, [n.name for n in t.nodes]):
        print(line)
    print(f"JUnit XML: {junit}")
    if not any(state != "skip" for state in collector.outcomes.values()):
        print("kubestrata: no check ran; is the inventory right?", file=sys.stderr)
        return 1
    return 1 if collector.failures else 0


def cmd_certs(args) -> int:
    from kubestrata import certs
    t = _load(args)
    inventory = _inventory(args, t)
    if inventory is None:
        return 1
    try:
        found = certs.read(inventory)
    except certs.CertsError as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"kubestrata: no certificate on the nodes of {t.name}; is it installed?",
              file=sys.stderr)
        return 1
    lines, expiring = certs.report(found, within_days=args.within_days)
    for line in lines:
        print(line)
    if expiring:
        print(f"{len(expiring)} certificates expire within {args.within_days} days: "
              f"`kubestrata up {t.reference}` renews kubeadm's and etcd's (within "
              f"{certs.RENEW_DAYS} days of expiry)")
        return 1
    print(f"every certificate is valid for {args.within_days} days or more")
    return 0


def _confirmed(args, what: str, question: str) -> bool:
    """--yes, or "y" typed at a terminal; says why not otherwise."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"kubestrata: {what}; confirm with --yes", file=sys.stderr)
        return False
    if input(f"{question} [y/N] ").strip().lower() in ("y", "yes"):
        return True
    print("kept everything")
    return False


def cmd_reset(args) -> int:
    from kubestrata import orchestrate
    t = _load(args)
    provider = provider_for(args.provider, t)
    kubernetes_nodes = [n.name for n in t.nodes if n.is_kubernetes_node]
    if args.node and args.node not in kubernetes_nodes:
        print(f"kubestrata: --node {args.node}: not a Kubernetes node of {t.name}; give one of "
              f"{', '.join(kubernetes_nodes)}", file=sys.stderr)
        return 2
    if not provider.inventory_path().exists():
        print(f"kubestrata: no {provider.name} inventory for {t.name}; nothing to reset",
              file=sys.stderr)
        return 1
    targets = args.node or f"every Kubernetes node of {t.name}"
    wipes = not args.node and not args.keep_etcd_data
    if not _confirmed(args, "reset removes Kubernetes from the nodes",
                      f"Reset Kubernetes on {targets}"
                      f"{' and delete the cluster objects from etcd' if wipes else ''}?"):
        return 1
    phase = orchestrate.reset_phase(provider, args.node, args.keep_etcd_data, out=_out,
                                    status=_status_line(), verbose=args.verbose)
    with provider.exclusive(args.command_line):
        try:
            orchestrate.execute([phase], out=_out)
        except orchestrate.PhaseFailed as exc:
            print(f"kubestrata: {exc}", file=sys.stderr)
            return 1
    again = f"kubestrata up {t.reference}"
    print(f"{t.name}: {'node ' + args.node if args.node else 'cluster'} reset; `{again}` "
          f"{'joins it again' if args.node else 'makes a new cluster'}")
    return 0


def cmd_replace(args) -> int:
    from kubestrata import replace, vms
    from kubestrata.inventory import read_groups
    t = _load(args)
    names = [n.name for n in t.nodes]
    if args.node not in names:
        print(f"kubestrata: {args.node} is not a node of {t.name}; its nodes are "
              f"{', '.join(names)}", file=sys.stderr)
        return 2
    if args.provider == "libvirt" and vms.disk_protected(t, t.node(args.node)):
        print(f"kubestrata: protect_disks is on, so Pulumi will not replace the disk of "
              f"{args.node}; set it to false in the topology for the replace; nothing was "
              "changed", file=sys.stderr)
        return 1
    provider = provider_for(args.provider, t)
    inventory = _inventory(args, t)
    if inventory is None:
        return 1
    options = _playbook_options(args)
    with provider.exclusive(args.command_line):
        started = time.monotonic()
        _out(f"{'probe':<10} {t.name}: asking the nodes how they are ...")
        groups = read_groups(inventory)
        try:
            health = replace.probe(inventory, args.node)
            _out(f"{'probe':<10} {replace.describe(health, groups, args.node)}")
            chosen = replace.plan(groups, args.node, health)
        except replace.Refused as exc:
            print(f"kubestrata: {exc}; nothing was changed", file=sys.stderr)
            return 1
        if not _confirmed(args, f"replace takes {args.node} out of the cluster and destroys its "
                                "machine", f"Take {args.node} out of {t.name}, destroy its "
                                           "machine and make a new one?"):
            return 1
        old_key = replace.host_key(provider.known_hosts_path(), args.node)
        code = _run_phases(t, provider, replace.phases(t, provider, chosen, **options))
        if code == 0:
            new_key = replace.host_key(provider.known_hosts_path(), args.node)
            print(f"{args.node}: replaced in {time.monotonic() - started:.0f} s; a new machine, "
                  f"SSH host key {new_key} (was {old_key or 'unknown'})")
        else:
            print(f"kubestrata: run `{args.command_line}` again to finish: it takes out what "
                  f"is left of {args.node} and makes it anew", file=sys.stderr)
    return code


def cmd_down(args) -> int:
    t = _load(args)
    provider = provider_for(args.provider, t)
    if not _confirmed(args, "down destroys the machines",
                      f"Destroy every machine of {t.name} ({provider.name})?"):
        return 1
    with provider.exclusive(args.command_line):
        for line in provider.destroy():
            print(f"  {line}")
    print(f"{t.name}: down")
    return 0


def cmd_bench(args) -> int:
    from kubestrata.lab import bench
    return bench.main(args.topologies, cold=args.cold)


def cmd_bench_layers(args) -> int:
    from kubestrata import layers
    return layers.bench(args.topologies)


def cmd_bench_cluster(args) -> int:
    from kubestrata import cluster_bench
    return cluster_bench.main(args.topologies)


def cmd_bench_bundle(args) -> int:
    from kubestrata import bundle_bench, gobuild
    version = _load(args).versions["kubernetes"]
    bundle_args = [args.topology, *(f"--set={assignment}" for assignment in args.set or [])]
    try:
        return bundle_bench.main(version, bundle_args, cold=args.cold)
    except gobuild.GoBuildError as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1


def cmd_bundle(args) -> int:
    if args.from_source:
        return _bundle_from_source(args)
    if not args.output:
        raise UsageError("give -o DIR for the downloaded bundle (or --from-source)")
    from kubestrata import bundle
    plan = bundle.plan(_load(args), arch=args.arch, repo_base=args.repo_base)
    print(f"bundle: Kubernetes {plan.kubernetes_version} ({plan.arch}) from {plan.repo_url}")
    try:
        index = bundle.build(plan, Path(args.output), log=lambda line: print(f"  {line}", flush=True))
    except bundle.BundleError as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1
    print(f"  written: {index}")
    print(f"  serve it (e.g. python3 -m http.server --directory {args.output} 8080), then: "
          f"kubestrata up {args.topology} -e kube_install_source=offline "
          "-e kube_offline_url=http://HOST:8080/")
    return 0


def _bundle_from_source(args) -> int:
    from kubestrata import debpkg, gobuild
    from kubestrata.cachedir import sha256
    version = _load(args).versions["kubernetes"]
    started = time.monotonic()
    try:
        built = sourcebundle.ensure(version, args.arch, verbose=args.verbose,
                                    log=lambda line: print(line, flush=True))
    except (gobuild.GoBuildError, sourcebundle.SourceBundleError, debpkg.DebPkgError) as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1
    if args.output:
        shutil.copytree(built, args.output)
        built = Path(args.output)
    print(f"bundle: {built} ({time.monotonic() - started:.1f} s); "
          f"bundle.json sha256 {sha256(built / 'bundle.json')}")
    return 0


def cmd_recipe(args) -> int:
    from kubestrata import gobuild
    try:
        gobuild.write_recipe(args.component, args.version)
    except gobuild.GoBuildError as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubestrata", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_topology(sp):
        sp.add_argument("topology", help=f"one of {', '.join(topo.NAMES)} or a topology file")
        sp.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="override a field, e.g. node_groups.worker.count=3 (repeatable)")
        return sp

    def with_playbook_options(sp):
        sp.add_argument("--verbose", action="store_true", help="stream Ansible's own output")
        sp.add_argument("-e", "--extra-vars", action="append", default=[], metavar="NAME=VALUE|@FILE",
                        help="Ansible extra variables for the layers, e.g. "
                             "kube_install_source=offline (repeatable)")
        return sp

    with_topology(sub.add_parser("validate", help="check a topology")).set_defaults(func=cmd_validate)
    inv = with_topology(sub.add_parser("inventory", help="print the path of a topology's inventory"))
    inv.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    inv.set_defaults(func=cmd_inventory)

    lab = sub.add_parser("lab", help="lab nodes: systemd-nspawn machines on this host")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    with_topology(lab_sub.add_parser("up", help="create or complete the lab")).set_defaults(func=cmd_lab_up)
    with_topology(lab_sub.add_parser("status", help="nodes, SSH and memory")).set_defaults(func=cmd_lab_status)
    with_topology(lab_sub.add_parser("down", help="remove the lab (caches stay)")).set_defaults(func=cmd_lab_down)
    ex = with_topology(lab_sub.add_parser("exec", help="run a command in a node"))
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_lab_exec)
    rn = with_topology(lab_sub.add_parser("run", help="run a command in the lab namespace "
                                                       "with ANSIBLE_INVENTORY set"))
    rn.add_argument("command", nargs=argparse.REMAINDER)
    rn.set_defaults(func=cmd_lab_run)

    up = with_topology(sub.add_parser("up", help="machines, layers and checks: a working cluster"))
    up.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    up.add_argument("--yes", action="store_true",
                    help="remove the workers the topology no longer has without asking")
    up.add_argument("--plan", action="store_true",
                    help="print what the layers would change (check mode) before changing it")
    with_playbook_options(up)
    up.set_defaults(func=cmd_up)
    pl = with_topology(sub.add_parser(
        "plan", help="what a re-run of the layers would change, per layer and node (check mode)"))
    pl.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    with_playbook_options(pl)
    pl.set_defaults(func=cmd_plan)
    upg = with_topology(sub.add_parser(
        "upgrade", help="upgrade to the topology's versions (playbooks/upgrade.yml), then verify"))
    upg.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    with_playbook_options(upg)
    upg.set_defaults(func=cmd_upgrade)
    kc = with_topology(sub.add_parser(
        "kubectl", help="kubectl against the cluster: kubestrata kubectl NAME -- get nodes"))
    kc.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    kc.add_argument("kubectl_args", nargs=argparse.REMAINDER, help="kubectl's arguments, after --")
    kc.set_defaults(func=cmd_kubectl)
    con = with_topology(sub.add_parser(
        "console", help="a node's console: virsh console of its VM (libvirt), a shell (lab)"))
    con.add_argument("node")
    con.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    con.set_defaults(func=cmd_console)
    ver = with_topology(sub.add_parser("verify", help="check every layer on every node"))
    ver.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    ver.add_argument("--layers", help="comma-separated layers to check (default: all)")
    ver.set_defaults(func=cmd_verify)
    rot = with_topology(sub.add_parser(
        "rotate-secrets-key", help="a new key for the Secrets at rest: added, made the one that "
                                   "encrypts, every Secret rewritten, the old key retired; then "
                                   "verify the Kubernetes layer"))
    rot.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    rot.add_argument("--key", help="the new key's name (default key-UTCSTAMP); the same name again "
                                   "finishes an interrupted rotation")
    with_playbook_options(rot)
    rot.set_defaults(func=cmd_rotate_secrets_key)
    from kubestrata.certs import RENEW_DAYS
    ct = with_topology(sub.add_parser(
        "certs", help="every certificate on every node and when it expires"))
    ct.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    ct.add_argument("--within-days", type=int, default=RENEW_DAYS, metavar="DAYS",
                    help=f"exit 1 when a certificate expires within DAYS (default {RENEW_DAYS}, "
                         "when up renews them)")
    ct.set_defaults(func=cmd_certs)
    rs = with_topology(sub.add_parser(
        "reset", help="remove Kubernetes from the nodes (playbooks/reset.yml); machines stay"))
    rs.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    rs.add_argument("--node", help="reset this node only: drained, its Node deleted, then reset")
    rs.add_argument("--keep-etcd-data", action="store_true",
                    help="keep the cluster's objects in etcd (a whole-cluster reset deletes them)")
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rs.add_argument("--verbose", action="store_true", help="stream Ansible's own output")
    rs.set_defaults(func=cmd_reset)
    rp = with_topology(sub.add_parser(
        "replace", help="replace a node's machine by a new one (a dead etcd member, control "
                        "plane or worker), the cluster serving throughout"))
    rp.add_argument("node", help="the node to replace, e.g. etcd-2")
    rp.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    rp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    with_playbook_options(rp)
    rp.set_defaults(func=cmd_replace)
    down = with_topology(sub.add_parser("down", help="destroy the machines"))
    down.add_argument("--provider", choices=("lab", "libvirt"), default="lab")
    down.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    down.set_defaults(func=cmd_down)

    gr = with_topology(sub.add_parser("graph", help="draw the topology as SVG (or PNG)"))
    gr.add_argument("-o", "--output", help="file to write, .svg or .png (default: SVG on stdout)")
    gr.set_defaults(func=cmd_graph)

    bench = sub.add_parser("bench", help="timings: lab nodes, layers, the source bundle")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bench_lab = bench_sub.add_parser("lab", help="lab up times (cold and warm) and node memory")
    bench_lab.add_argument("topologies", nargs="*", default=list(topo.NAMES))
    bench_lab.add_argument("--cold", action="store_true",
                           help="also time a cold start (rootfs and mirror built in an empty cache)")
    bench_lab.set_defaults(func=cmd_bench)
    bench_layers = bench_sub.add_parser("layers", help="time of each layer before Kubernetes "
                                                       "(prepare .. lb) and of the no-op re-run")
    bench_layers.add_argument("topologies", nargs="*", default=list(topo.NAMES))
    bench_layers.set_defaults(func=cmd_bench_layers)
    bench_cluster = bench_sub.add_parser("cluster", help="time to a verified cluster (kubestrata "
                                         "up, warm caches), the no-op re-run, memory per node by role")
    bench_cluster.add_argument("topologies", nargs="*", default=list(topo.NAMES))
    bench_cluster.set_defaults(func=cmd_bench_cluster)
    bench_bundle = with_topology(bench_sub.add_parser(
        "bundle", help="time `bundle --from-source` for the topology's Kubernetes version: each "
                       "component, packaging, images, a cache hit; size and peak memory"))
    bench_bundle.add_argument("--cold", action="store_true",
                              help="also build with an empty Go build cache (minutes of every core)")
    bench_bundle.set_defaults(func=cmd_bench_bundle)

    bundle = with_topology(sub.add_parser(
        "bundle", help="build the offline install source of the Kubernetes layer "
                       "(on a machine with internet access)"))
    bundle.add_argument("-o", "--output", help="directory to create (--from-source: a copy of "
                                               "the cached bundle; default: use it in place)")
    bundle.add_argument("--from-source", action="store_true",
                        help="build it here from the Go modules (gobuild/ recipes) instead of "
                             "downloading from pkgs.k8s.io and registry.k8s.io")
    bundle.add_argument("--verbose", action="store_true", help="stream go's output")
    bundle.add_argument("--arch", default="amd64", help="the nodes' architecture (default amd64)")
    bundle.add_argument("--repo-base", help="base URL of the Kubernetes package repositories "
                                            "(default: the kube role's, pkgs.k8s.io)")
    bundle.set_defaults(func=cmd_bundle)

    recipe = sub.add_parser("recipe", help="write the Go build recipe of a bundle component "
                                           "(gobuild/COMPONENT-vVERSION: go.mod and go.sum)")
    recipe.add_argument("component", help="kubernetes, cri-tools, coredns, cni-plugins or pulumi")
    recipe.add_argument("version", help="upstream version without the v, e.g. 1.36.3")
    recipe.set_defaults(func=cmd_recipe)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["kubestrata", *argv])     # what a lock says holds it
    try:
        return args.func(args)
    except topo.TopologyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 2
    except (LabError, CommandError, ProviderError, Busy) as exc:
        print(f"kubestrata: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kubestrata: interrupted; run the same command again to finish or "
              "`kubestrata lab down NAME` to clean up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

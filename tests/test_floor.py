"""The raw floor of `kubestrata bench layers` (floor.py): what a layer made, read from the
events of its run, and the scripts that capture, make again and check it. The file scripts
run here for real, on paths made awkward on purpose; nothing needs root."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from kubestrata import floor

LAYERS = {"Prepare": "prepare", "Runtime": "runtime", "Etcd": "etcd"}
ADDRESSES = {"10.0.0.11": "node-1", "10.0.0.12": "node-2"}


def ok(play, module, host="node-1", event="runner_on_ok", **res):
    return {"event": event, "counter": 0,
            "event_data": {"play": play, "host": host, "resolved_action": module, "res": res}}


def item(play, module, **res):
    return ok(play, module, event="runner_item_on_ok", **res)


def args(**module_args):
    return {"invocation": {"module_args": module_args}}


def made(*events):
    return floor.layer_work(list(events), LAYERS, ADDRESSES)


def test_packages_are_the_names_changed_apt_tasks_asked_for_without_their_pins():
    work = made(ok("Prepare", "ansible.builtin.apt", changed=True,
                   **args(name=["curl", "chrony"])),
                ok("Runtime", "ansible.builtin.apt", changed=True,
                   **args(name=["containerd=2.1.9", "runc=1.3.3"])),
                ok("Runtime", "ansible.builtin.apt", changed=False, **args(name=["ethtool"])),
                ok("Runtime", "ansible.builtin.apt", changed=False, **args(update_cache=True)))
    assert work["prepare"]["node-1"].packages == {"curl", "chrony"}
    assert work["runtime"]["node-1"].packages == {"containerd", "runc"}


def test_files_are_the_paths_changed_file_tasks_wrote():
    work = made(ok("Prepare", "ansible.builtin.copy", changed=True,
                   dest="/etc/modules-load.d/kubestrata.conf",
                   **args(dest="/etc/modules-load.d/")),
                ok("Prepare", "ansible.builtin.lineinfile", changed=True,
                   **args(path="/etc/hosts")),
                ok("Prepare", "ansible.builtin.template", changed=False,
                   dest="/etc/chrony/chrony.conf"),
                ok("Prepare", "ansible.posix.sysctl", changed=True,
                   **args(name="net.ipv4.ip_forward", sysctl_file="/etc/sysctl.d/90-k.conf")),
                ok("Runtime", "ansible.builtin.file", changed=True, path="/etc/containerd",
                   state="directory"),
                ok("Runtime", "ansible.builtin.file", changed=True, path="/etc/old",
                   state="absent"),
                ok("Runtime", "ansible.builtin.unarchive", changed=True, **args(dest="/usr/local")),
                ok("Runtime", "ansible.builtin.command", changed=True,
                   **args(_raw_params="ln -s a b")))
    prepare, runtime = work["prepare"]["node-1"], work["runtime"]["node-1"]
    assert prepare.paths == {"/etc/modules-load.d/kubestrata.conf", "/etc/hosts",
                             "/etc/sysctl.d/90-k.conf"}
    assert prepare.sysctl_files == {"/etc/sysctl.d/90-k.conf"}
    assert runtime.paths == {"/etc/containerd"} and runtime.trees == {"/usr/local"}


def test_a_loop_counts_item_by_item_and_hidden_items_count_for_nothing():
    items = [{"changed": True, "dest": "/etc/etcd/pki/ca.crt"},
             {"changed": False, "dest": "/etc/etcd/pki/peer.crt"},
             {"changed": True, "censored": "hidden"}]
    work = made(*(item("Etcd", "ansible.builtin.copy", **res) for res in items),
                ok("Etcd", "ansible.builtin.copy", changed=True, results=items),
                ok("Etcd", "ansible.builtin.copy", changed=True, censored="hidden"))
    assert work["etcd"]["node-1"].paths == {"/etc/etcd/pki/ca.crt"}


def test_a_result_delegated_to_the_controller_is_no_nodes_and_one_delegated_to_a_node_is_its():
    work = made(item("Etcd", "ansible.builtin.file", changed=True, path="/home/me/pki",
                     _ansible_delegated_vars={"ansible_host": "localhost",
                                              "ansible_connection": "local"}),
                ok("Etcd", "ansible.builtin.systemd_service", changed=True,
                   _ansible_delegated_vars={"ansible_host": "10.0.0.12"},
                   **args(name="etcd", state="restarted")),
                ok("Not a layer", "ansible.builtin.file", changed=True, path="/etc/x"))
    assert set(work["etcd"]) == {"node-2"}
    assert work["etcd"]["node-2"].services == {"etcd": floor.Service(running=True)}


def test_services_are_every_one_a_task_named_changed_or_not_the_last_state_winning():
    work = made(ok("Prepare", "ansible.builtin.systemd_service", changed=False,
                   **args(name="chrony", enabled=True, state="started")),
                ok("Prepare", "ansible.builtin.systemd_service", changed=True,
                   **args(name="chrony", state="restarted", enabled=None)),
                ok("Prepare", "ansible.builtin.systemd_service", changed=True,
                   **args(name="swap.target", masked=True)),
                ok("Prepare", "ansible.builtin.systemd_service", changed=True,
                   **args(daemon_reload=True)))
    assert work["prepare"]["node-1"].services == {
        "chrony": floor.Service(enabled=True, running=True),
        "swap.target": floor.Service(masked=True)}


def test_a_node_s_work_adds_up_over_layers_later_service_states_winning():
    work = floor.Work(packages={"a"}, services={"x": floor.Service(enabled=True, running=True)})
    work.update(floor.Work(packages={"b"}, paths={"/p"},
                           services={"x": floor.Service(running=False)}))
    assert work.packages == {"a", "b"} and work.paths == {"/p"}
    assert work.services == {"x": floor.Service(enabled=True, running=False)}


def test_the_replay_installs_the_pinned_packages_without_starting_them_then_files_then_services():
    work = floor.Work(packages={"chrony", "curl"}, paths={"/etc/x y"},
                      sysctl_files={"/etc/sysctl.d/my file.conf"},
                      services={"chrony": floor.Service(enabled=True, running=True),
                                "swap.target": floor.Service(masked=True)})
    script = floor.replay_script(work, {"chrony": "4.3-2", "curl": "7.88.1-10"}, True)
    lines = script.splitlines()
    order = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in
             ("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d", "apt-get -qq update",
              "apt-get -qq install", "tar -C / -xzpf -", "sysctl", "systemctl daemon-reload",
              "systemctl mask", "systemctl enable", "systemctl restart")]
    assert order == sorted(order)
    assert "apt-get -qq install -y --no-install-recommends chrony=4.3-2 curl=7.88.1-10 </dev/null" \
        in lines
    assert "sysctl -q -p '/etc/sysctl.d/my file.conf'" in lines
    assert "systemctl mask -- swap.target" in lines and "systemctl restart -- chrony" in lines
    assert "apt-get -qq update" not in floor.replay_script(work, {"chrony": "1", "curl": "2"},
                                                          False)
    assert floor.replay_script(floor.Work(), {}, False) == \
        "set -euo pipefail\nexport DEBIAN_FRONTEND=noninteractive"


def bash(script, stdin=b"", env=None):
    return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, env=env)


@pytest.fixture
def written(tmp_path):
    """Files a layer wrote: a directory with a key, a link and service data below it, a
    file with a quote and spaces in its name, and an unpacked tree."""
    pki = tmp_path / "etc dir" / "pki"
    (pki / "member" / "wal").mkdir(parents=True)
    (pki / "member" / "wal" / "0.wal").write_bytes(b"data of the service")
    (pki / "server.key").write_text("secret\n")
    (pki / "server.key").chmod(0o600)
    (pki / "ca link").symlink_to("server.key")
    odd = tmp_path / "it's a $file"
    odd.write_text("config\n")
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_text("#!/bin/sh\n")
    return floor.Work(paths={str(pki), str(odd)}, trees={str(tree)})


def test_a_capture_holds_the_paths_a_directory_s_files_and_links_and_whole_trees(written):
    captured = bash(floor.capture_script(written))
    assert captured.returncode == 0, captured.stderr
    found = {entry.path: entry for entry in floor.entries(captured.stdout)}
    pki = next(p for p in written.paths if p.endswith("pki"))
    tree = next(iter(written.trees))
    assert set(found) == {pki, f"{pki}/server.key", f"{pki}/ca link",
                          next(p for p in written.paths if p.endswith("$file")),
                          tree, f"{tree}/bin", f"{tree}/bin/tool"}
    key = found[f"{pki}/server.key"]
    assert key.mode == 0o600 and key.sha256 and key.link is None
    assert found[f"{pki}/ca link"].link == "server.key" and found[pki].sha256 is None


def test_the_replay_writes_the_captured_files_back_and_the_check_passes_until_one_changes(written):
    captured = bash(floor.capture_script(written)).stdout
    files = floor.entries(captured)
    for path in sorted(written.paths | written.trees):
        subprocess.run(["rm", "-rf", path], check=True)
    replayed = bash(floor.replay_script(written, {}, False), captured)
    assert replayed.returncode == 0, replayed.stderr
    check = floor.check_script(written, {}, files)
    assert bash(check).returncode == 0, bash(check).stderr

    key = next(Path(e.path) for e in files if e.path.endswith("server.key"))
    key.write_text("another secret\n")
    key.chmod(0o644)
    link = next(Path(e.path) for e in files if e.link)
    link.unlink()
    link.symlink_to("elsewhere")
    failed = bash(check)
    assert failed.returncode == 1 and failed.stdout == b""
    said = failed.stderr.decode()
    assert "modes and owners differ" in said and "link targets differ" in said
    assert "file contents differ" in said and "secret" not in said


def test_the_check_compares_package_versions_and_service_states(tmp_path):
    """dpkg-query and systemctl stand-ins print what the node has."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "dpkg-query").write_text("#!/bin/sh\nprintf 'chrony=4.3-2\\ncurl=7.88\\n'\n")
    (tools / "systemctl").write_text(
        "#!/bin/sh\n[ \"$1\" = is-enabled ] && printf 'enabled\\nmasked\\n' || echo active\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    work = floor.Work(packages={"curl", "chrony"},
                      services={"chrony": floor.Service(enabled=True, running=True),
                                "swap.target": floor.Service(masked=True)})
    script = floor.check_script(work, {"chrony": "4.3-2", "curl": "7.88"}, [])
    assert f"-- {shlex.join(['chrony', 'swap.target'])}" in script
    assert bash(script, env=env).returncode == 0, bash(script, env=env).stderr
    older = floor.check_script(work, {"chrony": "4.3-1", "curl": "7.88"}, [])
    assert bash(older, env=env).stderr.decode() == "package versions differ\n"
    stopped = floor.check_script(floor.Work(services={"chrony": floor.Service(running=False)}),
                                 {}, [])
    assert bash(stopped, env=env).stderr.decode() == "services running differ\n"

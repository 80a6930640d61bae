"""The libvirt resource plugin built here (gobuild component pulumi-libvirt:
terraform-provider-libvirt behind pulumi-terraform-bridge, with kubestrata's mapping) serves the
pulumi_libvirt SDK under the built Pulumi CLI: it says what it is, its schema has every token and
property name the SDK sends, and the engine loads it from PATH and configures it (which, with no
libvirtd, fails naming the socket: the plugin answered, not a missing-plugin error).

Everything stays in tmp_path, as in test_engine.py (whose fixtures these are); nothing is
downloaded. On a cold machine the plugin's build takes about 5 minutes on 2 cores, once.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path

import pulumi
import pulumi_libvirt as libvirt
import pytest
from pulumi import automation

from kubestrata import gobuild, pulumi_cli
from tests.pulumi.test_engine import built_root, isolated  # noqa: F401 (fixtures)

SOCKET = "/nonexistent/kubestrata-test/libvirt-sock"
INFRA_CLASSES = (libvirt.Pool, libvirt.Volume, libvirt.Network, libvirt.Domain)


@pytest.fixture(scope="session")
def plugin_dir() -> Path:
    if shutil.which("go") is None:
        pytest.skip("needs a Go toolchain to build the libvirt plugin")
    return pulumi_cli.libvirt_plugin_dir(log=print)


@pytest.fixture(scope="session")
def schema(plugin_dir, built_root, tmp_path_factory) -> dict:  # noqa: F811
    """The plugin's schema as its GetSchema answers, through `pulumi package get-schema`."""
    home = tmp_path_factory.mktemp("pulumi-home")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PULUMI_HOME": str(home),
           "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
    answer = subprocess.run(
        [str(built_root / "bin" / "pulumi"), "package", "get-schema",
         str(plugin_dir / pulumi_cli.LIBVIRT_PLUGIN)],
        capture_output=True, text=True, env=env, timeout=120)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def upstream_version() -> str:
    go_mod = (gobuild.recipe("pulumi-libvirt", "") / "go.mod").read_text()
    return re.search(r"github\.com/dmacvicar/terraform-provider-libvirt v(\S+)", go_mod)[1]


def token(cls) -> str:
    """The type token an SDK resource class registers (its __init__ passes it to super)."""
    return re.search(r"'(libvirt:index/[^']+)'", inspect.getsource(cls._internal_init))[1]


def test_the_plugin_says_it_is_the_bridged_terraform_provider(plugin_dir):
    printed = subprocess.run([str(plugin_dir / pulumi_cli.LIBVIRT_PLUGIN), "-version"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert printed == f"{upstream_version()}+terraform-provider-libvirt.kubestrata"
    assert not printed.startswith("0.5.4")         # not pulumi-libvirt 0.5.4's release


def test_the_schema_has_the_tokens_infra_uses(schema):
    assert schema["name"] == "libvirt"
    assert schema["version"] == f"{upstream_version()}+terraform-provider-libvirt.kubestrata"
    assert "uri" in schema["provider"]["inputProperties"]       # libvirt.Provider(uri=...)
    for cls in INFRA_CLASSES:
        assert token(cls) in schema["resources"], cls.__name__


def _wire_names(cls: ast.ClassDef) -> set[str]:
    """The property names an SDK class sends: its getters' name= or, without one, the method's."""
    names = set()
    for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
        for decorator in method.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if isinstance(target, ast.Attribute) and target.attr == "getter":
                named = {k.arg: k.value.value for k in (call.keywords if call else [])}
                names.add(named.get("name", method.name))
    return names


def _schema_properties(schema: dict, module: str, name: str) -> set[str]:
    """What the schema has for the SDK class name of module: an object type (_inputs, outputs),
    a function's result, or a resource's (or the provider's) inputs (Args) or state."""
    def lower(text): return text[0].lower() + text[1:]
    if module in ("_inputs", "outputs"):
        base = name.removesuffix("Args").removesuffix("Result")
        base = lower(base) if base.startswith("Get") else base
        return set(schema["types"][f"libvirt:index/{base}:{base}"]["properties"])
    if name.endswith("Result"):
        function = lower(name.removesuffix("Result"))
        return set(schema["functions"][f"libvirt:index/{function}:{function}"]["outputs"]
                   ["properties"])
    resource = name.strip("_").removesuffix("State").removesuffix("Args")
    entry = (schema["provider"] if resource == "Provider"
             else schema["resources"][f"libvirt:index/{lower(resource)}:{resource}"])
    if name.endswith("Args"):
        return set(entry["inputProperties"])
    return set(entry.get("properties", {})) | set(entry["inputProperties"]) | {"id", "urn"}


def test_the_schema_has_every_property_name_the_sdk_sends(schema):
    checked, missing = 0, []
    for path in sorted(Path(libvirt.__file__).parent.glob("*.py")):
        classes = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)]
        for cls in classes:
            names = _wire_names(cls)
            if names:
                checked += 1
                have = _schema_properties(schema, path.stem, cls.name)
                missing += [f"{cls.name}.{n}" for n in sorted(names - have)]
    assert checked > 50 and not missing, missing


def provider_and_pool(uri: str):
    def program():
        provider = libvirt.Provider("hypervisor", uri=uri)
        libvirt.Pool("pool", name="kubestrata-test", type="dir",
                     target={"path": "/var/lib/libvirt/images/kubestrata-test"},
                     opts=pulumi.ResourceOptions(provider=provider))
    return program


def preview(program, project: Path, built_root: Path, lines: list[str]):  # noqa: F811
    stack = automation.create_or_select_stack(
        stack_name="libvirt-plugin-test", project_name="kubestrata-libvirt-plugin-test",
        program=program, opts=automation.LocalWorkspaceOptions(
            work_dir=str(project), env_vars=pulumi_cli.libvirt_plugin_env(log=print),
            pulumi_command=automation.PulumiCommand(root=str(built_root))))
    return stack.preview(color="never", on_output=lines.append)


def test_the_engine_finds_the_plugin_on_path_and_configures_it(plugin_dir, built_root,  # noqa: F811
                                                               isolated):  # noqa: F811
    lines: list[str] = []
    with pytest.raises(automation.errors.CommandError) as failed:
        preview(provider_and_pool(f"qemu:///system?socket={SOCKET}"), isolated, built_root,
                lines)
    assert f"failed to connect: dial unix {SOCKET}" in str(failed.value)
    assert (f"using {pulumi_cli.LIBVIRT_PLUGIN} from $PATH at "
            f"{plugin_dir / pulumi_cli.LIBVIRT_PLUGIN}") in "\n".join(lines)


def test_a_pulumi_of_the_users_own_gets_no_built_plugin(monkeypatch, tmp_path):
    (tmp_path / "pulumi").write_text("#!/bin/sh\n")
    (tmp_path / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gobuild, "build", lambda *a, **k: pytest.fail("built the plugin"))
    assert pulumi_cli.libvirt_plugin_env() == {}


def test_a_failed_build_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))

    def failing(*args, **kwargs):
        raise gobuild.GoBuildError("go build in pulumi-libvirt failed: main.go:1: oops\nexit 1")
    monkeypatch.setattr(gobuild, "build", failing)
    with pytest.raises(gobuild.GoBuildError) as failed:
        pulumi_cli.libvirt_plugin_env()
    assert str(failed.value) == ("building the Pulumi libvirt plugin failed: go build in "
                                 "pulumi-libvirt failed: main.go:1: oops exit 1")

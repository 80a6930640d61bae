"""`kubestrata bundle --from-source`: it stops with one clear line, writing nothing, when the
module proxy does not serve a version, when there is no Go toolchain and when no recipe exists
for the pinned version; the bundle it builds holds the pinned version's packages and the images
kubeadm asks for, each listed with its sum, in a signed repository; its cache is used only when
whole, and concurrent builders build once.

Nothing here leaves this machine: the module proxy is a server on 127.0.0.1 (GOPROXY), and the
real bundle is built from, or found in, the machine's warm cache (~/.cache/kubestrata), once for
the module.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kubestrata import gobuild, sourcebundle
from kubestrata.bundle import control_plane_images
from kubestrata.cachedir import SUMS, entry_is_complete, seal, sha256
from kubestrata.paths import CACHE_DIR
from tests.harness import VENV_BIN, needs_root

VERSION = "1.36.3"
# What the test proxy lists for k8s.io/kubernetes; it answers 404 to everything else.
SERVED = ("v1.35.4", "v1.36.2", "v1.37.0-alpha.1")
PACKAGES = {"kubelet", "kubeadm", "kubectl", "cri-tools", "kubernetes-cni"}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")


@pytest.fixture(scope="module")
def go_proxy():
    """A Go module proxy on 127.0.0.1 that lists SERVED for k8s.io/kubernetes and has nothing."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = "".join(f"{v}\n" for v in SERVED).encode()
            found = self.path == "/k8s.io/kubernetes/@v/list"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}", asked=asked)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module", autouse=True)
def offline(go_proxy):
    """Every proxy lookup, ours and go's, goes to the test proxy, straight (no HTTP proxy)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GOPROXY", go_proxy.url)
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        yield


def kubestrata(*args: str, cache: Path, path: str | None = None) -> subprocess.CompletedProcess:
    """The command line as a user runs it, with cache as KUBESTRATA_CACHE."""
    env = {**os.environ, "KUBESTRATA_CACHE": str(cache)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([str(VENV_BIN / "kubestrata"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def one_clear_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---- it stops clearly, writing nothing ---------------------------------------------------------

needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="needs a Go toolchain")


@needs_go
def test_a_version_the_proxy_does_not_serve_is_named_with_those_it_serves(go_proxy, tmp_path):
    result = kubestrata("recipe", "kubernetes", "1.36.99", cache=tmp_path / "cache")
    line = one_clear_line(result)
    assert "does not serve k8s.io/kubernetes v1.36.99" in line
    assert "it serves v1.35.4, v1.36.2: pin one of those" in line     # releases, no alpha
    assert "/k8s.io/kubernetes/@v/v1.36.99.info" in go_proxy.asked
    assert not (tmp_path / "cache").exists()
    assert not list(gobuild.RECIPES.glob("kubernetes-v1.36.99*"))


def test_a_build_of_a_version_the_proxy_does_not_serve_starts_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(gobuild, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.26.8")
    with pytest.raises(gobuild.GoBuildError, match=f"does not serve k8s.io/kubernetes v{VERSION};"
                                                   " it serves v1.35.4, v1.36.2"):
        gobuild.build("kubernetes", VERSION)
    assert [p.name for p in (tmp_path / "gobuild").iterdir()] == [".lock"]


def test_without_go_it_says_how_to_install_go(tmp_path):
    without_go = ":".join(d for d in os.environ["PATH"].split(":")
                          if d and not os.access(Path(d) / "go", os.X_OK))
    line = one_clear_line(kubestrata("bundle", "all-in-one", "--from-source",
                                     cache=tmp_path / "cache", path=without_go))
    assert line.startswith("kubestrata: no Go toolchain")
    assert "install Go 1.26 or newer from https://go.dev/dl/" in line
    assert not (tmp_path / "cache").exists()


@needs_go
def test_a_version_without_a_recipe_names_the_recipes_there_are(tmp_path):
    result = kubestrata("bundle", "all-in-one", "--from-source",
                        "--set", "versions.kubernetes=1.35.4", cache=tmp_path / "cache")
    line = one_clear_line(result)
    recipes = gobuild.recipe_versions("kubernetes")
    assert VERSION in recipes
    assert f"no build recipe for kubernetes 1.35.4 (recipes: {', '.join(recipes)})" in line
    assert "kubestrata recipe kubernetes 1.35.4" in line
    assert not (tmp_path / "cache").exists()


# ---- the bundle -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built() -> Path:
    """The bundle of VERSION in the machine's cache, built unless it is there whole."""
    modules = CACHE_DIR / "go/mod/cache/download/k8s.io/kubernetes/@v" / f"v{VERSION}.zip"
    if not modules.exists():
        pytest.skip(f"needs the Go module cache warm ({modules}): run `kubestrata bundle "
                    "all-in-one --from-source` once with internet access")
    started = time.monotonic()
    directory = sourcebundle.ensure(VERSION, log=print)
    print(f"bundle ready in {time.monotonic() - started:.1f} s: {directory}")
    return directory


@pytest.fixture(scope="module")
def index(built) -> dict:
    return json.loads((built / "bundle.json").read_text())


@pytest.fixture(scope="module")
def unpacked(built, index, tmp_path_factory) -> Path:
    """The kubelet and kubeadm packages, unpacked."""
    root = tmp_path_factory.mktemp("debs")
    for entry in index["packages"]:
        if entry["name"] in ("kubelet", "kubeadm"):
            subprocess.run(["dpkg-deb", "-x", str(built / entry["file"]), str(root)], check=True)
    return root


def _run(*argv) -> str:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          check=True).stdout.strip()


@needs_root
def test_bundle_json_lists_every_package_and_image_with_its_sum(built, index):
    assert index["kubernetes_version"] == VERSION
    assert {p["name"] for p in index["packages"]} == PACKAGES
    listed = [*index["packages"], *index["images"]]
    assert {e["file"] for e in listed} == (
        {p.name for p in built.glob("*.deb")}
        | {str(p.relative_to(built)) for p in (built / "images").iterdir()})
    for entry in listed:
        assert sha256(built / entry["file"]) == entry["sha256"], entry["file"]


@needs_root
def test_the_packages_hold_the_pinned_version(unpacked, index):
    assert {p["version"] for p in index["packages"] if p["name"] in ("kubelet", "kubeadm",
                                                                      "kubectl")} == {f"{VERSION}-1.1"}
    assert _run(unpacked / "usr/bin/kubeadm", "version", "-o", "short") == f"v{VERSION}"
    assert _run(unpacked / "usr/bin/kubelet", "--version") == f"Kubernetes v{VERSION}"


@needs_root
def test_the_images_are_the_ones_kubeadm_asks_for_under_their_names(built, index, unpacked):
    listed = _run(unpacked / "usr/bin/kubeadm", "config", "images", "list",
                  "--kubernetes-version", f"v{VERSION}")
    wanted = control_plane_images(listed)
    assert f"registry.k8s.io/kube-apiserver:v{VERSION}" in wanted and len(wanted) == 6
    assert [i["name"] for i in index["images"]] == wanted
    for image in index["images"]:
        with tarfile.open(built / image["file"]) as archive:
            oci = json.load(archive.extractfile("index.json"))
            [manifest] = oci["manifests"]
            assert manifest["annotations"]["io.containerd.image.name"] == image["name"]
            archive.getmember(f"blobs/sha256/{manifest['digest'].removeprefix('sha256:')}")


@needs_root
def test_the_repository_is_signed_by_the_bundles_key(built, index, tmp_path):
    key = built / index["signing_key"]["file"]
    shown = _run("gpg", "--homedir", tmp_path, "--show-keys", "--with-colons", key)
    assert f"fpr:::::::::{index['signing_key']['fingerprint']}:" in shown
    keyring = tmp_path / "key.gpg"
    _run("gpg", "--homedir", tmp_path, "--dearmor", "--output", keyring, key)
    _run("gpgv", "--keyring", keyring, built / "InRelease")


# ---- the cache --------------------------------------------------------------------------------

@needs_root
def test_a_second_bundle_is_a_cache_hit_in_under_5_s(built):
    started = time.monotonic()
    again = sourcebundle.ensure(VERSION, log=print)
    seconds = time.monotonic() - started
    print(f"cache hit in {seconds:.2f} s")
    assert again == built
    assert seconds < 5


@needs_root
def test_a_damaged_or_unsealed_copy_of_the_bundle_is_not_whole(built, tmp_path):
    copy = tmp_path / built.name
    shutil.copytree(built, copy)
    assert entry_is_complete(copy)
    archive = next((copy / "images").iterdir())
    with open(archive, "ab") as damaged:
        damaged.write(b"\0")
    assert not entry_is_complete(copy)
    shutil.copy(built / archive.relative_to(copy), archive)
    assert entry_is_complete(copy)
    (copy / "kubelet.extra").write_text("left by someone\n")
    assert not entry_is_complete(copy)
    (copy / "kubelet.extra").unlink()
    (copy / SUMS).unlink()
    assert not entry_is_complete(copy)


@pytest.fixture
def go_builds(monkeypatch, tmp_path) -> list[Path]:
    """gobuild with its cache in tmp_path and `go build` replaced by a slow writer of one
    program; the list of directories it built into."""
    builds: list[Path] = []

    def run_go(args, cwd, **kwargs):
        assert args[0] == "build"
        into = Path(args[args.index("-o") + 1])
        builds.append(into)
        time.sleep(0.5)                      # long enough for a second builder to arrive
        (into / "imagetool").write_text(f"build {len(builds)}\n")
        return ""

    monkeypatch.setattr(gobuild, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.26.8")
    monkeypatch.setattr(gobuild, "run_go", run_go)
    return builds


def _damage(entry: Path, how: str) -> None:
    if how == "byte appended":
        with open(entry / "imagetool", "ab") as program:
            program.write(b"\0")
    elif how == "interrupted (no SHA256SUMS)":
        (entry / SUMS).unlink()
    elif how == "file added":
        (entry / "stray").write_text("x")


@pytest.mark.parametrize("how, rebuilt", [("whole", False), ("byte appended", True),
                                          ("interrupted (no SHA256SUMS)", True),
                                          ("file added", True)])
def test_a_cached_build_is_used_only_when_whole(go_builds, how, rebuilt):
    entry = gobuild.build("imagetool", "", log=lambda _: None)
    assert entry_is_complete(entry) and len(go_builds) == 1
    _damage(entry, how)
    assert gobuild.build("imagetool", "", log=lambda _: None) == entry
    assert len(go_builds) == (2 if rebuilt else 1)
    assert entry_is_complete(entry)
    assert (entry / "imagetool").read_text() == f"build {len(go_builds)}\n"


def test_two_builders_at_once_build_once(go_builds):
    start = threading.Barrier(2)
    results: list[Path] = []

    def builder():
        start.wait()
        results.append(gobuild.build("imagetool", "", log=lambda _: None))

    threads = [threading.Thread(target=builder) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2 and results[0] == results[1]
    assert len(go_builds) == 1
    assert entry_is_complete(results[0])


def test_seal_lists_every_file_and_a_changed_one_breaks_it(tmp_path):
    entry = tmp_path / "entry"
    (entry / "images").mkdir(parents=True)
    (entry / "a").write_text("a\n")
    (entry / "images" / "b.tar").write_bytes(b"b" * 4096)
    seal(entry)
    assert sorted(line.split("  ")[1] for line in (entry / SUMS).read_text().splitlines()) == [
        "a", "images/b.tar"]
    assert entry_is_complete(entry)
    (entry / "images" / "b.tar").write_bytes(b"c" * 4096)          # same size, other bytes
    assert not entry_is_complete(entry)

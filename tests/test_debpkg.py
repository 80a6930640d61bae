"""kubestrata.debpkg: packages shaped like pkgs.k8s.io's, built from stand-in binaries, and a
signed flat repository that apt accepts, and refuses once it is signed by another key or its
index is changed."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubestrata import debpkg
from kubestrata.paths import TEMPLATE_DIR
from kubestrata.shell import CommandError

VERSIONS = {"kubernetes": "1.36.3", "cri_tools": "1.36.0", "cni_plugins": "1.9.1"}
DOUBLE = "#!/bin/sh\necho test-double\n"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def make_binaries(directory: Path) -> Path:
    (directory / "cni").mkdir(parents=True)
    for name in ("kubelet", "kubeadm", "kubectl", "crictl", *(f"cni/{p}" for p in CNI_PLUGINS)):
        (directory / name).write_text(DOUBLE)
    return directory


def info(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True,
                          text=True, check=True).stdout.strip()


def contents(deb: Path) -> dict[str, str]:
    """Path in the package -> mode string, from dpkg-deb --contents."""
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True).stdout
    return {line.split()[-1].lstrip("."): line.split()[0] for line in listing.splitlines()}


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("debs")
    built = debpkg.build_packages(make_binaries(work / "bin"), work / "repo", VERSIONS)
    return {info(deb, "Package"): deb for deb in built}


@pytest.fixture(scope="module")
def signing(tmp_path_factory) -> debpkg.SigningKey:
    return debpkg.ensure_signing_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def repo(debs, signing) -> Path:
    repo = debs["kubelet"].parent
    debpkg.write_repository(repo, signing)
    return repo


def test_package_files_are_named_as_on_pkgs_k8s_io(debs):
    assert sorted(deb.name for deb in debs.values()) == [
        "cri-tools_1.36.0-1.1_amd64.deb", "kubeadm_1.36.3-1.1_amd64.deb",
        "kubectl_1.36.3-1.1_amd64.deb", "kubelet_1.36.3-1.1_amd64.deb",
        "kubernetes-cni_1.9.1-1.1_amd64.deb"]


def test_metadata_follows_upstream(debs):
    assert info(debs["kubelet"], "Version") == "1.36.3-1.1"
    assert info(debs["kubelet"], "Depends") == "kubernetes-cni (>= 1.2.0), mount, util-linux"
    assert info(debs["kubelet"], "Recommends") == "iptables (>= 1.8.4)"
    assert info(debs["kubeadm"], "Depends") == ""          # none from 1.32 on
    assert info(debs["kubernetes-cni"], "Version") == "1.9.1-1.1"
    for deb in debs.values():
        assert info(deb, "Architecture") == "amd64"
        assert "built from source by kubestrata" in info(deb, "Description").lower()
        assert "kubestrata" in info(deb, "Maintainer")


@pytest.mark.parametrize("kubernetes, depends", [
    ("1.31.4", "cri-tools (>= 1.30.0)"),
    ("1.29.1", "kubelet (>= 1.19.0), kubectl (>= 1.19.0), kubernetes-cni (>= 1.2.0), "
               "cri-tools (>= 1.28.0)"),
])
def test_kubeadm_depends_follow_the_release(tmp_path, kubernetes, depends):
    versions = {**VERSIONS, "kubernetes": kubernetes}
    built = debpkg.build_packages(make_binaries(tmp_path / "bin"), tmp_path / "out", versions)
    kubeadm = next(deb for deb in built if deb.name.startswith("kubeadm_"))
    assert kubeadm.name == f"kubeadm_{kubernetes}-1.1_amd64.deb"
    assert info(kubeadm, "Depends") == depends


def test_older_releases_are_refused(tmp_path):
    with pytest.raises(debpkg.DebPkgError, match="1.28 and newer"):
        debpkg.build_packages(make_binaries(tmp_path / "bin"), tmp_path / "out",
                              {**VERSIONS, "kubernetes": "1.27.9"})


def test_files_land_where_upstream_puts_them(debs):
    kubelet = contents(debs["kubelet"])
    assert kubelet["/usr/bin/kubelet"] == "-rwxr-xr-x"
    assert kubelet["/usr/lib/systemd/system/kubelet.service"] == "-rw-------"
    assert "/etc/kubernetes/manifests/.kubelet-keep" in kubelet
    assert "/var/lib/kubelet/.kubelet-keep" in kubelet
    assert "/etc/default/kubelet" in kubelet
    assert "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf" in contents(debs["kubeadm"])
    assert "/usr/bin/kubectl" in contents(debs["kubectl"])
    assert contents(debs["cri-tools"])["/usr/bin/crictl"] == "-rwxr-xr-x"
    cni = contents(debs["kubernetes-cni"])
    assert {p for p in cni if p.startswith("/opt/cni/bin/") and not p.endswith("/")} == {
        f"/opt/cni/bin/{p}" for p in CNI_PLUGINS}
    assert "/etc/cni/net.d/.kubernetes-cni-keep" in cni


def test_unit_and_drop_in_text(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(debs["kubeadm"]), str(tmp_path)], check=True)
    drop_in = (tmp_path / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert "EnvironmentFile=-/etc/default/kubelet\n" in drop_in      # the Debian form
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n" in drop_in
    assert drop_in.endswith("ExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS "
                            "$KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n")
    control = subprocess.run(["dpkg-deb", "--info", str(debs["kubelet"]), "conffiles"],
                             capture_output=True, text=True, check=True).stdout
    assert control == "/etc/default/kubelet\n"


def test_kubelet_scripts_enable_on_install_and_disable_on_removal(debs, tmp_path):
    """The maintainer scripts run against a systemctl that records what it is asked."""
    subprocess.run(["dpkg-deb", "--control", str(debs["kubelet"]), str(tmp_path / "DEBIAN")],
                   check=True)
    (tmp_path / "bin").mkdir()
    systemctl = tmp_path / "bin" / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    systemctl.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}

    def calls(script: str, *args: str) -> str:
        (tmp_path / "calls").write_text("")
        subprocess.run([str(tmp_path / "DEBIAN" / script), *args], env=env, check=True)
        return (tmp_path / "calls").read_text()

    assert "--no-reload preset kubelet.service" in calls("postinst", "configure", "")
    assert "preset" not in calls("postinst", "configure", "1.36.2-1.1")       # an upgrade
    assert "--no-reload disable --now kubelet.service" in calls("prerm", "remove")
    assert calls("prerm", "upgrade", "1.36.4-1.1") == ""


def test_rebuild_is_byte_identical(debs, tmp_path):
    again = debpkg.build_packages(make_binaries(tmp_path / "bin"), tmp_path / "out", VERSIONS)
    for deb in again:
        assert deb.read_bytes() == (debs["kubelet"].parent / deb.name).read_bytes(), deb.name


def test_signing_key_is_made_once_even_when_asked_twice_at_once(tmp_path):
    with ThreadPoolExecutor(2) as pool:
        keys = list(pool.map(debpkg.ensure_signing_key, [tmp_path, tmp_path]))
    assert keys[0] == keys[1] == debpkg.ensure_signing_key(tmp_path)
    home = keys[0].home
    assert home.stat().st_mode & 0o777 == 0o700
    listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"],
                             capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")] == [
        keys[0].fingerprint]
    assert "kubestrata bundle signing key (" in listing
    assert keys[0].public_key_path.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_missing_gpg_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandError, match="apt-get install -y gnupg"):
        debpkg.ensure_signing_key(tmp_path / "key")


def test_release_lists_the_indexes_and_is_signed(repo, signing, tmp_path):
    release = (repo / "Release").read_text()
    assert "Architectures: amd64\n" in release and "Components" not in release
    assert release.count(" Packages.gz\n") == 2        # MD5Sum and SHA256
    packages = (repo / "Packages").read_text()
    assert gzip.decompress((repo / "Packages.gz").read_bytes()).decode() == packages
    assert "Filename: ./kubelet_1.36.3-1.1_amd64.deb" in packages
    keyring = tmp_path / "key.gpg"
    subprocess.run(["gpg", "--dearmor", "--output", str(keyring), str(signing.public_key_path)],
                   check=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), str(repo / "InRelease")], check=True,
                   capture_output=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), str(repo / "Release.gpg"),
                    str(repo / "Release")], check=True, capture_output=True)


def apt(work: Path, source: Path, key: Path, *args: str, cwd: Path | None = None):
    """apt-get or apt-cache with every setting private to work, one source: repository `source`."""
    (work / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (work / "cache").mkdir(exist_ok=True)
    (work / "sources.list").write_text(f"deb [signed-by={key}] file:{source} ./\n")
    options = ["-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
               "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", "Dir::Etc::Preferences=/dev/null",
               "-o", "Dir::Etc::PreferencesParts=/dev/null",
               "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
               "-o", "Dir::State::status=/dev/null", "-o", "Debug::NoLocking=1",
               "-o", "APT::Sandbox::User=root"]
    return subprocess.run([args[0], *options, *args[1:]], capture_output=True, text=True, cwd=cwd)


def test_apt_accepts_the_repository_and_installs_the_unit(repo, signing, tmp_path):
    key = signing.public_key_path
    update = apt(tmp_path, repo, key, "apt-get", "update")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "W:" not in update.stderr, update.stderr
    policy = apt(tmp_path, repo, key, "apt-cache", "policy", "kubelet").stdout
    assert "Candidate: 1.36.3-1.1" in policy
    (tmp_path / "download").mkdir()
    download = apt(tmp_path, repo, key, "apt-get", "download", "kubelet",
                   cwd=tmp_path / "download")
    assert download.returncode == 0, download.stderr
    subprocess.run(["dpkg-deb", "-x", str(tmp_path / "download/kubelet_1.36.3-1.1_amd64.deb"),
                    str(tmp_path / "node")], check=True)
    unit = tmp_path / "node/usr/lib/systemd/system/kubelet.service"
    assert unit.read_text() == (TEMPLATE_DIR / "debpkg/kubelet.service").read_text()
    assert "ExecStart=/usr/bin/kubelet\n" in unit.read_text()


@pytest.fixture
def copy_of_repo(repo, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    return copy


def test_apt_refuses_a_repository_signed_by_another_key(copy_of_repo, signing, tmp_path):
    debpkg.write_repository(copy_of_repo, debpkg.ensure_signing_key(tmp_path / "other"))
    update = apt(tmp_path / "apt", copy_of_repo, signing.public_key_path, "apt-get", "update")
    assert update.returncode != 0
    assert "NO_PUBKEY" in update.stdout + update.stderr


def test_apt_refuses_a_changed_index(copy_of_repo, signing, tmp_path):
    packages = (copy_of_repo / "Packages").read_text().replace("1.36.3-1.1", "1.36.9-1.1")
    (copy_of_repo / "Packages").write_text(packages)
    (copy_of_repo / "Packages.gz").write_bytes(gzip.compress(packages.encode()))
    update = apt(tmp_path / "apt", copy_of_repo, signing.public_key_path, "apt-get", "update")
    assert update.returncode != 0
    assert "Hash Sum mismatch" in update.stdout + update.stderr

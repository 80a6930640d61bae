"""The VMs' base image from a URL: downloaded once into the cache and checked against its
checksum (kubestrata.vmimage), from a web server of the test's own."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from kubestrata import paths, vmimage, vms

IMAGE = b"QFI\xfb" + bytes(range(256)) * 4096          # a megabyte that starts like a qcow2


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A web server of tmp_path/www (images/debian.qcow2 and its SHA512SUMS); its base URL.
    Each request's path is appended to server.requests."""
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")
    www = tmp_path / "www" / "images"
    www.mkdir(parents=True)
    (www / "debian.qcow2").write_bytes(IMAGE)
    (www / "SHA512SUMS").write_text(f"{hashlib.sha512(b'other').hexdigest()}  other.raw\n"
                                    f"{hashlib.sha512(IMAGE).hexdigest()}  debian.qcow2\n")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield type("Server", (), {"url": f"http://127.0.0.1:{httpd.server_port}/images/",
                              "www": www, "requests": requests})
    httpd.shutdown()
    httpd.server_close()


def test_an_image_is_downloaded_once_and_checked_against_the_sha512sums_beside_it(server):
    url = server.url + "debian.qcow2"
    said = []
    path = vmimage.fetch(url, None, log=said.append)
    assert path == vmimage.cached(url, None) and path.read_bytes() == IMAGE
    assert path.parent.parent == paths.CACHE_DIR / "vm-images"
    assert said == [f"downloading {url} into {path} (checked against its sha512)"]
    assert server.requests == ["/images/SHA512SUMS", "/images/debian.qcow2"]
    (server.www / "debian.qcow2").write_bytes(b"a newer image at the same address")
    assert vmimage.fetch(url, None, log=said.append).read_bytes() == IMAGE, "the cache's"
    assert len(server.requests) == 2 and len(said) == 1
    assert vmimage.source(url, None) == str(path)
    assert vmimage.source("/srv/debian.qcow2", None) == "/srv/debian.qcow2"


def test_a_damaged_download_is_refused_and_not_kept(server):
    (server.www / "debian.qcow2").write_bytes(IMAGE[:-1] + b"\0")
    url = server.url + "debian.qcow2"
    with pytest.raises(vmimage.ImageError, match=rf"^kubestrata:image: {url} does not match its "
                                                 r"checksum \(sha512 [0-9a-f]{16}\.\.\., the "
                                                 r"download's [0-9a-f]{16}\.\.\.\): the download "
                                                 "is damaged"):
        vmimage.fetch(url, None, log=print)
    assert list(vmimage.cached(url, None).parent.iterdir()) == []


def test_a_checksum_given_is_the_one_checked(server):
    url = server.url + "debian.qcow2"
    good = f"sha256:{hashlib.sha256(IMAGE).hexdigest()}"
    assert vmimage.fetch(url, good, log=print).read_bytes() == IMAGE
    assert server.requests == ["/images/debian.qcow2"], "no SHA512SUMS asked for"
    with pytest.raises(vmimage.ImageError, match="does not match its checksum .sha256 "):
        vmimage.fetch(url, f"sha256:{hashlib.sha256(b'x').hexdigest()}", log=print)


@pytest.mark.parametrize("sums, problem", [
    (None, r"SHA512SUMS, to check the image against, cannot be read \(HTTP 404\); set "
           r"kubestrata:imageChecksum to the image's sha256:HEX or sha512:HEX"),
    ("0123  debian.qcow2\n", r"SHA512SUMS lists no debian.qcow2; set kubestrata:imageChecksum"),
])
def test_an_image_without_a_published_checksum_asks_for_one(server, sums, problem):
    (server.www / "SHA512SUMS").unlink()
    if sums is not None:
        (server.www / "SHA512SUMS").write_text(sums)
    with pytest.raises(vmimage.ImageError, match=rf"^kubestrata:imageChecksum: {server.url}"
                                                 + problem):
        vmimage.fetch(server.url + "debian.qcow2", None, log=print)


def test_an_image_that_cannot_be_downloaded_is_one_line(server):
    url = server.url + "missing.qcow2"
    with pytest.raises(vmimage.ImageError) as error:
        vmimage.fetch(url, f"sha256:{hashlib.sha256(IMAGE).hexdigest()}", log=print)
    assert str(error.value) == (f"kubestrata:image: {url} cannot be downloaded (HTTP 404); "
                                "check the address, or download the image yourself and set "
                                "image to the file")


@pytest.mark.parametrize("checksum", ["sha256:abc", "md5:" + "0" * 32,
                                      "sha512:" + "A" * 128, "sha256:" + "0" * 128])
def test_a_malformed_checksum_is_refused(checksum):
    from kubestrata import topology
    [problem] = vms.check(topology.load("all-in-one"), vms.Settings(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin",
        image_checksum=checksum))
    assert problem.startswith(f"kubestrata:imageChecksum: {checksum!r} is not a checksum; "
                              "write sha256:HEX or sha512:HEX")

"""The VMs' base image from a URL: downloaded once into the cache, checked against its checksum,
and handed to the provider as that file (docs/libvirt.md, kubestrata:imageChecksum).

The checksum is the stack's imageChecksum, or else the image's line in the SHA512SUMS beside it
(Debian publishes one in each cloud image directory). The cached file is named by the URL and
the checksum given, so a moving URL (.../latest/...) keeps the image of its first download: every
node, and every node added later, boots the same image until the cached file is deleted.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from kubestrata import paths

SUMS_FILE = "SHA512SUMS"
CHECKSUM = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$(?!\n)")
TIMEOUT = 60


class ImageError(Exception):
    pass


def is_url(image: str) -> bool:
    return urlsplit(image).scheme in ("http", "https")


def source(image: str, checksum: str | None) -> str:
    """What the provider uploads: a URL's cached file, or the local file given."""
    return str(cached(image, checksum)) if is_url(image) else image


def cached(url: str, checksum: str | None) -> Path:
    """Where the image of url (with the checksum given, if any) lies in the cache."""
    key = hashlib.sha256(f"{url}\n{checksum or ''}".encode()).hexdigest()[:16]
    return paths.CACHE_DIR / "vm-images" / key / Path(urlsplit(url).path).name


def fetch(url: str, checksum: str | None, log=print) -> Path:
    """The cached image of url, downloaded and checked first if it is not there yet."""
    path = cached(url, checksum)
    if path.exists():
        return path
    expected = checksum or _published_checksum(url)
    algorithm, _, digest = expected.partition(":")
    log(f"downloading {url} into {path} (checked against its {algorithm})")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    hashed = hashlib.new(algorithm)
    failed = (f"kubestrata:image: {url} cannot be downloaded ({{reason}}); check the address, "
              "or download the image yourself and set image to the file")
    try:
        with _open(url, failed) as answer, partial.open("wb") as out:
            while chunk := answer.read(1 << 20):
                hashed.update(chunk)
                out.write(chunk)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ImageError(failed.replace("{reason}", str(error))) from None
    if hashed.hexdigest() != digest:
        partial.unlink()
        raise ImageError(f"kubestrata:image: {url} does not match its checksum ({algorithm} "
                         f"{digest[:16]}..., the download's {hashed.hexdigest()[:16]}...): "
                         "the download is damaged or the image changed since; run again, or "
                         "correct kubestrata:imageChecksum")
    partial.replace(path)
    return path


def _published_checksum(url: str) -> str:
    """The image's SHA-512 from the SHA512SUMS beside it."""
    sums = urljoin(url, SUMS_FILE)
    name = Path(urlsplit(url).path).name
    fix = "set kubestrata:imageChecksum to the image's sha256:HEX or sha512:HEX"
    with _open(sums, f"kubestrata:imageChecksum: {sums}, to check the image against, cannot "
                     f"be read ({{reason}}); {fix}") as answer:
        text = answer.read().decode(errors="replace")
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == name and \
                CHECKSUM.match(f"sha512:{fields[0].lower()}"):
            return f"sha512:{fields[0].lower()}"
    raise ImageError(f"kubestrata:imageChecksum: {sums} lists no {name}; {fix}")


def _open(url: str, failed: str):
    """urlopen(url); failed, with {reason} filled in, is the ImageError when it fails."""
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise ImageError(failed.replace("{reason}", reason))

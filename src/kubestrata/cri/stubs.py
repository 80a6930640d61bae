"""Python gRPC stubs for the CRI, compiled from the real api.proto on first use and cached.

The proto is k8s.io/cri-api/pkg/apis/runtime/v1/api.proto as Debian ships it in
golang-github-kubernetes-cri-api-dev (trixie); the .deb is fetched with a private apt
configuration under the kubestrata cache, so the host's apt setup is untouched. grpcio-tools
compiles it. Compiling here instead of committing generated code keeps a single source (the
packaged proto) and stubs that always match the pinned grpcio-tools and protobuf runtime.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from kubestrata.cachedir import locked
from kubestrata.lab import debian
from kubestrata.paths import CACHE_DIR
from kubestrata.shell import run

PACKAGE = "golang-github-kubernetes-cri-api-dev"
SUITE = "trixie"
PROTO = "usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto"
MODULE = "kubestrata_cri_v1"        # the generated package: kubestrata_cri_v1.api_pb2(_grpc)


def load() -> tuple[ModuleType, ModuleType]:
    """(api_pb2, api_pb2_grpc), compiled on first use."""
    root = _compiled()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return (importlib.import_module(f"{MODULE}.api_pb2"),
            importlib.import_module(f"{MODULE}.api_pb2_grpc"))


def _compiled() -> Path:
    """The generated stubs' directory, made once; several checks ask at once (kubestrata
    verify's workers), so one makes them while the others wait."""
    with locked(CACHE_DIR / "cri"):
        return _compile()


def _compile() -> Path:
    deb = _deb()
    tools_version = importlib.metadata.version("grpcio-tools")
    root = CACHE_DIR / "cri" / f"{deb.stem}-grpcio-tools-{tools_version}"
    if (root / MODULE / "api_pb2_grpc.py").exists():
        return root
    with tempfile.TemporaryDirectory(prefix="kubestrata-cri-") as scratch:
        unpacked = Path(scratch) / "deb"
        run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        source = Path(scratch) / "src" / MODULE
        source.mkdir(parents=True)
        (source / "api.proto").write_text(_without_gogo((unpacked / PROTO).read_text()))
        building = Path(scratch) / "out"
        (building / MODULE).mkdir(parents=True)
        run([sys.executable, "-m", "grpc_tools.protoc", f"-I{source.parent}",
             f"--python_out={building}", f"--grpc_python_out={building}", f"{MODULE}/api.proto"])
        (building / MODULE / "__init__.py").write_text("")
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(building, root)
    return root


def _without_gogo(proto: str) -> str:
    """Drop the gogoproto import and file options: they only steer Go code generation (no
    message, field or service changes) and name a proto Python cannot import."""
    kept = [line for line in proto.splitlines() if "gogo" not in line]
    removed = len(proto.splitlines()) - len(kept)
    if not 1 <= removed <= 10:
        raise RuntimeError(f"{PROTO}: expected a few gogoproto lines, found {removed}; "
                           "the packaged proto changed shape")
    return "\n".join(kept) + "\n"


def _deb() -> Path:
    """The cached .deb holding api.proto, downloaded once from Debian's archive."""
    debs = CACHE_DIR / "cri" / "debs"
    cached = sorted(debs.glob(f"{PACKAGE}_*.deb"))
    return cached[-1] if cached else debian.fetch(PACKAGE, debs, suite=SUITE)

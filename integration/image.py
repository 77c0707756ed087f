"""Build cri-net's node image (the repository's ``Dockerfile``) here, without a registry.

No registry is reachable from these machines, so ``FROM debian:bookworm-slim`` is served by
a local image made the way Debian makes it: ``debootstrap --variant=minbase bookworm`` plus
the slim trimming (docs, man pages, locales, apt lists). The Dockerfile is then built with
Debian's ``buildah bud --isolation chroot`` from a snapshot of the repository (the files the
``.dockerignore`` lets through) plus a wheelhouse of the pinned dependencies, so pip needs no
index (``--build-arg PIP_ARGS=...``, as the Dockerfile documents for offline builds). The
result is written as a docker archive that ``ctr images import`` loads.

Both artefacts are cached in :data:`CACHE_DIR`, keyed by a hash of their inputs: the base by
the debootstrap arguments and this module's trimming, the image by every byte of the build
context and the base's key. buildah's own storage is a temporary dir, removed after each
build, so the cache is just the two archives.

:func:`node_image` returns an :class:`ImageBuild` (archive path, image name, size, how long
the build took, whether it came from the cache). :class:`HarnessError` means the host could
not build it; callers turn that into a test failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from integration.containerd.harness import HarnessError, ensure_packages

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
CACHE_DIR = Path("/tmp/crinet-image-cache")
#: The name the manifests use (deploy/cri-net.yaml) and the archive carries.
IMAGE_NAME = "localhost/cri-net:dev"
BASE_NAME = "docker.io/library/debian:bookworm-slim"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
BUILD_PACKAGES = {"buildah": "/usr/bin/buildah", "debootstrap": "/usr/sbin/debootstrap"}
#: What the slim variant of Debian's image drops from minbase (it keeps dpkg's database).
SLIM_REMOVE = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
               "var/cache/apt", "var/cache/debconf/templates.dat-old", "var/log"]
#: A cold build (debootstrap + two apt stages + pip) takes a few minutes on 2 cores.
BUILD_TIMEOUT = 1500


@dataclass(frozen=True)
class ImageBuild:
    archive: Path
    name: str
    key: str
    #: the image's uncompressed layer bytes (what a node stores)
    size: int
    #: seconds this call spent (≈0 when cached)
    seconds: float
    cached: bool
    base_seconds: float = 0.0


def _run(argv: list[str], timeout: float, what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what} took more than {timeout:.0f}s: {' '.join(argv)}") from None
    if proc.returncode != 0:
        raise HarnessError(f"{what} failed ({proc.returncode}): {' '.join(argv)}\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@contextlib.contextmanager
def _lock(name: str):  # type: ignore[no-untyped-def]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------- the base


def base_key() -> str:
    recipe = json.dumps([SUITE, MIRROR, "minbase", SLIM_REMOVE, os.uname().machine]).encode()
    return _digest(recipe)


def base_archive() -> tuple[Path, float]:
    """The ``debian:bookworm-slim`` root filesystem tar (debootstrap'd unless cached); with the
    seconds spent making it."""
    key = base_key()
    target = CACHE_DIR / f"debian-{SUITE}-slim-{key}.tar"
    if target.is_file():
        return target, 0.0
    ensure_packages(BUILD_PACKAGES)
    with _lock("base"):
        if target.is_file():
            return target, 0.0
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE_DIR))
        rootfs = work / "rootfs"
        try:
            _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR], 900, "debootstrap")
            for rel in SLIM_REMOVE:
                shutil.rmtree(rootfs / rel, ignore_errors=True)
            (rootfs / "var/log").mkdir(exist_ok=True)
            tmp = work / "rootfs.tar"
            _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tmp),
                  "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*", "."], 300, "tar of the base")
            os.replace(tmp, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target, time.monotonic() - t0


# --------------------------------------------------------------------------- the context


def dependency_pins() -> list[str]:
    """cri-net's runtime dependency closure at this venv's versions, plus setuptools for
    building cri-net itself."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = [str(r) for r in metadata.requires("cri-net") or []]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            pins[name] = metadata.version(name)
            todo += [str(r) for r in metadata.requires(name) or []]
    try:
        setuptools = f"setuptools=={metadata.version('setuptools')}"
    except metadata.PackageNotFoundError:
        setuptools = "setuptools>=68"
    return sorted(f"{n}=={v}" for n, v in pins.items()) + [setuptools]


def wheelhouse(dest: Path) -> list[str]:
    """Download wheels of :func:`dependency_pins` into ``dest`` (this host's pip config:
    its index, or local wheel dirs); returns the pins."""
    pins = dependency_pins()
    dest.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
          "--platform", "manylinux_2_17_x86_64", "--platform", "linux_x86_64", "--platform", "any",
          "-d", str(dest), *pins], 600, "pip download of the pinned dependencies")
    return pins


def context_files() -> list[Path]:
    """The build context's files, relative to the repository: what ``.dockerignore`` admits."""
    keep = ["pyproject.toml", "README.md", "constraints.txt", "Dockerfile", ".dockerignore"]
    files = [Path(k) for k in keep]
    for top in ("cri_net", "adaptors"):
        files += sorted(p.relative_to(ROOT) for p in (ROOT / top).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def stage_context(dest: Path) -> str:
    """Copy the context (and a wheelhouse) into ``dest``; returns its content key."""
    parts: list[bytes] = []
    for rel in context_files():
        data = (ROOT / rel).read_bytes()
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        parts += [str(rel).encode(), data]
    pins = wheelhouse(dest / "wheels")
    parts += [p.encode() for p in pins]
    return _digest(*parts)


# ------------------------------------------------------------------------------- the image


def _layers_size(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        return sum(m.size for m in tar.getmembers() if m.isfile() and not m.name.endswith(".json"))


def node_image() -> ImageBuild:
    """The node image as a docker archive naming :data:`IMAGE_NAME` (built unless cached)."""
    ensure_packages(BUILD_PACKAGES)
    t0 = time.monotonic()
    base, base_seconds = base_archive()
    work = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE_DIR))
    try:
        context = work / "context"
        context.mkdir()
        key = _digest(stage_context(context).encode(), base.name.encode(), Path(__file__).read_bytes())
        target = CACHE_DIR / f"cri-net-{key}.tar"
        if target.is_file():
            return ImageBuild(target, IMAGE_NAME, key, _layers_size(target), time.monotonic() - t0, True)
        with _lock("image"):
            if not target.is_file():
                _build(base, context, work, target)
        return ImageBuild(target, IMAGE_NAME, key, _layers_size(target), time.monotonic() - t0, False,
                          base_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(base: Path, context: Path, work: Path, target: Path) -> None:
    storage = work / "storage"
    store = ["--root", str(storage), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    try:
        # The base image: a scratch container holding the slim rootfs, committed under the name
        # the Dockerfile's FROM resolves to.
        ctr = _run(["buildah", *store, "from", "scratch"], 60, "buildah from scratch").stdout.strip()
        _run(["buildah", *store, "add", ctr, str(base), "/"], 300, "buildah add of the base rootfs")
        _run(["buildah", *store, "config", "--env",
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--cmd", "bash", ctr], 60,
             "buildah config of the base")
        _run(["buildah", *store, "commit", "--quiet", "--rm", ctr, BASE_NAME], 300, "buildah commit of the base")
        _run(["buildah", *store, "bud", "--isolation", "chroot", "--pull-never", "--layers=false",
              "--build-arg", "PIP_ARGS=--no-index --find-links /src/wheels",
              "-f", str(context / "Dockerfile"), "-t", IMAGE_NAME, str(context)],
             BUILD_TIMEOUT, "buildah bud of the Dockerfile")
        tmp = work / "image.tar"
        _run(["buildah", *store, "push", IMAGE_NAME, f"docker-archive:{tmp}:{IMAGE_NAME}"], 300,
             "buildah push to a docker archive")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["buildah", *store, "rm", "--all"], capture_output=True, timeout=60)
        if storage.exists():
            # vfs layers may hold read-only dirs; overlay would leave mounts (none with vfs).
            subprocess.run(["chmod", "-R", "u+w", str(storage)], capture_output=True, timeout=120)

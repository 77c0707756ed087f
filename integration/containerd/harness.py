"""A real containerd (1.6, CRI plugin) for cri-net's end-to-end tests (issue 5).

``containerd_env(tmp_path, cni_conf, cni_bin_dirs)`` is a context manager that:

1. makes sure the host can run containerd: installs Debian's ``containerd`` and ``crun``
   when dpkg says they are missing (and ``gcc`` + ``libc6-dev`` to build the pause image),
   and on a hybrid cgroup host whose unified hierarchy still holds a controller (crun
   refuses those) mounts that controller as a v1 hierarchy;
2. builds the sandbox ("pause") image from ``pause.c`` as a one-layer OCI archive (cached
   in /tmp, keyed by the sources' hash), since no registry is reachable;
3. starts ``containerd --config <tmp>/config.toml`` with its own root, state, socket,
   runtime (crun behind the runc v2 shim) and CNI dirs, all under ``tmp_path``, imports
   the image with ``ctr``, and waits until the CRI plugin reports the image and
   ``NetworkReady``;
4. yields a :class:`ContainerdEnv` (``.endpoint``, ``.client()``, ``.log``, ...);
5. tears everything down, passed or failed test: every pod still known is stopped and
   removed through CRI, containerd is stopped, and whatever it left is removed (containers
   in crun's state dir, shims serving its socket, mounts under its dirs, network
   namespaces it pinned in /run/netns).

:class:`HarnessError` means the host could not be prepared; callers turn it into a test
failure (never a skip).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from string import Template
from typing import Any

import grpc

from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from integration.hostaudit import IptablesLine, Link, Qdisc, UniqueNet, ifb_name

HERE = Path(__file__).resolve().parent
PAUSE_SOURCE = HERE / "pause.c"
CONFIG_TEMPLATE = HERE / "config.toml.tmpl"

SANDBOX_IMAGE = "localhost/crinet-pause:test"
RUNTIME_BINARY = "/usr/bin/crun"
#: containerd 1.6 pins every pod network namespace here as ``cni-<uuid>`` (not configurable).
NETNS_DIR = Path("/run/netns")
#: Where the built pause image archives are cached between runs.
IMAGE_CACHE_DIR = Path("/tmp/crinet-containerd-cache")

#: Debian packages: what must be installed, and the file that proves each one is usable.
RUNTIME_PACKAGES: dict[str, str] = {"containerd": "/usr/bin/containerd", "crun": RUNTIME_BINARY}
BUILD_PACKAGES: dict[str, str] = {"gcc": "/usr/bin/gcc", "libc6-dev": "/usr/include/stdio.h"}

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

_NETNS_RE = re.compile(r"/(?:var/)?run/netns/(cni-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_ID_RE = re.compile(r"(?<![0-9a-f:])[0-9a-f]{64}(?![0-9a-f])")


class HarnessError(RuntimeError):
    """The host cannot run the containerd e2e tests (install, cgroups, start-up...)."""


# ------------------------------------------------------------------- host preparation


def _run(argv: list[str], timeout: float = 60.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, **kw)


@contextlib.contextmanager
def _host_lock(name: str) -> Iterator[None]:
    """Serialise host-wide preparation between concurrent test processes."""
    path = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    with open(path / f"crinet-{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _dpkg_installed(package: str) -> bool:
    proc = _run(["dpkg-query", "-W", "-f=${Status}", package])
    return proc.returncode == 0 and proc.stdout.strip().endswith("install ok installed")


def ensure_packages(packages: Mapping[str, str]) -> list[str]:
    """apt-get install whichever of ``packages`` dpkg does not list (or whose file is gone).

    Idempotent; returns the packages it installed.  Raises :class:`HarnessError`.
    """
    missing = [p for p, f in packages.items() if not (_dpkg_installed(p) and os.path.exists(f))]
    if not missing:
        return []
    if shutil.which("apt-get") is None:
        raise HarnessError(f"packages {missing} are missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _host_lock("apt"):
        missing = [p for p, f in packages.items() if not (_dpkg_installed(p) and os.path.exists(f))]
        if not missing:
            return []
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        upd = _run(["apt-get", *lock, "update"], timeout=600, env=env)
        inst = _run(["apt-get", *lock, "install", "-y", "--no-install-recommends", *missing], timeout=900, env=env)
        if inst.returncode != 0:
            raise HarnessError(
                f"apt-get install {' '.join(missing)} failed ({inst.returncode}):\n{inst.stderr[-2000:]}\n"
                f"(apt-get update said: {upd.stderr[-500:]})")
    still = [p for p, f in packages.items() if not os.path.exists(f)]
    if still:
        raise HarnessError(f"after apt-get install, still missing: {still}")
    return missing


def _fs_type(path: Path) -> str:
    proc = _run(["stat", "-f", "-c", "%T", str(path)])
    return proc.stdout.strip() if proc.returncode == 0 else ""


def prepare_cgroups() -> list[str]:
    """Make the cgroup layout one crun accepts; returns what was changed ([] usually).

    Pure v2 (``/sys/fs/cgroup`` is cgroup2) and pure v1 are fine.  On a hybrid layout crun
    refuses to run while the unified hierarchy (``/sys/fs/cgroup/unified``) holds any
    controller; each such controller (typically ``hugetlb``, which has no v1 mount on such
    hosts) is mounted as its own v1 hierarchy, which moves it out of the unified one.
    """
    unified = CGROUP_ROOT / "unified"
    if _fs_type(CGROUP_ROOT) == "cgroup2fs" or _fs_type(unified) != "cgroup2fs":
        return []
    controllers_file = unified / "cgroup.controllers"
    changed: list[str] = []
    with _host_lock("cgroup"):
        controllers = controllers_file.read_text().split()
        for ctrl in controllers:
            target = CGROUP_ROOT / ctrl
            target.mkdir(parents=True, exist_ok=True)
            proc = _run(["mount", "-t", "cgroup", "-o", ctrl, "cgroup", str(target)])
            changed.append(f"mounted the {ctrl} cgroup controller as a v1 hierarchy on {target}"
                           + ("" if proc.returncode == 0 else f" (mount said: {proc.stderr.strip()})"))
        left = controllers_file.read_text().split()
    if left:
        raise HarnessError(f"the cgroup v2 hierarchy {unified} still holds controllers {left} and crun refuses "
                           f"hybrid layouts like that; tried: {changed}")
    return changed


# ------------------------------------------------------------------------ pause image


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)


def _tar_bytes(files: Iterable[tuple[str, bytes | None, int]]) -> bytes:
    """A deterministic tar: (name, data or None for a directory, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "root", "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def oci_archive(binary: bytes, name: str = SANDBOX_IMAGE, entrypoint: str = "/pause") -> bytes:
    """A one-layer OCI image layout, as a tar ``ctr images import`` takes, naming ``name``."""
    layer = _tar_bytes([("dev", None, 0o755), ("etc", None, 0o755), ("proc", None, 0o755),
                        ("sys", None, 0o755), (entrypoint.lstrip("/"), binary, 0o755)])
    blobs: dict[str, bytes] = {}
    layer_desc = _blob(blobs, layer, "application/vnd.oci.image.layer.v1.tar")
    arch = _goarch()
    config = {
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": [entrypoint], "WorkingDir": "/",
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "integration/containerd/harness.py: gcc -static pause.c"}],
    }
    config_desc = _blob(blobs, json.dumps(config, sort_keys=True).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, json.dumps(manifest, sort_keys=True).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["platform"] = {"architecture": arch, "os": "linux"}
    manifest_desc["annotations"] = {"io.containerd.image.name": name,
                                    "org.opencontainers.image.ref.name": name.rpartition(":")[2]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    entries: list[tuple[str, bytes | None, int]] = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
        ("index.json", json.dumps(index, sort_keys=True).encode(), 0o644),
        ("blobs", None, 0o755), ("blobs/sha256", None, 0o755)]
    entries += [(f"blobs/sha256/{d.split(':', 1)[1]}", data, 0o644) for d, data in sorted(blobs.items())]
    return _tar_bytes(entries)


def pause_image(cache_dir: Path = IMAGE_CACHE_DIR, name: str = SANDBOX_IMAGE) -> Path:
    """The pause image archive, built (gcc -static) unless cached for these sources."""
    key = hashlib.sha256(PAUSE_SOURCE.read_bytes() + Path(__file__).read_bytes() + name.encode()
                         + _goarch().encode()).hexdigest()[:16]
    target = cache_dir / f"pause-{key}.tar"
    if target.is_file():
        return target
    ensure_packages(BUILD_PACKAGES)
    cache_dir.mkdir(parents=True, exist_ok=True)
    binary = cache_dir / f"pause-{key}.{os.getpid()}.bin"
    try:
        proc = _run(["gcc", "-static", "-O2", "-s", "-o", str(binary), str(PAUSE_SOURCE)], timeout=120)
        if proc.returncode != 0:
            raise HarnessError(f"gcc -static {PAUSE_SOURCE} failed:\n{proc.stderr[-2000:]}")
        data = oci_archive(binary.read_bytes(), name)
    finally:
        binary.unlink(missing_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


# ------------------------------------------------------------------------ inspection


def mounts_under(prefixes: Iterable[Path]) -> list[str]:
    """Mount points below any of ``prefixes``, deepest first."""
    pre = tuple(str(p).rstrip("/") + "/" for p in prefixes)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mp.startswith(pre):
                found.append(mp)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _pids_with_arg(needle: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle.encode() in argv:
            pids.append(int(entry))
    return pids


def netns_of_status(resp: pb.PodSandboxStatusResponse) -> str | None:
    """The network namespace path in containerd's verbose PodSandboxStatus info."""
    raw = resp.info.get("info")
    if not raw:
        return None
    info = json.loads(raw)
    for ns in (info.get("runtimeSpec") or {}).get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network" and ns.get("path"):
            return str(ns["path"])
    return None


# -------------------------------------------------------------------------- the env


class ContainerdEnv:
    """One containerd under ``base`` (see the module doc); built by :func:`containerd_env`."""

    def __init__(self, base: Path, cni_conf: dict[str, Any] | bytes | None, cni_bin_dirs: list[str],
                 sandbox_image: str = SANDBOX_IMAGE, cni_conf_file: str | None = None,
                 extra_cni_confs: list[dict[str, Any]] | None = None) -> None:
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.runtime_root = self.state / "crun"
        self.endpoint = str(base / "containerd.sock")
        self.cni_conf_dir = base / "cni-conf"
        self.cni_bin_dir = base / "cni-bin"
        self.config_path = base / "config.toml"
        self.log_path = base / "containerd.log"
        self.sandbox_image = sandbox_image
        self.cni_conf = cni_conf
        self.cni_conf_file = cni_conf_file
        #: more networks for every pod (go-cni's max_conf_num): files 20-, 30-..., so they
        #: sort after the first, which stays the pod's eth0
        self.extra_cni_confs = list(extra_cni_confs or [])
        self.cni_bin_dirs = [str(d) for d in cni_bin_dirs]
        self.proc: subprocess.Popen[bytes] | None = None
        #: Host changes made to run at all (packages installed, cgroup mounts); for the report.
        self.host_changes: list[str] = []
        #: What teardown found and removed (normal after a failed test) / could not remove.
        self.leftovers: list[str] = []
        self.cleanup_failures: list[str] = []
        self._netns_before: set[str] = set()
        self._cgroups_before: set[Path] = set()
        self._netns_seen: set[str] = set()
        self._sandbox_ids: set[str] = set()
        self._clients: list[CRIClient] = []

    # ---- set-up ------------------------------------------------------------------------
    def _write_files(self) -> None:
        for d in (self.root, self.state, self.cni_conf_dir, self.cni_bin_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o711)
        # containerd 1.6 takes a single CNI bin dir: link every executable of the given dirs
        # into one, the first dir naming a plugin winning (as CNI_PATH would).
        for src_dir in self.cni_bin_dirs:
            for entry in sorted(Path(src_dir).iterdir()):
                link = self.cni_bin_dir / entry.name
                if entry.is_file() and os.access(entry, os.X_OK) and not link.exists():
                    link.symlink_to(entry.resolve())
        if self.cni_conf is None:  # written later (a DaemonSet's init container, say)
            pass
        elif isinstance(self.cni_conf, bytes):
            conf_bytes, name = self.cni_conf, "test"
        else:
            conf_bytes, name = json.dumps(self.cni_conf, indent=2).encode(), str(self.cni_conf.get("name", "test"))
        if self.cni_conf is not None:
            suffix = ".conflist" if b'"plugins"' in conf_bytes else ".conf"
            (self.cni_conf_dir / (self.cni_conf_file or f"10-{name}{suffix}")).write_bytes(conf_bytes)
        for i, extra in enumerate(self.extra_cni_confs):
            (self.cni_conf_dir / f"{20 + 10 * i}-{extra['name']}.conflist").write_text(json.dumps(extra, indent=2))
        text = Template(CONFIG_TEMPLATE.read_text()).substitute(
            root=self.root, state=self.state, socket=self.endpoint, sandbox_image=self.sandbox_image,
            snapshotter="overlayfs", runtime_binary=RUNTIME_BINARY, runtime_root=self.runtime_root,
            cni_bin_dir=self.cni_bin_dir, cni_conf_dir=self.cni_conf_dir, max_conf_num=1 + len(self.extra_cni_confs))
        self.config_path.write_text(text)

    def start(self) -> None:
        self.host_changes += ensure_packages(RUNTIME_PACKAGES)
        self.host_changes += prepare_cgroups()
        image = pause_image()
        self._write_files()
        self._netns_before = self._cni_netns()
        self._cgroups_before = set(self._cri_cgroups())
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(["containerd", "--config", str(self.config_path)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        client = self._wait(deadline, self._connect, "the CRI socket to answer Version")
        try:
            proc = _run(["ctr", "--address", self.endpoint, "-n", "k8s.io", "images", "import",
                         "--platform", f"linux/{_goarch()}", str(image)], timeout=START_TIMEOUT)
            if proc.returncode != 0:
                raise HarnessError(f"ctr images import {image} failed: {proc.stderr.strip()}\n{self.log_tail()}")
            self._wait(deadline, lambda: self._image_ready(client), f"CRI to list {self.sandbox_image}")
            if self.cni_conf is not None:
                self._wait(deadline, lambda: self._network_ready(client), "CRI to report NetworkReady")
        finally:
            client.close()

    def import_image(self, archive: Path, name: str, timeout: float = 300.0) -> None:
        """``ctr images import`` one more image (OCI or docker archive) and wait for CRI to list it."""
        proc = _run(["ctr", "--address", self.endpoint, "-n", "k8s.io", "images", "import",
                     "--platform", f"linux/{_goarch()}", str(archive)], timeout=timeout)
        if proc.returncode != 0:
            raise HarnessError(f"ctr images import {archive} failed: {proc.stderr.strip()}\n{self.log_tail()}")
        client = self.client()
        image = pb.ImageSpec(image=name)
        self._wait(time.monotonic() + START_TIMEOUT, lambda: client.images.ImageStatus(
            pb.ImageStatusRequest(image=image), timeout=5).image.id, f"CRI to list {name}")

    def _wait(self, deadline: float, probe: Callable[[], Any], what: str) -> Any:
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"containerd exited ({self.proc.returncode}) while waiting for {what}:\n"
                                   f"{self.log_tail()}")
            try:
                value = probe()
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last, value = str(exc), None
            if value:
                return value
            time.sleep(0.1)
        raise HarnessError(f"timed out after {START_TIMEOUT:.0f}s waiting for {what} (last: {last})\n"
                           f"{self.log_tail()}")

    def _connect(self) -> CRIClient | None:
        if not os.path.exists(self.endpoint):
            return None
        return CRIClient(self.endpoint, timeout=5)

    def _image_ready(self, client: CRIClient) -> bool:
        resp = client.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=self.sandbox_image)),
                                         timeout=5)
        return resp.HasField("image") and bool(resp.image.id)

    def _network_ready(self, client: CRIClient) -> bool:
        # Not CRIClient.info(): containerd's verbose info has values that are not JSON
        # ("golang": "go1.19.8", "lastCNILoadStatus": "OK") and info() decodes them all.
        resp = client.runtime.Status(pb.StatusRequest(verbose=False), timeout=5)
        return any(c.type == "NetworkReady" and c.status for c in resp.status.conditions)

    # ---- API ---------------------------------------------------------------------------
    @property
    def log(self) -> str:
        """containerd's log so far (debug level)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "containerd log (tail):\n" + "\n".join(self.log.splitlines()[-lines:])

    def client(self, timeout: float = 60.0) -> CRIClient:
        """A :class:`CRIClient` on this containerd (closed at teardown)."""
        c = CRIClient(self.endpoint, timeout=timeout)
        self._clients.append(c)
        return c

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def netns_of(self, sandbox_id: str, client: CRIClient | None = None) -> str:
        """The pod's network namespace (``/var/run/netns/cni-<uuid>``), from verbose status."""
        c = client or self.client()
        path = netns_of_status(c.inspectp(sandbox_id, verbose=True))
        if not path:
            raise AssertionError(f"containerd's verbose status of {sandbox_id[:13]} names no network namespace")
        self._netns_seen.add(os.path.realpath(path))
        self._sandbox_ids.add(sandbox_id)
        return path

    def sandbox_ids(self) -> set[str]:
        """Ids of every sandbox this containerd has mentioned (API calls and its log)."""
        found = set(self._sandbox_ids)
        found.update(m for m in _ID_RE.findall(self.log))
        return found

    def _cni_netns(self) -> set[str]:
        try:
            return {str(NETNS_DIR / e) for e in os.listdir(NETNS_DIR) if e.startswith("cni-")}
        except FileNotFoundError:
            return set()

    def netns_mentioned(self) -> set[str]:
        """Namespaces this containerd created: seen in its status answers or named in its log."""
        return self._netns_seen | {str(NETNS_DIR / m) for m in _NETNS_RE.findall(self.log)}

    def foreign_state(self, nets: Iterable[UniqueNet]) -> Callable[[str, Any], bool]:
        """Ignore predicate for ``host_audit``: host state provably *not* this env's.

        The host is shared with concurrent runs.  Foreign: namespaces in /run/netns not
        named like containerd's (``cni-*``) or present before containerd started; links
        that are not the test networks' bridges, veths on no bridge or on those bridges,
        or the bandwidth plugin's ifbs of this env's sandboxes; iptables lines naming
        none of the networks (name, bridge, an address of the subnet), none of this
        env's sandbox ids and no per-pod chain of them; cached results naming none of
        the networks and no sandbox id.  Anything that could be ours is kept.
        """
        nets = list(nets)

        def ours_text(text: str) -> bool:
            word = r"(?<![\w-]){}(?![\w-])"
            for net in nets:
                if any(re.search(word.format(re.escape(w)), text) for w in (net.name, net.bridge)):
                    return True
                for m in re.finditer(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(/\d{1,2})?(?![\d.])", text):
                    with contextlib.suppress(ValueError):
                        if ipaddress.IPv4Network(m.group(1) + (m.group(2) or ""), strict=False).subnet_of(net.subnet):
                            return True
            return any(i in text for i in self.sandbox_ids())

        def pod_chains() -> set[str]:
            chains = set()
            names = [n.name for n in nets] + self.runtime_network_names()
            for sid in self.sandbox_ids():
                for name in names:
                    digest = hashlib.sha512((name + sid).encode()).hexdigest()
                    chains |= {("CNI-" + digest)[:28], ("CNI-DN-" + digest)[:28]}
            return chains

        def foreign_link(name: str) -> bool:
            if any(name == n.bridge for n in nets):
                return False
            if name in {ifb_name(n, i) for n in [x.name for x in nets] for i in self.sandbox_ids()}:
                return False
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError

            # the link (and its master) by name, not a full dump per link: on a host where
            # another run churns thousands of veths that costs minutes per audit
            with IPRoute() as ipr:
                try:
                    [link] = ipr.link("get", ifname=name)
                except NetlinkError:
                    return True  # gone since: not left behind by anyone
                if (link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "") != "veth":
                    return True
                master_index = link.get("master")
                if not master_index:
                    return False
                try:
                    [master] = ipr.link("get", index=master_index)
                except NetlinkError:
                    return False  # its master is gone: kept, as before (a leak must show)
                return master.get("ifname") not in {n.bridge for n in nets}

        def foreign(category: str, item: Any) -> bool:
            if category == "netns":
                return not Path(str(item)).name.startswith("cni-") or str(item) in self._netns_before
            if category == "links" and isinstance(item, Link):
                return foreign_link(item.name)
            if category == "qdiscs" and isinstance(item, Qdisc):
                return foreign_link(item.dev)
            if category == "iptables" and isinstance(item, IptablesLine):
                chains = pod_chains()
                return not (ours_text(item.line) or item.chain in chains or item.target in chains)
            if category == "cache":
                return not ours_text(Path(str(item)).name)
            return False

        return foreign

    def runtime_network_names(self) -> list[str]:
        if isinstance(self.cni_conf, dict) and self.cni_conf.get("name"):
            return [str(self.cni_conf["name"])]
        return []

    # ---- teardown ----------------------------------------------------------------------
    def stop(self) -> None:
        """Remove every pod, stop containerd, remove what it left.  Never raises; see
        :attr:`leftovers` and :attr:`cleanup_failures`."""
        if self.alive():
            self._remove_pods()
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        self._stop_containerd()
        self._remove_containers()
        self._kill_shims()
        self._unmount_and_remove_netns()
        self._unmount_dirs()
        self._remove_cgroup_parents()

    def _cri_cgroups(self) -> list[Path]:
        """containerd's per-namespace cgroup parents (``<hierarchy>/k8s.io``)."""
        return [p for p in CGROUP_ROOT.glob("*/k8s.io") if p.is_dir()]

    def _remove_cgroup_parents(self) -> None:
        """rmdir the ``k8s.io`` cgroup parents this containerd created, once empty (an rmdir
        of a cgroup that still has children or tasks fails, and is then left alone)."""
        for path in self._cri_cgroups():
            if path not in self._cgroups_before:
                with contextlib.suppress(OSError):
                    path.rmdir()

    def _remove_pods(self) -> None:
        try:
            c = CRIClient(self.endpoint, timeout=60)
        except Exception as exc:  # noqa: BLE001
            self.cleanup_failures.append(f"could not connect to containerd to remove pods: {exc}")
            return
        with c:
            try:
                pods = c.pods()
            except grpc.RpcError as exc:
                self.cleanup_failures.append(f"ListPodSandbox: {exc.code()} {exc.details()}")
                return
            for p in pods:
                self._sandbox_ids.add(p.id)
                self.leftovers.append(f"pod {p.metadata.name} ({p.id[:13]}) still present at teardown")
                with contextlib.suppress(Exception):
                    self.netns_of(p.id, c)
                for call, name in ((c.stopp, "StopPodSandbox"), (c.rmp, "RemovePodSandbox")):
                    try:
                        call(p.id)
                    except grpc.RpcError as exc:
                        self.cleanup_failures.append(f"{name} {p.id[:13]}: {exc.code()} {exc.details()}")

    def _stop_containerd(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.leftovers.append(f"containerd did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM; killed")
            self.proc.kill()
            self.proc.wait()

    def _remove_containers(self) -> None:
        """Containers crun still has in this env's runtime root (after a crash or failure)."""
        for ns_dir in (self.runtime_root.iterdir() if self.runtime_root.is_dir() else []):
            for cdir in (ns_dir.iterdir() if ns_dir.is_dir() else []):
                self.leftovers.append(f"container {cdir.name[:13]} still in crun's state")
                proc = _run([RUNTIME_BINARY, "--root", str(ns_dir), "delete", "--force", cdir.name], timeout=30)
                if proc.returncode != 0 and cdir.exists():
                    self.cleanup_failures.append(f"crun delete --force {cdir.name[:13]}: {proc.stderr.strip()}")

    def _kill_shims(self) -> None:
        for pid in _pids_with_arg(self.endpoint):
            if self.proc is not None and pid == self.proc.pid:
                continue
            self.leftovers.append(f"shim pid {pid} still serving {self.endpoint}; killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _unmount_and_remove_netns(self) -> None:
        candidates = {os.path.realpath(p) for p in self.netns_mentioned()} - self._netns_before
        for path in sorted(candidates):
            if not os.path.lexists(path):
                continue
            self.leftovers.append(f"network namespace {path} left by containerd; removed")
            _run(["umount", path])
            try:
                os.unlink(path)
            except OSError as exc:
                self.cleanup_failures.append(f"cannot remove {path}: {exc}")

    def _unmount_dirs(self) -> None:
        for mp in mounts_under([self.root, self.state]):
            self.leftovers.append(f"mount {mp} left under containerd's dirs; unmounted")
            proc = _run(["umount", mp])
            if proc.returncode != 0:
                proc = _run(["umount", "-l", mp])
                if proc.returncode != 0:
                    self.cleanup_failures.append(f"cannot unmount {mp}: {proc.stderr.strip()}")
        if not self.cleanup_failures:
            # The snapshots are not worth keeping in pytest's tmp dirs; the log is.
            for d in (self.root, self.state):
                shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def containerd_env(tmp_path: Path, cni_conf: dict[str, Any] | bytes | None,
                   cni_bin_dirs: list[str], cni_conf_file: str | None = None,
                   extra_cni_confs: list[dict[str, Any]] | None = None) -> Iterator[ContainerdEnv]:
    """A started :class:`ContainerdEnv` in ``tmp_path/containerd``; torn down on exit.
    ``cni_conf_file``: the conflist's file name (default ``10-<name>.conflist``). ``cni_conf``
    None: the conf dir starts empty (something writes it later) and NetworkReady is not awaited.
    ``extra_cni_confs``: more conflists, attached to every pod as eth1, eth2... (max_conf_num).

    Raises :class:`HarnessError` if the host cannot run it (the caller fails the test).
    """
    env = ContainerdEnv(Path(tmp_path) / "containerd", cni_conf, cni_bin_dirs, cni_conf_file=cni_conf_file,
                        extra_cni_confs=extra_cni_confs)
    try:
        env.start()
        yield env
    finally:
        env.stop()

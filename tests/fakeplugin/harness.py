"""`FakeCNI`: installs the fake plugin under chosen names and scripts/inspects its runs."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from cri_net.libcni import CNI, Executor, NetworkConfigList, RuntimeConf, conf_list_from_bytes

PLUGIN_SOURCE = Path(__file__).with_name("fakeplugin.py")


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    """True once `pid` no longer runs (gone, or a zombie nobody reaped: it is dead either way)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


class FakeCNI:
    """A bin dir of fake plugins, their shared script and log, and a cache dir, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.bin = root / "bin"
        self.cache_dir = root / "cache"
        for d in (self.state, self.bin):
            d.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state / "log.jsonl"
        self.script_path = self.state / "script.json"
        self._script: dict[str, dict[str, Any]] = {}
        self._flush()

    # ---- installing ------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The minimal environment the plugin needs (for `Executor(env=...)`)."""
        return {"FAKECNI_DIR": str(self.state)}

    def install(self, *names: str, bin_dir: Path | None = None, legacy: bool = False) -> list[Path]:
        """Install an executable copy of the plugin as each of `names` (a copy, not a link, so
        that one of them can be held open for writing)."""
        target = bin_dir or self.bin
        target.mkdir(parents=True, exist_ok=True)
        text = f"#!{sys.executable} -S\n" + PLUGIN_SOURCE.read_text(encoding="utf-8")
        paths = []
        for name in names:
            path = target / name
            path.write_text(text, encoding="utf-8")
            path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            paths.append(path)
            if legacy:
                self.script(name, "VERSION", legacy=True)
        return paths

    # ---- scripting -------------------------------------------------------------------
    def script(self, name: str, command: str = "*", rules: list[dict[str, Any]] | None = None,
               **behaviour: Any) -> None:
        """Set how plugin `name` answers `command` ("*" = any): keyword behaviour, or `rules`."""
        self._script.setdefault(name, {})[command] = rules if rules is not None else behaviour
        self._flush()

    def _flush(self) -> None:
        tmp = self.script_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._script), encoding="utf-8")
        os.replace(tmp, self.script_path)

    # ---- inspecting ------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        try:
            with open(self.log_path, encoding="utf-8") as fh:
                fcntl.flock(fh, fcntl.LOCK_SH)  # the plugins append under LOCK_EX: no torn lines
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line]

    def calls(self, name: str | None = None, command: str | None = None) -> list[dict[str, Any]]:
        """The plugin starts, in order, optionally only one plugin's and/or one command's."""
        out = []
        for rec in self.records():
            if rec["event"] != "start":
                continue
            if name is not None and rec["name"] != name:
                continue
            if command is not None and rec["env"].get("CNI_COMMAND") != command:
                continue
            out.append(rec)
        return out

    def sequence(self) -> list[tuple[str, str]]:
        """(plugin name, CNI_COMMAND) of every run, in order."""
        return [(r["name"], r["env"]["CNI_COMMAND"]) for r in self.calls()]

    def clear_log(self) -> None:
        self.log_path.unlink(missing_ok=True)

    # ---- building ----------------------------------------------------------------------
    @staticmethod
    def conflist_bytes(*plugins: str | dict[str, Any], name: str = "net1", version: str | None = "1.0.0",
                       **top: Any) -> bytes:
        doc: dict[str, Any] = {}
        if version is not None:
            doc["cniVersion"] = version
        doc["name"] = name
        doc.update(top)
        doc["plugins"] = [{"type": p} if isinstance(p, str) else p for p in plugins]
        return json.dumps(doc).encode("utf-8")

    def conflist(self, *plugins: str | dict[str, Any], name: str = "net1", version: str | None = "1.0.0",
                 **top: Any) -> NetworkConfigList:
        return conf_list_from_bytes(self.conflist_bytes(*plugins, name=name, version=version, **top))

    def cni(self, timeout: float | None = None, busy_wait: float | None = None,
            bin_dirs: Iterable[Path | str] | None = None, env: dict[str, str] | None = None) -> CNI:
        kwargs: dict[str, Any] = {"timeout": timeout, "env": env}
        if busy_wait is not None:
            kwargs["busy_wait"] = busy_wait
        dirs = [str(d) for d in (bin_dirs if bin_dirs is not None else [self.bin])]
        return CNI(dirs, cache_dir=str(self.cache_dir), executor=Executor(**kwargs))

    @staticmethod
    def rt(container_id: str = "ctr1", netns: str = "/var/run/netns/ns1", ifname: str = "eth0",
           args: Iterable[tuple[str, str]] = (), capability_args: dict[str, Any] | None = None) -> RuntimeConf:
        return RuntimeConf(container_id, netns, ifname, tuple(args), capability_args or {})

    def cache_file(self, network: str = "net1", container_id: str = "ctr1", ifname: str = "eth0") -> Path:
        return self.cache_dir / "results" / f"{network}-{container_id}-{ifname}"

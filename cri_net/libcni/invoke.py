"""Running a plugin binary: lookup, CNI environment, stdin, timeout, error decoding.

Each call is an independent subprocess with no shared lock, so different containers can be
driven from many threads at once. A plugin that outlives its timeout is killed together with
anything it forked (it runs in its own process group) and reaped before we return.
"""

from __future__ import annotations

import errno
import json
import os
import time

from . import rawjson
from .jsonshape import Value
from .errors import CNIError, ErrorCode, PluginNotFoundError, PluginOutputTooLargeError, PluginTimeoutError
from .spawn import Child, Deadline, TooMuchOutput

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any, Mapping, Sequence

# Go libcni retries "text file busy" up to 6 times, one second apart.
BUSY_ATTEMPTS = 6
BUSY_WAIT_SECONDS = 1.0

#: A plugin's stdout past this fails the call (a result is a few KiB; a huge one is a bug or
#: an attack, and buffering it grew the server without bound).
MAX_STDOUT = 16 << 20
#: Stderr only ever feeds an error message: the first this-many bytes are kept, the rest read
#: and dropped (so a chatty plugin never blocks on a full pipe).
MAX_STDERR = 64 << 10


class PluginArgs(Value):
    """The CNI_* variables of one plugin run."""

    _fields = ("command", "container_id", "netns", "ifname", "args", "path")

    def __init__(self, command: str, container_id: str = "", netns: str = "", ifname: str = "",
                 args: Sequence[tuple[str, str]] = (), path: Sequence[str] = ()) -> None:
        d = self.__dict__
        d["command"], d["container_id"], d["netns"], d["ifname"], d["args"], d["path"] = \
            command, container_id, netns, ifname, args, path

    def environ(self, base: Mapping[str, str] | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: the runtime's environment as it is now), then `extra`, then the six
        CNI_* variables, always all set."""
        env = dict(os.environ if base is None else base)
        if extra:
            env.update(extra)
        env.update(
            CNI_COMMAND=self.command,
            CNI_CONTAINERID=self.container_id,
            CNI_NETNS=self.netns,
            CNI_ARGS=";".join(f"{k}={v}" for k, v in self.args),
            CNI_IFNAME=self.ifname,
            CNI_PATH=":".join(self.path),
        )
        return env


def find_in_path(plugin: str, paths: Sequence[str]) -> str:
    """First regular file named `plugin` in `paths`; names with `/` (or NUL) are refused."""
    if not plugin:
        raise PluginNotFoundError("no plugin name provided", plugin)
    if "/" in plugin or "\0" in plugin or plugin in (".", ".."):
        raise PluginNotFoundError(f"invalid plugin name: {plugin}", plugin)
    if not paths:
        raise PluginNotFoundError("no paths provided", plugin)
    for directory in paths:
        candidate = os.path.join(directory, plugin)
        if os.path.isfile(candidate):
            # an empty entry (CNI_PATH "a::b") is the working dir, as in Go; run the very file
            # found there, never a same-named one that exec would look up in $PATH
            return candidate if directory else os.path.abspath(candidate)
    raise PluginNotFoundError(f'failed to find plugin "{plugin}" in path [{" ".join(paths)}]', plugin)


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ETXTBSY


#: How much of a plugin's output an error message quotes (Go quotes it all; a message that
#: echoes megabytes only moves the unbounded buffer into logs and CRI errors).
MAX_QUOTED = 4096


def _go_quote(data: bytes) -> str:
    if len(data) > MAX_QUOTED:
        head = json.dumps(data[:MAX_QUOTED].decode("utf-8", errors="replace"), ensure_ascii=False)
        return f"{head}... ({len(data)} bytes in all)"
    return json.dumps(data.decode("utf-8", errors="replace"), ensure_ascii=False)


def exit_text(returncode: int) -> str:
    """How Go's os/exec words an exit: "exit status 2", "signal: killed"."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        import signal  # only for a plugin killed by a signal: its enums cost every call ~1 ms

        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
    words = {"SIGKILL": "killed", "SIGSEGV": "segmentation fault", "SIGTERM": "terminated", "SIGABRT": "aborted",
             "SIGINT": "interrupt", "SIGBUS": "bus error", "SIGPIPE": "broken pipe", "SIGHUP": "hangup"}
    return f"signal: {words.get(name, name)}"


def plugin_error(returncode: int, stdout: bytes, stderr: bytes) -> CNIError:
    """Decode a failed run the way Go libcni does: JSON error on stdout, else stderr text."""
    if not stdout.strip():
        if not stderr:
            return CNIError(ErrorCode.INTERNAL, f"netplugin failed with no error message: {exit_text(returncode)}")
        return CNIError(ErrorCode.INTERNAL, f"netplugin failed: {_go_quote(stderr)}")
    try:
        obj = rawjson.loads(stdout)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        code, msg, details = obj.get("code", 0), obj.get("msg", ""), obj.get("details", "")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(msg, str) or not isinstance(details, str):
            raise ValueError("code must be a number, msg and details strings")
    except ValueError as exc:
        return CNIError(
            ErrorCode.INTERNAL, f"netplugin failed but error parsing its diagnostic message {_go_quote(stdout)}: {exc}"
        )
    return CNIError(code, msg, details)


class Executor:
    """Runs plugin binaries. `timeout` (seconds, None = no limit) bounds every run. A plugin
    sees `env` (default: the runtime's environment at the time of the run), with `extra_env`
    on top, then the CNI_* variables."""

    def __init__(self, timeout: float | None = None, busy_wait: float = BUSY_WAIT_SECONDS,
                 env: Mapping[str, str] | None = None, max_stdout: int = MAX_STDOUT,
                 max_stderr: int = MAX_STDERR, extra_env: Mapping[str, str] | None = None) -> None:
        self.timeout = timeout
        self.busy_wait = busy_wait
        self.env = env
        self.extra_env = dict(extra_env or {})
        self.max_stdout, self.max_stderr = max_stdout, max_stderr

    def run(self, plugin_path: str, stdin: bytes, args: PluginArgs) -> bytes:
        """Run the plugin; its stdout on success, a CNIError (or PluginTimeoutError) otherwise."""
        env = args.environ(self.env, self.extra_env)
        bad = next((k for k, v in env.items() if "\0" in k or "\0" in v), None)
        if bad is not None:
            raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, f"{bad[:40]} contains a NUL byte")
        try:
            child = self._spawn_retrying(plugin_path, env)
        except OSError as exc:
            raise CNIError(ErrorCode.INTERNAL, f"failed to run plugin {plugin_path}: {exc.strerror}") from None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            stdout, stderr = child.communicate(stdin, deadline, self.max_stdout, self.max_stderr)
        except Deadline:
            child.kill()
            raise PluginTimeoutError(plugin_path, args.command, self.timeout or 0) from None
        except TooMuchOutput:
            child.kill()
            raise PluginOutputTooLargeError(plugin_path, args.command, self.max_stdout) from None
        except BaseException:
            child.kill()
            raise
        if child.returncode != 0:
            raise plugin_error(child.returncode or 0, stdout, stderr)
        return stdout

    def _spawn_retrying(self, plugin_path: str, env: dict[str, str]) -> Child:
        """Spawn; a binary still open for writing (ETXTBSY: being installed) is tried again,
        BUSY_ATTEMPTS times in all, `busy_wait` apart (a plain loop: a retry library costs
        every `cri-net cni` call ~15 ms of imports)."""
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                return Child(plugin_path, env)
            except OSError as exc:
                if not _is_busy(exc) or attempt == BUSY_ATTEMPTS:
                    raise
            time.sleep(self.busy_wait)
        raise AssertionError("unreachable")


class PluginInfo(Value):
    """What a plugin said to VERSION."""

    _fields = ("cni_version", "supported_versions")

    def __init__(self, cni_version: str, supported_versions: tuple[str, ...]) -> None:
        self.__dict__["cni_version"], self.__dict__["supported_versions"] = cni_version, supported_versions


def decode_version_info(stdout: bytes) -> PluginInfo:
    try:
        obj = rawjson.loads(stdout)
    except ValueError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, f"decoding version info: {exc}") from None
    if not isinstance(obj, dict):
        raise CNIError(ErrorCode.DECODING_FAILURE, "decoding version info: not a JSON object")
    cni_version = obj.get("cniVersion")
    if not cni_version or not isinstance(cni_version, str):
        raise CNIError(ErrorCode.DECODING_FAILURE, "decoding version info: missing field cniVersion")
    supported: Any = obj.get("supportedVersions") or []
    if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
        raise CNIError(ErrorCode.DECODING_FAILURE, "decoding version info: supportedVersions must be a list of strings")
    if not supported:
        if cni_version == "0.2.0":
            return PluginInfo(cni_version, ("0.1.0", "0.2.0"))
        raise CNIError(ErrorCode.DECODING_FAILURE, "decoding version info: missing field supportedVersions")
    return PluginInfo(cni_version, tuple(supported))

"""Running a plugin binary: lookup, CNI environment, stdin, timeout, error decoding.

Each call is an independent subprocess with no shared lock, so different containers can be
driven from many threads at once. A plugin that outlives its timeout is killed together with
anything it forked (it runs in its own process group) and reaped before we return.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from . import rawjson
from .errors import CNIError, ErrorCode, PluginNotFoundError, PluginOutputTooLargeError, PluginTimeoutError

# Go libcni retries "text file busy" up to 6 times, one second apart.
BUSY_ATTEMPTS = 6
BUSY_WAIT_SECONDS = 1.0

#: A plugin's stdout past this fails the call (a result is a few KiB; a huge one is a bug or
#: an attack, and buffering it grew the server without bound).
MAX_STDOUT = 16 << 20
#: Stderr only ever feeds an error message: the first this-many bytes are kept, the rest read
#: and dropped (so a chatty plugin never blocks on a full pipe).
MAX_STDERR = 64 << 10
_READ_CHUNK = 1 << 16


class _Deadline(Exception):
    """The plugin outlived its timeout (internal: turned into PluginTimeoutError)."""


class _TooMuchOutput(Exception):
    """The plugin's stdout passed MAX_STDOUT (internal: turned into PluginOutputTooLargeError)."""


@dataclass(frozen=True)
class PluginArgs:
    """The CNI_* variables of one plugin run."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Sequence[tuple[str, str]] = ()
    path: Sequence[str] = field(default_factory=tuple)

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The runtime's environment plus the six CNI_* variables, always all set."""
        env = dict(os.environ if base is None else base)
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
    """Runs plugin binaries. `timeout` (seconds, None = no limit) bounds every run."""

    def __init__(self, timeout: float | None = None, busy_wait: float = BUSY_WAIT_SECONDS,
                 env: Mapping[str, str] | None = None, max_stdout: int = MAX_STDOUT,
                 max_stderr: int = MAX_STDERR) -> None:
        self.timeout = timeout
        self.busy_wait = busy_wait
        self.env = env
        self.max_stdout, self.max_stderr = max_stdout, max_stderr

    def run(self, plugin_path: str, stdin: bytes, args: PluginArgs) -> bytes:
        """Run the plugin; its stdout on success, a CNIError (or PluginTimeoutError) otherwise."""
        env = args.environ(self.env)
        bad = next((k for k, v in env.items() if "\0" in k or "\0" in v), None)
        if bad is not None:
            raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, f"{bad[:40]} contains a NUL byte")
        try:
            proc = self._spawn_retrying(plugin_path, env)
        except OSError as exc:
            raise CNIError(ErrorCode.INTERNAL, f"failed to run plugin {plugin_path}: {exc.strerror}") from None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            stdout, stderr = _communicate(proc, stdin, deadline, self.max_stdout, self.max_stderr)
        except _Deadline:
            self._kill(proc)
            raise PluginTimeoutError(plugin_path, args.command, self.timeout or 0) from None
        except _TooMuchOutput:
            self._kill(proc)
            raise PluginOutputTooLargeError(plugin_path, args.command, self.max_stdout) from None
        except BaseException:
            self._kill(proc)
            raise
        if proc.returncode != 0:
            raise plugin_error(proc.returncode, stdout, stderr)
        return stdout

    def _spawn_retrying(self, plugin_path: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Spawn; a binary still open for writing (ETXTBSY: being installed) is tried again,
        BUSY_ATTEMPTS times in all, `busy_wait` apart (a plain loop: a retry library costs
        every `cri-net cni` call ~15 ms of imports)."""
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                return self._spawn(plugin_path, env)
            except OSError as exc:
                if not _is_busy(exc) or attempt == BUSY_ATTEMPTS:
                    raise
            time.sleep(self.busy_wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _spawn(plugin_path: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [plugin_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # its own process group, so a timeout kills everything it forked; not a new session,
            # which would also put every plugin in a new scheduler autogroup
            env=env, close_fds=True, process_group=0,
        )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        """Kill the plugin and everything in its process group, then reap it. Its pipes are
        closed unread: whatever it (or an escaped grandchild) still writes is not ours to buffer."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.kill()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe:
                try:
                    pipe.close()
                except OSError:  # a stdin write left unflushed: the reader is gone
                    pass
        proc.wait()


def _communicate(proc: subprocess.Popen[bytes], stdin: bytes, deadline: float | None, max_stdout: int,
                 max_stderr: int) -> tuple[bytes, bytes]:
    """Feed `stdin` and read stdout and stderr in one poll loop on this thread, bounded by
    `deadline` (monotonic) and by the output limits; then reap the plugin. Raises _Deadline
    or _TooMuchOutput with the plugin still running (the caller kills it)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    out_len = err_len = 0
    stdin_fd, out_fd, err_fd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
    view, sent = memoryview(stdin), 0
    with selectors.PollSelector() as sel:  # poll: no extra fd per call, unlike epoll
        if stdin:
            os.set_blocking(stdin_fd, False)
            sel.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _Deadline()
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        sent += os.write(fd, view[sent:])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the plugin does not read its config: its business
                        sent = len(view)
                    if sent >= len(view):
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(fd)
                elif fd == out_fd:
                    out_len += len(chunk)
                    if out_len > max_stdout:
                        raise _TooMuchOutput()
                    out.append(chunk)
                elif err_len < max_stderr:
                    chunk = chunk[:max_stderr - err_len]
                    err_len += len(chunk)
                    err.append(chunk)
    proc.stdout.close()
    proc.stderr.close()
    try:
        proc.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:  # closed its pipes but kept running
        raise _Deadline() from None
    return b"".join(out), b"".join(err)


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin said to VERSION."""

    cni_version: str
    supported_versions: tuple[str, ...]


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

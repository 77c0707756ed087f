"""Bad-input suite (issue 11, finding 3): plugin output of any size against libcni's exec path.

A plugin that keeps printing must cost the caller a bounded buffer and a clear error, never
memory until the timeout fires. The plugins are real executables (`/bin/sh` scripts) run
through the real exec path: stdout past the limit fails the call (plugin killed, error
naming the plugin, the command and the limit); stderr is kept up to its limit and drained
past it; stdin of any size still reaches the plugin.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import props
from cri_net.libcni import CNIError, Executor, PluginArgs, PluginError, PluginOutputTooLargeError
from cri_net.libcni.invoke import MAX_QUOTED, MAX_STDOUT
from fakeplugin.harness import FakeCNI
from tests.reliability import record

SUITE = "bad-input"
AUDITED = "stdout past its limit fails the call naming plugin and limit; stderr kept to its limit; bounded time"

#: Prints $OUT bytes on stdout and $ERR on stderr (in that order, or interleaved), reads stdin
#: when $READ is set, then exits $RC. `head -c` of /dev/zero, so the sizes are exact.
SIZED = """#!/bin/sh
[ -n "$READ" ] && cat >/dev/null
if [ -n "$MIX" ]; then head -c "$ERR" /dev/zero >&2 & fi
head -c "$OUT" /dev/zero
[ -z "$MIX" ] && head -c "$ERR" /dev/zero >&2
wait
exit "$RC"
"""


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def run(plugin: str, stdin: bytes = b"{}", timeout: float | None = 20, **env: str | int) -> bytes:
    executor = Executor(timeout=timeout, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                              **{k: str(v) for k, v in env.items()}})
    return executor.run(plugin, stdin, PluginArgs("ADD", "ctr1", "/var/run/netns/x", "eth0"))


def test_stdout_past_the_limit_fails_naming_plugin_and_limit(tmp_path: Path) -> None:
    """The regression: 20 MiB of stdout used to be buffered whole (then fail to decode); now
    the call fails as soon as the limit is passed, naming the plugin and the limit."""
    record("plugin output: sizes around the stdout/stderr limits", runs=1, audited=AUDITED, suite=SUITE)
    plugin = script(tmp_path, "chatty", SIZED)
    with pytest.raises(PluginOutputTooLargeError) as info:
        run(plugin, OUT=MAX_STDOUT + (4 << 20), ERR=0, RC=0)
    assert plugin in str(info.value) and str(MAX_STDOUT) in str(info.value) and "ADD" in str(info.value)
    assert type(info.value.code) is int


def test_endless_stdout_ends_at_the_limit_not_the_timeout(tmp_path: Path) -> None:
    """`cat /dev/zero` as a plugin, with a long timeout: the call fails at the limit, in well
    under the timeout, and this process does not grow by more than a few limits."""
    record("plugin output: sizes around the stdout/stderr limits", runs=1, audited=AUDITED, suite=SUITE)
    plugin = script(tmp_path, "flood", "#!/bin/sh\nexec cat /dev/zero\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.monotonic()
    with pytest.raises(PluginOutputTooLargeError):
        run(plugin, timeout=30)
    assert time.monotonic() - start < 15
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < 4 * MAX_STDOUT, f"grew {grown} bytes reading a flood"


def test_endless_stderr_is_drained_and_kept_to_its_limit(tmp_path: Path) -> None:
    """A plugin printing megabytes of stderr then failing: the error carries at most the
    stderr limit, and the plugin was never blocked on a full pipe."""
    record("plugin output: sizes around the stdout/stderr limits", runs=1, audited=AUDITED, suite=SUITE)
    plugin = script(tmp_path, "noisy", SIZED)
    with pytest.raises(CNIError) as info:
        run(plugin, OUT=0, ERR=8 << 20, RC=3)
    assert "netplugin failed" in str(info.value) and "bytes in all" in str(info.value)
    assert len(str(info.value)) < MAX_QUOTED * 7  # \\u0000 escapes: 6 chars per quoted NUL byte


def test_cni_wraps_the_output_limit_as_a_plugin_error(fakecni: FakeCNI, tmp_path: Path) -> None:
    """Through CNI.add_network_list: a PluginError naming the plugin type, nothing cached."""
    record("plugin output: sizes around the stdout/stderr limits", runs=1, audited=AUDITED, suite=SUITE)
    script(fakecni.bin, "flood", "#!/bin/sh\nexec cat /dev/zero\n")
    cni = fakecni.cni(timeout=30)
    with pytest.raises(PluginError) as info:
        cni.add_network_list(fakecni.conflist("flood"), fakecni.rt())
    assert info.value.plugin == "flood" and "more than" in str(info.value)
    assert not (fakecni.cache_dir / "results").exists() or not os.listdir(fakecni.cache_dir / "results")


LIMIT = 1 << 16  # small limits keep the generated cases fast; the code path is the same


@props(ci=30, full=400)
@given(out=st.sampled_from([0, 1, LIMIT - 1, LIMIT, LIMIT + 1, 3 * LIMIT]) | st.integers(0, 4 * LIMIT),
       err=st.sampled_from([0, 1, LIMIT // 4, LIMIT // 4 + 1, 2 * LIMIT]) | st.integers(0, 4 * LIMIT),
       rc=st.sampled_from([0, 1]), stdin_size=st.sampled_from([0, 2, 1 << 20]), mix=st.booleans(),
       read=st.booleans())
def test_generated_output_sizes(tmp_path_factory: pytest.TempPathFactory, out: int, err: int, rc: int,
                                stdin_size: int, mix: bool, read: bool) -> None:
    """Sizes around both limits, stdout and stderr interleaved or not, big or no stdin, a
    plugin that reads stdin or not: stdout within the limit is returned whole; past it the
    call fails with PluginOutputTooLargeError; stderr never makes the error longer than its
    limit; nothing hangs (each run bounded by the executor's timeout)."""
    record("plugin output: sizes around the stdout/stderr limits", runs=1, audited=AUDITED, suite=SUITE)
    plugin = script(tmp_path_factory.mktemp("sized"), "sized", SIZED)
    executor = Executor(timeout=20, max_stdout=LIMIT, max_stderr=LIMIT // 4,
                        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OUT": str(out), "ERR": str(err),
                             "RC": str(rc), "MIX": "1" if mix else "", "READ": "1" if read else ""})
    start = time.monotonic()
    try:
        stdout = executor.run(plugin, b"x" * stdin_size, PluginArgs("ADD", "c", "", "eth0"))
    except PluginOutputTooLargeError as exc:
        assert out > LIMIT, f"{out} bytes of stdout is within the limit: {exc}"
        assert plugin in str(exc) and str(LIMIT) in str(exc)
    except CNIError as exc:
        assert rc != 0 and out <= LIMIT, f"{type(exc).__name__}: {exc!s:.200}"
        assert len(exc.msg) < MAX_QUOTED * 7 + 200, len(exc.msg)
    else:
        assert rc == 0 and out <= LIMIT and stdout == b"\0" * out
    assert time.monotonic() - start < 20

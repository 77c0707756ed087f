"""What a plugin inherits from the process that runs it (cri_net.libcni.spawn): only its three
pipes, default SIGPIPE/SIGXFSZ, no blocked signals, its own process group; and spawning still
works when the runtime's own stdio is closed (the pipes then land on fds 0-2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cri_net.libcni.invoke import Executor, PluginArgs
from cri_net.libcni.spawn import Child, Deadline

REPO = Path(__file__).resolve().parents[2]


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "probe"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def run(path: str, stdin: bytes = b"") -> tuple[bytes, bytes, int | None]:
    child = Child(path, dict(os.environ))
    out, err = child.communicate(stdin, None, 1 << 20, 1 << 16)
    return out, err, child.returncode


def test_only_the_three_pipes_reach_the_plugin(tmp_path: Path) -> None:
    """A descriptor our own parent left inheritable (here: passed to a fresh interpreter, as
    a careless runtime might) does not reach the plugin, nor does any Python opened."""
    probe = script(tmp_path, "exec ls /proc/self/fd\n")
    report = tmp_path / "fds.json"
    r, w = os.pipe()
    code = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(REPO)!r})
        from cri_net.libcni.spawn import Child
        inherited = os.get_inheritable({r})
        mine = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)][-1]  # Python's own: close-on-exec; above 3
        child = Child({probe!r}, dict(os.environ))
        out, _ = child.communicate(b"", None, 1 << 20, 1 << 16)
        seen = sorted(int(x) for x in out.split())
        with open({str(report)!r}, "w") as fh:
            json.dump({{"inherited": inherited, "mine": mine, "seen": seen, "rc": child.returncode}}, fh)
    """)
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60, pass_fds=(r, w))
    finally:
        os.close(r)
        os.close(w)
    got = json.loads(report.read_text())
    assert got["inherited"] is True and got["rc"] == 0  # the set-up really passed it on
    assert r not in got["seen"] and w not in got["seen"] and got["mine"] not in got["seen"]
    assert set(got["seen"]) <= {0, 1, 2, 3}  # 3 is ls's own listing of the dir


def test_signals_are_reset_and_unblocked_and_the_group_is_its_own(tmp_path: Path) -> None:
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's default, which exec would pass on
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        out, _, rc = run(script(tmp_path, "exec cat /proc/self/status /proc/self/stat\n"))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert rc == 0
    text = out.decode()
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    assert int(fields["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1)) == 0
    assert int(fields["SigIgn"], 16) & (1 << (signal.SIGXFSZ - 1)) == 0
    assert int(fields["SigBlk"], 16) == 0
    stat = text.strip().splitlines()[-1]
    pid, rest = stat.split(" ", 1)
    pgrp = rest.rsplit(")", 1)[1].split()[2]
    assert pgrp == pid


def test_stdin_is_fed_and_exit_codes_and_signals_are_reported(tmp_path: Path) -> None:
    out, err, rc = run(script(tmp_path, "cat; echo oops >&2; exit 3\n"), b"hello")
    assert (out, err, rc) == (b"hello", b"oops\n", 3)
    _, _, rc = run(script(tmp_path, "kill -TERM $$\n"))
    assert rc == -signal.SIGTERM


def test_a_child_that_closes_its_pipes_but_lives_on_hits_the_deadline(tmp_path: Path) -> None:
    import time

    child = Child(script(tmp_path, "exec >&- 2>&- <&-; sleep 30\n"), dict(os.environ))
    start = time.monotonic()
    with pytest.raises(Deadline):
        child.communicate(b"", time.monotonic() + 0.3, 1 << 20, 1 << 16)
    child.kill()
    assert time.monotonic() - start < 5
    assert child.returncode == -signal.SIGKILL


def test_spawning_works_with_the_runtimes_stdio_closed(tmp_path: Path) -> None:
    """A daemon started with 0-2 closed gets its pipes on 0-2; the plugin must still see stdin
    on 0 and write to 1 and 2 (a naive dup2 order would hand it the wrong pipes)."""
    probe = script(tmp_path, "cat; echo err >&2\n")
    report = tmp_path / "report.json"
    code = textwrap.dedent(f"""
        import json, os, sys
        for fd in (0, 1, 2):
            os.close(fd)
        sys.path.insert(0, {str(REPO)!r})
        from cri_net.libcni.invoke import Executor, PluginArgs
        from cri_net.libcni.errors import CNIError
        try:
            out = Executor(timeout=10).run({probe!r}, b'{{"x": 1}}', PluginArgs("ADD"))
            result = {{"out": out.decode()}}
        except CNIError as exc:
            result = {{"error": str(exc)}}
        with open({str(report)!r}, "w") as fh:
            json.dump(result, fh)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert json.loads(report.read_text()) == {"out": '{"x": 1}'}


def test_executor_layers_extra_env_over_the_runtime_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CRINET_SPAWN_MARK", "live")
    probe = script(tmp_path, 'printf "%s %s %s" "$CRINET_SPAWN_MARK" "$EXTRA" "$CNI_COMMAND"\n')
    out = Executor(timeout=10, extra_env={"EXTRA": "1", "CNI_COMMAND": "ignored"}).run(probe, b"", PluginArgs("DEL"))
    assert out == b"live 1 DEL"

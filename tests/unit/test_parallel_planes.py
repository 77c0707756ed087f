"""Parallel planes (issue 13): loopback first, then the extra planes and the default network
concurrently, bounded by a worker limit; results in request order, default first; any failure
cancels what has not started, waits for what runs, and DELs every plane this request attached
in reverse request order (loopback last), raising one AttachError. Real execs of the fake
plugin (tests/fakeplugin); the sequential path is test_cri_adaptor.py's ordering tests.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptors import planes as planes_mod
from cri_net import config
from cri_net.network import AttachError, DetachError
from test_cri_adaptor import Env, env, extras, plugin_error  # noqa: F401  (env: the fixture)

THREE = extras(("extra-a", "net1"), ("extra-b", "net2"))  # + the default `net` on eth0


def spans(e: Env, command: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(plugin, ifname) -> (start, end) of each run of `command`, from the plugins' own log."""
    starts: dict[int, tuple[str, str, float]] = {}
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for rec in e.fake.records():
        if rec["event"] == "start" and rec["env"]["CNI_COMMAND"] == command:
            starts[rec["pid"]] = (rec["name"], rec["env"]["CNI_IFNAME"], rec["t"])
        elif rec["event"] == "end" and rec["pid"] in starts:
            name, ifname, t0 = starts.pop(rec["pid"])
            out[(name, ifname)] = (t0, rec["t"])
    return out


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_planes_run_concurrently_after_loopback_and_results_keep_request_order(env):
    env.standard()
    for name in ("xa", "xb", "main"):
        env.fake.script(name, "ADD", sleep=0.6)
    a = env.adaptor()  # parallel_attach is the default
    assert a.settings.parallel_attach is True
    results = a.attach(env.conf(annotations=THREE))
    s = spans(env, "ADD")
    lo_end = s[("loopback", "lo")][1]
    assert all(s[k][0] >= lo_end for k in s if k != ("loopback", "lo"))  # loopback first
    assert overlap(s[("xa", "net1")], s[("xb", "net2")]) and overlap(s[("xb", "net2")], s[("main", "eth0")])
    assert [(r.name, r.interface) for r in results] == [("net", "eth0"), ("extra-a", "net1"), ("extra-b", "net2")]
    assert env.cache_files() == ["cni-loopback-pod1-lo", "extra-a-pod1-net1", "extra-b-pod1-net2", "net-pod1-eth0"]


def test_a_plane_failing_while_others_are_mid_add_rolls_back_every_plane(env):
    env.standard()
    env.fake.script("xa", "ADD", sleep=0.8)
    env.fake.script("main", "ADD", sleep=0.8)
    env.fake.script("xb", "ADD", sleep=0.1, exit=1, stdout=plugin_error("vlan gone"))
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=THREE))
    err = exc.value
    assert (err.network, err.plugin, err.ifname) == ("extra-b", "xb", "net2")
    assert "vlan gone" in str(err) and err.rollback_failures == []
    adds, dels = spans(env, "ADD"), spans(env, "DEL")
    # the running ADDs were waited for, then undone: reverse request order, loopback last
    rollback = [r for r in env.runs() if r[1] == "DEL" and r[2] != "net2"]
    assert rollback == [("main", "DEL", "eth0"), ("xa", "DEL", "net1"), ("loopback", "DEL", "lo")]
    assert min(dels[(n, i)][0] for n, _, i in rollback) >= max(adds[("xa", "net1")][1], adds[("main", "eth0")][1])
    assert ("xb", "net2") in dels  # the failing chain got its own DEL
    assert env.cache_files() == []


def test_a_failure_cancels_planes_that_have_not_started(env, monkeypatch):
    env.standard()
    monkeypatch.setattr(planes_mod, "MAX_PLANE_WORKERS", 2)
    env.fake.script("xa", "ADD", exit=1, stdout=plugin_error("no"))
    env.fake.script("xb", "ADD", sleep=0.5)
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=THREE))
    assert exc.value.network == "extra-a"
    assert not [r for r in env.runs() if r[0] == "main"]  # the default network never started
    assert [r for r in env.runs() if r[1] == "DEL"][-2:] == [("xb", "DEL", "net2"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_a_plane_hanging_past_its_timeout_while_others_succeed(env):
    env.standard()
    env.fake.script("xa", "ADD", sleep=30)
    a = env.adaptor(plugin_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=THREE))
    assert time.monotonic() - t0 < 10
    assert (exc.value.network, exc.value.plugin) == ("extra-a", "xa")
    assert "timed out" in str(exc.value) or "timeout" in str(exc.value).lower()
    dels = [r for r in env.runs() if r[1] == "DEL" and r[2] != "net1"]
    assert dels == [("main", "DEL", "eth0"), ("xb", "DEL", "net2"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_every_concurrent_failure_is_named_the_first_in_request_order_leads(env):
    env.standard()
    env.fake.script("xb", "ADD", exit=1, stdout=plugin_error("b broke"))
    env.fake.script("xa", "ADD", sleep=0.3, exit=1, stdout=plugin_error("a broke"))
    env.fake.script("main", "ADD", sleep=0.3)
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=THREE))
    assert (exc.value.network, exc.value.plugin) == ("extra-a", "xa")
    assert any("extra-b on net2 also failed" in f and "b broke" in f for f in exc.value.rollback_failures)
    assert env.cache_files() == []


def test_rollback_failures_of_a_parallel_attach_are_all_reported(env):
    env.standard()
    env.fake.script("main", "ADD", sleep=0.2, exit=1, stdout=plugin_error("add failed"))
    env.fake.script("xa", "DEL", exit=1, stdout=plugin_error("xa del failed"))
    env.fake.script("xb", "DEL", exit=1, stdout=plugin_error("xb del failed"))
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=THREE))
    assert (exc.value.network, exc.value.plugin) == ("net", "main")
    joined = " | ".join(exc.value.rollback_failures)
    assert "xa del failed" in joined and "xb del failed" in joined
    assert env.runs()[-1] == ("loopback", "DEL", "lo")


def test_parallel_detach_runs_planes_concurrently_and_loopback_last(env):
    env.standard()
    a = env.adaptor()
    conf = env.conf(annotations=THREE)
    a.attach(conf)
    env.fake.clear_log()
    for name in ("xa", "xb", "main"):
        env.fake.script(name, "DEL", sleep=0.5)
    a.detach(conf)
    s = spans(env, "DEL")
    assert overlap(s[("xa", "net1")], s[("main", "eth0")])
    assert s[("loopback", "lo")][0] >= max(v[1] for k, v in s.items() if k[0] != "loopback")
    assert env.cache_files() == []


def test_parallel_detach_reports_failures_in_detach_order_and_still_releases_the_rest(env):
    env.standard()
    a = env.adaptor()
    conf = env.conf(annotations=THREE)
    a.attach(conf)
    env.fake.script("xa", "DEL", exit=1, stdout=plugin_error("xa stuck"))
    env.fake.script("main", "DEL", exit=1, stdout=plugin_error("main stuck"))
    with pytest.raises(DetachError) as exc:
        a.detach(conf)
    assert [(n, i) for n, i, _ in exc.value.failures] == [("net", "eth0"), ("extra-a", "net1")]
    assert env.cache_files() == ["extra-a-pod1-net1", "net-pod1-eth0"]


def test_parallel_attach_setting_from_a_config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("parallel_attach = false\n", encoding="utf-8")
    assert config.build(str(path)).parallel_attach is False
    assert config.build(None).parallel_attach is True
    path.write_text('parallel_attach = "sometimes"\n', encoding="utf-8")
    with pytest.raises(config.ConfigFileError) as exc:
        config.build(str(path))
    assert str(path) in str(exc.value) and "parallel_attach" in str(exc.value)


# ==== generated: any set of planes failing or slow, on both paths ============================

#: per extra/default plugin: (ADD sleep, ADD fails)
_plane_behaviour = st.tuples(st.sampled_from([0, 0, 0.05, 0.2]), st.booleans())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(behaviour=st.fixed_dictionaries({n: _plane_behaviour for n in ("xa", "xb", "xc", "main")}),
       parallel=st.booleans(), workers=st.integers(min_value=1, max_value=4))
def test_generated_failures_leave_nothing_but_a_whole_pod(env, monkeypatch, behaviour: dict[str, Any],
                                                          parallel: bool, workers: int):
    """Whatever fails, with whatever timing and worker limit: either every plane is attached
    or nothing of the request is left (cache empty, every ADD that ran has its DEL, rollback in
    reverse request order with loopback last), and the error names the first failing plane."""
    if not (env.conf_dir / "10-net.conflist").exists():
        env.standard()
    monkeypatch.setattr(planes_mod, "MAX_PLANE_WORKERS", workers)
    env.fake.clear_log()
    for name, (sleep, fails) in behaviour.items():
        env.fake.script(name, "ADD", sleep=sleep, **({"exit": 1, "stdout": plugin_error(f"{name} no")} if fails else {}))
    a = env.adaptor(parallel_attach=parallel)
    conf = env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"), ("extra-c", "net3")))
    order = [("xa", "net1"), ("xb", "net2"), ("xc", "net3"), ("main", "eth0")]
    failing = [p for p in order if behaviour[p[0]][1]]
    try:
        a.attach(conf)
    except AttachError as exc:
        assert failing
        ran_adds = [(r[0], r[2]) for r in env.runs() if r[1] == "ADD" and r[0] != "loopback"]
        first_failed = next(p for p in order if p in failing and p in ran_adds)
        assert (exc.plugin, exc.ifname) == first_failed
        dels = [(r[0], r[2]) for r in env.runs() if r[1] == "DEL"]
        assert sorted(dels) == sorted(ran_adds + [("loopback", "lo")])  # every ADD that ran is undone
        undone = [d for d in dels if d not in failing and d != ("loopback", "lo")]
        assert undone == sorted(undone, key=order.index, reverse=True)  # reverse request order
        assert dels[-1] == ("loopback", "lo")
        assert env.cache_files() == []
    else:
        assert not failing
        a.detach(conf)
        assert env.cache_files() == []

"""Operating cri-net serve (issue 15): the real /metrics, /healthz and /readyz of a real
server after real pod cycles with the real plugins, and readiness from SIGTERM on.

Every server runs from `integration.serve_fixture` with its own directories, subnet and
bridge; the HTTP endpoint listens on 127.0.0.1 on a port the kernel picks.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.hostaudit import CNI_PLUGIN_DIR
from integration.serve_fixture import CRIServer, cri_server_factory  # noqa: F401 - fixtures

METRICS = ["--metrics-listen", "127.0.0.1:0"]
CNI_PLUGIN = Path(os.sys.executable).with_name("cri-net-cni")


def pod(name: str, annotations: dict[str, str] | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": "ops", "uid": secrets.token_hex(8), "attempt": 0},
            "annotations": annotations or {}, "linux": {}}


def http_address(srv: CRIServer, timeout: float = 10.0) -> str:
    """host:port the server logged for its metrics endpoint (port 0 was asked for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.findall(r"serving metrics and health\"? address=(\S+)", srv.log)
        if m:
            return m[-1]
        time.sleep(0.05)
    raise AssertionError(f"no metrics address logged:\n{srv.log_tail()}")


def get(address: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(address: str) -> dict[tuple[str, frozenset], float]:
    """Every sample: (name, labels) -> value."""
    code, text = get(address, "/metrics")
    assert code == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not scraped; have: " + ", ".join(
        f"{n}{dict(lb)}" for n, lb in samples if n == name)
    return samples[key]


def network_ready(srv: CRIServer) -> bool:
    with srv.client() as c:
        conds = {x["type"]: x for x in c.info()["status"]["conditions"]}
    return bool(conds["NetworkReady"]["status"])


def test_metrics_after_real_pod_cycles(cri_server_factory: Callable[..., CRIServer]) -> None:
    srv = cri_server_factory(extra_args=METRICS)
    net = srv.net.name
    addr = http_address(srv)
    assert get(addr, "/healthz") == (200, "ok\n")
    assert get(addr, "/readyz") == (200, "ok\n")
    assert network_ready(srv)  # Status agrees with /readyz
    with srv.client() as c:
        for i in range(2):  # two full cycles
            sid = c.runp(pod(f"cycle{i}"))
            assert c.inspectp(sid).status.network.ip
            c.stopp(sid)
            c.rmp(sid)
        kept = c.runp(pod("kept"))  # one pod stays READY, holding one lease
        with pytest.raises(grpc.RpcError) as bad:
            c.runp(pod("bad", {"kubernetes.io/ingress-bandwidth": "lots"}))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert re.search(rf'level=warning logger=cri_net.server msg="rpc failed" rpc=RunPodSandbox pod=ops/bad '
                         rf'network={re.escape(net)} error=', srv.log), srv.log_tail()
        c.stopp("0" * 64)  # an unknown pod: StopPodSandbox is idempotent, not an error
        with pytest.raises(grpc.RpcError) as missing:
            c.inspectp("0" * 64)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    s = scrape(addr)
    assert value(s, "cri_net_operations_total", operation="RunPodSandbox", network=net) == 4
    assert value(s, "cri_net_operation_errors_total", operation="RunPodSandbox", network=net) == 1
    assert value(s, "cri_net_operation_duration_seconds_count", operation="RunPodSandbox", network=net) == 4
    assert value(s, "cri_net_operation_duration_seconds_sum", operation="RunPodSandbox", network=net) > 0
    assert value(s, "cri_net_operations_total", operation="StopPodSandbox", network=net) == 3
    assert value(s, "cri_net_operations_total", operation="PodSandboxStatus", network=net) == 3
    assert value(s, "cri_net_operation_errors_total", operation="PodSandboxStatus", network=net) == 1
    assert value(s, "cri_net_operations_total", operation="RemovePodSandbox", network=net) == 2
    for ok_rpc in ("StopPodSandbox", "RemovePodSandbox"):
        assert ("cri_net_operation_errors_total", frozenset({"operation": ok_rpc, "network": net}.items())) not in s
    # the plugins really ran: 3 ADDs (2 cycles + the kept pod), 2 DELs, by plugin type
    for plugin in ("bridge", "portmap", "bandwidth"):
        assert value(s, "cri_net_plugin_exec_duration_seconds_count", plugin=plugin, command="ADD") == 3
        assert value(s, "cri_net_plugin_exec_duration_seconds_count", plugin=plugin, command="DEL") == 2
    assert value(s, "cri_net_plugin_exec_duration_seconds_count", plugin="loopback", command="ADD") == 3
    assert value(s, "cri_net_pods", state="READY") == 1
    assert value(s, "cri_net_pods", state="NOTREADY") == 0
    assert value(s, "cri_net_ip_leases", network=net) == len(srv.leases()) == 1
    assert value(s, "cri_net_networks", state="loaded") == 1
    assert value(s, "cri_net_ready") == 1
    # a broken file dropped into the conf dir: reloaded (watched), skipped, counted
    bad = srv.conf_dir / "20-broken.conflist"
    bad.write_text("{not json")
    deadline = time.monotonic() + 15
    while (s := scrape(addr)).get(("cri_net_networks", frozenset({"state": "skipped"}.items()))) != 1:
        assert time.monotonic() < deadline, "the broken file was never reported as skipped"
        time.sleep(0.1)
    assert value(s, "cri_net_conf_reloads_total", conf_dir=str(srv.conf_dir), result="applied") >= 1
    bad.unlink()
    assert value(s, "cri_net_gc_runs_total", result="ok") >= 1  # the start-up round
    # a CNI call handed over cni.sock by the real plugin launcher is counted by command and network
    conf = {"cniVersion": "1.1.0", "name": "ops-hook", "type": "cri-net", "confDir": str(srv.conf_dir),
            "binDirs": [str(CNI_PLUGIN_DIR)], "cacheDir": str(srv.cache_dir),
            "daemonSocket": str(srv.socket.with_name("cni.sock"))}
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(CNI_PLUGIN_DIR), "PATH": os.environ.get("PATH", "/usr/bin")}
    proc = subprocess.run([str(CNI_PLUGIN)], input=json.dumps(conf).encode(), env=env, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = scrape(addr)
    assert value(s, "cri_net_cni_handoff_calls_total", command="STATUS", outcome="ok") == 1
    assert value(s, "cri_net_operations_total", operation="STATUS", network="ops-hook") == 1
    with srv.client() as c:
        c.stopp(kept)
        c.rmp(kept)
    s = scrape(addr)
    assert value(s, "cri_net_pods", state="READY") == 0
    assert value(s, "cri_net_ip_leases", network=net) == 0


def test_readyz_and_status_agree_without_networks(cri_server_factory: Callable[..., CRIServer]) -> None:
    srv = cri_server_factory(conflist=False, extra_args=METRICS)
    addr = http_address(srv)
    code, body = get(addr, "/readyz")
    assert (code, body) == (503, "not ready: no network loaded\n")
    assert get(addr, "/healthz") == (200, "ok\n")
    assert not network_ready(srv)
    assert value(scrape(addr), "cri_net_ready") == 0


def test_readyz_false_from_sigterm_on(cri_server_factory: Callable[..., CRIServer]) -> None:
    """SIGTERM while a RunPodSandbox is in its plugin chain: /readyz says no at once, the
    in-flight call still finishes, and the server exits 0."""
    srv = cri_server_factory(slow_plugin=True, extra_args=METRICS)
    addr = http_address(srv)
    assert get(addr, "/readyz")[0] == 200
    srv.set_slow_delay(30)
    config = pod("draining")
    from cri_net.server.sandbox import sandbox_id

    sid = sandbox_id("ops", "draining", config["metadata"]["uid"], 0)
    srv.known_ids.add(sid)
    import threading

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with srv.client(timeout=60) as c:
                outcome["id"] = c.runp(config)
        except grpc.RpcError as exc:
            outcome["error"] = exc.code()

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while not srv.slow_marker(sid).exists():
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.02)
    srv.send(15)
    deadline = time.monotonic() + 5
    while True:
        code, body = get(addr, "/readyz")
        if code == 503:
            break
        assert time.monotonic() < deadline, "/readyz still ready after SIGTERM"
        time.sleep(0.02)
    assert body == "not ready: draining: shutting down\n"
    assert value(scrape(addr), "cri_net_ready") == 0
    srv.set_slow_delay(None)  # release the in-flight ADD
    t.join(60)
    assert outcome.get("id") == sid, outcome
    srv.assert_stopped_cleanly()
    srv.start()  # teardown removes the pod through a running server


# ------------------------------------------------------------------------- the CLI, for real

CRI_NET = Path(os.sys.executable).with_name("cri-net")


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CRI_NET), *argv], capture_output=True, text=True, timeout=timeout)


def test_pods_and_inspect_over_the_cri_socket(cri_server_factory: Callable[..., CRIServer]) -> None:
    srv = cri_server_factory()
    with srv.client() as c:
        sid = c.runp(pod("listed"))
        ip = c.inspectp(sid).status.network.ip
    sock = ["--listen", str(srv.socket)]
    listed = cli("pods", *sock, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [doc] = json.loads(listed.stdout)
    assert (doc["id"], doc["name"], doc["namespace"], doc["state"], doc["ip"]) == (sid, "listed", "ops",
                                                                                   "SANDBOX_READY", ip)
    table = cli("pods", *sock).stdout.splitlines()
    assert table[0].split()[:2] == ["POD", "ID"] and table[1].split()[0] == sid[:13]
    assert table[1].split()[-1] == ip and "listed" in table[1]
    assert cli("pods", *sock, "-q").stdout == sid + "\n"
    assert cli("pods", *sock, "-q", "--state", "notready").stdout == ""
    inspected = cli("inspect", sid[:12], *sock)
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["ip"] == ip and info["netns"] == str(srv.netns_path(sid))
    assert [p["name"] for p in info["planes"]] == [srv.net.name]
    missing = cli("inspect", "f" * 64, *sock)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_network_disconnect_detaches_only_the_named_network(
        tmp_path: Path, net_factory: Callable[[], object], netns: Callable[[], str]) -> None:
    """Two native networks on one netns given by name (not path); `disconnect A NETNS` leaves
    B attached; `network ls` shows owners and the attached container; all removed at the end."""
    from integration.test_network_real import host_link_exists, ns_links

    a, b, pods_net = net_factory(), net_factory(), net_factory()
    conf, cache = tmp_path / "net.d", tmp_path / "cache"
    conf.mkdir()
    for n in (a, b, pods_net):
        n.cache_dirs.add(cache)
    (conf / "10-pods.conflist").write_text(json.dumps(pods_net.conflist(ipam_dir=tmp_path / "ipam")))
    flags = ["--conf-dir", str(conf), "--bin-dir", str(CNI_PLUGIN_DIR), "--cache-dir", str(cache)]
    for n in (a, b):
        made = cli("network", "create", "--subnet", str(n.subnet), n.name, *flags)
        assert made.returncode == 0, made.stderr
        [doc] = json.loads(cli("network", "inspect", n.name, *flags).stdout)
        n.bridge = doc["config"]["plugins"][0]["bridge"]  # the harness purges it if we fail
    ns_path = netns()
    name = os.path.basename(ns_path)
    connected = cli("network", "connect", f"{a.name},{b.name}", name, *flags)  # a name, resolved in /run/netns
    assert connected.returncode == 0, connected.stderr
    assert [r["interface"] for r in json.loads(connected.stdout)] == ["eth0", "eth1"]
    rows = {r["name"]: r for r in json.loads(cli("network", "ls", "-o", "json", *flags).stdout)}
    assert rows[pods_net.name]["owner"] == "cri" and rows[pods_net.name]["containers"] == []
    [container] = rows[a.name]["containers"]
    assert rows[a.name]["owner"] == rows[b.name]["owner"] == "native" and rows[b.name]["containers"] == [container]

    off = cli("network", "disconnect", a.name, name, *flags)
    assert off.returncode == 0, off.stderr
    links = ns_links(ns_path)
    assert "eth0" not in links and "eth1" in links  # only A's interface went
    rows = {r["name"]: r for r in json.loads(cli("network", "ls", "-o", "json", *flags).stdout)}
    assert rows[a.name]["containers"] == [] and rows[b.name]["containers"] == [container]
    again = cli("network", "disconnect", a.name, ns_path, *flags)  # by path now: same container
    assert again.returncode == 1 and "not attached" in again.stderr and a.name in again.stderr

    assert cli("network", "disconnect", b.name, name, *flags).returncode == 0
    assert "eth1" not in ns_links(ns_path)
    results = cache / "results"
    assert not results.exists() or list(results.iterdir()) == []  # loopback went with the last network
    for n in (a, b):
        gone = cli("network", "rm", n.name, *flags)
        assert gone.returncode == 0, gone.stderr
        assert not host_link_exists(n.bridge)


def test_a_run_waiting_on_the_host_lock_says_so() -> None:
    """This session holds the host lock; a second pytest run (no terminal, output captured)
    must print that it waits, and whose lock it waits for, instead of hanging silently."""
    import select
    import signal

    from integration.hostlock import WAITING

    repo = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([os.sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "integration/test_harness.py"], cwd=repo, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while WAITING.encode() not in seen:
            assert child.poll() is None, f"the second run ended instead of waiting:\n{seen.decode()}"
            assert time.monotonic() < deadline, f"no waiting message within 60 s:\n{seen.decode()}"
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            if ready:
                seen += os.read(child.stdout.fileno(), 65536)  # type: ignore[union-attr]
        line = next(ln for ln in seen.decode().splitlines() if WAITING in ln)
        assert "/run/lock/cri-net-host.lock" in line and f"pid {os.getpid()}" in line, line
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()  # type: ignore[union-attr]

"""The kind harness (integration/kind/): everything of it that runs without a Docker engine.

kind cannot run here (no Docker engine, no kind), so ``integration/kind/e2e.sh`` itself is
only run as far as its loud refusal. What is checked for real:

* ``kind-config.yaml`` parses as YAML (Debian's PyYAML): 1 control plane + 2 workers, and
  kindnet is not disabled (it stays the primary network);
* the overlay is rendered exactly as ``e2e.sh`` renders it (``kubectl kustomize
  --load-restrictor LoadRestrictionsNone integration/kind``, this host's kubectl) and the
  result is ``deploy/cri-net.yaml`` plus the ConfigMap of extra networks mounted at serve's
  ``/etc/cri-net/net.d``, and nothing else changed; names, namespace, labels, image, probe
  port and conf dirs agree with what the script expects;
* the ConfigMap's networks, laid out as kubelet lays out a ConfigMap volume (timestamped
  dir, ``..data`` link, one link per key), load with cri-net's own loader, with nothing
  skipped; the pods' annotations name them; generated ConfigMaps (hypothesis) load the same;
* ``bash -n`` on the script; run with a PATH lacking docker/kind/kubectl it fails at once
  naming what is missing, and with docker but no engine it says so, before running anything.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cri_net.libcni import conf_list_from_bytes
from cri_net.operator.loader import load_networks
from cri_net.operator.watcher import dir_signature
from integration.containerd.harness import HarnessError, ensure_packages
from integration.image import IMAGE_NAME

KIND = Path(__file__).resolve().parent / "kind"
ROOT = KIND.parent.parent
DEPLOY = ROOT / "deploy" / "cri-net.yaml"
E2E = KIND / "e2e.sh"
EXTRA_NETWORKS = "network.alpha.kubernetes.io/network"
SYSTEM_PYTHON = "/usr/bin/python3"
#: how e2e.sh renders deploy/ with this directory's overlay (it must say exactly this)
RENDER = ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone"]


def yaml_docs(text: str) -> list[Any]:
    """Every document of a YAML stream, parsed by Debian's PyYAML (not a cri-net dependency)."""
    try:
        ensure_packages({"python3-yaml": "/usr/lib/python3/dist-packages/yaml/__init__.py"})
    except HarnessError as exc:
        pytest.fail(f"cannot install a YAML parser here: {exc}", pytrace=False)
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import json, sys, yaml; "
                           "json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"],
                          input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"not valid YAML: {proc.stderr[-2000:]}"
    return [d for d in json.loads(proc.stdout) if d is not None]


def yaml_file(path: Path) -> Any:
    [doc] = yaml_docs(path.read_text())
    return doc


def script_var(name: str) -> str:
    """The literal value of ``NAME=...`` / ``NAME=${NAME:-...}`` in e2e.sh."""
    m = re.search(rf"^{name}=(?:\$\{{{name}:-(?P<d>[^}}]*)\}}|(?P<v>\S+))", E2E.read_text(), re.M)
    assert m, f"{E2E.name} sets no {name}"
    return m.group("d") if m.group("d") is not None else m.group("v")


def script_array(name: str) -> list[str]:
    m = re.search(rf"^{name}=\(([^)]*)\)", E2E.read_text(), re.M)
    assert m, f"{E2E.name} sets no array {name}"
    return m.group(1).split()


def render() -> list[dict[str, Any]]:
    """The manifests e2e.sh applies: deploy/ through the kind overlay, by the real kustomize."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: the overlay cannot be rendered (its kustomize is what "
                    "e2e.sh uses)", pytrace=False)
    proc = subprocess.run([*RENDER, str(KIND)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kustomize failed: {proc.stderr[-3000:]}"
    return yaml_docs(proc.stdout)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def deploy_objects() -> dict[str, dict[str, Any]]:
    return by_kind(json.loads(DEPLOY.read_text())["items"])


def arg_value(args: list[str], flag: str) -> str:
    assert flag in args, f"no {flag} in {args}"
    return args[args.index(flag) + 1]


def kubelet_configmap_volume(dest: Path, data: dict[str, str], stamp: str = "..2026_01_01_00_00_00.000000001") -> None:
    """Lay out `data` as kubelet's atomic writer does: files in a timestamped dir, `..data`
    pointing at it, and one symlink per key through `..data`."""
    stamped = dest / stamp
    stamped.mkdir(parents=True)
    for key, value in data.items():
        (stamped / key).write_text(value)
    (dest / "..data").symlink_to(stamp)
    for key in data:
        (dest / key).symlink_to(f"..data/{key}")


def kubelet_configmap_update(dest: Path, data: dict[str, str], stamp: str) -> None:
    """kubelet's update of a ConfigMap volume: a new timestamped dir, `..data` swapped to it by
    rename, links for new keys added and for dropped keys removed, the old dir deleted."""
    old = os.readlink(dest / "..data")
    (dest / stamp).mkdir()
    for key, value in data.items():
        (dest / stamp / key).write_text(value)
    (dest / "..data_tmp").symlink_to(stamp)
    os.rename(dest / "..data_tmp", dest / "..data")
    for key in data:
        if not (dest / key).is_symlink():
            (dest / key).symlink_to(f"..data/{key}")
    for entry in dest.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in data:
            entry.unlink()
    shutil.rmtree(dest / old)


def storage_subnet(conflist: dict[str, Any]) -> ipaddress.IPv4Network:
    [[rng]] = conflist["plugins"][0]["ipam"]["ranges"]
    return ipaddress.ip_network(rng["subnet"])  # type: ignore[return-value]


# ----------------------------------------------------------------------- the kind cluster


def test_kind_config_has_one_control_plane_two_workers_and_keeps_kindnet() -> None:
    conf = yaml_file(KIND / "kind-config.yaml")
    assert conf["kind"] == "Cluster" and conf["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert sorted(n["role"] for n in conf["nodes"]) == ["control-plane", "worker", "worker"]
    networking = conf.get("networking", {})
    assert networking.get("disableDefaultCNI", False) is False, "kindnet must stay the primary network"
    pods = ipaddress.ip_network(networking.get("podSubnet", "10.244.0.0/16"))
    services = ipaddress.ip_network(networking.get("serviceSubnet", "10.96.0.0/16"))
    storage = ipaddress.ip_network(script_var("STORAGE_CIDR"))
    assert not storage.overlaps(pods) and not storage.overlaps(services), (storage, pods, services)


# -------------------------------------------------------------------- deploy/ + the overlay


def test_overlay_is_deploy_plus_the_networks_configmap() -> None:
    rendered = by_kind(render())
    deploy = deploy_objects()
    assert set(rendered) == {"Namespace", "ConfigMap", "DaemonSet"}
    assert rendered["Namespace"] == deploy["Namespace"]
    ds, cm = rendered["DaemonSet"], rendered["ConfigMap"]
    namespace, name = script_var("NAMESPACE"), script_var("DAEMONSET")
    assert deploy["Namespace"]["metadata"]["name"] == namespace
    assert (ds["metadata"]["namespace"], ds["metadata"]["name"]) == (namespace, name)
    assert cm["metadata"]["namespace"] == namespace

    pod = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    added = [v for v in pod["volumes"] if "configMap" in v]
    assert [v["configMap"]["name"] for v in added] == [cm["metadata"]["name"]]
    [serve] = [c for c in pod["containers"] if c["name"] == "serve"]
    [mount] = [m for m in serve["volumeMounts"] if m["name"] == added[0]["name"]]
    [init] = pod["initContainers"]
    # serve reads the ConfigMap where the runtime-side conflist (written by init) says cri-net's networks are
    assert mount["mountPath"] == arg_value(init["args"], "--crinet-conf-dir") and mount.get("readOnly") is True
    host_etc = [m for m in serve["volumeMounts"] if mount["mountPath"].startswith(m["mountPath"] + "/")]
    assert [volumes[m["name"]]["hostPath"]["path"] for m in host_etc] == ["/etc/cri-net"], host_etc
    # delegate mode: the runtime's conf dir (where kindnet's conflist is) is the one delegated to
    conf_mount = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert arg_value(init["args"], "--delegate-conf-dir") == arg_value(init["args"], "--conf-dir")
    assert arg_value(init["args"], "--conf-dir") in conf_mount
    assert script_var("RUNTIME_CONFLIST").startswith(arg_value(init["args"], "--conf-dir") + "/")

    # nothing else changed: drop what the overlay adds and deploy/'s DaemonSet is left
    stripped = json.loads(json.dumps(ds))
    spec = stripped["spec"]["template"]["spec"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != added[0]["name"]]
    for c in spec["containers"]:
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != added[0]["name"]]
    original = deploy["DaemonSet"]
    assert stripped == original, "the kind overlay changes more than the networks ConfigMap mount"

    # what e2e.sh expects of it
    images = {c["image"] for c in pod["initContainers"] + pod["containers"]}
    assert images == {script_var("IMAGE")} == {IMAGE_NAME}
    assert all(c["imagePullPolicy"] != "Always" for c in pod["initContainers"] + pod["containers"]), \
        "kind load: the image is on the nodes, never in a registry"
    ports = {c[p]["httpGet"]["port"] for c in pod["containers"] for p in ("livenessProbe", "readinessProbe")}
    assert ports == {int(script_var("HEALTH_PORT"))}
    assert arg_value(serve["args"], "--metrics-listen").endswith(f":{script_var('HEALTH_PORT')}")
    labels = pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert cm["metadata"]["labels"].items() <= labels.items()
    assert {"operator": "Exists"} in pod["tolerations"], "cri-net must run on the tainted control plane too"


def test_the_script_renders_and_applies_what_this_test_renders() -> None:
    text = E2E.read_text()
    assert re.search(r'^kubectl kustomize --load-restrictor LoadRestrictionsNone "\$HERE" >"\$WORK/cri-net.yaml"$',
                     text, re.M), "e2e.sh must render the overlay as this test does"
    assert re.search(r'^k apply -f "\$WORK/cri-net.yaml"$', text, re.M)
    assert re.search(r'^kind create cluster --name "\$CLUSTER" --config "\$HERE/kind-config.yaml"', text, re.M)
    assert re.search(r'^kind load docker-image --name "\$CLUSTER" "\$IMAGE" "\$POD_IMAGE"$', text, re.M)
    assert re.search(r'^docker build -t "\$IMAGE" "\$ROOT"$', text, re.M) and (ROOT / "Dockerfile").is_file()
    kustomization = yaml_file(KIND / "kustomization.yaml")
    for rel in kustomization["resources"] + [p["path"] for p in kustomization["patches"]]:
        assert (KIND / rel).resolve().is_file(), rel
    for rel in re.findall(r'"\$HERE/([^"]+)"', text):
        assert (KIND / rel).exists(), f"e2e.sh uses $HERE/{rel}, which does not exist"
    # the old nsenter/apt/pip installer is gone: one way to install, deploy/
    assert sorted(p.name for p in KIND.iterdir()) == sorted(
        ["README.md", "e2e.sh", "e2e-pods.yaml", "kind-config.yaml", "kustomization.yaml", "networks.yaml",
         "serve-networks-patch.yaml"])


# ------------------------------------------------------------------ the extra networks


def configmap_networks() -> dict[str, str]:
    cm = yaml_file(KIND / "networks.yaml")
    assert cm["kind"] == "ConfigMap"
    return dict(cm["data"])


def test_configmap_networks_load_with_cri_nets_loader(tmp_path: Path) -> None:
    data = configmap_networks()
    for key, value in data.items():
        conf_list_from_bytes(value.encode(), source=f"networks.yaml: data.{key}")
    kubelet_configmap_volume(tmp_path, data)
    found = load_networks(str(tmp_path))
    assert found.skipped == (), [f"{s.path}: {s.reason}" for s in found.skipped]
    names = {n.name for n in found.networks}
    assert names == {script_var("STORAGE_NETWORK")}
    [storage] = found.networks
    assert storage_subnet(json.loads(storage.raw)) == ipaddress.ip_network(script_var("STORAGE_CIDR"))


def test_e2e_pods_ask_for_what_the_script_checks() -> None:
    pods = yaml_file(KIND / "e2e-pods.yaml")["items"]
    assert [p["metadata"]["name"] for p in pods] == script_array("PODS")
    networks = {json.loads(v)["name"] for v in configmap_networks().values()}
    key, value = script_var("POD_LABEL").split("=")
    rate = script_var("INGRESS_RATE")
    for pod in pods:
        assert pod["metadata"]["labels"][key] == value
        ann = pod["metadata"]["annotations"]
        planes = json.loads(ann[EXTRA_NETWORKS])
        assert {p["name"] for p in planes} <= networks and {p["interface"] for p in planes} == {"net1"}
        assert ann["kubernetes.io/ingress-bandwidth"] + "bit" == rate
        [anti] = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert anti["topologyKey"] == "kubernetes.io/hostname" and anti["labelSelector"]["matchLabels"] == {key: value}
        [web] = pod["spec"]["containers"]
        assert web["image"] == script_var("POD_IMAGE")
        [port] = web["ports"]
        assert (port["containerPort"], port["hostPort"]) == (int(script_var("HTTP_PORT")), int(script_var("HOST_PORT")))
        assert "httpd" in " ".join(web["command"]) and f"-p {port['containerPort']}" in " ".join(web["command"])


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, min_size=1, max_size=6, unique=True),
       stamp=st.from_regex(r"\.\.20[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}\.[0-9]{9}", fullmatch=True),
       ext=st.sampled_from([".conflist", ".conf", ".json"]))
def test_generated_configmaps_load_whole_through_kubelets_layout(tmp_path_factory: pytest.TempPathFactory,
                                                                 names: list[str], stamp: str, ext: str) -> None:
    """Any ConfigMap of networks, in kubelet's layout, loads every network and skips nothing
    (the `..data` link and the timestamped dir are not configs)."""
    dest = tmp_path_factory.mktemp("cm")
    data = {}
    for i, name in enumerate(names):
        plugin = {"type": "bridge", "bridge": f"cm{i}", "ipam": {"type": "host-local",
                                                                 "ranges": [[{"subnet": f"10.251.{i}.0/24"}]]}}
        doc = ({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]} if ext == ".conflist"
               else {"cniVersion": "1.0.0", "name": name, **plugin})
        data[f"{i:02d}-{name}{ext}"] = json.dumps(doc)
    kubelet_configmap_volume(dest, data, stamp)
    found = load_networks(str(dest))
    assert found.skipped == (), [f"{s.path}: {s.reason}" for s in found.skipped]
    assert sorted(n.name for n in found.networks) == sorted(names)
    # kubelet updates the ConfigMap (first network dropped, one added): serve's conf dir
    # watcher must see a change, and the reload must give the new set
    before = dir_signature(str(dest))
    update = dict(list(data.items())[1:])
    update["99-added.conflist"] = json.dumps({"cniVersion": "1.0.0", "name": "x_added", "plugins": [
        {"type": "bridge", "bridge": "cmadd", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.252.0.0/24"}]]}}]})
    kubelet_configmap_update(dest, update, stamp + "1")
    assert dir_signature(str(dest)) != before, "a ConfigMap update is invisible to the conf dir watcher"
    found = load_networks(str(dest))
    assert found.skipped == () and sorted(n.name for n in found.networks) == sorted(names[1:] + ["x_added"])


# ---------------------------------------------------------------------------- the script


def test_e2e_script_parses_and_is_executable() -> None:
    proc = subprocess.run(["bash", "-n", str(E2E)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(E2E, os.X_OK)


def _run_e2e(path_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/bash", str(E2E)], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(path_dir), "HOME": str(path_dir)}, cwd=str(path_dir))


def _tool_dir(tmp_path: Path, tools: dict[str, str]) -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for name, target in tools.items():
        (d / name).symlink_to(target)
    return d


@pytest.mark.parametrize("present", [(), ("kubectl",), ("docker", "kubectl"), ("kind",)],
                         ids=["none", "kubectl-only", "no-kind", "kind-only"])
def test_e2e_names_every_missing_tool_before_doing_anything(tmp_path: Path, present: tuple[str, ...]) -> None:
    # present tools are stubs that record a call: none may be called before the check fails
    calls = tmp_path / "calls"
    stub = tmp_path / "stub"
    stub.write_text(f'#!/bin/sh\necho "$0 $*" >> {calls}\nexit 0\n')
    stub.chmod(0o755)
    path_dir = _tool_dir(tmp_path, {t: str(stub) for t in present})
    proc = _run_e2e(path_dir)
    missing = [t for t in ("docker", "kind", "kubectl") if t not in present]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert f"missing required tool(s): {' '.join(missing)}." in proc.stderr, proc.stderr
    assert "nothing was done" in proc.stderr and proc.stdout == ""
    assert not calls.exists(), f"tools were run before the check: {calls.read_text()}"


def test_e2e_says_there_is_no_docker_engine(tmp_path: Path) -> None:
    """This host's real docker client (no engine behind it) and kubectl; kind is a stub that
    records a call. The script must stop at `docker info`, naming the missing engine."""
    docker, kubectl = shutil.which("docker"), shutil.which("kubectl")
    if docker is None or kubectl is None:
        pytest.fail(f"this test needs the docker client and kubectl on PATH (docker={docker}, kubectl={kubectl})",
                    pytrace=False)
    engine = subprocess.run([docker, "info"], capture_output=True, timeout=60)
    assert engine.returncode != 0, "a Docker engine answers here: run integration/kind/e2e.sh itself instead"
    calls = tmp_path / "calls"
    stub = tmp_path / "kind-stub"
    stub.write_text(f'#!/bin/sh\necho "kind $*" >> {calls}\nexit 0\n')
    stub.chmod(0o755)
    proc = _run_e2e(_tool_dir(tmp_path, {"docker": docker, "kubectl": kubectl, "kind": str(stub)}))
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "no Docker engine answers" in proc.stderr and "nothing was done" in proc.stderr, proc.stderr
    assert not calls.exists(), f"kind ran before the engine check: {calls.read_text()}"


def test_every_deploy_path_named_in_code_and_scripts_exists() -> None:
    """The image, the init step and the harnesses name manifests by path; a renamed manifest
    must not leave them pointing at nothing (the image, the init step and the image builder
    all named one that never existed)."""
    sources = [ROOT / "Dockerfile", *(ROOT / "cri_net").rglob("*.py"), *(ROOT / "integration").rglob("*.py"),
               *(ROOT / "scripts").iterdir(), *KIND.iterdir()]
    named = {(src.relative_to(ROOT), ref) for src in sources if src.is_file()
             for ref in re.findall(r"\bdeploy/[\w.-]*[\w]", src.read_text(errors="replace"))}
    assert named, "no deploy/ paths found: the scan is broken"
    missing = sorted(f"{src}: {ref}" for src, ref in named if not (ROOT / ref).exists())
    assert missing == [], missing

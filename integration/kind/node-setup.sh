#!/usr/bin/env bash
# Install cri-net on one node as its container runtime's only CNI plugin.
#
#   node-setup.sh [SOURCE_DIR]        (SOURCE_DIR: a cri-net checkout; default: this repo)
#
# What it does, in order (each step is idempotent; running it twice changes nothing):
#   1. checks for Python >= 3.11 with venv, and for the CNI plugins the networks use;
#      on Debian/Ubuntu it apt-get installs python3-venv / containernetworking-plugins
#      when they are missing (CRI_NET_APT=never turns that off);
#   2. works out the node's pod CIDR: CRI_NET_POD_CIDR, else the Node object's
#      spec.podCIDR read with the kubelet's own kubeconfig (waits for it to be assigned);
#   3. pip installs cri-net from a clean copy of SOURCE_DIR into its own venv,
#      $CRI_NET_PREFIX/venv-<source hash> (skipped when that venv is already complete);
#   4. writes the launcher `cri-net` into the runtime's CNI bin dir (the `python -S` one that
#      `cri-net cni-plugin install` writes) and points $CRI_NET_PREFIX/current at the venv,
#      from which the DaemonSet runs `cri-net serve`, so plugin calls are handed to it;
#   5. writes cri-net's networks into $CRI_NET_CONF_DIR: the default network `pods`
#      (bridge + host-local on the pod CIDR, portmap, bandwidth) and the extra plane
#      `storage`, rendered from net.d/ next to this script;
#   6. writes the runtime-side conflist (type cri-net) into the runtime's CNI conf dir.
# Files are written to a temporary name and renamed, so the runtime never reads half a
# file; everything written is parsed with cri_net.libcni before it is put in place.
#
# Every path and name can be overridden (the tests point them all at temporary dirs):
#   CRI_NET_SRC            source dir (or the first argument)
#   CRI_NET_PREFIX         /opt/cri-net              venvs live here
#   CRI_NET_PYTHON         python3                   interpreter the venv is made from
#   CRI_NET_PIP_ARGS       (none)                    extra pip args, e.g. "--no-index --find-links /wheels"
#   CRI_NET_APT            auto                      auto | never
#   CNI_BIN_DIR            /opt/cni/bin              where the runtime looks for plugins
#   CNI_CONF_DIR           /etc/cni/net.d            where the runtime looks for its conflist
#   CNI_CONFLIST           $CNI_CONF_DIR/00-cri-net.conflist
#   CRI_NET_CONF_DIR       /etc/cri-net/net.d        cri-net's own networks (confDir)
#   CRI_NET_BIN_DIRS       /opt/cni/bin:/usr/lib/cni binDirs cri-net runs the plugins from
#   CRI_NET_CACHE_DIR      (cri-net's /var/lib/cni)  cacheDir
#   CRI_NET_IPAM_DIR       (host-local's default)    host-local dataDir of both networks
#   CRI_NET_POD_CIDR       (node's spec.podCIDR)     subnet of the default network
#   CRI_NET_POD_NETWORK    pods                      name of the default network
#   CRI_NET_POD_BRIDGE     crinet-pods               its bridge
#   CRI_NET_IP_MASQ        true                      masquerade pod traffic leaving the node
#   CRI_NET_STORAGE_NETWORK storage                  name of the extra plane
#   CRI_NET_STORAGE_CIDR   10.250.0.0/24             its subnet (node-local, not routed)
#   CRI_NET_STORAGE_BRIDGE crinet-stor               its bridge
#   NODE_NAME              $(hostname)               Node object to read spec.podCIDR from
#   CRI_NET_KUBECONFIG     /etc/kubernetes/kubelet.conf
#   CRI_NET_POD_CIDR_WAIT  180                       seconds to wait for spec.podCIDR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${1:-${CRI_NET_SRC:-$HERE/../..}}
PREFIX=${CRI_NET_PREFIX:-/opt/cri-net}
PYTHON=${CRI_NET_PYTHON:-python3}
PIP_ARGS=${CRI_NET_PIP_ARGS:-}
APT=${CRI_NET_APT:-auto}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
CNI_CONFLIST=${CNI_CONFLIST:-$CNI_CONF_DIR/00-cri-net.conflist}
NODE_NAME=${NODE_NAME:-$(hostname)}
KUBECONFIG_FILE=${CRI_NET_KUBECONFIG:-/etc/kubernetes/kubelet.conf}
POD_CIDR_WAIT=${CRI_NET_POD_CIDR_WAIT:-180}
export CRI_NET_CONF_DIR=${CRI_NET_CONF_DIR:-/etc/cri-net/net.d}
export CRI_NET_BIN_DIRS=${CRI_NET_BIN_DIRS:-/opt/cni/bin:/usr/lib/cni}
export CRI_NET_CACHE_DIR=${CRI_NET_CACHE_DIR:-}
export CRI_NET_IPAM_DIR=${CRI_NET_IPAM_DIR:-}
export CRI_NET_POD_CIDR=${CRI_NET_POD_CIDR:-}
export CRI_NET_POD_NETWORK=${CRI_NET_POD_NETWORK:-pods}
export CRI_NET_POD_BRIDGE=${CRI_NET_POD_BRIDGE:-crinet-pods}
export CRI_NET_IP_MASQ=${CRI_NET_IP_MASQ:-true}
export CRI_NET_STORAGE_NETWORK=${CRI_NET_STORAGE_NETWORK:-storage}
export CRI_NET_STORAGE_CIDR=${CRI_NET_STORAGE_CIDR:-10.250.0.0/24}
export CRI_NET_STORAGE_BRIDGE=${CRI_NET_STORAGE_BRIDGE:-crinet-stor}
TEMPLATES=$HERE/net.d
RUNTIME_TEMPLATE=$HERE/10-cri-net.conflist
PLUGINS_NEEDED=(bridge host-local portmap bandwidth)

say() { printf 'node-setup: %s\n' "$*"; }
die() { printf 'node-setup: error: %s\n' "$*" >&2; exit 1; }

[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/cri_net" ] || die "$SRC is not a cri-net source dir (no pyproject.toml / cri_net/)"
SRC=$(cd "$SRC" && pwd)
for f in "$TEMPLATES/10-pods.conflist" "$TEMPLATES/20-storage.conflist" "$RUNTIME_TEMPLATE"; do
    [ -f "$f" ] || die "missing template $f"
done

# ---- 1. prerequisites ---------------------------------------------------------------
python_ok() {
    command -v "$PYTHON" >/dev/null 2>&1 &&
        "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
plugin_missing() {
    local p d
    for p in "${PLUGINS_NEEDED[@]}"; do
        local found=
        IFS=: read -r -a dirs <<<"$CRI_NET_BIN_DIRS"
        for d in "${dirs[@]}"; do [ -x "$d/$p" ] && found=1 && break; done
        [ -n "$found" ] || { echo "$p"; return 0; }
    done
    return 1
}
packages=()
python_ok || packages+=(python3 python3-venv)
# Debian splits ensurepip out of python3 into python3-venv; `python3 -m venv` needs it.
if [ "$PYTHON" = python3 ] && command -v dpkg-query >/dev/null 2>&1 &&
    ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'ok installed'; then
    packages+=(python3-venv)
fi
missing_plugin=$(plugin_missing || true)
[ -z "$missing_plugin" ] || packages+=(containernetworking-plugins)
if [ ${#packages[@]} -gt 0 ]; then
    if [ "$APT" = never ] || ! command -v apt-get >/dev/null 2>&1; then
        python_ok || die "no Python >= 3.11 with venv as '$PYTHON' (set CRI_NET_PYTHON)"
        [ -z "$missing_plugin" ] || die "CNI plugin '$missing_plugin' not found in $CRI_NET_BIN_DIRS"
    else
        mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
        say "installing Debian packages: ${packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
        python_ok || die "still no Python >= 3.11 with venv as '$PYTHON' after apt-get"
        missing_plugin=$(plugin_missing || true)
        [ -z "$missing_plugin" ] || die "CNI plugin '$missing_plugin' not found in $CRI_NET_BIN_DIRS after apt-get"
    fi
fi

# ---- 2. the pod CIDR ----------------------------------------------------------------
if [ -z "$CRI_NET_POD_CIDR" ]; then
    command -v kubectl >/dev/null 2>&1 && [ -r "$KUBECONFIG_FILE" ] ||
        die "CRI_NET_POD_CIDR is not set and the node's podCIDR cannot be read (need kubectl and $KUBECONFIG_FILE)"
    deadline=$((SECONDS + POD_CIDR_WAIT))
    while :; do
        CRI_NET_POD_CIDR=$(kubectl --kubeconfig "$KUBECONFIG_FILE" get node "$NODE_NAME" \
            -o 'jsonpath={.spec.podCIDR}' 2>/dev/null || true)
        [ -n "$CRI_NET_POD_CIDR" ] && break
        [ "$SECONDS" -lt "$deadline" ] || die "node $NODE_NAME has no spec.podCIDR after ${POD_CIDR_WAIT}s (set CRI_NET_POD_CIDR)"
        sleep 2
    done
    say "pod CIDR of node $NODE_NAME: $CRI_NET_POD_CIDR"
fi
"$PYTHON" - <<'EOF' || die "invalid settings (see above)"
import ipaddress, os, sys
bad = []
for key in ("CRI_NET_POD_CIDR", "CRI_NET_STORAGE_CIDR"):
    try:
        ipaddress.ip_network(os.environ[key], strict=True)
    except ValueError as exc:
        bad.append(f"{key}={os.environ[key]!r}: {exc}")
for key in ("CRI_NET_POD_BRIDGE", "CRI_NET_STORAGE_BRIDGE"):
    if not 0 < len(os.environ[key]) <= 15:
        bad.append(f"{key}={os.environ[key]!r}: a Linux interface name has 1 to 15 characters")
if os.environ["CRI_NET_POD_NETWORK"] == os.environ["CRI_NET_STORAGE_NETWORK"]:
    bad.append("CRI_NET_POD_NETWORK and CRI_NET_STORAGE_NETWORK must differ")
if os.environ["CRI_NET_IP_MASQ"] not in ("true", "false"):
    bad.append(f"CRI_NET_IP_MASQ={os.environ['CRI_NET_IP_MASQ']!r}: true or false")
for b in bad:
    print("node-setup: error:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

# ---- 3. cri-net in its own venv -----------------------------------------------------
mkdir -p "$PREFIX"
STAGE=$(mktemp -d "$PREFIX/.stage.XXXXXX")
TMPFILES=()
cleanup() { rm -rf "$STAGE"; [ ${#TMPFILES[@]} -eq 0 ] || rm -f "${TMPFILES[@]}"; }
trap cleanup EXIT
# A clean copy: pip builds in the source tree (build/, *.egg-info) and the source may be
# read-only (an image) or a developer's checkout.
items=(pyproject.toml README.md cri_net adaptors)
[ -f "$SRC/constraints.txt" ] && items+=(constraints.txt)
for f in "$SRC"/LICENSE*; do [ -e "$f" ] && items+=("$(basename "$f")"); done
tar -C "$SRC" -cf - --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' "${items[@]}" |
    tar -C "$STAGE" -xf -
py_version=$("$PYTHON" -c 'import sys; print(sys.version)')
hash=$({ printf '%s\n' "$py_version"; cd "$STAGE" && find . -type f -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum; } | sha256sum | cut -c1-12)
VENV=$PREFIX/venv-$hash
if [ -f "$VENV/.cri-net-complete" ] && [ -x "$VENV/bin/cri-net-cni" ]; then
    say "cri-net already installed in $VENV"
else
    rm -rf "$VENV"
    constraints=()
    [ -f "$STAGE/constraints.txt" ] && constraints=(-c "$STAGE/constraints.txt")
    # shellcheck disable=SC2206  # PIP_ARGS is a word list on purpose
    pip_args=($PIP_ARGS)
    # pip >= 22.3 can install into another interpreter's environment (--python), which
    # spares the venv its own pip; otherwise the venv gets pip from ensurepip.
    pip_version=$("$PYTHON" -m pip --version 2>/dev/null | awk '{print $2}' || true)
    if [ -n "$pip_version" ] && "$PYTHON" - "$pip_version" <<'EOF'
import sys
parts = [int(p) if p.isdigit() else 0 for p in sys.argv[1].split(".")[:2]]
sys.exit(0 if tuple(parts + [0])[:2] >= (22, 3) else 1)
EOF
    then
        "$PYTHON" -m venv --without-pip "$VENV"
        pip=("$PYTHON" -m pip --python "$VENV/bin/python")
    else
        "$PYTHON" -m venv "$VENV"
        pip=("$VENV/bin/python" -m pip)
    fi
    say "pip installing cri-net from $SRC into $VENV"
    "${pip[@]}" install --quiet --disable-pip-version-check "${pip_args[@]}" "${constraints[@]}" "$STAGE" ||
        die "pip install failed"
    "$VENV/bin/python" -c 'import cri_net.plugin.handler, adaptors.cri' || die "cri-net does not import in $VENV"
    touch "$VENV/.cri-net-complete"
fi

# put_file CONTENT_FILE TARGET MODE: atomically replace TARGET unless it is identical.
put_file() {
    local content=$1 target=$2 mode=$3
    mkdir -p "$(dirname "$target")"
    if [ -f "$target" ] && cmp -s "$content" "$target" && [ "$(stat -c %a "$target")" = "${mode#0}" ]; then
        say "unchanged $target"
        return
    fi
    local tmp
    tmp=$(mktemp "$(dirname "$target")/.$(basename "$target").XXXXXX")
    TMPFILES+=("$tmp")
    cat "$content" >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$target"
    say "wrote $target"
}

# ---- 4. the launcher ----------------------------------------------------------------
"$VENV/bin/python" -c 'from cri_net.plugin.launcher import launcher_text; print(launcher_text(), end="")' \
    >"$STAGE/cri-net" || die "cannot render the launcher"
put_file "$STAGE/cri-net" "$CNI_BIN_DIR/cri-net" 0755
ln -sfn "$VENV" "$PREFIX/.current.tmp" && mv -Tf "$PREFIX/.current.tmp" "$PREFIX/current"
say "$PREFIX/current -> $VENV"

# ---- 5 + 6. cri-net's networks, the runtime conflist --------------------------------
mkdir -p "$STAGE/out"
"$VENV/bin/python" - "$TEMPLATES" "$RUNTIME_TEMPLATE" "$STAGE/out" <<'EOF' || die "cannot render the network configs"
import json, os, sys
from pathlib import Path

from cri_net.libcni import conf_list_from_file

templates, runtime_template, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
env = os.environ


def network(template: str, name: str, bridge: str, subnet: str, ip_masq: bool | None) -> dict:
    conf = json.loads((templates / template).read_text())
    conf["name"] = name
    [br] = [p for p in conf["plugins"] if p.get("type") == "bridge"]
    br["bridge"] = bridge
    if ip_masq is not None:
        br["ipMasq"] = ip_masq
    br["ipam"]["ranges"] = [[{"subnet": subnet}]]
    if env["CRI_NET_IPAM_DIR"]:
        br["ipam"]["dataDir"] = env["CRI_NET_IPAM_DIR"]
    return conf


files = {
    "10-pods.conflist": network("10-pods.conflist", env["CRI_NET_POD_NETWORK"], env["CRI_NET_POD_BRIDGE"],
                                env["CRI_NET_POD_CIDR"], env["CRI_NET_IP_MASQ"] == "true"),
    "20-storage.conflist": network("20-storage.conflist", env["CRI_NET_STORAGE_NETWORK"],
                                   env["CRI_NET_STORAGE_BRIDGE"], env["CRI_NET_STORAGE_CIDR"], None),
}
runtime = json.loads(runtime_template.read_text())
[plugin] = runtime["plugins"]
plugin["confDir"] = env["CRI_NET_CONF_DIR"]
plugin["binDirs"] = [d for d in env["CRI_NET_BIN_DIRS"].split(":") if d]
plugin["defaultNetwork"] = env["CRI_NET_POD_NETWORK"]
if env["CRI_NET_CACHE_DIR"]:
    plugin["cacheDir"] = env["CRI_NET_CACHE_DIR"]
files["runtime.conflist"] = runtime
for name, conf in files.items():
    path = out / name
    path.write_text(json.dumps(conf, indent=2) + "\n")
    conf_list_from_file(str(path))  # raises on anything libcni (and so cri-net) would reject
EOF
put_file "$STAGE/out/10-pods.conflist" "$CRI_NET_CONF_DIR/10-pods.conflist" 0644
put_file "$STAGE/out/20-storage.conflist" "$CRI_NET_CONF_DIR/20-storage.conflist" 0644
put_file "$STAGE/out/runtime.conflist" "$CNI_CONFLIST" 0644

# The runtime loads the first config by file name; say so if ours is not it.
first=$(find "$CNI_CONF_DIR" -maxdepth 1 -type f \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) \
    -printf '%f\n' | LC_ALL=C sort | head -n1)
[ "$first" = "$(basename "$CNI_CONFLIST")" ] ||
    say "warning: $CNI_CONF_DIR/$first sorts before $(basename "$CNI_CONFLIST"); the runtime will use it, not cri-net"

# Older venvs: nothing points at them any more.
for old in "$PREFIX"/venv-*; do
    [ "$old" = "$VENV" ] || [ ! -d "$old" ] || { rm -rf "$old"; say "removed old $old"; }
done
say "done: cri-net $VENV, default network $CRI_NET_POD_NETWORK ($CRI_NET_POD_CIDR on $CRI_NET_POD_BRIDGE)," \
    "extra plane $CRI_NET_STORAGE_NETWORK ($CRI_NET_STORAGE_CIDR on $CRI_NET_STORAGE_BRIDGE)"

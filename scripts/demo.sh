#!/usr/bin/env bash
# `make demo`: a one-shot CNI ADD then DEL with the Debian plugins (bridge + host-local +
# portmap) in a fresh network namespace, through `cri-net cni` (no `cri-net serve` needed).
# Everything it creates is removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/cri-net-demo.XXXXXX)
ns=crinet-demo-$$
br=crinetdemo0
cleanup() {
  CNI_PATH=/usr/lib/cni NETCONFPATH=$work/net.d .venv/bin/cri-net cni del cri-net-demo "/run/netns/$ns" \
    --cache-dir "$work/cache" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$br" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/net.d"
cat > "$work/net.d/10-demo.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "cri-net-demo", "plugins": [
  {"type": "bridge", "bridge": "$br", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.77.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
ip netns add "$ns"
export NETCONFPATH=$work/net.d CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=demo"
export CAP_ARGS='{"portMappings":[{"hostPort":18777,"containerPort":80,"protocol":"tcp"}]}'
echo "== cri-net cni add cri-net-demo /run/netns/$ns"
.venv/bin/cri-net cni add cri-net-demo "/run/netns/$ns" --cache-dir "$work/cache" --timeout 30
echo "== eth0 inside the namespace"
ip netns exec "$ns" ip -brief addr show eth0
echo "== the namespace reaches its gateway"
ip netns exec "$ns" ping -c1 -W2 10.250.77.1 >/dev/null && echo "ping 10.250.77.1: ok"
echo "== cache file (Go libcni cniCacheV1 format)"
ls "$work/cache/results"
echo "== cri-net cni del"
.venv/bin/cri-net cni del cri-net-demo "/run/netns/$ns" --cache-dir "$work/cache" --timeout 30
echo "done: ADD, DEL and clean-up succeeded"

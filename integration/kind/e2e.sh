#!/usr/bin/env bash
# End to end: cri-net as the only CNI of a kind cluster.
#
#   integration/kind/e2e.sh            (needs docker with a running engine, kind, kubectl)
#
# Builds the installer image, creates a one-node kind cluster without its default CNI,
# installs cri-net with the DaemonSet, then runs a pod with an extra plane, a hostPort and
# bandwidth annotations and checks with kubectl (and docker exec on the node):
#   - the pod IP is in the node's pod CIDR and on the pod's eth0;
#   - the extra plane `storage` is in the pod as net1, with an address of its subnet;
#   - the hostPort answers from the node (portmap);
#   - the host side of the pod's veth has a 10Mbit tbf (ingress), an ifb a 5Mbit tbf (egress);
#   - deleting the pod releases both host-local leases and removes the veth.
# Deletes the cluster at the end, passed or failed (KEEP_CLUSTER=1 keeps it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLUSTER=${CLUSTER:-cri-net-e2e}
IMAGE=${IMAGE:-cri-net-installer:dev}        # as in daemonset.yaml
POD_IMAGE=${POD_IMAGE:-busybox:1.36}         # as in e2e-pod.yaml
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
TIMEOUT=${TIMEOUT:-300s}
POD=cri-net-e2e                              # e2e-pod.yaml
HOST_PORT=30080                              # e2e-pod.yaml
POD_NETWORK=pods                             # net.d/10-pods.conflist
STORAGE_NETWORK=storage                      # net.d/20-storage.conflist
STORAGE_CIDR=10.250.0.0/24                   # daemonset.yaml (CRI_NET_STORAGE_CIDR)
CTX=kind-$CLUSTER

k() { kubectl --context "$CTX" "$@"; }
step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'e2e: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'e2e: ok: %s\n' "$*"; }

ip2int() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    echo $(((a << 24) + (b << 16) + (c << 8) + d))
}
in_cidr() { # in_cidr IP CIDR
    local bits=${2#*/} mask ip net
    mask=$(((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF))
    ip=$(ip2int "$1")
    net=$(ip2int "${2%/*}")
    (((ip & mask) == (net & mask)))
}
node() { docker exec "$NODE" "$@"; }

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info failed)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    fail "a kind cluster named $CLUSTER exists already; delete it or set CLUSTER"
fi

step "building $IMAGE"
docker build -f "$HERE/Dockerfile" -t "$IMAGE" "$ROOT"
docker image inspect "$POD_IMAGE" >/dev/null 2>&1 || docker pull "$POD_IMAGE"

NODE=
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        step "diagnostics"
        k get nodes -o wide
        k get pods -A -o wide
        k -n kube-system logs daemonset/cri-net-installer -c install --tail=100
        k describe pod "$POD" 2>/dev/null | tail -n 30
        for n in $(kind get nodes --name "$CLUSTER"); do
            docker exec "$n" journalctl -u containerd --no-pager -n 40
        done
    fi
    if [ "$KEEP_CLUSTER" = 1 ]; then
        step "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
    else
        step "deleting cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER"
    fi
    exit "$rc"
}
trap cleanup EXIT

step "creating kind cluster $CLUSTER (default CNI disabled)"
kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" --wait 0s
kind load docker-image --name "$CLUSTER" "$IMAGE" "$POD_IMAGE"

step "installing cri-net on every node"
k apply -f "$HERE/daemonset.yaml"
k -n kube-system rollout status daemonset/cri-net-installer --timeout="$TIMEOUT"
k wait --for=condition=Ready node --all --timeout="$TIMEOUT"
ok "every node Ready with cri-net as its CNI"
k -n kube-system rollout status deployment/coredns --timeout="$TIMEOUT"
ok "coredns (pods without annotations) running"

step "pod with an extra plane, a hostPort and bandwidth annotations"
k apply -f "$HERE/e2e-pod.yaml"
k wait --for=condition=Ready "pod/$POD" --timeout="$TIMEOUT"
NODE=$(k get pod "$POD" -o jsonpath='{.spec.nodeName}')
POD_IP=$(k get pod "$POD" -o jsonpath='{.status.podIP}')
POD_CIDR=$(k get node "$NODE" -o jsonpath='{.spec.podCIDR}')
NODE_IP=$(k get node "$NODE" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
echo "node $NODE ($NODE_IP), pod CIDR $POD_CIDR, pod IP $POD_IP"

[ -n "$POD_IP" ] && in_cidr "$POD_IP" "$POD_CIDR" || fail "pod IP '$POD_IP' is not in the node's pod CIDR $POD_CIDR"
eth0=$(k exec "$POD" -- ip addr show eth0)
grep -q "inet $POD_IP/" <<<"$eth0" || fail "eth0 in the pod does not have $POD_IP: $eth0"
ok "pod IP $POD_IP in $POD_CIDR, on eth0"

net1=$(k exec "$POD" -- ip addr show net1) || fail "no net1 in the pod"
NET1_IP=$(awk '$1 == "inet" {split($2, a, "/"); print a[1]; exit}' <<<"$net1")
[ -n "$NET1_IP" ] && in_cidr "$NET1_IP" "$STORAGE_CIDR" || fail "net1 has no address in $STORAGE_CIDR: $net1"
ok "extra plane $STORAGE_NETWORK on net1: $NET1_IP"

reply=$(node curl -fsS --max-time 10 "http://$NODE_IP:$HOST_PORT/") || fail "hostPort $HOST_PORT does not answer"
[ "$reply" = "$POD" ] || fail "hostPort $HOST_PORT answered '$reply'"
ok "hostPort $NODE_IP:$HOST_PORT reaches the pod"

iflink=$(k exec "$POD" -- cat /sys/class/net/eth0/iflink | tr -d '\r')
VETH=$(node ip -o link show | awk -F': ' -v i="$iflink" '$1 == i {split($2, a, "@"); print a[1]}')
[ -n "$VETH" ] || fail "no host interface with index $iflink (the pod's veth peer)"
qdiscs=$(node tc qdisc show)
grep -Eq "^qdisc tbf .* dev $VETH .*rate 10Mbit" <<<"$qdiscs" || fail "no 10Mbit tbf on $VETH: $qdiscs"
grep -Eq "^qdisc tbf .* dev bwp[^ ]* .*rate 5Mbit" <<<"$qdiscs" || fail "no 5Mbit tbf on an ifb (egress): $qdiscs"
ok "bandwidth: 10Mbit ingress on $VETH, 5Mbit egress"

step "deleting the pod"
k delete pod "$POD" --wait=true --timeout=120s
node test ! -e "/var/lib/cni/networks/$POD_NETWORK/$POD_IP" || fail "lease of $POD_IP left in $POD_NETWORK"
node test ! -e "/var/lib/cni/networks/$STORAGE_NETWORK/$NET1_IP" || fail "lease of $NET1_IP left in $STORAGE_NETWORK"
if node ip link show "$VETH" >/dev/null 2>&1; then fail "veth $VETH left on the node"; fi
ok "leases released, veth gone"

printf '\ne2e: PASS\n'

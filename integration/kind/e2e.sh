#!/usr/bin/env bash
# End to end: cri-net as an add-on of a 3-node kind cluster, over kindnet.
#
#   integration/kind/e2e.sh            (needs docker with a running engine, kind and kubectl)
#
# 1. builds the node image from the repository's Dockerfile and `kind load`s it;
# 2. creates the cluster of kind-config.yaml (1 control plane + 2 workers, kindnet kept: it
#    stays the primary network and routes pods between nodes);
# 3. applies deploy/cri-net.yaml with this directory's overlay (kustomization.yaml: the
#    extra networks as the ConfigMap cri-net-networks, mounted at serve's /etc/cri-net/net.d);
#    the init container writes the runtime-side conflist with delegateConfDir, so each pod's
#    default network is kindnet's and cri-net adds what the annotations ask for;
# 4. checks with kubectl (and docker exec on the nodes): the health endpoints of every node,
#    two pods on two workers reaching each other, net1 with an address of the storage
#    subnet, the hostPort, a 10Mbit tbf on the pod's host veth; deleting the pods releases
#    the leases and removes the veths.
# Deletes the cluster at the end, passed or failed (KEEP_CLUSTER=1 keeps it).
set -euo pipefail

# Before anything else: the tools. Nothing is built or created without all of them.
missing=()
for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    printf 'e2e: FAIL: missing required tool(s): %s. This script needs a running Docker engine, kind and kubectl on PATH; nothing was done.\n' \
        "${missing[*]}" >&2
    exit 2
fi
docker info >/dev/null 2>&1 || {
    printf 'e2e: FAIL: docker is installed but no Docker engine answers (docker info failed); nothing was done.\n' >&2
    exit 2
}
case ${BASH_SOURCE[0]} in */*) HERE=${BASH_SOURCE[0]%/*} ;; *) HERE=. ;; esac
HERE=$(cd "$HERE" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLUSTER=${CLUSTER:-cri-net-e2e}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
TIMEOUT=${TIMEOUT:-300s}
IMAGE=localhost/cri-net:dev              # deploy/cri-net.yaml
NAMESPACE=cri-net                        # deploy/cri-net.yaml
DAEMONSET=cri-net                        # deploy/cri-net.yaml
HEALTH_PORT=9731                         # deploy/cri-net.yaml: the probes' port
RUNTIME_CONFLIST=/etc/cni/net.d/00-cri-net.conflist   # written by the init container
POD_IMAGE=busybox:1.36                   # e2e-pods.yaml
POD_LABEL=app=cri-net-e2e                # e2e-pods.yaml
PODS=(cri-net-e2e-a cri-net-e2e-b)       # e2e-pods.yaml
HTTP_PORT=8080                           # e2e-pods.yaml
HOST_PORT=30080                          # e2e-pods.yaml
INGRESS_RATE=10Mbit                      # e2e-pods.yaml: kubernetes.io/ingress-bandwidth
STORAGE_NETWORK=storage                  # networks.yaml
STORAGE_CIDR=10.250.0.0/24               # networks.yaml
PRIMARY_NETWORK=kindnet                  # kind's own conflist (host-local leases under its name)
CTX=kind-$CLUSTER

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'e2e: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'e2e: ok: %s\n' "$*"; }

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    fail "a kind cluster named $CLUSTER exists already; delete it or set CLUSTER"
fi

k() { kubectl --context "$CTX" "$@"; }
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
node_ip() { k get node "$1" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}'; }

WORK=$(mktemp -d)
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        step "diagnostics"
        k get nodes -o wide
        k get pods -A -o wide
        k -n "$NAMESPACE" logs "daemonset/$DAEMONSET" -c install --tail=50
        k -n "$NAMESPACE" logs "daemonset/$DAEMONSET" -c serve --tail=100
        for pod in "${PODS[@]}"; do k describe pod "$pod" 2>/dev/null | tail -n 20; done
        for n in $(kind get nodes --name "$CLUSTER"); do
            docker exec "$n" journalctl -u containerd --no-pager -n 40
        done
    fi
    rm -rf "$WORK"
    if [ "$KEEP_CLUSTER" = 1 ]; then
        step "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
    else
        step "deleting cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER"
    fi
    exit "$rc"
}
trap cleanup EXIT

step "building $IMAGE from $ROOT/Dockerfile"
docker build -t "$IMAGE" "$ROOT"
docker image inspect "$POD_IMAGE" >/dev/null 2>&1 || docker pull "$POD_IMAGE"

step "creating kind cluster $CLUSTER (1 control plane + 2 workers, kindnet as the primary network)"
kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" --wait "$TIMEOUT"
kind load docker-image --name "$CLUSTER" "$IMAGE" "$POD_IMAGE"

step "installing cri-net: deploy/cri-net.yaml + the kind overlay (extra networks ConfigMap)"
kubectl kustomize --load-restrictor LoadRestrictionsNone "$HERE" >"$WORK/cri-net.yaml"
k apply -f "$WORK/cri-net.yaml"
k -n "$NAMESPACE" rollout status "daemonset/$DAEMONSET" --timeout="$TIMEOUT"
k wait --for=condition=Ready node --all --timeout="$TIMEOUT"
ok "DaemonSet $NAMESPACE/$DAEMONSET ready on every node"

step "health endpoints and the runtime-side conflist on every node"
for n in $(kind get nodes --name "$CLUSTER"); do
    ip=$(node_ip "$n")
    for path in /healthz /readyz; do
        body=$(docker exec "$n" curl -fsS --max-time 5 "http://$ip:$HEALTH_PORT$path") ||
            fail "$n: http://$ip:$HEALTH_PORT$path does not answer 200"
        [ "$body" = ok ] || fail "$n: $path answered '$body'"
    done
    docker exec "$n" grep -q '"delegateConfDir"' "$RUNTIME_CONFLIST" ||
        fail "$n: $RUNTIME_CONFLIST is missing or has no delegateConfDir (kindnet is not the default network)"
done
ok "/healthz and /readyz answer ok on $HEALTH_PORT of every node; delegate mode over kindnet"

step "two pods on two workers: default network from kindnet, storage plane, hostPort, bandwidth"
k apply -f "$HERE/e2e-pods.yaml"
k wait --for=condition=Ready pod -l "$POD_LABEL" --timeout="$TIMEOUT"
declare -A NODE POD_IP NET1_IP VETH
for pod in "${PODS[@]}"; do
    NODE[$pod]=$(k get pod "$pod" -o jsonpath='{.spec.nodeName}')
    POD_IP[$pod]=$(k get pod "$pod" -o jsonpath='{.status.podIP}')
    cidr=$(k get node "${NODE[$pod]}" -o jsonpath='{.spec.podCIDR}')
    echo "$pod on ${NODE[$pod]}: pod IP ${POD_IP[$pod]}, node pod CIDR $cidr"
    [ -n "${POD_IP[$pod]}" ] && in_cidr "${POD_IP[$pod]}" "$cidr" ||
        fail "$pod: pod IP '${POD_IP[$pod]}' is not in its node's pod CIDR $cidr (kindnet's range)"
    eth0=$(k exec "$pod" -- ip addr show eth0)
    grep -q "inet ${POD_IP[$pod]}/" <<<"$eth0" || fail "$pod: eth0 does not have ${POD_IP[$pod]}: $eth0"
    net1=$(k exec "$pod" -- ip addr show net1) || fail "$pod: no net1 (the $STORAGE_NETWORK plane)"
    NET1_IP[$pod]=$(awk '$1 == "inet" {split($2, a, "/"); print a[1]; exit}' <<<"$net1")
    [ -n "${NET1_IP[$pod]}" ] && in_cidr "${NET1_IP[$pod]}" "$STORAGE_CIDR" ||
        fail "$pod: net1 has no address in $STORAGE_CIDR: $net1"
    ok "$pod: eth0 ${POD_IP[$pod]} (kindnet), net1 ${NET1_IP[$pod]} ($STORAGE_NETWORK)"
done
a=${PODS[0]} b=${PODS[1]}
[ "${NODE[$a]}" != "${NODE[$b]}" ] || fail "both pods on ${NODE[$a]}: no cross-node check possible"

for pair in "$a $b" "$b $a"; do
    read -r from to <<<"$pair"
    reply=$(k exec "$from" -- wget -qO- -T 10 "http://${POD_IP[$to]}:$HTTP_PORT/") ||
        fail "$from (${NODE[$from]}) cannot reach $to at ${POD_IP[$to]}:$HTTP_PORT (${NODE[$to]})"
    [ "$reply" = "$to" ] || fail "$from -> ${POD_IP[$to]}:$HTTP_PORT answered '$reply', not $to"
done
ok "pod-to-pod across nodes: $a (${NODE[$a]}) <-> $b (${NODE[$b]})"

for pod in "${PODS[@]}"; do
    n=${NODE[$pod]}
    ip=$(node_ip "$n")
    reply=$(docker exec "$n" curl -fsS --max-time 10 "http://$ip:$HOST_PORT/") ||
        fail "$pod: hostPort $ip:$HOST_PORT does not answer"
    [ "$reply" = "$pod" ] || fail "$pod: hostPort $ip:$HOST_PORT answered '$reply'"
    iflink=$(k exec "$pod" -- cat /sys/class/net/eth0/iflink | tr -d '\r')
    VETH[$pod]=$(docker exec "$n" ip -o link show | awk -F': ' -v i="$iflink" '$1 == i {split($2, x, "@"); print x[1]}')
    [ -n "${VETH[$pod]}" ] || fail "$pod: no interface with index $iflink on $n (the pod's veth peer)"
    qdiscs=$(docker exec "$n" tc qdisc show dev "${VETH[$pod]}")
    grep -Eq "^qdisc tbf .*rate $INGRESS_RATE" <<<"$qdiscs" ||
        fail "$pod: no $INGRESS_RATE tbf on ${VETH[$pod]} ($n): $qdiscs"
    ok "$pod: hostPort $ip:$HOST_PORT answers; $INGRESS_RATE tbf on ${VETH[$pod]}"
done

step "deleting the pods"
k delete -f "$HERE/e2e-pods.yaml" --wait=true --timeout=120s
for pod in "${PODS[@]}"; do
    n=${NODE[$pod]}
    docker exec "$n" test ! -e "/var/lib/cni/networks/$PRIMARY_NETWORK/${POD_IP[$pod]}" ||
        fail "$pod: lease of ${POD_IP[$pod]} left in $PRIMARY_NETWORK on $n"
    docker exec "$n" test ! -e "/var/lib/cni/networks/$STORAGE_NETWORK/${NET1_IP[$pod]}" ||
        fail "$pod: lease of ${NET1_IP[$pod]} left in $STORAGE_NETWORK on $n"
    if docker exec "$n" ip link show "${VETH[$pod]}" >/dev/null 2>&1; then fail "$pod: veth ${VETH[$pod]} left on $n"; fi
done
ok "leases released, veths gone"

printf '\ne2e: PASS\n'

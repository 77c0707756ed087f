#!/usr/bin/env bash
# The "raw" baseline of bench_planes.py: the plugins of a 3-plane pod run one after another
# by a bash loop, as a runtime without cri-net would run them.
#
# One cycle on the netns $BENCH_NETNS (created and deleted by the caller, outside the timing):
#   ADD loopback on lo; ADD each plane's plugin in request order (extras, then the default);
#   DEL each plane in reverse order (prevResult = its ADD result, as libcni's cache gives it);
#   DEL loopback.
# Prints "<add µs> <del µs>" (EPOCHREALTIME). Each plugin's stdin is its compact conf with
# cniVersion and name appended, as cri_net.libcni builds it for a one-plugin list.
#
# Input (environment):
#   BENCH_NETNS, BENCH_ID                 netns path, container id
#   BENCH_PLANES                          "name|ifname|compact plugin JSON" per line, request order
#   BENCH_CNI_VERSION, CNI_PATH (first dir holds the plugins)
#   BENCH_PARALLEL=1                      the planes' ADDs run concurrently (after loopback), and
#                                         their DELs (before loopback): the floor this machine's
#                                         cores and kernel (RTNL) set for concurrent planes
# Exit status 1 on the first plugin failure (its output on stderr); the caller cleans up.
set -u
bin=${CNI_PATH%%:*}
export CNI_PATH CNI_ARGS="" CNI_NETNS="$BENCH_NETNS" CNI_CONTAINERID="$BENCH_ID"
names=() ifnames=() confs=() results=()
while IFS='|' read -r name ifname conf; do
    [ -n "$name" ] || continue
    names+=("$name") ifnames+=("$ifname")
    confs+=("${conf%\}},\"cniVersion\":\"$BENCH_CNI_VERSION\",\"name\":\"$name\"")
done <<<"$BENCH_PLANES"
lo='{"type":"loopback","cniVersion":"0.3.1","name":"cni-loopback"'

fail() {
    echo "planes_cycle: $CNI_COMMAND $1 failed: $2" >&2
    exit 1
}

t0=$EPOCHREALTIME
export CNI_COMMAND=ADD CNI_IFNAME=lo
lo_out=$("$bin/loopback" <<<"$lo}") || fail loopback "$lo_out"
if [ "${BENCH_PARALLEL:-0}" = 1 ]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    pids=()
    for i in "${!names[@]}"; do
        CNI_IFNAME="${ifnames[$i]}" "$bin/bridge" <<<"${confs[$i]}}" >"$dir/$i" 2>&1 &
        pids[$i]=$!
    done
    for i in "${!names[@]}"; do
        wait "${pids[$i]}" || fail "${names[$i]}" "$(cat "$dir/$i")"
        results[$i]=$(<"$dir/$i")
    done
    t1=$EPOCHREALTIME
    export CNI_COMMAND=DEL
    for i in "${!names[@]}"; do
        CNI_IFNAME="${ifnames[$i]}" "$bin/bridge" <<<"${confs[$i]},\"prevResult\":${results[$i]}}" >"$dir/d$i" 2>&1 &
        pids[$i]=$!
    done
    for i in "${!names[@]}"; do
        wait "${pids[$i]}" || fail "${names[$i]}" "$(cat "$dir/d$i")"
    done
else
    for i in "${!names[@]}"; do
        export CNI_IFNAME="${ifnames[$i]}"
        out=$("$bin/bridge" <<<"${confs[$i]}}") || fail "${names[$i]}" "$out"
        results[$i]=$out
    done
    t1=$EPOCHREALTIME
    export CNI_COMMAND=DEL
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do
        export CNI_IFNAME="${ifnames[$i]}"
        out=$("$bin/bridge" <<<"${confs[$i]},\"prevResult\":${results[$i]}}") || fail "${names[$i]}" "$out"
    done
fi
export CNI_IFNAME=lo
out=$("$bin/loopback" <<<"$lo,\"prevResult\":$lo_out}") || fail loopback "$out"
t2=$EPOCHREALTIME
us() { local s=${1%.*} f=${1#*.}; echo $((10#$s * 1000000 + 10#$f)); }
echo "$(($(us "$t1") - $(us "$t0"))) $(($(us "$t2") - $(us "$t1")))"

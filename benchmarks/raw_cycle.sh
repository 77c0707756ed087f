#!/usr/bin/env bash
# The "raw" baseline of bench_libcni.py: a minimal runtime in bash, no jq, no python.
#
# For each netns path given as an argument, one cycle:
#   ADD bridge; ADD portmap (prevResult = bridge's result); DEL portmap; DEL bridge
#   (both DELs get portmap's ADD result as prevResult, as libcni's cached result)
# and prints the cycle's wall time in microseconds, one line per cycle (EPOCHREALTIME).
# Each plugin's stdin is its conf text with, in libcni's order, cniVersion, name,
# prevResult and runtimeConfig appended -- exactly what cri_net.libcni.inject builds for
# a conflist whose plugin objects are written compactly without name/cniVersion.
#
# Input (environment):
#   BENCH_NAME, BENCH_CNI_VERSION        network name and spec version
#   BENCH_BRIDGE_CONF, BENCH_PORTMAP_CONF  each plugin's compact JSON object from the conflist
#   BENCH_PORTMAPPINGS                   JSON array for runtimeConfig.portMappings
#   BENCH_ID_PREFIX                      container id = PREFIX-<index>
#   CNI_PATH (first dir holds the plugins), CNI_IFNAME (default eth0)
# Exit status 1 on the first plugin failure (its output on stderr); the caller cleans up.
set -u
bin=${CNI_PATH%%:*}
export CNI_PATH CNI_IFNAME="${CNI_IFNAME:-eth0}" CNI_ARGS=""

head=',"cniVersion":"'"$BENCH_CNI_VERSION"'","name":"'"$BENCH_NAME"'"'
bridge="${BENCH_BRIDGE_CONF%\}}$head"
portmap="${BENCH_PORTMAP_CONF%\}}$head"
runtime=',"runtimeConfig":{"portMappings":'"$BENCH_PORTMAPPINGS"'}'

fail() {
    echo "raw_cycle: $CNI_COMMAND $1 failed (netns $CNI_NETNS): $2" >&2
    exit 1
}

i=0
for netns in "$@"; do
    export CNI_NETNS="$netns" CNI_CONTAINERID="$BENCH_ID_PREFIX-$i"
    t0=$EPOCHREALTIME

    export CNI_COMMAND=ADD
    br=$("$bin/bridge" <<<"$bridge}") || fail bridge "$br"
    pm=$("$bin/portmap" <<<"$portmap,\"prevResult\":$br$runtime}") || fail portmap "$pm"

    export CNI_COMMAND=DEL
    out=$("$bin/portmap" <<<"$portmap,\"prevResult\":$pm$runtime}") || fail portmap "$out"
    out=$("$bin/bridge" <<<"$bridge,\"prevResult\":$pm}") || fail bridge "$out"

    t1=$EPOCHREALTIME
    echo $(( ${t1//[.,]/} - ${t0//[.,]/} ))  # EPOCHREALTIME has 6 decimals (point per locale)
    i=$((i + 1))
done

#!/usr/bin/env bash
# The main job: `cri-net serve` on /run/cri-net/cri-net.sock, with the default conf dir
# (/etc/cri-net/net.d). On a machine with no network config it first installs the cri-net-default
# bridge network (10.88.0.0/16: bridge + host-local + portmap + bandwidth). Extra flags go to
# `cri-net serve` (e.g. `make run ARGS="--log-level debug"`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/cri-net serve --install-default-network "$@"

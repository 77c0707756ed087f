#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (run as root): the Debian packages cri-net
# drives (CNI plugins, iptables, iproute2) and a virtualenv in .venv with cri-net installed.
# Every step checks first, so a second run costs well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc + libc6-dev: `cri-net cni-plugin install` compiles the native CNI launcher
DEB_PACKAGES=(containernetworking-plugins iptables iproute2 iputils-ping gcc libc6-dev)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
# The editable install is a plain .pth line naming this checkout (setuptools' "compat" mode).
# The default mode installs an import finder that site.py runs at every interpreter start,
# importing pathlib and importlib.util: ~10 ms on each `cri-net cni` call and each plugin
# call of cri-net-cni. Should a future setuptools drop compat mode, the default is used.
EDITABLE_MODE=compat
stamp=.venv/.cri-net-installed
want=$( (cat pyproject.toml constraints.txt; echo "editable_mode=$EDITABLE_MODE") | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "bootstrap: installing cri-net and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  if ! .venv/bin/python -m pip install -q -c constraints.txt -e '.[test]' \
       --config-settings "editable_mode=$EDITABLE_MODE" 2>.venv/.cri-net-install.log; then
    cat .venv/.cri-net-install.log >&2
    echo "bootstrap: editable_mode=$EDITABLE_MODE failed; installing with setuptools' default mode" >&2
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'
  fi
  echo "$want" > "$stamp"
fi

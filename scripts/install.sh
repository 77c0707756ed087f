#!/usr/bin/env bash
# `make install` / `make uninstall` (idempotent): `cri-net` and `cri-net-cni` on PATH as
# symlinks to this clone's .venv, the systemd unit cri-net.service, and a config file
# /etc/cri-net/config.toml when there is none. Uninstall removes exactly what install added:
# links that still point into this .venv, the unit if it is ours, the config if unchanged.
# Overrides (for packaging and tests): DESTDIR, BINDIR (/usr/local/bin),
# UNITDIR (/etc/systemd/system), CONFDIR (/etc/cri-net).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-/usr/local/bin}
UNITDIR=${UNITDIR:-/etc/systemd/system}
CONFDIR=${CONFDIR:-/etc/cri-net}
TOOLS=(cri-net cri-net-cni)
UNIT=cri-net.service
config_template() {
  cat <<'TOML'
# cri-net serve settings (`cri-net config show` prints the effective values).
# Every key is optional; the defaults are shown.
# listen = "unix:///run/cri-net/cri-net.sock"
# cni_listen = "/run/cri-net/cni.sock"
# conf_dir = "/etc/cri-net/net.d"
# bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
# cache_dir = "/var/lib/cni"
# state_dir = "/var/lib/cri-net"
# netns_dir = "/run/cri-net/netns"
# metrics_listen = "127.0.0.1:9153"
# log_level = "info"
# log_format = "text"
TOML
}
unit_text() { sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@CONFDIR@|$CONFDIR|g" deploy/systemd/$UNIT; }
reload_systemd() {
  # only for a real install on a host whose systemd runs
  if [[ -z $DESTDIR && -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl daemon-reload || true
  fi
}

case ${1:-} in
install)
  for t in "${TOOLS[@]}"; do
    [[ -x .venv/bin/$t ]] || { echo "install: .venv/bin/$t missing; run make bootstrap" >&2; exit 1; }
  done
  install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$CONFDIR"
  for t in "${TOOLS[@]}"; do
    dest=$DESTDIR$BINDIR/$t
    if [[ -e $dest && ! -L $dest ]]; then
      echo "install: $dest exists and is not a symlink; not replacing it" >&2; exit 1
    fi
    ln -sfn "$repo/.venv/bin/$t" "$dest"
    echo "install: $dest -> $repo/.venv/bin/$t"
  done
  tmp=$(mktemp "$DESTDIR$UNITDIR/.$UNIT.XXXXXX")
  unit_text > "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$DESTDIR$UNITDIR/$UNIT"
  echo "install: $DESTDIR$UNITDIR/$UNIT"
  if [[ ! -e $DESTDIR$CONFDIR/config.toml ]]; then
    config_template > "$DESTDIR$CONFDIR/config.toml"
    chmod 0644 "$DESTDIR$CONFDIR/config.toml"
    echo "install: $DESTDIR$CONFDIR/config.toml (all defaults)"
  fi
  reload_systemd
  ;;
uninstall)
  for t in "${TOOLS[@]}"; do
    dest=$DESTDIR$BINDIR/$t
    if [[ -L $dest && $(readlink "$dest") == "$repo/.venv/bin/$t" ]]; then
      rm -f "$dest"
      echo "uninstall: removed $dest"
    fi
  done
  if [[ -f $DESTDIR$UNITDIR/$UNIT ]] && cmp -s <(unit_text) "$DESTDIR$UNITDIR/$UNIT"; then
    rm -f "$DESTDIR$UNITDIR/$UNIT"
    echo "uninstall: removed $DESTDIR$UNITDIR/$UNIT"
  fi
  if [[ -f $DESTDIR$CONFDIR/config.toml ]] && cmp -s <(config_template) "$DESTDIR$CONFDIR/config.toml"; then
    rm -f "$DESTDIR$CONFDIR/config.toml"
    rmdir "$DESTDIR$CONFDIR" 2>/dev/null || true
    echo "uninstall: removed $DESTDIR$CONFDIR/config.toml (unchanged)"
  fi
  reload_systemd
  ;;
*)
  echo "usage: $0 install|uninstall" >&2
  exit 2
  ;;
esac

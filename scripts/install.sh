#!/usr/bin/env bash
# `make install` / `make uninstall` (idempotent): `cri-net` and `cri-net-cni` on PATH as
# symlinks to this clone's .venv, the systemd unit cri-net.service, and a config file
# $CONFDIR/config.toml when there is none.
#
# Install never changes or replaces what it did not create. Before changing anything it
# checks every path; one already there that is not cri-net's is refused (exit 1, naming it):
# a tool path that is not a symlink to this .venv's tool, or a unit that is neither
# byte-identical to the one install writes nor unchanged since an earlier install recorded it.
# An existing config.toml is left as it is. Existing directories keep their mode; missing
# ones are made with mode 0755.
#
# Manifest: install records what it created in $CONFDIR/install-manifest, one line each,
# "KIND<TAB>DATA<TAB>PATH" (the path as on disk, DESTDIR included):
#   dir   -       PATH   a directory install made
#   link  TARGET  PATH   a symlink install made
#   file  SHA256  PATH   a file install wrote (the unit, config.toml): the hash of what it wrote
# A re-install keeps the earlier entries and adds what it creates. Paths an install by an
# older install.sh (no manifest) wrote are taken as cri-net's when they are exactly what
# install would write: a link to this .venv's tool, the same unit, the config template.
# Uninstall (same DESTDIR and CONFDIR) removes only what the manifest lists: links that still
# point at TARGET, files whose content still has SHA256 (an edited config.toml or unit is
# kept, and from then on is the operator's), then the manifest, then the listed directories
# that are now empty, deepest first. Without a manifest it removes nothing.
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
MANIFEST=$DESTDIR$CONFDIR/install-manifest

die() { echo "$*" >&2; exit 1; }
for v in DESTDIR BINDIR UNITDIR CONFDIR repo; do
  [[ ${!v} != *[$'\t\n']* ]] || die "$0: $v has a tab or newline; not supported: ${!v@Q}"
done
for v in BINDIR UNITDIR CONFDIR; do
  [[ ${!v} == /* ]] || die "$0: $v must be an absolute path, not '${!v}'"
done
[[ -z $DESTDIR || $DESTDIR == /* ]] || die "$0: DESTDIR must be an absolute path, not '$DESTDIR'"

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
hash_of() { sha256sum < "$1" | cut -d' ' -f1; }
hash_stdin() { sha256sum | cut -d' ' -f1; }
present() { [[ -e $1 || -L $1 ]]; }
regular() { [[ -f $1 && ! -L $1 ]]; }

tmp=
trap 'if [[ -n $tmp ]]; then rm -f "$tmp"; fi' EXIT

# the manifest, in memory: path -> kind and data, in the order first recorded
declare -A kind_of=() data_of=()
order=()
record() {  # KIND DATA PATH
  if [[ -z ${kind_of[$3]+x} ]]; then order+=("$3"); fi
  kind_of[$3]=$1
  data_of[$3]=$2
}
recorded() {  # KIND PATH [DATA]
  [[ ${kind_of[$2]-} == "$1" && ( $# -lt 3 || ${data_of[$2]} == "$3" ) ]]
}
load_manifest() {
  if ! present "$MANIFEST"; then return 0; fi
  regular "$MANIFEST" || die "$1: $MANIFEST is not a regular file; not using it"
  local kind data path
  while IFS=$'\t' read -r kind data path; do
    case $kind in
    dir | link | file) if [[ $path == /* ]]; then record "$kind" "$data" "$path"; fi ;;
    esac
  done < "$MANIFEST"
}
save_manifest() {
  local p
  tmp=$(mktemp "$MANIFEST.XXXXXX")
  {
    echo "# Written by cri-net's scripts/install.sh: what \`make install\` created, which"
    echo "# \`make uninstall\` removes (and nothing else). KIND<TAB>DATA<TAB>PATH"
    for p in "${order[@]}"; do printf '%s\t%s\t%s\n' "${kind_of[$p]}" "${data_of[$p]}" "$p"; done
  } > "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$MANIFEST"
  tmp=
}
# prefixes DIR: each leading path of DIR, shortest first (/a, /a/b, /a/b/c); paths never hold
# a newline (refused above)
prefixes() {
  local p= part
  local -a parts
  IFS=/ read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    if [[ -z $part ]]; then continue; fi
    p+=/$part
    printf '%s\n' "$p"
  done
}
# dir_problem DIR: a component of DIR that exists but is not a directory, if any
dir_problem() {
  local p
  while IFS= read -r p; do
    if present "$p" && [[ ! -d $p ]]; then echo "$p"; return; fi
  done < <(prefixes "$1")
}
# make_dirs DIR: make each missing component of DIR (mode 0755) and record it; existing ones
# are left as they are
make_dirs() {
  local p
  while IFS= read -r p; do
    if [[ -d $p ]]; then continue; fi
    mkdir -m 0755 "$p"
    record dir - "$p"
    echo "install: $p/"
  done < <(prefixes "$1")
}
# write_file DEST: stdin into DEST (mode 0644) through a temp file beside it
write_file() {
  tmp=$(mktemp "$(dirname "$1")/.$(basename "$1").XXXXXX")
  cat > "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$1"
  tmp=
}

case ${1:-} in
install)
  for t in "${TOOLS[@]}"; do
    [[ -x .venv/bin/$t ]] || die "install: .venv/bin/$t missing; run make bootstrap"
  done
  load_manifest install
  unit_dest=$DESTDIR$UNITDIR/$UNIT
  unit_hash=$(unit_text | hash_stdin)
  config=$DESTDIR$CONFDIR/config.toml
  config_hash=$(config_template | hash_stdin)

  # every check first: a refusal changes nothing
  problems=()
  for d in "$DESTDIR$CONFDIR" "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR"; do
    bad=$(dir_problem "$d")
    if [[ -n $bad ]]; then problems+=("install: $bad exists and is not a directory; cannot make $d"); fi
  done
  for t in "${TOOLS[@]}"; do
    dest=$DESTDIR$BINDIR/$t
    if present "$dest" && ! [[ -L $dest && $(readlink "$dest") == "$repo/.venv/bin/$t" ]]; then
      if [[ -L $dest ]]; then what="a symlink to $(readlink "$dest")"; else what="not a symlink"; fi
      problems+=("install: $dest exists and is $what, not cri-net's (-> $repo/.venv/bin/$t); not replacing it")
    fi
  done
  if present "$unit_dest"; then
    if ! regular "$unit_dest"; then
      problems+=("install: $unit_dest exists and is not a regular file; not replacing it")
    else
      h=$(hash_of "$unit_dest")
      if [[ $h != "$unit_hash" ]] && ! recorded file "$unit_dest" "$h"; then
        problems+=("install: $unit_dest exists and is not the unit install writes (not installed by cri-net, or edited since); not replacing it")
      fi
    fi
  fi
  if ((${#problems[@]})); then
    printf '%s\n' "${problems[@]}" >&2
    echo "install: nothing changed; move those paths away (or set BINDIR/UNITDIR/CONFDIR) and run it again" >&2
    exit 1
  fi

  make_dirs "$DESTDIR$CONFDIR"
  save_manifest  # from here on, all install creates is on record
  make_dirs "$DESTDIR$BINDIR"
  make_dirs "$DESTDIR$UNITDIR"
  save_manifest
  for t in "${TOOLS[@]}"; do
    dest=$DESTDIR$BINDIR/$t
    if [[ -L $dest ]]; then
      echo "install: $dest -> $repo/.venv/bin/$t (already)"
    else
      ln -s "$repo/.venv/bin/$t" "$dest"
      echo "install: $dest -> $repo/.venv/bin/$t"
    fi
    record link "$repo/.venv/bin/$t" "$dest"
    save_manifest
  done
  if present "$unit_dest" && [[ $(hash_of "$unit_dest") == "$unit_hash" ]]; then
    echo "install: $unit_dest (already)"
  else
    unit_text | write_file "$unit_dest"
    echo "install: $unit_dest"
  fi
  record file "$unit_hash" "$unit_dest"
  save_manifest
  if ! present "$config"; then
    config_template | write_file "$config"
    record file "$config_hash" "$config"
    echo "install: $config (all defaults)"
  elif regular "$config" && ! recorded file "$config" && [[ $(hash_of "$config") == "$config_hash" ]]; then
    record file "$config_hash" "$config"  # the template, written by an install before manifests
    echo "install: $config (already)"
  else
    echo "install: $config exists; left as it is"
  fi
  save_manifest
  echo "install: recorded in $MANIFEST"
  reload_systemd
  ;;
uninstall)
  if ! present "$MANIFEST"; then
    echo "uninstall: no $MANIFEST, so nothing install made is on record; nothing removed"
    exit 0
  fi
  load_manifest uninstall
  dirs=()
  for p in "${order[@]}"; do
    data=${data_of[$p]}
    case ${kind_of[$p]} in
    dir) dirs+=("$p") ;;
    link)
      if [[ -L $p && $(readlink "$p") == "$data" ]]; then
        rm -f "$p"
        echo "uninstall: removed $p"
      elif present "$p"; then
        echo "uninstall: kept $p (no longer cri-net's link to $data)"
      fi
      ;;
    file)
      if regular "$p" && [[ $(hash_of "$p") == "$data" ]]; then
        rm -f "$p"
        echo "uninstall: removed $p"
      elif present "$p"; then
        echo "uninstall: kept $p (changed since install)"
      fi
      ;;
    esac
  done
  rm -f "$MANIFEST"
  echo "uninstall: removed $MANIFEST"
  # deepest first, so a directory made inside another made one goes first
  if ((${#dirs[@]})); then
    while IFS= read -r p; do
      if [[ -d $p && ! -L $p ]] && rmdir "$p" 2>/dev/null; then
        echo "uninstall: removed $p/"
      elif [[ -d $p ]]; then
        echo "uninstall: kept $p/ (not empty)"
      fi
    done < <(printf '%s\n' "${dirs[@]}" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
  fi
  reload_systemd
  ;;
*)
  echo "usage: $0 install|uninstall" >&2
  exit 2
  ;;
esac

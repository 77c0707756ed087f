"""`cri-net cni`: a drop-in for upstream cnitool, on top of cri_net.libcni.

Same environment (NETCONFPATH, CNI_PATH, CAP_ARGS, CNI_ARGS, CNI_IFNAME), same container id
("cnitool-" + first 20 hex digits of SHA-512 of the absolute netns path), same cache files,
so a user can swap one for the other mid-flight. Adds --cache-dir and --timeout.
"""

from __future__ import annotations

import json
import os
import sys

from .usage import seconds_arg, seconds_problem

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    import argparse
    from typing import Any, Mapping

    from .. import libcni

COMMANDS = ("add", "check", "del", "status", "gc", "version")
DEFAULT_NET_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"


class UsageError(Exception):
    """Bad command-line input (environment variables included)."""


def go_abs(path: str, environ: Mapping[str, str] | None = None) -> str:
    """Go's filepath.Abs: relative paths join the working directory as os.Getwd reports it
    ($PWD when it names the current directory, so a symlinked cwd gives the same path as
    cnitool), then Clean, which also folds a leading "//" that POSIX normpath keeps."""
    if not os.path.isabs(path):
        env = os.environ if environ is None else environ
        cwd = os.getcwd()
        pwd = env.get("PWD", "")
        try:
            if pwd.startswith("/") and os.path.samestat(os.stat(pwd), os.stat(".")):
                cwd = pwd
        except OSError:
            pass
        path = os.path.join(cwd, path)
    path = os.path.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def container_id_for(netns: str) -> str:
    """cnitool's container id for a netns path."""
    return "cnitool-" + _sha512(os.fsencode(go_abs(netns))).hexdigest()[:20]  # raw bytes, as Go hashes them


def _sha512(data: bytes) -> Any:
    """SHA-512 from CPython's built-in module when there is one: hashlib loads OpenSSL first,
    ~3 ms of a call that hashes one path."""
    try:
        from _sha2 import sha512  # type: ignore[import-not-found]  # CPython >= 3.12
    except ImportError:
        try:
            from _sha512 import sha512  # type: ignore[import-not-found]  # CPython 3.11
        except ImportError:
            from hashlib import sha512
    return sha512(data)


def split_path_list(value: str) -> list[str]:
    """Go's filepath.SplitList: "" is no dirs; otherwise every ':'-separated entry, empty
    ones included, so CNI_PATH reaches the plugins exactly as given ("a::b" stays "a::b")."""
    return value.split(":") if value else []


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """`K=V;K=V` as cnitool parses it: exactly one '=' per pair, both sides non-empty."""
    pairs = []
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise UsageError(f"invalid CNI_ARGS pair {pair!r}")
        pairs.append((kv[0], kv[1]))
    return tuple(pairs)


def parse_cap_args(text: str) -> dict[str, Any]:
    """CAP_ARGS as cnitool decodes it into a Go map: a JSON object, or `null` (no args)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"CAP_ARGS is not valid JSON: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"CAP_ARGS must be a JSON object or null, not a JSON {type(value).__name__}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cni", help="cnitool-compatible: run a network's plugins against a netns",
                       description="Environment: NETCONFPATH (default /etc/cni/net.d), CNI_PATH, CAP_ARGS (JSON), "
                                   "CNI_ARGS (K=V;K=V), CNI_IFNAME (default eth0). `cri-net cni help` prints this.")
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("network")
    p.add_argument("netns", nargs="?", default="", help="netns path (required for add, check, del)")
    p.add_argument("-i", "--ifname", default="", help="interface name (default: $CNI_IFNAME, else eth0)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="result cache dir (default %(default)s)")
    p.add_argument("--timeout", type=seconds_arg, default=None,
                   help="seconds before a plugin is killed, at most a day (default: none)")
    p.add_argument("--bin-dir", dest="bin_dirs", action="append", default=None,
                   help="plugin dir, repeatable; replaces $CNI_PATH (cnitool has only CNI_PATH)")
    # what it logs comes from libcni alone, so logging is set up only if libcni has something to say
    p.set_defaults(func=run, logs_only_through_libcni=True)


#: the options parse_fast takes, and the attribute each sets; anything else goes to argparse
_FAST_OPTIONS = {"-i": "ifname", "--ifname": "ifname", "--cache-dir": "cache_dir", "--timeout": "timeout",
                 "--bin-dir": "bin_dirs"}


class FastArgs:
    """The attributes argparse's Namespace would hold for a `cri-net cni` call."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def parse_fast(argv: list[str]) -> FastArgs | None:
    """`cri-net cni`'s arguments (`argv` after "cni") without argparse, or None when they are
    anything but the plain form: COMMAND NETWORK [NETNS] in one run, then or before them
    -i/--ifname, --cache-dir, --timeout and --bin-dir, each with a value (separate, or after
    "=" for the long ones). argparse and its gettext cost a call that runs a plugin list
    ~10 ms; every other form (help, abbreviations, errors, a value starting with "-") is
    parsed by argparse, so its errors and quirks stay argparse's own (so is any "--", as an
    argument or as a value after "=")."""
    values: dict[str, Any] = {"subcommand": "cni", "ifname": "", "cache_dir": DEFAULT_CACHE_DIR, "timeout": None,
                              "bin_dirs": None, "func": run, "logs_only_through_libcni": True}
    positionals: list[str] | None = None
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-"):
            if positionals is not None:  # a second run of positionals: argparse's rules differ
                return None
            j = i
            while j < len(argv) and not argv[j].startswith("-"):
                j += 1
            positionals, i = argv[i:j], j
            continue
        name, eq, value = token.partition("=")
        if name not in _FAST_OPTIONS or (eq and name == "-i") or value == "--":  # argparse's quirks
            return None
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        dest = _FAST_OPTIONS[name]
        if dest == "timeout":
            try:
                values[dest] = float(value)
            except ValueError:
                return None
            if seconds_problem(values[dest]):  # argparse says what is wrong with it
                return None
        elif dest == "bin_dirs":
            values[dest] = [*(values[dest] or ()), value]
        else:
            values[dest] = value
    if positionals is None or len(positionals) not in (2, 3) or positionals[0] not in COMMANDS:
        return None
    values.update(command=positionals[0], network=positionals[1],
                  netns=positionals[2] if len(positionals) == 3 else "")
    return FastArgs(**values)


def run(args: argparse.Namespace | FastArgs) -> int:
    from .. import libcni

    env = os.environ
    try:
        if args.command in ("add", "check", "del") and not args.netns:
            raise UsageError(f"cni {args.command}: NETNS is required")
        skipped: list[libcni.SkippedFile] = []
        try:
            net = libcni.load_conf_list(env.get("NETCONFPATH") or DEFAULT_NET_DIR, args.network, skipped)
        finally:  # a broken file is reported (on stderr: stdout stays cnitool's JSON), never fatal
            for s in skipped:
                print(f"cri-net cni: skipped {s.path}: {s.reason.removeprefix(s.path + ': ')}", file=sys.stderr)
        # as cnitool, for every command: malformed ones fail a status or gc too, before it runs anything
        cni_args = parse_cni_args(env["CNI_ARGS"]) if env.get("CNI_ARGS") else ()
        cap_args = parse_cap_args(env["CAP_ARGS"]) if env.get("CAP_ARGS") else {}
        bin_dirs = args.bin_dirs or split_path_list(env.get("CNI_PATH", ""))
        if not bin_dirs:  # cnitool would fail each plugin with "no paths provided"; say what to do
            raise UsageError("CNI_PATH is not set: set it to the plugin dirs (CNI_PATH=/usr/lib/cni) "
                             "or pass --bin-dir DIR")
        cni = libcni.CNI(bin_dirs, cache_dir=args.cache_dir, timeout=args.timeout)
        if args.command == "status":
            cni.status_network_list(net)
            return 0
        if args.command == "gc":
            cni.gc_network_list(net, _tagged_attachments(cni, net.name))
            return 0
        if args.command == "version":
            _print_json({"name": net.name, "cniVersion": net.cni_version,
                         "capabilities": cni.validate_network_list(net),
                         "plugins": [{"type": t, "supportedVersions": list(cni.version_info(t).supported_versions)}
                                     for t in dict.fromkeys(net.plugin_types)]})
            return 0
        netns = go_abs(args.netns)
        rt = libcni.RuntimeConf(
            container_id=container_id_for(netns), netns=netns,
            ifname=args.ifname or env.get("CNI_IFNAME") or "eth0",  # cnitool 1.3: flag, then env, "" = eth0
            args=cni_args, capability_args=cap_args,
        )
        if args.command == "add":
            _print_json(cni.add_network_list(net, rt).to_dict())
        elif args.command == "check":
            cni.check_network_list(net, rt)
        else:
            cni.del_network_list(net, rt)
        return 0
    except (libcni.CNIError, UsageError) as exc:
        print(exc, file=sys.stderr)
        return 1


def _tagged_attachments(cni: libcni.CNI, network: str) -> list[libcni.GCAttachment] | None:
    """What `gc` keeps: every cached attachment of `network` with an owner tag (cri-net serve's
    pods, the cri-net plugin's planes). cnitool keeps nothing, which would DEL live pods in a
    shared cache dir; untagged (cnitool's own) attachments still go. None when there are none,
    so GC then runs exactly as cnitool's."""
    from .. import libcni

    keep = [libcni.GCAttachment(a.container_id, a.ifname)
            for a in cni.iter_cached_attachments() if a.owner and a.network == network]
    return keep or None


def _print_json(doc: dict[str, Any]) -> None:
    """Indented like Go's json.MarshalIndent(r, "", "    "), which cnitool prints; a byte that
    is not UTF-8 (a netns path's, echoed by a plugin) is U+FFFD, as Go decodes it."""
    text = json.dumps(doc, indent=4, ensure_ascii=False)
    if not text.isascii():
        text = text.translate(dict.fromkeys(range(0xD800, 0xE000), 0xFFFD))  # surrogates: from fsdecode or "\\ud800"
    print(text)

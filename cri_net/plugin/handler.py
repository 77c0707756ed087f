"""`cri-net-cni`: the CNI plugin a runtime such as containerd calls to hand a pod to cri-net.

The runtime's conflist names one plugin of type `cri-net`; its config says where cri-net's own
networks live (`confDir`, default /etc/cri-net/net.d), so the runtime never runs them twice:

    {"type": "cri-net", "confDir": "/etc/cri-net/net.d", "cacheDir": "/var/lib/cni",
     "binDirs": ["/opt/cni/bin", "/usr/lib/cni"], "defaultNetwork": "", "timeout": 60,
     "delegateConfDir": "",
     "capabilities": {"io.kubernetes.cri.pod-annotations": true, "portMappings": true,
                      "bandwidth": true, "ipRanges": true, "dns": true}}

ADD builds a network request from CNI_ARGS (pod namespace, name, uid; CNI_CONTAINERID is the
sandbox id) and runtimeConfig (annotations, port mappings, bandwidth, ip ranges, DNS; keys
matched case-insensitively, since containerd 1.6 capitalises some), attaches the default
network on CNI_IFNAME and every extra plane through the CRI adaptor, and answers with one
result: the default interface first, then the extra planes. The runtime attaches loopback
itself, so the hook does not. Errors go out as CNI error JSON with a well-known code.

Only the standard library is imported until a command needs the network module, so VERSION
and argument errors cost no more than the interpreter's start-up. When `cri-net serve` runs,
ADD/DEL/CHECK/STATUS/GC are handed to it over its CNI socket (`daemonSocket`, default
/run/cri-net/cni.sock; "" turns the handoff off) and the network module is never imported
here; when nothing listens there, the plugin does the work itself.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # `typing` costs ~5 ms of every plugin start; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable

    #: Builds (or, in `cri-net serve`, reuses) the CRI adaptor for an invocation.
    AdaptorSource = Callable[["Invocation"], Any]

from .. import defaults
from ..libcni.errors import ErrorCode
from ..libcni.version import SUPPORTED_VERSIONS as LIBCNI_VERSIONS
from .wire import finite_float, reject_constant  # the same JSON rules as the launcher's parse

#: The versions cri-net-cni answers: those of libcni whose results have interfaces (0.3.0 on),
#: since the hook reports one interface per plane.
SUPPORTED_VERSIONS = LIBCNI_VERSIONS[LIBCNI_VERSIONS.index("0.3.0"):]

INCOMPATIBLE_VERSION, UNKNOWN_CONTAINER = ErrorCode.INCOMPATIBLE_CNI_VERSION, ErrorCode.UNKNOWN_CONTAINER
INVALID_ENV, DECODING_FAILURE = ErrorCode.INVALID_ENVIRONMENT_VARIABLES, ErrorCode.DECODING_FAILURE
INVALID_CONFIG, TRY_AGAIN_LATER = ErrorCode.INVALID_NETWORK_CONFIG, ErrorCode.TRY_AGAIN_LATER
NOT_AVAILABLE, INTERNAL = ErrorCode.PLUGIN_NOT_AVAILABLE, ErrorCode.INTERNAL


class PluginFailure(Exception):
    """An error to report as `{code, msg, details}`."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def _lower_keys(value: Any) -> Any:
    """containerd 1.6 sends HostPort/IngressRate...; the spec says hostPort/ingressRate."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:] if isinstance(k, str) else k: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _runtime_config(conf: dict[str, Any]) -> dict[str, Any]:
    from ..network.capabilities import CAP_POD_ANNOTATIONS as CAP_ANNOTATIONS

    rc = conf.get("runtimeConfig") or {}
    if not isinstance(rc, dict):
        raise PluginFailure(DECODING_FAILURE, "runtimeConfig must be a JSON object")
    found: dict[str, Any] = {}
    for key, value in rc.items():
        canonical = {k.lower(): k for k in ("portMappings", "bandwidth", "ipRanges", "dns", CAP_ANNOTATIONS)}
        name = canonical.get(str(key).lower())
        if name is not None:
            found[name] = value if name == CAP_ANNOTATIONS else _lower_keys(value)
    return found


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS `K=V;K=V`; a pair without '=' is an error naming it."""
    out: dict[str, str] = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PluginFailure(INVALID_ENV, f"invalid CNI_ARGS pair {pair!r}")
        out.setdefault(key, value)
    return out


def _typed(rc: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = rc.get(key)
    if value is not None and not isinstance(value, kind):
        raise PluginFailure(INVALID_CONFIG, f"runtimeConfig.{key} must be {what}", f"key: runtimeConfig.{key}")
    return value


def _validated(key: str, build: Any) -> Any:
    """Run a pydantic validation for runtimeConfig.<key>, reporting failures as code 7."""
    from pydantic import ValidationError

    try:
        return build()
    except (ValidationError, TypeError) as exc:
        raise PluginFailure(INVALID_CONFIG, f"invalid runtimeConfig.{key}: {str(exc).splitlines()[0]}",
                            f"key: runtimeConfig.{key}") from None


def _is_text(value: str) -> bool:
    """False for a value carrying undecodable bytes (os.environ keeps them as surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: cri-net's setting -> the key of the hook's own config (the runtime's conflist) that sets it
HOOK_KEYS = {"conf_dir": "confDir", "cache_dir": "cacheDir", "bin_dirs": "binDirs", "default_network": "defaultNetwork",
             "delegate_conf_dir": "delegateConfDir", "plugin_timeout": "timeout", "parallel_attach": "parallelAttach"}


class Invocation:
    """One plugin call: environment and stdin, validated."""

    def __init__(self, environ: dict[str, str], stdin: bytes) -> None:
        self.command = environ.get("CNI_COMMAND", "")
        if not self.command:
            raise PluginFailure(INVALID_ENV, "CNI_COMMAND is not set")
        for key in ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_ARGS"):  # paths may be any bytes
            if not _is_text(environ.get(key, "")):
                raise PluginFailure(INVALID_ENV, f"{key} is not valid UTF-8", f"env: {key}")
        try:
            conf = json.loads(stdin or b"{}", parse_constant=reject_constant, parse_float=finite_float)
        except (ValueError, RecursionError) as exc:
            raise PluginFailure(DECODING_FAILURE, f"cannot decode network config on stdin: {exc}") from None
        if not isinstance(conf, dict):
            raise PluginFailure(DECODING_FAILURE, "network config on stdin must be a JSON object")
        self.conf = conf
        self.cni_version = str(conf.get("cniVersion") or "0.1.0")
        self.container_id = environ.get("CNI_CONTAINERID", "")
        self.netns = environ.get("CNI_NETNS", "")
        self.ifname = environ.get("CNI_IFNAME", "") or "eth0"
        self.args = parse_cni_args(environ.get("CNI_ARGS", ""))

    @property
    def hook(self) -> tuple[str, str]:
        """How the runtime names this plugin: (type, network name)."""
        return str(self.conf.get("type") or ""), str(self.conf.get("name") or "")

    def settings(self) -> Any:
        from ..config import ConfigFileError, build

        conf = self.conf
        given = {"conf_dir": conf.get("confDir") or defaults.CONF_DIR,
                 "cache_dir": conf.get("cacheDir") or defaults.CACHE_DIR,
                 "bin_dirs": conf.get("binDirs") or list(defaults.BIN_DIRS),
                 "default_network": conf.get("defaultNetwork") or None,
                 "delegate_conf_dir": conf.get("delegateConfDir") or None,
                 "plugin_timeout": conf.get("timeout") or defaults.PLUGIN_TIMEOUT,
                 "parallel_attach": conf.get("parallelAttach", True)}
        try:
            return build(None, given)
        except ConfigFileError as exc:  # named by the key the runtime's conflist has, not our setting's
            key = HOOK_KEYS.get(exc.key, exc.key)
            raise PluginFailure(INVALID_CONFIG, f"invalid cri-net plugin config: {key}: {exc.reason}",
                                f"key: {key}") from None

    def request(self) -> Any:
        """The network API request for this pod."""
        from ..network import NetworkApiConf

        if not self.container_id:
            raise PluginFailure(UNKNOWN_CONTAINER, "CNI_CONTAINERID is not set")
        from ..network import capabilities as ann

        rc = _runtime_config(self.conf)
        mappings = [{"host_port": m.get("hostPort", 0), "container_port": m.get("containerPort", 0),
                     "protocol": m.get("protocol") or "tcp", "host_ip": m.get("hostIP", m.get("hostIp", ""))}
                    for m in _typed(rc, "portMappings", list, "a list") or [] if isinstance(m, dict)]
        capabilities: dict[str, Any] = {}
        if _typed(rc, "bandwidth", dict, "an object"):
            capabilities["bandwidth"] = _validated("bandwidth", lambda: ann.Bandwidth.model_validate(
                rc["bandwidth"]).model_dump())
        if _typed(rc, "ipRanges", list, "a list"):
            capabilities["ipRanges"] = _validated("ipRanges", lambda: [
                [ann.IPRange.model_validate(r).model_dump() for r in rs] for rs in rc["ipRanges"]])
        annotations = _typed(rc, ann.CAP_POD_ANNOTATIONS, dict, "an object") or {}
        return NetworkApiConf(
            name=self.args.get("K8S_POD_NAME", ""), namespace=self.args.get("K8S_POD_NAMESPACE", ""),
            pod_id=self.container_id, pod_uid=self.args.get("K8S_POD_UID", ""), netns_path=self.netns,
            default_interface=self.ifname, annotations={str(k): str(v) for k, v in annotations.items()},
            port_mappings=mappings, capabilities=capabilities, dns=_dns(rc.get("dns")))


def _dns(value: Any) -> dict[str, list[str]] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PluginFailure(INVALID_CONFIG, "runtimeConfig.dns must be an object", "key: runtimeConfig.dns")
    out = {}
    for key, aliases in (("servers", ("servers", "nameservers")), ("searches", ("searches", "search")),
                         ("options", ("options",))):
        items = next((value[a] for a in aliases if value.get(a) is not None), [])
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise PluginFailure(INVALID_CONFIG, f"runtimeConfig.dns.{key} must be a list of strings",
                                f"key: runtimeConfig.dns.{key}")
        out[key] = items
    return out


def combined_result(inv: Invocation, results: list[Any]) -> dict[str, Any]:
    """One CNI result for the runtime: every interface and its addresses, the default
    interface first, then the extra planes; routes and DNS are the default interface's, plus
    the default route of a plane a Multus `default-route` put it on."""
    from ..libcni import Result100, convert, parse_result

    interfaces: list[dict[str, Any]] = []
    ips: list[dict[str, Any]] = []
    routes: list[Any] = []
    dns: dict[str, Any] = {}
    for r in results:
        index = len(interfaces)
        interfaces.append({"name": r.interface, "mac": r.mac, "sandbox": inv.netns} if r.mac else
                          {"name": r.interface, "sandbox": inv.netns})
        for address in r.ips:
            gateway = next((g for g in r.gateways if _same_family(g, address)), None)
            ips.append({"interface": index, "address": address, **({"gateway": gateway} if gateway else {})})
        if r.interface == inv.ifname:
            routes, dns = list(r.routes) + routes, dict(r.dns)
        else:
            routes += [rt for rt in r.routes if _is_default_route(rt)]
    doc = {"cniVersion": "1.0.0", "interfaces": interfaces, "ips": ips, "routes": routes, "dns": dns}
    result = parse_result(doc)
    assert isinstance(result, Result100)
    wanted = inv.cni_version if inv.cni_version in SUPPORTED_VERSIONS else "1.0.0"
    return convert(result, wanted).to_dict()


def _is_default_route(route: Any) -> bool:
    dst = route.get("dst") if isinstance(route, dict) else None
    return isinstance(dst, str) and dst.endswith("/0")


def _same_family(gateway: str, address: str) -> bool:
    return (":" in gateway) == (":" in address)


def fresh_adaptor(inv: Invocation) -> Any:
    """A one-shot CRI adaptor from the network module's registry: the plugin process lives
    for one call."""
    from ..network import create_adaptor

    return create_adaptor("cri", inv.settings(), watch=False, hook=inv.hook)


def handle(inv: Invocation, adaptor_for: AdaptorSource = fresh_adaptor) -> dict[str, Any] | None:
    """Run the command; returns what to print on stdout (None for nothing)."""
    command = inv.command
    if command == "VERSION":
        return {"cniVersion": inv.cni_version if inv.cni_version in SUPPORTED_VERSIONS else "1.1.0",
                "supportedVersions": list(SUPPORTED_VERSIONS)}
    if inv.cni_version not in SUPPORTED_VERSIONS:
        raise PluginFailure(INCOMPATIBLE_VERSION, f"cri-net-cni does not support cniVersion {inv.cni_version!r}",
                            f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    if command not in ("ADD", "DEL", "CHECK", "STATUS", "GC"):
        raise PluginFailure(INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    # the network module (pydantic and all) is only loaded for commands that need it
    from ..network.errors import (AttachError, CheckError, CNIStateError, DetachError, InvalidRequestError,
                                  NetworkApiError, NetworkNotReadyError, NetworkStatusError)

    try:
        adaptor = adaptor_for(inv)
        if command == "ADD":
            return combined_result(inv, adaptor.attach(inv.request()))
        if command == "DEL":
            adaptor.detach(inv.request())
            return None
        if command == "CHECK":
            adaptor.check(inv.request())
            return None
        if command == "STATUS":
            adaptor.status()  # NetworkStatusError 50/51 naming the network, answered below
            return None
        if command == "GC":
            gc(inv, adaptor)
            return None
    except InvalidRequestError as exc:
        raise PluginFailure(INVALID_CONFIG, str(exc), f"key: {exc.key}") from None
    except NetworkNotReadyError as exc:
        raise PluginFailure(TRY_AGAIN_LATER, str(exc)) from None
    except (AttachError, CheckError) as exc:
        raise PluginFailure(exc.code, str(exc)) from None
    except NetworkStatusError as exc:
        raise PluginFailure(exc.code, exc.msg, exc.details) from None
    except DetachError as exc:
        first = exc.failures[0][2]
        raise PluginFailure(getattr(first, "code", INTERNAL), str(exc)) from None
    except CNIStateError as exc:
        raise PluginFailure(getattr(exc.cause, "code", INTERNAL), str(exc)) from None
    except NetworkApiError as exc:
        raise PluginFailure(INTERNAL, str(exc)) from None
    raise PluginFailure(INVALID_ENV, f"unknown CNI_COMMAND: {command}")


def gc(inv: Invocation, adaptor: Any) -> None:
    """Detach planes of sandboxes the runtime no longer knows (`cni.dev/valid-attachments`).

    Only attachments the hook made are considered: the cache dir is shared with the runtime."""
    valid = inv.conf.get("cni.dev/valid-attachments", inv.conf.get("cni.dev/attachments"))
    if not isinstance(valid, list):
        return  # without the runtime's list nothing can be judged stale
    if not all(isinstance(a, dict) and isinstance(a.get("containerID"), str) for a in valid):
        raise PluginFailure(INVALID_CONFIG, "cni.dev/valid-attachments entries must be objects with a containerID",
                            "key: cni.dev/valid-attachments")
    keep = {a["containerID"] for a in valid}
    outcome = adaptor.gc(lambda att: att.container_id not in keep)  # only the hook's own attachments
    if outcome.failures:
        raise PluginFailure(INTERNAL, "GC could not detach every stale attachment", "; ".join(outcome.failures))


def run(environ: dict[str, str], stdin: bytes, adaptor_for: AdaptorSource = fresh_adaptor) -> tuple[int, str]:
    """One plugin call, in this process: (exit status, stdout text). Never raises."""
    version = "1.0.0"
    try:
        inv = Invocation(environ, stdin)
        version = inv.cni_version
        out = handle(inv, adaptor_for)
    except Exception as exc:  # never a traceback: the runtime only understands error JSON
        return 1, error_json(exc, version)
    return 0, "" if out is None else json.dumps(out) + "\n"


def error_json(exc: BaseException, version: str = "1.0.0") -> str:
    if not isinstance(exc, PluginFailure):
        exc = PluginFailure(INTERNAL, f"cri-net-cni internal error: {type(exc).__name__}: {exc}")
    err: dict[str, Any] = {"cniVersion": version, "code": exc.code, "msg": exc.msg}
    if exc.details:
        err["details"] = exc.details
    return json.dumps(err) + "\n"

"""CNI STATUS of an adaptor's networks: is cri-net's networking usable right now?

containerd from 2.0.1 (and CRI-O) call STATUS every few seconds on a 1.1.0 conflist and report
NetworkReady from it, so the answer must be cheap: it comes from the adaptor's loaded networks
plus each 1.1.0 network's own STATUS (libcni `status_network_list`), which is remembered for
`STATUS_TTL` seconds and, once stale, refreshed in the background while the last answer is
served. Only the first call for a network (or a changed network) waits for its plugins.

Not ready is code 50 (plugin not available) or 51 (limited connectivity), naming the network
and the reason; no usable network config is 50 naming the conf dir and each skipped file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from cri_net.libcni import CNI, CNIError, ErrorCode, NetworkConfigList, PluginError, version
from cri_net.log import kv

log = logging.getLogger("cri_net.adaptors.status")

#: How long a network's STATUS answer is served before it is refreshed (in the background).
STATUS_TTL = 5.0
#: Bound on one network's plugin STATUS runs (the runtime's own STATUS deadline is short).
STATUS_TIMEOUT = 10.0
#: Bound on the skipped-file reasons quoted in a "no usable network config" answer.
MAX_REASONS = 8

NOT_READY_CODES = (ErrorCode.PLUGIN_NOT_AVAILABLE, ErrorCode.LIMITED_CONNECTIVITY)


@dataclass(frozen=True)
class _Answer:
    """One network's STATUS outcome: None when ready, else the CNIError to report."""

    at: float
    error: CNIError | None


class StatusProbe:
    """Remembered STATUS answers of one adaptor's networks, refreshed in the background."""

    def __init__(self, adaptor: Any, ttl: float | None = None, timeout: float | None = None) -> None:
        op = adaptor.operator
        self.adaptor_ref = weakref.ref(adaptor)
        self.ttl = STATUS_TTL if ttl is None else ttl
        self.cni = CNI(op.cni.bin_dirs, cache_dir=op.cni.cache_dir, timeout=STATUS_TIMEOUT if timeout is None else timeout)
        self._answers: dict[tuple[str, str], _Answer] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise a CNIError (50/51) naming the first network that is not ready."""
        adaptor = self.adaptor_ref()
        if adaptor is None:  # pragma: no cover - the pool dropped it mid-call
            raise CNIError(ErrorCode.TRY_AGAIN_LATER, "cri-net adaptor went away; try again")
        nets = adaptor.operator.networks
        if not adaptor.ready():
            raise no_usable_config(adaptor)
        live = [(n, _key(n)) for n in _ordered(nets.networks, adaptor.default_network())
                if version.at_least(n.cni_version or "0.1.0", "1.1.0")]
        with self._lock:  # forget networks that are gone or changed
            wanted = {k for _, k in live}
            for key in [k for k in self._answers if k not in wanted]:
                del self._answers[key]
        for net, key in live:
            answer = self._answer(net, key)
            if answer.error is not None:
                raise answer.error

    def _answer(self, net: NetworkConfigList, key: tuple[str, str]) -> _Answer:
        with self._lock:
            answer = self._answers.get(key)
            stale = answer is not None and time.monotonic() - answer.at >= self.ttl
            if stale and key not in self._refreshing:
                self._refreshing.add(key)
                threading.Thread(target=self._refresh, args=(net, key), name=f"cni-status-{net.name}",
                                 daemon=True).start()
        if answer is None:  # first time: nothing to serve yet, so this call waits for the plugins
            answer = self._run(net)
            with self._lock:
                self._answers[key] = answer
        return answer

    def _refresh(self, net: NetworkConfigList, key: tuple[str, str]) -> None:
        try:
            answer = self._run(net)
            with self._lock:
                self._answers[key] = answer
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _run(self, net: NetworkConfigList) -> _Answer:
        start = time.monotonic()
        try:
            self.cni.status_network_list(net)
            error = None
        except CNIError as exc:
            error = not_ready(net, exc)
        kv(log, logging.DEBUG if error is None else logging.WARNING, "network STATUS", network=net.name,
           ready=error is None, ms=round((time.monotonic() - start) * 1000, 1),
           **({"error": str(error)} if error else {}))
        return _Answer(time.monotonic(), error)


def not_ready(net: NetworkConfigList, exc: CNIError) -> CNIError:
    """A network's STATUS failure as the hook's answer: the plugin's 50/51 kept, anything else
    (a plugin that cannot be found or run) is 50; the message names network and plugin."""
    cause = exc.cause if isinstance(exc, PluginError) else exc
    code = cause.code if cause.code in NOT_READY_CODES else ErrorCode.PLUGIN_NOT_AVAILABLE
    plugin = f" (plugin {exc.plugin})" if isinstance(exc, PluginError) else ""
    where = f" [{net.source}]" if net.source else ""
    return CNIError(code, f"cri-net network {net.name!r}{where} is not ready{plugin}: {cause.msg}", cause.details)


def no_usable_config(adaptor: Any) -> CNIError:
    """Code 50 naming the conf dir and why each file in it was skipped."""
    op = adaptor.operator
    nets = op.networks
    wanted = adaptor.settings.default_network
    if wanted and nets.networks:
        msg = f"no usable network config in {op.conf_dir}: default network {wanted!r} is not loaded"
    else:
        msg = f"no usable network config in {op.conf_dir}"
    reasons = [f"{s.path}: {s.reason}" for s in nets.skipped[:MAX_REASONS]]
    if len(nets.skipped) > MAX_REASONS:
        reasons.append(f"and {len(nets.skipped) - MAX_REASONS} more skipped files")
    details = "skipped: " + "; ".join(reasons) if reasons else "no config files"
    return CNIError(ErrorCode.PLUGIN_NOT_AVAILABLE, msg, details)


_probes: "weakref.WeakKeyDictionary[Any, StatusProbe]" = weakref.WeakKeyDictionary()
_probes_lock = threading.Lock()


def check_status(adaptor: Any) -> None:
    """The hook's STATUS for `adaptor`: returns when ready, raises CNIError (50/51) when not.
    Answers are kept per adaptor, so a server that keeps its adaptors answers from memory."""
    with _probes_lock:
        probe = _probes.get(adaptor)
        if probe is None:
            probe = _probes[adaptor] = StatusProbe(adaptor)
    probe.check()


def _ordered(networks: tuple[NetworkConfigList, ...], default: NetworkConfigList) -> list[NetworkConfigList]:
    """The default network first (its failure is the one to report), then the others in order."""
    return [default, *(n for n in networks if n.name != default.name)]


def _key(net: NetworkConfigList) -> tuple[str, str]:
    return net.name, hashlib.sha256(net.raw).hexdigest()

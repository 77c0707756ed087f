"""The CRI adaptor: a pod's network planes.

Attach order: loopback (`lo`), then the extra planes and the default network, each on its own
interface: concurrently (`parallel_attach`, the default) or in request order. Everything is
validated before anything is attached; a failure rolls back what this request attached
(reverse request order, loopback last) and raises one AttachError naming the first failing
network and plugin. Detach is best effort over every plane known
from the cache or the request, in reverse order, and succeeds when everything is gone.

The pod's capability args (port mappings, bandwidth, IP ranges, DNS) go to the default
network only: two planes mapping the same host port, or shaping the same pod twice, would be
wrong. Extra planes get the pod annotations capability, plus what a Multus selection asks of
its own attachment (multus_planes.py); a Multus `default-route` is set in the netns once
every plane is attached, and its failure rolls the pod back like a plane's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cri_net import libcni
from cri_net.config import Settings
from cri_net.libcni import CNIError, NetworkConfigList
from cri_net.log import kv
from cri_net.network.errors import (AttachError, DetachError, InvalidRequestError, NetworkApiError,
                                    NetworkNotReadyError, NetworkStatusError)
from cri_net.network.models import (NetworkApiConf, NetworkApiResult, NetworkCreateRequest,
                                    NetworkInfo, NetworkState)
from cri_net.netns import live_netns
from cri_net.operator import CNIOperator, PlaneRef
from cri_net.operator.primary import find_primary

from .. import NATIVE_FILE_PREFIX, leases, shared, status
from ..shared import cni_state_errors
from ..listing import filter_infos, network_info
from ..planes import attach_all, cached_planes, check_all, detach_all, ifname_key, merge_direct_caps, validate_target
from . import annotations, default_network, default_route, host_ports, ip_ranges, multus_planes

log = logging.getLogger("cri_net.adaptors.cri")

POD_ANNOTATIONS_CAP = annotations.CAP_POD_ANNOTATIONS
#: owner tags of the attachments this adaptor makes: cri-net serve's pods, and pods a runtime
#: hands to cri-net through its CNI hook
OWNER_POD = "cri-net/pod"
OWNER_HOOK = "cri-net/cni"


@dataclass(frozen=True)
class Plan:
    """What one request attaches: the planes in order (loopback excluded), the default routes
    Multus selections ask for, and the namespace each extra plane is reported under."""

    planes: list[tuple[NetworkConfigList, PlaneRef]]
    routes: list[default_route.DefaultRoute] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # ifname -> namespace


class CRIAdaptor(shared.OperatorBacked):
    kind = "cri"

    def __init__(self, settings: Settings, watch: bool = False, loopback: bool = True,
                 hook: tuple[str, str] | None = None) -> None:
        """`hook`: (plugin type, network name) the runtime calls cri-net by, when cri-net is a
        CNI plugin behind a runtime (cri-net-cni under containerd); the runtime then attaches
        loopback itself. Hook attachments and cri-net serve's own pods are told apart in the
        shared cache by their owner tag."""
        self.settings = settings
        self.loopback = loopback and hook is None
        hook_type, hook_network = hook or ("", "")
        self.operator = CNIOperator(settings.conf_dir, settings.bin_dirs, settings.cache_dir,
                                    settings.plugin_timeout, file_filter=lambda n: not n.startswith(NATIVE_FILE_PREFIX),
                                    owner=OWNER_HOOK if hook is not None else OWNER_POD,
                                    hook_types=(hook_type,) if hook_type else (), hook_network=hook_network)
        if watch:
            self.operator.watch(settings.conf_poll_interval)

    # ---- state -------------------------------------------------------------------------
    def default_network(self) -> NetworkConfigList:
        if self.settings.delegate_conf_dir:  # the node's primary CNI (cri_net/operator/primary.py)
            return find_primary(self.settings.delegate_conf_dir, self.settings.bin_dirs,
                                self.settings.default_network, self.operator.hook_types, self.operator.hook_network)
        nets = self.operator.networks
        if self.settings.default_network:
            net = nets.get(self.settings.default_network)
            if net is None:
                raise NetworkNotReadyError(f"{self.operator.conf_dir} (default network "
                                           f"{self.settings.default_network!r} not loaded)")
            return net
        net = nets.default()
        if net is None:
            raise NetworkNotReadyError(self.operator.conf_dir)
        return net

    def ready(self) -> bool:
        try:
            self.default_network()
        except NetworkNotReadyError:
            return False
        return True

    def update(self) -> None:
        self.operator.update()

    def state(self) -> NetworkState:
        try:
            default: str | None = self.default_network().name
        except NetworkNotReadyError:
            default = None
        return shared.state(self.operator, default)

    def status(self) -> None:
        try:
            status.check_status(self)
        except CNIError as exc:
            raise NetworkStatusError(exc.code, exc.msg, exc.details) from None

    def ip_leases(self) -> list[tuple[str, int]]:
        """(network, host-local leases in use) of every loaded network using host-local."""
        return list(leases.ip_leases(self.operator.networks.networks))

    def install_default_network(self) -> str | None:
        """Write cri-net's default bridge network when the conf dir holds no config at all."""
        path = default_network.install_if_empty(self.operator.conf_dir)
        if path is not None:
            self.operator.update()
        return path

    def close(self) -> None:
        self.operator.close()

    # ---- planning ----------------------------------------------------------------------
    @cni_state_errors
    def validate(self, conf: NetworkApiConf) -> None:
        """Everything attach checks, with nothing attached."""
        self.plan(conf)

    def plan(self, conf: NetworkApiConf, for_detach: bool = False) -> list[tuple[NetworkConfigList, PlaneRef]]:
        """Validate `conf` and return the planes to attach, in order (loopback excluded).
        `for_detach`: the netns may be gone already (e.g. containerd's second DEL)."""
        return self.full_plan(conf, for_detach).planes

    def full_plan(self, conf: NetworkApiConf, for_detach: bool = False) -> Plan:
        """`plan`, with the default routes and the extra planes' namespaces."""
        validate_target(conf, need_netns=not for_detach)
        try:
            libcni.validate_interface_name(conf.default_interface)
        except CNIError as exc:
            raise InvalidRequestError("default_interface", str(exc)) from None
        reserved = ("lo", conf.default_interface)
        try:
            extras = list(conf.extra_nets) + list(annotations.parse_extra_networks(
                conf.annotations, reserved_interfaces=reserved))
            selections = annotations.parse_multus_networks(conf.annotations, reserved_interfaces=reserved)
            cni_args = annotations.build_cni_args(conf.namespace, conf.name, conf.pod_id, conf.pod_uid,
                                                  conf.annotations)
            default = self.default_network()
            allowed = (ip_ranges.allowed(default, conf.capabilities)
                       if annotations.IP_RANGES_ANNOTATION in conf.annotations else None)
            caps = annotations.capability_args(conf.annotations, conf.port_mappings, conf.pod_cidr, conf.dns,
                                               pod=f"{conf.namespace}/{conf.name}", allowed_ip_ranges=allowed)
        except annotations.AnnotationError as exc:
            raise InvalidRequestError(exc.key, exc.reason) from None
        cni_args += [(k, v) for k, v in conf.args.items() if k not in {a for a, _ in cni_args}]
        caps = merge_direct_caps(conf.capabilities, caps)
        extra_caps = {POD_ANNOTATIONS_CAP: caps[POD_ANNOTATIONS_CAP]} if POD_ANNOTATIONS_CAP in caps else {}
        planes: list[tuple[NetworkConfigList, PlaneRef]] = []
        namespaces: dict[str, str] = {}
        used = {"lo", conf.default_interface}

        def add(key: str, net: NetworkConfigList, ifname: str, args: list[tuple[str, str]],
                plane_caps: dict[str, object], namespace: str) -> None:
            if ifname in used:
                raise InvalidRequestError(key, f"interface {ifname!r} is already used in this pod")
            try:
                libcni.validate_interface_name(ifname)
            except CNIError as exc:
                raise InvalidRequestError(key, str(exc)) from None
            used.add(ifname)
            namespaces[ifname] = namespace
            planes.append((net, PlaneRef(net.name, conf.pod_id, conf.netns_path, ifname, tuple(args), plane_caps)))

        for i, extra in enumerate(extras):
            key = f"{annotations.EXTRA_NETWORKS_ANNOTATION}[{i}]"
            if extra.name == default.name:
                raise InvalidRequestError(key, f"network {extra.name!r} is the default network, attached on "
                                               f"{conf.default_interface} already")
            net = self.operator.networks.get(extra.name)
            if net is None:
                raise InvalidRequestError(key, f"unknown network {extra.name!r} (loaded: "
                                               f"{', '.join(self.operator.networks.names) or 'none'})")
            add(key, net, extra.interface, cni_args, extra_caps, conf.namespace)
        resolved = multus_planes.resolve(selections, self.operator.networks, conf.namespace, default.name,
                                         conf.default_interface)
        multus_planes.check_against(resolved, caps.get(annotations.CAP_PORT_MAPPINGS) or [])
        routes: list[default_route.DefaultRoute] = []
        base_keys = {k for k, _ in cni_args}
        for r in resolved:
            clash = next((k for k, _ in r.args if k in base_keys), None)
            if clash is not None:  # Go plugins read a repeated CNI_ARGS key last-wins: refuse, never guess
                field = {"IP": "ips", "MAC": "mac"}.get(clash, f"cni-args.{clash}")
                raise InvalidRequestError(f"{r.selection.key}.{field}", f"CNI_ARGS key {clash!r} is set for every "
                                                                        "plane already (pod identity or a "
                                                                        "cniargs extension annotation)")
            add(f"{r.selection.key}.interface", r.network, r.selection.interface, cni_args + list(r.args),
                {**extra_caps, **r.capabilities}, r.namespace)
            routes += [default_route.DefaultRoute(r.selection.interface, gw) for gw in r.selection.default_route]
        planes.append((default, PlaneRef(default.name, conf.pod_id, conf.netns_path, conf.default_interface,
                                         tuple(cni_args), caps)))
        return Plan(planes, routes, namespaces)

    # ---- attach / detach / check -------------------------------------------------------
    @cni_state_errors
    def attach(self, conf: NetworkApiConf) -> list[NetworkApiResult]:
        plan = self.full_plan(conf)
        planes = plan.planes
        mappings = [m for _, p in planes for m in p.capability_args.get(annotations.CAP_PORT_MAPPINGS) or []]
        finish = None
        if plan.routes:
            owner = next(p for _, p in planes if p.ifname == plan.routes[0].ifname)
            finish = (owner, lambda: default_route.apply(conf.netns_path, plan.routes))
        try:
            with host_ports.claim(self.operator, conf.pod_id, f"{conf.namespace}/{conf.name}", mappings):
                attach_all(self.operator, conf.pod_id, conf.netns_path, planes, self.loopback,
                           parallel=self.settings.parallel_attach, finish=finish)
        except AttachError as exc:
            kv(log, logging.WARNING, "pod attach failed; rolled back", pod=f"{conf.namespace}/{conf.name}",
               pod_id=conf.pod_id, network=exc.network, error=str(exc.cause),
               rollback_failures=len(exc.rollback_failures))
            raise
        kv(log, logging.INFO, "pod attached", pod=f"{conf.namespace}/{conf.name}", pod_id=conf.pod_id,
           networks=",".join(p.network for _, p in planes))
        return self.results(conf, [p for _, p in planes], plan)

    def known_planes(self, conf: NetworkApiConf) -> list[PlaneRef]:
        """Every plane of the pod, detach order: default, extras reversed, loopback last.

        From the cache (what was really attached) plus what the request names (a plane whose
        ADD was interrupted before its result was cached still gets its DEL)."""
        netns = live_netns(conf.netns_path)
        cached = {(p.network, p.ifname): p for p in cached_planes(self.operator, conf.pod_id, netns)}
        try:
            planned = [PlaneRef(p.network, conf.pod_id, netns, p.ifname, p.args, p.capability_args)
                       for _, p in self.plan(conf, for_detach=True)]
        except (NetworkApiError, CNIError):
            planned = []  # a request we cannot plan any more: the cache is the truth
        # An interface belongs to one network: when the cache says eth0 is on X, a plan that
        # now puts eth0 on Y (the default network changed) must not DEL Y there; that DEL
        # would remove X's eth0 before X's own DEL could tear down X's host-side state.
        cached_ifnames = {ifname for _, ifname in cached}
        planned = [p for p in planned if (p.network, p.ifname) in cached or p.ifname not in cached_ifnames]
        # attach order: planes of unknown order first, then the request's (extras, default)
        in_plan = {(p.network, p.ifname) for p in planned}
        unknown = sorted((p for k, p in cached.items() if k not in in_plan), key=lambda p: (
            p.ifname == conf.default_interface, ifname_key(p.ifname)))
        ordered = list(reversed(unknown + [cached.get((p.network, p.ifname), p) for p in planned]))
        default = [p for p in ordered if p.ifname == conf.default_interface]
        extras = [p for p in ordered if p.ifname != conf.default_interface]
        lo = [PlaneRef(self.operator.loopback.name, conf.pod_id, netns, "lo")] if self.loopback else []
        return default + extras + lo

    @cni_state_errors
    def detach(self, conf: NetworkApiConf) -> None:
        try:
            planes = self.known_planes(conf)
        except CNIError as exc:  # the cache cannot be listed: nothing can be known to be detached
            raise DetachError([("*", conf.default_interface, exc)]) from exc
        failures = detach_all(self.operator, planes, parallel=self.settings.parallel_attach)
        if failures:
            kv(log, logging.WARNING, "pod detach incomplete", pod=f"{conf.namespace}/{conf.name}",
               pod_id=conf.pod_id, failures=len(failures))
            raise DetachError(failures)
        kv(log, logging.INFO, "pod detached", pod=f"{conf.namespace}/{conf.name}", pod_id=conf.pod_id,
           networks=",".join(p.network for p in planes))

    @cni_state_errors
    def check(self, conf: NetworkApiConf) -> list[NetworkApiResult]:
        planes = check_all(self.operator, self.known_planes(conf))
        return self.results(conf, planes)

    def results(self, conf: NetworkApiConf, planes: list[PlaneRef], plan: Plan | None = None) -> list[NetworkApiResult]:
        """One result per plane from the cache, default interface first, with the routes as
        `default-route` left them and each extra plane's namespace."""
        if plan is None:
            try:
                plan = self.full_plan(conf, for_detach=True)
            except (NetworkApiError, CNIError):
                plan = Plan([])  # a request that cannot be planned any more: the cache as it is
        found = self.cached_results(conf.pod_id, [(p.network, p.ifname) for p in planes], conf.default_interface)
        found = default_route.adjust(found, plan.routes)
        return [r.model_copy(update={"namespace": plan.namespaces.get(r.interface, conf.namespace)})
                if r.interface != conf.default_interface else r for r in found]

    # ---- configs -----------------------------------------------------------------------
    def conf_create(self, request: NetworkCreateRequest) -> NetworkInfo:
        raise NetworkApiError("the cri adaptor does not create networks: write a config file in "
                              f"{self.operator.conf_dir}, or use the native adaptor")

    def conf_rm(self, name: str) -> str:
        raise NetworkApiError("the cri adaptor does not remove networks: delete the config file in "
                              f"{self.operator.conf_dir}")

    def conf_inspect(self, name: str) -> str:
        net = self.operator.networks.get(name)
        if net is None:
            raise NetworkApiError(f"network {name!r} not found in {self.operator.conf_dir}")
        return net.raw.decode("utf-8")

    def conf_list(self, filters: dict[str, list[str]] | None = None) -> list[NetworkInfo]:
        return filter_infos([network_info(n) for n in self.operator.networks.networks], filters)

    def exist(self, name: str) -> bool:
        return self.operator.networks.get(name) is not None

    @cni_state_errors
    def attachments(self) -> dict[str, list[str]]:
        """network -> ids of the pods attached to it (this adaptor's owner tag only: the cache is shared)."""
        out: dict[str, set[str]] = {}
        for a in self.operator.own_attachments():
            if a.network != self.operator.loopback.name:
                out.setdefault(a.network, set()).add(a.container_id)
        return {n: sorted(ids) for n, ids in out.items()}

"""Network configuration files: finding, parsing, looking up by name, upconverting.

Two file formats (NetConf and NetConfListFile below): a single plugin conf (`.conf`/`.json`) and a
network config list (`.conflist`). Parsed objects keep the exact text each plugin was given
by the operator (`PluginConfig.raw`) so that unknown keys reach the plugin untouched, and the
list keeps its original bytes, which is what the result cache stores (as Go libcni does).

Where Go libcni aborts a directory lookup on the first bad file, `load_conf_list` skips it
and reports it: one broken file must never take a node's networking down.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any, Iterable

from . import jsonshape as shape
from . import rawjson, version
from .jsonshape import FieldError, Path, Value
from .errors import ConfigError, NetworkNotFoundError, NoConfigsFoundError
from .fileread import FileReadError, check_regular, read_regular

CONF_EXTENSIONS = (".conf", ".json")
LIST_EXTENSIONS = (".conflist",)
ALL_EXTENSIONS = LIST_EXTENSIONS + CONF_EXTENSIONS
#: A config file larger than this is refused unread (a network config is a few KiB).
MAX_CONF_FILE_SIZE = 1 << 20


def _lenient_bool(value: Any, path: Path = ()) -> bool:
    """Go libcni accepts JSON bools or the strings "true"/"false" in any case."""
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise FieldError(path, f'invalid value "{lowered}"')
    if not isinstance(value, bool):
        raise FieldError(path, f"invalid type {type(value).__name__}")
    return value


class _Document(Value):
    """A config object: the keys libcni reads, typed, and every other key kept in `extra`."""

    @property
    def extra(self) -> dict[str, Any]:
        """The keys libcni does not read, as decoded (they reach plugins as written: `PluginConfig.raw`)."""
        return self.__dict__["_extra"]

    @property
    def model_extra(self) -> dict[str, Any]:
        """`extra`, under the name it had when these were pydantic models."""
        return self.__dict__["_extra"]

    def __getattr__(self, name: str) -> Any:  # an extra key read as an attribute, as pydantic allowed
        try:
            return self.__dict__["_extra"][name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def _values(self) -> tuple[Any, ...]:
        return (*super()._values(), self.__dict__["_extra"])

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """`from_dict`, under the name it had as a pydantic model (FieldError is a ValueError)."""
        return cls.from_dict(data)  # type: ignore[attr-defined]


class NetConf(_Document):
    """A plugin configuration object (the spec's "plugin configuration"); extra keys allowed."""

    _fields = ("cniVersion", "name", "type", "capabilities")

    def __init__(self, cniVersion: str = "", name: str = "", type: str = "",
                 capabilities: dict[str, bool] | None = None, **extra: Any) -> None:
        d = self.__dict__
        d["cniVersion"], d["name"], d["type"] = cniVersion, name, type
        d["capabilities"] = {} if capabilities is None else capabilities
        d["_extra"] = extra

    @classmethod
    def from_dict(cls, doc: Any, path: Path = ()) -> NetConf:
        """Check a decoded plugin config (FieldError names the first bad key, in field order)."""
        doc = shape.obj(doc, path)
        cni_version = shape.string(doc.get("cniVersion", ""), (*path, "cniVersion"))
        name = shape.string(doc.get("name", ""), (*path, "name"))
        type_ = shape.string(doc.get("type", ""), (*path, "type"))
        caps = shape.obj(doc.get("capabilities", {}), (*path, "capabilities"))
        for key, on in caps.items():
            shape.boolean(on, (*path, "capabilities", key))
        net = cls(cni_version, name, type_, caps)
        net.__dict__["_extra"] = {k: v for k, v in doc.items() if k not in cls._fields}
        return net


class NetConfListFile(_Document):
    """A `.conflist` document (spec 1.1.0 "network configuration")."""

    _fields = ("name", "cniVersion", "cniVersions", "disableCheck", "disableGC", "loadOnlyInlinedPlugins", "plugins")

    def __init__(self, name: str, cniVersion: str = "", cniVersions: list[str] | None = None,
                 disableCheck: bool = False, disableGC: bool = False, loadOnlyInlinedPlugins: bool = False,
                 plugins: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        d = self.__dict__
        d["name"], d["cniVersion"], d["cniVersions"] = name, cniVersion, cniVersions
        d["disableCheck"], d["disableGC"], d["loadOnlyInlinedPlugins"] = disableCheck, disableGC, loadOnlyInlinedPlugins
        d["plugins"], d["_extra"] = plugins, extra

    @classmethod
    def from_dict(cls, doc: Any, path: Path = ()) -> NetConfListFile:
        """Check a decoded list (FieldError names the first bad key, in field order)."""
        doc = shape.obj(doc, path)
        name = shape.string(shape.required(doc, "name", path), (*path, "name"))
        cni_version = shape.string(doc.get("cniVersion", ""), (*path, "cniVersion"))
        versions = doc.get("cniVersions")
        if versions is not None:
            versions = shape.strings(versions, (*path, "cniVersions"))
        flags = [_lenient_bool(doc.get(key, False), (*path, key))
                 for key in ("disableCheck", "disableGC", "loadOnlyInlinedPlugins")]
        plugins = doc.get("plugins")
        if plugins is not None:
            plugins = [shape.obj(p, (*path, "plugins", i)) for i, p in enumerate(shape.array(plugins, (*path, "plugins")))]
        lst = cls(name, cni_version, versions, *flags, plugins)
        lst.__dict__["_extra"] = {k: v for k, v in doc.items() if k not in cls._fields}
        return lst


class PluginConfig(Value):
    """One plugin of a network: its typed view and the exact JSON text it was written as."""

    _fields = ("network", "raw")

    def __init__(self, network: NetConf, raw: str) -> None:
        self.__dict__["network"], self.__dict__["raw"] = network, raw

    @property
    def type(self) -> str:
        return self.network.type


class NetworkConfigList(Value):
    """A network: an ordered plugin chain with a name and a spec version."""

    _fields = ("name", "cni_version", "plugins", "raw", "disable_check", "disable_gc", "load_only_inlined_plugins",
               "source", "capabilities")

    def __init__(self, name: str, cni_version: str, plugins: tuple[PluginConfig, ...], raw: bytes,
                 disable_check: bool = False, disable_gc: bool = False, load_only_inlined_plugins: bool = False,
                 source: str | None = None, capabilities: frozenset[str] = frozenset()) -> None:
        d = self.__dict__
        d["name"], d["cni_version"], d["plugins"], d["raw"] = name, cni_version, plugins, raw
        d["disable_check"], d["disable_gc"], d["load_only_inlined_plugins"] = \
            disable_check, disable_gc, load_only_inlined_plugins
        d["source"], d["capabilities"] = source, capabilities

    @property
    def plugin_types(self) -> list[str]:
        return [p.type for p in self.plugins]


def _validation_message(exc: FieldError) -> str:
    if exc.missing:
        return f"missing '{exc.where}'"
    return f"invalid '{exc.where}': {exc.reason}"


def _decode(data: bytes | str, source: str | None, what: str) -> tuple[str, Any]:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return text, rawjson.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"error parsing {what}: {exc}", source) from None


def _check_version(ver: str, source: str | None, key: str = "cniVersion") -> None:
    try:
        version.Version.parse(ver)
    except ValueError as exc:
        raise ConfigError(f"invalid {key} {ver!r}: {exc}", source) from None
    if not version.is_supported(ver):
        raise ConfigError(
            f"unsupported {key} {ver!r} (this library speaks {', '.join(version.SUPPORTED_VERSIONS)})", source
        )


def plugin_conf_from_bytes(data: bytes | str, source: str | None = None) -> PluginConfig:
    """Parse a single plugin config; `type` is required, everything else is kept as written."""
    text, obj = _decode(data, source, "configuration")
    return _plugin_conf(text, obj, source)


def _plugin_conf(text: str, obj: Any, source: str | None) -> PluginConfig:
    """A plugin config from its raw text and that text already decoded (decoded once only:
    loading a big conf dir is mostly JSON decoding)."""
    if not isinstance(obj, dict):
        raise ConfigError("error parsing configuration: not a JSON object", source)
    try:
        net = NetConf.from_dict(obj)
    except FieldError as exc:
        raise ConfigError(f"error parsing configuration: {_validation_message(exc)}", source) from None
    if not net.type:
        raise ConfigError("error parsing configuration: missing 'type'", source)
    if net.cniVersion:
        _check_version(net.cniVersion, source)
    return PluginConfig(network=net, raw=text.strip())


def plugin_conf_from_file(path: str) -> PluginConfig:
    return plugin_conf_from_bytes(_read(path), source=path)


def _read(path: str) -> bytes:
    """The file's bytes, bounded; a FIFO, device, directory, symlink loop or oversized file is
    a ConfigError naming it (symlinks to regular files are followed: configmaps use them)."""
    try:
        return read_regular(path, MAX_CONF_FILE_SIZE)
    except FileReadError as exc:
        raise ConfigError(f"error reading file: {exc.reason}", path) from None


def _pick_version(doc: NetConfListFile, source: str | None) -> str:
    """Spec 1.1.0: the highest of cniVersion and cniVersions that this library supports;
    versions newer than ours are dropped (including cniVersion), as Go libcni does."""
    if doc.cniVersions is None:
        if doc.cniVersion:
            _check_version(doc.cniVersion, source)
        return doc.cniVersion
    candidates = []
    for i, ver in enumerate([*doc.cniVersions, *([doc.cniVersion] if doc.cniVersion else [])]):
        key = f"cniVersions entry {ver!r} at index {i}" if i < len(doc.cniVersions) else f"cniVersion {ver!r}"
        try:
            if not version.greater_than(ver, version.CURRENT):
                candidates.append(ver)
        except ValueError as exc:
            raise ConfigError(f"invalid {key}: {exc}", source) from None
    if not candidates:
        return doc.cniVersion if not doc.cniVersion else _check_version(doc.cniVersion, source) or doc.cniVersion
    chosen = version.newest(candidates)
    _check_version(chosen, source, "cniVersions")
    return chosen


def conf_list_from_bytes(
    data: bytes | str, source: str | None = None, extra_plugins: Iterable[PluginConfig] = ()
) -> NetworkConfigList:
    """Parse a config list; `extra_plugins` are fragments appended after the inline ones."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    text, obj = _decode(raw, source, "configuration list")
    return _conf_list(raw, text, obj, source, extra_plugins)


def _conf_list(raw: bytes, text: str, obj: Any, source: str | None,
               extra_plugins: Iterable[PluginConfig]) -> NetworkConfigList:
    if not isinstance(obj, dict):
        raise ConfigError("error parsing configuration list: not a JSON object", source)
    try:
        doc = NetConfListFile.from_dict(obj)
    except FieldError as exc:
        msg = _validation_message(exc)
        if msg == "missing 'name'":
            msg = "no name"
        raise ConfigError(f"error parsing configuration list: {msg}", source) from None
    cni_version = _pick_version(doc, source)
    plugins: list[PluginConfig] = []
    if doc.plugins is not None:
        if not doc.plugins:
            raise ConfigError("error parsing configuration list: no plugins in list", source)
        # a duplicated "plugins" key: JSON semantics (and Go) take the last one
        items = rawjson.member_array_items(text, "plugins") or []
        for i, (item, item_obj) in enumerate(zip(items, obj["plugins"])):
            try:
                plugins.append(_plugin_conf(item.strip(), item_obj, None))
            except ConfigError as exc:
                raise ConfigError(f"failed to parse plugin config {i}: {exc.msg}", source) from None
    elif doc.loadOnlyInlinedPlugins:
        raise ConfigError("error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key", source)
    if not doc.loadOnlyInlinedPlugins:
        plugins.extend(extra_plugins)
    if not plugins:
        raise ConfigError("error parsing configuration list: no plugins in list", source)
    caps = frozenset(c for p in plugins for c, on in p.network.capabilities.items() if on)
    return NetworkConfigList(
        name=doc.name,
        cni_version=cni_version,
        plugins=tuple(plugins),
        raw=raw,
        disable_check=doc.disableCheck,
        disable_gc=doc.disableGC,
        load_only_inlined_plugins=doc.loadOnlyInlinedPlugins,
        source=source,
        capabilities=caps,
    )


def is_safe_name(name: str) -> bool:
    """A name usable as one path component (network names end up in cache and fragment paths)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def plugin_fragments(conf_dir: str, network_name: str) -> list[PluginConfig]:
    """Spec 1.1.0 plugin fragments: `<conf_dir>/<network name>/*.conf`, sorted."""
    if not is_safe_name(network_name):
        return []
    frag_dir = os.path.join(conf_dir, network_name)
    out = []
    unusable: list[SkippedFile] = []
    paths = conf_files(frag_dir, (".conf",), unusable)
    for bad in unusable:  # a list missing one of its plugins must not load as if complete
        if not os.path.isdir(bad.path):  # sub-dirs are not fragments (not recursive, as Go)
            raise ConfigError(f"failed to read plugin config file {bad.path}: {bad.reason}")
    for path in paths:
        try:
            out.append(plugin_conf_from_file(path))
        except ConfigError as exc:
            raise ConfigError(f"failed to read plugin config file {path}: {exc.msg}") from None
    return out


def conf_list_from_file(path: str) -> NetworkConfigList:
    """Load a `.conflist` file, with its plugin fragments unless `loadOnlyInlinedPlugins`."""
    data = _read(path)
    text, obj = _decode(data, path, "configuration list")
    fragments: list[PluginConfig] = []
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        try:
            inlined_only = _lenient_bool(obj.get("loadOnlyInlinedPlugins", False))
        except ValueError:
            inlined_only = True  # conf_list_from_bytes reports the bad value
        if not inlined_only:
            fragments = plugin_fragments(os.path.dirname(path), obj["name"])
    return _conf_list(data, text, obj, path, fragments)


def conf_list_from_conf(plugin: PluginConfig, source: str | None = None) -> NetworkConfigList:
    """Upconvert a single plugin conf to a one-plugin list carrying its name and version."""
    net = plugin.network
    text = (
        "{"
        + f'"cniVersion":{rawjson.dumps(net.cniVersion)},"name":{rawjson.dumps(net.name)},"plugins":[{plugin.raw}]'
        + "}"
    )
    return conf_list_from_bytes(text.encode("utf-8"), source=source)


def load_file(path: str) -> NetworkConfigList:
    """Any config file as a list: `.conflist` parsed as a list, `.conf`/`.json` upconverted."""
    if path.endswith(LIST_EXTENSIONS):
        return conf_list_from_file(path)
    return conf_list_from_conf(plugin_conf_from_file(path), source=path)


class SkippedFile(Value):
    """A config file that was not loaded, and why."""

    _fields = ("path", "reason")

    def __init__(self, path: str, reason: str) -> None:
        self.__dict__["path"], self.__dict__["reason"] = path, reason


def conf_files(conf_dir: str, extensions: Iterable[str] = ALL_EXTENSIONS,
               unusable: list[SkippedFile] | None = None) -> list[str]:
    """Regular files (or symlinks to one) in `conf_dir` with one of `extensions` (exact
    match), sorted by name.

    An entry with a config extension that is not a regular file (a FIFO, a device, a
    directory, a dangling symlink or a symlink loop) is never returned and never raises: it
    is appended to `unusable` with the reason, so callers report it. A missing directory
    holds no files; it is not an error.
    """
    exts = tuple(extensions)
    try:
        with os.scandir(conf_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot list config dir: {exc.strerror}", conf_dir) from None
    out = []
    for entry in entries:
        if os.path.splitext(entry.name)[1] not in exts:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):  # d_type says regular: no syscall needed
                check_regular(entry.path)
        except OSError as exc:  # FileReadError, or lstat failing under us
            if unusable is not None:
                unusable.append(SkippedFile(entry.path, getattr(exc, "reason", None) or exc.strerror or str(exc)))
            continue
        out.append(entry.path)
    return out


def load_conf_list(conf_dir: str, name: str, skipped: list[SkippedFile] | None = None) -> NetworkConfigList:
    """Find network `name`: `.conflist` files first, then single confs (upconverted).

    Unparsable files are skipped (and appended to `skipped` when given) instead of aborting.
    """
    unusable: list[SkippedFile] = []
    lists = conf_files(conf_dir, LIST_EXTENSIONS, unusable)
    singles = conf_files(conf_dir, CONF_EXTENSIONS, unusable)
    if skipped is not None:
        skipped.extend(unusable)
    for path in lists:
        try:
            conf = conf_list_from_file(path)
        except ConfigError as exc:
            if skipped is not None:
                skipped.append(SkippedFile(path, str(exc)))
            continue
        if conf.name == name:
            return conf
    if not lists and not singles:
        raise NoConfigsFoundError(conf_dir)
    for path in singles:
        try:
            plugin = plugin_conf_from_file(path)
        except ConfigError as exc:
            if skipped is not None:
                skipped.append(SkippedFile(path, str(exc)))
            continue
        if plugin.network.name == name:
            return conf_list_from_conf(plugin, source=path)
    raise NetworkNotFoundError(conf_dir, name)


def inject(plugin: PluginConfig, values: dict[str, Any]) -> str:
    """The plugin's config text with `values` set (name, cniVersion, prevResult, ...)."""
    return rawjson.splice(plugin.raw, values)

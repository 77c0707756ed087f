"""The cni-operator: network configs from a directory, and loopback / network-plane attach."""

from .loader import MAX_CONF_FILES, MAX_CONF_FILE_SIZE, NetworkSet, load_networks
from .operator import LOOPBACK_CONFLIST, CNIOperator, PlaneRef, rollback_failures
from .watcher import ConfDirWatcher

__all__ = ["MAX_CONF_FILES", "MAX_CONF_FILE_SIZE", "NetworkSet", "load_networks", "LOOPBACK_CONFLIST",
           "CNIOperator", "PlaneRef", "rollback_failures", "ConfDirWatcher"]

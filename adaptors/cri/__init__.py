"""The CRI adaptor: a pod's network planes (loopback, extra planes, the default network),
and everything cri-net knows about CRI pods: annotations, port mappings, IP ranges, host
ports, bandwidth quantities, the default network `make run` installs."""

from .adaptor import OWNER_HOOK, OWNER_POD, POD_ANNOTATIONS_CAP, CRIAdaptor

__all__ = ["CRIAdaptor", "OWNER_HOOK", "OWNER_POD", "POD_ANNOTATIONS_CAP"]

"""The network API (seed 001): attach/detach/check pods and containers, manage network configs.

    module = NetworkModule.init(settings)          # loads the "cri" and "native" adaptors
    results = module.attach(conf, "cri")           # loopback, extra planes, default network
    module.detach(conf, "cri")
"""

from .errors import (AdaptorNotFoundError, AttachError, CheckError, CNIStateError, DetachError, InvalidRequestError,
                     NetworkApiError,
                     NetworkNotReadyError, NetworkStatusError)
from .models import (Attachment, ExtraNet, NetworkApiConf, NetworkApiResult, NetworkCreateRequest, NetworkInfo,
                     NetworkState)
from .module import NetworkModule, create_adaptor

__all__ = ["AdaptorNotFoundError", "AttachError", "CheckError", "CNIStateError", "DetachError", "InvalidRequestError", "NetworkApiError",
           "NetworkNotReadyError", "NetworkStatusError", "Attachment", "NetworkState", "create_adaptor", "ExtraNet", "NetworkApiConf", "NetworkApiResult", "NetworkCreateRequest",
           "NetworkInfo", "NetworkModule"]

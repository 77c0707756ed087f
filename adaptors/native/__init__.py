"""The native adaptor: bridge networks for plain containers (`cri-net network ...`)."""

from .adaptor import NativeAdaptor

__all__ = ["NativeAdaptor"]

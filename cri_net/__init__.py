"""cri-net: a network hook for Kubernetes container runtimes (CNI library, network API, CRI endpoint)."""

__version__ = "0.1.0"

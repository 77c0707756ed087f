"""CRI (Kubernetes Container Runtime Interface) side of cri-net: runtime.v1 protocol stubs and endpoint."""

"""The `cri-net` command line."""

"""A real containerd for the e2e tests: see :mod:`integration.containerd.harness`."""

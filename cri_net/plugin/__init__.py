"""The CNI plugin way in: what a runtime such as containerd execs for every pod.

`launcher` is the executable's entry point (and installs it); `wire` is the handoff protocol
to a running `cri-net serve`, whose server side is `cri_net.server.cni_endpoint`; `handler`
turns one CNI call into a network request for the CRI adaptor; `status` answers CNI STATUS;
`shim.c` is the native launcher. Importing this package loads nothing: the launcher's path
must stay bare.
"""

"""Where cri-net looks and listens unless told otherwise: one definition for every way in.

Plain constants, no imports: the CNI launcher reads them on every pod start.
"""

#: cri-net's own networks; no container runtime reads this dir, so a runtime calling the hook
#: never runs them a second time
CONF_DIR = "/etc/cri-net/net.d"
BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
#: Go libcni's cache dir, shared with the runtime (cri-net tags what it writes)
CACHE_DIR = "/var/lib/cni"
STATE_DIR = "/var/lib/cri-net"
NETNS_DIR = "/run/cri-net/netns"
LISTEN = "unix:///run/cri-net/cri-net.sock"
#: where `cri-net serve` takes calls handed over by the CNI launcher
CNI_SOCKET = "/run/cri-net/cni.sock"
CONFIG_FILE = "/etc/cri-net/config.toml"
#: seconds a plugin may run before it is killed
PLUGIN_TIMEOUT = 60.0

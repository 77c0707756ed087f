"""`cri-net-cni`: the CNI plugin a runtime such as containerd calls to hand pods to cri-net.

Reserved entry point; the plugin itself arrives with the containerd integration.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    err = {"cniVersion": "1.0.0", "code": 4, "msg": "cri-net-cni is not implemented yet"}
    print(json.dumps(err))
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Remove the masquerade rules a plugin could not remove because the pod's netns was gone.

The bridge and ptp plugins (containernetworking/plugins 1.x) skip their ipMasq teardown when
DEL has no netns: they need the netns to learn the pod's address. The rules stay behind
forever, one chain per pod. They are easy to recognise: a POSTROUTING rule in the nat table
commented `name: "<network>" id: "<container id>"` jumps to a per-pod `CNI-...` chain. After
a DEL without netns succeeded, nothing of that attachment may remain, so cri-net removes
exactly those rules and chains.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess

from ..log import kv

log = logging.getLogger("cri_net.operator")

TOOLS = (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables"))
TIMEOUT = 30.0


def plugin_comment(network: str, container_id: str) -> str:
    """The comment the reference plugins put on a pod's rules (utils.FormatComment)."""
    return f'name: "{network}" id: "{container_id}"'


def _jumps(save_output: str, comment: str) -> list[list[str]]:
    """POSTROUTING rules carrying `comment` that jump to a CNI- chain, as argv after -A."""
    rules = []
    for line in save_output.splitlines():
        if not line.startswith("-A POSTROUTING ") or "--comment" not in line:
            continue
        try:
            argv = shlex.split(line)
        except ValueError:
            continue
        try:
            text = argv[argv.index("--comment") + 1]
            target = argv[argv.index("-j") + 1]
        except (ValueError, IndexError):
            continue
        if text == comment and target.startswith("CNI-"):
            rules.append(argv[1:])
    return rules


def sweep_masquerade(network: str, container_id: str) -> list[str]:
    """Delete this attachment's leftover masquerade jumps and chains; returns the chains removed.

    Failures are logged, not raised: the DEL itself succeeded and must stay successful."""
    comment = plugin_comment(network, container_id)
    removed: list[str] = []
    for save, tool in TOOLS:
        if shutil.which(save) is None or shutil.which(tool) is None:
            continue
        try:
            dump = subprocess.run([save, "-t", "nat"], capture_output=True, text=True, timeout=TIMEOUT, check=True)
            for rule in _jumps(dump.stdout, comment):
                chain = rule[rule.index("-j") + 1]
                subprocess.run([tool, "-w", "-t", "nat", "-D", *rule], capture_output=True, timeout=TIMEOUT, check=True)
                for op in ("-F", "-X"):
                    subprocess.run([tool, "-w", "-t", "nat", op, chain], capture_output=True, timeout=TIMEOUT,
                                   check=True)
                removed.append(chain)
        except (OSError, subprocess.SubprocessError) as exc:
            kv(log, logging.WARNING, "could not sweep masquerade rules", network=network, container=container_id,
               tool=tool, error=str(exc))
    if removed:
        kv(log, logging.INFO, "removed masquerade rules left by DEL without netns", network=network,
           container=container_id, chains=",".join(removed))
    return removed

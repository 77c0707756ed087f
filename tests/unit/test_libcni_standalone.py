"""`cri_net.libcni` stands alone, as Go's libcni does: it imports nothing else of cri-net, so
it can be used (and reasoned about) on its own."""

from __future__ import annotations

import subprocess
import sys


def test_libcni_imports_nothing_else_of_cri_net() -> None:
    code = ("import sys\nfrom cri_net.libcni import CNI\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('cri_net'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = proc.stdout.split()
    outside = [m for m in loaded if m != "cri_net" and not m.startswith("cri_net.libcni")]
    assert outside == [], f"cri_net.libcni pulled in {outside}"
    assert "cri_net.libcni.api" in loaded

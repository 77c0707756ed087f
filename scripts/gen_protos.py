#!/usr/bin/env python3
"""Regenerate the checked-in gRPC/protobuf stubs under cri_net/cri/pb/ from protos/.

Why this exists: the CRI stubs are committed so that cri-net imports without a
protoc step at install time, and they have to live inside the cri_net package.
protoc names Python modules after the .proto path ("runtime/v1/api.proto" ->
module "runtime.v1.api_pb2") and emits absolute imports such as
`from runtime.v1 import api_pb2`, which do not resolve inside cri_net. This
script runs `python -m grpc_tools.protoc` and then rewrites those module
references to `cri_net.cri.pb.runtime.v1...`, so one command gives the same
bytes on every machine (given the grpcio-tools pinned in constraints.txt).

    .venv/bin/python scripts/gen_protos.py          # regenerate in place
    .venv/bin/python scripts/gen_protos.py --check  # exit 1 and list stale files
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "protos"
OUT_PKG = "cri_net.cri.pb"
OUT_DIR = ROOT / Path(*OUT_PKG.split("."))
INIT_TEXT = '"""Generated package (scripts/gen_protos.py); do not edit."""\n'
ROOT_INIT_TEXT = (
    '"""Generated CRI protobuf/gRPC stubs; regenerate with scripts/gen_protos.py, do not edit."""\n'
)


def _protos() -> list[str]:
    return sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write the full generated tree (stubs plus __init__.py files) into out_dir."""
    protos = _protos()
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
         f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
         *protos],
        check=True, cwd=ROOT,
    )
    # Top-level proto directories ("runtime") become subpackages of OUT_PKG.
    tops = "|".join(sorted({re.escape(p.split("/")[0]) for p in protos if "/" in p}))
    import_re = re.compile(rf"^(from|import) ({tops})([. ])", re.M)
    module_re = re.compile(rf"BuildTopDescriptorsAndMessages\(DESCRIPTOR, '(({tops})\.)")
    for f in sorted(out_dir.rglob("*.py*")) if tops else []:
        text = f.read_text()
        new = import_re.sub(rf"\1 {OUT_PKG}.\2\3", text)
        new = module_re.sub(rf"BuildTopDescriptorsAndMessages(DESCRIPTOR, '{OUT_PKG}.\1", new)
        if new != text:
            f.write_text(new)
    for d in sorted({f.parent for f in out_dir.rglob("*.py")} | {out_dir}):
        while True:
            init = d / "__init__.py"
            if not init.exists():
                init.write_text(ROOT_INIT_TEXT if d == out_dir else INIT_TEXT)
            if d == out_dir:
                break
            d = d.parent


def _tree(d: Path) -> dict[str, bytes]:
    if not d.is_dir():
        return {}
    return {p.relative_to(d).as_posix(): p.read_bytes()
            for p in sorted(d.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def stale_files() -> list[str]:
    """Regenerate into a temp dir; return checked-in paths that differ, are missing or extra."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        want = _tree(Path(tmp))
    have = _tree(OUT_DIR)
    rel = OUT_DIR.relative_to(ROOT).as_posix()
    return [f"{rel}/{name}" for name in sorted(want.keys() | have.keys())
            if want.get(name) != have.get(name)]


def sync() -> list[str]:
    """Regenerate OUT_DIR in place; return the paths that changed."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        want = _tree(Path(tmp))
    have = _tree(OUT_DIR)
    changed = []
    for name in sorted(want.keys() | have.keys()):
        if want.get(name) == have.get(name):
            continue
        path = OUT_DIR / name
        if name in want:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(want[name])
        else:
            path.unlink()
        changed.append(path.relative_to(ROOT).as_posix())
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the checked-in stubs are stale")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name}")
        if stale:
            print("run: .venv/bin/python scripts/gen_protos.py", file=sys.stderr)
            return 1
        print("generated protobuf stubs are up to date")
        return 0
    for name in sync():
        print(f"wrote: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`-o json|table` for every listing and inspect command, printed one way everywhere."""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

FORMATS = ("table", "json")


def add_output_flag(parser: argparse.ArgumentParser, default: str = "table") -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default=default,
                        help=f"output format (default {default}); json is stable for scripts")


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=4, ensure_ascii=False))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns sized to their widest cell, as crictl and docker print them."""
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for r in cells:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())

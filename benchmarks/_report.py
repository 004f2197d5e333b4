"""Shared by the benchmarks: print the markdown table and keep JSON + markdown in a folder;
parse their ``KEY=VALUE`` options."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(report: dict, table: str, out=None) -> dict:
    """Print ``table``; with ``out``, write ``out/results.json`` and ``out/results.md``."""
    print(table)
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "results.md").write_text(table + "\n")
    return report


def parse_options(pairs) -> dict:
    """``["a=1", "b=(0.9, 0.99)"]`` -> ``{"a": 1, "b": (0.9, 0.99)}`` (Python literals; a
    value that is not one stays a string)."""
    import ast

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options

"""Shared by the benchmarks: print the markdown table and keep JSON + markdown in a folder."""

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

"""Execute the tutorials and keep their stored outputs honest.

::

    python tutorials/execute.py                  # full mode: run every notebook, store outputs
    python tutorials/execute.py 03_importance_sampling.ipynb
    python tutorials/execute.py --smoke --no-write   # what the tests do (ZOO_SMOKE=1)
    python tutorials/execute.py --check          # are the stored outputs the current source's?

Each notebook runs top to bottom in a kernel of this interpreter (a kernelspec written to a
temporary ``JUPYTER_PATH``, so the notebooks import the same installed ``zoo``), with
matplotlib's inline backend, as in Jupyter: ``MPLBACKEND`` is removed from the kernel's
environment. In full mode the executed notebook is written back with its outputs and figures,
and every code cell records the SHA-256 of the source that produced them
(``cell.metadata["zoo"]["source_sha256"]``); :func:`problems` finds cells edited since, figure
cells (tagged ``figure``) without an image, and notebooks without figures. Smoke mode
(``ZOO_SMOKE=1``) shrinks data and epochs and writes nothing back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

TUTORIALS = Path(__file__).resolve().parent
KERNEL = "zoo-tutorials"


def notebooks() -> list[Path]:
    return sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))


def source_hash(cell) -> str:
    return hashlib.sha256(cell.source.encode()).hexdigest()


def has_image(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def is_figure_cell(cell) -> bool:
    return "figure" in cell.metadata.get("tags", [])


def problems(nb, name: str = "notebook", stored: bool = True) -> list[str]:
    """What is wrong with an executed notebook: figure cells without an image, no figure at all,
    and (for stored notebooks) code cells whose output was not produced by their current source
    in full mode."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if stored:
            stamp = cell.metadata.get("zoo", {})
            if stamp.get("source_sha256") != source_hash(cell):
                found.append(f"{name} cell {i}: its stored output is not from its current source "
                             "(run `make tutorials`)")
            elif stamp.get("mode") != "full":
                found.append(f"{name} cell {i}: stored from a smoke run, not a full one")
        if is_figure_cell(cell) and not has_image(cell):
            found.append(f"{name} cell {i}: tagged 'figure' but produced no image")
    if not any(has_image(c) for c in nb.cells if c.cell_type == "code"):
        found.append(f"{name}: no figure")
    return found


def _kernelspec(root: Path) -> None:
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "zoo tutorials", "language": "python",
    }))


def execute(path: Path, smoke: bool, timeout: int = 900):
    """The notebook at ``path`` executed top to bottom (raises on the first failing cell)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "ZOO_SMOKE", "MPLBACKEND",
                                            "OMP_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as root:
        _kernelspec(Path(root))
        os.environ["JUPYTER_PATH"] = root
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ.pop("MPLBACKEND", None)  # the inline backend, as in Jupyter
        if smoke:
            os.environ["ZOO_SMOKE"] = "1"
        else:
            os.environ.pop("ZOO_SMOKE", None)
        try:
            NotebookClient(nb, timeout=timeout, kernel_name=KERNEL,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return nb


def stamp(nb, mode: str) -> None:
    """Record in every code cell the hash of the source its outputs came from."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata["zoo"] = {"source_sha256": source_hash(cell), "mode": mode}
    nb.metadata.pop("widgets", None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks (default: all)")
    parser.add_argument("--smoke", action="store_true", help="ZOO_SMOKE=1 (seconds each)")
    parser.add_argument("--no-write", action="store_true", help="do not store the outputs")
    parser.add_argument("--check", action="store_true",
                        help="only check that the stored outputs match the sources")
    args = parser.parse_args(argv)
    paths = [TUTORIALS / (n if n.endswith(".ipynb") else f"{n}.ipynb") for n in args.names]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        parser.error(f"no notebook {', '.join(missing)} in {TUTORIALS}; there are "
                     f"{', '.join(p.stem for p in notebooks())}.")
    paths = paths or notebooks()
    failures = []
    for path in paths:
        if args.check:
            failures += problems(nbformat.read(path, as_version=4), path.name)
            continue
        start = time.perf_counter()
        nb = execute(path, smoke=args.smoke)
        found = problems(nb, path.name, stored=False)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s"
              + (f", {len(found)} problem(s)" if found else ""), flush=True)
        failures += found
        if not args.no_write and not args.smoke:
            stamp(nb, "full")
            nbformat.write(nb, path)
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

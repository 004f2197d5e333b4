"""Check the built site: its pages, then the same pages in a real browser.

::

    python docs/check.py                      # after `make docs`; `make docs-check` does both
    python docs/check.py --no-browser         # only the checks on the HTML files
    python docs/check.py --pages index.html   # the browser on some pages only

On the files (``docs/_build/html``):

- every registered model (``zoo.registry.list_models()``) has its page
  ``catalogue/models/NAME.html``, with its generative story (the module docstring, maths
  included);
- every tutorial ``tutorials/NN_*.ipynb`` has its page, the notebook has its figures (a cell
  tagged ``figure`` without an image, or a notebook without any image, is a failure: the rule of
  ``tutorials/execute.py``), and the page shows each stored image (an ``<img>`` per image output,
  its file present).

In headless Chromium (Debian's ``chromium``, driven by Playwright), every page served from
``127.0.0.1``, a failure is: a console error or an uncaught exception, a request that fails or
answers 400 or more, a request to any other host (the site is offline), an image that does not
load, maths that MathJax reports as an error (an undefined macro is one: ``noundefined`` is off)
or leaves untypeset. Before the pages, a canary page with each of these faults must be caught,
so the checker cannot pass by seeing nothing. Screenshots of the home page, a tutorial (at its
first figure) and a model page go to ``docs/_build/screenshots/``.

Exit status 0 when nothing failed, 1 otherwise (every failure is printed).
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT_MODEL = "vae"


def tutorial_rules():
    """``tutorials/execute.py``: the one home of what a stored notebook must show."""
    spec = importlib.util.spec_from_file_location("tutorials_execute",
                                                  ROOT / "tutorials" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Images(html.parser.HTMLParser):
    """The ``src`` of every ``<img>``, and of those inside a notebook cell's output."""

    def __init__(self):
        super().__init__()
        self.all, self.in_outputs, self._stack = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.all.append(attrs.get("src", ""))
            if any("cell_output" in c for c in self._stack):
                self.in_outputs.append(attrs.get("src", ""))
        elif tag in ("div", "section", "details", "figure"):
            self._stack.append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if tag in ("div", "section", "details", "figure") and self._stack:
            self._stack.pop()


def check_files(site: Path, tutorials: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """``(failures as (what, message), every what checked)``."""
    from zoo.registry import list_models

    failures = []
    checked = set()
    for page in ("index.html", "getting-started.html", "catalogue/models.html",
                 "catalogue/guides.html", "tutorials/index.html", "benchmarks.html",
                 "api/index.html", "contributing.html", "design.html"):
        checked.add(f"page {page}")
        if not (site / page).exists():
            failures.append((f"page {page}", f"{page}: missing"))
    for name in list_models():
        checked.add(f"model {name}")
        page = site / "catalogue" / "models" / f"{name}.html"
        if not page.exists():
            failures.append((f"model {name}", f"model {name!r}: no page "
                             f"(catalogue/models/{name}.html)"))
            continue
        text = page.read_text(encoding="utf-8")
        if 'id="the-generative-story"' not in text or 'class="math' not in text:
            failures.append((f"model {name}", f"catalogue/models/{name}.html: no generative "
                             "story with its maths"))
    rules = tutorial_rules()
    import nbformat

    notebooks = rules.notebooks() if tutorials == ROOT / "tutorials" else sorted(
        tutorials.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        failures.append(("tutorials", f"no tutorials found in {tutorials}"))
    for path in notebooks:
        unit = f"tutorial {path.stem}"
        checked.add(unit)
        page = site / "tutorials" / f"{path.stem}.html"
        if not page.exists():
            failures.append((unit, f"tutorial {path.name}: no page (tutorials/{page.name})"))
            continue
        nb = nbformat.read(path, as_version=4)
        failures += [(unit, f"tutorial {p}") for p in rules.problems(nb, path.name, stored=False)]
        expected = sum(1 for c in nb.cells if c.cell_type == "code"
                       for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        parser = Images()
        parser.feed(page.read_text(encoding="utf-8"))
        if len(parser.in_outputs) < expected:
            failures.append((unit, f"tutorials/{page.name}: {len(parser.in_outputs)} figure(s) "
                             f"shown, the notebook stores {expected}"))
        for src in parser.all:
            if not src.startswith(("data:", "http:", "https:")) and not (
                    page.parent / src.split("#")[0].split("?")[0]).exists():
                failures.append((unit, f"tutorials/{page.name}: image {src} is not in the site"))
    return failures, checked


# --- the browser -------------------------------------------------------------------------

CANARY = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>canary</title>
<script>window.MathJax = {MATHJAX_CONFIG};</script>
<script defer src="_static/mathjax/tex-chtml.js"></script></head><body>
<p class="math">\\(\\frac{1}{\\notamacro{x}}\\)</p>
<img src="_images/no-such-figure.png" alt="missing">
<script>console.error("canary: a console error");</script>
</body></html>"""

PAGE_STATE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await document.fonts.ready;  // MathJax's fonts: leaving before they load aborts them
  const merrors = Array.from(document.querySelectorAll('mjx-merror')).map(
      e => e.getAttribute('data-mjx-error') || e.textContent);
  const untypeset = Array.from(document.querySelectorAll('.math')).filter(
      e => !e.querySelector('mjx-container') && /\\\\[\\(\\[]|\\$/.test(e.textContent)).length;
  const images = Array.from(document.images);
  await Promise.all(images.filter(i => !i.complete).map(i => new Promise(done => {
      i.addEventListener('load', done);
      i.addEventListener('error', done);
  })));
  const hasMath = document.querySelector('.math') !== null;
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(
      i => i.getAttribute('src'));
  const figures = Array.from(document.querySelectorAll('.cell_output img')).filter(
      i => i.complete && i.naturalWidth > 0).length;
  return {merrors, untypeset, broken, figures, hasMath, mathjax: !!window.MathJax,
          images: images.length};
}"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a page closed mid-transfer
            super().handle_error(request, client_address)


def serve(root: Path):
    handler = functools.partial(Quiet, directory=str(root))
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Tab:
    """One browser page that records its faults: console errors, uncaught exceptions, failed
    requests and answers of 400 or more."""

    def __init__(self, context, origin: str):
        self.page, self.origin, self.faults = context.new_page(), origin, []
        self.page.on("console", lambda m: self.faults.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.faults.append(f"uncaught exception: {e}"))
        self.page.on("requestfailed", lambda r: self.faults.append(
            f"request failed: {r.url} ({r.failure})") if r.url.startswith(origin) else None)
        self.page.on("response", lambda r: self.faults.append(f"HTTP {r.status}: {r.url}")
                     if r.status >= 400 else None)

    def visit(self, url: str) -> tuple[list[str], dict]:
        """Load ``url``; the faults seen and the page's state once MathJax is done."""
        self.faults = []
        self.page.goto(url, wait_until="load", timeout=60_000)
        state = self.page.evaluate(PAGE_STATE)
        faults = self.faults
        if state["hasMath"] and not state["mathjax"]:
            faults.append("maths on the page but MathJax did not load")
        for error in state["merrors"]:
            faults.append(f"MathJax error: {error}")
        if state["untypeset"]:
            faults.append(f"{state['untypeset']} maths element(s) left untypeset")
        for src in state["broken"]:
            faults.append(f"image did not load: {src}")
        return faults, state


def check_browser(site: Path, pages: list[str], tutorials: Path,
                  shots: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """``(failures as (what, message), every what checked)``."""
    import json

    from playwright.sync_api import sync_playwright

    failures = []
    canary = site / "_zoo_check_canary.html"
    config = None  # the site's MathJax configuration, from a page with maths
    for path in sorted(site.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        if "window.MathJax = " in text:
            config = text.split("window.MathJax = ", 1)[1].split("</script>", 1)[0].strip()
            config = config.rstrip(";")
            break
    if config is None:
        failures.append(("mathjax", "no page of the site loads MathJax"))
        config = "{}"
    canary.write_text(CANARY.replace("{MATHJAX_CONFIG}", config), encoding="utf-8")
    server = serve(site)
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    shots.mkdir(parents=True, exist_ok=True)
    expected_figures = {}
    rules = tutorial_rules()
    import nbformat

    for path in sorted(tutorials.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        expected_figures[f"tutorials/{path.stem}.html"] = sum(
            1 for c in nb.cells if c.cell_type == "code" and rules.has_image(c))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            outside = []

            def route(r):
                if r.request.url.startswith(origin) or r.request.url.startswith("data:"):
                    return r.continue_()
                outside.append(r.request.url)
                return r.abort()

            context.route("**/*", route)

            # the canary: every kind of fault must be seen
            tab = Tab(context, origin)
            faults, state = tab.visit(origin + canary.name)
            for kind in ("console error", "MathJax error", "image did not load", "HTTP 404"):
                if not any(kind in f for f in faults):
                    failures.append(("canary", f"the checker missed a canary fault ({kind}); "
                                                f"saw {faults}"))
            if not state["mathjax"]:
                failures.append(("canary", "the canary page could not load MathJax from _static/"))

            start = time.perf_counter()
            for rel in pages:
                faults, state = tab.visit(origin + rel)
                want = expected_figures.get(rel)
                if want is not None and state["figures"] < max(want, 1):
                    faults.append(f"{state['figures']} figure(s) loaded, expected "
                                  f"{max(want, 1)}")
                failures += [(f"page {rel}", f"{rel}: {f}") for f in faults]
            tab.page.close()
            for url in sorted(set(outside)):
                failures.append(("offline", f"a page asked for {url}: the site must be offline"))
            elapsed = time.perf_counter() - start
            print(f"browser: {len(pages)} pages in {elapsed:.0f} s", flush=True)

            tutorial = next((p for p in pages if p.startswith("tutorials/0")), None)
            shots_to_take = [("home.png", "index.html", None),
                             ("model.png", f"catalogue/models/{SCREENSHOT_MODEL}.html", None)]
            if tutorial:
                shots_to_take.insert(1, ("tutorial.png", tutorial, ".cell_output img"))
            for name, rel, anchor in shots_to_take:
                page = context.new_page()
                page.goto(origin + rel, wait_until="load")
                page.evaluate(PAGE_STATE)
                if anchor and page.locator(anchor).count():
                    page.locator(anchor).first.scroll_into_view_if_needed()
                    page.evaluate("window.scrollBy(0, -120)")
                page.screenshot(path=str(shots / name))
                page.close()
            browser.close()
    finally:
        server.shutdown()
        canary.unlink(missing_ok=True)
    (shots / "pages.json").write_text(json.dumps(pages, indent=1))
    return failures, {"canary", "offline", "mathjax"} | {f"page {p}" for p in pages}


def all_pages(site: Path) -> list[str]:
    """Every page but the highlighted sources (``_modules/``: code, no maths, no figures) and
    Sphinx's index and search pages."""
    skip = ("_zoo_check_canary.html", "genindex.html", "search.html", "py-modindex.html")
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if p.name not in skip and not p.relative_to(site).parts[0].startswith(
                      ("_sources", "_static", "_modules")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=DOCS / "_build" / "screenshots")
    parser.add_argument("--tutorials", type=Path,
                        default=Path(os.environ.get("ZOO_DOCS_TUTORIALS", ROOT / "tutorials")),
                        help="the notebooks the site was built from (default tutorials/, or "
                             "$ZOO_DOCS_TUTORIALS as for the build)")
    parser.add_argument("--pages", nargs="*", help="pages for the browser (default: all)")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    site = args.html.resolve()
    if not (site / "index.html").exists():
        print(f"{site}: no built site (run `make docs`)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    failures, checked = check_files(site, args.tutorials.resolve())
    if not args.no_browser:
        more, seen = check_browser(site, args.pages or all_pages(site), args.tutorials.resolve(),
                                   args.screenshots)
        failures, checked = failures + more, checked | seen
    for _, message in failures:
        print(f"FAIL {message}", file=sys.stderr)
    failed = {what for what, _ in failures}
    print(f"docs check took {time.perf_counter() - start:.0f} s"
          + (f"; screenshots in {args.screenshots}" if not args.no_browser else ""))
    print(f"docs-check: {len(checked - failed)} passed, {len(failed)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

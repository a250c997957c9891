"""The built book read in a real browser: what a reader would see, checked page by page.

Each page of a built book is opened in headless Chromium at the given window widths (1280 px,
a laptop, and 420 px, a phone), with a small script that runs once the page has loaded and
its interactive figures have drawn. It reports, per page and width:

- ``uncaptioned``: an image or interactive figure of the page's content that is not inside a
  ``<figure>`` with a non-empty caption;
- ``leaked``: a text node outside the cells' code that contains "Warning", "Traceback", the
  path of a kernel's temporary folder (``/tmp/ipykernel_...``) or of installed code
  (``site-packages/``, ``file.py:123:``), or a table cell that says only "nan" or "None";
- ``overflow`` (at widths of 1000 px or more): a table wider than the block it sits in (a
  cell's output), so that it is cut off or scrolls (on a phone a table may scroll sideways,
  deliberately);
- ``empty_interactive``: an interactive figure with no drawn plot (no ``svg.main-svg`` taller
  than 100 px), as when plotly.js did not load;
- ``remote``: a script or style sheet loaded from the network (the book must work offline;
  ipywidgets' saved state, for one, would load require.js and the widget manager from CDNs).

``python -m redundancy.run.bookcheck _build/html`` checks a built book and exits 1 on any
finding; the test suite builds a small book and checks it, and checks that a page with each
fault planted is caught (tests/run/test_bookcheck.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["browser", "check_page", "check_book", "CHECK_JS"]

#: the script added to a copy of each page: it writes its findings into <pre id="bookcheck">
CHECK_JS = r"""
<script>
window.addEventListener("load", function () { setTimeout(function () {
  var main = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  var r = {width: window.innerWidth, images: 0, captioned: 0, interactive: 0, uncaptioned: [], leaked: [],
           overflow: [], empty_interactive: [], remote: []};
  function where(el) { var s = (el.getAttribute("src") || el.id || el.className || el.tagName) + ""; return s.slice(-80); }
  function captioned(el) {
    var f = el.closest("figure"); if (!f) return false;
    var c = f.querySelector("figcaption"); return !!c && c.textContent.trim().length > 0;
  }
  main.querySelectorAll("img").forEach(function (el) {
    r.images += 1; if (captioned(el)) r.captioned += 1; else r.uncaptioned.push(where(el));
  });
  main.querySelectorAll(".redundancy-interactive").forEach(function (el) {
    r.interactive += 1;
    if (!captioned(el)) r.uncaptioned.push(where(el));
    var svg = el.querySelector("svg.main-svg");
    if (!svg || svg.getBoundingClientRect().height < 100) r.empty_interactive.push(where(el));
  });
  var walk = document.createTreeWalker(main, NodeFilter.SHOW_TEXT, null), n;
  var bad = /Warning|Traceback|ipykernel_|\/tmp\/ipykernel|site-packages\/|\.py:\d+:/;
  while ((n = walk.nextNode())) {  // the code of a cell (shown on demand) is not output
    var p = n.parentElement; if (!p || p.closest("script, style, .cell_input, .bookcheck-ignore")) continue;
    var t = n.textContent;
    if (bad.test(t) || (p.closest("td, th") && /^\s*(nan|NaN|None)\s*$/.test(t))) r.leaked.push(t.trim().slice(0, 120));
  }
  if (window.innerWidth >= 1000) {  // a table wider than the block it sits in (a cell's output, a paragraph)
    main.querySelectorAll("table").forEach(function (t) {
      var b = t.getBoundingClientRect(), box = t.parentElement.getBoundingClientRect();
      if (b.width > 0 && b.right > box.right + 1) r.overflow.push(Math.round(b.width) + " px wide, its container " +
        Math.round(box.width) + " px: " + t.textContent.trim().replace(/\s+/g, " ").slice(0, 60));
    });
  }
  document.querySelectorAll("script[src], link[href][rel=stylesheet]").forEach(function (el) {  // offline
    var u = el.getAttribute("src") || el.getAttribute("href");
    if (/^(https?:)?\/\//.test(u)) r.remote.push(u.slice(0, 120));
  });
  var pre = document.createElement("pre"); pre.id = "bookcheck"; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
}, 300); });
</script>
"""

#: the narrowest window headless Chromium opens (CSS px); narrower widths are checked in a frame
MIN_WINDOW = 500

#: a page that shows the checked page in a frame ``width`` px wide and copies out its findings
HOST = """<html><body style="margin:0"><iframe id="page" src="{src}" style="border:0;width:{width}px;height:1600px"></iframe>
<script>window.addEventListener("load", function () {{ setTimeout(function () {{
  var d = document.getElementById("page").contentDocument, p = d && d.getElementById("bookcheck");
  var out = document.createElement("pre"); out.id = "bookcheck"; out.textContent = p ? p.textContent : "";
  document.body.appendChild(out); }}, 1500); }});</script></body></html>"""

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def browser() -> str | None:
    """The path of a Chromium (or Chrome) on this machine, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_page(page: Path, width: int, exe: str | None = None, timeout: int = 120) -> dict:
    """The findings for one built page at one window width (see the module's docstring)."""
    exe = exe or browser()
    if exe is None:
        raise FileNotFoundError("no Chromium found: install it (Debian: apt-get install -y chromium)")
    page = Path(page).resolve()
    probe = page.with_name(f".bookcheck-{page.name}")
    html = page.read_text(encoding="utf-8")
    head, body_end, tail = html.rpartition("</body>")  # the last one: a page may quote the tag
    probe.write_text(head + CHECK_JS + body_end + tail if body_end else html + CHECK_JS, encoding="utf-8")
    host = page.with_name(f".bookcheck-host-{page.name}")
    try:
        url = probe.as_uri()
        if width < MIN_WINDOW:  # Chromium's window is never narrower: the page goes in a frame that is
            host.write_text(HOST.format(src=probe.name, width=width), encoding="utf-8")
            url = host.as_uri()
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={max(width, MIN_WINDOW)},1600",
                                   "--allow-file-access-from-files", "--virtual-time-budget=15000", "--dump-dom", url],
                                  capture_output=True, text=True, timeout=timeout)
    finally:
        probe.unlink(missing_ok=True)
        host.unlink(missing_ok=True)
    m = re.search(r'<pre id="bookcheck"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    if not m or not m.group(1).strip():
        raise RuntimeError(f"{page}: the browser reported nothing (exit {proc.returncode}): {proc.stderr[-500:]}")
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def problems(found: dict) -> list[str]:
    """One line per finding of :func:`check_page`'s record."""
    out = []
    for key, what in (("uncaptioned", "a figure without a caption"), ("leaked", "leaked output"),
                      ("overflow", "a table wider than the page"), ("empty_interactive", "an empty interactive figure"),
                      ("remote", "a script or style from the network")):
        out += [f"{what}: {v}" for v in found.get(key, [])]
    return out


def check_book(html_root, widths=(1280, 420), pages: str = "book/", log=print) -> dict:
    """Check every built page under ``html_root`` whose path contains ``pages``; returns
    ``{(page, width): findings}`` and logs a line per page and width."""
    root = Path(html_root)
    exe = browser()
    if exe is None:
        raise FileNotFoundError("no Chromium found: install it (Debian: apt-get install -y chromium)")
    results = {}
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root).as_posix()
        if pages not in rel or page.name.startswith(".bookcheck-"):
            continue
        for w in widths:
            found = check_page(page, w, exe)
            results[(rel, w)] = found
            bad = problems(found)
            log(f"[bookcheck] {rel} at {w} px: {found['images']} images ({found['captioned']} captioned), "
                f"{found['interactive']} interactive, " + ("ok" if not bad else f"{len(bad)} problems: " + "; ".join(bad)))
    return results


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m redundancy.run.bookcheck", description=__doc__.split("\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html", help="the built book (default: _build/html)")
    ap.add_argument("--widths", nargs="*", type=int, default=[1280, 420])
    ap.add_argument("--pages", default="book/", help="check only pages whose path contains this")
    a = ap.parse_args(argv)
    try:
        results = check_book(a.html, a.widths, a.pages)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = sum(bool(problems(f)) for f in results.values())
    print(f"[bookcheck] {len(results)} page views checked, {bad} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

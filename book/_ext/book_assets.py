"""Sphinx extension: what the built book needs besides its pages, with no network.

- ``plotly.min.js``, copied from the installed ``plotly`` package into the built book's
  ``_static/`` and loaded on every page before the theme's scripts: the notebooks'
  interactive figures (:mod:`redundancy.paper.interactive`) draw with it, offline, and the copy
  is always the installed version's;
- ``redundancy.css`` (beside this file): tables of results that fit the page at a laptop's
  width (smaller type, headers that wrap) and scroll sideways inside their cell on a phone,
  and figures that use the page's width.
"""

from __future__ import annotations

import shutil
from pathlib import Path

JS, CSS = "plotly.min.js", "redundancy.css"


def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / JS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly (see requirements.lock)")
    return path


def _copy(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_plotly_js(), static / JS)
        shutil.copyfile(Path(__file__).with_name(CSS), static / CSS)


def setup(app):
    _plotly_js()  # fail at the start of the build, not at its end
    app.add_js_file(JS, priority=100)  # before require.js and the theme's scripts
    app.add_css_file(CSS, priority=900)  # after the theme's
    app.connect("build-finished", _copy)
    return {"version": "1.1", "parallel_read_safe": True, "parallel_write_safe": True}

"""The book's configuration builds, strictly (warnings are errors) and offline."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed in this environment")
def test_book_builds_strictly(tmp_path):
    """The reference pages (intro, data, methods, API, references) with the repository's own
    configuration; the executed chapters are built by tests/test_notebooks.py from a tiny run."""
    import yaml

    exe = str(Path(sys.executable).parent / "jupyter-book")
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("executed"))
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # the configuration page includes the template
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [c["file"] for part in toc["parts"] for c in part["chapters"] if not c["file"].startswith("book/executed/")]
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": toc["root"],
                                                        "chapters": [{"file": p} for p in pages]}))
    assert {"book/data", "book/config", "book/methods", "book/api", "book/references"} <= set(pages)
    proc = subprocess.run([exe, "build", str(tmp_path), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    assert {"book/intro.html", "book/data.html", "book/methods.html", "book/api.html"} <= pages
    assert "LinearProbe" in (html / "book" / "api.html").read_text()
    assert "Analyzing Redundancy" in (html / "book" / "intro.html").read_text()
    assert "paper_analogue" in (html / "book" / "config.html").read_text()  # the template, included

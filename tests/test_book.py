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
    exe = str(Path(sys.executable).parent / "jupyter-book")
    proc = subprocess.run([exe, "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    assert {"book/intro.html", "book/data.html"} <= pages
    assert "Analyzing Redundancy" in (html / "book" / "intro.html").read_text()

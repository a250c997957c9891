"""The browser check of the built book (redundancy.run.bookcheck) catches each fault it names,
planted one by one into a page, and passes the page without them."""

from __future__ import annotations

import os

import pytest

from redundancy.run.bookcheck import browser, check_page, problems

needs_browser = pytest.mark.skipif(browser() is None and not os.environ.get("CI"),
                                   reason="no Chromium here (apt-get install -y chromium); CI installs it")

GOOD = """<html><head><style>article {{ width: 600px; }}</style>{head}</head><body><main><article class="bd-article">
<p>Some prose with a number, 0.93, a word like warnings in lower case, and <code>nan</code> in prose.</p>
<div class="cell_input"><pre>x = np.nan  # code, shown on demand: not output</pre></div>
<figure><img src="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/%3E">
<figcaption><p>Fig. 1 A caption.</p></figcaption></figure>
<table><tr><td>0.5</td><td>—</td></tr></table>
{extra}
</article></main></body></html>"""

PLANTS = {
    "uncaptioned": '<img src="data:image/svg+xml,%3Csvg xmlns=\'http://www.w3.org/2000/svg\' width=\'10\' height=\'10\'/%3E">',
    "leaked": "<pre>/tmp/ipykernel_123/456.py:3: UserWarning: something</pre>",
    "traceback": "<div class='cell_output'><pre>Traceback (most recent call last):</pre></div>",
    "nan": "<table><tr><td>nan</td></tr></table>",
    "overflow": "<table><tr>" + "<td>a_long_column_header_that_does_not_wrap</td>" * 12 + "</tr></table>",
    "remote": '<script src="https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"></script>',
    "empty_interactive": '<figure><div class="redundancy-interactive" id="x"></div><figcaption>Fig. 2 Interactive.</figcaption></figure>',
}


@needs_browser
def test_a_clean_page_passes(tmp_path):
    page = tmp_path / "good.html"
    page.write_text(GOOD.format(head="", extra=""))
    found = check_page(page, 1280)
    assert found["images"] == 1 and found["captioned"] == 1 and problems(found) == [] and found["width"] == 1280
    # a phone's width is narrower than any headless Chromium window: the page is read in a frame that wide
    phone = check_page(page, 420)
    assert phone["width"] == 420 and phone["images"] == 1 and problems(phone) == []


@needs_browser
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_each_planted_fault_is_caught(tmp_path, plant):
    page = tmp_path / f"{plant}.html"
    page.write_text(GOOD.format(head="", extra=PLANTS[plant]))
    found = check_page(page, 1280)
    key = {"nan": "leaked", "traceback": "leaked"}.get(plant, plant)
    assert found[key], found
    assert len(problems(found)) == 1, problems(found)  # the planted fault, and nothing else


@needs_browser
def test_a_drawn_interactive_figure_passes(tmp_path):
    """An interactive figure drawn with the installed plotly.js, loaded from a file beside the
    page (as the book does, offline): rendered content, no finding."""
    import plotly.graph_objects as go

    from redundancy.paper.interactive import Interactive

    js = os.path.join(os.path.dirname(__import__("plotly").__file__), "package_data", "plotly.min.js")
    (tmp_path / "plotly.min.js").write_bytes(open(js, "rb").read())
    fig = Interactive(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]])), "t")
    extra = f"<figure>{fig.html()}<figcaption>Fig. 2 Interactive.</figcaption></figure>"
    page = tmp_path / "drawn.html"
    page.write_text(GOOD.format(head='<script src="plotly.min.js"></script>', extra=extra))
    found = check_page(page, 1280)
    assert found["interactive"] == 1 and problems(found) == [], found
    # the same page without plotly.js (offline, no network): caught as empty
    (tmp_path / "plotly.min.js").unlink()
    assert check_page(page, 1280)["empty_interactive"]

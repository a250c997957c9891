"""Interactive figures that work in the static book, offline, and in JupyterLab.

Each function returns a :class:`plotly.graph_objects.Figure` built from a section's
precomputed table (no kernel is needed to move a slider or read a value under the mouse).
:func:`Interactive` wraps one for display: JupyterLab renders Plotly's own output type (its
extension ships with the ``plotly`` wheel), the book renders the HTML part, which draws the
figure with the ``plotly.min.js`` that the book's ``book_assets`` extension
(``book/_ext/book_assets.py``) copies from the installed ``plotly`` package into the
built book: the page needs no network. Elsewhere (Colab) the HTML part loads Plotly from
its CDN. The static (matplotlib) figure of the same data stays on the page, for print.

- :func:`ct_slider`: the clustering sweep (Figure 2, Table 6) with a slider over ``c_t``:
  neurons kept and probe score per task;
- :func:`cka_heatmap`: layer-by-layer CKA (Figure 1) with the value under the mouse;
- :func:`minimal_set_curve`: the minimal-set search (section 6.2): score against the number of
  top-ranked neurons, per task, with the target each search had to pass.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

__all__ = ["Interactive", "ct_slider", "cka_heatmap", "minimal_set_curve"]

#: Plotly's options for every figure: no logo, no "edit in chart studio" link, a static PNG button
CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}


class Interactive:
    """A Plotly figure for display: Plotly's output type for JupyterLab, HTML for the book.

    The HTML draws into a ``div`` of class ``redundancy-interactive`` with the page's
    ``window.Plotly``; where there is none (a notebook outside the book) it loads Plotly
    from its CDN first.
    """

    def __init__(self, fig, name: str):
        fig.update_layout(modebar=dict(orientation="v"))  # beside the plot, never over its title
        self.fig, self.name = fig, name

    def html(self) -> str:
        import plotly

        spec = json.dumps(self.fig.to_plotly_json(), cls=plotly.utils.PlotlyJSONEncoder).replace("</", "<\\/")
        div = f"interactive-{self.name}"
        cdn = f"https://cdn.plot.ly/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
        return (f'<div id="{div}" class="redundancy-interactive" style="width:100%;min-height:360px"></div>\n'
                "<script>(function () {\n"
                f"  var spec = {spec}, cfg = {json.dumps(CONFIG)};\n"
                f"  function draw() {{ Plotly.newPlot('{div}', spec.data, spec.layout, cfg).then(function (gd) {{\n"
                "    if (window.ResizeObserver) { new ResizeObserver(function () { Plotly.Plots.resize(gd); }).observe(gd.parentElement); }\n"
                "    window.addEventListener('load', function () { Plotly.Plots.resize(gd); }); }); }\n"
                "  if (window.Plotly) { draw(); } else {\n"
                f"    var s = document.createElement('script'); s.src = '{cdn}'; s.onload = draw;\n"
                "    document.head.appendChild(s); }\n"
                "})();</script>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"application/vnd.plotly.v1+json": {**self.fig.to_plotly_json(), "config": CONFIG},
                "text/html": self.html(), "text/plain": f"<interactive figure {self.name}>"}


def _fmt(v: float) -> str:
    return "—" if v != v else f"{v:.3f}"


def ct_slider(sweep: pd.DataFrame, value: float = 0.3):
    """Neurons kept and probe score per task at each clustering threshold, with a ``c_t`` slider.

    ``sweep`` is :func:`redundancy.paper.sections.section_clustering`'s first table (columns
    ``model``, ``task``, ``threshold``, ``neurons``, ``fraction_kept``, ``test``); the
    probe on all neurons (``c_t = 0``) is drawn as a marker beside each score."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sweep = sweep.assign(pair=sweep.model.astype(str) + " / " + sweep.task.astype(str))
    thresholds = sorted(sweep.threshold.unique())
    base = sweep[sweep.threshold == min(thresholds)].set_index("pair").test
    fig = make_subplots(rows=1, cols=2, subplot_titles=("share of neurons kept", "test score of a probe on them"),
                        horizontal_spacing=0.12)
    active = next((i for i, c in enumerate(thresholds) if np.isclose(c, value)), 0)
    for i, c in enumerate(thresholds):
        g = sweep[np.isclose(sweep.threshold, c)]
        on = i == active
        hover = [f"{p}<br>c_t = {c:g}: {int(n):,} neurons kept ({f:.1%})<br>test {_fmt(t)} (all neurons: {_fmt(base.get(p, np.nan))})"
                 for p, n, f, t in zip(g.pair, g.neurons, g.fraction_kept, g.test)]
        fig.add_trace(go.Bar(x=g.pair, y=g.fraction_kept, name="kept", visible=on, marker_color="#2b8cbe",
                             hovertext=hover, hoverinfo="text", showlegend=False), 1, 1)
        fig.add_trace(go.Bar(x=g.pair, y=g.test, name=f"kept neurons (c_t = {c:g})", visible=on,
                             marker_color="#2b8cbe", hovertext=hover, hoverinfo="text"), 1, 2)
        fig.add_trace(go.Scatter(x=g.pair, y=[base.get(p, np.nan) for p in g.pair], mode="markers", visible=on,
                                 name="all neurons", marker=dict(symbol="line-ew-open", size=22, color="#d95f02",
                                                                 line=dict(width=3)), hoverinfo="skip"), 1, 2)
    per = 3
    steps = [dict(method="update", label=f"{c:g}",
                  args=[{"visible": [k // per == i for k in range(per * len(thresholds))]},
                        {"title.text": f"Correlation clustering at c_t = {c:g}"}]) for i, c in enumerate(thresholds)]
    fig.update_layout(sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix="c_t = "), pad=dict(t=60))],
                      title=dict(text=f"Correlation clustering at c_t = {thresholds[active]:g}", font=dict(size=14)), height=470,
                      margin=dict(l=50, r=20, t=70, b=40), legend=dict(orientation="h", y=1.14, x=1, xanchor="right"))
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[min(0.0, float(np.nanmin(sweep.test))), 1.05], row=1, col=2)
    return fig


def cka_heatmap(matrix, labels, title: str):
    """A CKA matrix with the value of each pair under the mouse (``labels``: the layers' names)."""
    import plotly.graph_objects as go

    M = np.asarray(matrix, dtype=float)
    labels = [str(l) for l in labels]
    text = [[f"{labels[i]} vs {labels[j]}: CKA {M[i, j]:.3f}" for j in range(len(labels))] for i in range(len(labels))]
    fig = go.Figure(go.Heatmap(z=M, x=labels, y=labels, zmin=0, zmax=1, colorscale="Viridis", hovertext=text,
                               hoverinfo="text", colorbar=dict(title="CKA")))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=460, margin=dict(l=50, r=10, t=50, b=40),
                      xaxis=dict(title="layer", scaleanchor="y", constrain="domain"),
                      yaxis=dict(title="layer", autorange="reversed", constrain="domain"))
    return fig


def minimal_set_curve(trials: pd.DataFrame, targets: pd.DataFrame | None = None):
    """The minimal-set search: dev score against the number of top-ranked neurons, one line per
    model and task (``trials``: columns ``model``, ``task``, ``k``, ``dev``, and ``percentage``);
    ``targets`` (``model``, ``task``, ``target``) adds each search's pass mark as a dotted line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for (m, t), g in trials.groupby(["model", "task"], sort=False):
        g = g.sort_values("k")
        fig.add_trace(go.Scatter(
            x=g.k, y=g.dev, mode="lines+markers", name=f"{m} / {t}", legendgroup=f"{m}/{t}",
            hovertext=[f"{m} / {t}<br>top {int(k):,} neurons ({p:.1%}): dev {d:.3f}"
                       for k, p, d in zip(g.k, g.percentage.fillna(np.nan), g.dev)], hoverinfo="text"))
        if targets is not None:
            hit = targets[(targets.model == m) & (targets.task == t)]
            if len(hit):
                tgt = float(hit.target.iloc[0])
                fig.add_trace(go.Scatter(x=[g.k.min(), g.k.max()], y=[tgt, tgt], mode="lines", legendgroup=f"{m}/{t}",
                                         line=dict(dash="dot", width=1), showlegend=False, hoverinfo="text",
                                         hovertext=f"{m} / {t}: the pass mark {tgt:.3f}"))
    fig.update_layout(title=dict(text="Minimal sets: dev score of the top-k neurons", font=dict(size=14)), height=560,
                      xaxis=dict(title="neurons kept (top k by the LCA ranking)", type="log"),
                      yaxis=dict(title="dev score"), margin=dict(l=50, r=10, t=50, b=150),
                      legend=dict(font=dict(size=10), orientation="h", yanchor="top", y=-0.25, x=0))  # below: fits a phone
    return fig

"""The interactive figures: what each slider step, cell and point shows is the table's value."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from redundancy.paper.interactive import Interactive, cka_heatmap, ct_slider, minimal_set_curve


def _sweep():
    rows = []
    for task, n in (("pos", 100), ("sst-2", 100)):
        for c, kept in ((0.0, 1.0), (0.3, 0.5), (0.7, 0.2)):
            rows.append({"model": "m", "task": task, "threshold": c, "neurons": int(n * kept), "fraction_kept": kept,
                         "dev": 0.9 - c / 10, "test": 0.8 - c / 10 + (0.05 if task == "pos" else 0)})
    return pd.DataFrame(rows)


def test_each_slider_step_shows_exactly_its_thresholds_rows():
    sweep = _sweep()
    fig = ct_slider(sweep, value=0.3)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0", "0.3", "0.7"] and fig.layout.sliders[0].active == 1
    for i, (step, c) in enumerate(zip(steps, (0.0, 0.3, 0.7))):
        visible = [t for t, v in zip(fig.data, step.args[0]["visible"]) if v]
        rows = sweep[np.isclose(sweep.threshold, c)]
        kept, score, base = visible
        assert list(kept.y) == list(rows.fraction_kept) and list(score.y) == list(rows.test)
        assert list(base.y) == list(sweep[sweep.threshold == 0].test)  # the probe on all neurons, at every step
        assert f"c_t = {c:g}: {int(rows.neurons.iloc[0]):,} neurons kept" in kept.hovertext[0]
    # what the page shows first is the step the slider starts at
    assert [t.visible for t in fig.data] == steps[1].args[0]["visible"]


def test_cka_heatmap_hover_names_the_pair_and_value():
    M = np.array([[1.0, 0.8], [0.8, 1.0]])
    fig = cka_heatmap(M, [0, 1], "t")
    assert fig.data[0].hovertext[0][1] == "0 vs 1: CKA 0.800" and np.array_equal(np.asarray(fig.data[0].z), M)


def test_minimal_set_curve_is_sorted_by_k_with_the_pass_mark():
    tr = pd.DataFrame({"model": "m", "task": "pos", "k": [50, 5, 20], "percentage": [0.5, 0.05, 0.2],
                       "dev": [0.9, 0.5, 0.8]})
    fig = minimal_set_curve(tr, pd.DataFrame({"model": ["m"], "task": ["pos"], "target": [0.85]}))
    line, mark = fig.data
    assert list(line.x) == [5, 20, 50] and list(line.y) == [0.5, 0.8, 0.9]
    assert list(mark.y) == [0.85, 0.85] and list(mark.x) == [5, 50]


def test_the_html_draws_with_the_page_plotly_and_the_bundle_carries_plotly_json():
    view = Interactive(cka_heatmap(np.eye(2), [0, 1], "t"), "x")
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.plotly.v1+json", "text/html", "text/plain"}
    html = bundle["text/html"]
    assert 'id="interactive-x" class="redundancy-interactive"' in html and "if (window.Plotly) { draw(); }" in html
    spec = json.loads(html.split("var spec = ", 1)[1].split(", cfg = ", 1)[0])
    assert spec["data"][0]["type"] == "heatmap"


def test_a_threshold_that_is_only_close_to_the_value_starts_alone():
    """0.1 + 0.2 is not 0.3 exactly: still exactly one step starts visible, and it is that one."""
    sweep = _sweep()
    sweep.loc[sweep.threshold == 0.3, "threshold"] = 0.1 + 0.2
    fig = ct_slider(sweep, value=0.3)
    assert fig.layout.sliders[0].active == 1
    assert sum(t.visible for t in fig.data) == 3  # kept, score, all-neuron marks of one step


def test_text_in_the_figure_cannot_end_the_page_script():
    from redundancy.paper.interactive import Interactive

    fig = cka_heatmap(np.eye(2), ["</script><b>x", "1"], "t")
    html = Interactive(fig, "x").html()
    assert html.count("</script>") == 1 and "<\\/script>" in html

"""The paper's claims as library code: the outcome rules on known numbers (boundaries and
intervals that straddle a bar), and every claim function on small tables whose answer is
known by construction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from redundancy.paper import claims as C

C_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
from redundancy.paper.verdicts import (DIRECTION, FAILS, HOLDS, INCONCLUSIVE, NOT_TESTABLE, Estimate, Verdict,
                                       decide_direction, decide_size)


# ---- the estimate -------------------------------------------------------------------------------

def test_estimate_is_scipys_t_interval():
    v = [0.91, 0.93, 0.90, 0.95, 0.92]
    e = Estimate.over_seeds(v, [0, 1, 2, 3, 4])
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert e.value == pytest.approx(np.mean(v)) and e.low == pytest.approx(lo) and e.high == pytest.approx(hi)
    assert e.seeds == (0, 1, 2, 3, 4) and "5 seeds" in e.how


def test_one_seed_has_no_interval_and_bad_values_are_refused():
    e = Estimate.over_seeds([0.5], [7])
    assert e.low is None and e.high is None and not e.has_interval and e.bounds() == (0.5, 0.5)
    assert e.seeds == (7,) and "one seed" in e.how
    with pytest.raises(ValueError, match="non-empty"):
        Estimate.over_seeds([])
    with pytest.raises(ValueError, match="finite"):
        Estimate.over_seeds([0.1, float("nan")])
    with pytest.raises(ValueError, match="2 values but 3 seeds"):
        Estimate.over_seeds([0.1, 0.2], [0, 1, 2])


# ---- the outcome rules --------------------------------------------------------------------------

def est(value, low=None, high=None):
    return Estimate(value, low, high, (0,) if low is None else (0, 1, 2), "test")


@pytest.mark.parametrize("e, bar, at_least, weaker, outcome", [
    (est(0.90), 0.90, True, None, HOLDS),                    # the bar met exactly counts as met
    (est(0.8999), 0.90, True, None, FAILS),
    (est(0.92, 0.90, 0.94), 0.90, True, None, HOLDS),        # low end exactly on the bar
    (est(0.92, 0.89, 0.95), 0.90, True, None, INCONCLUSIVE),  # the interval straddles the bar
    (est(0.85, 0.80, 0.899), 0.90, True, None, FAILS),
    (est(0.70, 0.65, 0.75), 0.85, True, 0.5, DIRECTION),     # short of the size, past the direction's bar
    (est(0.52, 0.45, 0.60), 0.85, True, 0.5, INCONCLUSIVE),  # straddles the weaker bar
    (est(0.30, 0.25, 0.35), 0.85, True, 0.5, FAILS),
    (est(0.08), 0.08, False, None, HOLDS),                   # "at most": equal is met
    (est(0.081), 0.08, False, None, FAILS),
    (est(0.05, 0.04, 0.09), 0.08, False, None, INCONCLUSIVE),
    (est(0.05, 0.03, 0.08), 0.08, False, None, HOLDS),
])
def test_decide_size(e, bar, at_least, weaker, outcome):
    got, margin = decide_size(e, bar, at_least, weaker)
    assert got == outcome
    assert margin == pytest.approx((e.value - bar) * (1 if at_least else -1))


@pytest.mark.parametrize("e, size, outcome", [
    (est(0.0), None, FAILS),                   # no effect is not "more"
    (est(1e-9), None, HOLDS),
    (est(-0.2), None, FAILS),
    (est(0.1, -0.01, 0.2), None, INCONCLUSIVE),
    (est(0.1, 0.0, 0.2), None, INCONCLUSIVE),  # the low end on zero: not shown positive
    (est(0.1, 0.05, 0.2), 0.1, INCONCLUSIVE),  # positive, the size straddled
    (est(0.1, 0.05, 0.09), 0.1, DIRECTION),
    (est(0.3, 0.1, 0.5), 0.1, HOLDS),          # low end exactly on the size
    (est(0.3), 0.3, HOLDS),
])
def test_decide_direction(e, size, outcome):
    assert decide_direction(e, size)[0] == outcome


def test_verdict_refuses_unknown_outcomes_and_records_flat():
    with pytest.raises(ValueError, match="unknown outcome"):
        Verdict("x", "c", "p", "s", "crit", "m", "sort of", "r")
    v = Verdict("x", "c", "p", "s", "crit", "m", HOLDS, "r", Estimate.over_seeds([1.0, 2.0], [3, 4]), 0.5,
                details={"a": np.float64(1.5)})
    r = v.record()
    json.dumps(r)
    assert r["seeds"] == [3, 4] and r["ours"] == 1.5 and r["ours_low"] < 1.5 < r["ours_high"]
    assert r["outcome"] == HOLDS and r["details"] == {"a": 1.5}


# ---- the claims, on tables with a known answer ----------------------------------------------------

def sweep_rows(model, tasks, reduction_07, kept_07, seed=None):
    rows = []
    for t in tasks:
        rows.append({"model": model, "task": t, "threshold": 0.0, "fraction_kept": 1.0, "test": 0.9})
        rows.append({"model": model, "task": t, "threshold": 0.7, "fraction_kept": 1 - reduction_07,
                     "test": 0.9 * kept_07})
    df = pd.DataFrame(rows)
    return df if seed is None else df.assign(seed=seed)


def results(**tables):
    return C.Results({k.replace("__", "/"): v for k, v in tables.items()})


def one(verdicts, model):
    (v,) = [v for v in verdicts if v.model == model]
    return v


def test_general_85_per_model_boundary_and_loss():
    bert = 1 - 1488 / 9984  # Table 6's BERT share at c_t = 0.7 (the bar)
    sweep = pd.concat([sweep_rows("at_bar", ["a", "b"], bert, 1.0), sweep_rows("below", ["a"], 0.7, 1.0),
                       sweep_rows("lossy", ["a"], 0.95, 0.95), sweep_rows("few", ["a"], 0.3, 1.0)])
    vs = C.general_85(results(clustering__sweep=sweep))
    assert one(vs, "at_bar").outcome == HOLDS and one(vs, "at_bar").margin == pytest.approx(0, abs=1e-12)
    assert one(vs, "below").outcome == DIRECTION
    assert one(vs, "lossy").outcome == FAILS and "up to 0.0% removed" in one(vs, "lossy").reason
    assert one(vs, "lossy").details["score_kept_at_0.7"] == pytest.approx(0.95)
    assert one(vs, "few").outcome == FAILS


def test_general_85_takes_the_largest_lossless_threshold():
    rows = pd.DataFrame([{"model": "m", "task": "a", "threshold": c, "fraction_kept": f, "test": t}
                         for c, f, t in ((0.0, 1.0, 0.9), (0.5, 0.4, 0.9), (0.6, 0.2, 0.9 * 0.99), (0.7, 0.1, 0.8))])
    (v,) = C.general_85(results(clustering__sweep=rows))
    assert v.ours.value == pytest.approx(0.8) and "c_t = 0.6" in v.reason  # 0.6 keeps exactly 99%: allowed
    assert v.outcome == DIRECTION and C.lossless_reduction(rows.assign(seed=0)) == (pytest.approx(0.8), 0.6)


def test_general_85_interval_straddling_the_bar_is_inconclusive():
    sweep = pd.concat([sweep_rows("m", ["a"], r, 1.0, seed=s) for s, r in enumerate([0.80, 0.90, 0.84, 0.88, 0.86])])
    (v,) = C.general_85(results(clustering__sweep=sweep))
    assert v.outcome == INCONCLUSIVE and v.ours.low < 1 - 1488 / 9984 < v.ours.high and len(v.ours.seeds) == 5


def test_task_specific_92_per_model():
    ms = pd.DataFrame([
        {"model": "big", "task": "a", "neurons": 459, "n_neurons": 9984, "delta": 0.03},
        {"model": "big", "task": "b", "neurons": 20, "n_neurons": 9984, "delta": 0.03},
        {"model": "small", "task": "a", "neurons": 403, "n_neurons": 2688, "delta": 0.03},
        {"model": "edge", "task": "a", "neurons": 80, "n_neurons": 1000, "delta": 0.03},  # exactly 8%
    ])
    vs = C.task_specific_92(results(minimal_sets__minimal_sets=ms))
    assert one(vs, "big").outcome == HOLDS and one(vs, "big").ours.value == pytest.approx(459 / 9984)
    assert one(vs, "small").outcome == FAILS and one(vs, "edge").outcome == HOLDS
    assert "a: 403 neurons" in one(vs, "small").reason


def ls_rows(model, specs, n=1000, seed=None):
    rows = [{"model": model, "task": t, "kind": k, "oracle_test": 0.9, "oracle_neurons": n, "ccfs_neurons": c,
             "ccfs_test": 0.9 * kept, "ls_top_layer": top} for t, k, c, kept, top in specs]
    df = pd.DataFrame(rows)
    return df if seed is None else df.assign(seed=seed)


def test_ccfs_97_10_judges_both_parts_over_seeds():
    # the share straddles 10% over seeds while the score clearly holds: inconclusive, not "does not hold"
    rows = pd.concat([ls_rows("m", [("a", "token", c, 0.99, 1)], seed=s) for s, c in enumerate([90, 105, 95, 99, 102])])
    (v,) = C.ccfs_97_10(results(ls_ccfs__ls_ccfs=rows))
    assert v.outcome == INCONCLUSIVE and v.details["largest_share_low"] < 0.10 < v.details["largest_share_high"]
    rows = pd.concat([ls_rows("m", [("a", "token", c, 0.90, 1)], seed=s) for s, c in enumerate([90, 105, 95])])
    (w,) = C.ccfs_97_10(results(ls_ccfs__ls_ccfs=rows))
    assert w.outcome == FAILS  # the score part fails outright


def test_ccfs_97_10_and_under_100():
    good = ls_rows("good", [("a", "token", 100, 0.97, 1), ("b", "sentence", 50, 0.99, 5),
                            ("c", "sentence", 99, 0.98, 5), ("d", "sentence", 20, 0.975, 5)])
    big = ls_rows("big", [("a", "token", 101, 0.99, 1), ("b", "sentence", 50, 0.99, 5)])
    low = ls_rows("low", [("a", "token", 90, 0.96, 1), ("b", "sentence", 50, 0.99, 5)])
    res = results(ls_ccfs__ls_ccfs=pd.concat([good, big, low]))
    v = C.ccfs_97_10(res)
    assert one(v, "good").outcome == HOLDS and one(v, "good").ours.value == pytest.approx(0.97)  # 97% exactly: met
    assert one(v, "big").outcome == FAILS and "10.1% of the neurons (a; does not hold)" in one(v, "big").reason
    assert one(v, "low").outcome == FAILS
    u = C.under_100(res)
    # "good": b, c, d qualify (a has 100 neurons: not fewer than 100) -> 3 tasks, "several" met exactly
    assert one(u, "good").ours.value == 3 and one(u, "good").outcome == HOLDS
    assert one(u, "big").outcome == DIRECTION and one(u, "big").details["tasks"] == ["b"]


def test_layers_token_sentence_normalises_by_layers_and_judges_direction():
    def lay(model, n_layers, red):
        rows = []
        for task, r in red.items():
            rows.append({"model": model, "task": task, "layer": "oracle", "within_test": True})
            rows += [{"model": model, "task": task, "layer": str(i), "within_test": i >= n_layers - r}
                     for i in range(n_layers)]
        return pd.DataFrame(rows)

    kinds = pd.DataFrame({"model": "x", "task": ["tok", "sen"], "kind": ["token", "sentence"]})
    res = results(layers__layers=pd.concat([lay("big", 13, {"tok": 10, "sen": 2}), lay("some", 7, {"tok": 2, "sen": 1}),
                                            lay("rev", 13, {"tok": 1, "sen": 3})]), ls_ccfs__ls_ccfs=kinds)
    vs = C.layers_token_sentence(res)
    size = C.paper_redundant_layers().set_index(["model", "kind"]).share
    xlnet = size[("XLNet", "labeling")] - size[("XLNet", "classification")]
    assert xlnet == pytest.approx(35 / 4 / 13 - 38 / 7 / 13)   # Table 7: 8.75 vs 5.43 redundant layers of 13
    assert one(vs, "big").outcome == HOLDS and one(vs, "big").ours.value == pytest.approx(8 / 13)
    assert one(vs, "some").outcome == DIRECTION and one(vs, "some").ours.value == pytest.approx(1 / 7)
    assert one(vs, "rev").outcome == FAILS


def test_neighbouring_94_uses_token_tasks_and_leaves_out_singletons():
    mk = pd.DataFrame([
        {"model": "m", "task": "tok", "window": "1", "share": 0.5}, {"model": "m", "task": "tok", "window": "2", "share": 0.45},
        {"model": "m", "task": "tok", "window": "3", "share": 0.05},
        {"model": "m", "task": "sen", "window": "1", "share": 0.1}, {"model": "m", "task": "sen", "window": "2", "share": 0.1},
        {"model": "m", "task": "sen", "window": "5", "share": 0.8},
    ])
    kinds = pd.DataFrame({"model": "m", "task": ["tok", "sen"], "kind": ["token", "sentence"]})
    (v,) = C.neighbouring_94(results(clustering__makeup=mk, ls_ccfs__ls_ccfs=kinds))
    assert v.outcome == HOLDS and v.ours.value == pytest.approx(0.95)
    assert v.details["with_all_tasks"] == pytest.approx((0.95 + 0.2) / 2)
    (w,) = C.neighbouring_94(results(clustering__makeup=mk, ls_ccfs__ls_ccfs=kinds), kinds=("sentence",))
    assert w.outcome == FAILS


def test_adjacent_layers():
    def cka(model, M):
        L = len(M)
        return pd.DataFrame([{"model": model, "layer_i": i, "layer_j": j, "cka": M[i][j]} for i in range(L) for j in range(L)])

    good = [[1, .9, .5, .4, .3], [.9, 1, .85, .5, .4], [.5, .85, 1, .7, .5], [.4, .5, .7, 1, .6], [.3, .4, .5, .6, 1]]
    far = [row[:] for row in good]
    far[0][3] = far[3][0] = 0.95  # layer 0's nearest is layer 3
    vs = C.adjacent_layers(results(cka__cka=pd.concat([cka("good", good), cka("far", far)])))
    g = one(vs, "good")
    assert g.outcome == HOLDS and g.ours.value == pytest.approx((0.9 + 0.85) / 2 - (0.7 + 0.6) / 2)
    assert one(vs, "far").outcome == FAILS


def test_ls_speedup():
    fw = pd.DataFrame({"model": "m", "layers": [1, 2, 6], "speedup": [6.0, 3.0, 1.0]})
    lc = ls_rows("m", [("a", "token", 10, 1, 1), ("b", "token", 10, 1, 2), ("c", "sentence", 10, 1, 6)])
    (v,) = C.ls_speedup(results(ls_ccfs__ls_ccfs=lc, timing__forward=fw))
    assert v.outcome == HOLDS and v.details == {"token": 4.5, "sentence": 1.0}
    fw2 = fw.assign(speedup=[2.0, 1.5, 1.0])
    (w,) = C.ls_speedup(results(ls_ccfs__ls_ccfs=lc, timing__forward=fw2))
    assert w.outcome == DIRECTION  # labeling faster, but 1.75x < 2.8x


def test_missing_tables_are_not_testable_and_judge_covers_every_claim():
    res = results(minimal_sets__minimal_sets=pd.DataFrame({"model": ["m"], "task": ["a"], "neurons": [5],
                                                           "n_neurons": [100], "delta": [0.03]}))
    vs = C.judge(res)
    assert {v.claim_id for v in vs} == {fn.__name__ for fn in C.CLAIMS}
    by = {v.claim_id: v.outcome for v in vs}
    assert by["task_specific_92"] == HOLDS
    assert all(o == NOT_TESTABLE for k, o in by.items() if k != "task_specific_92")
    t = C.verdict_table(vs)
    assert list(t.columns[:5]) == ["claim", "paper", "source", "criterion", "model"] and len(t) == len(vs)


def test_results_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        C.Results.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no results tables"):
        C.Results.load(tmp_path)


# ---- seeds end to end: a tiny run, every seeded section, the verdicts read the seed tables --------

def test_seeded_sections_write_seed_tables_and_verdicts_read_them(tmp_path, tiny_run):
    import yaml

    from redundancy.paper import sections as S

    cfg = yaml.safe_load(tiny_run.read_text())
    one_seed = S.Study({**cfg, "name": "one"}, progress=False)
    three = S.Study({**cfg, "name": "three", "seeds": [0, 5, 9]}, progress=False)
    assert one_seed.seeds == [0] and three.seeds == [0, 5, 9] and three.seed == 0
    # a single name given as text (papermill -p models NAME) is one model, not a list of letters
    assert S.Study({**cfg, "name": "one"}, models=cfg["models"][0], tasks="pos", progress=False).tasks == ["pos"]
    for st in (one_seed, three):
        S.section_clustering(st, thresholds=[0.0, 0.5])
        S.section_layers(st)
        S.section_minimal_sets(st, grid=[0.1, 0.5, 1.0])
        S.section_ls_ccfs(st, grid=[0.1, 0.5, 1.0])
    for section, name in (("clustering", "sweep"), ("layers", "layers"), ("minimal_sets", "minimal_sets"),
                          ("ls_ccfs", "ls_ccfs")):
        first = pd.read_csv(one_seed.results / section / f"{name}.csv")
        # the first seed's table is the single-seed run's, byte for byte
        assert (three.results / section / f"{name}.csv").read_bytes() == (one_seed.results / section / f"{name}.csv").read_bytes()
        assert not (one_seed.results / section / f"{name}_seeds.csv").exists()
        seeded = pd.read_csv(three.results / section / f"{name}_seeds.csv")
        assert sorted(seeded.seed.unique()) == [0, 5, 9] and len(seeded) == 3 * len(first)
        pd.testing.assert_frame_equal(seeded[seeded.seed == 0].drop(columns="seed").reset_index(drop=True), first,
                                      check_dtype=False)
    # seeds change the probes: the oracle's dev score differs between some seeds
    lay = pd.read_csv(three.results / "layers" / "layers_seeds.csv")
    assert lay[lay.layer == "oracle"].groupby(["model", "task"]).dev.nunique().max() > 1
    res = C.Results.load(three.results)
    (v,) = C.task_specific_92(res)
    assert v.ours.seeds == (0, 5, 9) and v.ours.has_interval and "3 seeds" in v.ours.how
    with pytest.raises(ValueError, match="distinct integers"):
        S.Study({**cfg, "seeds": [1, 1]})
    # standardized probes: a sensitivity run beside the run's own results, never over them
    z = S.Study({**cfg, "name": "three", "seeds": [0, 5, 9]}, progress=False, standardize=True)
    assert z.name == "three-standardized" and z.evaluator(*z.pairs()[0]).standardize
    assert not three.evaluator(*three.pairs()[0]).standardize
    # a fine-tuning seed of the run: its own results folder and fine-tunes
    ft = S.Study({**cfg, "name": "three", "finetune_seeds": {cfg["models"][0]: [1, 7]}}, progress=False, finetune_seed=7)
    assert ft.name == "three-ft7" and ft.cfg["finetune"]["seed"] == 7
    with pytest.raises(ValueError, match="not among"):
        S.Study({**cfg, "name": "three"}, finetune_seed=8)


def test_paper_inconsistencies_are_recomputed_from_its_tables():
    from redundancy.paper.inconsistencies import inconsistencies, table3_header, table6_average, table6_xlnet_average

    x = table6_xlnet_average()
    assert x[0.3]["printed"] == x[0.3]["labeling"] == pytest.approx(3640.75)   # the printed row = labeling only
    assert x[0.7]["printed"] == x[0.7]["labeling"] == pytest.approx(830)
    assert round(x[0.3]["all"]) == 5194 and round(x[0.7]["all"]) == 1514 and x[0.7]["n_tasks"] == 11
    assert x["reduction_all_0.7"] == pytest.approx(1 - 1514.4545 / 9984, abs=1e-4)
    assert x["accuracy_printed"] == pytest.approx(x["accuracy_all"], abs=5e-4)  # accuracy: every task
    t = table3_header()
    assert t["first_pair_bert_oracle"] == pytest.approx(t["table9_labeling_mean"], abs=5e-4)
    avg = table6_average()
    bert = avg[(avg.model == "BERT") & (avg.threshold.round(2) == 0.7)]
    assert bert.neurons.iloc[0] == pytest.approx(1488, abs=1)   # BERT's printed average is the all-task mean
    assert (avg[avg.threshold == 0].fraction_kept == 1).all()
    inc = inconsistencies()
    assert len(inc) >= 6 and inc["its own numbers give"].str.len().min() > 20
    assert "5,194" in inc.iloc[0]["its own numbers give"] and "85% removed" in inc.iloc[0]["its own numbers give"]


def test_of_study_and_outcome_text(tmp_path):
    class FakeStudy:
        results = tmp_path
        cfg = {"models": ["m"], "finetune": {"epochs": 3, "batch_size": 8}}
        tasks = ["a"]

        def kind(self, t):
            return "token"

    (tmp_path / "minimal_sets").mkdir()
    pd.DataFrame({"model": ["m"], "task": ["a"], "neurons": [5], "n_neurons": [100], "delta": [0.03]}).to_csv(
        tmp_path / "minimal_sets" / "minimal_sets.csv", index=False)
    res = C.Results.of_study(FakeStudy(), ["minimal_sets/minimal_sets"])
    assert res.kinds == {"a": "token"} and res.budget["m"].startswith("3 epochs over the whole")
    v = C.task_specific_92(res)
    assert C.outcome_text(v) == "holds for m"
    with pytest.raises(FileNotFoundError, match="run the section"):
        C.Results.of_study(FakeStudy(), ["layers/layers"])


def test_compare_verdicts_and_budget_table():
    small = ls_rows("m", [("a", "token", 100, 0.99, 1), ("s", "sentence", 300, 0.90, 5)], n=1000)
    paper = ls_rows("m", [("a", "token", 100, 0.99, 1), ("s", "sentence", 50, 0.99, 5)], n=1000)
    ra, rb = results(ls_ccfs__ls_ccfs=small), results(ls_ccfs__ls_ccfs=paper)
    cmp = C.compare_verdicts(C.ccfs_97_10(ra), C.ccfs_97_10(rb))
    assert cmp.loc[0, "before"] == FAILS and cmp.loc[0, "after"] == HOLDS and bool(cmp.loc[0, "changed"])
    small = small.assign(ls_layers=[2, 6]); paper = paper.assign(ls_layers=[2, 3])
    bt = C.budget_table(results(ls_ccfs__ls_ccfs=small), results(ls_ccfs__ls_ccfs=paper))
    assert list(bt.task) == ["s"]  # sentence tasks only
    assert bt.loc[0, "small budget: ccfs_neurons"] == 300 and bt.loc[0, "paper's recipe: ccfs_neurons"] == 50
    assert bt.loc[0, "paper's recipe: ls_layers"] == 3


def test_verdict_html_has_every_claim_in_full_and_escapes():
    res = C.Results.load(C_ROOT / "data" / "paper-scale" / "results")
    vs = C.judge(res)
    page = C.verdict_html(vs)
    for v in vs:
        assert v.claim.replace("'", "&#x27;") in page and f"<strong>{v.outcome}</strong>" in page
    assert page.count("<tr>") == len(vs) + 1 and "table-layout:fixed" in page
    assert "&lt;" in page or "<=" not in page  # criteria with '<=' are escaped
    assert C.outcome_counts(vs).startswith("mpnet: ")  # the paper-scale model leads


def test_finetune_seed_results_fold_into_the_replicates(tmp_path):
    """Replicate i takes its sentence-task rows from fine-tune i mod 3; token rows stay."""
    def write(folder, rows):
        (folder / "minimal_sets").mkdir(parents=True)
        pd.DataFrame(rows).to_csv(folder / "minimal_sets" / "minimal_sets_seeds.csv", index=False)

    base = [{"model": "m", "task": t, "kind": k, "neurons": n, "n_neurons": 1000, "delta": 0.03, "seed": s}
            for s in range(5) for t, k, n in (("tok", "token", 10 + s), ("sen", "sentence", 20 + s))]
    write(tmp_path / "run", base)
    for ft, add in ((43, 100), (44, 200)):
        write(tmp_path / f"run-ft{ft}", [{**r, "neurons": r["neurons"] + add} for r in base if r["task"] == "sen"])
    res = C.Results.load(tmp_path / "run", budget={})
    t = res.get("minimal_sets/minimal_sets").set_index(["seed", "task"]).neurons
    assert [t[(s, "sen")] for s in range(5)] == [20, 121, 222, 23, 124]   # 42, 43, 44, 42, 43
    assert [t[(s, "tok")] for s in range(5)] == [10, 11, 12, 13, 14]
    assert res.finetune_of_seed == {1: 43, 2: 44, 4: 43}


def test_publishing_at_a_new_budget_keeps_the_earlier_publication(tmp_path):
    from redundancy.run.publish import keep_earlier_budget

    dest = tmp_path / "paper-scale"
    (dest / "results").mkdir(parents=True)
    (dest / "provenance.json").write_text(json.dumps({"config": {"finetune": {"epochs": 1, "max_train": 1500}}}))
    assert keep_earlier_budget(dest, {"finetune": {"epochs": 1, "max_train": 1500}}, log=lambda *a: None) is None
    kept = keep_earlier_budget(dest, {"finetune": {"epochs": 3}}, log=lambda *a: None)
    assert kept == tmp_path / "paper-scale-1epoch" and (kept / "results").is_dir() and not dest.exists()
    (dest / "results").mkdir(parents=True)
    (dest / "provenance.json").write_text(json.dumps({"config": {"finetune": {"epochs": 1}}}))
    with pytest.raises(FileExistsError, match="exists"):
        keep_earlier_budget(dest, {"finetune": {"epochs": 3}}, log=lambda *a: None)

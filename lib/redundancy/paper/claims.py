"""The paper's claims, each a function from results tables to one :class:`Verdict` per model.

Every function takes a :class:`Results` (the tables a run writes under
``data/results/<run>/``, or the published ``data/paper-scale/results/``) and returns a list
of verdicts, one per model. A table may carry a ``seed`` column: each seed's number is
computed on its own rows and the verdict rests on the mean over seeds with its 95% interval
(:class:`~redundancy.paper.verdicts.Estimate`); a table without one is a single seed.

The criteria are the paper's words made precise; each function's docstring says how, and
the text goes into the verdict, so the book prints exactly the rule that was applied:

======================  =====================================================  ==============
claim id                the paper                                              where
======================  =====================================================  ==============
adjacent_layers         adjacent layers are most redundant, lower more so      Fig. 1, §5.1
general_85              up to 85% of neurons redundant in general (c_t = 0.7)  Table 6, §5.2
neighbouring_94         up to 94% of neuron redundancy in same/next layers     Fig. 3, §5.2
layers_token_sentence   layers more redundant for core-language tasks          Table 7, §6.1
task_specific_92        at least 92% of neurons redundant w.r.t. a task        Tables 1-2, 8
xlnet_vs_bert           XLNet is more redundant than BERT                      §5-6
distillation            keep lower layers, prune higher ones aggressively      §8
ccfs_97_10              97% of performance with at most 10% of the neurons     abstract, T. 9-10
under_100               < 100 neurons keep > 97% for several tasks             §1, Tables 9-10
ls_speedup              LayerSelector speed-up 2.8x / 6.2x (labeling)          §7.2, Figs 10-11
======================  =====================================================  ==============
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import paper_table
from .verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_TESTABLE, Estimate, Verdict, decide_direction, decide_size

#: the relative drop from the unclustered score that counts as "very little loss" (the paper's
#: 1% of LayerSelector and CCFS, used for c_t too)
LITTLE_LOSS = 0.01


@dataclass
class Results:
    """The results tables of one run, by name (``"clustering/sweep"`` -> DataFrame), with the
    number of neurons of each model and each task's kind. Missing tables are simply absent:
    a claim that needs one is *not testable here*."""

    tables: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)   # model -> the fine-tuning budget, in words
    kinds: dict = field(default_factory=dict)    # task -> "token" or "sentence"

    def __post_init__(self):
        for t in self.tables.values():  # tables that name each task's kind
            if {"task", "kind"} <= set(t.columns):
                for task, kind in zip(t.task, t.kind):
                    self.kinds.setdefault(task, kind)

    @classmethod
    def of_study(cls, study, names) -> Results:
        """The tables ``names`` (``"clustering/sweep"``, ...) of a :class:`~redundancy.paper.sections.Study`,
        each seed's rows where the study had several, with the study's task kinds and budget:
        what a chapter needs to judge the claims of its own section."""
        tables = {}
        for name in names:
            for n in (name, f"{name}_seeds"):
                f = study.results / f"{n}.csv"
                if f.exists():
                    tables[n] = pd.read_csv(f)
            if name not in tables:
                raise FileNotFoundError(f"{study.results / name}.csv not found: run the section that writes it first")
        return cls(tables, run_budget(study.cfg), {t: study.kind(t) for t in study.tasks})

    @classmethod
    def load(cls, folder, budget: dict | None = None) -> Results:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"results folder {folder} not found: run the notebooks of a run first "
                                    "(or point at the published data/paper-scale/results)")
        tables = {}
        for f in sorted(folder.glob("*/*.csv")):
            tables[f"{f.parent.name}/{f.stem}"] = pd.read_csv(f)
        if not tables:
            raise FileNotFoundError(f"{folder} holds no results tables (<section>/<table>.csv)")
        if budget is None:
            budget = run_budget(run_config(folder))
        res = cls(tables, dict(budget))
        extra = sorted(folder.parent.glob(f"{folder.name}-ft*"), key=lambda p: p.name)
        if extra:
            res.merge_finetune_seeds([cls.load(f, budget={}) for f in extra], [int(f.name.rsplit("-ft", 1)[1])
                                                                              for f in extra])
        return res

    def merge_finetune_seeds(self, others: list, ft_seeds: list) -> None:
        """Fold the results of the run's other fine-tuning seeds (``Study(finetune_seed=...)``,
        folders ``<results>-ft<seed>``) into the seeded tables: replicate ``i`` (the ``i``-th probe
        seed) takes its sentence-task rows from fine-tune ``i mod (1 + len(others))`` (0: the run's
        own), so each replicate draws both a probe seed and a fine-tuning seed; token tasks, which
        are not fine-tuned, keep the run's rows. A replicate whose fine-tune has no rows for that
        probe seed keeps the run's. ``finetune_of_seed`` records which fine-tune each seed used."""
        self.finetune_of_seed = {}
        for name in {n[:-len("_seeds")] for n in self.tables if n.endswith("_seeds")}:
            main = self.get(name)
            if "task" not in main.columns:
                continue
            seeds = sorted(main.seed.unique())
            parts = []
            for i, sd in enumerate(seeds):
                j = i % (1 + len(others))
                rows = main[main.seed == sd]
                alt = others[j - 1].get(name) if j else None
                alt = None if alt is None else alt[(alt.seed == sd) & (alt.task.map(self.kinds) == "sentence")]
                if alt is not None and len(alt):
                    rows = pd.concat([rows[rows.task.map(self.kinds) != "sentence"], alt[rows.columns.intersection(
                        alt.columns)]], ignore_index=True)
                    self.finetune_of_seed[int(sd)] = ft_seeds[j - 1]
                parts.append(rows)
            self.tables[f"{name}_seeds"] = pd.concat(parts, ignore_index=True)

    def get(self, name: str) -> pd.DataFrame | None:
        """A table with a ``seed`` column: every seed's rows (``<name>_seeds``) where the run had
        several, else the one table as seed 0."""
        t = self.tables.get(f"{name}_seeds", self.tables.get(name))
        if t is None:
            return None
        return t if "seed" in t.columns else t.assign(seed=0)

    def models(self) -> list[str]:
        """The models of the tables, the largest (most neurons) first: the paper-scale answer
        leads."""
        seen, size = [], {}
        for name, t in self.tables.items():
            if "model" in t.columns and not name.startswith("timing/"):
                seen += [m for m in t.model.unique() if m not in seen]
            for col in ("n_neurons", "oracle_neurons"):
                if col in t.columns and "model" in t.columns:
                    size.update(t.groupby("model")[col].max().to_dict())
        return sorted(seen, key=lambda m: -size.get(m, 0))


def run_config(folder) -> dict:
    """The run configuration that produced a results folder: from the published
    ``provenance.json`` beside it, or the run's own ``activations.json`` in it ({} if neither)."""
    import json

    folder = Path(folder)
    for f, key in ((folder.parent / "provenance.json", "config"), (folder / "activations.json", "config")):
        try:
            return json.loads(f.read_text()).get(key) or {}
        except (OSError, ValueError):
            continue
    return {}


def budget_words(ft: dict | None) -> str:
    """A fine-tuning budget in words: ``{epochs: 1, max_train: 1500, batch_size: 32}`` ->
    '1 epoch over at most 1,500 training sentences, batch 32, lr 5e-05'."""
    ft = ft or {}
    from ..representations.finetune import FineTuneConfig

    d = FineTuneConfig()
    e = float(ft.get("epochs", d.epochs))
    n = ft.get("max_train", d.max_train)
    over = "the whole (capped) training split" if n is None else f"at most {int(n):,} training sentences"
    return (f"{e:g} epoch{'s' if e != 1 else ''} over {over}, batch {int(ft.get('batch_size', d.batch_size))}, "
            f"lr {float(ft.get('learning_rate', d.learning_rate)):g}")


def run_budget(cfg: dict) -> dict:
    """model -> the fine-tuning budget of its sentence-task results, in words (with its seeds)."""
    if not cfg.get("models"):
        return {}
    from ..representations.runs import finetune_seeds

    words = budget_words(cfg.get("finetune"))
    return {m: f"{words}; fine-tuning seed {finetune_seeds(cfg, m)[0]}" for m in cfg["models"]}


#: the embedded models and what they are (``redundancy.representations.models`` aliases)
EMBEDDED = {"minilm": ("all-MiniLM-L6-v2", 2688), "mpnet": ("all-mpnet-base-v2", 9984)}


def run_context(cfg: dict) -> str:
    """One paragraph for a chapter: which models a run uses and what they are, and the
    fine-tuning budget of its sentence tasks beside the paper's."""
    parts = []
    for m in cfg.get("models", []):
        if m in EMBEDDED:
            name, n = EMBEDDED[m]
            parts.append(f"{m} ({name}, {n:,} neurons: a sentence-embedding fine-tune, not a raw pre-trained model)")
        else:
            parts.append(f"{m} (as given)")
    return (f"{'Model' if len(parts) == 1 else 'Models'}: {'; '.join(parts) or '-'}; the paper's are raw pre-trained "
            f"BERT-base and XLNet-base (9,984 neurons each). Sentence tasks use the [CLS] vector of a model fine-tuned "
            f"on the task: {budget_words(cfg.get('finetune'))} (the paper: run_glue's defaults, 3 epochs over all of "
            "train, batch 8, lr 5e-5).")


def _per_seed(df: pd.DataFrame, fn) -> Estimate:
    """Apply ``fn`` to each seed's rows and summarise the per-seed values."""
    seeds, values = [], []
    for s, g in df.groupby("seed", sort=True):
        v = fn(g)
        if v is not None and np.isfinite(v):
            seeds.append(int(s)), values.append(float(v))
    if not values:
        raise ValueError("no seed gave a finite value")
    return Estimate.over_seeds(values, seeds)


def _untestable(cid, claim, paper, source, criterion, model, reason) -> Verdict:
    return Verdict(cid, claim, paper, source, criterion, model, NOT_TESTABLE, reason)


def _by_model(res: Results, name: str, out: list, untestable):
    """Yield ``(model, rows)`` of table ``name`` for every model; a model without rows gets
    ``untestable(model)`` (a *not testable* verdict) appended to ``out`` instead."""
    table = res.get(name)
    for model in res.models():
        rows = None if table is None else table[table.model == model]
        if rows is None or not len(rows):
            out.append(untestable(model))
            continue
        yield model, rows


# ---- general redundancy -----------------------------------------------------------------------

def adjacent_layers(res: Results) -> list[Verdict]:
    """"Adjacent layers are most redundant in the network, with lower layers having greater
    redundancy with adjacent layers" (Figure 1, section 5.1).

    Criterion: for every layer, the most similar other layer (linear CKA) is an adjacent one,
    and the mean CKA of adjacent pairs in the lower half exceeds that of the upper half. The
    number judged is that difference (lower minus upper); a model where some layer's nearest
    layer is not adjacent fails. Figure 1 is a picture: there is no paper number to match."""
    cid, claim = "adjacent_layers", ("Adjacent layers are most redundant in the network, with lower layers having "
                                     "greater redundancy with adjacent layers")
    crit = ("every layer's most similar layer (linear CKA) is adjacent, and adjacent pairs are more similar in the "
            "lower half than in the upper half (lower-half mean minus upper-half mean > 0)")
    cka = res.get("cka/cka")
    out = []
    for model in res.models():
        if cka is None or not (cka.model == model).any():
            out.append(_untestable(cid, claim, "qualitative", "Figure 1", crit, model, "no CKA table for this model"))
            continue
        rows = cka[cka.model == model]

        def stats(g):
            M = g.pivot_table(index="layer_i", columns="layer_j", values="cka").to_numpy()
            L = len(M)
            adj = np.array([M[i, i + 1] for i in range(L - 1)])
            half = (L - 1) // 2
            nearest_adjacent = all(int(np.argmax(np.where(np.arange(L) == i, -np.inf, M[i]))) in (i - 1, i + 1)
                                   for i in range(L))
            return adj[:half].mean() - adj[half:].mean(), nearest_adjacent, adj

        diffs = {int(s): stats(g) for s, g in rows.groupby("seed")}
        est = Estimate.over_seeds([d[0] for d in diffs.values()], list(diffs))
        if len(diffs) == 1:  # CKA has no random step: one number, no seeds
            est = Estimate(est.value, None, None, (), "deterministic: CKA has no random step")
        if not all(d[1] for d in diffs.values()):
            outcome, margin = "does not hold", est.value
            reason = "some layer's most similar layer is not adjacent to it"
        else:
            outcome, margin = decide_direction(est)
            reason = (f"every layer's nearest layer is adjacent; adjacent CKA is {est.text()} higher in the lower "
                      "half than in the upper half")
        adj = next(iter(diffs.values()))[2]
        out.append(Verdict(cid, claim, "qualitative (a picture)", "Figure 1, §5.1", crit, model, outcome, reason, est,
                           margin, details={"adjacent_cka": adj.round(4).tolist()}))
    return out


def _lossless_reduction(g: pd.DataFrame, threshold: float | None) -> tuple[float, float]:
    """(mean reduction, mean kept share of the unclustered test score) over a seed's tasks, at
    ``threshold``."""
    base = g[g.threshold == 0].set_index("task").test
    at = g[np.isclose(g.threshold, threshold)].set_index("task")
    kept = (at.test / base.reindex(at.index)).mean()
    return float((1 - at.fraction_kept).mean()), float(kept)


def lossless_reduction(g: pd.DataFrame, loss: float = LITTLE_LOSS) -> tuple[float, float]:
    """(largest mean reduction, its c_t) over a seed's sweep among thresholds whose mean test
    score keeps at least ``1 - loss`` of the unclustered one; (0, 0) when none does."""
    best = (0.0, 0.0)
    for c in sorted(set(g.threshold) - {0.0}):
        red, kept = _lossless_reduction(g, c)
        if kept >= 1 - loss and red > best[0]:
            best = (red, float(c))
    return best


def general_85(res: Results) -> list[Verdict]:
    """"Up to 85% of the neurons across the network are redundant in general" (section 1;
    Table 6: at c_t = 0.7, BERT keeps 1,488 of 9,984 neurons, 85% fewer, "without any loss in
    accuracy").

    "Up to" names the most that can go: the number judged is the largest share of neurons
    removed, averaged over tasks, at any c_t of the sweep whose mean test score keeps at least
    99% of the unclustered one ("very little loss"). Criterion: it reaches BERT's share (read
    from Table 6); a majority (>= 50%) but less *holds in direction only*. The share and score
    at the paper's c_t = 0.7 are reported beside it."""
    cid, claim = "general_85", "Up to 85% of the neurons across the network are redundant in general"
    p6 = paper_table("table6_clustering")
    avg = p6[(p6.task == "Average") & np.isclose(p6.threshold, 0.7)].set_index("model").neurons
    full = float(p6[(p6.task == "Average") & (p6.threshold == 0)].neurons.iloc[0])
    bert, xlnet = 1 - avg["BERT"] / full, 1 - avg["XLNet"] / full
    paper = (f"{bert:.0%} (BERT), {xlnet:.0%} (XLNet; its Average row counts only the labeling tasks) removed at "
             "c_t = 0.7")
    crit = (f"largest mean share of neurons removed at any c_t whose mean test score keeps >= {1 - LITTLE_LOSS:.0%} "
            f"of the unclustered one: >= {bert:.1%} (Table 6, BERT); >= 50%: direction only")
    sweep = res.get("clustering/sweep")
    out = []
    for model in res.models():
        rows = None if sweep is None else sweep[sweep.model == model]
        if rows is None or not len(rows) or not (rows.threshold > 0).any():
            out.append(_untestable(cid, claim, paper, "Table 6, §5.2", crit, model, "no clustering sweep"))
            continue
        est = _per_seed(rows, lambda g: lossless_reduction(g)[0])
        at_c = [lossless_reduction(g)[1] for _, g in rows.groupby("seed")]
        outcome, margin = decide_size(est, bert, at_least=True, weaker=0.5)
        reason = (f"up to {est.text('{:.1%}')} removed with at most {LITTLE_LOSS:.0%} loss (at c_t = "
                  f"{', '.join(sorted({f'{c:g}' for c in at_c}))})")
        details = {}
        if np.isclose(rows.threshold, 0.7).any():
            red7 = _per_seed(rows, lambda g: _lossless_reduction(g, 0.7)[0])
            kept7 = _per_seed(rows, lambda g: _lossless_reduction(g, 0.7)[1])
            reason += f"; at c_t = 0.7: {red7.value:.1%} removed, {kept7.value:.1%} of the score kept"
            details = {"removed_at_0.7": red7.value, "score_kept_at_0.7": kept7.value}
        out.append(Verdict(cid, claim, paper, "Table 6, §5.2", crit, model, outcome, reason, est, margin,
                           budget=res.budget.get(model), details=details))
    return out


def neighbouring_share(makeup: pd.DataFrame, windows=("1", "2")) -> float:
    """Share of multi-neuron clusters that lie within one layer or two neighbouring layers,
    averaged over the tasks of ``makeup`` (``clustering/makeup``: one row per task and layer
    window, singletons excluded from ``share``)."""
    m = makeup[np.isfinite(makeup.share)]
    near = m[m.window.astype(str).isin(windows)].groupby("task").share.sum()
    return float(near.mean()) if len(near) else float("nan")


def neighbouring_94(res: Results, kinds=("token",)) -> list[Verdict]:
    """"Up to 94% of neuron-level redundancy is exhibited within the same or neighbouring
    layers" (section 1; Figure 3, section 5.2, BERT and XLNet on POS tokens).

    Criterion: of the clusters with two or more neurons at c_t = 0.3, the share within one
    layer or two neighbouring layers reaches 94%, averaged over token tasks (the paper's
    Figure 3 is on tokens); a majority (>= 50%) but less is *holds in direction only*.
    Singletons are left out: a cluster of one neuron is not redundancy."""
    cid, claim = "neighbouring_94", "Up to 94% of neuron-level redundancy is exhibited within the same or neighbouring layers"
    crit = ("share of multi-neuron clusters (c_t = 0.3) within one or two neighbouring layers, mean over "
            f"{'/'.join(kinds)} tasks, >= 94%; >= 50%: direction only")
    makeup = res.get("clustering/makeup")
    kinds_of = res.kinds
    out = []
    for model in res.models():
        rows = None if makeup is None else makeup[(makeup.model == model)
                                                  & makeup.task.map(kinds_of).isin(kinds)]
        if rows is None or not len(rows):
            out.append(_untestable(cid, claim, "94%", "Figure 3, §5.2", crit, model,
                                   f"no cluster makeup for {'/'.join(kinds)} tasks"))
            continue
        est = _per_seed(rows, neighbouring_share)
        if len(est.seeds) == 1:  # the clusters do not depend on the seed (only their representatives do)
            est = Estimate(est.value, None, None, (), "deterministic: the clustering has no random step")
        outcome, margin = decide_size(est, 0.94, at_least=True, weaker=0.5)
        out.append(Verdict(cid, claim, "94%", "Figure 3, §5.2", crit, model, outcome,
                           f"{est.text('{:.1%}')} of multi-neuron clusters lie within one or two neighbouring layers",
                           est, margin, details={"with_all_tasks": neighbouring_share(makeup[makeup.model == model])}))
    return out


# ---- task-specific redundancy -----------------------------------------------------------------

def paper_redundant_layers() -> pd.DataFrame:
    """Table 7: per model, the mean number of layers within 1% of the oracle (bold), for
    labeling and for classification tasks, and as a share of the 13 layers."""
    p7 = paper_table("table7_layers")
    t9 = paper_table("table9_10_ls_ccfs")
    kind = dict(zip(t9.task, t9.kind))
    layers = p7[~p7.layer.isin(["oracle", "one_percent_loss"])]
    n = layers.groupby(["model", "task"]).bold.agg(["sum", "size"]).reset_index()
    n["kind"] = n.task.map(kind)
    g = n.groupby(["model", "kind"]).agg(redundant=("sum", "mean"), layers=("size", "first")).reset_index()
    g["share"] = g.redundant / g.layers
    return g


def layers_token_sentence(res: Results) -> list[Verdict]:
    """"Layers in a network are more redundant w.r.t. core language tasks such as learning
    morphology as compared to sequence-level tasks" (section 1; Table 7, section 6.1).

    A layer is redundant for a task when its probe's test score is within 1% of the oracle's
    (the paper's bold entries). The number judged is the mean share of the model's layers
    that are redundant for token tasks minus that for sentence tasks (shares, so models of 7
    and 13 layers compare). Positive: the direction holds; at least the paper's smaller
    difference (XLNet's, read from Table 7): the claim holds in size too."""
    cid, claim = "layers_token_sentence", ("Layers are more redundant w.r.t. core language tasks (labeling) than "
                                           "w.r.t. sequence-level tasks")
    pr = paper_redundant_layers().set_index(["model", "kind"])
    diffs = {m: pr.loc[(m, "labeling"), "share"] - pr.loc[(m, "classification"), "share"] for m in ("BERT", "XLNet")}
    size = min(diffs.values())
    paper = "; ".join(f"{m}: {pr.loc[(m, 'labeling'), 'redundant']:.2f} vs {pr.loc[(m, 'classification'), 'redundant']:.2f}"
                      f" of 13 layers" for m in ("BERT", "XLNet"))
    crit = (f"mean share of layers within 1% of the oracle (test), token tasks minus sentence tasks: > 0 (direction), "
            f">= {size:.3f} (XLNet's difference in Table 7) in size")
    lay = res.get("layers/layers")
    kinds = res.kinds
    out = []
    for model in res.models():
        rows = None if lay is None else lay[(lay.model == model) & (lay.layer.astype(str) != "oracle")]
        if rows is None or not len(rows) or len({kinds.get(t) for t in rows.task} & {"token", "sentence"}) < 2:
            out.append(_untestable(cid, claim, paper, "Table 7, §6.1", crit, model,
                                   "needs layer probes on both token and sentence tasks"))
            continue

        def diff(g):
            n_layers = g.layer.nunique()
            share = g.groupby("task").within_test.sum() / n_layers
            k = share.index.map(kinds)
            return float(share[k == "token"].mean() - share[k == "sentence"].mean())

        est = _per_seed(rows, diff)
        tok = rows[rows.task.map(kinds) == "token"].groupby(["seed", "task"]).within_test.sum().mean()
        sen = rows[rows.task.map(kinds) == "sentence"].groupby(["seed", "task"]).within_test.sum().mean()
        outcome, margin = decide_direction(est, size)
        out.append(Verdict(cid, claim, paper, "Table 7, §6.1", crit, model, outcome,
                           f"{tok:.2f} redundant layers on token tasks vs {sen:.2f} on sentence tasks, of "
                           f"{rows.layer.nunique()}: a share difference of {est.text()}", est, margin,
                           budget=res.budget.get(model), details={"token": tok, "sentence": sen}))
    return out


def task_specific_92(res: Results) -> list[Verdict]:
    """"At least 92% of the neurons are redundant with respect to a downstream task and can be
    pruned without any loss in task-specific performance" (section 1; Tables 1, 2, 8).

    Criterion: for every task, the minimal neuron set (LCA ranking, the smallest top-k whose
    dev score reaches 97% of the oracle's, the paper's text) takes at most 8% of all the
    model's neurons. The number judged is the largest minimal share over tasks."""
    cid, claim = "task_specific_92", "At least 92% of the neurons are redundant with respect to a downstream task"
    crit = "the largest minimal-set size over tasks, as a share of all neurons, <= 8%"
    out = []
    for model, rows in _by_model(res, "minimal_sets/minimal_sets", out, lambda m: _untestable(
            cid, claim, ">= 92%", "Tables 1, 2, 8; §6.2", crit, m, "no minimal sets")):
        est = _per_seed(rows, lambda g: float((g.neurons / g.n_neurons).max()))
        worst = rows.assign(share=rows.neurons / rows.n_neurons).sort_values("share").iloc[-1]
        outcome, margin = decide_size(est, 0.08, at_least=False)
        out.append(Verdict(cid, claim, ">= 92% (largest BERT/XLNet set: 750 of 9,984)", "Tables 1, 2, 8; §6.2", crit,
                           model, outcome, f"the largest minimal set takes {est.text('{:.1%}')} of "
                           f"{int(worst.n_neurons)} neurons ({worst.task}: {int(worst.neurons)} neurons)",
                           est, margin, int(worst.n_neurons), res.budget.get(model),
                           {"delta": float(rows.delta.iloc[0]) if "delta" in rows else None}))
    return out


def xlnet_vs_bert(res: Results) -> list[Verdict]:
    """"Comparing models, XLNet is more redundant than BERT" (section 1). Neither model is
    available offline, so the claim is *not testable here*; the verdict states the same
    comparison between the models we have, by the size-free measures (share of neurons
    removed at c_t = 0.7, and largest minimal-set share)."""
    cid, claim = "xlnet_vs_bert", "Comparing models, XLNet is more redundant than BERT"
    crit = "needs XLNet and BERT"
    sweep, ms = res.get("clustering/sweep"), res.get("minimal_sets/minimal_sets")
    comp = {}
    for model in res.models():
        c = {}
        if sweep is not None and (sweep.model == model).any():
            c["removed_at_0.7"] = _lossless_reduction(sweep[sweep.model == model], 0.7)[0]
        if ms is not None and (ms.model == model).any():
            g = ms[ms.model == model]
            c["largest_minimal_share"] = float((g.neurons / g.n_neurons).max())
        comp[model] = c
    said = "; ".join(f"{m}: " + ", ".join(f"{k} {v:.1%}" for k, v in c.items()) for m, c in comp.items() if c)
    return [Verdict(cid, claim, "XLNet 92% vs BERT 85% removed at c_t = 0.7", "Table 6; §5.2, §6", crit, "all models",
                    NOT_TESTABLE, "no XLNet or BERT checkpoint is available offline; between our models: " + said,
                    details=comp)]


def distillation(res: Results) -> list[Verdict]:
    """"Our analysis guides research in model distillation and suggests preserving knowledge
    of lower layers and aggressive pruning of higher-layers" (section 1): a recommendation."""
    return [Verdict("distillation", "The analysis suggests preserving lower layers and pruning higher layers "
                    "aggressively in distillation", "a recommendation", "§1, §8", "none: it is advice, not a measurement",
                    "all models", NOT_TESTABLE, "a recommendation; no measurement of the paper states it")]


# ---- efficient transfer: LayerSelector + CCFS -------------------------------------------------

def ccfs_97_10(res: Results) -> list[Verdict]:
    """"[The procedure] maintains 97% performance while using at-most 10% of the original
    neurons" (abstract; Tables 9-10).

    Criterion: for every task, CCFS keeps at most 10% of the model's neurons and its test score
    is at least 97% of the oracle's. Two numbers are judged, each over seeds: the largest CCFS
    share over tasks (<= 10%) and the smallest kept share of the oracle's test score (>= 97%,
    the number shown). Both met: holds; either missed: does not hold; else inconclusive."""
    cid, claim = "ccfs_97_10", "97% of performance while using at most 10% of the original neurons"
    crit = "every task: CCFS neurons <= 10% of the model's, and CCFS test score >= 97% of the oracle's"
    out = []
    for model, rows in _by_model(res, "ls_ccfs/ls_ccfs", out, lambda m: _untestable(
            cid, claim, "97%, <= 10%", "abstract; Tables 9-10", crit, m, "no LS+CCFS table")):
        share = _per_seed(rows, lambda g: float((g.ccfs_neurons / g.oracle_neurons).max()))
        kept = _per_seed(rows, lambda g: float((g.ccfs_test / g.oracle_test).min()))
        o_share, _ = decide_size(share, 0.10, at_least=False)
        o_kept, margin = decide_size(kept, 0.97, at_least=True)
        outcome = (FAILS if FAILS in (o_share, o_kept) else HOLDS if o_share == o_kept == HOLDS else INCONCLUSIVE)
        worst = rows.assign(kept=rows.ccfs_test / rows.oracle_test).sort_values("kept").iloc[0]
        big = rows.assign(share=rows.ccfs_neurons / rows.oracle_neurons).sort_values("share").iloc[-1]
        reason = (f"the largest CCFS set takes {share.text('{:.1%}')} of the neurons ({big.task}; {o_share}); the "
                  f"lowest kept share of the oracle's test score is {kept.text('{:.1%}')} ({worst.task}; {o_kept})")
        out.append(Verdict(cid, claim, "97%, <= 10% of neurons", "abstract; Tables 9-10", crit, model, outcome, reason,
                           kept, margin, int(rows.oracle_neurons.iloc[0]), res.budget.get(model),
                           {"largest_share": share.value, "largest_share_low": share.low,
                            "largest_share_high": share.high}))
    return out


def under_100(res: Results, several: int = 3) -> list[Verdict]:
    """"One can reduce the feature set to less than 100 neurons for several tasks while
    maintaining more than 97% of the performance" (section 1).

    "Several" is taken as at least ``several`` (3) tasks. Criterion: the number of tasks whose
    CCFS set has fewer than 100 neurons and a test score above 97% of the oracle's is at least
    3. The paper's own count (Table 10, BERT) is 5 of 7 classification tasks."""
    cid, claim = "under_100", "Fewer than 100 neurons keep more than 97% of the performance for several tasks"
    crit = f"number of tasks with CCFS < 100 neurons and test score > 97% of the oracle's >= {several}"
    out = []
    for model, rows in _by_model(res, "ls_ccfs/ls_ccfs", out, lambda m: _untestable(
            cid, claim, "several tasks", "§1; Tables 9-10", crit, m, "no LS+CCFS table")):
        ok = lambda g: g[(g.ccfs_neurons < 100) & (g.ccfs_test > 0.97 * g.oracle_test)]  # noqa: E731
        est = _per_seed(rows, lambda g: float(len(ok(g))))
        outcome, margin = decide_size(est, several, at_least=True, weaker=1)
        which = sorted(ok(rows).task.unique())
        out.append(Verdict(cid, claim, "several tasks (BERT: 5 of 7 classification tasks)", "§1; Table 10", crit, model,
                           outcome, f"{est.text('{:.1f}')} of {rows.task.nunique()} tasks qualify"
                           + (f" ({', '.join(which)})" if which else ""), est, margin,
                           int(rows.oracle_neurons.iloc[0]), res.budget.get(model), {"tasks": which}))
    return out


def ls_speedup(res: Results) -> list[Verdict]:
    """"Using LS leads to an average speed up of 2.8x and 6.2x with BERT and XLNet respectively
    for sequence labeling tasks" and 1.1x / 1.6x for classification (section 7.2).

    A task's speed-up is the full forward pass's time over the time of the forward pass
    through the layers LayerSelector keeps (``timing/forward``, the same machine and batch).
    Criterion: labeling tasks speed up more than classification tasks (direction), and their
    mean speed-up reaches BERT's 2.8x (size)."""
    cid, claim = "ls_speedup", "LayerSelector speeds up sequence labeling more than classification: 2.8x (BERT), 6.2x (XLNet)"
    crit = "mean LS speed-up, token tasks minus sentence tasks, > 0 (direction); token-task mean >= 2.8x (size)"
    lc, fw = res.get("ls_ccfs/ls_ccfs"), res.get("timing/forward")
    out = []
    for model in res.models():
        rows = None if lc is None else lc[lc.model == model]
        f = None if fw is None else fw[fw.model == model]
        if rows is None or f is None or not len(rows) or not len(f) or rows.kind.nunique() < 2:
            out.append(_untestable(cid, claim, "2.8x / 6.2x labeling; 1.1x / 1.6x classification", "§7.2", crit, model,
                                   "needs LS on token and sentence tasks and forward timings"))
            continue
        speed = f.drop_duplicates("layers").set_index("layers").speedup
        per_task = rows.assign(speedup=rows.ls_top_layer.map(speed))
        tok = per_task[per_task.kind == "token"].groupby("seed").speedup.mean()
        sen = per_task[per_task.kind == "sentence"].groupby("seed").speedup.mean()
        est = Estimate.over_seeds((tok - sen).to_numpy(), tok.index)
        outcome, margin = decide_direction(est)
        if outcome == "holds" and tok.mean() < 2.8:
            outcome = "holds in direction only"
        out.append(Verdict(cid, claim, "2.8x / 6.2x labeling; 1.1x / 1.6x classification", "§7.2 (Figs 10-11 captions "
                           "say 'near 2x' for classification)", crit, model, outcome,
                           f"mean speed-up {tok.mean():.2f}x on token tasks, {sen.mean():.2f}x on sentence tasks",
                           est, margin, budget=res.budget.get(model),
                           details={"token": float(tok.mean()), "sentence": float(sen.mean())}))
    return out


#: every claim, in the order of the paper's introduction
CLAIMS = (adjacent_layers, general_85, neighbouring_94, layers_token_sentence, task_specific_92, xlnet_vs_bert,
          distillation, ccfs_97_10, under_100, ls_speedup)


def judge(res: Results) -> list[Verdict]:
    """Every claim's verdicts on ``res``."""
    return [v for fn in CLAIMS for v in fn(res)]


def outcome_text(verdicts) -> str:
    """The outcomes of one claim's verdicts in a few words, per model: 'holds for mpnet;
    does not hold for minilm'."""
    return "; ".join(f"{v.outcome} for {v.model}" for v in verdicts) or "not judged"


def _md(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _ours(v: Verdict) -> str:
    if v.ours is None:
        return "-"
    n = len(v.ours.seeds)
    return v.ours.text("{:.3g}") + (f" ({n} seeds)" if n > 1 else " (1 seed)" if n else " (deterministic)")


def verdict_html(verdicts) -> str:
    """The verdicts as a table for reading (HTML, text wrapped in fixed columns): the claim in
    full with the paper's value, where it is and the criterion, once per claim; then per model
    ours with its 95% interval, the margin, and the outcome with its reason."""
    from .pages import html_table

    rows, last = [], None
    for v in verdicts:
        first = v.claim_id != last
        last = v.claim_id
        rows.append({"claim (the paper's value; where) and criterion":
                     f"**{v.claim}** ({v.paper_value}; {v.source}). Criterion: {v.criterion}" if first else "",
                     "model": v.model, "ours [95% interval]": _ours(v),
                     "margin": "-" if v.margin is None else f"{v.margin:+.3g}",
                     "outcome: why": f"**{v.outcome}**: {v.reason}"})
    return html_table(pd.DataFrame(rows), widths=[36, 8, 14, 9, 33],
                      markdown_cols=("claim (the paper's value; where) and criterion", "outcome: why"))


def outcome_counts(verdicts) -> str:
    """'mpnet: 4 hold, 1 holds in direction only, 2 do not hold; minilm: ...' (models in order of
    appearance; the claims judged for all models together are left out)."""
    plural = {"holds": "hold", "holds in direction only": "hold in direction only", "does not hold": "do not hold",
              "inconclusive": "inconclusive", "not testable here": "not testable here"}
    by = {}
    for v in verdicts:
        if v.model != "all models":
            by.setdefault(v.model, []).append(v.outcome)
    parts = []
    for m, outs in by.items():
        counts = [(o, outs.count(o)) for o in plural if outs.count(o)]
        parts.append(f"{m}: " + ", ".join(f"{n} {o if n == 1 else plural[o]}" for o, n in counts))
    return "; ".join(parts) or "no verdicts"


def verdict_prose(verdicts) -> str:
    """The verdicts as paragraphs (Markdown): per claim, the paper's words, value and source, the
    rule, and each model's outcome with its number, interval and margin."""
    out, groups = [], {}
    for v in verdicts:
        groups.setdefault(v.claim_id, []).append(v)
    for vs in groups.values():
        v0 = vs[0]
        text = f"**{_md(v0.claim)}** (the paper: {_md(v0.paper_value)}; {_md(v0.source)}). Rule: {_md(v0.criterion)}."
        for v in vs:
            num = "" if v.ours is None else f" Ours: {_ours(v)}" + ("" if v.margin is None else f", margin {v.margin:+.3g}")
            text += f" *{_md(v.model)}*: **{v.outcome}**: {_md(v.reason)}." + (num + "." if num else "")
        out.append(text)
    return "\n\n".join(out)


def verdict_text(verdicts) -> str:
    """The verdicts for a terminal: one block per claim and model."""
    lines = []
    for v in verdicts:
        lines.append(f"[{v.outcome}] {v.model}: {v.claim}")
        lines.append(f"    paper: {v.paper_value} ({v.source})")
        lines.append(f"    criterion: {v.criterion}")
        ours = "-" if v.ours is None else f"{v.ours.text('{:.4g}')} ({v.ours.how}, seeds {list(v.ours.seeds)})"
        margin = "" if v.margin is None else f"; margin {v.margin:+.4g}"
        lines.append(f"    ours: {ours}{margin}")
        lines.append(f"    why: {v.reason}")
        if v.budget:
            lines.append(f"    sentence tasks fine-tuned: {v.budget}")
    return "\n".join(lines)


def verdict_table(verdicts) -> pd.DataFrame:
    """The verdicts as a table for reading: one row per claim and model."""
    rows = []
    for v in verdicts:
        rows.append({"claim": v.claim, "paper": v.paper_value, "source": v.source, "criterion": v.criterion,
                     "model": v.model, "ours": "-" if v.ours is None else v.ours.text("{:.3g}"),
                     "seeds": "-" if v.ours is None else len(v.ours.seeds),
                     "margin": "-" if v.margin is None else f"{v.margin:+.3g}", "outcome": v.outcome,
                     "reasoning": v.reason})
    return pd.DataFrame(rows)


def compare_verdicts(a, b, labels=("before", "after")) -> pd.DataFrame:
    """Two sets of verdicts side by side (claim, model, outcome under each, changed): which
    verdicts a change of budget, seeds or data moves."""
    key = lambda v: (v.claim_id, v.model)  # noqa: E731
    A, B = {key(v): v for v in a}, {key(v): v for v in b}
    rows = []
    for k in list(dict.fromkeys([*A, *B])):
        va, vb = A.get(k), B.get(k)
        v = va or vb
        rows.append({"claim": v.claim, "model": v.model,
                     labels[0]: va.outcome if va else "-", f"{labels[0]}: ours": _ours(va) if va else "-",
                     labels[1]: vb.outcome if vb else "-", f"{labels[1]}: ours": _ours(vb) if vb else "-",
                     "changed": (va.outcome if va else None) != (vb.outcome if vb else None)})
    return pd.DataFrame(rows)


def budget_table(a: Results, b: Results, labels=("small budget", "paper's recipe")) -> pd.DataFrame:
    """Every sentence task under two fine-tuning budgets side by side, per model: the oracle's
    test score, the LayerSelector layers, the minimal set and the CCFS set (mean over seeds)."""
    def numbers(res):
        out = {}
        for name, cols in (("ls_ccfs/ls_ccfs", ["oracle_test", "ls_layers", "ccfs_neurons", "ccfs_test"]),
                           ("minimal_sets/minimal_sets", ["neurons"])):
            t = res.get(name)
            if t is None:
                continue
            t = t[t.task.map(res.kinds) == "sentence"]
            for (m, task), g in t.groupby(["model", "task"]):
                out.setdefault((m, task), {}).update({c: float(g[c].mean()) for c in cols})
        return out

    A, B = numbers(a), numbers(b)
    rows = []
    for k in sorted(set(A) | set(B)):
        r = {"model": k[0], "task": k[1]}
        for lab, src in zip(labels, (A, B)):
            for c, v in src.get(k, {}).items():
                r[f"{lab}: {c.replace('neurons', 'minimal k') if c == 'neurons' else c}"] = v
        rows.append(r)
    return pd.DataFrame(rows)

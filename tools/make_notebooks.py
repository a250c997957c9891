"""Writes notebooks/0*.ipynb from the cell sources below (run once; then edit the notebooks or this file)."""
import nbformat as nbf
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "notebooks"

INSTALL = '''# Outside the project's environment (Colab, a bare kernel)? Install the library from the clone this
# notebook sits in; nothing happens when it is already installed.
import importlib.util, pathlib, subprocess, sys
if importlib.util.find_spec("redundancy") is None:
    root = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]
                 if (p / "pyproject.toml").exists() and (p / "lib" / "redundancy").exists()), None)
    if root is None:
        raise SystemExit("Clone the repository and open this notebook from its notebooks/ folder "
                         "(in Colab: !git clone <repository URL> && %cd <clone>/notebooks)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(root)], check=True)'''

COMMON_PARAMS = '''config = "../configs/default.yml"  # a run of models x tasks, see configs/, or your own YAML file
models = None   # a subset of the run models as a list; None uses all
tasks = None    # a subset of the run tasks as a list; None uses all
seed = 0        # seeds every probe and every random pick
seeds = None    # probe seeds for intervals, a list (None: the config's `seeds`); the first is `seed`
standardize = None  # True: z-score every neuron before probing, results under <run>-standardized (None: the config's)
finetune_seed = None  # one of the run's finetune_seeds for the sentence tasks, results under <run>-ft<seed> (None: the first)
device = "cpu"  # cuda to extract on a GPU'''

SETUP = '''import numpy as np, pandas as pd, matplotlib.pyplot as plt, seaborn as sns
from IPython.display import display, Markdown, HTML
from redundancy import study as S
from redundancy.study import Study
from redundancy.notebook import glue, paper_table, plot_style, pct
from redundancy.paper import claims as C
import transformers; transformers.logging.set_verbosity_error(); transformers.utils.logging.disable_progress_bar()
plot_style()
pd.set_option("display.precision", 3)
study = Study(config, models=models, tasks=tasks, seed=seed, seeds=seeds, standardize=standardize,
              finetune_seed=finetune_seed, device=device, progress=False)
import warnings
with warnings.catch_warnings():  # data notes (e.g. test labels unseen in train) are in the data chapter
    warnings.simplefilter("ignore", UserWarning)
    study.ensure()  # activations from the cache (extracted on the first run)
print(f"run {study.name!r}: models {study.models}, tasks {study.tasks}, probe seeds {study.seeds}")
glue("run_context", C.run_context(study.cfg))'''

ANALOGUE = '''# The paper's task closest to each of ours (None: no analogue). Penn Treebank POS is the paper's own
# POS data; the embedded sentiment tasks stand in for SST-2 (binary) and, by metric only, STS-B.
ANALOGUE = {"ptb-pos": "POS", "oanc-pos": "POS", "pos": "POS", "sem": "SEM", "ccg": "CCG", "chunking": "Chunking",
            "sst-2": "SST-2", "sentiment": "SST-2", "polarity": "SST-2", "mrpc": "MRPC", "mnli": "MNLI",
            "qnli": "QNLI", "qqp": "QQP", "rte": "RTE", "sts-b": "STS-B", "sentiment-score": "STS-B"}'''


def md(s, tags=()):
    c = nbf.v4.new_markdown_cell(s.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def code(s, tags=()):
    c = nbf.v4.new_code_cell(s.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


LIGHT_SETUP = '''import numpy as np, pandas as pd, matplotlib.pyplot as plt, seaborn as sns
from IPython.display import display, Markdown, HTML
from redundancy.notebook import glue, paper_table, plot_style, pct
from redundancy.paper import claims as C
plot_style()
pd.set_option("display.precision", 3)'''


def check_cell(params_source):
    """The first lines of the set-up cell: papermill's parameters checked against the defaults."""
    import ast

    defaults = {}
    for node in ast.parse(params_source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return ("from redundancy.notebook import check_parameters\n"
            f"check_parameters(globals(), {defaults!r})  # a misspelt or mistyped parameter stops here\n")


def notebook(name, title, intro, params, cells, setup=True):
    nb = nbf.v4.new_notebook()
    all_params = COMMON_PARAMS + ("\n" + params.strip() if params.strip() else "")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [md(f"# {title}\n\n{intro.strip()}"), code(INSTALL, ["remove-cell"]),
                code(all_params, ["parameters", "hide-input"]),
                code(check_cell(all_params) + (SETUP if setup else LIGHT_SETUP), ["hide-input"]),
                *([md("{glue:text}`run_context`")] if setup else []), *cells]
    for i, c in enumerate(nb.cells):  # stable ids: regenerating an unchanged notebook changes nothing
        c.id = f"{name[:2]}-{i:02d}"
    nbf.write(nb, OUT / f"{name}.ipynb")


# ---------------------------------------------------------------------------------------------
notebook("01_data", "Data and activations (paper §3–4)", """
Every analysis in this book reads word-level (or sentence-level) activations of every layer,
extracted once and cached. This chapter lists the tasks of the run, their sizes beside the
paper's Tables 4 and 5, and the activation sets the other chapters use.
""", "", [
    code('''stats = pd.read_csv(study.results / "task_statistics.csv")
acts = pd.DataFrame(study.index["entries"])[["model", "task", "split", "rows", "layers", "hidden"]]
acts["neurons"] = acts.layers * acts.hidden
glue("n_models", len(study.models)); glue("n_tasks", len(study.tasks)); glue("n_sets", len(acts))
glue("max_neurons", int(acts.neurons.max()))
tok = stats[stats.unit == "tokens"]
glue("max_token_train", int(tok.train.max()) if len(tok) else 0)
stats''', ["hide-input"]),
    md('''The run has {glue:text}`n_models` model(s) and {glue:text}`n_tasks` task(s), giving
{glue:text}`n_sets` stored activation sets of up to {glue:text}`max_neurons` neurons per row.
The paper trains its labeling probes on the first 150,000 tokens of each task (Table 4 below);
the largest token-level training set here has {glue:text}`max_token_train` tokens. The
embedded data are smaller than the paper's, and every comparison in this book says so.'''),
    code('''fig, ax = plt.subplots(figsize=(8, 3.2))
long = stats.melt(id_vars=["task", "unit"], value_vars=["train", "dev", "test"], var_name="split", value_name="size")
sns.barplot(data=long, x="task", y="size", hue="split", ax=ax)
ax.set_yscale("log"); ax.set_ylabel("tokens or sentences (log)"); ax.set_xlabel("")
ax.set_title("Size of every split (tokens for labeling tasks, sentences for classification)")
plt.show()''', ["hide-input"]),
    md("The paper's data (Tables 4 and 5), for comparison:"),
    code('''display(paper_table("table4_token_data")); display(paper_table("table5_sentence_data"))''', ["hide-input"]),
    md("The activation sets (rows × layers × hidden) of this run:"),
    code('''acts''', ["hide-input"]),
])

# ---------------------------------------------------------------------------------------------
notebook("02_cka", "Layer-level general redundancy: CKA (paper §5.1, Figure 1)", """
Linear CKA between the token representations of every pair of layers. The paper computes it on
the Penn Treebank development set for BERT and XLNet (Figure 1) and finds adjacent layers most
similar, lower layers more so.
""", '''general_task = None  # the task whose activations are compared; None picks the first token-level task
max_rows = None      # use only the first rows; None uses all
debiased = False     # the debiased CKA estimator of Kornblith et al. 2019''', [
    code('''cka = S.section_cka(study, task=general_task, max_rows=max_rows, debiased=debiased)
models_ = cka.model.unique()
fig, axes = plt.subplots(1, len(models_), figsize=(4.8 * len(models_), 4), squeeze=False)
for ax, m in zip(axes[0], models_):
    M = cka[cka.model == m].pivot(index="layer_i", columns="layer_j", values="cka")
    sns.heatmap(M, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=len(M) <= 13, fmt=".2f", square=True,
                cbar_kws={"label": "linear CKA"})
    ax.set_title(f"{m} ({cka[cka.model == m].task.iloc[0]}, {cka[cka.model == m].rows.iloc[0]} tokens)")
    ax.set_xlabel("layer (0 = embeddings)"); ax.set_ylabel("layer")
plt.show()''', ["hide-input"]),
    code('''rows = []
for m in models_:
    M = cka[cka.model == m].pivot(index="layer_i", columns="layer_j", values="cka").to_numpy()
    L = len(M)
    adj = np.array([M[i, i + 1] for i in range(L - 1)])
    far = np.array([np.mean([M[i, j] for j in range(L) if abs(i - j) > 1]) for i in range(L)])
    half = (L - 1) // 2
    rows.append({"model": m, "adjacent_mean": adj.mean(), "adjacent_min": adj.min(),
                 "adjacent_lower_half": adj[:half].mean(), "adjacent_upper_half": adj[half:].mean(),
                 "nonadjacent_mean": np.mean([M[i, j] for i in range(L) for j in range(L) if abs(i - j) > 1]),
                 "adjacent_is_max": all(np.argmax(np.where(np.arange(L) == i, -1, M[i])) in (i - 1, i + 1) for i in range(L))})
summary = pd.DataFrame(rows)
s0 = summary.iloc[0]
glue("cka_model", s0.model); glue("cka_adj_mean", s0.adjacent_mean); glue("cka_adj_min", s0.adjacent_min)
glue("cka_nonadj_mean", s0.nonadjacent_mean); glue("cka_lower", s0.adjacent_lower_half); glue("cka_upper", s0.adjacent_upper_half)
V = C.adjacent_layers(C.Results.of_study(study, ["cka/cka"]))  # the claim's rule: redundancy.paper.claims
glue("cka_claim", C.outcome_text(V))
summary''', ["hide-input"]),
    md('''For {glue:text}`cka_model`, adjacent layers have a mean CKA of {glue:text}`cka_adj_mean:.3f`
(lowest pair {glue:text}`cka_adj_min:.3f`), against {glue:text}`cka_nonadj_mean:.3f` for layers
further apart. Adjacent pairs in the lower half of the network average {glue:text}`cka_lower:.3f`,
in the upper half {glue:text}`cka_upper:.3f`. The paper's first claim ("adjacent layers are most
redundant, with lower layers having greater redundancy with adjacent layers", BERT and XLNet on
PTB, Figure 1) therefore **{glue:text}`cka_claim`** on this run's model(s) and data. The paper's
Figure 1 is given only as a picture, so the comparison is qualitative.'''),
])

# ---------------------------------------------------------------------------------------------
notebook("03_clustering", "Neuron-level general redundancy: correlation clustering (paper §5.2)", """
Neurons whose activations are highly correlated (distance `1 − |corr|`, average linkage, cut at
`c_t`) are clustered, and one random neuron per cluster is kept. A probe on the kept neurons
shows how much each task loses (Figure 2, Table 6). The makeup of the clusters at `c_t = 0.3`
tells whether redundant neurons sit in the same or in neighbouring layers (Figure 3).
""", '''thresholds = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # the c_t sweep; 0 keeps all neurons
makeup_threshold = 0.3''', [
    code('''sweep, makeup = S.section_clustering(study, thresholds=thresholds, makeup_threshold=makeup_threshold)
avg = sweep.groupby(["model", "threshold"], as_index=False)[["fraction_kept", "test"]].mean()
from redundancy.paper.inconsistencies import table6_average
p6 = table6_average()  # the mean over all 11 tasks (XLNet's printed Average row counts its neurons over 4 only)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for m, g in avg.groupby("model"):
    axes[0].plot(g.threshold, g.fraction_kept, "o-", label=f"{m} (ours)")
    axes[1].plot(g.threshold, g.test, "o-", label=f"{m} (ours)")
for m, g in p6.groupby("model"):
    axes[0].plot(g.threshold, g.fraction_kept, "s--", alpha=.6, label=f"{m} (paper, Table 6, all 11 tasks)")
    axes[1].plot(g.threshold, g.accuracy, "s--", alpha=.6, label=f"{m} (paper, Table 6, all 11 tasks)")
axes[0].set(xlabel="clustering threshold c_t", ylabel="fraction of neurons kept", title="Neurons kept (average over tasks)")
axes[1].set(xlabel="clustering threshold c_t", ylabel="test score", title="Probe score on kept neurons (average)")
axes[0].legend(fontsize=8); plt.show()''', ["hide-input"]),
    code('''at7 = sweep[np.isclose(sweep.threshold, 0.7)]
base = sweep[sweep.threshold == 0].set_index(["model", "task"]).test
r7 = at7.set_index(["model", "task"])
red7 = float((1 - r7.fraction_kept).mean()); loss7 = float((base - r7.test).mean())
glue("cc_red07", red7); glue("cc_loss07", loss7)
res = C.Results.of_study(study, ["clustering/sweep", "clustering/makeup"])  # the rules: redundancy.paper.claims
V85, V94 = C.general_85(res), C.neighbouring_94(res)
glue("cc_claim85", C.outcome_text(V85)); glue("cc_claim94", C.outcome_text(V94))
glue("cc_crit85", V85[0].criterion); glue("cc_crit94", V94[0].criterion)
glue("cc_why94", "; ".join(f"{v.model}: {v.reason}" for v in V94))
sweep.pivot_table(index="threshold", columns=["model", "task"], values=["neurons", "test"]).round(3)''', ["hide-input"]),
    md('''At `c_t = 0.7` the clustering removes {glue:text}`cc_red07:.1%` of the neurons on average
over this run's tasks, with a mean test-score loss of {glue:text}`cc_loss07:.3f` against the
probe on all neurons. The paper (Table 6, BERT and XLNet, 9,984 neurons, 150k-token and GLUE
data) reports about 85% of neurons removed at 0.7 with under a point lost on average: here the
claim "up to 85% of the neurons are redundant" **{glue:text}`cc_claim85`**. The rule
(`redundancy.paper.claims.general_85`): {glue:text}`cc_crit85`.'''),
    code('''g = sns.catplot(data=makeup, x="window", y="share", hue="task", col="model", kind="bar", height=3.4, aspect=1.5)
g.set_axis_labels("layers spanned by a cluster", "share of multi-neuron clusters"); plt.show()''', ["hide-input"]),
    code('''# Figure 3 three ways: token tasks only (the paper's case), every task, and singletons counted
from redundancy.paper.claims import neighbouring_share
rows = []
for m, g in makeup.groupby("model"):
    tok = g[g.task.map(study.kind) == "token"]
    rows.append({"model": m, "token tasks, singletons left out": neighbouring_share(tok) if len(tok) else np.nan,
                 "every task, singletons left out": neighbouring_share(g),
                 "every task, singletons counted": neighbouring_share(g.assign(share=g.share_with_singletons))})
display(pd.DataFrame(rows).style.format({c: "{:.1%}" for c in rows[0] if c != "model"}, na_rep="-").hide(axis="index"))''', ["hide-input"]),
    md('''Figure 3's analogue, and the same share three ways: a sentence task's clusters come from its
fine-tuned `[CLS]` vectors, a different thing from the paper's token-level Figure 3, and a
"cluster" of one neuron is no redundancy at all, so the verdict uses token tasks with singletons
left out ({glue:text}`cc_why94`). The paper finds about 95% for BERT and XLNet, so its claim
"up to 94% of neuron-level redundancy is exhibited within the same or neighbouring layers"
**{glue:text}`cc_claim94`** on this run (rule: {glue:text}`cc_crit94`). A model whose
residual stream carries the same unit through all layers (as MiniLM's does) clusters a unit
with itself across many layers, which spreads clusters over more than three layers.'''),
    code('''# Figure 6's analogue: the activations of one cluster's neurons over two sentences
from redundancy.clustering import CorrelationClustering
from redundancy.tasks import load_task
gt = study.general_task(); m0 = study.models[0]
tr = study.activations(m0, gt, "train")
cc = CorrelationClustering(threshold=makeup_threshold, random_state=seed).fit(tr.flat())
sizes = np.bincount(cc.labels_)
big = int(np.argmax(sizes)); members = np.flatnonzero(cc.labels_ == big)[:12]
opts = dict(study.cfg["tasks"][gt] or {}); opts.pop("finetune", None)
sents = load_task(gt, **opts).splits["train"].tokens[:2]
n = sum(len(s) for s in sents)
A = tr.neurons(members)[:n].T
fig, ax = plt.subplots(figsize=(min(14, 0.45 * n + 2), 0.35 * len(members) + 1.5))
sns.heatmap(A, cmap="RdBu", center=0, ax=ax, xticklabels=[w for s in sents for w in s],
            yticklabels=[f"L{i // tr.hidden_size}:{i % tr.hidden_size}" for i in members],
            cbar_kws={"label": "activation"})
ax.tick_params(axis="both", labelsize=10); ax.tick_params(axis="y", rotation=0)
ax.set_title(f"{m0}: {len(members)} neurons of its largest cluster (c_t = {makeup_threshold}, {sizes[big]} members)")
plt.show()''', ["hide-input"]),
    md('''Interactive (JupyterLab or Colab; the book shows the static figure above): move `c_t`
to see how many neurons are kept and what the probes score.''', []),
    code('''import ipywidgets as W
def show(c_t=0.3):
    r = sweep[np.isclose(sweep.threshold, c_t)][["model", "task", "neurons", "fraction_kept", "dev", "test"]]
    display(r.round(3))
W.interact(show, c_t=W.SelectionSlider(options=sorted(sweep.threshold.unique()), value=0.3 if 0.3 in set(sweep.threshold) else sweep.threshold.iloc[0]))''', ["remove-output", "hide-input"]),
])

# ---------------------------------------------------------------------------------------------
notebook("04_layers", "Task-specific layer-level redundancy (paper §6.1, Table 7, Figures 4, 7–9)", """
A probe per layer, and an oracle probe on all layers concatenated. A layer is redundant for a
task when its probe keeps 99% of the oracle's score (within 1%, Table 7's bold entries).
""", '''delta = 0.01  # a layer within this relative drop of the oracle is redundant''', [
    code(ANALOGUE, ["hide-input"]),
    code('''layers, per_class = S.section_layers(study, delta=delta)
lay = layers[layers.layer != "oracle"].copy(); lay["layer"] = lay.layer.astype(int)
fig, axes = plt.subplots(1, len(study.models), figsize=(1.0 + 0.55 * lay.layer.nunique() * len(study.models), 0.5 * len(study.tasks) + 1.8), squeeze=False)
for ax, (m, g) in zip(axes[0], lay.groupby("model")):
    R = g.pivot(index="task", columns="layer", values="within_test").astype(float)
    sns.heatmap(R, ax=ax, cmap=sns.color_palette(["#f0f0f0", "#2b8cbe"], as_cmap=True), cbar=False,
                linewidths=.5, linecolor="white", vmin=0, vmax=1)
    ax.set_title(f"{m}: layers within {delta:.0%} of the oracle (blue)"); ax.set_xlabel("layer (0 = embeddings)")
plt.show()''', ["hide-input"]),
    code('''T = lay.pivot_table(index="layer", columns=["model", "task"], values="test")
orc = layers[layers.layer == "oracle"].set_index(["model", "task"]).test
n_red = lay.groupby(["model", "task"]).within_test.sum().rename("redundant_layers").reset_index()
n_red["kind"] = n_red.task.map(study.kind)
by_kind = n_red.groupby("kind").redundant_layers.mean()
glue("lay_tok", float(by_kind.get("token", np.nan))); glue("lay_sent", float(by_kind.get("sentence", np.nan)))
V = C.layers_token_sentence(C.Results.of_study(study, ["layers/layers"]))  # the rule: redundancy.paper.claims
glue("lay_claim", C.outcome_text(V)); glue("lay_crit", V[0].criterion)
glue("lay_why", "; ".join(f"{v.model}: {v.reason}" for v in V))
def bold(col):
    o = orc[col.name]
    return ["font-weight: bold; background-color: #d9ecf5" if v > (1 - delta) * o else "" for v in col]
display(Markdown("Test scores per layer; bold: within 1% of the oracle (the oracle's score is the last row)."))
display(pd.concat([T, orc.to_frame().T.rename(index={"test": "oracle"})]).style.apply(bold, subset=pd.IndexSlice[T.index, :]).format("{:.3f}"))''', ["hide-input"]),
    md('''On average a labeling task here has {glue:text}`lay_tok:.1f` redundant layers and a
classification task {glue:text}`lay_sent:.1f`. The paper (Table 7, BERT and XLNet, 13 layers)
finds up to 11 redundant layers for its labeling tasks and few for GLUE tasks; its claim that
layers are more redundant for core language tasks than for sequence-level tasks
**{glue:text}`lay_claim`** here ({glue:text}`lay_why`; rule: {glue:text}`lay_crit`; not testable
when the run has only one kind of task).

For sentence tasks, layer 0's classification vector is the same for every sentence (the
embedding of the `[CLS]` token at position 0, before any attention), so its probe can only
predict the majority class, or a constant whose Pearson correlation is undefined (`nan`).'''),
    code('''p7 = paper_table("table7_layers")
rows = []
for (m, t), o in orc.items():
    pt = ANALOGUE.get(t)
    if pt is None: continue
    for pm in ("BERT", "XLNet"):
        q = p7[(p7.model == pm) & (p7.task == pt) & ~p7.layer.isin(["oracle", "one_percent_loss"])]
        rows.append({"ours": f"{m} / {t}", "paper": f"{pm} / {pt}", "ours: redundant layers": int(n_red[(n_red.model == m) & (n_red.task == t)].redundant_layers.iloc[0]),
                     "ours: layers": lay.layer.nunique(), "paper: redundant layers": int(q.bold.sum()), "paper: layers": len(q)})
pd.DataFrame(rows)''', ["hide-input"]),
    code('''# Figures 7-9: per-class view for the first labeling task
if len(per_class) and study.token_tasks():
    t0 = study.token_tasks()[0]; m0 = study.models[0]
    pc = per_class[(per_class.task == t0) & (per_class.model == m0) & (per_class.split == "test")]
    names = study.activations(m0, t0, "test").label_names
    freq = pd.Series(study.activations(m0, t0, "test").labels).map(lambda i: str(names[int(i)])).value_counts()
    P = pc.assign(**{"class": pc["class"].astype(str), "probe": pc["probe"].astype(str)}).pivot_table(
        index="class", columns="probe", values="accuracy")
    top = [c for c in freq.index if c in P.index][:20]
    P = P[[c for c in ["oracle"] if c in P.columns] + sorted((c for c in P.columns if c != "oracle"), key=int)]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * P.shape[1], 0.32 * len(P) + 1.5))
    sns.heatmap(P.loc[top], annot=True, fmt=".2f", cmap="mako", vmin=0, vmax=1, ax=ax, cbar_kws={"label": "per-class accuracy"})
    ax.set_title(f"{m0} / {t0}: the 20 most frequent classes, oracle and each layer"); ax.set_xlabel("probe (layer)")
    ax.tick_params(axis="y", rotation=0)
    plt.show()''', ["hide-input"]),
])

# ---------------------------------------------------------------------------------------------
notebook("05_minimal_sets", "Task-specific neuron-level redundancy: minimal neuron sets (paper §6.2, Tables 1, 2, 8)", """
The oracle probe's weights rank every neuron (LCA). Probes retrained on the top *k* neurons, for
*k* on the reference code's grid of percentages of all neurons, find the smallest set that keeps
97% of the oracle's dev score (the paper's text; its code's pipeline uses 99%).
""", '''delta = 0.03  # allowed relative drop from the oracle dev score (0.03 is the 97 percent of the paper text)
delta_code = 0.01  # the reference code's 99 percent, run beside it as a sensitivity check; None skips it''', [
    code(ANALOGUE, ["hide-input"]),
    code('''ms = S.section_minimal_sets(study, delta=delta)
ms["share_of_neurons"] = ms.neurons / ms.n_neurons
glue("ms_max_share", float(ms.share_of_neurons.max())); glue("ms_min_share", float(ms.share_of_neurons.min()))
V = C.task_specific_92(C.Results.of_study(study, ["minimal_sets/minimal_sets"]))  # the rule: redundancy.paper.claims
glue("ms_claim", C.outcome_text(V)); glue("ms_red_min", 1 - float(ms.share_of_neurons.max()))
p8 = paper_table("table8_minimal_sets")
rows = []
for r in ms.itertuples():
    for pm in ("BERT", "XLNet"):
        q = p8[(p8.model == pm) & (p8.task == ANALOGUE.get(r.task, "-"))]
        rows.append({"ours": f"{r.model} / {r.task}", "oracle (test)": r.oracle_test, "neurons": r.neurons,
                     "% of all": r.share_of_neurons, "reduced (test)": r.test,
                     "reduced: 95% interval over test items": f"[{r.test_low:.3f}, {r.test_high:.3f}]",
                     "paper": f"{pm} / {q.task.iloc[0]}" if len(q) else "no analogue",
                     "paper oracle": q.oracle.iloc[0] if len(q) else np.nan,
                     "paper neurons (of 9,984)": q.neurons.iloc[0] if len(q) else np.nan,
                     "paper reduced": q.reduced_accuracy.iloc[0] if len(q) else np.nan})
pd.DataFrame(rows).style.format({"oracle (test)": "{:.3f}", "reduced (test)": "{:.3f}", "% of all": "{:.1%}",
                                 "paper oracle": "{:.3f}", "paper reduced": "{:.3f}", "paper neurons (of 9,984)": "{:.0f}"})''', ["hide-input"]),
    md('''Minimal sets take between {glue:text}`ms_min_share:.1%` and {glue:text}`ms_max_share:.1%`
of all neurons of the model here, so at least {glue:text}`ms_red_min:.1%` of the neurons are
redundant for every task of this run. The paper's Table 8 (BERT and XLNet, 9,984 neurons) needs
10–750 neurons (0.1%–7.5%): its claim "at least 92% of the neurons are redundant with respect to
a downstream task" **{glue:text}`ms_claim`** here. Smaller models have fewer neurons to spare,
and the embedded data are smaller; both push the minimal share up.'''),
    code('''# the paper's text (97% of the oracle) against its code (99%), and each set's dev -> test gap
if delta_code is not None:
    ms99 = S.section_minimal_sets(study, delta=delta_code, name="minimal_sets_99")
    V99 = C.task_specific_92(C.Results({"minimal_sets/minimal_sets": ms99}, kinds={t: study.kind(t) for t in study.tasks}))
    glue("ms_claim99", C.outcome_text(V99))
    both = ms.merge(ms99, on=["model", "task"], suffixes=("", "_99"))
    show = pd.DataFrame({"model": both.model, "task": both.task,
                         f"neurons ({1 - delta:.0%})": both.neurons, f"neurons ({1 - delta_code:.0%})": both.neurons_99,
                         f"dev kept ({1 - delta:.0%})": both.dev / both.oracle_dev,
                         f"test kept ({1 - delta:.0%})": both.test / both.oracle_test,
                         f"dev kept ({1 - delta_code:.0%})": both.dev_99 / both.oracle_dev,
                         f"test kept ({1 - delta_code:.0%})": both.test_99 / both.oracle_test})
    display(show.style.format({c: "{:.1%}" for c in show.columns if "kept" in c}).hide(axis="index"))
else:
    glue("ms_claim99", "was not run (delta_code = None)")''', ["hide-input"]),
    md('''With the reference code's 99% instead of the text's 97%, the claim
**{glue:text}`ms_claim99`**. The "kept" columns are the minimal set's score as a share of the
oracle's, on dev (where the set was chosen) and on test: a set chosen at a 1-3% tolerance on a
small dev set can lose more on test.'''),
    code('''tr = pd.read_csv(study.results / "minimal_sets" / "trials.csv")
g = sns.relplot(data=tr, x="k", y="dev", hue="task", col="model", kind="line", marker="o", height=3.5, aspect=1.6)
for ax in g.axes.flat: ax.set_xscale("log")
g.set_axis_labels("top-k neurons (log)", "dev score"); plt.show()''', ["hide-input"]),
])

# ---------------------------------------------------------------------------------------------
notebook("06_ls_ccfs", "Efficient transfer learning: LayerSelector + CCFS (paper §7.1, Tables 3, 9, 10)", """
LayerSelector keeps the lowest layers `0..l` whose probe stays within 1% of the oracle; CCFS
then clusters those layers' neurons (`c_t = 0.3`), ranks the kept ones by LCA and keeps the
smallest top set within 1% of the clustered set's score.
""", '''delta_ls = 0.01
delta_ccfs = 0.01
threshold = 0.3''', [
    code(ANALOGUE, ["hide-input"]),
    code('''lc = S.section_ls_ccfs(study, delta_ls=delta_ls, delta_ccfs=delta_ccfs, threshold=threshold)
cols = ["model", "task", "oracle_test", "oracle_neurons", "ls_layers", "ls_test", "ls_neurons", "cc_neurons",
        "ccfs_neurons", "ccfs_test", "ccfs_test_interval", "reduction"]
lc_show = lc.assign(ccfs_test_interval=[f"[{a:.3f}, {b:.3f}]" for a, b in zip(lc.ccfs_test_low, lc.ccfs_test_high)])
display(lc_show[cols].rename(columns={"ccfs_test_interval": "CCFS test: 95% interval over test items"}).style.format(
    {c: "{:.3f}" for c in ("oracle_test", "ls_test", "ccfs_test")} | {"reduction": "{:.1%}"}).hide(axis="index"))
avg = lc.groupby("kind")[["oracle_test", "ls_test", "ccfs_test", "reduction", "ls_layers", "ccfs_neurons"]].mean()
glue("ls_red_mean", float(lc.reduction.mean())); glue("ls_keep_mean", float((lc.ccfs_test / lc.oracle_test).mean()))
few = lc[(lc.ccfs_neurons < 100) & (lc.ccfs_test >= 0.97 * lc.oracle_test)]
glue("ls_n_under100", len(few)); glue("ls_n_tasks", len(lc))
res = C.Results.of_study(study, ["ls_ccfs/ls_ccfs"])  # the rules: redundancy.paper.claims
V100, V10 = C.under_100(res), C.ccfs_97_10(res)
glue("ls_claim", C.outcome_text(V100)); glue("ls_claim10", C.outcome_text(V10)); glue("ls_crit100", V100[0].criterion)
avg''', ["hide-input"]),
    code('''# dev -> test: each selection keeps this share of the oracle's score on dev (where it was chosen) and on test
gap = pd.DataFrame({"model": lc.model, "task": lc.task, "LS layers": lc.ls_layers,
                    "LS: dev kept": lc.ls_dev / lc.oracle_dev, "LS: test kept": lc.ls_test / lc.oracle_test,
                    "CCFS neurons": lc.ccfs_neurons,
                    "CCFS: dev kept": lc.ccfs_dev / lc.oracle_dev, "CCFS: test kept": lc.ccfs_test / lc.oracle_test})
worst = gap.assign(drop=gap["CCFS: dev kept"] - gap["CCFS: test kept"]).sort_values("drop").iloc[-1]
glue("ls_gap_task", f"{worst.model} / {worst.task}"); glue("ls_gap_dev", float(worst["CCFS: dev kept"]))
glue("ls_gap_test", float(worst["CCFS: test kept"]))
gap.style.format({c: "{:.1%}" for c in gap.columns if "kept" in c}).hide(axis="index")''', ["hide-input"]),
    md('''Selections are made on dev and judged on test. The largest dev -> test drop of a CCFS set
here is on {glue:text}`ls_gap_task`: {glue:text}`ls_gap_dev:.1%` of the oracle's score on dev,
{glue:text}`ls_gap_test:.1%` on test.'''),
    md('''Averaged over this run's tasks, LS + CCFS removes {glue:text}`ls_red_mean:.1%` of the
neurons and keeps {glue:text}`ls_keep_mean:.1%` of the oracle's test score. In
{glue:text}`ls_n_under100` of {glue:text}`ls_n_tasks` tasks fewer than 100 neurons keep 97% of
the oracle, so the paper's "less than 100 neurons for several tasks while maintaining more than
97% of the performance" **{glue:text}`ls_claim`** here ("several" made precise: {glue:text}`ls_crit100`);
"97% performance with at most 10% of the original neurons" for every task **{glue:text}`ls_claim10`**. The paper's Tables 9 and 10 (BERT
and XLNet, 9,984 neurons) report reductions of 94–99.9%.'''),
    code('''long = lc.melt(id_vars=["model", "task"], value_vars=["oracle_neurons", "ls_neurons", "cc_neurons", "ccfs_neurons"],
               var_name="stage", value_name="neurons")
long["stage"] = long.stage.str.replace("_neurons", "").str.upper()
g = sns.catplot(data=long, x="task", y="neurons", hue="stage", col="model", kind="bar", height=3.6, aspect=1.8)
for ax in g.axes.flat: ax.set_yscale("log")
plt.show()''', ["hide-input"]),
    code('''p = paper_table("table9_10_ls_ccfs")
rows = []
for r in lc.itertuples():
    for pm in ("BERT", "XLNet"):
        q = p[(p.model == pm) & (p.task == ANALOGUE.get(r.task, "-"))]
        if len(q):
            q = q.iloc[0]
            rows.append({"ours": f"{r.model} / {r.task}", "ours LS layers": f"{r.ls_layers} of {lc.oracle_neurons.iloc[0] // (r.ls_neurons // r.ls_layers)}",
                         "ours CCFS neurons": r.ccfs_neurons, "ours reduction": r.reduction,
                         "paper": f"{pm} / {q.task}", "paper LS layers": q.ls_layers, "paper CCFS neurons": q.ccfs_neurons,
                         "paper reduction": q.reduction})
pd.DataFrame(rows)''', ["hide-input"]),
])

# ---------------------------------------------------------------------------------------------
notebook("07_efficiency", "Efficiency (paper §7.2, Appendix A.5, Figures 5, 10–14)", """
What the reductions buy in time: the forward pass with only the layers LayerSelector keeps (the
model truncated, not its outputs sliced), the probe's training and inference time against the
number of features, and how extraction, clustering and ranking scale. Times are from this
machine in this run; compare them as ratios.
""", '''n_sentences = 200  # sentences timed in the forward pass
repeats = 3         # every timing is repeated, 3 runs in the paper''', [
    code('''tm = S.section_timing(study, n_sentences=n_sentences, repeats=repeats)
fw = tm["forward"]
fig, ax = plt.subplots(figsize=(7, 3.6))
for m, g in fw.groupby("model"):
    ax.errorbar(g.layers, 1000 * g.per_instance, yerr=1000 * g["std"] / n_sentences, marker="o", label=m, capsize=3)
ax.set(xlabel="transformer layers run (0 = embeddings only)", ylabel="ms per sentence", title="Forward time, model truncated")
ls_path = study.results / "ls_ccfs" / "ls_ccfs.csv"
if ls_path.exists():
    lc = pd.read_csv(ls_path)
    for l, g in lc.groupby("ls_top_layer"):
        ax.axvline(l, ls=":", c="gray")
        ax.text(l, ax.get_ylim()[1] * .97, "LS: " + ", ".join(g.task), rotation=90, fontsize=8, va="top", ha="right")
    full = fw.groupby("model").apply(lambda g: g.loc[g.layers.idxmax(), "seconds"])
    sp = [float(full[r.model] / fw[(fw.model == r.model) & (fw.layers == r.ls_top_layer)].seconds.iloc[0]) for r in lc.itertuples()]
    lc["speedup"] = sp
    glue("eff_speed_max", max(sp)); glue("eff_speed_mean", float(np.mean(sp)))
else:
    glue("eff_speed_max", float("nan")); glue("eff_speed_mean", float("nan"))
PT = paper_table("timings").set_index("key").value
for k in ("ls_speedup_bert_labeling", "ls_speedup_xlnet_labeling", "ls_speedup_bert_classification",
          "ls_speedup_xlnet_classification", "classifier_all_features_seconds_fig5", "classifier_reduced_seconds_fig5"):
    glue("paper_" + k, float(PT[k]))
ax.legend(); plt.show()''', ["hide-input"]),
    md('''Running only the layers LayerSelector keeps makes the forward pass up to
{glue:text}`eff_speed_max:.2f` times faster here (mean {glue:text}`eff_speed_mean:.2f` over the
run's tasks). The paper reports {glue:text}`paper_ls_speedup_bert_labeling`x (BERT) and
{glue:text}`paper_ls_speedup_xlnet_labeling`x (XLNet) on average for its labeling tasks, and
{glue:text}`paper_ls_speedup_bert_classification`x and {glue:text}`paper_ls_speedup_xlnet_classification`x
for its classification tasks (§7.2, Figures 10–11, forward passes on an NVIDIA GTX TITAN X GPU; the
numbers are in `data/paper/timings.csv`); the speed-up is bounded by the share of layers kept, and
the embedded model has fewer layers.'''),
    code('''ct = tm["classifier"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for m, g in ct.groupby("model"):
    axes[0].errorbar(g.features, g.train_seconds, yerr=g.train_std, marker="o", label=m, capsize=3)
    axes[1].errorbar(g.features, g.predict_seconds, yerr=g.predict_std, marker="o", label=m, capsize=3)
for ax, t in zip(axes, ("training (10 epochs)", "inference")):
    ax.set(xscale="log", xlabel="features (neurons, by LCA rank)", ylabel="seconds", title=f"Probe {t}")
axes[0].legend(); plt.show()
r = ct.groupby("model").apply(lambda g: g.train_seconds.iloc[-1] / g.train_seconds.iloc[0])
_ = glue("eff_train_ratio", float(r.iloc[0]))''', ["hide-input"]),
    md('''Training the probe on all neurons takes {glue:text}`eff_train_ratio:.1f` times as long as
on the smallest feature set (Figure 5's analogue; the paper reports
{glue:text}`paper_classifier_all_features_seconds_fig5` s down to
{glue:text}`paper_classifier_reduced_seconds_fig5` s for BERT on 100,000 tokens, on a 6-core AMD Opteron).'''),
    code('''fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
for ax, (k, x, title) in zip(axes, [("extraction", "tokens", "Extraction (Figure 12)"), ("clustering", "tokens", "Correlation clustering (Figure 13)"),
                                      ("ranking", "features", "LCA ranking (Figure 14)")]):
    for m, g in tm[k].groupby("model"):
        ax.errorbar(g[x], g.seconds, yerr=g["std"], marker="o", label=m, capsize=3)
    ax.set(xlabel=x, ylabel="seconds", title=title)
axes[0].legend(); plt.show()''', ["hide-input"]),
])

# ---------------------------------------------------------------------------------------------
notebook("09_performance", "Performance: against the authors' toolkit and this machine's limits", """
The paper's pipeline trains hundreds of probes per model (per layer, per threshold, per candidate
size, per task). This chapter shows what each step costs with this library, set against the
peers a researcher would otherwise use (NeuroX, the authors' toolkit; the reference code's
`np.corrcoef` + SciPy; a CKA package from PyPI) and against a bare lower bound on the same
machine, all measured in one run on the same arrays. The numbers come from
`benchmarks/run_all.py`, committed as `data/benchmarks/results.json` with the machine, date and
commit they were measured on; rerun that command to refresh them (its benchmarks took
{glue:text}`perf_suite_min:.0f` minutes in all when last measured; nothing else may run meanwhile).
""", '''benchmarks = None  # a results file of benchmarks/run_all.py; None: the committed data/benchmarks/results.json''', [
    code('''import json
from pathlib import Path
from redundancy.config import repo_root
bpath = Path(benchmarks) if benchmarks else repo_root() / "data" / "benchmarks" / "results.json"
B = json.loads(bpath.read_text())
mach = B["machine"]
glue("perf_cpu", mach["cpu"]); glue("perf_cores", mach["cores"]); glue("perf_mem", mach["memory_gib"])
glue("perf_date", B["date"]); glue("perf_torch", mach["torch"])
glue("perf_suite_min", sum(c.get("seconds", 0) for c in B["commands"].values()) / 60)
kept = [k for k, c in B["commands"].items() if c.get("commit") != B["commit"]]
cpus = sorted({B["commands"][k].get("cpu", "a CPU not recorded") for k in kept})
glue("perf_commit", B["commit"][:8] + (f" (the latest benchmarks; {len(kept)} of {len(B['commands'])} benchmark "
                                       "commands are kept from earlier runs of the suite, whose commits and commands "
                                       f"the results file lists, measured on {' and '.join(cpus)}: each row's ratio "
                                       "compares two sides run in the same process, but seconds of rows measured on "
                                       "different CPUs do not compare)" if kept else ""))
glue("perf_gpu", "no GPU was lent to the session that measured these" if not B.get("gpu") else B["gpu"]["device"])
T = pd.DataFrame(B["table"])
n_met, n_all = int((T.met == True).sum()), int(T.met.notna().sum())
glue("perf_met", n_met); glue("perf_targets", n_all)
ceil = T.ceiling if "ceiling" in T else pd.Series(np.nan, index=T.index)
show = T.assign(**{"baseline s": T.baseline_seconds.round(2), "ours s": T.ours_seconds.round(2),
                   "ratio": T.ratio.round(2), "ceiling (float32)": pd.to_numeric(ceil).round(2),
                   "met": T.met.map({True: "yes", False: "no"}).fillna("-")})
show = show[["what", "size", "baseline s", "ours s", "ratio", "ceiling (float32)", "target", "met"]].astype(object)
display(show.where(show.notna(), "-").set_index("what"))  # no baseline (the main command, paper scale): "-"
display(Markdown("\\n".join(f"- **{r.what}** ({r.size}); baseline: {r.baseline}. {r.note}" for r in T.itertuples())))''', ["hide-input"]),
    code('''# the single-probe targets against the bound: what 2.5x faster than NeuroX would require
def _bound_row(key):
    p = B["results"].get(key, {}).get("probe")
    if not p:
        return float("nan"), float("nan"), float("nan")
    s = p["seconds"]
    return s["neurox"] / s["bare"], s["neurox"] / 2.5 / s["bare"], s["ours"] / s["bare"]
for tag, key in (("small", "probes_minilm"), ("big", "probe_paper_scale")):
    nx_b, need_b, ours_b = _bound_row(key)
    glue(f"perf_nx_over_bare_{tag}", nx_b); glue(f"perf_need_over_bare_{tag}", need_b)
    glue(f"perf_ours_over_bare_{tag}", ours_b)
_need = {tag: _bound_row(key)[1] for tag, key in (("MiniLM", "probes_minilm"), ("paper's", "probe_paper_scale"))}
_below = [t for t, v in _need.items() if v < 1]
glue("perf_need_text", (f": at the {' and the '.join(_below)} size less than torch's products themselves at these "
                        "shapes" if _below else
                        ": the rest of a step (reading and shuffling the mini-batch, the loss, the update of "
                        "every weight by Adam) would have to fit in what is left beyond the products"))
# ours with the rows in NeuroX's order (shuffle=False: NeuroX does not shuffle), where measured
_p = B["results"].get("probes_minilm", {}).get("probe", {})
_io = _p.get("seconds", {}).get("ours_in_order")
glue("perf_inorder_text", (f"With the rows visited in NeuroX's own order (`shuffle=False`: NeuroX does not shuffle, so "
                           f"these are its mini-batches) ours takes {_io:.2f} s at the MiniLM size, "
                           f"{_p['speedup_in_order']:.2f} times faster than NeuroX and {_p['ours_in_order_over_bare']:.2f} "
                           f"times the products, with test accuracy {_p['test_accuracy']['ours_in_order']:.4f} against "
                           f"NeuroX's {_p['test_accuracy']['neurox']:.4f}; the difference from the default is the "
                           "copy of a shuffled mini-batch out of the activation matrix every step.")
     if _io else "")
# the ceilings: each method's matrix products at the best float32 product rate measured in the same run
_pc = B["results"].get("probe_paper_scale", {}).get("probe", {}).get("ceiling")
if _pc:
    _ps = B["results"]["probe_paper_scale"]["probe"]["seconds"]
    glue("perf_probe_ceiling_text", (
        f" At the paper's size that arithmetic is {_pc['probe_flops'] / 1e12:.2f} TFLOP; at the best float32 product "
        f"rate measured in the same run ({_pc['best_product_flops_per_s'] / 1e9:.0f} GFLOP/s) it would take "
        f"{_pc['floor_seconds']:.1f} s, so a probe doing the same products could be at most "
        f"{_pc['max_speedup']:.1f} times faster than NeuroX here (the table's ceiling). torch's products at the "
        f"probe's narrow shapes reach only {_pc['probe_flops'] / _ps['bare'] / 1e9:.0f} GFLOP/s (the bare "
        "products above): the rest of the gap to the ceiling is in how fast those two products can be made."))
else:
    glue("perf_probe_ceiling_text", "")
_ce = B["results"].get("extraction_neurox", {}).get("ceiling")
if _ce:
    _en = B["results"]["extraction_neurox"]
    _r = _en["ratios"]
    _sides = [("with the model loaded", "neurox_extraction", "max_speedup_extraction", "extraction_speedup"),
              ("end to end writing HDF5", "neurox_end_to_end_hdf5", "max_speedup_hdf5", "end_to_end_speedup_hdf5"),
              ("end to end writing JSON, its default", "neurox_end_to_end_json", "max_speedup_json",
               "end_to_end_speedup_json")]
    _out = [lab for lab, _, c, _x in _sides if _ce[c] < 10]
    _met = [lab for lab, _, _c, x in _sides if _r[x] >= 10]
    glue("perf_ext_text", (
        f"The standard forward passes of the {_en['config']['sentences']} sentences, one unpadded pass each as NeuroX "
        f"runs them, are {_ce['forward_flops'] / 1e9:.1f} GFLOP of matrix products (counted by torch's "
        f"FlopCounterMode, attention included). The best float32 product rate measured in the same run (square "
        f"products of {min(_ce.get('product_sizes', [2048])):,} to {max(_ce.get('product_sizes', [2048])):,}, the "
        f"fastest of several tries at each size, measured {len(_ce['product_rates'])} times between the repetitions) is "
        f"{_ce['best_product_flops_per_s'] / 1e9:.0f} GFLOP/s, so those products take at least "
        f"{_ce['floor_seconds']:.2f} s at that rate. NeuroX takes "
        + ", ".join(f"{_en[b]['seconds_median']:.2f} s {lab}" for lab, b, _c, _x in _sides)
        + ": a float32 extractor running the same forward passes could be at most "
        + ", ".join(f"{_ce[c]:.1f}" for _l, _b, c, _x in _sides)
        + " times faster than NeuroX on this machine, even one spending no time on anything but those products. "
        + (f"The 10x target is therefore out of reach in float32 here {' and '.join(_out)}. " if _out else "")
        + "Ours is " + ", ".join(f"{_r[x]:.1f}" for _l, _b, _c, x in _sides) + " times faster than NeuroX, "
        f"and takes {_ce['ours_over_floor_extraction']:.2f} times the floor with the model loaded"
        + (f"; the target is met {' and '.join(_met)}." if _met else ".")))
else:
    glue("perf_ext_text", "The extraction benchmark in this results file predates its ceiling (rerun "
                          "`benchmarks/run_all.py --only extraction_neurox`).")''', ["hide-input"]),
    md('''**The single-probe targets and the bound.** A probe cannot avoid its two matrix products per
mini-batch (forward and gradient). On this machine NeuroX's probe takes only
{glue:text}`perf_nx_over_bare_small:.2f` times as long as those products alone at the MiniLM size
(19,875 tokens x 2,688 neurons) and {glue:text}`perf_nx_over_bare_big:.2f` times at the paper's
(150,000 x 9,984, synthetic), so being 2.5 times faster than NeuroX would take
{glue:text}`perf_need_over_bare_small:.2f` and {glue:text}`perf_need_over_bare_big:.2f` times the
products' time{glue:text}`perf_need_text`. Ours takes
{glue:text}`perf_ours_over_bare_small:.2f` and {glue:text}`perf_ours_over_bare_big:.2f` times the
products' time. {glue:text}`perf_inorder_text` The speed-ups that matter for the paper's pipeline come
from training many probes at once (the layer sweep and the minimal-set search below), where the
products are shared.

**The ceilings.** The table's "ceiling (float32)" column is, for each row against NeuroX, NeuroX's
time over the time the same method's matrix products would take at the best float32 product rate
measured in the same run: for a probe, the forward and gradient products of every mini-batch
(4 x tokens x neurons x classes x epochs operations); for extraction, the forward passes NeuroX
runs. It bounds what float32 arithmetic doing that work could gain here, not other precisions
(this CPU's bfloat16 units are faster) or methods that compute less.{glue:text}`perf_probe_ceiling_text`

**Extraction and its ceiling.** {glue:text}`perf_ext_text`'''),
    md('''Measured on {glue:text}`perf_cpu` ({glue:text}`perf_cores` cores, {glue:text}`perf_mem` GiB,
torch {glue:text}`perf_torch`, CPU only; {glue:text}`perf_gpu`) on {glue:text}`perf_date` at
commit {glue:text}`perf_commit`: {glue:text}`perf_met` of the {glue:text}`perf_targets` targets
are met. A ratio above 1 means this library is faster, except in the rows against a lower
bound, where the ratio is ours divided by the bound (the target is at most 1.2).

**How.** One probe is close to its two matrix products because its gradient is written by hand
(no autograd graph per mini-batch), and everything else a step does to the weights (the L1 and
L2 terms of the gradient, Adam's moments and update, the norms the loss needs) is one compiled
pass (numba) over them instead of seven or more torch operations. The loss side is a second
compiled pass: the bias, the softmax (with a float32 exponential written out so that the loop
vectorises), the loss, its gradient with respect to the outputs, the bias's gradient and the
penalty's bookkeeping, where torch took about twenty small operations; a step is the products and
these two calls. The outputs are kept
transposed (`W X_b^T`, which with 42 outputs is about 1.7 times faster here than `X_b W^T`). Many probes at once
(every layer and prefix of layers in section 6.1, the candidate sizes of the minimal-set search
in 6.2, the thresholds of 5.2) share each mini-batch: the columns are grouped by the probes that
use them and each group is one matrix product for all of them. Each probe keeps its own
initialisation, its own Adam state and the mini-batches it would see alone, so the results are
the one-by-one results up to the order of floating-point sums (the "together vs alone" numbers
in the table). Clustering and CKA share one streamed, shifted float32 cross-product accumulated
in float64.'''),
    code('''sc = pd.DataFrame(B["results"].get("probes_mpnet_size", {}).get("scaling", []))
sr = pd.DataFrame(B["results"].get("probe_rows", {}).get("scaling_rows", []))
panels = [(d, x, lab) for d, x, lab in ((sc, "neurons", "neurons (features)"), (sr, "rows", "tokens (training rows)")) if len(d)]
if panels:
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), squeeze=False)
    for ax, (d, x, xlab) in zip(axes[0], panels):
        for col, lab in (("neurox", "NeuroX"), ("ours", "this library"), ("bare", "matrix products alone (bound)")):
            ax.plot(d[x], d[col], marker="o", label=lab)
        other = (f"{int(d.rows.iloc[0]):,} tokens" if x == "neurons" else f"{int(d.neurons.iloc[0]):,} neurons")
        ax.set(xscale="log", yscale="log", xlabel=xlab, ylabel="seconds, 10 epochs",
               title=f"One probe against {x if x == 'neurons' else 'tokens'} ({other})")
        ax.minorticks_off(); ax.set_xticks(d[x], [f"{int(v):,}" for v in d[x]])
    axes[0, 0].legend(); plt.tight_layout(); plt.show()
if len(sr):
    _sp, _ob = sr.neurox / sr.ours, sr.ours / sr.bare
    glue("perf_rows_text", (f"Against the number of tokens (right; {int(sr.neurons.iloc[0]):,} neurons, synthetic, "
                            f"{int(sr.rows.iloc[0]):,} to {int(sr.rows.iloc[-1]):,} tokens), ours is "
                            f"{_sp.min():.1f} to {_sp.max():.1f} times faster than NeuroX and {_ob.min():.2f} to "
                            f"{_ob.max():.2f} times the bare products at every size measured."))
else:
    glue("perf_rows_text", "")
if len(sc):
    glue("perf_scale_ratio", float((sc.neurox / sc.ours).iloc[-1])); glue("perf_scale_n", int(sc.neurons.iloc[-1]))
    glue("perf_small_ratio", float((sc.neurox / sc.ours).iloc[0])); glue("perf_small_n", int(sc.neurons.iloc[0]))
else:
    for k in ("perf_scale_ratio", "perf_small_ratio"): glue(k, float("nan"))
    for k in ("perf_scale_n", "perf_small_n"): glue(k, 0)''', ["hide-input"]),
    md('''Against width: both implementations pay a fixed cost per mini-batch on top of the matrix
products (NeuroX: the autograd graph, the optimiser's separate updates, a progress bar; ours: the
two compiled passes, a few calls around the products and the copy of a shuffled batch), and at narrow widths that
cost, not the products, sets the time: ours is {glue:text}`perf_small_ratio:.1f` times faster at
{glue:text}`perf_small_n` neurons and {glue:text}`perf_scale_ratio:.1f` times at
{glue:text}`perf_scale_n`, both well above the bound. Closing that gap is open work (see the
table's missed targets). {glue:text}`perf_rows_text`'''),
    code('''lay = [(k, B["results"][k]["layers"], B["results"][k]["data"]) for k in ("probes_minilm", "probes_mpnet_size", "probes_mpnet_real")
       if "layers" in B["results"].get(k, {})]
if lay:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [f"{d['description'].split(' (')[0].split(':')[0]}\\n{d['layers']} x {d['hidden']}, {d['train_rows']:,} tokens"
              f"\\n({l['probes']} probes)" for _, l, d in lay]
    x = np.arange(len(lay))
    for i, (col, lab) in enumerate((("neurox_one_by_one", "NeuroX, one by one"), ("ours_one_by_one", "ours, one by one"),
                                    ("ours_one_pass", "ours, one pass"))):
        ax.bar(x + (i - 1) * 0.27, [l["seconds"][col] for _, l, _ in lay], 0.27, label=lab)
    ax.set_xticks(x, labels); ax.set(ylabel="seconds", title="The layer sweep of section 6.1 (layers x hidden)")
    ax.legend(); plt.show()''', ["hide-input"]),
    md("## Beside the paper's own timings"),
    code('''cres = B["results"].get("classifier_paper", {})
cp, cd = cres.get("probe"), cres.get("data", {})
glue("perf_cls_ours", cp["seconds"]["ours"] if cp else float("nan"))
glue("perf_cls_neurox", cp["seconds"]["neurox"] if cp else float("nan"))
glue("perf_cls_rows", int(cd.get("train_rows", 0))); glue("perf_cls_neurons", int(cd.get("neurons", 0)))
fw_path = study.results / "timing" / "forward.csv"
if fw_path.exists():
    fw = pd.read_csv(fw_path); full = fw.loc[fw.groupby("model").layers.idxmax()]
    glue("perf_fw_ms", 1000 * float(full.per_instance.iloc[0])); glue("perf_fw_model", str(full.model.iloc[0]))
else:
    glue("perf_fw_ms", float("nan")); glue("perf_fw_model", "-")
pp = paper_table("timings")
for r in pp.itertuples():
    glue(f"paper_{r.key}", r.value)
pp[["what", "value", "unit", "hardware", "source"]]''', ["hide-input"]),
    md('''The paper's classifier on all 9,984 features, 100,000 instances, two classes and 10 epochs
took {glue:text}`paper_classifier_seconds` s on a 6-core 2.8 GHz AMD Opteron 4184 (section 7.2
and the code README's "Approximate runtimes"). The same setting here
({glue:text}`perf_cls_rows` synthetic instances x {glue:text}`perf_cls_neurons` features, 2
classes) takes {glue:text}`perf_cls_ours:.1f` s with this library and
{glue:text}`perf_cls_neurox:.1f` s with NeuroX on the machine named above: different hardware,
so only the ratio between the two measures the software. The paper's forward passes took
{glue:text}`paper_bert_forward_ms` ms (BERT-base) and {glue:text}`paper_xlnet_forward_ms` ms
(XLNet-base) per instance on an NVIDIA GTX TITAN X GPU (Appendix A.5.2); this run's
{glue:text}`perf_fw_model` takes {glue:text}`perf_fw_ms:.1f` ms per sentence on this CPU (a
smaller model; the efficiency chapter has its curve against the number of layers).'''),
    md("## On a GPU"),
    code('''gpath = bpath.parent / "gpu.json"
if not gpath.exists():
    display(Markdown(
        "No GPU measurement is recorded (`data/benchmarks/gpu.json` is absent). "
        "`benchmarks/gpu_check.py` is the prepared check (a probe and the layer sweep trained on the GPU against "
        "the CPU and one by one, a small random BERT's activations on both devices, and the paper-size probe and "
        "layer sweep timed against NeuroX on the same GPU); its JSON goes to `data/benchmarks/gpu.json`, "
        "which this section then shows. Everything above ran on the CPU, the library's default."))
else:
    G = json.loads(gpath.read_text())
    ag = G.get("agreement", {})
    rows = []
    if "probe" in ag:
        p_ = ag["probe"]
        rows.append(("one probe, GPU vs CPU", f"{p_['rows']:,} x {p_['neurons']:,}",
                     f"dev accuracy {p_['dev_accuracy_device']:.4f} vs {p_['dev_accuracy_cpu']:.4f}; largest weight "
                     f"difference {p_['max_abs_weight_diff']:.2e} (largest weight {p_['max_abs_weight']:.3f})"))
    if "layer_sweep" in ag:
        rows.append(("layer sweep on the GPU, one pass vs one by one", f"{ag['layer_sweep']['probes']} probes",
                     f"largest dev-accuracy difference {ag['layer_sweep']['max_dev_diff_together_vs_alone']:.4f}"))
    if "extraction" in ag:
        e_ = ag["extraction"]
        rows.append(("extraction, GPU vs CPU", f"{e_['model']}, {e_['words']:,} words",
                     f"largest difference {e_['max_abs_diff']:.2e} (values up to {e_['max_abs_value']:.2f}); "
                     f"{e_['words_per_s']['device']:,.0f} vs {e_['words_per_s']['cpu']:,.0f} words/s"))
    for key, label in (("probe", "one probe, 10 epochs"), ("layers", "layer sweep, every layer and prefix")):
        r_ = G.get(key)
        if r_:
            sec = r_["seconds"]
            rows.append((label + " on the GPU", r_.get("size", f"{r_.get('probes')} probes"),
                         ", ".join(f"{k} {v:.2f} s" for k, v in sec.items())
                         + ((f"; {r_['speedup']:.2f}x faster than NeuroX on the same device" if r_["speedup"] >= 1 else
                             f"; {1 / r_['speedup']:.2f}x slower than NeuroX on the same device") if "speedup" in r_
                            else f"; NeuroX not measured ({r_.get('neurox_unavailable')})")))
    on_gpu = G.get("device_type") == "cuda"
    display(Markdown(f"Measured on {G['device']} (torch {G['torch']}) on {G['date']}"
                     + (" at the smoke-test sizes (`--quick`)" if G.get("quick") else "") + "."
                     + ("" if on_gpu else " **This file is not a GPU measurement**: it was written with "
                        "`--device cpu` (a smoke test of the script), so its 'GPU' rows ran on the CPU.")))
    display(pd.DataFrame(rows, columns=["what", "size", "result"]).set_index("what"))''', ["hide-input"]),
])

# ---------------------------------------------------------------------------------------------
# The comparison cells of the reproduction pages: every paper table beside the results in folder R
REPRO_COMPARE = [
    md("## Tables 1, 2 and 8: minimal neuron sets (paper: 97% of the oracle)"),
    code('''if have("minimal_sets", "minimal_sets.csv"):
    ms = pd.read_csv(R / "minimal_sets" / "minimal_sets.csv"); p8 = paper_table("table8_minimal_sets")
    rows = []
    for r in ms.itertuples():
        for pm in ("BERT", "XLNet"):
            q = p8[(p8.model == pm) & (p8.task == ANALOGUE.get(r.task, "-"))]
            rows.append({"ours (model / task)": f"{r.model} / {r.task}", "ours oracle": round(r.oracle_test, 3),
                         "ours neurons": f"{r.neurons} of {r.n_neurons}", "ours reduced": round(r.test, 3),
                         "paper (model / task)": f"{pm} / {q.task.iloc[0]}" if len(q) else "no analogue",
                         "paper oracle": q.oracle.iloc[0] if len(q) else None,
                         "paper neurons": f"{int(q.neurons.iloc[0])} of 9984" if len(q) else None,
                         "paper reduced": q.reduced_accuracy.iloc[0] if len(q) else None})
    display(pd.DataFrame(rows))''', ["hide-input"]),
    md("## Table 3: averages of LayerSelector + CCFS (1% / 1%)"),
    code('''if have("ls_ccfs", "ls_ccfs.csv"):
    lc = pd.read_csv(R / "ls_ccfs" / "ls_ccfs.csv"); p3 = paper_table("table3_averages")
    ours = lc.assign(kind=lc.kind.map({"token": "labeling", "sentence": "classification"})).groupby(["model", "kind"]).agg(
        oracle=("oracle_test", "mean"), ls=("ls_test", "mean"), ccfs=("ccfs_test", "mean"), reduction=("reduction", "mean"))
    paper = p3.pivot_table(index=["model", "kind"], columns="row", values="value")[["oracle", "ls", "ccfs", "reduction"]]
    display(Markdown("Ours (test scores, mean over this run's tasks of each kind):")); display(ours.round(3))
    display(Markdown("The paper's Table 3 (BERT, XLNet; accuracy, and the reduction of neurons):")); display(paper.round(3))''', ["hide-input"]),
    md("## Tables 9 and 10: LayerSelector + CCFS per task"),
    code('''if have("ls_ccfs", "ls_ccfs.csv"):
    p = paper_table("table9_10_ls_ccfs"); rows = []
    for r in lc.itertuples():
        for pm in ("BERT", "XLNet"):
            q = p[(p.model == pm) & (p.task == ANALOGUE.get(r.task, "-"))]
            if not len(q): continue
            q = q.iloc[0]
            rows.append({"ours": f"{r.model} / {r.task}", "ours LS layers": r.ls_layers, "ours CCFS neurons": r.ccfs_neurons,
                         "ours reduction": round(r.reduction, 3), "paper": f"{pm} / {q.task}", "paper LS layers": q.ls_layers,
                         "paper CCFS neurons": q.ccfs_neurons, "paper reduction": q.reduction})
    display(pd.DataFrame(rows))''', ["hide-input"]),
    md("## Table 6 and Figure 2: correlation clustering"),
    code('''if have("clustering", "sweep.csv"):
    from redundancy.paper.inconsistencies import table6_average
    sw = pd.read_csv(R / "clustering" / "sweep.csv"); p6 = table6_average()  # every task (see "Where the paper contradicts itself")
    ours = sw.groupby(["model", "threshold"]).agg(kept=("fraction_kept", "mean"), score=("test", "mean")).reset_index()
    paper = p6.rename(columns={"fraction_kept": "kept", "accuracy": "score"})
    both = pd.concat([ours.assign(side="ours: " + ours.model), paper.assign(side="paper: " + paper.model)])
    display(both.pivot_table(index="threshold", columns="side", values=["kept", "score"]).round(3))''', ["hide-input"]),
    md("## Table 7 and Figure 4: redundant layers per task (within 1% of the oracle)"),
    code('''if have("layers", "layers.csv"):
    ly = pd.read_csv(R / "layers" / "layers.csv"); ly = ly[ly.layer != "oracle"]
    p7 = paper_table("table7_layers"); p7 = p7[~p7.layer.isin(["oracle", "one_percent_loss"])]
    rows = []
    for (m, t), g in ly.groupby(["model", "task"]):
        for pm in ("BERT", "XLNet"):
            q = p7[(p7.model == pm) & (p7.task == ANALOGUE.get(t, "-"))]
            rows.append({"ours": f"{m} / {t}", "ours redundant": f"{int(g.within_test.sum())} of {len(g)}",
                         "paper": f"{pm} / {ANALOGUE.get(t)}" if len(q) else "no analogue",
                         "paper redundant": f"{int(q.bold.sum())} of {len(q)}" if len(q) else None})
    display(pd.DataFrame(rows))''', ["hide-input"]),
    md('''## Figures without numbers in the paper

Figure 1 (CKA), Figure 3 (cluster makeup, "≈95% within one or two layers" in the text),
Figure 6 (a cluster's activations), Figures 7–9 (per-class layers), and Figures 5 and 10–14
(timings: the classifier on the authors' 6-core AMD Opteron, the forward passes on a GTX TITAN X
GPU) are given as pictures only. The chapters draw ours; the
verdicts above use the numbers the paper states in its text. Timings are never compared in
seconds with the paper, only as speed-ups within one run.'''),
]

notebook("08_reproduction", "Reproduction: the paper's claims and numbers beside ours", """
Every table and figure of the paper beside this run's numbers, and every headline claim
checked. The verdicts are made on the paper-scale results (MPNet with 9,984 neurons and the
150,000-token POS training set, published in `data/paper-scale/`, chapter
[Paper scale](10_paper_scale.ipynb)) where they exist, with this run's beside them. The
paper's numbers come from `data/paper/` (transcribed from the paper, BERT-base and
XLNet-base with 9,984 neurons, 150k-token labeling data and GLUE); ours from the results the
other chapters wrote.
""", '''published = "../data/paper-scale"  # the paper-scale results (bash run.sh paper-scale); None: this run only''', [
    code(ANALOGUE, ["hide-input"]),
    code('''import json
from pathlib import Path
from redundancy.paper.inconsistencies import inconsistencies
R = study.results
def have(*parts): return (R.joinpath(*parts)).exists()
run_res = C.Results.load(R)
run_V = C.judge(run_res)  # every claim's rule: redundancy.paper.claims (tested in tests/test_claims.py)
PS = Path(published) / "results" if published else None
ps_res = C.Results.load(PS) if PS is not None and PS.is_dir() else None
ps_V = C.judge(ps_res) if ps_res is not None else []
glue("run_models", ", ".join(study.models)); glue("run_tasks", ", ".join(study.tasks))
glue("run_counts", C.outcome_counts(run_V)); glue("ps_counts", C.outcome_counts(ps_V))
ps_prov = Path(published) / "provenance.json" if published else None
ps_pairs = json.loads(ps_prov.read_text())["pairs"] if ps_prov is not None and ps_prov.exists() else []
glue("ps_scope", "; ".join(f"{m} on {', '.join(t for mm, t in ps_pairs if mm == m)}"
                          for m in dict.fromkeys(m for m, _ in ps_pairs)) or "none published yet")
glue("ps_budget", "; ".join(f"{m}: {b}" for m, b in (ps_res.budget if ps_res else {}).items()) or "-")
glue("run_budget", "; ".join(f"{m}: {b}" for m, b in run_res.budget.items()) or "-")
glue("ps_seeds", ", ".join(sorted({str(len(v.ours.seeds)) for v in ps_V if v.ours is not None})) or "-")''', ["hide-input"]),
    md('''## The verdicts

Each claim of the paper is a function of the library (`redundancy.paper.claims`) that takes
results tables and returns, per model, our number with its interval over seeds, the margin to
the paper's criterion, and one of five outcomes: *holds*, *holds in direction only* (the effect
has the paper's sign but not its size), *does not hold*, *inconclusive* (the interval straddles
the criterion) or *not testable here*. `python -m redundancy verdicts` prints the same table
from the published results.

**At paper scale** (published pairs: {glue:text}`ps_scope`; `oanc-pos` is the 150,000-token POS
training set; chapter [Paper scale](10_paper_scale.ipynb)): {glue:text}`ps_counts`. MPNet has
9,984 neurons, BERT-base's count, and is the paper-scale answer; MiniLM (2,688) is a second,
smaller model. Both are *sentence-embedding fine-tunes* of their authors, not the raw pre-trained
BERT-base and XLNet-base of the paper (no registry reachable here ships those). Their sentence
tasks were fine-tuned with {glue:text}`ps_budget` (the paper: `run_glue`'s defaults, 3 epochs
over all of train at batch 8). Seeds per number: {glue:text}`ps_seeds`; a number from one seed
has no interval, and its outcome rests on the point alone.'''),
    code('''display(HTML(C.verdict_html(ps_V)) if ps_V else Markdown("No published paper-scale results."))''', ["hide-input"]),
    md('''**On this run** (the model(s) {glue:text}`run_models`, the task(s) {glue:text}`run_tasks`,
sentence tasks fine-tuned with {glue:text}`run_budget`): {glue:text}`run_counts`. A verdict is
about those models and data, which differ from the paper's, not a ruling on the paper.'''),
    code('''display(HTML(C.verdict_html(run_V)))''', ["hide-input"]),
    md('''## Where the paper contradicts itself

Each line is recomputed from the paper's own tables as transcribed in `data/paper/`
(`redundancy.paper.inconsistencies`), and says what this reproduction does about it.'''),
    code('''from redundancy.notebook import html_table
display(HTML(html_table(inconsistencies(), widths=[14, 16, 22, 30, 18])))''', ["hide-input"]),
    *REPRO_COMPARE,
])


notebook("10_paper_scale", "Paper scale: 9,984 neurons and 150,000 tokens", """
The paper's claims are about BERT-base and XLNet-base (13 x 768 = 9,984 neurons) probed with
150,000-token training sets. This chapter shows this project's closest run on a 2-core CPU:
MPNet (all-mpnet-base-v2, exactly 9,984 neurons) and MiniLM on `oanc-pos` (silver POS tags on
the Open American National Corpus: 150,000 training tokens, and dev and test sets of the
paper's sizes), and in its configuration on every embedded sentence task; the pairs with
published results are named below. Both models are sentence-embedding
models fine-tuned by their authors, not raw pre-trained checkpoints; MiniLM vs MPNet stands
in for the paper's BERT vs XLNet.

The run takes hours, so it is not part of the main command: `bash run.sh paper-scale`
computes it (resumably: run it again after a kill, or in a later session) and publishes the
results with their provenance to `data/paper-scale/`, which this chapter reads. Nothing here
is recomputed when the book is built.
""", '''published = "../data/paper-scale"  # a folder written by `python -m redundancy publish`
earlier = "../data/paper-scale-1epoch"  # the same run published at another fine-tuning budget, for the budget table (None: skip)''', [
    code(ANALOGUE, ["hide-input"]),
    code('''import json
from pathlib import Path
from redundancy.pipeline import load_config
PUB = Path(published)
R = PUB / "results"
def have(*parts): return (R.joinpath(*parts)).exists()
prov = json.loads((PUB / "provenance.json").read_text()) if (PUB / "provenance.json").exists() else None
if prov is None:
    display(Markdown(f"**No published paper-scale results in `{PUB}`.** Run `bash run.sh paper-scale`."))
    prov = {"pipeline": {"entries": [], "extract_time_s": 0, "finetune_time_s": 0, "peak_rss_mib": 0},
            "notebooks": {}, "pairs": [], "machine": {}, "commit": None, "config": {"models": [], "tasks": {}}}
E = pd.DataFrame(prov["pipeline"]["entries"])
NB = pd.DataFrame(prov["notebooks"]).T
if len(NB):  # every batch of a notebook (a resumed or widened run reuses the cached work of earlier ones)
    batches = {k: [*v.get("earlier", []), v] for k, v in prov["notebooks"].items()}
    NB["batches"] = [len(batches[k]) for k in NB.index]
    NB["wall_all"] = [round(sum(float(b.get("wall_time_s") or 0) for b in batches[k]), 1) for k in NB.index]
    NB["rss_all"] = [max(float(b.get("peak_rss_mib") or 0) for b in batches[k]) for k in NB.index]
    NB["anon_all"] = [max([float(b["peak_anon_mib"]) for b in batches[k] if b.get("peak_anon_mib")] or [np.nan])
                      for k in NB.index]
pairs_total = len(prov["config"]["models"]) * len(prov["config"]["tasks"])
done = set()
for f in ("layers/layers.csv", "minimal_sets/minimal_sets.csv", "clustering/sweep.csv", "ls_ccfs/ls_ccfs.csv"):
    if have(*f.split("/")):
        d = pd.read_csv(R / f); done |= {(m, t) for m, t in zip(d.model, d.task)}
m = prov["machine"]
glue("ps_machine", f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB"
     + (f", {m['gpu']}" if m.get("gpu") else ", no GPU"))
glue("ps_commit", (prov["commit"] or "unknown")[:10])
glue("ps_pairs_total", pairs_total); glue("ps_pairs_done", len(done))
glue("ps_pairs_list", ", ".join(f"{m} / {t}" for m, t in sorted(done)) or "none")
glue("ps_pairs_rest", "" if len(done) >= pairs_total else
     "; the rest come from a run continued in a later session: bash run.sh paper-scale resumes it")
glue("ps_max_neurons", int(E.neurons.max()) if len(E) else 0)
tr = E[E.split == "train"] if len(E) else E
pos = tr[tr.task.str.endswith("pos")] if len(tr) else tr
glue("ps_max_train_tokens", int(pos.rows.max()) if len(pos) else 0)
glue("ps_extract_min", round(prov["pipeline"]["extract_time_s"] / 60, 1))
glue("ps_finetune_min", round(prov["pipeline"]["finetune_time_s"] / 60, 1))
glue("ps_notebooks_min", round(float(NB.wall_all.sum()) / 60, 1) if len(NB) else 0.0)
from redundancy.publish import summary, GOAL_HOURS, GOAL_GB
S = summary(prov)  # the totals against the goal (the pipeline's invocations, every notebook batch)
glue("ps_peak_gib", round(S["peak_rss_mib"] / 1024, 1))
glue("ps_total_h", round(S["total_s"] / 3600, 2))
glue("ps_note", prov.get("note") or "none were recorded with this run")
pub_ft, cfg_ft = prov["config"].get("finetune"), load_config("../configs/paper-scale.yml").get("finetune")
glue("ps_budget_pub", C.budget_words(pub_ft)); glue("ps_budget_cfg", C.budget_words(cfg_ft))
glue("ps_budget_status", "The published run used that recipe." if C.budget_words(pub_ft) == C.budget_words(cfg_ft) else
     "The published sentence-task results predate that recipe: every sentence-task number on this page and in "
     "the verdicts comes from the smaller budget; bash run.sh paper-scale recomputes them with the paper's recipe "
     "(hours; it resumes).")
glue("ps_goal", {True: "within", False: "outside", None: "not measured against"}[S["within_goal"]])
glue("ps_goal_h", f"{GOAL_HOURS:g}"); glue("ps_goal_gb", f"{GOAL_GB:g}")
glue("ps_goal_mem", "allocated (anonymous)" if S["memory_basis"] == "anonymous" else "resident")
_ = glue("ps_peak_anon", "not recorded for this run" if S["peak_anon_mib"] is None else
         f"{S['peak_anon_mib'] / 1024:.1f} GiB" + ("" if S["anon_batches"] == S["batches"] else
         f", in the {S['anon_batches']} of {S['batches']} notebook batches that recorded it (earlier batches "
         "recorded the resident set only)"))''', ["hide-input"]),
    md('''## What was run, on what, at what cost

Published from commit {glue:text}`ps_commit` on {glue:text}`ps_machine`. The largest activation
sets have {glue:text}`ps_max_neurons` neurons per row and {glue:text}`ps_max_train_tokens`
training tokens. {glue:text}`ps_pairs_done` of the {glue:text}`ps_pairs_total` model x task pairs
have results ({glue:text}`ps_pairs_list`{glue:text}`ps_pairs_rest`). Computing took
{glue:text}`ps_finetune_min` minutes of fine-tuning, {glue:text}`ps_extract_min` minutes of
extraction and {glue:text}`ps_notebooks_min` minutes of notebooks (every batch of notebooks
counted: a batch run after the run was widened reuses the probes, clusterings and activations of
the earlier ones, so the table below lists both its own time and the sum); the largest resident memory of
any step was {glue:text}`ps_peak_gib` GiB (resident set size, which counts the pages of the
memory-mapped activation files a step has read, not only the memory it allocated). The largest
anonymous memory of a notebook's kernel, what it allocated itself (resident minus file-backed
pages, which the system can drop and read again), was {glue:text}`ps_peak_anon`.
In all {glue:text}`ps_total_h` hours (the pipeline's wall time over its invocations, or the sum of
its steps where a killed invocation left no record, plus the notebooks'): {glue:text}`ps_goal` this project's goal for the paper's scale
on a 2-core CPU (at most {glue:text}`ps_goal_h` hours, and {glue:text}`ps_goal_gb` GB, 10^9 bytes, of {glue:text}`ps_goal_mem` memory in any step). All times are wall-clock times of the runs as they
happened; the conditions of the run, as recorded when it was published: {glue:text}`ps_note`.

**Fine-tuning budget.** The paper fine-tuned every sentence task with `run_glue`'s defaults
(3 epochs over all of train, batch 8, learning rate 5e-5). The published results were fine-tuned
with {glue:text}`ps_budget_pub` (from their provenance); `configs/paper-scale.yml` now asks for
{glue:text}`ps_budget_cfg`. {glue:text}`ps_budget_status` The table below gives each task's
fine-tuning epochs, training sentences, steps, time and dev score from the run's own records.
The probes use every sentence of the splits.'''),
    code('''if len(E):
    show = E[E.split == "train"][["model", "task", "rows", "neurons", "extract_time_s"]].rename(
        columns={"rows": "train rows", "extract_time_s": "extraction s (train)"})
    if "finetune_steps" in E:
        ft = E[(E.split == "train") & E.finetune_steps.notna()]
        show = show.merge(ft[["model", "task", "finetune_epochs", "finetune_max_train", "finetune_steps",
                              "finetune_time_s", "finetune_dev"]], how="left", on=["model", "task"])
    display(show.astype(object).fillna("-"))
if len(NB):
    display(NB[["status", "batches", "wall_time_s", "wall_all", "rss_all", "anon_all"]].astype(object).fillna("-").rename(
        columns={"wall_time_s": "wall s (last batch)", "wall_all": "wall s (all batches)",
                 "rss_all": "kernel peak MiB (resident)", "anon_all": "kernel peak MiB (anonymous)"}))''', ["hide-input"]),
    md("## Figures at this scale"),
    code('''if have("cka", "cka.csv"):
    ck = pd.read_csv(R / "cka" / "cka.csv")
    ms_ = sorted(ck.model.unique())
    fig, axes = plt.subplots(1, len(ms_), figsize=(5.2 * len(ms_), 4.4), squeeze=False)
    for ax, m in zip(axes[0], ms_):
        g = ck[ck.model == m].pivot(index="layer_i", columns="layer_j", values="cka")
        sns.heatmap(g, ax=ax, vmin=0, vmax=1, cmap="viridis", square=True, cbar_kws={"shrink": 0.8})
        ax.invert_yaxis(); ax.set(title=f"{m}: linear CKA between layers ({ck[ck.model == m].task.iloc[0]})",
                                  xlabel="layer", ylabel="layer")
    plt.show()
if have("clustering", "sweep.csv"):
    from redundancy.paper.inconsistencies import table6_average
    sw = pd.read_csv(R / "clustering" / "sweep.csv"); p6 = table6_average()  # the mean over all 11 tasks
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for (m, t), g in sw.groupby(["model", "task"]):
        ax.plot(g.threshold, g.fraction_kept, marker="o", lw=1, alpha=0.8, label=f"ours: {m} / {t}")
    for pm, g in p6.groupby("model"):
        ax.plot(g.threshold, g.fraction_kept, "k--" if pm == "BERT" else "k:", lw=2, label=f"paper: {pm} (Table 6, mean of all 11 tasks)")
    ax.set(xlabel="clustering threshold c_t", ylabel="fraction of neurons kept",
           title="Figure 2 / Table 6 at paper scale: neurons kept per threshold")
    ax.legend(fontsize=7, ncol=2); plt.show()''', ["hide-input"]),
    md("## The paper's claims at this scale"),
    code('''if R.is_dir():
    V = C.judge(C.Results.load(R))  # the rules: redundancy.paper.claims
    glue("ps_counts", C.outcome_counts(V))
    display(Markdown(C.verdict_prose(V)))
else:
    glue("ps_counts", "no published results")''', ["hide-input"]),
    md('''In all: {glue:text}`ps_counts`. The same verdicts, as one table, open the
[Reproduction](08_reproduction.ipynb) chapter.'''),
    md("## Budget sensitivity: the same run at two fine-tuning budgets"),
    code('''from redundancy.notebook import html_table
E_R = Path(earlier) / "results" if earlier else None
if E_R is not None and E_R.is_dir() and R.is_dir():
    res_e, res_p = C.Results.load(E_R), C.Results.load(R)
    b_e, b_p = (" / ".join(sorted(set(r.budget.values()))) for r in (res_e, res_p))
    if b_e == b_p:
        glue("ps_budget_cmp", f"The earlier run in {earlier} used the same fine-tuning budget ({b_e}): nothing to compare.")
    else:
        labels = ("earlier budget", "this budget")
        display(HTML(html_table(C.budget_table(res_e, res_p, labels).round(3))))
        cmp = C.compare_verdicts(C.judge(res_e), C.judge(res_p), labels)
        display(HTML(html_table(cmp.assign(changed=cmp.changed.map({True: "yes", False: ""})))))
        glue("ps_budget_cmp", f"Earlier budget: {b_e}. This budget: {b_p}. {int(cmp.changed.sum())} of {len(cmp)} "
             "verdicts change between them (the second table).")
else:
    glue("ps_budget_cmp", f"No results at another budget were found ({earlier}).")''', ["hide-input"]),
    md('''{glue:text}`ps_budget_cmp` The first table sets every sentence task's numbers side by side
(oracle test score, LayerSelector layers, CCFS neurons and score, minimal set, each the mean
over seeds): a model fine-tuned longer gives its [CLS] vector more of the task, which can move
every selection.'''),
    *REPRO_COMPARE,
], setup=False)


notebook("11_troubleshooting", "Troubleshooting: bad input and faults", """
What happens when something is wrong: a mistake in the input, or a fault during a run. Every
entry of the list below was produced when this page was executed, by running the library on
that bad input in a scratch folder (`redundancy.troubleshooting`); the test suite runs the same
cases (`tests/test_troubleshooting.py`).
""", "", [
    code('''import html, tempfile
import transformers; transformers.logging.set_verbosity_error()
from redundancy.troubleshooting import check_cases
with tempfile.TemporaryDirectory() as scratch:
    T = check_cases(scratch)
glue("tr_cases", len(T)); glue("tr_clear", int(T.clear.sum())); glue("tr_intact", int(T.cache_intact.sum()))
def esc(t): return html.escape(t).replace("*", "\\*").replace("_", "\\_").replace("`", "'")
display(Markdown("\\n".join(
    f"- **{r.case}** ({esc(r.example)}): `{r.error}`" + (" (the expected error)" if r.clear else " (**not the expected error**)")
    + ("" if r.cache_intact else " (**the cache changed**)") + f"<br>{esc(r.message)}" for r in T.itertuples())))''', ["hide-input"]),
    md('''## Bad input

Of {glue:text}`tr_cases` kinds of bad input, {glue:text}`tr_clear` got the expected error class
with a message that names the file and line, the parameter or the value, and says what to do;
after {glue:text}`tr_intact` of them the cache (a stored activation entry, checked by size and
sha256 before and after) was exactly as before. Errors are raised before anything is written:
an activation entry is built in a temporary folder and moved into place only when complete.

Notebook parameters are checked in the cell right after papermill's injected parameters, so a
misspelt name (`-p treshold 0.3`) or a wrong type stops the notebook before any work, naming the
parameter; `python -m redundancy notebooks` also refuses a parameter that no notebook declares.'''),
    md('''## Faults during a run

| fault | what happens | checked by |
| --- | --- | --- |
| the run is killed (SIGKILL) during extraction | the half-written entry lives in a `*.tmp-*` folder that is never read, and is removed by the next run; finished entries are reused | `tests/test_faults.py` (kill at the second batch) |
| killed during fine-tuning | a checkpoint (weights, optimizer, schedule, both random streams, position in the epoch) is written every 2 minutes; the next run resumes from it and ends with the same weights, bit for bit | `tests/test_finetune.py`, `tests/test_faults.py` |
| killed during a probe sweep | every trained probe is cached as it finishes (coefficients, scores, checksums); the next run trains only the missing ones | `tests/test_faults.py` (kill at the fourth probe) |
| killed during a clustering sweep | the clustering tree of each activation set is cached (keyed by the sha256 of the activations) as soon as it is computed; a rerun cuts it at every threshold without recomputing correlations | `tests/test_clustering.py` |
| killed during a notebook | the notebook's stamp is written only after it succeeds, so the next batch runs it again (its probes come from the cache) and skips the finished ones | `tests/test_notebooks.py` |
| two runs at once on one cache | each entry is built under a file lock; the second run waits and reuses the first's work | `tests/test_faults.py`, `tests/test_store.py` |
| a truncated or edited cache file | sizes are always checked; a file written after its entry was made is checksummed (xxh3-128 in the metadata); probe entries carry the sha256 of their arrays and a checksum of their scores; a damaged entry is reported and recomputed, never read | `tests/test_store.py`, `tests/test_selection.py` |
| the disk fills up | an activation entry's space is reserved before it is written (`posix_fallocate`), so a full disk is an error naming the file, its size and `REDUNDANCY_CACHE`, not a crash of the memory map; nothing is kept | `tests/test_store.py` |
| a damaged fine-tuning checkpoint | reported, discarded, training starts over | `tests/test_finetune.py` |
| a notebook fails | the batch names the notebook, the cell and the error, runs the others and exits with status 1 | `tests/test_notebooks.py` |

Every kill test compares the files of the resumed run with those of an uninterrupted run, byte
for byte. Two runs from a clean cache give byte-identical result files (every random step is
seeded, labels are in a fixed order, sorting is stable); the only files that differ hold
measurements of time (`costs.csv`, the `timing/` section, `notebooks.json`). See it with
`bash run.sh test -k "faults or troubleshooting"`.'''),
], setup=False)

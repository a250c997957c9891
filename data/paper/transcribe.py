#!/usr/bin/env python3
"""Transcribe the tables of Dalvi et al. (EMNLP 2020), "Analyzing Redundancy in
Pretrained Transformer Models", from the plain-text paper into tidy CSV files.

Usage: python3 transcribe.py [PAPER_TEXT]
    PAPER_TEXT defaults to /work/shared/paper/001_5cd382146ff0d55e.txt.
The CSV files are written next to this script. Standard library only; the output
is deterministic (same text -> byte-identical CSVs).

Tables in the text are runs of tab-separated lines; each run is attributed to the
first "Table N:" caption that follows it. Percentages ("95.7%", "97%↓") are stored
as fractions in [0, 1] with at most 4 decimals. Cross-checks between tables are
asserted below; where the paper itself disagrees with a check, the paper's number is
kept and the check is relaxed with a comment naming the discrepancy (see README.md).
"""

import csv
import os
import re
import sys
from decimal import Decimal

DEFAULT_TEXT = "/work/shared/paper/001_5cd382146ff0d55e.txt"
OUT_DIR = os.path.dirname(os.path.abspath(__file__))
TOTAL_NEURONS = 9984  # 13 layers x 768 neurons

LABELING_TASKS = ["POS", "SEM", "CCG", "Chunking"]
CLASSIFICATION_TASKS = ["SST-2", "MRPC", "MNLI", "QNLI", "QQP", "RTE", "STS-B"]
TASK_ALIASES = {"Chunk.": "Chunking"}


# ----------------------------------------------------------------------------- helpers

def task_name(s):
    s = s.strip()
    return TASK_ALIASES.get(s, s)


def strip_bold(cell):
    """Return (text, bold) for a cell possibly wrapped in <b>..</b>."""
    cell = cell.strip()
    m = re.fullmatch(r"<b>(.*)</b>", cell)
    return (m.group(1).strip(), True) if m else (cell, False)


def pct(cell):
    """'95.7%' / '97%↓' -> Decimal fraction (0.957 / 0.97)."""
    text, _ = strip_bold(cell)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%\s*↓?", text)
    if not m:
        raise ValueError(f"not a percentage: {cell!r}")
    return Decimal(m.group(1)) / 100


def is_pct(cell):
    return "%" in cell


def num(cell):
    """Integer-or-float cell -> Decimal (keeps '9006.75' exact)."""
    text = cell.strip()
    if not re.fullmatch(r"\d+(?:\.\d+)?", text):
        raise ValueError(f"not a number: {cell!r}")
    return Decimal(text)


def fmt(value):
    """Deterministic CSV rendering: Decimal/float -> shortest plain string,
    int -> str, bool -> True/False, None -> ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        value = value.quantize(Decimal("0.0001")) if value != value.to_integral() else value
        s = format(value.normalize(), "f")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return s
    return str(value)


def frac(value):
    """Fraction with at most 4 decimals, rendered with at least one decimal."""
    s = fmt(Decimal(value).quantize(Decimal("0.0001")))
    return s if "." in s else s + ".0"


def write_csv(name, header, rows):
    path = os.path.join(OUT_DIR, name)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r[h] if isinstance(r[h], str) else fmt(r[h]) for h in header])
    return path, len(rows)


def close(a, b, tol):
    return abs(Decimal(a) - Decimal(b)) <= Decimal(str(tol))


def mean(values):
    values = [Decimal(v) for v in values]
    return sum(values) / len(values)


# ----------------------------------------------------------------------------- locate

def table_blocks(lines):
    """Map table number -> list of blocks (each a list of tab-split rows), in text order.
    A block is a maximal run of lines containing a tab; it belongs to the first
    'Table N:' caption after it."""
    blocks, cur = [], None
    for i, line in enumerate(lines):
        if "\t" in line:
            if cur is None:
                cur = [i, []]
                blocks.append(cur)
            cur[1].append(line.rstrip("\n").split("\t"))
        else:
            cur = None
    captions = [(i, int(m.group(1))) for i, l in enumerate(lines)
                if (m := re.match(r"Table (\d+):", l))]
    out = {}
    for start, rows in blocks:
        nxt = [n for i, n in captions if i > start]
        if nxt:
            out.setdefault(nxt[0], []).append(rows)
    return out


# ----------------------------------------------------------------------------- tables

def parse_tables_1_2(blocks):
    rows = []
    for tnum, kind in ((1, "labeling"), (2, "classification")):
        (block,) = blocks[tnum]
        assert block[0] == ["Task", "# Neurons", "Task", "# Neurons"], block[0]
        for model, off in (("BERT", 0), ("XLNet", 2)):  # (a) BERT | (b) XLNet
            for r in block[1:]:
                rows.append(dict(model=model, task=task_name(r[off]),
                                 neurons=int(r[off + 1]), kind=kind))
    return rows


def parse_table_3(block):
    groups = [c.strip() for c in block[0][1:]]
    models = [c.strip() for c in block[1][1:]]
    assert models == ["BERT", "XLNet", "BERT", "XLNet"], models
    # header group names as printed (a group spans two columns)
    names = {"Sequence Classification": "classification",
             "Sequence Labeling": "labeling"}
    printed = []
    for i in range(4):
        g = groups[i] if i < len(groups) else ""
        printed.append(names[g] if g else printed[-1])
    row_key = {"Oracle Neurons": "oracle", "LS Layers": "ls",
               "CCFS Neurons": "ccfs", "% Reduct.": "reduction"}
    values = {}
    for r in block[2:]:
        values[row_key[r[0].strip()]] = [pct(c) for c in r[1:5]]
    return printed, models, values


def parse_table_4(block):
    assert block[0] == ["Task", "Train", "Dev", "Test", "Tags"], block[0]
    return [dict(task=task_name(r[0]), train=int(r[1]), dev=int(r[2]),
                 test=int(r[3]), tags=int(r[4])) for r in block[1:]]


def parse_table_5(block):
    assert block[0] == ["Task", "Train", "Dev"], block[0]
    return [dict(task=task_name(r[0]), train=int(r[1]), dev=int(r[2]))
            for r in block[1:]]


def parse_table_6(blocks):
    rows = []
    assert len(blocks) == 2
    for model, block in zip(("BERT", "XLNet"), blocks):  # (a) BERT, (b) XLNet
        header = block[0]
        assert header[0] == "Threshold"
        tasks = [task_name(t) for t in header[1:]]
        body = block[1:]
        assert len(body) % 2 == 0
        for nrow, arow in zip(body[0::2], body[1::2]):  # neurons line, accuracy line
            assert nrow[0] == arow[0]
            thr = Decimal(nrow[0])
            for t, n, a in zip(tasks, nrow[1:], arow[1:]):
                rows.append(dict(model=model, task=t, threshold=thr,
                                 neurons=num(n), accuracy=pct(a)))
    return rows


def parse_table_7(blocks):
    rows = []
    assert len(blocks) == 2
    for model, block in zip(("BERT", "XLNet"), blocks):  # (a) BERT, (b) XLNet
        tasks = [task_name(t) for t in block[0][1:]]
        for r in block[1:]:
            label = r[0].strip()
            if label == "Oracle":
                layer = "oracle"
            elif label == "1% Loss":
                layer = "one_percent_loss"
            elif label == "Embedding":
                layer = 0
            else:
                layer = int(re.fullmatch(r"Layer (\d+)", label).group(1))
            for t, c in zip(tasks, r[1:]):
                _, bold = strip_bold(c)
                rows.append(dict(model=model, task=t, layer=layer,
                                 accuracy=pct(c), bold=bold))
    return rows


def parse_table_8(block):
    assert block[0] == ["Task", "Oracle", "#Neurons", "Reduced Accuracy"] * 2, block[0]
    rows = []
    for model, off in (("BERT", 0), ("XLNet", 4)):  # (a) BERT | (b) XLNet
        for r in block[1:]:
            rows.append(dict(model=model, task=task_name(r[off]),
                             oracle=pct(r[off + 1]), neurons=num(r[off + 2]),
                             reduced_accuracy=pct(r[off + 3])))
    return rows


def parse_table_9_10(block, kind):
    """Rows: model | row label | one value per task; a line with empty model and
    empty label continues the previous labelled row (second line of values)."""
    tasks = [task_name(t) for t in block[0][2:]]
    groups = []  # (model, label, [value lines])
    model = None
    for r in block[1:]:
        r = r + [""] * (2 + len(tasks) - len(r))
        if r[0].strip():
            model = r[0].strip()
        if r[1].strip():
            groups.append([model, r[1].strip(), [r[2:2 + len(tasks)]]])
        else:
            groups[-1][2].append(r[2:2 + len(tasks)])
    out = {}
    for model, label, lines in groups:
        # The model name is repeated on some rows (multirow artefact); a new
        # 'Oracle' row starts a new model block.
        for line in lines:
            cells = [c.strip() for c in line]
            nonempty = [c for c in cells if c]
            if label.startswith("% Reduct"):
                field = "reduction"
            else:
                prefix = {"Oracle": "oracle", "LS": "ls", "CCFS": "ccfs"}[label.split()[0]]
                if all(is_pct(c) for c in nonempty):
                    field = prefix + "_accuracy"
                else:
                    field = prefix + {"oracle": "_neurons", "ls": "_layers",
                                      "ccfs": "_neurons"}[prefix]
            if len(nonempty) == 1 and cells[0] and field == "oracle_neurons":
                # Oracle '9984' is printed once for the model (a cell spanning all
                # task columns in the original layout): it applies to every task.
                cells = [cells[0]] * len(tasks)
            for t, c in zip(tasks, cells):
                rec = out.setdefault((model, t), dict(
                    model=model, task=t, kind=kind, oracle_accuracy=None,
                    oracle_neurons=None, ls_accuracy=None, ls_layers=None,
                    ccfs_accuracy=None, ccfs_neurons=None, reduction=None))
                assert rec[field] is None, (model, t, field)
                if c:
                    rec[field] = pct(c) if field.endswith(("accuracy", "reduction")) else int(c)
    return [out[k] for k in sorted(out, key=lambda k: (("BERT", "XLNet").index(k[0]),
                                                        tasks.index(k[1])))]


# ----------------------------------------------------------------------------- main

def main(argv):
    text_path = argv[1] if len(argv) > 1 else DEFAULT_TEXT
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks = table_blocks(lines)
    for n in range(1, 11):
        assert n in blocks, f"Table {n} not found"

    t12 = parse_tables_1_2(blocks)
    (b3,) = blocks[3]
    t3_printed, t3_models, t3_values = parse_table_3(b3)
    (b4,) = blocks[4]
    t4 = parse_table_4(b4)
    (b5,) = blocks[5]
    t5 = parse_table_5(b5)
    t6 = parse_table_6(blocks[6])
    t7 = parse_table_7(blocks[7])
    (b8,) = blocks[8]
    t8 = parse_table_8(b8)
    (b9,) = blocks[9]
    (b10,) = blocks[10]
    t9 = parse_table_9_10(b9, "labeling")
    t10 = parse_table_9_10(b10, "classification")
    t910 = t9 + t10

    # ------------------------------------------------------------- shape checks
    assert [r["task"] for r in t4] == ["POS", "SEM", "Chunking", "CCG"]
    assert [r["task"] for r in t5] == CLASSIFICATION_TASKS
    assert len(t12) == 2 * (4 + 7)
    assert len(t6) == 2 * 10 * 12
    assert len(t7) == 2 * 15 * 11
    assert len(t8) == 2 * 13
    assert len(t9) == 2 * 4 and len(t10) == 2 * 7

    # ------------------------------------------------------------- Table 6 checks
    for r in t6:
        if r["threshold"] == 0:
            assert r["neurons"] == TOTAL_NEURONS, r
    idx6 = {(r["model"], r["task"], r["threshold"]): r for r in t6}
    thresholds = sorted({r["threshold"] for r in t6})
    all_tasks = LABELING_TASKS + CLASSIFICATION_TASKS
    for model in ("BERT", "XLNet"):
        for thr in thresholds:
            avg = idx6[(model, "Average", thr)]
            accs = [idx6[(model, t, thr)]["accuracy"] for t in all_tasks]
            # printed values are rounded to 0.1 pp
            assert close(avg["accuracy"], mean(accs), "0.0006"), (model, thr)
            if model == "BERT":
                ns = [idx6[(model, t, thr)]["neurons"] for t in all_tasks]
                assert abs(avg["neurons"] - mean(ns)) <= 1, (model, thr)
            else:
                # DISCREPANCY (source): XLNet 'Average' neurons are the exact mean
                # over the 4 sequence-labeling tasks only (e.g. 9006.75 at 0.1),
                # not over all 11 tasks as for BERT. Check that instead.
                ns = [idx6[(model, t, thr)]["neurons"] for t in LABELING_TASKS]
                assert avg["neurons"] == mean(ns), (model, thr)
        for t in all_tasks + ["Average"]:
            ns = [idx6[(model, t, thr)]["neurons"] for thr in thresholds]
            assert all(a >= b for a, b in zip(ns, ns[1:])), (model, t)

    # ------------------------------------------------------------- Table 7 checks
    idx7 = {(r["model"], r["task"], r["layer"]): r for r in t7}
    for (model, task, layer), r in idx7.items():
        if layer != "oracle":
            continue
        loss = idx7[(model, task, "one_percent_loss")]["accuracy"]
        assert close(loss, Decimal("0.99") * r["accuracy"], "0.0011"), (model, task)
        assert not r["bold"] and not idx7[(model, task, "one_percent_loss")]["bold"]
        for layer_i in range(13):
            lr = idx7[(model, task, layer_i)]
            # bold == layer maintains the '1% Loss' accuracy (99% of oracle)
            assert lr["bold"] == (lr["accuracy"] >= loss), (model, task, layer_i)

    # ------------------------------------------------------------- Tables 1/2 vs 8
    idx8 = {(r["model"], r["task"]): r for r in t8}
    for r in t12:
        assert r["neurons"] == idx8[(r["model"], r["task"])]["neurons"], r
    # Table 8 averages and the 97%-of-oracle criterion of Section 6.2
    for model in ("BERT", "XLNet"):
        for avg_name, tasks in (("Word Average", LABELING_TASKS),
                                ("Sentence Average", CLASSIFICATION_TASKS)):
            avg = idx8[(model, avg_name)]
            for col in ("oracle", "reduced_accuracy"):
                assert close(avg[col], mean(idx8[(model, t)][col] for t in tasks),
                             "0.0006"), (model, avg_name, col)
            m = mean(idx8[(model, t)]["neurons"] for t in tasks)
            # DISCREPANCY (source): XLNet 'Sentence Average' #Neurons is printed
            # as 152, the exact mean is 1070/7 = 152.86 (truncated, not rounded);
            # so only require |printed - mean| < 1.
            assert abs(avg["neurons"] - m) < 1, (model, avg_name)
        for t in all_tasks:
            r = idx8[(model, t)]
            assert r["reduced_accuracy"] >= Decimal("0.97") * r["oracle"], r

    # ------------------------------------------------------------- Tables 9/10 checks
    for r in t910:
        assert r["oracle_accuracy"] == idx7[(r["model"], r["task"], "oracle")]["accuracy"], r
        ccfs_share = Decimal(r["ccfs_neurons"]) / TOTAL_NEURONS
        # Table 9 prints whole percents, Table 10 one decimal
        tol = "0.005" if r["kind"] == "labeling" else "0.0005"
        if (r["model"], r["task"]) == ("BERT", "RTE"):
            # DISCREPANCY (source): Table 10 BERT RTE has 30 CCFS neurons but
            # '99.9%↓' reduction; 30/9984 gives 99.7% (as printed for SST-2 and
            # MNLI with 30 neurons). Both numbers are kept as printed.
            assert close(r["reduction"], Decimal("0.999"), 0)
            continue
        assert close(r["reduction"], 1 - ccfs_share, tol), r
        if r["kind"] == "labeling":
            assert r["oracle_neurons"] == TOTAL_NEURONS
            assert None not in (r["ls_layers"], r["ccfs_accuracy"])
        else:
            assert r["oracle_neurons"] is None and r["ls_layers"] is None
            assert r["ccfs_accuracy"] is None

    # ------------------------------------------------------------- Table 3
    # DISCREPANCY (source): the text's Table 3 header puts 'Sequence
    # Classification' over the first two value columns and 'Sequence Labeling'
    # over the last two, but the values are the other way round: the first two
    # columns equal the means of Table 9 (labeling) and the last two the means of
    # Table 10 (classification), e.g. BERT oracle 93.0% = mean(95.2, 92.0, 90.1,
    # 94.6) and 85.5% = mean of the 7 GLUE oracles. The prose agrees ("reducing to
    # just 5% for sequence labeling tasks and 1.5% for sequence classification").
    # The kind of each column is therefore decided by matching against Tables 9/10.
    idx910 = {(r["model"], r["task"]): r for r in t910}

    def t910_mean(model, kind, field):
        tasks = LABELING_TASKS if kind == "labeling" else CLASSIFICATION_TASKS
        return mean(idx910[(model, t)][field] for t in tasks)

    def fits(kinds):
        for i, (model, kind) in enumerate(zip(t3_models, kinds)):
            for row, field in (("oracle", "oracle_accuracy"), ("ls", "ls_accuracy")):
                if not close(t3_values[row][i], t910_mean(model, kind, field), "0.0006"):
                    return False
        return True

    swapped = [{"labeling": "classification", "classification": "labeling"}[k]
               for k in t3_printed]
    if fits(t3_printed):
        t3_kinds = t3_printed
    else:
        assert fits(swapped), "Table 3 matches neither header reading"
        t3_kinds = swapped
    for i, (model, kind) in enumerate(zip(t3_models, t3_kinds)):
        if kind == "labeling":  # Table 10 gives no per-task CCFS accuracy
            assert close(t3_values["ccfs"][i],
                         t910_mean(model, kind, "ccfs_accuracy"), "0.0006")
        # DISCREPANCY (source): the classification '% Reduct.' averages (99.0%,
        # 98.5%) are ~0.1 pp below the means of Table 10 (99.14%, 98.57%);
        # labeling ones match within rounding. Only a loose check here.
        assert close(t3_values["reduction"][i],
                     t910_mean(model, kind, "reduction"), "0.0015"), (model, kind)
    t3 = []
    for row in ("oracle", "ls", "ccfs", "reduction"):
        for i, (model, kind) in enumerate(zip(t3_models, t3_kinds)):
            t3.append(dict(row=row, kind=kind, model=model, value=t3_values[row][i]))
    # stable order: row, kind (labeling first), model
    t3.sort(key=lambda r: (("oracle", "ls", "ccfs", "reduction").index(r["row"]),
                           ("labeling", "classification").index(r["kind"]),
                           ("BERT", "XLNet").index(r["model"])))

    # ------------------------------------------------------------- render fractions
    def fracs(rows, cols):
        out = []
        for r in rows:
            r = dict(r)
            for c in cols:
                if r[c] is not None:
                    r[c] = frac(r[c])
            out.append(r)
        return out

    written = [
        write_csv("tables1_2_minimal_neurons.csv", ["model", "task", "neurons", "kind"], t12),
        write_csv("table3_averages.csv", ["row", "kind", "model", "value"],
                  fracs(t3, ["value"])),
        write_csv("table4_token_data.csv", ["task", "train", "dev", "test", "tags"], t4),
        write_csv("table5_sentence_data.csv", ["task", "train", "dev"], t5),
        write_csv("table6_clustering.csv",
                  ["model", "task", "threshold", "neurons", "accuracy"],
                  [dict(r, threshold=frac(r["threshold"])) for r in fracs(t6, ["accuracy"])]),
        write_csv("table7_layers.csv", ["model", "task", "layer", "accuracy", "bold"],
                  fracs(t7, ["accuracy"])),
        write_csv("table8_minimal_sets.csv",
                  ["model", "task", "oracle", "neurons", "reduced_accuracy"],
                  fracs(t8, ["oracle", "reduced_accuracy"])),
        write_csv("table9_10_ls_ccfs.csv",
                  ["model", "task", "kind", "oracle_accuracy", "oracle_neurons",
                   "ls_accuracy", "ls_layers", "ccfs_accuracy", "ccfs_neurons",
                   "reduction"],
                  fracs(t910, ["oracle_accuracy", "ls_accuracy", "ccfs_accuracy",
                               "reduction"])),
    ]
    for path, n in written:
        print(f"{os.path.basename(path)}: {n} rows")
    if t3_kinds != t3_printed:
        print("note: Table 3 column groups assigned from Tables 9/10 (printed header "
              "has Sequence Classification/Labeling swapped)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

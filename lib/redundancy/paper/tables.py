"""The paper's own numbers: its tables as transcribed in ``data/paper/`` and the facts the
comparisons need (the model size it studied, the paper task each of ours stands in for)."""

from __future__ import annotations

import pandas as pd

from ..config import repo_root

__all__ = ["paper_table", "ANALOGUE", "PAPER_LAYERS", "PAPER_HIDDEN", "PAPER_NEURONS"]

#: BERT-base and XLNet-base, the paper's models: 13 layers (embeddings + 12) of 768 neurons
PAPER_LAYERS, PAPER_HIDDEN = 13, 768
PAPER_NEURONS = PAPER_LAYERS * PAPER_HIDDEN  # 9,984

#: The paper's task closest to each of ours (absent: no analogue). Penn Treebank POS is the
#: paper's own POS data; the embedded sentiment tasks stand in for SST-2 (binary) and, by
#: metric only, STS-B.
ANALOGUE = {"ptb-pos": "POS", "oanc-pos": "POS", "pos": "POS", "sem": "SEM", "ccg": "CCG", "chunking": "Chunking",
            "sst-2": "SST-2", "sentiment": "SST-2", "polarity": "SST-2", "mrpc": "MRPC", "mnli": "MNLI",
            "qnli": "QNLI", "qqp": "QQP", "rte": "RTE", "sts-b": "STS-B", "sentiment-score": "STS-B"}


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables, as transcribed in ``data/paper/<name>.csv``."""
    root = repo_root()
    path = (root / "data" / "paper" / f"{name}.csv") if root else None
    if path is None or not path.exists():
        raise FileNotFoundError(f"the paper's table {name!r} is not at {path}: run the notebooks from a "
                                "clone of the repository (data/paper/ holds the transcribed tables)")
    return pd.read_csv(path)

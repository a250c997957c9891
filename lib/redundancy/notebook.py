"""Small helpers for the notebooks: glue that also works without myst-nb, the paper's own
numbers, plot style, and a check that a notebook runs inside the repository.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import repo_root

__all__ = ["glue", "Text", "paper_table", "plot_style", "pct", "verdict", "html_table"]


class Text(str):
    """A string that displays without quotes (for ``{glue:text}`` in the book's prose)."""

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def __repr__(self):
        return str(self)


def glue(name: str, value, display: bool = False):
    """myst-nb's ``glue`` (numbers and figures the book's prose refers to), or just the value
    when myst-nb is not installed (for example in a bare Colab kernel). Strings are glued as
    :class:`Text` so that they appear without quotes."""
    if isinstance(value, str) and not isinstance(value, Text):
        value = Text(value)
    elif hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar -> float/int
        value = value.item()  # (its repr "np.float64(...)" would not take a format spec)
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - myst-nb is a dependency of the book
        return value
    _glue(name, value, display=display)
    return value


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables, as transcribed in ``data/paper/<name>.csv``."""
    root = repo_root()
    path = (root / "data" / "paper" / f"{name}.csv") if root else None
    if path is None or not path.exists():
        raise FileNotFoundError(f"the paper's table {name!r} is not at {path}: run the notebooks from a "
                                "clone of the repository (data/paper/ holds the transcribed tables)")
    return pd.read_csv(path)


def plot_style():
    """The book's figure style (seaborn, readable at page width)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.autolayout": True})


def pct(x, digits: int = 1) -> str:
    """``0.9567 -> '95.7%'``."""
    return f"{100 * float(x):.{digits}f}%"


def verdict(ok) -> str:
    """'holds' / 'does not hold' / 'not testable here' for a claim."""
    return "not testable here" if ok is None else ("holds" if ok else "does not hold")


def html_table(df: pd.DataFrame, widths=None, markdown_cols=()) -> str:
    """A table for reading in the book and in JupyterLab: text wraps inside fixed column widths
    (``widths``, percentages), the table scrolls sideways only on a narrow screen, no index.
    Cells of ``markdown_cols`` may use ``**bold**``; everything else is escaped."""
    import html
    import re

    def cell(col, v):
        t = html.escape("" if v is None or (isinstance(v, float) and v != v) else str(v))
        if col in markdown_cols:
            t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
        return t

    cols = list(df.columns)
    widths = widths or [100 / len(cols)] * len(cols)
    colgroup = "".join(f'<col style="width:{w:g}%">' for w in widths)
    pad = "padding:4px 8px 4px 0;vertical-align:top;text-align:left"
    head = "".join(f'<th style="{pad}">{html.escape(str(c))}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f'<td style="{pad}">{cell(c, r[c])}</td>'
                                    for c in cols) + "</tr>" for _, r in df.iterrows())
    return (f'<div style="overflow-x:auto"><table style="table-layout:fixed;width:100%;min-width:640px;'
            f'font-size:0.85em"><colgroup>{colgroup}</colgroup><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def find_repo(start: str | Path = ".") -> Path | None:
    """The repository root above ``start`` (the folder with ``pyproject.toml`` and ``lib/``)."""
    p = Path(start).resolve()
    for q in (p, *p.parents):
        if (q / "pyproject.toml").exists() and (q / "lib" / "redundancy").exists():
            return q
    return None


_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open", "root"}


def _injected_names(namespace: dict) -> set | None:
    """The names assigned by papermill's injected cell (its source starts ``# Parameters``), from
    the kernel's input history ``In``; an empty set in a kernel without one (JupyterLab), None
    outside a kernel."""
    import ast

    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    names = set()
    for src in history:
        if isinstance(src, str) and src.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(src)
            except SyntaxError:
                continue
            names |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                      if isinstance(t, ast.Name)}
    return names


def check_parameters(namespace: dict, defaults: dict) -> None:
    """Check a notebook's parameters as papermill left them, in the notebook's first cell.

    ``defaults`` are the values of the notebook's ``parameters`` cell. A name papermill
    injected that the notebook does not declare (a typo: ``treshold``) and a value whose
    type does not match its default's (``thresholds="0.3"`` for a list) raise an error that
    names the parameter, what was given and what the notebook takes, before any work starts.
    A default of None accepts None, text, numbers and lists (a model name, a task subset).

    In a kernel (JupyterLab, Colab, papermill) only the names of papermill's injected cell are
    candidates for a typo: re-running cells, running them out of order, or adding one's own
    variables to the parameters cell or any cell never trips the check. Outside a kernel (a
    plain dict, as in the troubleshooting cases) every global that is not a module, function or
    class is a candidate.
    """
    import types

    declared = set(defaults)
    injected = _injected_names(namespace)
    candidates = namespace.keys() if injected is None else injected
    unknown = sorted(k for k in candidates if k in namespace
                     if not k.startswith("_") and k not in declared and k not in _KERNEL_NAMES
                     and not isinstance(namespace[k], (types.ModuleType, types.FunctionType, type)))
    if unknown:
        raise NameError(f"unknown notebook parameter(s) {unknown}: this notebook's parameters are "
                        f"{sorted(declared)} (see its parameters cell); check the spelling of -p / parameters=")
    for name, default in defaults.items():
        value = namespace.get(name, default)
        if default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise TypeError(f"notebook parameter {name!r} = {value!r} is a {type(value).__name__}, but this "
                            f"notebook takes a {type(default).__name__} (default {default!r})")

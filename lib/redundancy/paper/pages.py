"""Small helpers for the notebooks: glue that also works without myst-nb, the paper's own
numbers, plot style, and a check that a notebook runs inside the repository.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import repo_root

__all__ = ["glue", "Text", "plot_style", "pct", "verdict", "html_table", "figure", "absent_figure", "interactive",
           "conclusions", "readable", "count", "check_parameters", "setup_page"]


class Text(str):
    """A string that displays without quotes (for ``{glue:text}`` in the book's prose)."""

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def __repr__(self):
        return str(self)


#: every value glued in this kernel, by name (what :func:`conclusions` fills the prose with)
GLUED: dict = {}


def glue(name: str, value, display: bool = False):
    """myst-nb's ``glue`` (numbers and figures the book's prose refers to), or just the value
    when myst-nb is not installed (for example in a bare Colab kernel). Strings are glued as
    :class:`Text` so that they appear without quotes."""
    if isinstance(value, str) and not isinstance(value, Text):
        value = Text(value)
    elif hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar -> float/int
        value = value.item()  # (its repr "np.float64(...)" would not take a format spec)
    GLUED[name] = value  # for conclusions(): the prose outside the book
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - myst-nb is a dependency of the book
        return value
    _glue(name, value, display=display)
    return value


def plot_style():
    """The book's figure style (seaborn, readable at page width)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.autolayout": True,
                         "svg.fonttype": "none"})  # text stays text: sharp at any width, and searchable
    try:  # vector figures: legible on a phone as on a laptop
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")
    except ImportError:  # pragma: no cover - outside IPython
        pass


#: the widest figure, in inches: about the book's article at a laptop's width (752 px), so
#: that a figure's 10-point text shows at about 10 points; wider figures are narrowed to it
MAX_FIGURE_INCHES = 8.0


def figure(name: str, fig) -> None:
    """Show a figure in the notebook and keep it for the book's numbered, captioned figure.

    The figure is displayed as the cell's output (what a JupyterLab, Colab or papermill user
    sees) and glued under ``name``; the book's page places it with a ``{glue:figure}`` directive
    and its caption, and the cell carries the ``remove-output`` tag so that it is not shown twice."""
    import matplotlib.pyplot as plt
    from IPython.display import display as _display

    w, h = fig.get_size_inches()
    if w > MAX_FIGURE_INCHES:  # the article's width: text keeps its size instead of shrinking with the figure
        fig.set_size_inches(MAX_FIGURE_INCHES, max(h * MAX_FIGURE_INCHES / w, min(h, 3.4)))
    _display(fig)
    glue(name, fig, display=False)
    plt.close(fig)


def absent_figure(name: str, why: str) -> None:
    """A figure that this run cannot draw (no published paper-scale results, no labelling
    task), glued under ``name`` so that its numbered caption still has a figure: one line
    that says why."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.8))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center")
    figure(name, fig)


def interactive(name: str, fig) -> None:
    """Show a Plotly figure (:mod:`redundancy.paper.interactive`) in the notebook and keep it
    for the book's numbered, captioned figure, as :func:`figure` does for a static one: it
    works in JupyterLab (Plotly's output type) and in the static book, offline (HTML drawn
    with the book's own copy of plotly.js)."""
    from IPython.display import display as _display

    from .interactive import Interactive

    view = Interactive(fig, name)
    _display(view)
    glue(name, view, display=False)


def setup_page():
    """What every notebook's set-up cell does for its page: the figure style, data notes
    (labels of dev or test unseen in train, :class:`~redundancy.errors.DataNote`) kept out of
    the page (the data chapter lists them: :meth:`~redundancy.paper.sections.Study.data_notes`),
    and no progress bars from transformers."""
    import warnings

    from ..errors import DataNote

    plot_style()
    warnings.filterwarnings("ignore", category=DataNote)
    try:  # progress bars of loading and saving models are widgets in a kernel: noise on a page
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``count(1, "model") -> '1 model'``, ``count(2, "model") -> '2 models'`` (prose, not 'model(s)')."""
    n = int(n)
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def readable(df, digits: int = 3, index: bool = False):
    """A table for reading in the book: whole numbers as integers with thousands separators
    (2,688, not 2688.0), other numbers to ``digits`` decimals, "—" where a value does not apply
    (NaN), headers with spaces instead of underscores, and no pandas index unless ``index``
    (a pivot table's rows). Returns a pandas ``Styler`` (HTML in the book and in JupyterLab)."""
    import pandas as pd

    df = df.rename(columns=lambda c: c.replace("_", " ") if isinstance(c, str) else c)
    formats = {}
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            continue
        whole = col.dropna()
        if pd.api.types.is_integer_dtype(col) or (len(whole) and (whole % 1 == 0).all()):
            formats[c] = "{:,.0f}"
        else:
            formats[c] = f"{{:.{digits}f}}"
    styled = df.style.format(formats, na_rep="—")
    if not index:
        return styled.hide(axis="index")
    return styled.format_index(lambda v: f"{v:g}" if isinstance(v, float) else v, axis=0)  # 0.3, not 0.300000


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


def _assigned(src: str, values: bool = False):
    """The names (or, with ``values``, the literal values) a cell's top-level assignments set."""
    import ast

    try:
        tree = ast.parse(src)
    except SyntaxError:
        return {}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value) if values else None
            except ValueError:  # not a literal: declared, its type unchecked
                out[node.targets[0].id] = None
    return out


def _papermill_cells(namespace: dict):
    """(the notebook's parameters cell, papermill's injected cell) as the kernel ran them, from
    its input history ``In``: the injected cell starts ``# Parameters`` and papermill puts it
    right after the parameters cell. (None, None) in a kernel without one (JupyterLab);
    None outside a kernel."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    for i in range(len(history) - 1, 0, -1):
        src = history[i]
        if isinstance(src, str) and src.lstrip().startswith("# Parameters"):
            return history[i - 1], src
    return None, None


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def check_parameters(namespace: dict, defaults: dict | None = None) -> None:
    """Check a notebook's parameters as papermill left them, in the notebook's first cell.

    ``defaults`` are the values of the notebook's ``parameters`` cell; in a kernel they may
    be left out and are read from that cell as the kernel ran it (so the parameters cell is
    their only home). A name papermill injected that the notebook does not declare (a typo:
    ``treshold``) and a value whose type does not match its default's (``thresholds="0.3"``
    for a list) raise an error that names the parameter, what was given and what the
    notebook takes, before any work starts. A default of None accepts None, text, numbers
    and lists (a model name, a task subset).

    In a kernel (JupyterLab, Colab, papermill) only the names of papermill's injected cell are
    candidates for a typo: re-running cells, running them out of order, or adding one's own
    variables to the parameters cell or any cell never trips the check. Outside a kernel (a
    plain dict, as in the troubleshooting cases) every global that is not a module, function or
    class is a candidate.
    """
    import types

    cells = _papermill_cells(namespace)
    if defaults is None:
        if cells is None:
            raise ValueError("check_parameters needs the notebook's defaults outside a kernel")
        if cells[1] is None:  # no papermill parameters: nothing was injected, nothing to check
            return
        defaults = _assigned(cells[0], values=True)
    declared = set(defaults)
    injected = None if cells is None else set(_assigned(cells[1] or ""))
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
        elif isinstance(default, int):  # a seed, a count: 1.5 is refused, never truncated to 1
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            given, wanted = type(value).__name__, type(default).__name__
            raise TypeError(f"notebook parameter {name!r} = {value!r} is {_a(given)}, but this notebook takes "
                            f"{_a(wanted)} (default {default!r})")


_GLUE_ROLE = r"\{glue(?::text|:md|:any|:)?\}`([^`:]+)(?::([^`]*))?`"


def _filled(text: str) -> str:
    """MyST prose with its glued values filled in and its cross-reference roles made plain."""
    import re

    def value(m):
        name, spec = m.group(1).strip(), m.group(2)
        if name not in GLUED:
            return f"[{name}: not computed in this kernel]"
        v = GLUED[name]
        try:
            return format(v, spec) if spec else str(v)
        except (TypeError, ValueError):
            return str(v)

    text = re.sub(_GLUE_ROLE, value, text)
    text = re.sub(r"\{(?:numref|ref|doc)\}`([^`<]*?)\s*<[^`]*>`",  # {numref}`Figure %s <fig-x>` -> "Figure"
                  lambda m: m.group(1).replace("%s", "").strip(), text)
    text = re.sub(r"\{(?:numref|ref|doc)\}`([^`]*)`", "the figure above", text)
    text = re.sub(r"\{cite:?\w*\}`[^`]*`", "", text)
    return text.strip()


def _plain_directive(src: str) -> str:
    """A cell that is one fenced MyST directive (```{admonition} Title ... ```) as plain
    Markdown: "**Title.** body", its ``:option:`` lines left out; other text as it is."""
    lines = src.strip().splitlines()
    if not (lines and lines[0].startswith("```{") and lines[-1].strip() == "```"):
        return src
    title = lines[0].split("}", 1)[1].strip()
    body = "\n".join(l for l in lines[1:-1] if not l.startswith(":")).strip()
    return f"**{title}.** {body}" if title else body


def conclusions(notebook, heading: str = "What this run shows") -> str:
    """The notebook's prose with this run's numbers, displayed as Markdown (and returned).

    In the book, prose refers to numbers with ``{glue:text}`` and myst-nb fills them in; a
    JupyterLab, Colab or papermill user sees the placeholders instead. The last cell of every
    notebook calls this: it reads the notebook's Markdown cells that refer to glued values
    (from ``notebooks/<notebook>`` in the repository, or the path given), fills in the values
    glued in this kernel (:data:`GLUED`), and displays them, so that the page's conclusions
    are there for every kind of user. Figure captions are left out (the figures are shown
    above, in the cells that made them). The book hides this cell (the prose is in place)."""
    import json

    path = Path(notebook)
    if not path.exists() and repo_root() is not None:
        path = repo_root() / "notebooks" / Path(notebook).name
    if not path.exists():
        raise FileNotFoundError(f"notebook {notebook} not found (looked in the working folder and notebooks/)")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    paragraphs = []
    for cell in cells:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "markdown" or "{glue" not in src or src.lstrip().startswith("```{glue:figure}"):
            continue
        paragraphs.append(_filled(_plain_directive(src)))
    text = f"### {heading}\n\n" + "\n\n".join(paragraphs)
    try:
        from IPython.display import Markdown, display as _display

        _display(Markdown(text))
    except ImportError:  # pragma: no cover - IPython comes with the notebooks' environment
        print(text)
    return text

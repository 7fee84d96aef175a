"""The house style of gradflow's figures and the axis helpers every figure shares.

- Sizes for journals: :data:`COLUMN_WIDTH` (one column, 85 mm) and :data:`PAGE_WIDTH` (two columns, 175 mm);
  :func:`figure_size`.
- Palettes that survive colour-blindness and grey-scale printing: :data:`SEQUENTIAL` (cividis: lightness
  rises monotonically), :data:`DIVERGING` (PuOr) and :data:`CATEGORICAL` (Okabe and Ito's eight colours,
  with :data:`LINESTYLES` and :data:`MARKERS` so that categories differ in grey too).
- :func:`paper_style`, a context manager (also ``gradflow.mplstyle``, shipped beside this module, for
  ``plt.style.use``): TrueType fonts embedded in PDFs, print-size fonts, the categorical colour cycle.
- Deterministic output: :func:`save_figure` writes a PDF without creation or modification dates and a PNG
  without a software stamp; the same figure drawn twice gives the same bytes.

Every function that draws one figure takes ``ax=``: an existing Axes (a panel of your figure, drawn in
your style), or None for a new figure in this style, see :func:`new_axes`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler

from gradflow.sweep.results import cell_edges, is_numeric  # noqa: F401 (cell_edges: re-exported for the figures)
from gradflow.sweep.results import is_log_spaced as is_log_axis  # noqa: F401 (re-exported under the figures' name)

#: Widths in inches: one column of a two-column journal page (85 mm), and the full page (175 mm).
COLUMN_WIDTH = 85 / 25.4
PAGE_WIDTH = 175 / 25.4

#: Colour maps by kind of data: ordered quantities, quantities around a centre, categories.
SEQUENTIAL = "cividis"
DIVERGING = "PuOr"
#: Okabe & Ito (2008), "Color universal design": distinct under every common colour-vision deficiency.
CATEGORICAL = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: Line styles and markers that go with :data:`CATEGORICAL`, so categories stay apart in grey-scale print.
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "svg.hashsalt": "gradflow",
    "axes.prop_cycle": cycler(color=list(CATEGORICAL)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "legend.frameon": False,
}
#: The sequential colour map (kept under its old name).
CMAP = SEQUENTIAL
LABELS = {
    "forget_bias": "forget-gate bias $b_f$",
    "weight_scale": "weight scale (gain)",
    "seed": "seed",
    "scheme": "initialisation scheme",
    "hidden_size": "hidden size $H$",
    "seq_len": "sequence length $T$",
    "activation": "cell activation",
}
WRT_LABELS = {"h": r"$\log_{10}\,\|\partial h_T/\partial h_t\|_F$", "state": r"$\log_{10}\,\|\partial s_T/\partial s_t\|_F$, $s=(h,c)$"}


def figure_size(columns: int = 1, aspect: float = 0.75) -> tuple[float, float]:
    """``(width, height)`` in inches of a figure ``columns`` (1 or 2) journal columns wide, height ``aspect`` x width."""
    if columns not in (1, 2):
        raise ValueError(f"columns must be 1 or 2; got {columns!r}")
    if not aspect > 0:
        raise ValueError(f"aspect must be positive; got {aspect!r}")
    width = COLUMN_WIDTH if columns == 1 else PAGE_WIDTH
    return width, width * aspect


@contextlib.contextmanager
def paper_style(columns: int = 1, aspect: float = 0.75) -> Iterator[None]:
    """Draw in gradflow's house style (see the module docstring), new figures ``columns`` wide.

    Example:
      >>> import matplotlib.pyplot as plt
      >>> with paper_style(columns=2):
      ...     fig, ax = plt.subplots()
      ...     inside = plt.rcParams["pdf.fonttype"]
      >>> round(float(fig.get_figwidth()), 2), inside
      (6.89, 42)
      >>> plt.close(fig)
    """
    with plt.rc_context({**STYLE, "figure.figsize": figure_size(columns, aspect)}):
        yield


def in_house_style(draw):
    """Decorate a one-Axes function: called without ``ax`` (or ``ax=None``) it draws entirely in the house style
    (:data:`gradflow.plot.style.STYLE`: fonts, sizes, colour cycle); on a given Axes, in the caller's style."""
    signature = inspect.signature(draw)

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        if signature.bind(*args, **kwargs).arguments.get("ax") is not None:
            return draw(*args, **kwargs)
        before = set(plt.get_fignums())
        with plt.rc_context(STYLE):
            try:
                ax = draw(*args, **kwargs)
            except BaseException:  # a refused call leaves no half-drawn figure open
                for number in set(plt.get_fignums()) - before:
                    plt.close(number)
                raise
            make_ticks(ax.figure)
            return ax

    return wrapper


def make_ticks(fig) -> None:
    """Make every Axes' ticks of ``fig`` now: matplotlib makes them lazily, and later ones copy the first, so a
    figure built inside a style context keeps that style's tick labels when drawn outside it."""
    for each in fig.axes:
        for axis in (each.xaxis, each.yaxis):
            axis.get_major_ticks()
            axis.get_minor_ticks()


def new_axes(ax=None, *, size: tuple[float, float] | None = None):
    """``ax`` itself, or the Axes of a new figure of ``size`` inches (default: one column) in the house style.

    Functions that take ``ax=`` call this first: drawing on a given Axes leaves its figure's style alone.
    """
    if ax is not None:
        return ax
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=size or figure_size(1), layout="constrained")
        return fig.add_subplot()


def save_figure(fig, path_stem: Path) -> list[Path]:
    """Write ``fig`` as ``path_stem.pdf`` and ``.png`` in the house style's output settings (TrueType fonts,
    :data:`STYLE`'s resolution, tight bounding box) with deterministic bytes (no dates, no software stamp), close
    it, and return the two paths."""
    path_stem = Path(path_stem)
    paths = [path_stem.with_suffix(".pdf"), path_stem.with_suffix(".png")]
    with plt.rc_context(STYLE):  # fonts embedded as TrueType, resolution and tight bounding box, whatever the caller's rc
        fig.savefig(paths[0], metadata={"CreationDate": None, "ModDate": None})
        fig.savefig(paths[1], metadata={"Software": None})
    plt.close(fig)
    return paths


def log_colorbar(mappable, ax, label: str):
    """A colour bar for a log-normed ``mappable``: ticks at the decades it spans (with 2 and 5 times them
    when it spans less than two decades), written as plain numbers, and ``label`` (name it with its unit).

    Example:
      >>> import matplotlib.pyplot as plt
      >>> from matplotlib.colors import LogNorm
      >>> fig, ax = plt.subplots()
      >>> mesh = ax.pcolormesh([[3.0, 40.0], [200.0, 700.0]], norm=LogNorm(3, 700))
      >>> bar = log_colorbar(mesh, ax, "horizon (steps)")
      >>> fig.canvas.draw()
      >>> [t.get_text() for t in bar.ax.get_yticklabels() if 3 <= t.get_position()[1] <= 700]
      ['10', '100']
      >>> plt.close(fig)
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    bar = ax.figure.colorbar(mappable, ax=ax)
    low, high = mappable.norm.vmin, mappable.norm.vmax
    subs = (1.0,) if np.log10(high / low) >= 2 else (1.0, 2.0, 5.0)
    bar.ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    bar.set_label(label)
    return bar


def axis_label(dim: str) -> str:
    return LABELS.get(dim, dim.replace("_", " "))


def positions(ax, values: np.ndarray, axis: str) -> np.ndarray:
    """Numeric coordinates as they are; categories as 0..n-1 with their names as tick labels."""
    if is_numeric(values):
        return values
    positions = np.arange(values.size, dtype=float)
    (ax.set_xticks if axis == "x" else ax.set_yticks)(positions, labels=[str(v) for v in values])
    return positions
